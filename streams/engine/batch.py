"""The batch API every runtime and test uses (docs/architecture.md).

Records in and out are plain tuples:

- ``InputRecord = (topic, partition, offset, key, value, headers, timestamp_ms)``
- ``OutRecord = (topic, key, value, headers)``

``Filter.apply_consent(records)`` merges consent records into the store;
``Filter.decide(records)`` decides click and purchase events for every engine.
Both return a ``BatchResult`` whose ``records`` are what to produce and whose
counters say what happened. Counts reconcile (CONTRACT G3): per call,
``sum(emitted) + sum(dropped) == decided * len(engines)`` and every input that
is not decided is counted once in ``dlq``. There is exactly one decision record
per input record (CONTRACT §7, ``streams.engine.decisions``): per decided event,
holding one entry per engine; per DLQ entry, one ``dlq`` record.

``decide`` has two paths giving the same bytes: a fast one (per-state summaries,
``streams.engine.summary``, and byte fragments, ``streams.engine.fragments``) for
the formats our codecs write, and the codec path (``decide.decide`` per engine,
dicts through the codecs), which is the reference and handles everything else.

Size (a little over 500 lines): ``Filter`` is the one place both runtimes call, and its
``decide`` and ``apply_consent`` share the result, DLQ and key-ring plumbing; the pieces
that split cleanly already live beside it (summary, fragments).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from streams.crypto import KeyRecord, KeyRing
from streams.engine import decisions
from streams.engine.signals import SignalCache
from streams.engine.codecs import (
    AvroCodec, DecodeError, EncodeError, JsonCodec, check_consent, decode_key, get_codec, topic_subject,
)
from streams.engine.consent import (
    BLOCKED, DELETED, P_FLAGS, P_VOCAB, PROFILE, UPDATED_AT, MalformedConsent, merge, merge_state,
    parse_wellformed,
)
from streams.engine.decide import decide as _decide
from streams.engine.decide import project_plan
from streams.engine.dlq import (
    INVALID_EVENT, KEY_MISMATCH, MISSING_KEY, NULL_VALUE, dlq_headers, event_problem, error_message,
)
from streams.engine.fragments import AvroFragments, FastEngine, JsonFragments
from streams.engine.policy import CompiledPolicy
from streams.engine.sealing import Sealer, avro_bytes_paths, ephemeral_ring
from streams.engine.summary import CachedSummaries, EngineSummary, engine_summary
from streams.engine.vocab import (
    ANONYMOUS, BEFORE_GRANT, DECIDED, DLQ, DROPPED, EMITTED, EVENT_TYPES, EXPIRED, I32_MAX, I32_MIN, I64_MAX,
    I64_MIN, NO_CONSENT, NOTHING_PERMITTED, SHARED_REASONS,
)

InputRecord = tuple  # (topic, partition, offset, key, value, headers, timestamp_ms)
OutRecord = tuple    # (topic, key, value, headers)

__all__ = ["BatchResult", "DLQ", "DROPPED", "EMITTED", "Filter", "InputRecord", "OutRecord", "TopicNames"]


@dataclass(frozen=True)
class TopicNames:
    clickstream: str = "clickstream"
    purchases: str = "purchases"
    consent: str = "consent"
    decisions: str = "personalization.decisions"
    erasures: str = "personalization.erasures"
    dlq: str = "personalization.dlq"
    keys: str = "personalization.keys"


@dataclass
class BatchResult:
    records: list[OutRecord] = field(default_factory=list)
    #: engine -> events emitted to it (every engine present, possibly 0)
    emitted: dict[str, int] = field(default_factory=dict)
    #: reason -> (event, engine) pairs dropped for it
    dropped: dict[str, int] = field(default_factory=dict)
    #: inputs sent to the DLQ
    dlq: int = 0
    #: events decided (each has one decision record, with one entry per engine)
    decided: int = 0
    #: consent records merged (valid ones, whether they won or not)
    consent: int = 0
    #: tombstones applied (each yields one erasure notice per engine)
    erasures: int = 0
    #: things ignored but counted: unknown_purpose, unknown_category, basis_not_allowed
    ignored: dict[str, int] = field(default_factory=dict)
    #: data keys created by this call (``encrypt`` transform, CONTRACT §10); their records
    #: (topic ``keys``, keyed by subject) are in ``records`` too, so a runtime that produces
    #: ``records`` in one transaction commits each key with the first output using it
    keys: list[KeyRecord] = field(default_factory=list)
    #: data keys tombstoned by this call (erasures of subjects, when the policy encrypts)
    shredded: int = 0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Filter:
    """Consent-enforcing filter over one consent store (see the module doc).

    ``store``: ``MutableMapping[str, ConsentState]`` (a dict by default); it is
    a public attribute and may be swapped between calls. ``clock``: epoch ms,
    read once per decided event (``now`` of the rule). ``keyring``: the data keys
    of the ``encrypt`` transform (``streams.engine.sealing``), a public attribute
    that may be swapped between calls like ``store`` (a runtime keeps one per
    partition); None with an encrypting policy: an ephemeral ring (tests).
    ``nonces``: tests only, a deterministic nonce source.
    """

    def __init__(
        self,
        policy: CompiledPolicy,
        topics: TopicNames,
        formats: dict[str, str],
        store: MutableMapping[str, tuple] | None = None,
        clock: Callable[[], int] | None = None,
        registry_url: str | None = None,
        keyring: KeyRing | None = None,
        nonces: Callable[[int], bytes] | None = None,
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
        #: consent signal strings decoded once per distinct string (CONTRACT §3; many subjects
        #: share a CMP's strings): one cache per filter, read only when consent is applied
        self.signal_cache = SignalCache()
        #: the encrypt transform, or None when no engine encrypts (nothing to key, nothing to shred)
        self._sealer: Sealer | None = None
        if policy.encrypts:
            kw = {} if nonces is None else {"nonces": nonces}
            self._sealer = Sealer(keyring if keyring is not None else ephemeral_ring(),
                                  binary=avro_bytes_paths() if self.formats.get("output") == "avro" else False,
                                  clock=self.clock, **kw)
        # fast path (see _fragments, _summaries): built on first use
        self._frags: JsonFragments | AvroFragments | None = None
        self._fast: list[FastEngine] | None = None
        self._summary_cache: dict[str, CachedSummaries] = {}
        #: event codecs whose decode checks the envelope types (ours, for event kinds)
        self._enveloped = {c for c in self._event_codecs.values()
                           if type(c) in (JsonCodec, AvroCodec) and c.kind in EVENT_TYPES}

    # ------------------------------------------------------------- helpers
    @property
    def keyring(self) -> KeyRing | None:
        """The data keys in use (None when the policy encrypts nothing)."""
        return self._sealer.ring if self._sealer is not None else None

    @keyring.setter
    def keyring(self, ring: KeyRing) -> None:
        if self._sealer is not None:
            self._sealer.ring = ring

    def _new_result(self) -> BatchResult:
        return BatchResult(emitted={e.name: 0 for e in self._engines})

    def _dlq(self, res: BatchResult, rec: InputRecord, error_class: str, message: str,
             subject: str | None, event_id: Any = None, ts: Any = None) -> None:
        """A DLQ entry (original key and bytes, headers saying why and whence) and its decision."""
        topic, partition, offset, key, value, _headers, timestamp_ms = rec
        res.records.append((self.topics.dlq, key, value,
                            dlq_headers(error_class, message, topic, partition, offset)))
        res.dlq += 1
        decision = decisions.record(
            event_id if type(event_id) is str else None, subject, DLQ, error_class, [], None, self.policy.version,
            ts if type(ts) is int else None, self.clock(), topic, partition, offset)
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
        # our codecs validate consent records completely (codecs.check_consent) after
        # decoding; the fast path below does that check and the parse in one pass
        raw_decode = (codec.decode_unchecked if type(codec) in (JsonCodec, AvroCodec) and codec.check is check_consent
                      else None)
        for rec in records:
            topic, partition, offset, key, value, _h, _ts = rec
            if topic != consent_topic:
                raise ValueError(f"apply_consent: record of topic {topic!r} is not a consent record")
            if type(partition) is not int or not I32_MIN <= partition <= I32_MAX:
                raise ValueError("apply_consent: a record's partition is not a 32-bit integer")
            subject, problem = self._key(key)
            if problem is not None:
                self._dlq(res, rec, problem.error_class, error_message(problem), None)
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
                if self._sealer is not None:
                    # G4: shred. The tombstone goes out whether or not a key is known here
                    # (cheap, idempotent, and true after a restore that missed nothing)
                    self._sealer.forget(subject)
                    res.records.append((self.topics.keys, key, None, None))
                    res.shredded += 1
                continue
            current = st.get(subject)
            bad: MalformedConsent | None = None
            try:
                doc = raw_decode(value) if raw_decode is not None else codec.decode(value)
            except DecodeError as exc:
                bad = MalformedConsent(exc.error_class, error_message(exc), None)
            else:
                # fast path: one pass that validates what the codec check and parse_consent
                # would and builds the state; anything else takes the check and merge below
                parsed = (parse_wellformed(doc, subject, offset, vocab, res.ignored, self.signal_cache)
                          if raw_decode else None)
                if parsed is not None:
                    new = merge_state(current, parsed, vocab)
                else:
                    try:
                        if raw_decode is not None:
                            codec.check(doc)
                        new = merge(current, subject, doc, offset, vocab, res.ignored, self.signal_cache)
                    except DecodeError as exc:
                        bad = MalformedConsent(exc.error_class, error_message(exc), None)
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
    def _fragments(self) -> JsonFragments | AvroFragments | None:
        """The decision/output fragment builder of the output format, or None (codec path).

        Avro needs the codec's schema id: until the codec has one (registry: first
        encode), decisions go through the codec, which registers."""
        frags = self._frags
        if frags is None:
            codec = self._decision_codec
            if type(codec) is JsonCodec and type(self._out_codec) is JsonCodec:
                frags = JsonFragments(self.policy)
            elif type(codec) is AvroCodec and codec.header is not None:
                frags = AvroFragments(self.policy, codec.header)
            else:
                return None
            self._frags = frags
            self._fast = [FastEngine(e, i == 0, frags) for i, e in enumerate(self._engines)]
        return frags

    def _summaries(self, subject: str, state: tuple) -> tuple[EngineSummary, ...]:
        """Per-engine summaries of a state (``summary.engine_summary``), cached per subject
        while the store holds the same state object."""
        cache = self._summary_cache
        hit = cache.get(subject)
        if hit is not None and hit.state is state:
            return hit.summaries
        summ = tuple(engine_summary(e, state) for e in self._engines)
        if len(cache) >= SUMMARY_CACHE_MAX:
            cache.clear()
        cache[subject] = CachedSummaries(state, summ)
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
        decisions_topic = self.topics.decisions
        vocab_fp = self.policy.vocab.fingerprint
        n_engines = len(self._engines)
        frags = self._fragments()
        fast = self._fast if frags is not None else None
        summaries = self._summaries
        enveloped = self._enveloped
        cache_get = self._summary_cache.get
        seal = self._sealer.seal if self._sealer is not None else None
        for rec in records:
            topic, partition, offset, key, value, _h, timestamp_ms = rec
            codec = codecs.get(topic)
            if codec is None:
                raise ValueError(f"decide: record of topic {topic!r} is not an event topic")
            if type(partition) is not int or not I32_MIN <= partition <= I32_MAX:
                # not a Kafka record (partitions are int32): the Avro audit records could
                # not name it (this raised EncodeError mid-batch before), JSON ones would
                raise ValueError("decide: a record's partition is not a 32-bit integer")
            if type(key) is bytes:
                try:
                    key_subject = key.decode("utf-8")
                except UnicodeDecodeError:
                    key_subject, problem = self._key(key)
                    self._dlq(res, rec, problem.error_class, error_message(problem), None)
                    continue
            else:
                key_subject, problem = self._key(key)
                if problem is not None:
                    self._dlq(res, rec, problem.error_class, error_message(problem), None)
                    continue
            if value is None:
                self._dlq(res, rec, NULL_VALUE, "event value is null", key_subject)
                continue
            try:
                event = codec.decode(value)
            except DecodeError as exc:
                self._dlq(res, rec, exc.error_class, error_message(exc), key_subject)
                continue
            if codec in enveloped:
                # the codec checked the envelope's types (event_id str, ts int in the 64-bit
                # range, subject_id str or null, context object or null): what is left of
                # event_problem is empty strings and the one excluded ts
                subject = event.get("subject_id")
                problem = (event_problem(event) if not event["event_id"] or event["ts"] == I64_MAX or subject == ""
                           else None)
            else:
                problem = event_problem(event)
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
            now = clock()
            if (fast is None or type(now) is not int or not I64_MIN <= now <= I64_MAX
                    or type(partition) is not int or not I32_MIN <= partition <= I32_MAX
                    or type(offset) is not int or not I64_MIN <= offset <= I64_MAX
                    or (consent_version is not None
                        and (type(consent_version) is not int or not I64_MIN <= consent_version <= I64_MAX))):
                self._decide_codec(res, rec, event, subject, key_subject, state, consent_version, now)
                continue
            # ---- fast path: summaries and fragments (same bytes as _decide_codec)
            try:
                head, rest = frags.event(event_id, subject, consent_version, ts, now, topic, partition, offset)
            except Exception:  # noqa: BLE001 - not encodable: the codec path says why
                self._decide_codec(res, rec, event, subject, key_subject, state, consent_version, now)
                continue
            # step 1 of the rule (anonymous, no_consent) is decided before any engine: one
            # shared reason, no entries. consent_version is None exactly when the state is
            # absent, blocked, or of another vocabulary: decide's no_consent cases.
            if subject is None or consent_version is None:
                reason = ANONYMOUS if subject is None else NO_CONSENT
                out.append((decisions_topic, key, head + frags.shared[reason] + rest, None))
                res.decided += 1
                dropped[reason] = dropped.get(reason, 0) + n_engines
                continue
            hit = cache_get(subject)
            summ = hit.summaries if hit is not None and hit.state is state else summaries(subject, state)
            event_type = event.get("event_type")
            parts = [head, frags.opening]
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
                        o, sent = project_plan(eng, event, subject, plan, ts, seal)
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
                            value_bytes = None
                            if frags.output is not None:
                                try:
                                    value_bytes = frags.output(o, fe.name, consent_version)
                                except Exception:  # noqa: BLE001 - the codec says why
                                    value_bytes = None
                            if value_bytes is None:
                                o["consent_version"] = consent_version
                                o["policy_version"] = eng.policy_version
                                o["purposes"] = list(eng.relied_on)
                                o["engine"] = fe.name
                                value_bytes = enc_out(o)
                            pending.append((fe.topic, okey, value_bytes, None))
                            sent_to.append(fe.name)
                            parts.append(fe.emitted(sent))
                            continue
                    reasons.append(reason)
                    parts.append(fe.dropped[reason])
            except EncodeError as exc:
                self._dlq(res, rec, exc.error_class, "output: " + error_message(exc), key_subject, event_id, ts)
                continue
            parts.append(frags.closing)
            parts.append(rest)
            out.append((decisions_topic, key, b"".join(parts), None))
            out.extend(pending)
            res.decided += 1
            for name in sent_to:
                emitted[name] += 1
            for reason in reasons:
                dropped[reason] = dropped.get(reason, 0) + 1
        if self._sealer is not None and self._sealer.new:
            self._add_keys(res)
        return res

    def _add_keys(self, res: BatchResult) -> None:
        """The data keys this call created, as records of the keys topic (same batch as the
        first outputs that use them: one transaction, CONTRACT §10)."""
        topic = self.topics.keys
        for rec in self._sealer.drain():
            res.keys.append(rec)
            res.records.append((topic, rec.subject_id.encode("utf-8", "surrogatepass"), rec.to_json(), None))

    def _decide_codec(self, res: BatchResult, rec: InputRecord, event: dict, subject: str | None,
                      key_subject: str | None, state: tuple | None, consent_version: Any, now: Any) -> None:
        """The codec path of one validated event: ``decide.decide`` per engine, dicts
        through the codecs. The reference of the fast path (same records, same counters)."""
        topic, partition, offset, key, _value, _h, _ts = rec
        enc_out = self._out_codec.encode
        seal = self._sealer.seal if self._sealer is not None else None
        event_id = event["event_id"]
        ts = event["ts"]
        pending = []
        sent_to = []
        reasons = []
        entries = []
        try:
            for eng in self._engines:
                reason, fe, sent = _decide(eng, event, subject, state, now, seal)
                if reason is None:
                    pending.append((eng.topic, fe["subject_id"].encode("utf-8", "surrogatepass"), enc_out(fe), None))
                    sent_to.append(eng.name)
                    entries.append(decisions.entry(eng.name, EMITTED, None, eng.category_names(sent)))
                else:
                    reasons.append(reason)
                    entries.append(decisions.entry(eng.name, DROPPED, reason, []))
            shared = (reasons[0] if reasons and len(reasons) == len(entries) and reasons[0] in SHARED_REASONS
                      else None)
            if shared is not None:  # step 1 of the rule fails for every engine alike
                entries = []
            decision = self._decision_codec.encode(decisions.record(
                event_id, subject, DECIDED, shared, entries, consent_version, self.policy.version, ts, now,
                topic, partition, offset))
        except EncodeError as exc:
            # a payload value the output schema cannot hold (e.g. a JSON input with a
            # number where Avro wants text): the input is bad, nothing of it is emitted
            self._dlq(res, rec, exc.error_class, "output: " + error_message(exc), key_subject, event_id, ts)
            return
        res.records.append((self.topics.decisions, key, decision, None))
        res.records.extend(pending)
        res.decided += 1
        for name in sent_to:
            res.emitted[name] += 1
        for reason in reasons:
            res.dropped[reason] = res.dropped.get(reason, 0) + 1


#: Bound of the per-subject summary cache (entries; cleared when reached). It serves
#: subjects that are active now (a session's events come close together); a miss
#: costs ~1 us per engine. 65,536 entries hold ~40 MB at most, whatever the population
#: (at 1 << 20 the cache alone could hold ~600 MB for a million subjects).
SUMMARY_CACHE_MAX = 1 << 16
#: Bound of each engine's pseudonym cache (entries; cleared when reached): one HMAC
#: costs ~1.5 us, a hit ~50 ns; active subjects repeat within a session.
PSEUDONYM_CACHE_MAX = 1 << 16
