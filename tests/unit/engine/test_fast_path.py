"""The engine's fast paths are byte-for-byte the codec paths they replace.

- ``Filter.decide``: decision records and engine outputs assembled from fragments
  and per-state summaries == the dicts of ``decide.decide`` through the codecs
  (both output formats, random policies, consents and events);
- ``Filter.apply_consent``: ``consent.parse_wellformed`` accepts exactly what the
  codec check plus ``parse_consent`` accept, with the same state and counts;
- the compiled shape copiers == ``decide.shape_copy``; the unrolled Avro varints ==
  the general loop; ``state_from_bytes`` round-trips and rejects like before.
"""

from __future__ import annotations

import copy
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine import codecs as C
from streams.engine.codecs import varint
from streams.engine.batch import Filter, TopicNames
from streams.engine.codecs import DecodeError, get_codec
from streams.engine.consent import (
    MalformedConsent, make_state, merge, parse_consent, parse_wellformed, state_from_bytes, state_to_bytes,
)
from streams.engine.decide import compile_shape, shape_copy
from streams.engine.policy import CONTEXT_SHAPE, EVENT_PAYLOADS, compile_policy, load_policy
from tests.property.strategies import consents, events, policies

from streams.crypto import KeyRing

from .helpers import DAY, HOUR, NOW, SECRET, click, consent, counter_nonces, kek_for_tests, purchase

T = TopicNames()
POLICY = load_policy(secret=SECRET)


def _key_records() -> list:
    ring = KeyRing(kek_for_tests())
    subjects = [f"s-{i}" for i in range(8)]
    for s in subjects:
        ring.ensure(s, NOW)
    return [ring.record(s, ring.current_version(s)) for s in subjects]


#: One data key per test subject, shared by both paths so that, with the same nonces,
#: encrypted fields are byte-for-byte comparable (CONTRACT §10)
KEY_RECORDS = _key_records()


def _ring() -> KeyRing:
    ring = KeyRing(kek_for_tests())
    for rec in KEY_RECORDS:
        ring.add_record(rec.subject_id, rec)
    return ring


class CodecPathFilter(Filter):
    """The filter without its fast decision path (every record through the codecs)."""

    def _fragments(self):
        return None


def _formats(fmt_in: str, fmt_out: str) -> dict[str, str]:
    return {T.clickstream: fmt_in, T.purchases: fmt_in, T.consent: fmt_in, "output": fmt_out}


def _event_record(ev: dict, fmt: str, offset: int, partition: int = 3, key: bytes | None = None) -> tuple:
    kind = "purchase_event" if ev.get("event_type") == "purchase" else "click_event"
    topic = T.purchases if kind == "purchase_event" else T.clickstream
    if key is None and ev.get("subject_id") is not None:
        key = ev["subject_id"].encode()
    return (topic, partition, offset, key, get_codec(kind, fmt).encode(ev), None, NOW)


def _consent_record(rec: dict | None, subject: str, fmt: str, offset: int) -> tuple:
    value = None if rec is None else get_codec("consent_record", fmt).encode(rec)
    return (T.consent, 0, offset, subject.encode(), value, None, NOW)


def _same(policy, fmt_in: str, fmt_out: str, consent_recs: list, event_recs: list, clock_values=None) -> None:
    """Both filters produce the same records and counters."""
    results = []
    for cls in (Filter, CodecPathFilter):
        ticks = iter(clock_values) if clock_values is not None else None
        f = cls(policy, T, _formats(fmt_in, fmt_out), store={},
                clock=(lambda: next(ticks)) if ticks is not None else (lambda: NOW),
                keyring=_ring(), nonces=counter_nonces())
        c = f.apply_consent(consent_recs)
        d = f.decide(event_recs)
        d2 = f.decide(event_recs)  # summaries cached now
        assert (f._fast is not None) == (cls is Filter)  # the fast path did run
        results.append([(r.records, r.emitted, r.dropped, r.dlq, r.decided, r.ignored) for r in (c, d, d2)])
    assert results[0] == results[1]


SUBJECTS = ["s-0", "s-1", "s-2"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=policies(), data=st.data(), fmt_in=st.sampled_from(["json", "avro"]),
       fmt_out=st.sampled_from(["json", "avro"]))
