"""The batch API every runtime and test uses (docs/architecture.md).

Records in and out are plain tuples:

- ``InputRecord = (topic, partition, offset, key, value, headers, timestamp_ms)``
- ``OutRecord = (topic, key, value, headers)``

``Filter.apply_consent(records)`` merges consent records into the store;
``Filter.decide(records)`` decides click and purchase events for every engine.
Both return a ``BatchResult`` whose ``records`` are what to produce and whose
counters say what happened. Counts reconcile (CONTRACT G3): per call,
``sum(emitted) + sum(dropped) == decided_events * len(engines)`` and every
input that is not decided is counted once in ``dlq``; there is exactly one
decision record per (decided event, engine) and one per DLQ entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.engine.codecs import (
    _LEN1, EVENT_TYPES, AvroCodec, _check_consent, DecodeError, EncodeError, JsonCodec, _write_long, decode_key, get_codec,
    topic_subject,
)
from streams.engine.consent import (
    BLOCKED, DELETED, P_CATEGORIES, P_FLAGS, P_GPC, P_GRANTED, P_JURISDICTION, P_VOCAB, PROFILE, TIMES,
    PAIR, UPDATED_AT, MalformedConsent, merge, merge_state, pair_index, parse_wellformed,
)
from streams.engine.decide import (
    ANONYMOUS, BEFORE_GRANT, EXPIRED, NO_CONSENT, NOTHING_PERMITTED, OPT_OUT, PURPOSE_DENIED, REASONS,
    REGION_BLOCKED, project_plan,
)
from streams.engine.decide import decide as _decide
from streams.engine.policy import CompiledEngine, CompiledPolicy

InputRecord = tuple  # (topic, partition, offset, key, value, headers, timestamp_ms)
OutRecord = tuple    # (topic, key, value, headers)

EMITTED, DROPPED, DLQ = "emitted", "dropped", "dlq"

#: DLQ error classes raised here (the codecs add theirs: invalid_json, invalid_utf8,
#: schema_mismatch, wrong_type, missing_field, ...; a key that is not UTF-8 is invalid_utf8).
MISSING_KEY = "missing_key"        # a consent record without a key
KEY_MISMATCH = "key_mismatch"      # subject_id differs from the record key
NULL_VALUE = "null_value"          # an event with a null value
INVALID_EVENT = "invalid_event"    # decoded, but unusable (empty event_id or subject_id)
INVALID_CONSENT = "invalid_consent"  # decoded, but unusable (e.g. granted without granted_at)


@dataclass(frozen=True)
class TopicNames:
    clickstream: str = "clickstream"
    purchases: str = "purchases"
    consent: str = "consent"
    decisions: str = "personalization.decisions"
    erasures: str = "personalization.erasures"
    dlq: str = "personalization.dlq"


@dataclass
class BatchResult:
    records: list[OutRecord] = field(default_factory=list)
    #: engine -> events emitted to it (every engine present, possibly 0)
    emitted: dict[str, int] = field(default_factory=dict)
    #: reason -> (event, engine) pairs dropped for it
    dropped: dict[str, int] = field(default_factory=dict)
    #: inputs sent to the DLQ
    dlq: int = 0
    #: events decided (each has one decision per engine)
    decided: int = 0
    #: consent records merged (valid ones, whether they won or not)
    consent: int = 0
    #: tombstones applied (each yields one erasure notice per engine)
    erasures: int = 0
    #: things ignored but counted: unknown_purpose, unknown_category
    ignored: dict[str, int] = field(default_factory=dict)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _dlq_headers(error_class: str, message: str, topic: str, partition: int, offset: int) -> list:
    return [
        ("error.class", error_class.encode()),
        ("error.message", message.encode()),
        ("source.topic", topic.encode()),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
    ]


class Filter:
    """Consent-enforcing filter over one consent store (see the module doc).

    ``store``: ``MutableMapping[str, ConsentState]`` (a dict by default); it is
    a public attribute and may be swapped between calls. ``clock``: epoch ms,
    read once per decided event (``now`` of the rule).
    """

    def __init__(
        self,
        policy: CompiledPolicy,
        topics: TopicNames,
        formats: dict[str, str],
        store: MutableMapping[str, tuple] | None = None,
        clock: Callable[[], int] | None = None,
        registry_url: str | None = None,
    ) -> None:
        self.policy = policy
        self.topics = topics
        self.formats = dict(formats)
        self.store = {} if store is None else store
        self.clock = clock or _now_ms
        fmt = self.formats.get
        # With a registry, Avro ids come from it: inputs are decoded by whatever id their
        # writer registered (subject <topic>-value, TopicNameStrategy); outputs register their
        # own schema once under the record's full name, because one codec writes every
        # engine's topic (RecordNameStrategy).
        reg = registry_url

        def codec(kind: str, f: str, topic: str | None = None) -> Any:
            return get_codec(kind, f, registry_url=reg, subject=topic_subject(topic) if reg and topic else None)

        self._event_codecs = {
            topics.clickstream: codec("click_event", fmt(topics.clickstream, "json"), topics.clickstream),
            topics.purchases: codec("purchase_event", fmt(topics.purchases, "json"), topics.purchases),
        }
        self._consent_codec = codec("consent_record", fmt(topics.consent, "json"), topics.consent)
        out = fmt("output", "json")
        self._out_codec = codec("filtered_event", out)
        self._decision_codec = codec("decision_record", out)
        self._erasure_codec = codec("erasure_notice", out)
        self._engines = policy.engines
        # fast path (see _fragments, _summaries): built on first use
        self._frags: Any = None
        self._fast: list | None = None
        self._summary_cache: dict[str, tuple] = {}
        #: event codecs whose decode checks the envelope types (ours, for event kinds)
        self._enveloped = {c for c in self._event_codecs.values()
                           if type(c) in (JsonCodec, AvroCodec) and c.kind in EVENT_TYPES}
        self._anonymous = tuple((ANONYMOUS, _NEVER_AFTER, _NEVER_EXPIRES, None, 0, None) for _ in policy.engines)
        self._no_state = tuple((NO_CONSENT, _NEVER_AFTER, _NEVER_EXPIRES, None, 0, None) for _ in policy.engines)

    # ------------------------------------------------------------- helpers
    def _new_result(self) -> BatchResult:
        return BatchResult(emitted={e.name: 0 for e in self._engines})

    def _dlq(self, res: BatchResult, rec: InputRecord, error_class: str, message: str,
             subject: str | None, event_id: Any = None, ts: Any = None) -> None:
        """A DLQ entry (original key and bytes, headers saying why and whence) and its decision."""
        topic, partition, offset, key, value, _headers, timestamp_ms = rec
        res.records.append((self.topics.dlq, key, value,
                            _dlq_headers(error_class, message, topic, partition, offset)))
        res.dlq += 1
        decision = {
            "event_id": event_id if type(event_id) is str else None,
            "subject_id": subject,
            "engine": None,
            "outcome": DLQ,
            "reason": error_class,
            "consent_version": None,
            "policy_version": self.policy.version,
            "categories_sent": [],
            "ts": ts if type(ts) is int else None,
            "decided_at": self.clock(),
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
        }
        res.records.append((self.topics.decisions, key, self._decision_codec.encode(decision), None))

    @staticmethod
    def _key(key: bytes | None) -> tuple[str | None, DecodeError | None]:
        """(subject from the key, or the DecodeError of a key that is not UTF-8)."""
        try:
            return decode_key(key), None
        except DecodeError as exc:
            return None, exc

    # ------------------------------------------------------------- consent
    def apply_consent(self, records: Iterable[InputRecord],
                      store: MutableMapping[str, tuple] | None = None) -> BatchResult:
        """Merge consent records into the store (``store`` overrides ``self.store`` for this call).

        Valid records merge last-writer-wins; a tombstone deletes the subject and
        yields an erasure notice per engine; a malformed record goes to the DLQ
        (with a ``dlq`` decision record) and blocks the subject (fail closed).
        Valid records and tombstones produce no decision records.
        """
        res = self._new_result()
        st = self.store if store is None else store
        vocab = self.policy.vocab
        consent_topic = self.topics.consent
        codec = self._consent_codec
        # our codecs validate consent records completely (codecs._check_consent) after
        # decoding; the fast path below does that check and the parse in one pass
        raw_decode = (codec._decode_raw if type(codec) in (JsonCodec, AvroCodec) and codec._check is _check_consent
                      else None)
        for rec in records:
            topic, partition, offset, key, value, _h, _ts = rec
            if topic != consent_topic:
                raise ValueError(f"apply_consent: record of topic {topic!r} is not a consent record")
            subject, problem = self._key(key)
            if problem is not None:
                self._dlq(res, rec, problem.error_class, _msg(problem), None)
                continue
            if not subject:
                self._dlq(res, rec, MISSING_KEY, "consent record has no key (the subject id)", None)
                continue
            if value is None:
                self._summary_cache.pop(subject, None)
                for fe in self._fast or ():
                    fe.pseudonyms.pop(subject, None)
                old = st.pop(subject, None)
                version = None if old is None or old[PROFILE][P_FLAGS] & BLOCKED else old[UPDATED_AT]
                self._erasure_notices(res, subject, version)
                continue
            current = st.get(subject)
            bad: MalformedConsent | None = None
            try:
                doc = raw_decode(value) if raw_decode is not None else codec.decode(value)
            except DecodeError as exc:
                bad = MalformedConsent(exc.error_class, _msg(exc), None)
            else:
                # fast path: one pass that validates what the codec check and parse_consent
                # would and builds the state; anything else takes the check and merge below
                parsed = parse_wellformed(doc, subject, offset, vocab, res.ignored) if raw_decode else None
                if parsed is not None:
                    new = merge_state(current, parsed, vocab)
                else:
                    try:
                        if raw_decode is not None:
                            codec._check(doc)
                        new = merge(current, subject, doc, offset, vocab, res.ignored)
                    except DecodeError as exc:
                        bad = MalformedConsent(exc.error_class, _msg(exc), None)
                    except MalformedConsent as exc:
                        bad = exc
            if bad is not None:
                new = merge(current, subject, bad, offset, vocab)
                self._dlq(res, rec, bad.error_class, bad.message, subject)
            else:
                res.consent += 1
            if new is DELETED:  # not reachable for a value, kept for clarity
                st.pop(subject, None)
            elif new is not current:
                st[subject] = new
        return res

    def _erasure_notices(self, res: BatchResult, subject: str, consent_version: int | None) -> None:
        """One notice per engine, keyed by the subject as that engine knows it."""
        now = self.clock()
        enc = self._erasure_codec.encode
        out = res.records
        for eng in self._engines:
            ref = eng.subject_ref(subject)
            notice = {
                "subject_id": ref,
                "engine": eng.name,
                "erased_at": now,
                "consent_version": consent_version,
                "policy_version": self.policy.version,
            }
            out.append((self.topics.erasures, ref.encode("utf-8", "surrogatepass"), enc(notice), None))
        res.erasures += 1

    # ------------------------------------------------------------- events
    def _fragments(self) -> Any:
        """The decision/output fragment builder of the output format, or None (codec path).

        Avro needs the codec's schema id: until the codec has one (registry: first
        encode), decisions go through the codec, which registers."""
        frags = self._frags
        if frags is None:
            codec = self._decision_codec
            if type(codec) is JsonCodec and type(self._out_codec) is JsonCodec:
                frags = _JsonFragments(self.policy)
            elif type(codec) is AvroCodec and codec._header is not None:
                frags = _AvroFragments(self.policy, codec._header)
            else:
                return None
            self._frags = frags
            self._fast = [_FastEngine(e, frags) for e in self._engines]
        return frags

    def _summaries(self, subject: str, state: tuple) -> tuple:
        """Per-engine summaries of a state (see ``_engine_summary``), cached per subject
        while the store holds the same state object."""
        cache = self._summary_cache
        hit = cache.get(subject)
        if hit is not None and hit[0] is state:
            return hit[1]
        summ = tuple(_engine_summary(e, state) for e in self._engines)
        if len(cache) >= SUMMARY_CACHE_MAX:
            cache.clear()
        cache[subject] = (state, summ)
        return summ

    def decide(self, records: Iterable[InputRecord]) -> BatchResult:
        """Decide click and purchase events for every engine of the policy."""
        res = self._new_result()
        out = res.records
        emitted = res.emitted
        dropped = res.dropped
        store = self.store
        clock = self.clock
        codecs = self._event_codecs
        enc_out = self._out_codec.encode
        enc_dec = self._decision_codec.encode
        decisions_topic = self.topics.decisions
        policy_version = self.policy.version
        vocab_fp = self.policy.vocab.fingerprint
        engines = self._engines
        frags = self._fragments()
        fast = self._fast if frags is not None else None
        anonymous = self._anonymous
        no_state = self._no_state
        summaries = self._summaries
        enveloped = self._enveloped
        cache_get = self._summary_cache.get
        for rec in records:
            topic, partition, offset, key, value, _h, timestamp_ms = rec
            codec = codecs.get(topic)
            if codec is None:
                raise ValueError(f"decide: record of topic {topic!r} is not an event topic")
            if type(key) is bytes:
                try:
                    key_subject = key.decode("utf-8")
                except UnicodeDecodeError:
                    key_subject, problem = self._key(key)
                    self._dlq(res, rec, problem.error_class, _msg(problem), None)
                    continue
            else:
                key_subject, problem = self._key(key)
                if problem is not None:
                    self._dlq(res, rec, problem.error_class, _msg(problem), None)
                    continue
            if value is None:
                self._dlq(res, rec, NULL_VALUE, "event value is null", key_subject)
                continue
            try:
                event = codec.decode(value)
            except DecodeError as exc:
                self._dlq(res, rec, exc.error_class, _msg(exc), key_subject)
                continue
            if codec in enveloped:
                # the codec checked the envelope's types (event_id str, ts int in the 64-bit
                # range, subject_id str or null, context object or null): what is left of
                # _event_problem is empty strings and the one excluded ts
                subject = event.get("subject_id")
                problem = (_event_problem(event) if not event["event_id"] or event["ts"] == _TS_MAX or subject == ""
                           else None)
            else:
                problem = _event_problem(event)
                subject = event.get("subject_id") if problem is None else None
            if problem is not None:
                self._dlq(res, rec, INVALID_EVENT, problem, key_subject,
                          event.get("event_id") if type(event) is dict else None)
                continue
            if subject is not None and subject != key_subject:
                self._dlq(res, rec, KEY_MISMATCH, "subject_id differs from the record key",
                          key_subject, event["event_id"], event["ts"])
                continue
            state = store.get(subject) if subject is not None else None
            if state is not None and (state[PROFILE][P_FLAGS] & BLOCKED or state[PROFILE][P_VOCAB] != vocab_fp):
                consent_version = None
            else:
                consent_version = None if state is None else state[UPDATED_AT]
            event_id = event["event_id"]
            ts = event["ts"]
            event_type = event.get("event_type")
            now = clock()
            if (fast is not None and type(now) is int and _I64_MIN <= now <= _I64_MAX
                    and type(partition) is int and _I32_MIN <= partition <= _I32_MAX
                    and type(offset) is int and _I64_MIN <= offset <= _I64_MAX
                    and (consent_version is None
                         or (type(consent_version) is int and _I64_MIN <= consent_version <= _I64_MAX))):
                # ---- fast path: summaries and fragments (same records as the loop below)
                try:
                    head, cvp, tail, drop_rest = frags.event(event_id, subject, consent_version, ts, now, topic,
                                                             partition, offset)
                except Exception:  # noqa: BLE001 - not encodable: the codec path says why
                    head = None
                if head is not None:
                    if subject is None:
                        summ = anonymous
                    elif state is None:
                        summ = no_state
                    else:
                        hit = cache_get(subject)
                        summ = hit[1] if hit is not None and hit[0] is state else summaries(subject, state)
                    pending = []
                    sent_to: list[str] = []
                    reasons: list[str] = []
                    try:
                        for fe, (pre, max_ga, min_ea, post, allowed, plans) in zip(fast, summ):
                            if pre is not None:
                                reason = pre
                            elif max_ga > ts:
                                reason = BEFORE_GRANT
                            elif not (now < min_ea and ts < min_ea):
                                reason = EXPIRED
                            elif post is not None:
                                reason = post
                            else:
                                eng = fe.eng
                                plan = plans.get(event_type)
                                if plan is None:
                                    plan = eng.mask_plan(event_type, allowed)
                                o, sent = project_plan(eng, event, subject, plan, ts)
                                if o is None:
                                    reason = NOTHING_PERMITTED
                                else:
                                    if fe.pseudonymize:
                                        ps = fe.pseudonyms.get(subject)
                                        if ps is None:
                                            ps = eng.pseudonym(subject)
                                            if len(fe.pseudonyms) >= PSEUDONYM_CACHE_MAX:
                                                fe.pseudonyms.clear()
                                            fe.pseudonyms[subject] = ps
                                        o["subject_id"] = ps
                                    okey = o["subject_id"].encode("utf-8", "surrogatepass")
                                    cv = state[UPDATED_AT]
                                    value_bytes = None
                                    if frags.output is not None and type(cv) is int:
                                        try:
                                            value_bytes = frags.output(o, fe.name, cv)
                                        except Exception:  # noqa: BLE001 - the codec says why
                                            value_bytes = None
                                    if value_bytes is None:
                                        o["consent_version"] = cv
                                        o["policy_version"] = eng.policy_version
                                        o["purposes"] = list(eng.relied_on)
                                        o["engine"] = fe.name
                                        value_bytes = enc_out(o)
                                    pending.append((fe.topic, okey, value_bytes, None))
                                    sent_to.append(fe.name)
                                    c = fe.cats.get(sent)
                                    if c is None:
                                        c = fe.cats[sent] = frags.cats(eng.category_names(sent))
                                    pending.append((decisions_topic, key, head + fe.mid_emitted + cvp + c + tail,
                                                    None))
                                    continue
                            reasons.append(reason)
                            pending.append((decisions_topic, key, head + fe.mids[reason] + drop_rest, None))
                    except EncodeError as exc:
                        self._dlq(res, rec, exc.error_class, "output: " + _msg(exc), key_subject, event_id, ts)
                        continue
                    out.extend(pending)
                    res.decided += 1
                    for name in sent_to:
                        emitted[name] += 1
                    for reason in reasons:
                        dropped[reason] = dropped.get(reason, 0) + 1
                    continue
            # ---- codec path: dicts through the codecs
            pending = []
            sent_to = []
            reasons = []
            try:
                for eng in engines:
                    reason, fe, sent = _decide(eng, event, subject, state, now)
                    if reason is None:
                        pending.append((eng.topic, fe["subject_id"].encode("utf-8", "surrogatepass"), enc_out(fe),
                                        None))
                        sent_to.append(eng.name)
                        cats = eng.category_names(sent)
                        outcome = EMITTED
                    else:
                        reasons.append(reason)
                        cats = []
                        outcome = DROPPED
                    pending.append((decisions_topic, key, enc_dec({
                        "event_id": event_id,
                        "subject_id": subject,
                        "engine": eng.name,
                        "outcome": outcome,
                        "reason": reason,
                        "consent_version": consent_version,
                        "policy_version": policy_version,
                        "categories_sent": cats,
                        "ts": ts,
                        "decided_at": now,
                        "source_topic": topic,
                        "source_partition": partition,
                        "source_offset": offset,
                    }), None))
            except EncodeError as exc:
                # a payload value the output schema cannot hold (e.g. a JSON input with a
                # number where Avro wants text): the input is bad, nothing of it is emitted
                self._dlq(res, rec, exc.error_class, "output: " + _msg(exc), key_subject, event_id, ts)
                continue
            out.extend(pending)
            res.decided += 1
            for name in sent_to:
                emitted[name] += 1
            for reason in reasons:
                dropped[reason] = dropped.get(reason, 0) + 1
        return res


# ---------------------------------------------------------------- fast decision path
#
# The rule of decide.py applied per (state, engine) through a summary computed once per
# consent state, and the records the filter writes assembled from precomputed byte
# fragments. Each fragment is what the output codec writes for that part of the record
# (the codecs are the reference; tests/unit/engine/test_fast_path.py checks the bytes
# are identical), so only the parts that vary per event are encoded per event.

_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
#: ``max granted_at`` / ``min expires_at`` placeholders that never fail a check.
_NEVER_AFTER = -(1 << 64)
_NEVER_EXPIRES = 1 << 200
#: Bound of the per-subject summary cache (entries; cleared when reached). It serves
#: subjects that are active now (a session's events come close together); a miss
#: costs ~1 us per engine. 65,536 entries hold ~40 MB at most, whatever the population
#: (at 1 << 20 the cache alone could hold ~600 MB for a million subjects).
SUMMARY_CACHE_MAX = 1 << 16
#: Bound of each engine's pseudonym cache (entries; cleared when reached).
PSEUDONYM_CACHE_MAX = 1 << 16


#: Summaries that hold no per-subject time, shared by every subject they apply to.
_NO_CONSENT_SUMMARY = (NO_CONSENT, _NEVER_AFTER, _NEVER_EXPIRES, None, 0, None)
_PURPOSE_DENIED_SUMMARY = (PURPOSE_DENIED, _NEVER_AFTER, _NEVER_EXPIRES, None, 0, None)


def _engine_summary(eng: CompiledEngine, state: tuple) -> tuple:
    """``(pre, max_granted_at, min_expires_at, post, allowed, plans)`` of one engine for one state.

    ``decide.decide`` for any event reduces to: ``pre`` if set; else ``before_grant``
    when ``max_granted_at > ts``; else ``expired`` unless ``now < min_expires_at and
    ts < min_expires_at``; else ``post`` if set; else the projection over ``allowed``
    (``plans``: ``eng.type_plans(allowed)``)."""
    prof = state[PROFILE]
    if prof[P_FLAGS] & BLOCKED or prof[P_VOCAB] != eng.vocab_fp:
        return _NO_CONSENT_SUMMARY
    granted = prof[P_GRANTED]
    needs = eng.needs_mask
    if granted & needs != needs:
        return _PURPOSE_DENIED_SUMMARY
    times = state[TIMES]
    max_ga = _NEVER_AFTER
    min_ea = _NEVER_EXPIRES
    for i in eng.needs_idx:
        ga, ea = PAIR.unpack_from(times, 16 * pair_index(granted, i))
        if ga > max_ga:
            max_ga = ga
        if ea < min_ea:
            min_ea = ea
    post = None
    allowed = 0
    jur = eng.jurisdictions
    if eng.third_party and prof[P_GPC]:
        post = OPT_OUT
    elif eng.third_party and not granted & eng.tps_bit:
        post = PURPOSE_DENIED
    elif jur is not None and prof[P_JURISDICTION] not in jur:
        post = REGION_BLOCKED
    else:
        allowed = eng.categories_mask & prof[P_CATEGORIES]
        if not allowed:
            post = NOTHING_PERMITTED
    return None, max_ga, min_ea, post, allowed, eng.type_plans(allowed) if allowed else None


def _avro_str(s: str) -> bytes:
    b = s.encode()
    return bytes(_write_long(len(b))) + b


def _avro_long(n: int) -> bytes:
    return bytes(_write_long(n))


class _JsonFragments:
    """Decision records and engine outputs as JSON, byte-identical to ``JsonCodec.encode``
    of the dicts ``Filter`` builds (same keys, same order)."""

    def __init__(self, policy: CompiledPolicy) -> None:
        d = orjson.dumps
        self.cvp_suffix = b',"policy_version":' + d(policy.version) + b',"categories_sent":'
        self.topics: dict[str, bytes] = {}
        self.trailers = {
            eng.name: (b',"consent_version":',
                       b',"policy_version":' + d(eng.policy_version) + b',"purposes":' + d(list(eng.relied_on))
                       + b',"engine":' + d(eng.name) + b'}')
            for eng in policy.engines
        }

    def mid(self, engine: str | None, outcome: str, reason: str | None) -> bytes:
        d = orjson.dumps
        return d(engine) + b',"outcome":' + d(outcome) + b',"reason":' + d(reason) + b',"consent_version":'

    def cats(self, names: list[str]) -> bytes:
        return orjson.dumps(names)

    def event(self, event_id: str, subject: str | None, cv: int | None, ts: int, now: int, topic: str,
              partition: int, offset: int) -> tuple[bytes, bytes, bytes, bytes]:
        """(head, cvp, tail, head-less rest of a drop) of an event's decisions."""
        d = orjson.dumps
        head = b'{"event_id":' + d(event_id) + b',"subject_id":' + d(subject) + b',"engine":'
        cvp = (b"null" if cv is None else b"%d" % cv) + self.cvp_suffix
        t = self.topics.get(topic)
        if t is None:
            t = self._topic(topic)
        tail = b',"ts":%d,"decided_at":%d,"source_topic":%b,"source_partition":%d,"source_offset":%d}' % (
            ts, now, t, partition, offset)
        return head, cvp, tail, cvp + b"[]" + tail

    def _topic(self, topic: str) -> bytes:
        t = orjson.dumps(topic)
        if len(self.topics) < 1024:
            self.topics[topic] = t
        return t

    def output(self, out: dict, engine: str, cv: int) -> bytes:
        """An engine output: ``out`` (envelope and fields) then the engine's trailer.
        Raises (orjson) when ``out`` is not serializable: the caller falls back to the codec."""
        a, b = self.trailers[engine]
        return orjson.dumps(out)[:-1] + a + b"%d" % cv + b


