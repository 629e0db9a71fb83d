"""The synthetic population: deterministic, shaped as CONTRACT.md §3, and rich
enough that every reason of the decision rule (§5) occurs in it."""

from __future__ import annotations

import collections
import hashlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams import population as pop
from streams.engine import reference
from streams.engine import signals as engine_signals
from streams.engine.reference_signals import signals_problem
from tests.unit.reference_policy import policy_of_section_8
from streams.population import (
    CATEGORIES,
    CLICK_TYPES,
    DEFAULT_SHARES,
    EVENT_TYPES,
    JURISDICTIONS,
    PURPOSES,
    SEGMENTS,
    PopulationSpec,
    churn,
    consent_of,
    consent_records,
    event_bytes,
    events,
    segment_of,
    subject_id,
)
from tests.fixtures.population import PII_SENTINEL, pii_rich_consent, pii_rich_event

NOW = 1_750_000_000_000
HOUR = 3_600_000
SPEC = PopulationSpec(subjects=5_000, seed=11)
ROOT = Path(__file__).resolve().parents[2]

ENVELOPE = {"event_id", "subject_id", "event_type", "ts", "context"}
PAYLOAD = {
    "page_view": {"url": str, "title": str},
    "product_view": {"product_id": str, "category": str, "price": float},
    "search": {"query": str},
    "add_to_cart": {"product_id": str, "quantity": int},
    "login": {"method": str},
    "purchase": {
        "order_id": str,
        "items": list,
        "total": float,
        "currency": str,
        "payment_method": str,
        "shipping_address": dict,
        "email": str,
        "phone": str,
    },
}
THIRD_PARTY_JURISDICTIONS = {"EU", "UK", "US", "US-CA"}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def check_event_shape(e: dict[str, Any]) -> None:
    """Assert that ``e`` is an event as CONTRACT.md §3 describes."""
    assert e["event_type"] in EVENT_TYPES
    anonymous = e.get("subject_id") is None
    expected = ENVELOPE | set(PAYLOAD[e["event_type"]]) | ({"anonymous_id"} if anonymous else set())
    assert set(e) == expected, (set(e) ^ expected, e)
    assert isinstance(e["event_id"], str) and e["event_id"]
    if anonymous:
        assert isinstance(e["anonymous_id"], str) and e["anonymous_id"]
    else:
        assert isinstance(e["subject_id"], str) and e["subject_id"]
    assert isinstance(e["ts"], int) and not isinstance(e["ts"], bool)
    ctx = e["context"]
    assert set(ctx) == {"ip", "user_agent", "device_id", "session_id", "referrer", "geo"}
    for k in ("ip", "user_agent", "device_id", "session_id"):
        assert isinstance(ctx[k], str) and ctx[k], k
    assert ctx["referrer"] is None or isinstance(ctx["referrer"], str)
    geo = ctx["geo"]
    assert set(geo) == {"country", "region", "city", "lat", "lon"}
    assert all(isinstance(geo[k], str) for k in ("country", "region", "city"))
    assert isinstance(geo["lat"], float) and -90 <= geo["lat"] <= 90
    assert isinstance(geo["lon"], float) and -180 <= geo["lon"] <= 180
    for name, typ in PAYLOAD[e["event_type"]].items():
        assert isinstance(e[name], typ), (name, e[name])
    if e["event_type"] == "purchase":
        assert e["items"], e
        for item in e["items"]:
            assert set(item) == {"product_id", "category", "quantity", "price"}
            assert isinstance(item["product_id"], str) and isinstance(item["category"], str)
            assert isinstance(item["quantity"], int) and item["quantity"] >= 1
            assert isinstance(item["price"], float) and item["price"] > 0
        assert set(e["shipping_address"]) == {"street", "city", "postal_code", "country"}
        assert all(isinstance(v, str) and v for v in e["shipping_address"].values())


CONSENT_FIELDS = {"subject_id", "updated_at", "purposes", "categories", "jurisdiction", "gpc", "tcf"}
#: Optional fields (issue 11), present only when not the default.
OPTIONAL_CONSENT_FIELDS = {"gpp", "consent_mode", "objections"}