def test_fast_decide_is_the_codec_path(doc, data, fmt_in, fmt_out):
    policy = compile_policy(doc, secret=SECRET)
    crecs = []
    for i, s in enumerate(SUBJECTS[:2]):
        rec = data.draw(consents(subject=s, ts=NOW - 5 * HOUR, now=NOW + 4 * HOUR))
        crecs.append(_consent_record(rec, s, fmt_in, i))
    erecs = []
    for i in range(data.draw(st.integers(1, 6))):
        ev = data.draw(events(subject=data.draw(st.sampled_from(SUBJECTS))))
        if data.draw(st.integers(0, 5)) == 0:
            ev["subject_id"] = None
        try:
            erecs.append(_event_record(ev, fmt_in, 100 + i))
        except C.EncodeError:
            continue  # the strategy's event does not fit Avro (not what is tested here)
    _same(policy, fmt_in, fmt_out, crecs, erecs)


@pytest.mark.parametrize("fmt_in", ["json", "avro"])
@pytest.mark.parametrize("fmt_out", ["json", "avro"])
def test_fast_decide_edge_cases(fmt_in, fmt_out):
    crecs = [
        _consent_record(consent("s-1"), "s-1", fmt_in, 1),
        _consent_record(consent("s-2", gpc=True, jurisdiction="CN"), "s-2", fmt_in, 2),
        _consent_record(consent("s-3", expires_at=NOW - HOUR), "s-3", fmt_in, 3),
        _consent_record(consent("s-4", granted_at=NOW + DAY), "s-4", fmt_in, 4),
        (T.consent, 0, 5, b"s-5", b"\x00garbage", None, NOW),  # blocked
        _consent_record(consent("s-6", granted=(), categories=()), "s-6", fmt_in, 6),
    ]
    evs = []
    for i, s in enumerate(["s-1", "s-2", "s-3", "s-4", "s-5", "s-6", "s-7", None]):
        evs.append(_event_record(click(subject=s, event_id=f"e-{i}"), fmt_in, 10 + i))
        evs.append(_event_record(purchase(subject=s, event_id=f"p-{i}\u00e9\"\\"), fmt_in, 30 + i))
    evs.append(_event_record(click(subject="s-1"), fmt_in, 51, key=b"\xff"))
    evs.append(_event_record(click(subject="s-1"), fmt_in, 52, key=b"s-2"))
    evs.append((T.clickstream, 0, 53, b"s-1", None, None, NOW))
    evs.append((T.clickstream, 0, 54, b"s-1", b"{", None, NOW))
    evs.append(_event_record(click(subject="s-1", event_id=""), fmt_in, 55))
    for batch in ([e] for e in evs):
        try:
            _same(POLICY, fmt_in, fmt_out, crecs, batch)
        except C.EncodeError:  # a DLQ decision Avro cannot hold: raised by both paths alike
            with pytest.raises(C.EncodeError):
                CodecPathFilter(POLICY, T, _formats(fmt_in, fmt_out), clock=lambda: NOW).decide(batch)
    # a partition no broker has (beyond int32): both paths refuse the batch alike
    big = [_event_record(click(subject="s-1"), fmt_in, 50, partition=2**40)]
    for cls in (Filter, CodecPathFilter):
        with pytest.raises(ValueError, match="partition"):
            cls(POLICY, T, _formats(fmt_in, fmt_out), clock=lambda: NOW).decide(big)
    # a clock that is not an int, or not in the 64-bit range: the codec path decides
    _same(POLICY, fmt_in, "json", crecs, evs[:6], clock_values=[NOW + 0.5] * 40)
    _same(POLICY, fmt_in, "json", crecs, evs[:6], clock_values=[2**63] * 40)


