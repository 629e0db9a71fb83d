"""The native engine: pseudonyms and geo coarsening byte for byte, NativeFilter against
Filter on the cases that matter, the fallback seams, and engine selection."""

from __future__ import annotations

import hashlib
import hmac
import logging

import orjson
import pytest

from tests.native_gate import require_native

require_native()

import pfilter_native  # noqa: E402

from bench.engine import BENCH_SECRET, _consent, _records  # noqa: E402
from streams.config import load_settings  # noqa: E402
from streams.engine import native  # noqa: E402
from streams.engine.batch import Filter, TopicNames  # noqa: E402
from streams.engine.codecs import get_codec  # noqa: E402
from streams.engine.native import NativeEngineError, NativeFilter  # noqa: E402
from streams.engine.policy import compile_policy, load_policy  # noqa: E402

from bench.engine import plaintext_doc  # noqa: E402  (one copy: the bench's all-native policy)

from .helpers import DAY, HOUR, NOW, SECRET, click, consent, purchase  # noqa: E402

T = TopicNames()
JSON = {T.clickstream: "json", T.purchases: "json", T.consent: "json", "output": "json"}
POLICY = compile_policy(plaintext_doc(), secret=SECRET)  # all native (encrypting engines go to Python)


def _pseudonymizing_policy():
    doc = plaintext_doc()
    for e in doc["engines"]:
        e["subject"] = "pseudonymize"
        cats = [c for c in e["may_receive"]]
        fields = [f for c in cats for f in doc["categories"][c]]
        tr = e.setdefault("transforms", {})
        for f in ("context.ip", "context.user_agent", "url", "query", "email", "context.device_id"):
            if f in fields:
                tr[f] = "pseudonymize"
        for f in ("context.geo", "shipping_address"):
            if f in fields:
                tr[f] = "coarsen:country"
        tr["ts"] = "coarsen:hour"
    return compile_policy(doc, secret=SECRET)


# ------------------------------------------------------------- 1. pseudonyms, geo
def test_hmac_is_hmac_sha256():
    for key in (b"", b"k", b"x" * 64, b"y" * 65, bytes(range(200))):
        for msg in (b"", b"s-1", "\u00e9\U0001F600".encode(), b"m" * 300):
            want = hmac.new(key, msg, hashlib.sha256).hexdigest()
            assert pfilter_native.hmac_hex(key, msg, 64) == want
            assert pfilter_native.hmac_hex(key, msg, 32) == want[:32]
            assert pfilter_native.hmac_hex(key, msg, 7) == want[:7]


def test_pseudonyms_are_the_policys():
    policy = _pseudonymizing_policy()
    nat = NativeFilter(policy, T, JSON, secret=SECRET)
    for i, eng in enumerate(policy.engines):
        for s in ("s-1", "", "\u00e9t\u00e9", "\U0001F600", "x" * 500):
            assert nat._native.pseudonym(i, s.encode()).decode() == eng.pseudonym(s)
            assert nat._native.pseudonymize_value(i, b"context.ip", s.encode()).decode() == \
                eng.pseudonymize_value("context.ip", s.encode())


@pytest.mark.parametrize(("record", "want"), [
    (b'{"country":"NL","region":"NH","city":"Amsterdam","lat":52.37}', b'{"country":"NL"}'),
    (b'{"city":"x"}', b""),
    (b'{"country":null,"city":"x"}', b""),
    (b'"NL"', b""),
    (b'{"country":5}', b'{"country":5}'),
    (b'{"country":"\\u00e9\\n"}', b'{"country":"\xc3\xa9\\n"}'),
    (b'{"country":"a","country":"b"}', None),  # a key twice: not sure, Python decides
])
def test_coarsen_country(record, want):
    assert pfilter_native.coarsen_country(record) == want


def test_wrong_secret_is_refused():
    policy = _pseudonymizing_policy()
    with pytest.raises(NativeEngineError, match="not the one the policy was compiled with"):
        NativeFilter(policy, T, JSON, secret=b"another-secret")


