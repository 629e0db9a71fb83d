"""Consent state: parsing, last-writer-wins, tombstones, fail-closed blocking, binary form."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine import consent as C
from streams.engine import reference
from streams.engine.consent import (
    BLOCKED, DELETED, NO_EXPIRY, NOT_GRANTED, MalformedConsent, Vocabulary, merge, parse_consent,
    state_from_bytes, state_to_bytes,
)

from .helpers import CATEGORIES, PURPOSES, consent

V = Vocabulary(PURPOSES, CATEGORIES)


def test_parse_builds_compact_state():
    rec = consent(granted=("personalization", "analytics"), categories=("browsing",), jurisdiction="US-CA",
                  gpc=True, granted_at=100, expires_at=500)
    s = parse_consent(rec, "s-1", 7, V)
    assert C.wide(s).updated_at == rec["updated_at"] and C.wide(s).offset == 7
    assert C.wide(s).granted == 0b1001
    assert C.wide(s).granted_at == (100, -1, -1, 100, -1, -1)
    assert C.wide(s).expires_at == (500, -1, -1, 500, -1, -1)
    assert C.wide(s).categories == 0b1
    assert C.wide(s).jurisdiction == "US-CA" and C.wide(s).gpc is True and C.wide(s).flags == 0
    assert C.wide(s).vocab == V.fingerprint
    assert type(s) is tuple and [type(x) for x in s] == [int, int, tuple, bytes]


def test_no_expiry_sentinel_and_only_granted_counts():
    rec = consent(granted=("personalization",), denied_status="withdrawn")
    rec["purposes"]["support"] = {"status": "denied", "granted_at": 5, "expires_at": 9}
    s = parse_consent(rec, "s-1", 0, V)
    assert C.wide(s).granted == 1
    assert C.wide(s).expires_at[0] == NO_EXPIRY
    assert C.wide(s).granted_at[5] == NOT_GRANTED


def test_unknown_purposes_and_categories_ignored_but_counted():
    rec = consent()
    rec["purposes"]["telepathy"] = {"status": "granted", "granted_at": 1, "expires_at": None}
    rec["purposes"]["weird"] = "not even an object"
    rec["categories"]["dreams"] = True
    counts: dict[str, int] = {}
    s = parse_consent(rec, "s-1", 0, V, counts)
    assert counts == {"unknown_purpose": 2, "unknown_category": 1}
    assert s == parse_consent(consent(), "s-1", 0, V)


@pytest.mark.parametrize("mutate, error_class, field", [
    (lambda r: r.update(subject_id="s-2"), "key_mismatch", "subject_id"),
    (lambda r: r.pop("subject_id"), "invalid_consent", "subject_id"),
    (lambda r: r.update(updated_at="yesterday"), "invalid_consent", "updated_at"),
    (lambda r: r.update(updated_at=True), "invalid_consent", "updated_at"),
    (lambda r: r["purposes"]["personalization"].update(status="maybe"), "invalid_consent", "status"),
    (lambda r: r["purposes"]["personalization"].update(granted_at=None), "invalid_consent", "granted_at"),
    (lambda r: r["purposes"]["personalization"].update(expires_at="never"), "invalid_consent", "expires_at"),
    (lambda r: r["purposes"].update(personalization=[]), "invalid_consent", "personalization"),
    (lambda r: r.update(purposes=[]), "invalid_consent", "purposes"),
    (lambda r: r["categories"].update(browsing="yes"), "invalid_consent", "browsing"),
    (lambda r: r.update(jurisdiction=None), "invalid_consent", "jurisdiction"),
    (lambda r: r.update(jurisdiction="X" * 65), "invalid_consent", "jurisdiction"),
    (lambda r: r.pop("gpc"), "invalid_consent", "gpc"),
    (lambda r: r.update(gpc=0), "invalid_consent", "gpc"),
    (lambda r: r.update(tcf=5), "invalid_consent", "tcf"),
])
def test_malformed_records_are_rejected_naming_the_field(mutate, error_class, field):
    rec = consent(jurisdiction="EU-SECRET-VALUE")
    mutate(rec)
    with pytest.raises(MalformedConsent) as ei:
        parse_consent(rec, "s-1", 0, V)
    assert ei.value.error_class == error_class
    assert field in ei.value.message
    assert "SECRET-VALUE" not in ei.value.message and "s-2" not in ei.value.message  # G6: no values


def test_readable_updated_at_travels_with_the_error():
    rec = consent(updated_at=1234, gpc="no")
    with pytest.raises(MalformedConsent) as ei:
        parse_consent(rec, "s-1", 0, V)
    assert ei.value.updated_at == 1234
    with pytest.raises(MalformedConsent) as ei:
        parse_consent(consent(updated_at="x"), "s-1", 0, V)
    assert ei.value.updated_at is None


# ----------------------------------------------------------------- merge
def _apply(records, start=None):
    state = start
    for off, rec in records:
        try:
            new = merge(state, "s-1", rec, off, V)
        except MalformedConsent as bad:
            new = merge(state, "s-1", bad, off, V)
        state = None if new is DELETED else new
    return state


def test_greatest_updated_at_wins_whatever_the_order():
    old = consent(updated_at=100, granted=("personalization",))
    new = consent(updated_at=200, granted=("support",))
    a = _apply([(1, old), (2, new)])
    b = _apply([(1, new), (2, old)])
    assert C.wide(a).granted == C.wide(b).granted == 1 << PURPOSES.index("support")
    assert C.wide(a).updated_at == C.wide(b).updated_at == 200


def test_ties_go_to_the_later_offset_and_replays_are_idempotent():
    x = consent(updated_at=100, granted=("personalization",))
    y = consent(updated_at=100, granted=("support",))
    s = _apply([(1, x), (2, y)])
    assert C.wide(s).granted == 1 << 5 and C.wide(s).offset == 2
    again = merge(s, "s-1", x, 1, V)  # replay of the older offset
    assert again is s


def test_tombstone_deletes_and_later_records_start_afresh():
    assert merge(parse_consent(consent(), "s-1", 1, V), "s-1", None, 2, V) is DELETED
    assert merge(None, "s-1", None, 2, V) is DELETED
    s = _apply([(1, consent(updated_at=500)), (2, None), (3, consent(updated_at=100))])
    assert C.wide(s).updated_at == 100


def test_malformed_newest_record_blocks_until_a_valid_newer_one():
    good = consent(updated_at=100)
    s = _apply([(1, good), (2, MalformedConsent("json_invalid", "x"))])
    assert C.wide(s).flags & BLOCKED and C.wide(s).granted == 0 and C.wide(s).categories == 0
    assert C.wide(s).updated_at == 100 and C.wide(s).offset == 2            # keeps the last good updated_at
    # older valid record arriving later: still blocked (it would have lost to the last good one)
    assert C.wide(_apply([(3, consent(updated_at=50))], s)).flags & BLOCKED
    # a valid record later in the log, not older than the last good: unblocks
    t = _apply([(3, consent(updated_at=100, granted=("support",)))], s)
    assert C.wide(t).flags == 0 and C.wide(t).granted == 1 << 5


def test_malformed_with_readable_updated_at():
    good = consent(updated_at=100)
    # older than the current state: would have lost anyway -> state unchanged
    base = _apply([(1, good)])
    assert merge(base, "s-1", MalformedConsent("invalid_consent", "x", 90), 2, V) is base
    # newer: blocks with its own updated_at as the bar
    s = _apply([(1, good), (2, consent(updated_at=300, gpc="bad"))])
    assert C.wide(s).flags & BLOCKED and C.wide(s).updated_at == 300
    assert C.wide(_apply([(3, consent(updated_at=200))], s)).flags & BLOCKED
    assert C.wide(_apply([(3, consent(updated_at=300))], s)).flags == 0
    # key mismatch is malformed
    s = _apply([(1, good), (2, consent(subject="s-2", updated_at=400))])
    assert C.wide(s).flags & BLOCKED


def test_malformed_first_record_blocks_a_new_subject():
    s = _apply([(5, MalformedConsent("avro_invalid", "x"))])
    assert C.wide(s).flags & BLOCKED and C.wide(s).updated_at == -1
    assert C.wide(_apply([(6, consent(updated_at=0))], s)).flags == 0


def test_state_of_another_vocabulary_is_not_trusted():
    other = Vocabulary(tuple(reversed(PURPOSES)), CATEGORIES)
    s = parse_consent(consent(updated_at=500), "s-1", 1, other)
    # merging under V ignores it: an older record wins
    t = merge(s, "s-1", consent(updated_at=1), 2, V)
    assert C.wide(t).vocab == V.fingerprint and C.wide(t).updated_at == 1


# ----------------------------------------------------------------- LWW property
_rec = st.builds(
    lambda u, g, j: consent(updated_at=u, granted=tuple(p for p, on in zip(PURPOSES, g) if on), jurisdiction=j),
    st.integers(0, 20), st.lists(st.booleans(), min_size=6, max_size=6), st.sampled_from(["EU", "US", "UK"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=st.lists(_rec, min_size=1, max_size=12), data=st.data())
def test_lww_any_arrival_order(recs, data):
    """Records carry distinct offsets; applied in any order, the winner is max (updated_at, offset)."""
    offsets = data.draw(st.lists(st.integers(0, 10_000), min_size=len(recs), max_size=len(recs), unique=True))
    tagged = list(zip(offsets, recs))
    order = data.draw(st.permutations(tagged))
    got = _apply(order)
    off, winner = max(tagged, key=lambda t: (t[1]["updated_at"], t[0]))
    assert got == parse_consent(winner, "s-1", off, V)


_log_entry = st.one_of(
    _rec,
    st.none(),
    st.tuples(st.just("malformed"), st.one_of(st.none(), st.integers(0, 20))),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_log_entry, max_size=14))
def test_merge_agrees_with_reference_fold(entries):
    """Tombstones and malformed records too: the engine's state matches reference.current_consent."""
    log = list(enumerate(entries))
    state = None
    for off, rec in log:
        if isinstance(rec, tuple):
            rec = MalformedConsent("invalid_consent", "x", rec[1])
        new = merge(state, "s-1", rec, off, V)
        state = None if new is DELETED else new
    want = reference.current_consent(log)
    if want is None:
        assert state is None or C.wide(state).flags & BLOCKED
    else:
        assert state is not None and not C.wide(state).flags & BLOCKED
        assert C.wide(state).updated_at == want["updated_at"]
        assert C.wide(state).granted == C.wide(parse_consent(want, "s-1", 0, V)).granted