def test_summary_cache_follows_the_store():
    f = Filter(POLICY, T, _formats("json", "json"), store={}, clock=lambda: NOW)
    ev = [_event_record(click(subject="s-1"), "json", 1)]
    f.apply_consent([_consent_record(consent("s-1"), "s-1", "json", 1)])
    assert f.decide(ev).emitted["offers"] == 1
    f.apply_consent([_consent_record(consent("s-1", updated_at=NOW - HOUR, granted=()), "s-1", "json", 2)])
    res = f.decide(ev)
    assert res.emitted["offers"] == 0 and res.dropped == {"purpose_denied": 3}
    f.store["s-1"] = state_from_bytes(state_to_bytes(f.store["s-1"]))  # an equal state, another object
    assert f.decide(ev).dropped == {"purpose_denied": 3}
    f.apply_consent([(T.consent, 0, 3, b"s-1", None, None, NOW)])
    assert "s-1" not in f._summary_cache
    assert f.decide(ev).dropped == {"no_consent": 3}


# ------------------------------------------------------------------ consent fast path
def _reference_parse(codec, doc, subject, offset, vocab, counts):
    """What apply_consent did before the fast path: codec check, then parse."""
    try:
        codec.check(copy.deepcopy(doc))
        return parse_consent(doc, subject, offset, vocab, counts)
    except (DecodeError, MalformedConsent):
        return None


_VALUES = [None, 0, 1, -1, 2**63, -(2**63) - 1, 2**63 - 1, True, False, 1.5, "", "granted", "denied",
           "withdrawn", "x", [], {}, {"status": "granted"}]


def _mutate(rec: dict, rnd: random.Random) -> dict:
    rec = copy.deepcopy(rec)
    for _ in range(rnd.randrange(1, 4)):
        where = rnd.randrange(5)
        if where == 0:
            rec[rnd.choice(["subject_id", "updated_at", "jurisdiction", "gpc", "tcf", "purposes", "categories"])] = \
                rnd.choice(_VALUES + ["é" * 17, "x" * 65])
        elif where == 1 and isinstance(rec.get("purposes"), dict) and rec["purposes"]:
            p = rnd.choice(list(rec["purposes"]))
            entry = rec["purposes"][p]
            if isinstance(entry, dict):
                entry[rnd.choice(["status", "granted_at", "expires_at"])] = rnd.choice(_VALUES)
            else:
                rec["purposes"][p] = rnd.choice(_VALUES)
        elif where == 2 and isinstance(rec.get("purposes"), dict):
            rec["purposes"]["not_in_policy"] = rnd.choice(
                [{"status": "granted", "granted_at": None, "expires_at": None}, {"status": "bogus"}, 3])
        elif where == 3 and isinstance(rec.get("categories"), dict):
            rec["categories"][rnd.choice(["browsing", "unknown_cat"])] = rnd.choice(_VALUES)
        else:
            rec.pop(rnd.choice(list(rec)), None)
    return rec


def test_parse_wellformed_is_check_plus_parse():
    codec = get_codec("consent_record", "json")
    vocab = POLICY.vocab
    rnd = random.Random(11)
    accepted = 0
    for i in range(4000):
        rec = consent("s-1", granted_at=NOW - rnd.randrange(5) * DAY,
                      expires_at=rnd.choice([None, NOW + DAY]), gpc=rnd.random() < 0.3)
        if rnd.random() < 0.8:
            rec = _mutate(rec, rnd)
        offset = rnd.choice([i, 2**63, -1])
        c1: dict[str, int] = {}
        c2: dict[str, int] = {}
        try:
            want = _reference_parse(codec, copy.deepcopy(rec), "s-1", offset, vocab, c1)
        except ValueError:  # parse_consent refuses the offset itself
            want = "error"
        got = parse_wellformed(copy.deepcopy(rec), "s-1", offset, vocab, c2)
        if got is not None:
            accepted += 1
            assert got == want and c1 == c2, rec
        elif want not in (None, "error"):
            pytest.fail(f"fast path refused a record the codec path accepts: {rec!r}")
        else:
            assert c2 == {}
    assert accepted > 500


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_apply_consent_fast_path_matches_merge(fmt):
    """Store and results of apply_consent == merge over the codec's decode, record by record."""
    rnd = random.Random(5)
    codec = get_codec("consent_record", fmt)
    recs = []
    for i in range(600):
        s = f"s-{rnd.randrange(20)}"
        r = consent(s, updated_at=NOW - rnd.randrange(5) * HOUR, gpc=rnd.random() < 0.5)
        if rnd.random() < 0.3:
            r = _mutate(r, rnd)
        try:
            value = codec.encode(r)
        except C.EncodeError:
            value = b'{"subject_id": 1}' if fmt == "json" else b"\x00\x00"
        recs.append((T.consent, 0, i, s.encode(), value if rnd.random() > 0.05 else None, None, NOW))
    f = Filter(POLICY, T, _formats(fmt, "json"), store={}, clock=lambda: NOW)
    res = f.apply_consent(recs)
    store: dict = {}
    ignored: dict = {}
    for _t, _p, offset, key, value, _h, _ts in recs:
        s = key.decode()
        if value is None:
            store.pop(s, None)
            continue
        try:
            doc = codec.decode(value)
            new = merge(store.get(s), s, doc, offset, POLICY.vocab, ignored)
        except DecodeError as exc:
            new = merge(store.get(s), s, MalformedConsent(exc.error_class, "m"), offset, POLICY.vocab)
        except MalformedConsent as exc:
            new = merge(store.get(s), s, exc, offset, POLICY.vocab)
        store[s] = new
    assert f.store == store and res.ignored == ignored