class _AvroFragments:
    """Decision records in the Confluent wire format, byte-identical to ``AvroCodec.encode``."""

    def __init__(self, policy: CompiledPolicy, header: bytes) -> None:
        self.header = header
        self.cvp_suffix = _avro_str(policy.version)
        self.topics: dict[str, bytes] = {}
        self._now: Any = None
        self._now_bytes = b""

    def mid(self, engine: str | None, outcome: str, reason: str | None) -> bytes:
        return ((b"\x00" if engine is None else b"\x02" + _avro_str(engine)) + _avro_str(outcome)
                + (b"\x00" if reason is None else b"\x02" + _avro_str(reason)))

    def cats(self, names: list[str]) -> bytes:
        if not names:
            return b"\x00"
        return _avro_long(len(names)) + b"".join(_avro_str(n) for n in names) + b"\x00"

    def event(self, event_id: str, subject: str | None, cv: int | None, ts: int, now: int, topic: str,
              partition: int, offset: int) -> tuple[bytes, bytes, bytes, bytes]:
        """(head, cvp, tail, head-less rest of a drop) of an event's decisions."""
        e = event_id.encode()
        n = len(e)
        head = self.header + b"\x02" + (_LEN1[n] if n < 64 else _write_long(n)) + e
        if subject is None:
            head += b"\x00"
        else:
            s = subject.encode()
            n = len(s)
            head += b"\x02" + (_LEN1[n] if n < 64 else _write_long(n)) + s
        cvp = (b"\x00" if cv is None else b"\x02" + _write_long(cv)) + self.cvp_suffix
        t = self.topics.get(topic)
        if t is None:
            t = self._topic(topic)
        if now != self._now:
            self._now = now
            self._now_bytes = bytes(_write_long(now))
        tail = b"".join((b"\x02", _write_long(ts), self._now_bytes, t, _write_long(partition), _write_long(offset)))
        return head, cvp, tail, cvp + b"\x00" + tail

    def _topic(self, topic: str) -> bytes:
        t = _avro_str(topic)
        if len(self.topics) < 1024:
            self.topics[topic] = t
        return t

    output = None  # engine outputs go through the codec (dicts)


