"""The pure parts of `pfilter erase` (streams.erase): no broker."""

from __future__ import annotations

import orjson

from streams.crypto import Kek, KeyRing, encrypt_value, new_kek_text
from streams.engine.policy import load_policy
from streams.erase import (
    Coordinate,
    EngineNotice,
    ErasureReceipt,
    classify,
    compaction_bound,
    expected_notices,
    notice_matches,
    pending_notices,
)
from streams.kafka.partitioner import partition_for

TOMB = Coordinate("consent", 2, 100)


def test_expected_notices_use_each_engines_subject_reference() -> None:
    policy = load_policy(secret=b"unit-test-secret")
    got = expected_notices(policy, "c-42", 6)
    assert [n.engine for n in got] == ["offers", "email", "partner_ads"]
    by = {n.engine: n for n in got}
    assert by["offers"].reference == "c-42" and not by["offers"].pseudonymized
    ref = by["partner_ads"].reference
    assert ref != "c-42" and by["partner_ads"].pseudonymized
    assert ref == next(e for e in policy.engines if e.name == "partner_ads").subject_ref("c-42")
    for n in got:  # the partition the engine's reference hashes to, not the subject id's
        assert n.partition == partition_for(n.reference.encode(), 6)


def test_notice_matches_engine_reference_and_source_coordinates() -> None:
    want = EngineNotice("offers", False, 0, reference="c-1")
    base = {"engine": "offers", "subject_id": "c-1", "erased_at": 1, "policy_version": "v"}
    assert notice_matches(base, want, TOMB)  # no coordinates: the start offset decides
    assert not notice_matches({**base, "engine": "email"}, want, TOMB)
    assert not notice_matches({**base, "subject_id": "c-2"}, want, TOMB)
    src = {"source_topic": "consent", "source_partition": 2}
    assert notice_matches({**base, **src, "source_offset": 100}, want, TOMB)
    assert notice_matches({**base, **src, "source_offset": 101}, want, TOMB)  # a later tombstone
    assert not notice_matches({**base, **src, "source_offset": 99}, want, TOMB)  # an earlier erasure
    assert not notice_matches({**base, **src, "source_partition": 3, "source_offset": 100}, want, TOMB)
    assert not notice_matches({**base, **src, "source_topic": "other", "source_offset": 100}, want, TOMB)


def test_compaction_bound_from_the_topic_settings() -> None:
    cfg = {"min.compaction.lag.ms": 0, "max.compaction.lag.ms": 3_600_000, "delete.retention.ms": 86_400_000,
           "segment.ms": 600_000}
    c = compaction_bound("personalization.keys", cfg)
    assert c.superseded_gone_ms == 4_200_000
    assert c.tombstone_kept_ms == 86_400_000
    assert c.tombstone_gone_ms == 4_200_000 + 86_400_000
    lagged = compaction_bound("consent", {**cfg, "min.compaction.lag.ms": 7_200_000})
    assert lagged.superseded_gone_ms == 7_200_000 + 600_000  # never compacted before the min lag
    assert lagged.tombstone_kept_ms == 7_200_000 + 86_400_000
    unknown = compaction_bound("consent", {**cfg, "segment.ms": None})
    assert unknown.superseded_gone_ms is None and unknown.tombstone_gone_ms is None


def test_classify_counts_envelopes_under_gone_keys_as_unreadable() -> None:
    ring = KeyRing(Kek.from_text(new_kek_text()))
    old = ring.ensure("s", 1)
    env = encrypt_value(ring, "s", "email", "x@example.com")
    nested = {"event_id": "e", "shipping_address": {"street": env}}
    assert classify({"event_id": "e", "email": env}, set()) == "unreadable"
    assert classify(nested, set()) == "unreadable"
    assert classify({"event_id": "e", "items": [{"note": env}]}, set()) == "unreadable"
    assert classify({"event_id": "e", "url": "https://shop.example/"}, set()) == "plaintext"
    assert classify({"event_id": "e", "email": env}, {old.key_version}) == "readable"
    assert classify({"event_id": "e", "email": env}, {old.key_version + 1}) == "unreadable"


def test_pending_notices_are_reconfirms_whose_expiry_is_still_to_come() -> None:
    now = 1_000_000
    def n(purpose: str, exp: int | None, kind: str) -> dict:
        return {"purpose": purpose, "expires_at": exp, "kind": kind}
    assert pending_notices([], now) == 0
    assert pending_notices([n("a", now + 1, "reconfirm")], now) == 1
    assert pending_notices([n("a", now + 1, "reconfirm"), n("a", now + 1, "expired")], now) == 0
    assert pending_notices([n("a", now - 1, "reconfirm")], now) == 0       # its expired notice is due
    assert pending_notices([n("a", now + 1, "reconfirm"), n("a", now + 2, "reconfirm")], now) == 2  # renewed
    assert pending_notices([n("a", None, "reconfirm")], now) == 0


def test_receipt_json_keeps_pseudonyms_out_and_says_confirmed() -> None:
    r = ErasureReceipt("c-1", TOMB, Coordinate("personalization.keys", 2, 7),
                       notices=[EngineNotice("partner_ads", True, 1, 5, reference="ab12cd")])
    assert r.confirmed is False  # the worker has not passed the tombstone
    r.worker_passed = True
    d = r.to_json()
    assert d["confirmed"] is True
    assert "ab12cd" not in orjson.dumps(d).decode()
    r.notices[0].offset = None
    assert r.confirmed is False


def test_a_worker_restored_after_the_key_tombstone_creates_a_new_key_version() -> None:
    """What `pfilter erase` leaves in personalization.keys: the key record, then its tombstone.
    A worker that restores from that topic and meets the subject again makes a new key."""
    kek = Kek.from_text(new_kek_text())
    first = KeyRing(kek).ensure("s", 1)
    restored = KeyRing(kek)
    restored.add_record("s", first.to_json())
    restored.add_record("s", None)  # the tombstone erase produced
    assert "s" not in restored
    again = restored.ensure("s", 2)
    assert again is not None and again.key_version != first.key_version
    assert again.wrapped_key != first.wrapped_key