# ------------------------------------------------------------------ shapes, varints, state bytes
def _random_value(rnd: random.Random, depth: int = 0):
    k = rnd.randrange(8 if depth < 3 else 5)
    if k == 0:
        return None
    if k == 1:
        return rnd.randrange(10)
    if k == 2:
        return "s"
    if k == 3:
        return 1.5
    if k == 4:
        return False
    if k == 5:
        return [_random_value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    keys = ["country", "region", "city", "lat", "lon", "ip", "geo", "product_id", "category", "quantity",
            "price", "street", "a", "b", "zz"]
    return {rnd.choice(keys): _random_value(rnd, depth + 1) for _ in range(rnd.randrange(6))}


def test_compiled_shapes_copy_like_shape_copy():
    shapes = [CONTEXT_SHAPE, *(s for p in EVENT_PAYLOADS.values() for s in p.values() if s is not None),
              [None], {"a": [[{"b": None}]], "c": None}]
    rnd = random.Random(3)
    for shape in shapes:
        f = compile_shape(shape)
        for _ in range(3000):
            v = _random_value(rnd)
            a, b = shape_copy(v, shape), f(v)
            assert repr(a) == repr(b) and type(a) is type(b)
    assert compile_shape(None) is None


def _zigzag_loop(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 127:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def test_avro_varints_match_the_general_loop():
    rnd = random.Random(1)
    values = [0, 1, -1, 63, 64, -64, -65, 2**63 - 1, -(2**63)]
    values += [rnd.randrange(-(2**63), 2**63) >> rnd.randrange(64) for _ in range(20000)]
    for v in values:
        w = bytes(varint.write_long(v))
        assert w == _zigzag_loop(v)
        buf = b"\x07" + w + b"\x05"
        if w[0] >= 128:
            assert varint.read_varint(buf, 1) == varint.read_varint_long(buf, 1) == (v, 1 + len(w))
    for _ in range(20000):
        buf = bytes(rnd.randrange(128, 256) if rnd.random() < 0.8 else rnd.randrange(256)
                    for _ in range(rnd.randrange(1, 13)))
        if buf[0] < 128:
            continue
        outcomes = []
        for f in (varint.read_varint, varint.read_varint_long):
            try:
                outcomes.append(f(buf, 0))
            except (varint.BadBody, IndexError) as exc:
                outcomes.append(type(exc).__name__)
        assert outcomes[0] == outcomes[1]


def test_state_bytes_round_trip_and_rejects():
    rnd = random.Random(2)
    for _ in range(3000):
        n = rnd.randrange(0, 9)
        g = rnd.randrange(1 << n) if n else 0
        ga = tuple(rnd.randrange(-(2**63), 2**63) if g >> i & 1 else -1 for i in range(n))
        ea = tuple(rnd.randrange(-(2**63), 2**63) if g >> i & 1 else -1 for i in range(n))
        state = make_state(rnd.randrange(2**40), rnd.randrange(2**40), g, ga, ea, rnd.randrange(64),
                           rnd.choice(["", "EU", "US-CA", "ü" * 10]), rnd.random() < 0.5, rnd.randrange(2),
                           rnd.randrange(2**32))
        data = state_to_bytes(state)
        assert state_from_bytes(data) == state
        with pytest.raises(ValueError):
            state_from_bytes(data[:-1] if data[-1] or len(data) > 42 else data + b"x")
        with pytest.raises(ValueError):
            state_from_bytes(data + b"x")
    with pytest.raises(ValueError, match="not a consent state"):
        state_from_bytes(struct.pack(">BBBBIqqQQ", 1, 0, 0, 2, 0, 0, 0, 3, 0) + b"\x00" * 20)


def _population_consents(n: int) -> list[dict]:
    from streams import population

    spec = population.PopulationSpec(subjects=n, seed=5)
    return list(population.consent_records(spec, NOW))


#: values for the consent rules' fields: valid, wrong type, and not understood
_RULE_VALUES = {
    "tcf": [None, "x", 3, "", "CO"],
    "gpp": [None, "x", 3, "DBABM~"],
    "consent_mode": [None, {}, {"ad_storage": "granted"}, {"ad_storage": "denied", "analytics_storage": "granted"},
                     {"bogus": "granted"}, {"ad_storage": True}, {"ad_storage": ["granted"]}, "granted", []],
    "sec_gpc": [None, True, False, 1, 0, "true"],
    "objections": [None, [], ["direct_marketing"], ["profiling", "direct_marketing"], ["nope"], [1], [[]],
                   "profiling", {}],
}


def _parse_outcome(rec: dict, subject: str, offset: int, vocab) -> object:
    try:
        return parse_consent(copy.deepcopy(rec), subject, offset, vocab, {})
    except MalformedConsent as exc:
        return ("malformed", exc.error_class, str(exc))


def test_parse_wellformed_is_check_plus_parse_for_records_with_signals_and_bases():
    """Records of the bench population (TCF, GPP, Consent Mode, GPC, bases) and mutations of
    their rule fields, swapped between records too. The fast path folds through the rules'
    memo, which earlier records filled; the reference folds on its own policy object with
    an empty memo each time, so a memo that answered for the wrong record would show."""
    codec = get_codec("consent_record", "json")
    vocab = POLICY.vocab
    ref_vocab = load_policy(secret=SECRET).vocab  # same fingerprint, its own memo
    assert ref_vocab.fingerprint == vocab.fingerprint and ref_vocab.rules is not vocab.rules
    base = _population_consents(400)
    pool = {f: [r[f] for r in base if r.get(f) is not None] for f in _RULE_VALUES}
    rnd = random.Random(13)
    accepted = signalled = 0
    for i in range(3000):
        rec = copy.deepcopy(rnd.choice(base))
        subject = rec["subject_id"]
        for _ in range(rnd.randrange(0, 3)):
            f = rnd.choice(list(_RULE_VALUES))
            if pool[f] and rnd.random() < 0.5:
                rec[f] = copy.deepcopy(rnd.choice(pool[f]))  # another record's valid value
            else:
                rec[f] = copy.deepcopy(rnd.choice(_RULE_VALUES[f]))
        if rnd.random() < 0.2 and rec["purposes"]:
            p = rnd.choice(list(rec["purposes"]))
            rec["purposes"][p]["basis"] = rnd.choice([None, "consent", "legitimate_interest", "contract", 1])
        c1: dict[str, int] = {}
        c2: dict[str, int] = {}
        got = parse_wellformed(copy.deepcopy(rec), subject, i, vocab, c2)
        ref_vocab.rules._folds.clear()
        want = _reference_parse(codec, copy.deepcopy(rec), subject, i, ref_vocab, c1)
        # parse_consent alone (no codec check before it) through the filled memo, too
        ref_vocab.rules._folds.clear()
        assert _parse_outcome(rec, subject, i, vocab) == _parse_outcome(rec, subject, i, ref_vocab), i
        if got is not None:
            accepted += 1
            signalled += any(rec.get(f) is not None for f in _RULE_VALUES)
            assert got == want and c1 == c2, i
        elif want is not None:
            pytest.fail(f"fast path refused a record the codec path accepts (iteration {i})")
        else:
            assert c2 == {}
    assert accepted > 1000 and signalled > 500
    assert len(vocab.rules._folds) > 10  # the memo was used
