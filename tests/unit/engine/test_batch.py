"""The batch API: decision records (one per input), DLQ, erasure, output keys and formats, counters."""

from __future__ import annotations

import orjson
import pytest

from streams.engine import consent as C
from streams.engine import decisions as D
from streams.engine.batch import BatchResult, Filter, TopicNames
from streams.engine.codecs import get_codec
from streams.engine.consent import state_from_bytes, state_to_bytes
from streams.engine.policy import compile_policy, load_policy

from streams.crypto import decrypt_value

from .helpers import NOW, SECRET, click, consent, opened, purchase
from .helpers import default_doc as D_DOC

POLICY = load_policy(secret=SECRET)
T = TopicNames()
ENGINES = [e.name for e in POLICY.engines]
JSON = {T.clickstream: "json", T.purchases: "json", T.consent: "json", "output": "json"}


def make(formats=JSON, store=None, now=NOW):
    return Filter(POLICY, T, formats, store=store, clock=lambda: now)


_offsets = iter(range(10**9))


def crec(subject, record, *, raw=None, key=None, fmt="json"):
    value = raw if raw is not None else (None if record is None else get_codec("consent_record", fmt).encode(record))
    k = subject.encode() if key is None else key
    return (T.consent, 0, next(_offsets), k, value, None, NOW)


def erec(event, *, key=None, raw=None, topic=None, fmt="json"):
    kind = "purchase_event" if event is not None and event.get("event_type") == "purchase" else "click_event"
    topic = topic or (T.purchases if kind == "purchase_event" else T.clickstream)
    value = raw if raw is not None else get_codec(kind, fmt).encode(event)
    if key is None:
        subject = event.get("subject_id") if event else None
        key = subject.encode() if subject is not None else None
    return (topic, 3, next(_offsets), key, value, None, NOW)


def by_topic(res: BatchResult, topic):
    return [r for r in res.records if r[0] == topic]


def records(res, fmt="json"):
    """The decision records of a result, decoded (one per input)."""
    codec = get_codec("decision_record", fmt)
    return [codec.decode(r[2]) for r in by_topic(res, T.decisions)]


def decisions(res, fmt="json"):
    """The decision records as one flat decision per engine (``decisions.engine_views``)."""
    return [v for rec in records(res, fmt) for v in D.engine_views(rec, ENGINES)]


def reconcile(res: BatchResult, n_inputs: int, fmt="json"):
    """G3: every input ends as one decision record (one entry per engine), or as exactly one DLQ entry."""
    recs = records(res, fmt)
    ds = decisions(res, fmt)
    assert sum(res.emitted.values()) + sum(res.dropped.values()) == res.decided * len(ENGINES)
    assert res.decided + res.dlq == n_inputs
    assert len(recs) == n_inputs  # one decision record per input record
    assert all(D.record_problems(r, ENGINES) == [] for r in recs)
    assert len(by_topic(res, T.dlq)) == res.dlq == sum(1 for r in recs if r["outcome"] == "dlq")
    assert len(ds) == res.decided * len(ENGINES) + res.dlq
    outputs = sum(len(by_topic(res, e.topic)) for e in POLICY.engines)
    assert outputs == sum(res.emitted.values()) == sum(1 for d in ds if d["outcome"] == "emitted")


