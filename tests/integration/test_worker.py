"""The faust worker end to end against the real broker (CONTRACT §5, G1-G4, G6)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from streams.config import Settings
from streams.engine.codecs import get_codec
from streams.kafka.replay import replay
from streams.verify import render_report, run_verify
from streams.wiring import load_policy
from tests.integration import kit

pytestmark = pytest.mark.kafka

ENGINES = ("offers", "email", "partner_ads")


@pytest.fixture(params=["faust", "fast"])
def topics(kafka_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Every scenario runs on both runtimes: same topics, outputs, decisions and verify."""
    s = kafka_settings.model_copy(update={
        "runtime": request.param,
        "processing_guarantee": "exactly_once" if request.param == "fast" else "at_least_once",
    })
    kit.setup_topics(s)
    return s


@pytest.fixture
def worker(topics: Settings, tmp_path: Path):
    w = kit.start_worker(topics, tmp_path)
    yield w
    w.stop()


def _reasons(ds: list[dict], event_id: str) -> dict[str, str]:
    return {d["engine"]: (d["reason"] or d["outcome"]) for d in ds if d["event_id"] == event_id}


def test_every_reason_code_end_to_end(topics: Settings, worker, tmp_path: Path) -> None:
    s = topics
    p = kit.producer(s)
    now = int(time.time() * 1000)
    H = kit.HOUR
    g = lambda at, exp=None: {"status": "granted", "granted_at": at, "expires_at": exp}  # noqa: E731
    all_granted = lambda at: {k: g(at) for k in ("personalization", "marketing_email", "marketing_phone",  # noqa: E731
                                                "analytics", "third_party_sharing", "support")}
    consents = {
        "s-denied": kit.consent("s-denied", now - H, purposes={"personalization": {"status": "denied", "granted_at": None, "expires_at": None}}),
        "s-before": kit.consent("s-before", now - H, purposes={**all_granted(now - H)}),
        "s-expired": kit.consent("s-expired", now - H, purposes={**all_granted(now - 3 * H),
                                                                  "personalization": g(now - 3 * H, now - 60_000)}),
        "s-gpc": kit.consent("s-gpc", now - H, gpc=True),
        "s-region": kit.consent("s-region", now - H, jurisdiction="BR"),
        "s-nothing": kit.consent("s-nothing", now - H, categories={"browsing": False, "purchase_history": False,
                                                                   "connection_data": True, "location": False,
                                                                   "contact": True, "payment": True}),
        "s-ok": kit.consent("s-ok", now - H),
    }
    for sid, rec in consents.items():
        kit.send(p, s.topic_consent, sid, rec)
    kit.send(p, s.topic_consent, "s-bad", b'{"subject_id": "s-bad", "updated_at": "PII-SENTINEL-broken"')
    events = {
        "e-anon": kit.page_view("e-anon", None, now - 1000),
        "e-none": kit.page_view("e-none", "s-none", now - 1000),
        "e-denied": kit.page_view("e-denied", "s-denied", now - 1000),
        "e-before": kit.page_view("e-before", "s-before", now - 2 * H),
        "e-expired": kit.page_view("e-expired", "s-expired", now - 1000),
        "e-gpc": kit.page_view("e-gpc", "s-gpc", now - 1000),
        "e-region": kit.page_view("e-region", "s-region", now - 1000),
        "e-nothing": kit.page_view("e-nothing", "s-nothing", now - 1000),
        "e-ok": kit.page_view("e-ok", "s-ok", now - 1000),
        "e-bad-consent": kit.page_view("e-bad-consent", "s-bad", now - 1000),
    }
    for eid, e in events.items():
        kit.send(p, s.topic_clickstream, e["subject_id"] or "anon-1", e)
    kit.send(p, s.topic_purchases, "s-ok", kit.purchase("p-ok", "s-ok", now - 1000))
    kit.send(p, s.topic_clickstream, "s-ok", b"\xff\xfe not json")

    ds = kit.wait_decisions(s, 3 * (len(events) + 1) + 2)
    expect = {
        "e-anon": {e: "anonymous" for e in ENGINES},
        "e-none": {e: "no_consent" for e in ENGINES},
        "e-bad-consent": {e: "no_consent" for e in ENGINES},  # fail closed
        "e-denied": {"offers": "purpose_denied", "email": "purpose_denied", "partner_ads": "purpose_denied"},
        "e-before": {"offers": "before_grant", "email": "before_grant", "partner_ads": "before_grant"},
        "e-expired": {"offers": "expired", "email": "nothing_permitted", "partner_ads": "expired"},
        "e-gpc": {"offers": "emitted", "email": "nothing_permitted", "partner_ads": "opt_out"},
        "e-region": {"offers": "emitted", "email": "nothing_permitted", "partner_ads": "region_blocked"},
        "e-nothing": {"offers": "nothing_permitted", "email": "nothing_permitted", "partner_ads": "nothing_permitted"},
        "e-ok": {"offers": "emitted", "email": "nothing_permitted", "partner_ads": "emitted"},
        "p-ok": {"offers": "emitted", "email": "emitted", "partner_ads": "emitted"},
    }
    for eid, want in expect.items():
        assert _reasons(ds, eid) == want, eid
    # one decision record per input record (CONTRACT §7): 11 events, the bad event, the bad consent
    records = kit.decision_records(s)
    assert len(records) == len(events) + 3
    by_id = {r["event_id"]: r for r in records if r["event_id"]}
    assert (by_id["e-anon"]["reason"], by_id["e-anon"]["engines"]) == ("anonymous", [])
    assert (by_id["e-none"]["reason"], by_id["e-none"]["engines"]) == ("no_consent", [])
    assert [x["engine"] for x in by_id["p-ok"]["engines"]] == list(ENGINES)

    # the DLQ holds the bad event and the bad consent record, with headers and no field values
    dlq = list(replay(s, [s.topic_dlq]))
    assert len(dlq) == 2
    for _t, _p, _o, _k, value, headers, _ts in dlq:
        h = dict(headers)
        assert {"error.class", "error.message", "source.topic", "source.partition", "source.offset"} <= set(h)
        assert b"PII-SENTINEL" not in h["error.message"]
    assert {dict(h)["source.topic"].decode() for *_x, h, _ts in dlq} == {s.topic_clickstream, s.topic_consent}

    # what partner_ads got for the purchase: pseudonymized subject, geo coarsened, no contact/payment/ip
    policy = load_policy(s)
    partner = policy.engine("partner_ads")
    recs = [orjson.loads(v) for *_x, v, _h, _t in replay(s, [partner.topic])]
    p_ok = next(r for r in recs if r["event_id"] == "p-ok")
    assert p_ok["subject_id"] == partner.pseudonym("s-ok") != "s-ok"
    assert p_ok["context"] == {"geo": {"country": "FR"}}
    assert "email" not in p_ok and "phone" not in p_ok and "payment_method" not in p_ok
    assert p_ok["shipping_address"]["city"] == "Paris"
    assert p_ok["consent_version"] == now - H and p_ok["policy_version"] == policy.version

    result = run_verify(s)
    assert result.ok, render_report(result)
    assert result.unaccounted == 0 and result.violation_count == 0

    # the worker's metrics account for the same run
    m = _samples(worker.metrics())
    assert m[("pfilter_events_in_total", ("topic", s.topic_clickstream))] == len(events) + 1
    assert m[("pfilter_events_in_total", ("topic", s.topic_purchases))] == 1
    assert m[("pfilter_emitted_total", ("engine", "offers"))] == 4
    assert m[("pfilter_emitted_total", ("engine", "email"))] == 1
    assert m[("pfilter_dropped_total", ("reason", "anonymous"))] == 3
    lags = {dict(k[1:])["topic"]: v for k, v in m.items() if k[0] == "pfilter_consumer_lag_records"}
    assert set(lags) == {s.topic_clickstream, s.topic_purchases}
    assert all(v == 0 for v in lags.values()), lags  # everything was read
    stages = {dict(k[1:])["stage"] for k in m if k[0] == "pfilter_stage_seconds_total"}
    assert {"barrier", "decide"} <= stages