def check_consent_shape(rec: dict[str, Any], now: int | None = None) -> None:
    """Assert that ``rec`` is a consent record as CONTRACT.md §3 describes."""
    assert CONSENT_FIELDS <= set(rec) <= CONSENT_FIELDS | OPTIONAL_CONSENT_FIELDS, set(rec)
    assert isinstance(rec["subject_id"], str)
    assert isinstance(rec["updated_at"], int)
    if now is not None:
        assert rec["updated_at"] <= now
    assert set(rec["purposes"]) == set(PURPOSES)
    for p, v in rec["purposes"].items():
        assert set(v) - {"basis"} == {"status", "granted_at", "expires_at"}, p
        if "basis" in v:  # only the legitimate-interest e-mail grants name one
            assert p == "marketing_email" and v["basis"] == "legitimate_interest" and v["status"] != "denied"
        assert v["status"] in ("granted", "denied", "withdrawn")
        if v["status"] == "denied":
            assert v["granted_at"] is None and v["expires_at"] is None
        else:
            assert isinstance(v["granted_at"], int)
            assert v["granted_at"] <= rec["updated_at"], (p, rec)
            assert v["expires_at"] is None or v["expires_at"] > v["granted_at"], (p, rec)
    assert set(rec["categories"]) == set(CATEGORIES)
    assert all(isinstance(b, bool) for b in rec["categories"].values())
    assert rec["jurisdiction"] in JURISDICTIONS
    assert isinstance(rec["gpc"], bool)
    # (which jurisdictions have which signal: test_signals_follow_the_jurisdiction; churn moves people)
    assert rec["tcf"] is None or isinstance(rec["tcf"], str)
    if "gpp" in rec:
        assert isinstance(rec["gpp"], str)
        assert rec["tcf"] is None  # an EU CMP sends one or the other
    if "consent_mode" in rec:
        assert set(rec["consent_mode"]) == {"ad_storage", "ad_user_data", "ad_personalization", "analytics_storage"}
        assert set(rec["consent_mode"].values()) <= {"granted", "denied"}
    if "objections" in rec:
        assert rec["objections"] and set(rec["objections"]) <= {"direct_marketing", "profiling"}
        assert len(set(rec["objections"])) == len(rec["objections"])
    assert signals_problem(rec) is None  # the reference's decoders read every signal


# The default policy's fields per category (CONTRACT.md §8), top-level or in context.
CATEGORY_FIELDS = {
    "browsing": {"url", "title", "query", "product_id", "category", "price", "quantity", "context.referrer"},
    "purchase_history": {"order_id", "items", "total", "currency"},
    "connection_data": {
        "context.ip", "context.user_agent", "context.device_id", "context.session_id", "method",
    },
    "location": {"context.geo", "shipping_address"},
    "contact": {"email", "phone"},
    "payment": {"payment_method"},
}
ENGINES = {
    "offers": ({"personalization"}, False, {"browsing", "purchase_history"}, None),
    "email": ({"marketing_email"}, False, {"purchase_history", "contact"}, None),
    "partner_ads": (
        {"personalization", "third_party_sharing"}, True, {"browsing", "location"}, THIRD_PARTY_JURISDICTIONS,
    ),
}


POLICY = policy_of_section_8()


def reason(e: dict[str, Any], c: dict[str, Any] | None, engine: str, now: int, policy: dict | None = None) -> str:
    """The CONTRACT.md §5 rule (the reference's), to see which reasons the data triggers."""
    outcome, what = reference.expected(e, c, engine, policy or POLICY, now, b"population-test")
    return "emitted" if outcome == "emitted" else what


def digest(spec: PopulationSpec) -> str:
    h = hashlib.sha256()
    for rec in consent_records(spec, NOW):
        h.update(orjson.dumps(rec, option=orjson.OPT_SORT_KEYS))
    for kind, raw, key in event_bytes(spec, NOW, 3_000):
        h.update(kind.encode() + raw + key.encode())
    for sid, rec in churn(spec, NOW, 300):
        h.update(sid.encode() + orjson.dumps(rec, option=orjson.OPT_SORT_KEYS))
    return h.hexdigest()