def test_emits_per_engine_with_decisions():
    f = make()
    f.apply_consent([crec("s-1", consent())])
    res = f.decide([erec(click()), erec(purchase())])
    reconcile(res, 2)
    assert res.emitted == {"offers": 2, "email": 1, "partner_ads": 2}
    assert res.dropped == {"nothing_permitted": 1}  # email gets nothing from a page view
    offers = by_topic(res, "personalization.offers")
    assert [r[1] for r in offers] == [b"s-1", b"s-1"]
    pa = by_topic(res, "personalization.partner_ads")
    pseud = POLICY.engine("partner_ads").pseudonym("s-1").encode()
    assert all(r[1] == pseud for r in pa)
    out = orjson.loads(pa[0][2])
    assert out["subject_id"] == pseud.decode() and out["context"]["geo"] == {"country": "DE"}
    (first, second) = records(res)
    assert first == {
        "event_id": "e-1", "subject_id": "s-1", "outcome": "decided", "reason": None,
        "engines": [
            {"engine": "offers", "outcome": "emitted", "reason": None, "categories_sent": ["browsing"]},
            {"engine": "email", "outcome": "dropped", "reason": "nothing_permitted", "categories_sent": []},
            {"engine": "partner_ads", "outcome": "emitted", "reason": None,
             "categories_sent": ["browsing", "location"]},
        ],
        "consent_version": consent()["updated_at"], "policy_version": POLICY.version,
        "ts": click()["ts"], "decided_at": NOW,
        "source_topic": T.clickstream, "source_partition": 3, "source_offset": first["source_offset"],
    }
    assert [x["outcome"] for x in second["engines"]] == ["emitted"] * 3
    assert all(r[1] == b"s-1" for r in by_topic(res, T.decisions))


@pytest.mark.parametrize("fmt", ["json", "avro"])
@pytest.mark.parametrize("codec_path", [False, True])
def test_one_record_with_three_entries_in_policy_order(fmt, codec_path):
    """An input decided for 3 engines yields exactly one decision record holding 3 entries,
    in policy order, in JSON and Avro, on the fast path and on the codec path."""
    formats = {T.clickstream: fmt, T.purchases: fmt, T.consent: fmt, "output": fmt}
    f = make(formats)
    if codec_path:
        f._fragments = lambda: None  # every record through the codecs
    f.apply_consent([crec("s-1", consent(), fmt=fmt)])
    res = f.decide([erec(purchase(), fmt=fmt)])
    assert (f._fast is None) == codec_path
    (rec,) = records(res, fmt)
    assert len(by_topic(res, T.decisions)) == 1
    assert rec["outcome"] == "decided" and rec["reason"] is None
    assert [x["engine"] for x in rec["engines"]] == ENGINES == ["offers", "email", "partner_ads"]
    assert [x["outcome"] for x in rec["engines"]] == ["emitted"] * 3
    assert rec["engines"][1]["categories_sent"] == ["purchase_history", "contact"]
    assert res.emitted == {"offers": 1, "email": 1, "partner_ads": 1}
    # and a policy given in another order writes its entries in that order
    doc = D_DOC()
    doc["engines"].reverse()
    rev = Filter(compile_policy(doc, secret=SECRET), T, formats, clock=lambda: NOW)
    rev.apply_consent([crec("s-1", consent(), fmt=fmt)])
    (rec,) = records(rev.decide([erec(purchase(), fmt=fmt)]), fmt)
    assert [x["engine"] for x in rec["engines"]] == ["partner_ads", "email", "offers"]


def test_anonymous_events_are_decided_for_every_engine():
    res = make().decide([erec(click(subject=None)), erec(click(subject=None), key=b"")])
    reconcile(res, 2)
    assert res.dropped == {"anonymous": 2 * len(ENGINES)}
    # step 1 of the rule fails for every engine alike: the reason once, no entries
    assert [(r["outcome"], r["reason"], r["engines"]) for r in records(res)] == [("decided", "anonymous", [])] * 2
    ds = decisions(res)
    assert {d["engine"] for d in ds} == set(ENGINES) and all(d["subject_id"] is None for d in ds)
    assert all(d["consent_version"] is None for d in ds)