# ----------------------------------------------------------------- binary form
_i64 = st.integers(-(1 << 63), (1 << 63) - 1)


@st.composite
def _states(draw):
    n = draw(st.integers(0, 64))
    granted = draw(st.integers(0, (1 << n) - 1)) if n else 0
    ga = tuple(draw(_i64) if granted >> i & 1 else -1 for i in range(n))
    ea = tuple(draw(_i64) if granted >> i & 1 else -1 for i in range(n))
    return C.make_state(draw(_i64), draw(_i64), granted, ga, ea, draw(st.integers(0, (1 << 64) - 1)),
                        draw(st.text(max_size=20).filter(lambda s: len(s.encode()) <= 64)), draw(st.booleans()),
                        draw(st.integers(0, 255)), draw(st.integers(0, (1 << 32) - 1)),
                        draw(st.integers(0, (1 << n) - 1)), draw(st.integers(0, (1 << 64) - 1)))


@settings(max_examples=500, deadline=None)
@given(_states())
def test_state_bytes_round_trip(state):
    data = state_to_bytes(state)
    assert isinstance(data, bytes)
    assert state_from_bytes(data) == state
    assert state_to_bytes(state_from_bytes(data)) == data


def test_state_bytes_are_compact_and_stable():
    s = parse_consent(consent(granted=("personalization",), jurisdiction="EU"), "s-1", 3, V)
    data = state_to_bytes(s)
    assert len(data) == 56 + 16 + 3
    assert data[0] == 2  # format version (2: objected and gates masks)
    with pytest.raises(ValueError):
        state_from_bytes(data[:-1])
    with pytest.raises(ValueError):
        state_from_bytes(b"\x03" + data[1:])


def test_version_1_state_bytes_are_read_but_never_trusted():
    """A store written before bases, objections and signals: its bytes still read (the
    worker does not stop), but the state's fingerprint is of the old formula, so it is
    no consent under any vocabulary now and the next record of the subject replaces it."""
    import struct
    import zlib
    old_fp = zlib.crc32(("\x1f".join(PURPOSES) + "\x1e" + "\x1f".join(CATEGORIES)).encode())
    v1 = (struct.pack(">BBBBIqqQQ", 1, 0, 0, len(PURPOSES), old_fp, 100, 3, 0b1, 0b1)
          + struct.pack(">qq", 50, C.NO_EXPIRY) + b"\x02EU")
    s = state_from_bytes(v1)
    assert C.wide(s).granted == 1 and C.wide(s).objected == 0 and C.wide(s).gates == 0
    assert C.wide(s).vocab == old_fp != V.fingerprint
    newer = merge(s, "s-1", consent(updated_at=1), 4, V)  # older updated_at, yet it wins: s is void
    assert C.wide(newer).vocab == V.fingerprint and C.wide(newer).updated_at == 1