def _samples(text: str) -> dict[tuple, float]:
    """Prometheus text -> {(sample name, *sorted (label, value) pairs): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(x.name, *sorted(x.labels.items())): x.value
            for fam in text_string_to_metric_families(text) for x in fam.samples}


def test_revocation_barrier_withdraw_then_event(topics: Settings, worker) -> None:
    """G2: an event produced after the broker acked a withdrawal is never emitted under the old grant."""
    s = topics
    p = kit.producer(s)
    now = int(time.time() * 1000)
    n = 30
    for i in range(n):
        sid = f"s-g2-{i}"
        kit.send(p, s.topic_consent, sid, kit.consent(sid, now + 2 * i))
        kit.send(p, s.topic_clickstream, sid, kit.page_view(f"before-{i}", sid, now))
        withdrawn = kit.consent(sid, now + 2 * i + 1, purposes={
            k: {"status": "withdrawn", "granted_at": None, "expires_at": None}
            for k in ("personalization", "marketing_email", "third_party_sharing")})
        kit.send(p, s.topic_consent, sid, withdrawn)  # acked by the broker ...
        kit.send(p, s.topic_clickstream, sid, kit.page_view(f"after-{i}", sid, now))  # ... then the event
    # control: a grant is effective (so the denials above are not a worker that denies everything)
    kit.send(p, s.topic_consent, "s-g2-ctl", kit.consent("s-g2-ctl", now))
    kit.send(p, s.topic_clickstream, "s-g2-ctl", kit.page_view("ctl", "s-g2-ctl", now))
    ds = kit.wait_decisions(s, 3 * 2 * n + 3)
    for i in range(n):
        after = _reasons(ds, f"after-{i}")
        assert after == {"offers": "purpose_denied", "email": "purpose_denied", "partner_ads": "purpose_denied"}, i
        # an event produced before the withdrawal may see it or not (G2 allows the later state)
        assert _reasons(ds, f"before-{i}")["offers"] in ("emitted", "purpose_denied"), i
    assert _reasons(ds, "ctl")["offers"] == "emitted"
    assert run_verify(s).ok


def test_erasure_while_streaming(topics: Settings, worker) -> None:
    s = topics
    p = kit.producer(s)
    now = int(time.time() * 1000)
    kit.send(p, s.topic_consent, "s-er", kit.consent("s-er", now))
    kit.send(p, s.topic_clickstream, "s-er", kit.page_view("er-1", "s-er", now))
    kit.wait_decisions(s, 3)
    kit.send(p, s.topic_consent, "s-er", None)  # tombstone: erase
    kit.send(p, s.topic_clickstream, "s-er", kit.page_view("er-2", "s-er", now))
    ds = kit.wait_decisions(s, 6)
    assert _reasons(ds, "er-1")["offers"] == "emitted"
    assert _reasons(ds, "er-2") == {e: "no_consent" for e in ENGINES}
    notices = [orjson.loads(v) for *_x, v, _h, _t in replay(s, [s.topic_erasures])]
    policy = load_policy(s)
    assert {(n["engine"], n["subject_id"]) for n in notices} == {
        (e.name, e.subject_ref("s-er")) for e in policy.engines
    }
    result = run_verify(s)
    assert result.ok and result.erasures_found == 3, render_report(result)


def test_withdraw_regrant_and_expiry_while_streaming(topics: Settings, worker) -> None:
    s = topics
    p = kit.producer(s)
    now = int(time.time() * 1000)
    kit.send(p, s.topic_consent, "s-w", kit.consent("s-w", now))
    kit.send(p, s.topic_clickstream, "s-w", kit.page_view("w-1", "s-w", now))
    kit.wait_decisions(s, 3)  # each step decided before the next consent change
    kit.send(p, s.topic_consent, "s-w", kit.consent("s-w", now + 1, purposes={
        "personalization": {"status": "withdrawn", "granted_at": None, "expires_at": None}}))
    kit.send(p, s.topic_clickstream, "s-w", kit.page_view("w-2", "s-w", now))
    kit.wait_decisions(s, 6)
    # re-grant, expiring 10 s from now; an out-of-order older record must not win
    kit.send(p, s.topic_consent, "s-w", kit.consent("s-w", now + 3, purposes={
        "personalization": {"status": "granted", "granted_at": now - 1000, "expires_at": now + 10_000}}))
    kit.send(p, s.topic_consent, "s-w", kit.consent("s-w", now + 2))  # older: ignored
    kit.send(p, s.topic_clickstream, "s-w", kit.page_view("w-3", "s-w", now))
    kit.wait_decisions(s, 9)
    time.sleep(max(0.0, (now + 10_500 - time.time() * 1000) / 1000))
    kit.send(p, s.topic_clickstream, "s-w", kit.page_view("w-4", "s-w", now))
    ds = kit.wait_decisions(s, 12)
    assert _reasons(ds, "w-1")["offers"] == "emitted"
    assert _reasons(ds, "w-2")["offers"] == "purpose_denied"
    assert _reasons(ds, "w-3")["offers"] == "emitted"
    assert _reasons(ds, "w-4")["offers"] == "expired"
    assert run_verify(s).ok


def test_avro_input_topic(kafka_settings: Settings, tmp_path: Path) -> None:
    s = kafka_settings.model_copy(update={"format_clickstream": "avro"})
    kit.setup_topics(s)
    w = kit.start_worker(s, tmp_path)
    try:
        p = kit.producer(s)
        now = int(time.time() * 1000)
        avro = get_codec("click_event", "avro")
        kit.send(p, s.topic_consent, "s-av", kit.consent("s-av", now))
        kit.send(p, s.topic_clickstream, "s-av", avro.encode(kit.page_view("av-1", "s-av", now)))
        kit.send(p, s.topic_clickstream, "s-av", orjson.dumps(kit.page_view("av-json", "s-av", now)))  # wrong format
        ds = kit.wait_decisions(s, 4)
        assert _reasons(ds, "av-1") == {"offers": "emitted", "email": "nothing_permitted", "partner_ads": "emitted"}
        assert [d["outcome"] for d in ds if d["engine"] is None] == ["dlq"]
        result = run_verify(s)
        assert result.ok, render_report(result)
    finally:
        w.stop()


def test_verify_fails_on_a_planted_forbidden_record(topics: Settings, worker) -> None:
    s = topics
    p = kit.producer(s)
    now = int(time.time() * 1000)
    kit.send(p, s.topic_consent, "s-pl", kit.consent("s-pl", now))
    kit.send(p, s.topic_clickstream, "s-pl", kit.page_view("pl-1", "s-pl", now))
    kit.wait_decisions(s, 3)
    assert run_verify(s).ok
    offers = load_policy(s).engine("offers")
    # an offers record carrying connection data the policy never allows offers to receive
    out = [orjson.loads(v) for *_x, v, _h, _t in replay(s, [offers.topic])]
    forged = dict(out[0])
    forged["context"] = {**forged.get("context", {}), "ip": "203.0.113.7"}
    kit.send(p, offers.topic, "s-pl", forged)
    result = run_verify(s)
    assert not result.ok
    assert any("context.ip" in v for v in result.violations), render_report(result)
    # and an output that no decision accounts for
    kit.send(p, offers.topic, "s-x", {"event_id": "never-decided", "subject_id": "s-x", "event_type": "page_view",
                                      "ts": now, "url": "https://shop.example/", "consent_version": now,
                                      "policy_version": "default-1", "purposes": ["personalization"],
                                      "engine": "offers"})
    result = run_verify(s)
    assert any("no emitted decision" in v for v in result.violations), render_report(result)
    # and a second decision record for an input, its entries out of policy order
    (real,) = [r for r in kit.decision_records(s) if r["event_id"] == "pl-1"]
    kit.send(p, s.topic_decisions, "s-pl", {**real, "engines": real["engines"][::-1]})
    result = run_verify(s, exactly_once=True)
    assert result.duplicates == 1 and any("not the policy's engines in order" in v for v in result.violations), \
        render_report(result)
    # and garbage in an output topic
    kit.send(p, offers.topic, "s-x", b"\x00garbage")
    result = run_verify(s)
    assert any("does not decode" in v for v in result.violations), render_report(result)


def test_no_personal_data_in_logs(topics: Settings, tmp_path: Path) -> None:
    """G6: records full of recognisable personal data, valid and malformed; none of it in the logs."""
    from tests.fixtures.population import pii_rich_consent, pii_rich_event

    s = topics.model_copy(update={"log_level": "DEBUG"})
    w = kit.start_worker(s, tmp_path, name="pii-worker")
    try:
        p = kit.producer(s)
        for i in range(20):
            c = pii_rich_consent(i)
            kit.send(p, s.topic_consent, c["subject_id"], c)
            e = pii_rich_event(i)
            topic = s.topic_purchases if e["event_type"] == "purchase" else s.topic_clickstream
            kit.send(p, topic, e["subject_id"], e)
            raw = orjson.dumps(e)
            kit.send(p, topic, e["subject_id"], raw[: len(raw) // 2])  # truncated
            kit.send(p, s.topic_consent, c["subject_id"], orjson.dumps({**c, "gpc": "PII-SENTINEL-gpc"}))
        # one subject who allows the email engine: its email/phone leave encrypted (a data key)
        now = int(time.time() * 1000)
        kit.send(p, s.topic_consent, "g6-keyed", kit.consent("g6-keyed", now))
        e = kit.purchase("g6-e", "g6-keyed", now)
        e["email"], e["phone"] = "PII-SENTINEL-mail@example.com", "PII-SENTINEL-phone"
        kit.send(p, s.topic_purchases, "g6-keyed", e)
        kit.wait_decisions(s, 20 * 4 + 20 + 1)
    finally:
        w.stop()
    log = (tmp_path / "pii-worker.log").read_text(errors="replace")
    assert "PII-SENTINEL" not in log
    assert log.strip(), "the worker wrote no log at all: the test would prove nothing"
    # G6 for encrypted fields (CONTRACT §10): neither the KEK nor any data key it wraps, in
    # any spelling, appears in the log; the worker did create keys (the test proves something)
    import base64

    from streams.crypto import Kek, parse_key_record
    from streams.kafka.replay import replay

    raw_kek = bytes.fromhex(s.kek)
    kek = Kek(raw_kek)
    secrets_ = [s.kek, base64.b64encode(raw_kek).decode(), base64.urlsafe_b64encode(raw_kek).rstrip(b"=").decode()]
    recs = [parse_key_record(v) for *_x, v, _h, _t in replay(s, [s.topic_keys]) if v is not None]
    assert recs, "no data key was created: the test would prove nothing about keys"
    for rec in recs:
        dk = kek.unwrap(rec.subject_id, rec.key_version, rec.wrapped_key)
        secrets_ += [dk.hex(), base64.b64encode(dk).decode(), base64.urlsafe_b64encode(dk).rstrip(b"=").decode(),
                     base64.urlsafe_b64encode(rec.wrapped_key).rstrip(b"=").decode()]
    for secret in secrets_:
        assert secret not in log