@pytest.fixture(scope="module")
def consent_map() -> dict[str, dict[str, Any]]:
    return {r["subject_id"]: r for r in consent_records(SPEC, NOW)}


@pytest.fixture(scope="module")
def sample_events() -> list[dict[str, Any]]:
    return list(events(SPEC, NOW, 30_000))


# --------------------------------------------------------------------------
# spec and ids
# --------------------------------------------------------------------------


def test_default_shares_cover_the_segments() -> None:
    assert set(DEFAULT_SHARES) == set(SEGMENTS)
    assert sum(DEFAULT_SHARES.values()) == pytest.approx(1.0)
    assert PopulationSpec().shares == DEFAULT_SHARES


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shares": {"brand_loyalist": 0.5, "flexible": 0.4}}, "sum to 1"),
        ({"shares": {"brand_loyalist": 0.5, "loyal_fans": 0.5}}, "loyal_fans"),
        ({"shares": {"brand_loyalist": 1.5, "flexible": -0.5}}, "brand_loyalist"),
        ({"subjects": 0}, "subjects"),
        ({"no_consent_share": 1.5}, "no_consent_share"),
        ({"anonymous_share": -0.1}, "anonymous_share"),
        ({"purchase_share": "lots"}, "purchase_share"),
    ],
)
def test_spec_rejects_bad_values_naming_them(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PopulationSpec(**kwargs)


def test_spec_copies_shares_and_is_hashable() -> None:
    shares = {"control_addict": 0.5, "flexible": 0.5}
    spec = PopulationSpec(subjects=100, shares=shares)
    shares["flexible"] = 0.9
    assert spec.shares["flexible"] == 0.5
    assert spec.shares["brand_loyalist"] == 0.0
    assert hash(spec) == hash(PopulationSpec(subjects=100, shares={"flexible": 0.5, "control_addict": 0.5}))


def test_subject_ids_are_stable() -> None:
    assert subject_id(42) == "s-000042"
    assert subject_id(0) == "s-000000"
    assert subject_id(1_234_567) == "s-1234567"


def test_segment_of_rejects_indices_outside_the_population() -> None:
    with pytest.raises(ValueError, match="outside"):
        segment_of(SPEC, SPEC.subjects)
    with pytest.raises(ValueError, match="outside"):
        consent_of(SPEC, -1, NOW)


# --------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------


def test_same_spec_gives_the_same_records() -> None:
    spec = PopulationSpec(subjects=2_000, seed=3)
    assert list(consent_records(spec, NOW)) == list(consent_records(spec, NOW))
    assert list(event_bytes(spec, NOW, 5_000)) == list(event_bytes(spec, NOW, 5_000))
    assert list(churn(spec, NOW, 500)) == list(churn(spec, NOW, 500))
    assert [segment_of(spec, i) for i in range(2_000)] == [segment_of(spec, i) for i in range(2_000)]


def test_other_seed_gives_other_records() -> None:
    a, b = PopulationSpec(subjects=500, seed=1), PopulationSpec(subjects=500, seed=2)
    assert list(consent_records(a, NOW)) != list(consent_records(b, NOW))
    assert list(event_bytes(a, NOW, 100)) != list(event_bytes(b, NOW, 100))


def test_determinism_does_not_depend_on_the_process() -> None:
    spec = PopulationSpec(subjects=1_500, seed=5)
    here = digest(spec)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.unit.test_population import digest;"
        "from streams.population import PopulationSpec;"
        "print(digest(PopulationSpec(subjects=1500, seed=5)))"
    )
    for hashseed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        out = subprocess.run(
            [sys.executable, "-c", code, str(ROOT)],
            env=env, capture_output=True, text=True, check=True, cwd=ROOT,
        )
        assert out.stdout.strip() == here


