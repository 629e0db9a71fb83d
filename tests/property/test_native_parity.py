"""The native engine gives the Python engine's BatchResults, byte for byte.

Random policies x consent streams x event batches (valid events written several ways,
and malformed inputs of every kind), through ``Filter`` and ``NativeFilter`` side by
side with identical clocks: every record (outputs, decision records, DLQ entries,
erasure notices), every counter and the counters' key order must be equal. The
scanner is fuzzed with arbitrary bytes and mutated JSON: it must never crash, and
whatever it accepts it must write exactly as ``orjson.dumps(orjson.loads(...))``.
"""

from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.native_gate import require_native

require_native()

import pfilter_native  # noqa: E402

from streams.engine.batch import Filter, TopicNames  # noqa: E402
from streams.engine.native import NativeFilter  # noqa: E402
from streams.engine.policy import compile_policy  # noqa: E402
from tests.unit.engine.helpers import NOW, SECRET  # noqa: E402

from .strategies import consents, events, policies, times  # noqa: E402

T = TopicNames()
FORMATS = {T.clickstream: "json", T.purchases: "json", T.consent: "json", "output": "json"}
SUBJECTS = ["s-0", "s-1", "s-\u00e9\"q"]

_nasty_text = st.text(alphabet=st.sampled_from(["a", "\u00e9", "\"", "\\", "\n", "\x01", "\x1f", "\x7f", "/",
                                                "\u2028", "\U0001F600", " "]), max_size=6)
_floats = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([0.0, -0.0, 13.0, 0.1, 1e-5, 1e15, 1e16,
                                                                            123.456, 5e-324]))


def _render(ev: dict, style: int) -> bytes:
    try:
        orjson.dumps(ev)
    except TypeError:  # an integer beyond 64 bits: only json writes it
        style = 1
    if style == 0:
        return orjson.dumps(ev)
    if style == 1:
        return json.dumps(ev).encode()  # spaces, \\u escapes for non-ASCII, Python's float repr
    if style == 2:
        return json.dumps(ev, indent=1, ensure_ascii=False).encode()
    # trailing zeros on every float, as producers in the wild write prices
    return orjson.dumps(ev).replace(b".0,", b".00,").replace(b".5,", b".50,")


@st.composite
def spice(draw, ev: dict) -> dict:
    """Extra variety the shared strategy does not draw: awkward strings and floats."""
    ev = dict(ev)
    if draw(st.integers(0, 2)) == 0:
        ev["url"] = draw(_nasty_text)
    if draw(st.integers(0, 2)) == 0:
        ev["price"] = draw(_floats)
    if draw(st.integers(0, 4)) == 0:
        ev["title"] = draw(st.one_of(st.dictionaries(st.sampled_from(["a", "b"]), st.integers(-3, 3)),
                                     st.lists(st.integers(), max_size=2), st.booleans(), st.integers(-2**70, 2**70)))
    if draw(st.integers(0, 5)) == 0:
        ev["extra"] = {"nested": [1, {"x": None}], "n": draw(_floats)}
    return ev


_MALFORMED = [
    b"", b"null", b"[]", b'"x"', b"{", b'{"event_id":"e"}', b"\xff\xfe", b'{"event_id":"e",}',
    b'{"event_id":"e","event_id":"f","event_type":"page_view","ts":1}',
]


@st.composite
def event_input(draw, subject: str):
    ev = draw(events(subject=subject))
    ev = draw(spice(ev))
    kind = draw(st.sampled_from(["valid"] * 20 + ["garbage", "bad_key", "mismatch", "null", "mutate", "bytes",
                                                  "ts", "empty_id", "dup", "anon_key"]))
    key = subject.encode() if ev["subject_id"] is not None else draw(st.sampled_from([None, b"", b"a-1"]))
    value = _render(ev, draw(st.integers(0, 3)))
    if kind == "garbage":
        value = draw(st.sampled_from(_MALFORMED))
    elif kind == "bad_key":
        key = b"\xff\xfe"
    elif kind == "mismatch":
        key = b"other"
    elif kind == "null":
        value = None
    elif kind == "mutate" and value:
        i = draw(st.integers(0, len(value) - 1))
        value = value[:i] + bytes([draw(st.integers(0, 255))]) + value[i + 1:]
    elif kind == "bytes":
        value = draw(st.binary(max_size=40))
    elif kind == "ts":
        value = value.replace(b'"ts":', b'"ts":' + draw(st.sampled_from([b"-0", b"1e3", b"1.0", b"9223372036854775807",
                                                                          b"99999999999999999999", b"-"])) + b",\"x\":",
                              1)
    elif kind == "empty_id":
        value = _render(dict(ev, event_id=""), 0)
    elif kind == "dup":
        value = value[:-1] + b',"subject_id":null}'
    elif kind == "anon_key":
        key = None
    return key, value, ev.get("event_type") == "purchase"