def test_no_consent_then_consent_then_erasure():
    f = make()
    assert f.decide([erec(click())]).dropped == {"no_consent": 3}
    f.apply_consent([crec("s-1", consent())])
    assert sum(f.decide([erec(click())]).emitted.values()) == 2
    res = f.apply_consent([crec("s-1", None)])
    assert "s-1" not in f.store
    assert res.erasures == 1 and res.dlq == 0 and not decisions(res)
    notices = by_topic(res, T.erasures)
    assert len(notices) == len(ENGINES)
    got = {orjson.loads(v)["engine"]: (k, orjson.loads(v)) for _, k, v, _ in notices}
    assert got["offers"][0] == b"s-1"
    pseud = POLICY.engine("partner_ads").pseudonym("s-1")
    assert got["partner_ads"][0] == pseud.encode()
    assert got["partner_ads"][1] == {"subject_id": pseud, "engine": "partner_ads", "erased_at": NOW,
                                     "consent_version": consent()["updated_at"],
                                     "policy_version": POLICY.version}
    # G4: later events of the subject are dropped no_consent
    assert f.decide([erec(click())]).dropped == {"no_consent": 3}
    # tombstone for an unknown subject still notifies every engine (idempotent)
    again = f.apply_consent([crec("s-1", None)])
    assert len(by_topic(again, T.erasures)) == len(ENGINES)
    assert orjson.loads(by_topic(again, T.erasures)[0][2])["consent_version"] is None


def test_withdrawal_is_effective_immediately():
    f = make()
    f.apply_consent([crec("s-1", consent(updated_at=NOW - 10))])
    f.apply_consent([crec("s-1", consent(updated_at=NOW - 5, granted=()))])
    assert f.decide([erec(click())]).dropped == {"purpose_denied": 3}
    # a late-arriving older record does not resurrect the grant
    f.apply_consent([crec("s-1", consent(updated_at=NOW - 7))])
    assert f.decide([erec(click())]).dropped == {"purpose_denied": 3}


def test_malformed_consent_fails_closed_and_goes_to_dlq():
    f = make()
    f.apply_consent([crec("s-1", consent(updated_at=NOW - 10))])
    bad = crec("s-1", None, raw=b'{"subject_id": "s-1", "updated_at": ')
    res = f.apply_consent([bad])
    assert res.dlq == 1 and res.consent == 0
    (dlq,) = by_topic(res, T.dlq)
    assert dlq[1] == b"s-1" and dlq[2] == bad[4]
    headers = dict(dlq[3])
    assert headers["error.class"] == b"invalid_json"
    assert headers["source.topic"] == T.consent.encode()
    assert headers["source.partition"] == b"0" and headers["source.offset"] == str(bad[2]).encode()
    (d,) = records(res)
    assert d["outcome"] == "dlq" and d["engines"] == [] and d["reason"] == "invalid_json"
    assert d["subject_id"] == "s-1" and d["source_offset"] == bad[2]
    assert C.wide(f.store["s-1"]).flags & C.BLOCKED
    r = f.decide([erec(click())])
    assert r.dropped == {"no_consent": 3}
    (rec,) = records(r)
    assert rec["reason"] == "no_consent" and rec["engines"] == [] and rec["consent_version"] is None
    # a valid newer record lifts the block
    f.apply_consent([crec("s-1", consent(updated_at=NOW - 1))])
    assert sum(f.decide([erec(click())]).emitted.values()) == 2


@pytest.mark.parametrize("record, error_class", [
    (consent(subject="s-2"), "key_mismatch"),
    (consent(gpc="yes"), "wrong_type"),
    (consent(purposes={"personalization": {"status": "granted", "granted_at": None}}), "invalid_consent"),
    # impossible times: a grant that ends before it begins (also for a purpose the policy lacks)
    (consent(purposes={"personalization": {"status": "granted", "granted_at": NOW, "expires_at": NOW - 1}}),
     "schema_mismatch"),
    (consent(purposes={"telepathy": {"status": "granted", "granted_at": NOW, "expires_at": NOW}}), "schema_mismatch"),
])
def test_semantically_bad_consent(record, error_class):
    f = make()
    res = f.apply_consent([crec("s-1", record)])
    assert res.dlq == 1 and decisions(res)[0]["reason"] == error_class
    assert C.wide(f.store["s-1"]).flags & C.BLOCKED


def test_consent_key_problems():
    f = make()
    res = f.apply_consent([crec("x", consent(), key=b"\xff\xfe"), (T.consent, 0, 1, None, b"{}", None, NOW)])
    assert res.dlq == 2
    assert [d["reason"] for d in decisions(res)] == ["invalid_utf8", "missing_key"]
    assert f.store == {}