def test_consent_of_equals_consent_records() -> None:
    spec = PopulationSpec(subjects=3_000, seed=9)
    by_id = {r["subject_id"]: r for r in consent_records(spec, NOW)}
    for i in range(0, 3_000, 7):
        assert consent_of(spec, i, NOW) == by_id.get(subject_id(i))


def test_events_are_the_decoded_event_bytes() -> None:
    raw = list(event_bytes(SPEC, NOW, 3_000))
    decoded = list(events(SPEC, NOW, 3_000))
    assert [orjson.loads(b) for _, b, _ in raw] == decoded
    for (kind, _, key), e in zip(raw, decoded):
        assert kind == ("purchase" if e["event_type"] == "purchase" else "click")
        assert key == (e["subject_id"] or "")


# --------------------------------------------------------------------------
# population
# --------------------------------------------------------------------------


def test_segment_shares_within_tolerance() -> None:
    spec = PopulationSpec(subjects=20_000, seed=7)
    counts = collections.Counter(segment_of(spec, i) for i in range(spec.subjects))
    for segment in SEGMENTS:
        assert counts[segment] / spec.subjects == pytest.approx(DEFAULT_SHARES[segment], abs=0.015), segment


def test_custom_shares_are_followed() -> None:
    spec = PopulationSpec(subjects=4_000, shares={"control_addict": 0.7, "privacy_fundamentalist": 0.3})
    counts = collections.Counter(segment_of(spec, i) for i in range(spec.subjects))
    assert set(counts) == {"control_addict", "privacy_fundamentalist"}
    assert counts["control_addict"] / spec.subjects == pytest.approx(0.7, abs=0.03)


def test_consent_records_have_the_contract_shape(consent_map: dict[str, dict[str, Any]]) -> None:
    for sid, rec in consent_map.items():
        check_consent_shape(rec, NOW)
        assert rec["subject_id"] == sid


def test_share_of_subjects_without_consent(consent_map: dict[str, dict[str, Any]]) -> None:
    missing = SPEC.subjects - len(consent_map)
    assert missing / SPEC.subjects == pytest.approx(SPEC.no_consent_share, abs=0.015)
    assert list(consent_records(PopulationSpec(subjects=300, no_consent_share=1.0), NOW)) == []
    assert len(list(consent_records(PopulationSpec(subjects=300, no_consent_share=0.0), NOW))) == 300


def test_consent_covers_every_situation(consent_map: dict[str, dict[str, Any]]) -> None:
    grants = [v for r in consent_map.values() for v in r["purposes"].values() if v["status"] != "denied"]
    statuses = collections.Counter(v["status"] for r in consent_map.values() for v in r["purposes"].values())
    assert statuses["granted"] and statuses["denied"] and statuses["withdrawn"]
    assert any(v["expires_at"] is not None and v["expires_at"] <= NOW for v in grants), "expired grants"
    assert any(v["expires_at"] is not None and NOW < v["expires_at"] <= NOW + 6 * HOUR for v in grants), (
        "grants expiring during a run"
    )
    assert any(v["expires_at"] is None for v in grants), "grants without expiry"
    assert any(NOW - HOUR <= v["granted_at"] for v in grants), "grants within the event window"
    assert any(r["gpc"] for r in consent_map.values())
    jurisdictions = collections.Counter(r["jurisdiction"] for r in consent_map.values())
    assert set(jurisdictions) == set(JURISDICTIONS)
    outside = sum(n for j, n in jurisdictions.items() if j not in THIRD_PARTY_JURISDICTIONS)
    assert 0.1 < outside / len(consent_map) < 0.35


