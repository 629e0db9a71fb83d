"""The support app through aiohttp's test client: token, no data without it, erase's two locks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from streams.config import load_settings
from streams.transparency.support import make_app
from tests.unit.transparency import synth

TOKEN = "support-token-0123456789"
ADMIN = "admin-token-9876543210"
SUBJECT = "cust-1"


class Calls:
    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.erased: list[str] = []

    def load(self, settings: Any, subject: str):  # noqa: ANN201
        self.loaded.append(subject)
        s = synth.standard_summary()
        s.subject_id = subject
        return s

    def erase(self, settings: Any, subject: str) -> dict:
        self.erased.append(subject)
        return {"subject": subject, "confirmed": True, "timeout_s": 20.0,
                "consent_tombstone": {"topic": settings.topic_consent, "partition": 1, "offset": 42},
                "key_tombstone": {"topic": settings.topic_keys, "partition": 1, "offset": 7},
                "notices": [{"engine": "offers", "pseudonymized": False, "partition": 0, "offset": 3}]}


def run(test: Callable[[TestClient, Calls], Awaitable[None]], **settings: Any) -> Calls:
    calls = Calls()
    s = load_settings(support_token=TOKEN, support_admin_token=ADMIN,
                      support_metrics_url="http://127.0.0.1:9/metrics").model_copy(update=settings)

    async def main() -> None:
        async with TestClient(TestServer(make_app(s, load=calls.load, erase_fn=calls.erase))) as client:
            await test(client, calls)

    asyncio.run(main())
    return calls


BEARER = {"Authorization": f"Bearer {TOKEN}"}
PATHS = ["/", f"/subject?id={SUBJECT}", f"/subject/export.json?id={SUBJECT}", "/api/overview"]


def test_every_page_is_401_without_the_token_and_shows_no_subject_data() -> None:
    async def t(c: TestClient, calls: Calls) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong-token-000000000"}, {"Cookie": "pfilter_support=forged"}):
            for path in PATHS:
                r = await c.get(path, headers=headers)
                body = await r.text()
                assert r.status == 401, path
                assert SUBJECT not in body and "offers" not in body and "browsing" not in body, path
        r = await c.post("/subject/erase", data={"id": SUBJECT, "confirm": SUBJECT, "admin_token": ADMIN})
        assert r.status == 401 and SUBJECT not in await r.text()
        assert calls.loaded == [] and calls.erased == []

    run(t)


def test_token_as_bearer_or_login_cookie_opens_the_pages() -> None:
    async def t(c: TestClient, calls: Calls) -> None:
        r = await c.get(f"/subject?id={SUBJECT}", headers=BEARER)
        page = await r.text()
        assert r.status == 200 and 'data-engine="offers"' in page and "Between 3 and 9 March 2026" in page
        assert r.headers["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in r.headers[
            "Content-Security-Policy"]
        bad = await c.post("/login", data={"token": "nope"}, allow_redirects=False)
        assert bad.status == 401 and "pfilter_support" not in bad.cookies
        ok = await c.post("/login", data={"token": TOKEN}, allow_redirects=False)
        assert ok.status == 303
        assert TOKEN not in ok.headers.get("Set-Cookie", "")  # the cookie is an HMAC, not the token
        r = await c.get(f"/subject/export.json?id={SUBJECT}")  # the session cookie now
        assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
        doc = json.loads(await r.text())
        assert doc["subject_id"] == SUBJECT and doc["recipients"][0]["sent"] == 3
        r = await c.get(f"/subject?id={SUBJECT}&lang=de")
        assert "Zwischen dem 3. und 9. März 2026" in await r.text()

    run(t)


def test_erase_needs_the_admin_token_and_the_confirmation() -> None:
    async def t(c: TestClient, calls: Calls) -> None:
        base = {"id": SUBJECT, "confirm": SUBJECT}
        r = await c.post("/subject/erase", data={**base, "admin_token": TOKEN}, headers=BEARER)
        assert r.status == 403
        r = await c.post("/subject/erase", data={**base}, headers=BEARER)
        assert r.status == 403
        r = await c.post("/subject/erase", data={"id": SUBJECT, "confirm": "cust-2", "admin_token": ADMIN},
                         headers=BEARER)
        assert r.status == 400
        assert calls.erased == []
        r = await c.post("/subject/erase", data={**base, "admin_token": ADMIN}, headers=BEARER)
        body = await r.text()
        assert r.status == 200 and "partition 1, offset 42" in body
        assert calls.erased == [SUBJECT]

    run(t)


def test_erase_is_disabled_without_an_admin_token() -> None:
    async def t(c: TestClient, calls: Calls) -> None:
        page = await (await c.get(f"/subject?id={SUBJECT}", headers=BEARER)).text()
        assert 'id="erase"' not in page and "Erase is disabled" in page
        r = await c.post("/subject/erase", data={"id": SUBJECT, "confirm": SUBJECT, "admin_token": ""},
                         headers=BEARER)
        assert r.status == 403 and calls.erased == []

    run(t, support_admin_token=None)


def test_overview_reports_an_unreachable_worker() -> None:
    async def t(c: TestClient, calls: Calls) -> None:
        r = await c.get("/api/overview", headers=BEARER)
        assert r.status == 200 and (await r.json()) == {"ok": False, "error": "worker metrics unreachable"}

    run(t)


def test_overview_numbers_from_metrics_text() -> None:
    from streams.transparency.overview import parse_metrics, with_rate

    text = (
        'pfilter_events_in_total{topic="clickstream"} 90.0\n'
        'pfilter_events_in_total{topic="purchases"} 10.0\n'
        'pfilter_emitted_total{engine="offers"} 40.0\n'
        'pfilter_dropped_total{reason="purpose_denied"} 7.0\n'
        'pfilter_dlq_total{topic="clickstream"} 2.0\n'
        'pfilter_consent_lag_records{partition="0"} 3.0\n'
        'pfilter_consent_lag_records{partition="1"} 1.0\n'
        "pfilter_ready 1.0\n"
    )
    now = parse_metrics(text)
    assert now == {"events_in_total": 100, "emitted": {"offers": 40}, "dropped": {"purpose_denied": 7},
                   "dlq_total": 2, "consent_lag_records": 4, "ready": True}
    assert with_rate(now, 12.0, (10.0, 60))["events_per_s"] == 20.0
    assert with_rate(now, 12.0, None)["events_per_s"] is None
    assert with_rate(now, 12.0, (10.0, 500))["events_per_s"] is None  # worker restarted


def test_config_masks_the_support_tokens() -> None:
    from click.testing import CliRunner

    from streams.cli import cli

    r = CliRunner().invoke(cli, ["config"], env={"PFILTER_SUPPORT_TOKEN": TOKEN, "PFILTER_SUPPORT_ADMIN_TOKEN": ADMIN})
    assert r.exit_code == 0 and TOKEN not in r.output and ADMIN not in r.output
    assert "support_token = ***" in r.output


def test_serve_refuses_to_start_without_a_token() -> None:
    from click.testing import CliRunner

    from streams.cli import cli

    r = CliRunner().invoke(cli, ["serve"], env={"PFILTER_SUPPORT_TOKEN": ""})
    assert r.exit_code != 0 and "PFILTER_SUPPORT_TOKEN is not set" in r.output
    r = CliRunner().invoke(cli, ["serve"], env={"PFILTER_SUPPORT_TOKEN": "short"})
    assert r.exit_code != 0 and "at least 16 characters" in r.output