# ------------------------------------------------------------- 2./3. NativeFilter == Filter
def _pair(policy=POLICY, formats=JSON, secret=SECRET):
    t1, t2 = [NOW], [NOW]

    def c1():
        t1[0] += 1
        return t1[0]

    def c2():
        t2[0] += 1
        return t2[0]
    return Filter(policy, T, formats, store={}, clock=c1), NativeFilter(policy, T, formats, store={}, clock=c2,
                                                                        secret=secret)


def _crec(subject, rec, offset, fmt="json"):
    return (T.consent, 0, offset, subject.encode(), None if rec is None else get_codec("consent_record", fmt).encode(rec),
            None, NOW)


def _erec(ev, offset, fmt="json", key=None, value=None):
    kind = "purchase_event" if ev.get("event_type") == "purchase" else "click_event"
    topic = T.purchases if kind == "purchase_event" else T.clickstream
    if value is None:
        value = get_codec(kind, fmt).encode(ev)
    if key is None and ev.get("subject_id") is not None:
        key = ev["subject_id"].encode()
    return (topic, 2, offset, key, value, None, NOW)


def _fallbacks(nat: NativeFilter) -> list:
    calls: list = []
    orig = nat._py.decide

    def counting(records):
        calls.append(records)
        return orig(records)
    nat._py.decide = counting
    return calls


def _consents():
    return [
        _crec("s-1", consent("s-1"), 1),
        _crec("s-2", consent("s-2", granted=("personalization",), categories=("browsing",), jurisdiction="US"), 2),
        _crec("s-3", consent("s-3", gpc=True, expires_at=NOW - 2 * HOUR), 3),
        _crec("s-4", None, 4),
        (T.consent, 0, 5, b"s-5", b"{garbage", None, NOW),
    ]


def _events():
    evs = [click(event_id="e-1"), click("search", event_id="e-2"), click("product_view", event_id="e-3"),
           click("add_to_cart", subject="s-2", event_id="e-4"), click("login", subject="s-3", event_id="e-5"),
           purchase(event_id="e-6"), purchase(subject="s-2", event_id="e-7"), click(subject=None, event_id="e-8"),
           click(subject="s-5", event_id="e-9"), click(subject="s-9", event_id="e-10"),
           click(ts=NOW - 40 * DAY, event_id="e-11"), purchase(event_id="e-12", items=[None, "x", {"price": 1.50}])]
    return [_erec(ev, 100 + i) for i, ev in enumerate(evs)]


def _same(a, b):
    assert a.records == b.records
    assert a == b
    assert list(a.dropped) == list(b.dropped)


@pytest.mark.parametrize("which", ["default", "pseudonymizing"])
def test_native_decides_what_python_decides(which):
    policy = POLICY if which == "default" else _pseudonymizing_policy()
    py, nat = _pair(policy)
    _same(py.apply_consent(_consents()), nat.apply_consent(_consents()))
    calls = _fallbacks(nat)
    _same(py.decide(_events()), nat.decide(_events()))
    assert calls == []  # every one of these was decided natively
    assert py.store == nat.store


def test_malformed_inputs_go_through_python_with_the_same_dlq_entries():
    py, nat = _pair()
    py.apply_consent(_consents())
    nat.apply_consent(_consents())
    good = _erec(click(event_id="e-ok"), 1)
    bad = [
        (T.clickstream, 0, 2, b"s-1", b"{not json", None, NOW),
        (T.clickstream, 0, 3, b"\xff", orjson.dumps(click(event_id="e-k")), None, NOW),
        (T.clickstream, 0, 4, b"other", orjson.dumps(click(event_id="e-m")), None, NOW),
        (T.clickstream, 0, 5, b"s-1", None, None, NOW),
        (T.clickstream, 0, 6, b"s-1", orjson.dumps(click(event_id="")), None, NOW),
        (T.clickstream, 0, 7, b"s-1", orjson.dumps(dict(click(event_id="e-w"), event_type="wishlist")), None, NOW),
        (T.clickstream, 0, 8, b"s-1", b'{"event_id":"e","ts":1e400}', None, NOW),
        (T.purchases, 0, 9, b"s-1", orjson.dumps(purchase(items="x")), None, NOW),
    ]
    batch = [good, *bad, good]
    calls = _fallbacks(nat)
    a, b = py.decide(batch), nat.decide(batch)
    _same(a, b)
    assert a.dlq == len(bad)
    assert len(calls) == len(bad)  # exactly the bad ones went to Python