def test_segments_behave_differently() -> None:
    spec = PopulationSpec(subjects=10_000, seed=2)
    by_segment: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for i in range(spec.subjects):
        rec = consent_of(spec, i, NOW)
        if rec is not None:
            by_segment[segment_of(spec, i)].append(rec)

    def share(segment: str, pred: Any) -> float:
        recs = by_segment[segment]
        return sum(1 for r in recs if pred(r)) / len(recs)

    def granted(p: str) -> Any:
        return lambda r: r["purposes"][p]["status"] == "granted"

    assert share("brand_loyalist", granted("personalization")) > 0.9
    assert share("brand_loyalist", granted("third_party_sharing")) > 0.6
    assert share("convenience_seeker", granted("personalization")) > 0.85
    assert share("convenience_seeker", granted("third_party_sharing")) < 0.25
    assert share("convenience_seeker", lambda r: r["categories"]["purchase_history"]) > 0.85
    assert share("privacy_fundamentalist", granted("personalization")) < 0.2
    assert share("privacy_fundamentalist", lambda r: r["gpc"]) > 0.6
    assert share("brand_loyalist", lambda r: r["gpc"]) < 0.1
    # control addicts: every grant expires within days of now, many already have
    addict_grants = [  # (a legitimate-interest basis lasts as long as the customer relationship)
        v for r in by_segment["control_addict"] for v in r["purposes"].values()
        if v["status"] == "granted" and "basis" not in v
    ]
    assert all(
        v["expires_at"] is not None and abs(v["expires_at"] - NOW) < 3 * 24 * HOUR for v in addict_grants
    )
    expired = sum(1 for v in addict_grants if v["expires_at"] <= NOW) / len(addict_grants)
    assert 0.15 < expired < 0.6
    loyal_no_expiry = [
        v["expires_at"] is None for r in by_segment["brand_loyalist"] for v in r["purposes"].values()
        if v["status"] == "granted"
    ]
    assert sum(loyal_no_expiry) / len(loyal_no_expiry) > 0.4
    # flexible: per purpose, mixed
    for p in PURPOSES:
        assert 0.35 < share("flexible", granted(p)) < 0.75


# --------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------


def test_events_have_the_contract_shape(sample_events: list[dict[str, Any]]) -> None:
    for e in sample_events:
        check_event_shape(e)
    types = collections.Counter(e["event_type"] for e in sample_events)
    assert set(types) == set(EVENT_TYPES)
    assert types["page_view"] > types["product_view"] > types["search"] > types["login"]


def test_event_subjects_belong_to_the_population(sample_events: list[dict[str, Any]]) -> None:
    ids = {subject_id(i) for i in range(SPEC.subjects)}
    assert all(e["subject_id"] in ids for e in sample_events if e["subject_id"] is not None)


def test_event_mix_follows_the_spec(sample_events: list[dict[str, Any]]) -> None:
    n = len(sample_events)
    anonymous = sum(1 for e in sample_events if e["subject_id"] is None)
    purchases = sum(1 for e in sample_events if e["event_type"] == "purchase")
    assert anonymous / n == pytest.approx(SPEC.anonymous_share, abs=0.025)
    assert purchases / n == pytest.approx(SPEC.purchase_share, abs=0.015)
    spec = PopulationSpec(subjects=100, anonymous_share=0.0, purchase_share=0.0)
    assert all(e["subject_id"] and e["event_type"] in CLICK_TYPES for e in events(spec, NOW, 2_000))
    spec = PopulationSpec(subjects=100, anonymous_share=1.0, purchase_share=1.0)
    assert all(e["subject_id"] is None and e["event_type"] == "purchase" for e in events(spec, NOW, 500))


def test_sessions_keep_their_context(sample_events: list[dict[str, Any]]) -> None:
    sessions: dict[str, set[Any]] = collections.defaultdict(set)
    for e in sample_events:
        c = e["context"]
        who = (e["subject_id"], c["device_id"], c["ip"], c["user_agent"], c["referrer"])
        sessions[c["session_id"]].add(who)
    assert all(len(v) == 1 for v in sessions.values())
    assert len(sample_events) / len(sessions) > 3  # customers browse, they do not click once


def test_purchases_add_up(sample_events: list[dict[str, Any]]) -> None:
    for e in sample_events:
        if e["event_type"] == "purchase":
            assert e["total"] == pytest.approx(sum(i["price"] * i["quantity"] for i in e["items"]), abs=0.005)