@st.composite
def consent_input(draw, subject: str):
    kind = draw(st.sampled_from(["valid"] * 6 + ["tombstone", "garbage", "mismatch"]))
    if kind == "tombstone":
        return None
    if kind == "garbage":
        return b'{"subject_id": '
    rules = draw(st.booleans())  # bases, objections, signals (issue 11)
    rec = draw(consents(subject=subject, ts=NOW - 5 * 3_600_000, now=NOW + 4 * 3_600_000, rules=rules)
               if draw(st.booleans()) else consents(subject=subject, rules=rules))
    if kind == "mismatch":
        rec["subject_id"] = "someone-else"
    return orjson.dumps(rec)


def streams_of(event_input) -> st.SearchStrategy:
    """Steps of consent batches and event batches (events drawn by ``event_input``: JSON
    here, Avro in test_native_avro_parity)."""
    @st.composite
    def stream(draw):
        steps = []
        for _ in range(draw(st.integers(1, 6))):
            if draw(st.booleans()):
                subs = draw(st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=4))
                steps.append(("consent", [(s, draw(consent_input(s))) for s in subs]))
            else:
                subs = draw(st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=8))
                steps.append(("events", [draw(event_input(s)) for s in subs]))
        return steps
    return stream


stream = streams_of(event_input)


def _run(filt, steps) -> list:
    results = []
    offset = 0
    for step in steps:
        if step[0] == "consent":
            recs = []
            for subject, value in step[1]:
                offset += 1
                recs.append((T.consent, 0, offset, subject.encode(), value, None, NOW))
            results.append(filt.apply_consent(recs))
            continue
        recs = []
        for key, value, purchase in step[1]:
            offset += 1
            recs.append((T.purchases if purchase else T.clickstream, 3, offset, key, value, None, NOW))
        results.append(filt.decide(recs))
    return results


def _clock(start: int):
    t = [start]

    def clock() -> int:  # advances on every read: the order of reads must agree too
        t[0] += 1
        return t[0]
    return clock


def _same(a, b) -> None:
    assert len(a.records) == len(b.records)
    for x, y in zip(a.records, b.records):
        assert x == y
    assert a == b
    assert list(a.dropped) == list(b.dropped) and list(a.emitted) == list(b.emitted)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(doc=policies(encrypt=False, rules=True), steps=stream(), now=times)
def test_native_filter_equals_python_filter(doc, steps, now):
    policy = compile_policy(doc, secret=SECRET)
    py = Filter(policy, T, FORMATS, store={}, clock=_clock(now))
    nat = NativeFilter(policy, T, FORMATS, store={}, clock=_clock(now), secret=SECRET)
    assert nat.native
    for a, b in zip(_run(py, steps), _run(nat, steps)):
        _same(a, b)
    assert py.store == nat.store


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=policies(encrypt=False, rules=True), steps=stream(), now=times)
def test_native_filter_without_the_secret_still_agrees(doc, steps, now):
    """No secret: events that need a pseudonym go through Python; the rest natively."""
    policy = compile_policy(doc, secret=SECRET)
    py = Filter(policy, T, FORMATS, store={}, clock=_clock(now))
    nat = NativeFilter(policy, T, FORMATS, store={}, clock=_clock(now))
    for a, b in zip(_run(py, steps), _run(nat, steps)):
        _same(a, b)


# ------------------------------------------------------------- the scanner alone
_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**66, 2**66), _floats, _nasty_text),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(_nasty_text, kids, max_size=3)),
    max_leaves=12,
)


def _agree(data: bytes) -> None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        assert not pfilter_native.scans(data)  # what orjson refuses, the scanner refuses
        return
    got = pfilter_native.canonical(data)
    if got is not None:  # None: not sure, the record goes to Python (checked above for events)
        assert got == orjson.dumps(value)


_escape_piece = st.sampled_from(["a", "\\u00e9", "\\ud83d", "\\ude00", "\\uD83D\\uDE00", "\\u0041", "\\n",
                                 "\\/", "\\x", "\\u12", "\\", "\"", "\u00e9", "\x01", "\\udbff\\udfff"])


@settings(max_examples=1500, deadline=None)
@given(st.lists(_escape_piece, max_size=6))
def test_scanner_on_escapes(pieces):
    body = "".join(pieces).encode()
    _agree(b'"' + body + b'"')
    _agree(b'{"' + body + b'":1}')


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=64))
def test_scanner_on_arbitrary_bytes(data):
    _agree(data)


@settings(max_examples=1500, deadline=None)
@given(_json_values, st.integers(0, 2), st.data())
def test_scanner_on_json_and_its_mutations(value, style, data):
    text = [json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(), json.dumps(value).encode(),
            json.dumps(value, indent=2, ensure_ascii=False).encode()][style]
    _agree(text)
    if text:
        i = data.draw(st.integers(0, len(text) - 1))
        _agree(text[:i] + bytes([data.draw(st.integers(0, 255))]) + text[i + 1:])
        _agree(text[:i])