def test_unknown_topic_raises_like_python():
    py, nat = _pair()
    rec = ("elsewhere", 0, 1, b"s-1", orjson.dumps(click()), None, NOW)
    with pytest.raises(ValueError, match="not an event topic"):
        py.decide([rec])
    with pytest.raises(ValueError, match="not an event topic"):
        nat.decide([rec])


def test_avro_inputs_and_outputs_are_native():
    """Avro inputs in our schemas are decided natively (issue 10), JSON or Avro outputs;
    a value under another schema id goes to Python (unknown_schema_id, its DLQ entry)."""
    avro_in = {T.clickstream: "avro", T.purchases: "json", T.consent: "json", "output": "json"}
    py, nat = _pair(formats=avro_in)
    py.apply_consent(_consents())
    nat.apply_consent(_consents())
    good = _erec(click(event_id="e-a"), 1, fmt="avro")
    other_id = good[:4] + (b"\x00\x00\x00\x00\x63" + good[4][5:],) + good[5:]
    batch = [good, _erec(purchase(event_id="e-j"), 2), other_id]
    calls = _fallbacks(nat)
    a, b = py.decide(batch), nat.decide(batch)
    _same(a, b)
    assert len(calls) == 1 and a.dlq == 1  # only the unknown schema id
    avro_out = dict(JSON, output="avro")
    py, nat = _pair(formats=avro_out)
    assert nat.native
    py.apply_consent(_consents())
    nat.apply_consent(_consents())
    calls = _fallbacks(nat)
    _same(py.decide(_events()), nat.decide(_events()))


def test_store_swap_and_erasure():
    py, nat = _pair()
    for f in (py, nat):
        f.apply_consent(_consents())
    other: dict = {}
    py.store, nat.store = other, {}
    _same(py.decide(_events()), nat.decide(_events()))  # nobody has consent in the new stores
    py.store, nat.store = {}, {}
    for f in (py, nat):
        f.apply_consent(_consents())
        f.apply_consent([_crec("s-1", None, 50)])
    _same(py.decide(_events()), nat.decide(_events()))
    # a new state object for the same subject is seen at once (the summary cache checks identity)
    for f in (py, nat):
        f.apply_consent([_crec("s-1", consent("s-1", updated_at=NOW, categories=("browsing",)), 51)])
    _same(py.decide(_events()), nat.decide(_events()))


def test_population_events_are_all_native():
    now = NOW
    py = Filter(compile_policy(plaintext_doc(), secret=BENCH_SECRET), T, JSON, store={}, clock=lambda: now)
    nat = NativeFilter(py.policy, T, JSON, store={}, clock=lambda: now, secret=BENCH_SECRET)
    consent_recs = _consent("json", 300, 3, now, T)
    py.apply_consent(consent_recs)
    nat.apply_consent(consent_recs)
    recs = _records("json", 3000, 300, 3, now, T)
    calls = _fallbacks(nat)
    _same(py.decide(recs), nat.decide(recs))
    assert calls == []


def test_a_clock_that_is_not_an_int_is_refused():
    nat = NativeFilter(POLICY, T, JSON, store={}, clock=lambda: 1.5, secret=SECRET)
    with pytest.raises(TypeError, match="clock must return an int"):
        nat.decide([_erec(click(subject=None), 1)])