def test_event_ids_are_unique() -> None:
    ids = [e["event_id"] for e in events(SPEC, NOW, 40_000)]
    assert len(set(ids)) == len(ids)
    assert ids[0] == f"e-{SPEC.seed}-0"
    later = [e["event_id"] for e in events(SPEC, NOW, 1_000, first=40_000)]
    assert not set(later) & set(ids)
    orders = [e["order_id"] for e in events(SPEC, NOW, 40_000) if e["event_type"] == "purchase"]
    assert len(set(orders)) == len(orders)


def test_event_time_default_window() -> None:
    ts = [e["ts"] for e in events(SPEC, NOW, 5_000)]
    assert min(ts) >= NOW - HOUR
    assert max(ts) < NOW + 1_024
    assert max(ts) - min(ts) > 0.9 * HOUR
    start = NOW - 10 * HOUR
    ts = [e["ts"] for e in events(SPEC, NOW, 2_000, start_ts=start)]
    assert start <= min(ts) and max(ts) < NOW + 1_024
    with pytest.raises(ValueError, match="start_ts"):
        events(SPEC, NOW, 10, start_ts=NOW)


def test_event_time_at_a_rate() -> None:
    ts = [e["ts"] for e in events(SPEC, NOW, 10_000, rate_per_s=1_000.0)]
    assert NOW <= min(ts) and max(ts) < NOW + 10_000 + 1_024
    assert abs(ts[-1] - NOW - 10_000) <= 1_024
    ts = [e["ts"] for e in events(SPEC, NOW, 100, start_ts=NOW + 5_000, rate_per_s=10.0)]
    assert NOW + 5_000 <= min(ts) and max(ts) < NOW + 16_000
    with pytest.raises(ValueError, match="rate_per_s"):
        event_bytes(SPEC, NOW, 10, rate_per_s=0)
    with pytest.raises(ValueError, match="count"):
        events(SPEC, NOW, -1)


def test_every_reason_occurs(
    sample_events: list[dict[str, Any]], consent_map: dict[str, dict[str, Any]]
) -> None:
    reasons: collections.Counter[str] = collections.Counter()
    for e in sample_events:
        c = consent_map.get(e["subject_id"]) if e["subject_id"] else None
        for engine in ENGINES:
            reasons[reason(e, c, engine, NOW)] += 1
    expected = {
        "anonymous", "no_consent", "objected", "purpose_denied", "before_grant", "expired",
        "opt_out", "region_blocked", "nothing_permitted", "emitted",
    }
    assert expected <= set(reasons), reasons
    assert all(reasons[r] >= 10 for r in expected), reasons


def test_click_events_are_compact() -> None:
    sizes = [len(raw) for kind, raw, _ in event_bytes(SPEC, NOW, 5_000) if kind == "click"]
    assert 250 < sum(sizes) / len(sizes) < 450


# --------------------------------------------------------------------------
# consent signals, legal bases, objections (issue 11)
# --------------------------------------------------------------------------


def test_signals_decode_with_the_engine_decoders_too(consent_map: dict[str, dict[str, Any]]) -> None:
    n = 0
    for rec in consent_map.values():
        if rec["tcf"] is not None:
            engine_signals.decode_tcf(rec["tcf"])
            n += 1
        if "gpp" in rec:
            engine_signals.decode_gpp(rec["gpp"])
            n += 1
        if "consent_mode" in rec:
            engine_signals.parse_consent_mode(rec["consent_mode"])
            n += 1
    assert n > 1_000


def test_signals_follow_the_jurisdiction(consent_map: dict[str, dict[str, Any]]) -> None:
    from streams.engine.reference_decoders import decode_gpp

    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    for rec in consent_map.values():
        j = rec["jurisdiction"]
        if rec["tcf"] is not None:
            seen[(j, "tcf")] += 1
        if "gpp" in rec:
            for sid, _kind, _data in decode_gpp(rec["gpp"]):
                seen[(j, f"gpp{sid}")] += 1
        if "consent_mode" in rec:
            seen[(j, "consent_mode")] += 1
    kinds = {k for _j, k in seen}
    assert {"tcf", "gpp2", "gpp7", "gpp8", "consent_mode"} <= kinds
    for j, kind in seen:
        if kind == "tcf" or kind == "gpp2":
            assert j in ("EU", "UK")
        elif kind == "gpp7":
            assert j in ("US", "US-CA")
        elif kind == "gpp8":
            assert j == "US-CA"
    assert seen[("EU", "tcf")] > 5 * seen[("EU", "gpp2")] > 0
    assert not any(seen[(j, k)] for j in ("BR", "IN", "CN") for k in ("tcf", "gpp2", "gpp7", "gpp8"))