def test_unknown_purposes_and_categories_are_counted():
    rec = consent()
    rec["purposes"]["telepathy"] = {"status": "granted", "granted_at": 1, "expires_at": None}
    rec["categories"]["dreams"] = True
    res = make().apply_consent([crec("s-1", rec)])
    assert res.ignored == {"unknown_purpose": 1, "unknown_category": 1} and res.consent == 1


def test_event_dlq_cases():
    f = make()
    f.apply_consent([crec("s-1", consent())])
    ev = click()
    inputs = [
        erec(ev, key=b"\xff"),                                   # key not UTF-8
        erec(ev, key=b"s-2"),                                    # subject differs from key
        erec(None, key=b"s-1", raw=b"not json"),                 # undecodable
        (T.clickstream, 3, 99, b"s-1", None, None, NOW),         # null value
        erec(purchase(), topic=T.clickstream),                   # wrong kind for the topic
        erec(dict(ev, event_id="")),                             # empty event id
        erec(ev),                                                # fine
    ]
    res = f.decide(inputs)
    reconcile(res, len(inputs))
    ds = [d for d in decisions(res) if d["outcome"] == "dlq"]
    assert [d["reason"] for d in ds] == ["invalid_utf8", "key_mismatch", "invalid_json", "null_value",
                                         "schema_mismatch", "invalid_event"]
    mismatch = ds[1]
    assert mismatch["event_id"] == "e-1" and mismatch["subject_id"] == "s-2" and mismatch["ts"] == ev["ts"]
    dlq = by_topic(res, T.dlq)
    assert [r[1] for r in dlq] == [r[3] for r in inputs[:6]]   # original keys
    assert [r[2] for r in dlq] == [r[4] for r in inputs[:6]]   # original bytes
    for entry, src in zip(dlq, inputs):
        h = dict(entry[3])
        assert set(h) == {"error.class", "error.message", "source.topic", "source.partition", "source.offset"}
        assert h["source.offset"] == str(src[2]).encode() and h["source.partition"] == b"3"
        assert b"s-2" not in h["error.message"] and b"not json" not in h["error.message"]  # G6


def test_store_states_round_trip_through_bytes():
    """A store that keeps bytes (like the faust table) gives the same decisions."""

    class BytesStore(dict):
        def __setitem__(self, k, v):
            super().__setitem__(k, state_to_bytes(v))

        def get(self, k, default=None):
            v = super().get(k)
            return default if v is None else state_from_bytes(v)

    plain, packed = make(), make(store=BytesStore())
    for f in (plain, packed):
        f.apply_consent([crec("s-1", consent()), crec("s-2", consent(subject="s-2", gpc=True))])
    evs = [erec(click()), erec(purchase(subject="s-2"))]
    # each Filter has its own random data keys: compare after decryption
    assert opened(plain.decide(evs).records, plain.keyring) == opened(packed.decide(evs).records, packed.keyring)


def test_state_of_another_policy_vocabulary_is_no_consent():
    f = make()
    f.apply_consent([crec("s-1", consent())])
    s = f.store["s-1"]
    p = s[C.PROFILE]
    f.store["s-1"] = (s[0], s[1], C.make_profile(*p[:C.P_VOCAB], p[C.P_VOCAB] ^ 1, p[C.P_PURPOSES]), s[C.TIMES])
    res = f.decide([erec(click())])
    assert res.dropped == {"no_consent": 3}


