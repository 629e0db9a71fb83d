"""The native engine on Avro inputs gives the Python engine's BatchResults, byte for byte.

As test_native_parity (random policies x consent streams x event batches), with the
click and purchase topics in Avro (Confluent wire format, our schema ids) and the
outputs and decision records in Avro or JSON: valid events, and malformed values of
every kind the decoder must refuse (another schema id, a bad union index, a padded
varint, invalid UTF-8, a truncated or over-long body, a non-finite double, random
bytes behind a valid header). The decoder is also fuzzed alone: it never crashes, and
a record it accepts is one the Python codec accepts (DLQ classification agrees).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.native_gate import require_native

require_native()

from streams.engine.batch import Filter, TopicNames  # noqa: E402
from streams.engine.codecs import DecodeError, get_codec  # noqa: E402
from streams.engine.native import NativeFilter  # noqa: E402
from streams.engine.policy import compile_policy  # noqa: E402
from tests.unit.engine.helpers import NOW, SECRET  # noqa: E402

from .strategies import events, policies, times  # noqa: E402
from .test_native_parity import _clock, _floats, _nasty_text, _same, streams_of  # noqa: E402

T = TopicNames()
CLICK = get_codec("click_event", "avro")
PURCHASE = get_codec("purchase_event", "avro")


def formats(out: str) -> dict[str, str]:
    return {T.clickstream: "avro", T.purchases: "avro", T.consent: "json", "output": out}


def _encode(ev: dict) -> bytes | None:
    try:
        return (PURCHASE if ev.get("event_type") == "purchase" else CLICK).encode(ev)
    except Exception:  # noqa: BLE001 - the strategy draws payloads the schema cannot hold
        return None


def _padded(value: bytes) -> bytes:
    # ts (a long after event_id, subject_id, anonymous_id, event_type) can't be found blindly:
    # pad the first string length instead (event_id's), which Python reads the same
    n = value[5]
    return value[:5] + bytes([n | 0x80, 0x00]) + value[6:] if n < 0x80 else value


@st.composite
def event_input(draw, subject: str):
    ev = draw(events(subject=subject))
    if draw(st.integers(0, 2)) == 0:
        ev["url"] = draw(_nasty_text)
    if draw(st.integers(0, 2)) == 0:
        ev["price"] = draw(st.one_of(_floats, st.sampled_from([float("nan"), float("inf"), 1e300, -1e-300])))
    kind = draw(st.sampled_from(["valid"] * 20 + ["bytes", "mutate", "truncate", "trailing", "schema_id", "magic",
                                                  "union", "padded", "utf8", "mismatch", "bad_key", "null",
                                                  "empty_id", "ts_max", "quantity"]))
    key = subject.encode() if ev["subject_id"] is not None else draw(st.sampled_from([None, b"", b"a-1"]))
    if kind == "empty_id":
        ev["event_id"] = ""
    elif kind == "ts_max":
        ev["ts"] = 2**63 - 1
    elif kind == "quantity" and ev.get("event_type") != "purchase":
        ev["quantity"] = draw(st.sampled_from([2**31, -2**31 - 1, 2**31 - 1]))
    value = _encode(ev)
    if value is None:
        value = b"\x00\x00\x00\x00\x01garbage"
    header = value[:5]
    if kind == "bytes":
        value = header + draw(st.binary(max_size=60))
    elif kind == "mutate":
        i = draw(st.integers(5, len(value) - 1))
        value = value[:i] + bytes([draw(st.integers(0, 255))]) + value[i + 1:]
    elif kind == "truncate":
        value = value[:draw(st.integers(0, len(value) - 1))]
    elif kind == "trailing":
        value = value + b"\x00"
    elif kind == "schema_id":
        value = b"\x00" + struct.pack(">I", draw(st.sampled_from([0, 3, 99]))) + value[5:]
    elif kind == "magic":
        value = b"\x01" + value[1:]
    elif kind == "union":  # subject_id's union index (after event_id)
        n = value[5] >> 1 if value[5] < 0x80 else None
        if n is not None and len(value) > 6 + n:
            value = value[:6 + n] + bytes([draw(st.sampled_from([4, 1, 0x80]))]) + value[7 + n:]
    elif kind == "padded":
        value = _padded(value)
    elif kind == "utf8" and isinstance(ev.get("url"), str) and ev["url"]:
        u = ev["url"].encode()
        i = value.find(u)
        if i > 0:
            value = value[:i] + b"\xff" + value[i + 1:]
    elif kind == "mismatch":
        key = b"other"
    elif kind == "bad_key":
        key = b"\xff\xfe"
    elif kind == "null":
        value = None
    return key, value, ev.get("event_type") == "purchase"


stream = streams_of(event_input)


def _run(filt, steps, partition: int = 3) -> list:
    results = []
    offset = 0
    for step in steps:
        recs = []
        if step[0] == "consent":
            for subject, value in step[1]:
                offset += 1
                recs.append((T.consent, 0, offset, subject.encode(), value, None, NOW))
            results.append(filt.apply_consent(recs))
            continue
        for key, value, purchase in step[1]:
            offset += 1
            recs.append((T.purchases if purchase else T.clickstream, partition, offset, key, value, None, NOW))
        results.append(filt.decide(recs))
    return results


@pytest.mark.parametrize("out", ["avro", "json"])
@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(doc=policies(encrypt=False, rules=True), steps=stream(), now=times,
       partition=st.sampled_from([3, 3, 3, 2**31 - 1, 0]))
def test_native_filter_equals_python_filter_on_avro(out, doc, steps, now, partition):
    policy = compile_policy(doc, secret=SECRET)
    py = Filter(policy, T, formats(out), store={}, clock=_clock(now))
    nat = NativeFilter(policy, T, formats(out), store={}, clock=_clock(now), secret=SECRET)
    assert nat.native
    for a, b in zip(_run(py, steps, partition), _run(nat, steps, partition)):
        _same(a, b)
    assert py.store == nat.store


def test_valid_avro_events_are_decided_natively():
    """Not only equal: the native side decides our own Avro events (no fallback)."""
    from bench import engine as be

    policy = be.plaintext_policy()
    recs = be._records("avro", 3000, 500, 7, NOW, T)
    cons = be._consent("avro", 500, 7, NOW, T)
    fm = {T.clickstream: "avro", T.purchases: "avro", T.consent: "avro", "output": "avro"}
    py = Filter(policy, T, fm, store={}, clock=lambda: NOW)
    nat = NativeFilter(policy, T, fm, store={}, clock=lambda: NOW, secret=be.BENCH_SECRET)
    py.apply_consent(cons)
    nat.apply_consent(cons)
    _same(py.decide(recs), nat.decide(recs))
    assert nat.fallbacks == 0


# ------------------------------------------------------------- the decoder alone
def _one_event_filter() -> tuple[Filter, NativeFilter]:
    policy = compile_policy(__import__("bench.engine", fromlist=["plaintext_doc"]).plaintext_doc(), secret=SECRET)
    fm = formats("avro")
    return (Filter(policy, T, fm, store={}, clock=lambda: NOW),
            NativeFilter(policy, T, fm, store={}, clock=lambda: NOW, secret=SECRET))


_PY, _NAT = None, None


@settings(max_examples=1500, deadline=None)
@given(header=st.sampled_from([CLICK.header, PURCHASE.header]), body=st.binary(max_size=80))
def test_decoder_on_random_bodies(header, body):
    """Random bytes behind a valid header: no crash; whatever the native side decides
    (it decided the record: no fallback) the Python codec decodes too, and both engines
    give the same records (a DLQ entry of the same class when the codec refuses it)."""
    global _PY, _NAT
    if _PY is None:
        _PY, _NAT = _one_event_filter()
    topic = T.clickstream if header == CLICK.header else T.purchases
    codec = CLICK if header == CLICK.header else PURCHASE
    rec = [(topic, 0, 1, b"s-0", header + body, None, NOW)]
    before = _NAT.fallbacks
    a, b = _PY.decide(rec), _NAT.decide(rec)
    _same(a, b)
    if _NAT.fallbacks == before:  # decided natively: the codec must accept it
        codec.decode(header + body)
    else:
        try:
            codec.decode(header + body)
        except DecodeError:
            assert a.dlq == b.dlq == 1