def test_segments_differ_in_bases_and_objections() -> None:
    spec = PopulationSpec(subjects=10_000, seed=2)
    by_segment: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for i in range(spec.subjects):
        rec = consent_of(spec, i, NOW)
        if rec is not None:
            by_segment[segment_of(spec, i)].append(rec)

    def share(segment: str, pred: Any) -> float:
        return sum(1 for r in by_segment[segment] if pred(r)) / len(by_segment[segment])

    def li(r: dict[str, Any]) -> bool:
        return r["purposes"]["marketing_email"].get("basis") == "legitimate_interest"

    def objected(cls: str) -> Any:
        return lambda r: cls in r.get("objections", ())

    assert share("convenience_seeker", li) > 0.15 > share("privacy_fundamentalist", li)
    assert share("brand_loyalist", li) > 0.03
    assert share("privacy_fundamentalist", objected("direct_marketing")) > 0.15
    assert share("privacy_fundamentalist", objected("profiling")) > 0.07
    assert share("brand_loyalist", objected("direct_marketing")) < 0.04
    assert share("brand_loyalist", objected("profiling")) < 0.02
    signals = {seg: share(seg, lambda r: r["tcf"] is not None or "gpp" in r) for seg in SEGMENTS}
    assert all(0.15 < v < 0.6 for v in signals.values()), signals


def test_legitimate_interest_subjects_get_email(
    sample_events: list[dict[str, Any]], consent_map: dict[str, dict[str, Any]]
) -> None:
    got: collections.Counter[str] = collections.Counter()
    for e in sample_events:
        c = consent_map.get(e["subject_id"]) if e["subject_id"] else None
        if c is not None and c["purposes"]["marketing_email"].get("basis") == "legitimate_interest":
            got[reason(e, c, "email", NOW)] += 1
    assert got["emitted"] >= 10 and got["objected"] >= 1, got


def test_signals_narrow_some_decisions(
    sample_events: list[dict[str, Any]], consent_map: dict[str, dict[str, Any]]
) -> None:
    changed: collections.Counter[tuple[str, str]] = collections.Counter()
    for e in sample_events:
        c = consent_map.get(e["subject_id"]) if e["subject_id"] else None
        if c is None or (c["tcf"] is None and "gpp" not in c and "consent_mode" not in c):
            continue
        bare = {k: v for k, v in c.items() if k not in ("gpp", "consent_mode")} | {"tcf": None}
        for engine in ENGINES:
            with_signals, without = reason(e, c, engine, NOW), reason(e, bare, engine, NOW)
            if with_signals != without:
                assert without != "objected" and with_signals != "emitted", (engine, without, with_signals)
                changed[(engine, with_signals)] += 1
    assert changed[("offers", "purpose_denied")] >= 10, changed
    assert changed[("partner_ads", "purpose_denied")] >= 10, changed
    assert changed[("partner_ads", "opt_out")] >= 5, changed


# --------------------------------------------------------------------------
# churn
# --------------------------------------------------------------------------


def test_churn_updates_move_forward_per_subject() -> None:
    spec = PopulationSpec(subjects=2_000, seed=4)
    last = {r["subject_id"]: r["updated_at"] for r in consent_records(spec, NOW)}
    changes = list(churn(spec, NOW, 3_000))
    assert len(changes) == 3_000
    previous_t = NOW
    for sid, rec in changes:
        if rec is None:
            last[sid] = previous_t  # the tombstone's moment: any later record wins
            continue
        check_consent_shape(rec)
        assert rec["subject_id"] == sid
        assert rec["updated_at"] > last.get(sid, -1), sid
        assert rec["updated_at"] > previous_t - 1
        last[sid] = previous_t = rec["updated_at"]


