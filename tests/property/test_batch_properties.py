"""The batch API end to end against the reference: streams of consent changes (valid,
malformed, tombstones, out of order) and events (valid, garbage, wrong keys).

- G1: every emitted record is exactly what the reference emits under the subject's
  current consent (reference.current_consent over the consent log so far);
- every dropped decision has the reference's reason;
- G3: every event input ends as exactly one decision record, whose decision part
  (outcome, shared reason, one entry per engine in policy order with the categories
  sent) is the reference's ``expected_decision``, or as exactly one DLQ entry (with
  its dlq decision record), and the counters reconcile with the records;
- G4: every tombstone yields one erasure notice per engine, keyed by its subject reference.
"""

from __future__ import annotations

from collections import Counter

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streams.engine import decisions as D
from streams.engine import reference
from streams.engine.batch import Filter, TopicNames
from streams.engine.policy import load_policy
from tests.unit.engine.helpers import HOUR, NOW, SECRET, default_doc

from .strategies import consents, events, times

T = TopicNames()
DOC = default_doc()
POLICY = load_policy(secret=SECRET)
ENGINES = [e.name for e in POLICY.engines]
SUBJECTS = ["s-0", "s-1", "s-2"]
FORMATS = {T.clickstream: "json", T.purchases: "json", T.consent: "json", "output": "json"}


@st.composite
def consent_input(draw):
    """(subject, log entry for the reference, value bytes or None)."""
    subject = draw(st.sampled_from(SUBJECTS))
    kind = draw(st.sampled_from(["valid"] * 6 + ["tombstone", "garbage", "mismatch", "no_granted_at",
                                                  "ends_before_grant", "bad_type"]))
    if kind == "tombstone":
        return subject, None, None
    if kind == "garbage":
        return subject, ("malformed", None), b'{"subject_id": '
    if draw(st.integers(0, 3)) < 3:  # mostly: granted well before the events, valid past them
        rec = draw(consents(subject=subject, ts=NOW - 5 * HOUR, now=NOW + 4 * HOUR))
    else:
        rec = draw(consents(subject=subject))
    if kind == "mismatch":
        rec["subject_id"] = "someone-else"
        return subject, ("malformed", rec["updated_at"]), orjson.dumps(rec)
    if kind == "no_granted_at":
        rec["purposes"]["support"] = {"status": "granted", "granted_at": None, "expires_at": None}
        return subject, ("malformed", rec["updated_at"]), orjson.dumps(rec)
    if kind == "ends_before_grant":  # impossible times: the codec rejects it, the subject fails closed
        rec["purposes"]["support"] = {"status": "granted", "granted_at": NOW, "expires_at": NOW - HOUR}
        return subject, ("malformed", None), orjson.dumps(rec)
    if kind == "bad_type":  # the codec rejects it: updated_at unreadable to the engine
        rec["gpc"] = "yes"
        return subject, ("malformed", None), orjson.dumps(rec)
    return subject, rec, orjson.dumps(rec)


@st.composite
def event_input(draw):
    """(event dict or None, key, value, should_decode)."""
    subject = draw(st.sampled_from(SUBJECTS))
    ev = draw(events(subject=subject))
    kind = draw(st.sampled_from(["valid"] * 8 + ["garbage", "bad_key", "mismatch", "null"]))
    key = subject.encode() if ev["subject_id"] is not None else draw(st.sampled_from([None, b"", b"a-1"]))
    valid = ev["event_type"] != "wishlist"  # the codec knows only the contract's types
    if kind == "garbage":
        return None, key, b"\x00garbage", False
    if kind == "bad_key":
        return ev, b"\xff\xfe", orjson.dumps(ev), False
    if kind == "null":
        return None, key, None, False
    if kind == "mismatch" and ev["subject_id"] is not None:
        return ev, b"other", orjson.dumps(ev), False
    return ev, key, orjson.dumps(ev), valid


_consent_step = st.tuples(st.just("consent"), st.lists(consent_input(), min_size=1, max_size=4))
_event_step = st.tuples(st.just("events"), st.lists(event_input(), min_size=1, max_size=6), times)
steps = st.builds(
    lambda first, rest: [first, *rest],
    _consent_step,
    st.lists(st.one_of(_event_step, _consent_step, _event_step), min_size=1, max_size=7),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps)