@settings(max_examples=1000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_is_orjsons(x):
    text = repr(x).encode()
    _agree(text)
    if b"e" not in text and b"." in text and abs(x) < 1e15:
        _agree(text + b"000")


@settings(max_examples=1500, deadline=None)
@given(st.from_regex(r"\A-?(0|[1-9][0-9]{0,17})\.[0-9]{1,18}([eE][-+]?[0-9]{1,3})?\Z"))
def test_decimal_texts_are_written_as_orjson_writes_them(text):
    _agree(text.encode())
    _agree(b'{"price":' + text.encode() + b"}")


def _run_sealed(filt_cls, policy, steps, now, **kw):
    from unittest import mock

    from streams.crypto import KeyRing
    from tests.unit.engine.helpers import Deterministic as _Deterministic, counter_nonces, kek_for_tests

    det = _Deterministic()
    with mock.patch("streams.crypto.fields.secrets", det), mock.patch("os.urandom", det.urandom):
        f = filt_cls(policy, T, FORMATS, store={}, clock=_clock(now), keyring=KeyRing(kek_for_tests()),
                     nonces=counter_nonces(), **kw)
        return f, _run(f, steps)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(doc=policies(encrypt=True), steps=stream(), now=times)
def test_native_filter_equals_python_filter_when_engines_encrypt(doc, steps, now):
    """An engine with `encrypt` transforms: every record it would emit is decided by the Python
    engine (it holds the data keys); everything else natively; the bytes are the same, key
    records and keys-topic tombstones included."""
    policy = compile_policy(doc, secret=SECRET)
    py, a = _run_sealed(Filter, policy, steps, now)
    nat, b = _run_sealed(NativeFilter, policy, steps, now, secret=SECRET)
    assert nat.native
    for x, y in zip(a, b):
        _same(x, y)
    assert py.store == nat.store


#: text to encrypt: any Unicode scalar (no lone surrogates: not valid JSON text for orjson)
_seal_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)


@st.composite
def _sealed_events(draw, subject: str) -> tuple:
    """A valid event whose text fields are any text, rendered as UTF-8 or with \\u escapes."""
    ev = draw(events(subject))
    for f in ("email", "phone"):
        if draw(st.booleans()):
            ev[f] = draw(_seal_text)
    if type(ev.get("shipping_address")) is dict:
        for f in ("street", "postal_code"):
            if draw(st.booleans()):
                ev["shipping_address"][f] = draw(_seal_text)
    value = orjson.dumps(ev) if draw(st.booleans()) else json.dumps(ev, ensure_ascii=True).encode()
    key = None if ev.get("subject_id") is None else subject.encode()
    return key, value, ev["event_type"] == "purchase"


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(doc=policies(seal_heavy=True), data=st.data(), now=times)
def test_native_seals_exactly_what_the_python_engine_seals(doc, data, now):
    """Random policies with many encrypted text fields, every purpose granted, events whose
    text is any Unicode (escaped or not): the native side seals through the Python sealer,
    and every byte (envelopes with their nonces, key records) is the Python engine's."""
    from tests.unit.engine.helpers import consent

    subjects = ["s-1", "s-2"]
    steps = [("consent", [(s, orjson.dumps(consent(subject=s, jurisdiction=data.draw(st.sampled_from(
        ["EU", "US", "US-CA"]))))) for s in subjects])]
    for _ in range(data.draw(st.integers(1, 3))):
        steps.append(("events", [data.draw(_sealed_events(s)) for s in data.draw(
            st.lists(st.sampled_from(subjects), min_size=1, max_size=6))]))
    policy = compile_policy(doc, secret=SECRET)
    _py, a = _run_sealed(Filter, policy, steps, now)
    nat, b = _run_sealed(NativeFilter, policy, steps, now, secret=SECRET)
    for x, y in zip(a, b):
        _same(x, y)


def test_an_encrypting_engine_decides_natively_and_seals_through_the_python_sealer():
    """The default policy encrypts `email` and `phone` for the `email` engine. A purchase
    with them is decided natively too: the native side marks the fields and calls the
    Python engine's sealer once the record is sure, so the envelopes (same nonces, same
    data key) and the new key record are the Python engine's, byte for byte."""
    from streams.engine.policy import load_policy
    from tests.unit.engine.helpers import consent, purchase

    policy = load_policy(secret=SECRET)
    assert [e.name for e in policy.engines if e.encrypted] == ["email"]
    plain = purchase(event_id="p0")
    del plain["email"], plain["phone"]
    cons = ("consent", [("s-1", orjson.dumps(consent()))])
    for event, sealed in ((plain, False), (purchase(event_id="p1"), True)):
        steps = [cons, ("events", [(b"s-1", orjson.dumps(event), True),
                                   (b"s-1", orjson.dumps(dict(event, event_id="p2")), True)])]
        _py, a = _run_sealed(Filter, policy, steps, NOW)
        nat, b = _run_sealed(NativeFilter, policy, steps, NOW, secret=SECRET)
        for x, y in zip(a, b):
            _same(x, y)
        outs = [v for t, _k, v, _h in b[1].records if t == "personalization.email"]
        assert len(outs) == 2 and all((b'"email":"pfe1.' in v) == sealed for v in outs)
        assert len(b[1].keys) == int(sealed)  # one data key, created by the first seal
        assert nat.fallbacks == 0