def test_avro_everywhere():
    fmts = {T.clickstream: "avro", T.purchases: "avro", T.consent: "avro", "output": "avro"}
    f = make(fmts)
    res = f.apply_consent([crec("s-1", consent(), fmt="avro"), crec("s-1", None)])
    assert res.erasures == 1
    f.apply_consent([crec("s-1", consent(updated_at=NOW), fmt="avro")])
    res = f.decide([erec(click(), fmt="avro"), erec(purchase(), fmt="avro"), erec(click(), raw=b"{}")])
    reconcile(res, 3, "avro")
    assert res.dlq == 1
    out_codec = get_codec("filtered_event", "avro")
    (pa, _) = by_topic(res, "personalization.partner_ads")
    out = out_codec.decode(pa[2])
    assert out["context"]["geo"]["country"] == "DE" and out["context"]["geo"]["city"] is None
    assert out["payment_method"] is None
    (em,) = by_topic(res, "personalization.email")
    env = out_codec.decode(em[2])["email"]
    assert type(env) is bytes and env[0] == 1  # the Avro (bytes) envelope
    assert decrypt_value(f.keyring, "s-1", "email", env) == "jane@example.com"
    assert {r["outcome"] for r in records(res, "avro")} == {"decided", "dlq"}
    assert {d["outcome"] for d in decisions(res, "avro")} == {"emitted", "dropped", "dlq"}


def test_output_that_avro_cannot_hold_sends_the_input_to_dlq():
    fmts = dict(JSON, output="avro")
    f = make(fmts)
    f.apply_consent([crec("s-1", consent())])
    res = f.decide([erec(click(url=12345))])   # JSON input; url must be text in the output schema
    reconcile(res, 1, "avro")
    assert res.dlq == 1 and not by_topic(res, "personalization.offers")
    assert dict(by_topic(res, T.dlq)[0][3])["error.message"].startswith(b"output: ")


def test_wrong_topic_is_a_programming_error():
    f = make()
    with pytest.raises(ValueError):
        f.decide([crec("s-1", consent())])
    with pytest.raises(ValueError):
        f.apply_consent([erec(click())])


def test_apply_consent_store_override():
    f = make()
    other: dict = {}
    f.apply_consent([crec("s-1", consent())], store=other)
    assert "s-1" in other and f.store == {}


def test_encrypt_keys_go_with_their_first_output_and_erasure_shreds():
    """CONTRACT §10, G4: a subject's first encrypted output brings its key record in the same
    BatchResult; a tombstone tombstones the key; a subject who comes back gets a new key."""
    from streams.crypto import KeyRing, envelope_version, parse_key_record

    from .helpers import kek_for_tests

    ring = KeyRing(kek_for_tests())
    f = Filter(POLICY, T, JSON, clock=lambda: NOW, keyring=ring)
    f.apply_consent([crec("s-1", consent())])
    res = f.decide([erec(purchase()), erec(purchase(event_id="p-2"))])
    keys = [r for r in res.records if r[0] == T.keys]
    assert len(keys) == 1 and len(res.keys) == 1  # one key, created once, before the outputs commit
    rec = parse_key_record(keys[0][2])
    assert keys[0][1] == b"s-1" and rec.subject_id == "s-1"
    outs = [orjson.loads(r[2]) for r in res.records if r[0] == "personalization.email"]
    assert {envelope_version(o["email"]) for o in outs} == {rec.key_version}
    assert f.decide([erec(purchase(event_id="p-3"))]).keys == []  # known now: no new key

    gone = f.apply_consent([crec("s-1", None)])
    assert (T.keys, b"s-1", None, None) in gone.records and gone.shredded == 1
    assert "s-1" not in ring

    f.apply_consent([crec("s-1", consent(updated_at=NOW))])
    back = f.decide([erec(purchase(event_id="p-4"))])
    assert len(back.keys) == 1 and back.keys[0].key_version != rec.key_version


def test_a_policy_without_encrypt_writes_no_keys():
    doc = D_DOC()
    for e in doc["engines"]:
        e.get("transforms", {}).pop("email", None)
        e.get("transforms", {}).pop("phone", None)
    f = Filter(compile_policy(doc, secret=SECRET), T, JSON, clock=lambda: NOW)
    f.apply_consent([crec("s-1", consent())])
    res = f.decide([erec(purchase())])
    assert res.keys == [] and not any(r[0] == T.keys for r in res.records) and f.keyring is None
    gone = f.apply_consent([crec("s-1", None)])
    assert not any(r[0] == T.keys for r in gone.records)