def test_batches_agree_with_reference_and_reconcile(plan):
    clock = [NOW]
    f = Filter(POLICY, T, FORMATS, clock=lambda: clock[0])
    log: dict[str, list] = {s: [] for s in SUBJECTS}
    offset = 0
    for step in plan:
        if step[0] == "consent":
            records = []
            tombstones = []
            for subject, entry, value in step[1]:
                offset += 1
                log[subject].append((offset, entry))
                records.append((T.consent, 0, offset, subject.encode(), value, None, NOW))
                if value is None:
                    tombstones.append(subject)
            res = f.apply_consent(records)
            malformed = sum(1 for _s, e, v in step[1] if isinstance(e, tuple))
            assert res.dlq == malformed
            assert res.erasures == len(tombstones)
            notices = [r for r in res.records if r[0] == T.erasures]
            assert len(notices) == len(tombstones) * len(ENGINES)
            want_keys = Counter(e.subject_ref(s).encode() for s in tombstones for e in POLICY.engines)
            assert Counter(r[1] for r in notices) == want_keys
            dl = [orjson.loads(r[2]) for r in res.records if r[0] == T.decisions]
            assert len(dl) == malformed and all(d["outcome"] == "dlq" and d["engines"] == [] for d in dl)
            continue

        _, inputs, now = step
        clock[0] = now
        seen = set()
        records = []
        for i, (ev, key, value, ok) in enumerate(inputs):
            offset += 1
            if ev is not None:  # unique event ids (the strategy may repeat them)
                ev = dict(ev, event_id=f"e-{offset}")
                value = orjson.dumps(ev)
                inputs[i] = (ev, key, value, ok)
            topic = T.purchases if ev is not None and ev.get("event_type") == "purchase" else T.clickstream
            records.append((topic, 1, offset, key, value, None, NOW))
        res = f.decide(records)

        # G3: reconcile
        decs = [orjson.loads(r[2]) for r in res.records if r[0] == T.decisions]
        by_src: dict[int, list] = {}
        for d in decs:
            by_src.setdefault(d["source_offset"], []).append(d)
        assert len(decs) == len(records) == len(by_src)  # one decision record per input
        dlq_offsets = [int(dict(r[3])["source.offset"]) for r in res.records if r[0] == T.dlq]
        assert len(dlq_offsets) == len(set(dlq_offsets)) == res.dlq
        assert res.decided + res.dlq == len(records)
        assert sum(res.emitted.values()) + sum(res.dropped.values()) == res.decided * len(ENGINES)
        outputs = {}
        for e in POLICY.engines:
            for r in res.records:
                if r[0] == e.topic:
                    out = orjson.loads(r[2])
                    outputs[(e.name, out["event_id"])] = (r[1], out)
        assert len(outputs) == sum(res.emitted.values())

        for rec, (ev, key, _value, ok) in zip(records, inputs):
            (drec,) = by_src[rec[2]]
            assert D.record_problems(drec, ENGINES) == []
            if rec[2] in dlq_offsets:
                assert not ok
                assert drec["outcome"] == "dlq" and drec["engines"] == []
                continue
            assert ok, "a valid input went to the DLQ"
            subject = ev.get("subject_id")
            consent = reference.current_consent(log[subject]) if subject is not None else None
            want_decision = reference.expected_decision(ev, consent, DOC, drec["decided_at"], SECRET)
            assert {k: drec[k] for k in ("outcome", "reason", "engines")} == want_decision
            ds = D.engine_views(drec, ENGINES)
            assert [d["engine"] for d in ds] == ENGINES
            for d in ds:
                seen.add(d["reason"] or "emitted")
                want, what = reference.expected(ev, consent, d["engine"], DOC, d["decided_at"], SECRET)
                if d["outcome"] == "emitted":
                    okey, out = outputs[(d["engine"], ev["event_id"])]
                    assert (want, what) == ("emitted", out)
                    assert reference.violations(out, ev, consent, d["engine"], DOC, d["decided_at"], SECRET) == []
                    assert okey == POLICY.engine(d["engine"]).subject_ref(subject).encode()
                    assert d["consent_version"] == consent["updated_at"]
                else:
                    assert d["outcome"] == "dropped"
                    assert (want, what) == ("dropped", d["reason"])
        for outcome in seen:
            event(f"outcome {outcome}")