def test_churn_has_every_kind_of_change() -> None:
    spec = PopulationSpec(subjects=2_000, seed=4)
    state: dict[str, dict[str, Any] | None] = {r["subject_id"]: r for r in consent_records(spec, NOW)}
    seen: collections.Counter[str] = collections.Counter()
    segments: collections.Counter[str] = collections.Counter()
    for sid, rec in churn(spec, NOW, 3_000):
        segments[segment_of(spec, int(sid[2:]))] += 1
        before = state.get(sid)
        state[sid] = rec
        if rec is None:
            seen["erasure"] += 1
            continue
        if before is None:
            seen["first_consent"] += 1
            continue
        t = rec["updated_at"]
        for p in PURPOSES:
            old, new = before["purposes"][p], rec["purposes"][p]
            if old["status"] == "granted" and new["status"] == "withdrawn":
                seen["withdrawal"] += 1
            if new["status"] == "granted" and new["granted_at"] == t:
                seen["grant"] += 1
            exp = new["expires_at"]
            if exp is not None and exp != old["expires_at"] and exp < t + 31 * 60_000:
                seen["short_expiry"] += 1
        if rec["gpc"] and not before["gpc"]:
            seen["gpc_opt_out"] += 1
        if rec["jurisdiction"] != before["jurisdiction"]:
            seen["move"] += 1
        if rec["categories"] != before["categories"]:
            seen["category"] += 1
        if len(rec.get("objections", ())) > len(before.get("objections", ())):
            seen["objection"] += 1
    kinds = ("erasure", "first_consent", "withdrawal", "grant", "short_expiry", "gpc_opt_out", "move", "category",
             "objection")
    for kind in kinds:
        assert seen[kind] > 0, (kind, seen)
    # control addicts are 10% of subjects but change their minds most often
    assert segments["control_addict"] == max(segments.values())


def test_churn_is_deterministic_and_validates() -> None:
    assert list(churn(SPEC, NOW, 200)) == list(churn(SPEC, NOW, 200))
    ts = [rec["updated_at"] for _, rec in churn(SPEC, NOW, 50, interval_ms=1_000) if rec is not None]
    assert all(t % 1_000 == 0 and t > NOW for t in ts)
    with pytest.raises(ValueError, match="interval_ms"):
        churn(SPEC, NOW, 1, interval_ms=0)


# --------------------------------------------------------------------------
# PII-rich records
# --------------------------------------------------------------------------


def strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [s for k, v in enumerate(value) for s in strings(v, f"{path}.{k}")]
    return []


@pytest.mark.parametrize("i", range(12))
def test_pii_rich_event_marks_every_string(i: int) -> None:
    e = pii_rich_event(i)
    check_event_shape(e)
    assert e["event_type"] == EVENT_TYPES[i % len(EVENT_TYPES)]
    for path, value in strings(e):
        if path == "event_type":
            continue
        assert value == f"{PII_SENTINEL}-{path}-{i}", path
    assert e["subject_id"] == pii_rich_consent(i)["subject_id"]


def test_pii_rich_consent_grants_everything() -> None:
    e, c = pii_rich_event(5), pii_rich_consent(5)
    check_consent_shape(c)
    assert c["subject_id"].startswith(PII_SENTINEL)
    for engine in ENGINES:
        assert reason(e, c, engine, NOW) == "emitted", engine
    assert pii_rich_event(3) == pii_rich_event(3) and pii_rich_event(3) is not pii_rich_event(3)


def test_module_uses_no_global_random() -> None:
    modules = [info.name for info in pkgutil.iter_modules(pop.__path__)]
    assert {"event_stream", "consent", "consent_churn", "segments", "signals", "subjects"} <= set(modules)
    for name in modules:
        source = (Path(pop.__path__[0]) / f"{name}.py").read_text()
        for call in ("random.random(", "random.choice(", "random.randint(", "random.shuffle(", "random.seed("):
            assert call not in source