# ------------------------------------------------------------- selection
def test_engine_selection(monkeypatch, caplog):
    assert native.resolve("python") == "python"
    assert native.resolve("native") == "native"
    assert native.resolve("auto") == "native"
    with pytest.raises(NativeEngineError, match="not one of"):
        native.resolve("fast")
    monkeypatch.setattr(native, "_ext", None)
    monkeypatch.setattr(native, "IMPORT_ERROR", "ModuleNotFoundError: No module named 'pfilter_native'")
    monkeypatch.setattr(native, "_said_once", False)
    with pytest.raises(NativeEngineError, match="PFILTER_ENGINE=native, but the native engine is not built"):
        native.resolve("native")
    with caplog.at_level(logging.WARNING, logger="streams.engine"):
        assert native.resolve("auto") == "python"
        assert native.resolve("auto") == "python"
    assert sum("native engine not built" in r.getMessage() for r in caplog.records) == 1


def _plain_policy_file(tmp_path):
    from streams.engine.policy import DEFAULT_POLICY_PATH

    text = DEFAULT_POLICY_PATH.read_text()
    plain = "\n".join(line for line in text.splitlines() if '= "encrypt"' not in line)
    plain = plain.replace('jurisdictions = "any"\n# CONTRACT', 'jurisdictions = "any"\n# (was) CONTRACT')
    path = tmp_path / "plain.toml"
    path.write_text(plain)
    # an emptied [engines.transforms] table is still valid TOML and compiles to no transforms
    assert not compile_policy(__import__("tomllib").loads(plain), secret=SECRET).encrypts
    return path


def test_wiring_builds_the_chosen_engine(monkeypatch, tmp_path):
    from streams import wiring

    monkeypatch.setenv("PFILTER_PSEUDONYM_KEY", SECRET.decode())
    plain = _plain_policy_file(tmp_path)
    assert type(wiring.filter_factory(load_settings(engine="native", policy_file=plain))(None)) is NativeFilter
    assert type(wiring.filter_factory(load_settings(engine="python", policy_file=plain))(None)) is Filter
    monkeypatch.setattr(native, "_ext", None)
    with pytest.raises(NativeEngineError):
        wiring.filter_factory(load_settings(engine="native", policy_file=plain))


def test_an_encrypting_policy_runs_natively_with_the_keys(monkeypatch):
    """The default policy (email engine: email and phone encrypted) gets the native engine
    under auto and native, with the worker's key ring for the records the Python engine
    encrypts; without a KEK it is a start-up error naming PFILTER_KEK."""
    from streams import wiring
    from streams.config import ConfigError

    monkeypatch.setenv("PFILTER_PSEUDONYM_KEY", SECRET.decode())
    monkeypatch.setenv("PFILTER_KEK", "00" * 32)
    for choice in ("auto", "native"):
        f = wiring.filter_factory(load_settings(engine=choice))(None)
        assert type(f) is NativeFilter and f.native and f.keyring is not None
    assert type(wiring.filter_factory(load_settings(engine="python"))(None)) is Filter
    monkeypatch.delenv("PFILTER_KEK")
    with pytest.raises(ConfigError, match="PFILTER_KEK"):
        wiring.filter_factory(load_settings(engine="auto"))


def test_a_schema_registry_keeps_the_python_engine(monkeypatch, tmp_path):
    """The native core writes Avro with the checked-in ids; with a registry, auto picks the
    Python engine (which resolves the registry's ids) and an explicit native is refused."""
    from streams import wiring
    from streams.config import ConfigError

    monkeypatch.setenv("PFILTER_PSEUDONYM_KEY", SECRET.decode())
    monkeypatch.setenv("PFILTER_KEK", "00" * 32)
    reg = "http://127.0.0.1:1"  # never contacted: codecs ask the registry on first use only
    assert type(wiring.filter_factory(load_settings(engine="auto", schema_registry_url=reg))(None)) is Filter
    with pytest.raises(ConfigError, match="SCHEMA_REGISTRY_URL"):
        wiring.filter_factory(load_settings(engine="native", schema_registry_url=reg,
                                            policy_file=_plain_policy_file(tmp_path)))


