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

from streams.engine.codecs import DecodeError, EncodeError, decode_key, get_codec
from streams.engine.consent import (
    DELETED, FLAGS, BLOCKED, UPDATED_AT, VOCAB, MalformedConsent, merge,
)
from streams.engine.decide import decide as _decide
from streams.engine.policy import CompiledPolicy

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
    ) -> None:
        self.policy = policy
        self.topics = topics
        self.formats = dict(formats)
        self.store = {} if store is None else store
        self.clock = clock or _now_ms
        fmt = self.formats.get
        self._event_codecs = {
            topics.clickstream: get_codec("click_event", fmt(topics.clickstream, "json")),
            topics.purchases: get_codec("purchase_event", fmt(topics.purchases, "json")),
        }
        self._consent_codec = get_codec("consent_record", fmt(topics.consent, "json"))
        out = fmt("output", "json")
        self._out_codec = get_codec("filtered_event", out)
        self._decision_codec = get_codec("decision_record", out)
        self._erasure_codec = get_codec("erasure_notice", out)
        self._engines = policy.engines

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
                old = st.pop(subject, None)
                version = None if old is None or old[FLAGS] & BLOCKED else old[UPDATED_AT]
                self._erasure_notices(res, subject, version)
                continue
            current = st.get(subject)
            bad: MalformedConsent | None = None
            try:
                doc = self._consent_codec.decode(value)
            except DecodeError as exc:
                bad = MalformedConsent(exc.error_class, _msg(exc), None)
            else:
                try:
                    new = merge(current, subject, doc, offset, vocab, res.ignored)
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
        for rec in records:
            topic, partition, offset, key, value, _h, timestamp_ms = rec
            codec = codecs.get(topic)
            if codec is None:
                raise ValueError(f"decide: record of topic {topic!r} is not an event topic")
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
            problem = _event_problem(event)
            if problem is not None:
                self._dlq(res, rec, INVALID_EVENT, problem, key_subject,
                          event.get("event_id") if type(event) is dict else None)
                continue
            subject = event.get("subject_id")
            if subject is not None and subject != key_subject:
                self._dlq(res, rec, KEY_MISMATCH, "subject_id differs from the record key",
                          key_subject, event["event_id"], event["ts"])
                continue
            state = store.get(subject) if subject is not None else None
            if state is not None and (state[FLAGS] & BLOCKED or state[VOCAB] != vocab_fp):
                consent_version = None
            else:
                consent_version = None if state is None else state[UPDATED_AT]
            event_id = event["event_id"]
            ts = event["ts"]
            now = clock()
            pending = []
            sent_to: list[str] = []
            reasons: list[str] = []
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