class _FastEngine:
    """Per-engine constants of the fast path."""

    __slots__ = ("eng", "name", "topic", "mids", "mid_emitted", "cats", "pseudonymize", "pseudonyms")

    def __init__(self, eng: CompiledEngine, frags: Any) -> None:
        self.eng = eng
        self.name = eng.name
        self.topic = eng.topic
        self.mids = {r: frags.mid(eng.name, DROPPED, r) for r in REASONS}
        self.mid_emitted = frags.mid(eng.name, EMITTED, None)
        self.cats: dict[int, tuple[list[str], bytes]] = {}
        self.pseudonymize = eng.pseudonymize_subject
        #: subject -> pseudonym (bounded; an erased subject's entry is dropped)
        self.pseudonyms: dict[str, str] = {}


_TS_MIN, _TS_MAX = -(1 << 63), (1 << 63) - 1


def _msg(exc: Exception) -> str:
    """The message of a codec error without its class prefix (it never holds a value)."""
    return str(exc.args[0]) if exc.args else exc.__class__.__name__


def _event_problem(event: Any) -> str | None:
    """What makes a decoded event unusable (field names only, never values)."""
    if type(event) is not dict:
        return "event is not an object"
    if type(event.get("event_id")) is not str or not event["event_id"]:
        return "event_id: missing or not a non-empty string"
    if type(event.get("event_type")) is not str:
        return "event_type: missing or not a string"
    ts = event.get("ts")
    if type(ts) is not int:
        return "ts: missing or not an integer"
    if not _TS_MIN <= ts < _TS_MAX:
        return "ts: out of range"
    s = event.get("subject_id")
    if s is not None and (type(s) is not str or not s):
        return "subject_id: not a non-empty string"
    ctx = event.get("context")
    if ctx is not None and type(ctx) is not dict:
        return "context: not an object"
    return None
