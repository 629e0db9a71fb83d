"""Consent notices on the real broker (CONTRACT §9, issue 11 item 4), both runtimes.

A grant expiring in ~35 s under a policy with ``notice_before = "20s"`` gets exactly one
``reconfirm`` notice (at ~15 s) and then one ``expired`` notice, with a kill -9 of the
worker in between and a fresh worker taking over; a grant erased before its notice
time gets none (G4), a grant renewed before it gets only the renewed grant's, and a
grant without expiry none. Read read_committed: no duplicate (fast runtime: EOS).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from streams.config import Settings
from streams.engine.policy import DEFAULT_POLICY_PATH
from streams.kafka.replay import replay
from streams.verify import run_verify
from tests.integration import kit

pytestmark = [pytest.mark.kafka]

NOTICE_BEFORE_S = 20
EXPIRES_IN_S = 35


def _policy(tmp: Path) -> Path:
    text = DEFAULT_POLICY_PATH.read_text()
    assert 'notice_before = "30d"' in text
    p = tmp / "policy.toml"
    p.write_text(text.replace('notice_before = "30d"', f'notice_before = "{NOTICE_BEFORE_S}s"'))
    return p


def _notices(s: Settings) -> list[dict]:
    return [orjson.loads(v) for *_x, v, _h, _t in replay(s.bootstrap, [s.topic_notices], read_committed=True)]


def _wait(s: Settings, pred, timeout: float) -> list[dict]:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        got = _notices(s)
        if pred(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def _grant(subject: str, now: int, expires_at: int | None, updated_at: int) -> dict:
    g = {"status": "granted", "granted_at": now - kit.DAY, "expires_at": expires_at}
    return kit.consent(subject, updated_at, purposes={"marketing_email": g, "support": dict(g, expires_at=None)})


@pytest.mark.parametrize("runtime", ["fast", "faust"])
def test_one_reconfirm_then_one_expired_across_kill9(kafka_settings: Settings, tmp_path: Path, runtime: str) -> None:
    extra = {"processing_guarantee": "exactly_once", "instance_id": "n1"} if runtime == "fast" else {}
    s = kafka_settings.model_copy(update={"runtime": runtime, "policy_file": _policy(tmp_path), **extra})
    kit.setup_topics(s)
    now = int(time.time() * 1000)
    exp = now + EXPIRES_IN_S * 1000
    p = kit.producer(s)
    kit.send(p, s.topic_consent, "keep", _grant("keep", now, exp, now))
    kit.send(p, s.topic_consent, "erased", _grant("erased", now, exp, now))
    kit.send(p, s.topic_consent, "renewed", _grant("renewed", now, exp, now))
    w = kit.start_worker(s, tmp_path, "w1", runtime=runtime)
    try:
        kit.send(p, s.topic_consent, "erased", None)  # erasure cancels its pending notices
        kit.send(p, s.topic_consent, "renewed", _grant("renewed", now, exp + 3_600_000, now + 1))
        first = _wait(s, lambda g: any(n["subject_id"] == "keep" for n in g), NOTICE_BEFORE_S + 10)
        assert [(n["subject_id"], n["kind"]) for n in first] == [("keep", "reconfirm")], first
        time.sleep(2)  # a few more ticks (and commits) with the reconfirm already sent
    finally:
        w.kill()  # kill -9 between the two notices
    w = kit.start_worker(s, tmp_path, "w2", runtime=runtime)
    try:
        got = _wait(s, lambda g: any(n["kind"] == "expired" for n in g), EXPIRES_IN_S + 10)
        time.sleep(2)  # a duplicate would have had time to show
        got = _notices(s)
        metrics = w.metrics()
    finally:
        w.stop()
    kinds = Counter((n["subject_id"], n["purpose"], n["expires_at"], n["kind"]) for n in got)
    assert kinds == Counter({("keep", "marketing_email", exp, "reconfirm"): 1,
                             ("keep", "marketing_email", exp, "expired"): 1}), got
    rec, expd = (next(n for n in got if n["kind"] == k) for k in ("reconfirm", "expired"))
    assert rec["sent_at"] >= exp - NOTICE_BEFORE_S * 1000 and expd["sent_at"] >= exp
    assert rec["consent_version"] == now and rec["policy_version"] == "default-1"
    assert 'pfilter_notices_sent_total{kind="expired"} 1.0' in metrics
    res = run_verify(s, exactly_once=runtime == "fast")
    assert res.notices_checked == 2 and res.ok, res.violations