def test_decimal_texts_sweep():
    """Decimal texts of every length: what the scanner writes is orjson's text. 16-17 digit
    values whose shortest repr ties (orjson writes .2 where Rust writes .3) are refused."""
    import random

    rnd = random.Random(1)
    accepted = 0
    for _ in range(30000):
        ip = rnd.choice(["0", str(rnd.randint(1, 10 ** rnd.randint(1, 17)))])
        fp = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 18)))
        text = (rnd.choice(["", "-"]) + ip + "." + fp + rnd.choice(["", "", f"e{rnd.randint(-30, 30)}"])).encode()
        got = pfilter_native.canonical(text)
        if got is not None:
            accepted += 1
            assert got == orjson.dumps(orjson.loads(text)), text
    assert accepted > 10000  # most are written natively, not refused
    assert pfilter_native.canonical(b"-939668410476200.2798358069") is None


_TRICKY = [
    b'"\\udc00"', b'"\\ud800"', b'"\\ud800\\u0041"', b'"\\ud83d\\ude00"', b'"\\uD83D\\uDE00"', b'"\\u00e9\\/\\b"',
    b'"\\x"', b'"\\u12"', b'"a\x01"', b'"\xff"', b'"\xc3"', b'"\xed\xa0\x80"', b"\xef\xbb\xbf{}",
    b'{"a":1,"b":2,"a":3}', b'{"a":{"x":1,"x":2}}', b'[{"k":1,"k":null}]', b'{"\\u0061":1}',
    b"[" * 65 + b"]" * 65, b"[" * 10 + b"]" * 10, b"{} x", b" {} ", b"{}\n", b"01", b"1.", b".5", b"-", b"+1",
    b"1e", b"1e+", b"1E400", b"-1e-400", b"123456789012345678901234567890", b"1.0e5", b"tru", b"nul", b"NaN",
    b"Infinity", b'{"a" 1}', b'{"a":1,}', b"[1,]", b"[1 2]", b'{"a":1}{}', b"\t[\r\n]",
]


@pytest.mark.parametrize("data", _TRICKY)
def test_scanner_is_right_or_unsure(data):
    """What orjson refuses the scanner refuses (else the native side would decide an input
    the Python engine sends to the DLQ); what it writes is orjson's text."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        assert not pfilter_native.scans(data), data
        return
    got = pfilter_native.canonical(data)
    assert got is None or got == orjson.dumps(value), (data, got)


def test_default_policy_runs_natively_and_encrypts_through_python():
    """The default policy encrypts the email engine's `email` and `phone`: every record is
    decided natively, the envelopes made by the Python engine's sealer (which holds the data
    keys), and the outputs are byte for byte those of the Python engine alone."""
    from unittest import mock

    from streams.crypto import KeyRing
    from tests.unit.engine.helpers import Deterministic as _Deterministic, counter_nonces, kek_for_tests

    policy = load_policy(None, secret=BENCH_SECRET)
    assert policy.encrypts
    consents, evs = _consent("json", 300, 3, NOW, T), _records("json", 3000, 300, 3, NOW, T)
    out = []
    for cls, kw in ((Filter, {}), (NativeFilter, {"secret": BENCH_SECRET})):
        det = _Deterministic()
        with mock.patch("streams.crypto.fields.secrets", det), mock.patch("os.urandom", det.urandom):
            f = cls(policy, T, JSON, store={}, clock=lambda: NOW, keyring=KeyRing(kek_for_tests()),
                    nonces=counter_nonces(), **kw)
            f.apply_consent(consents)
            out.append((f, f.decide(evs)))
    (_py, a), (nat, b) = out
    assert a.records == b.records and a.emitted == b.emitted and a.keys == b.keys
    topic = next(e.topic for e in policy.engines if e.name == "email")
    email = [r for r in b.records if r[0] == topic and b'"email":' in r[2]]
    assert email, "no e-mail output with an address: the test would prove nothing"
    assert all(b'"email":"pfe1.' in r[2] for r in email)
    assert nat.fallbacks == 0  # sealed records stay native too
