"""Reads one subject's rows from Kafka: only the partitions its keys hash to.

Every producer here partitions with murmur2 (``streams.kafka.partitioner``), so a
subject's decisions, consent records, notices and data key sit in partition
``partition_for(subject id)`` of their topics. Erasure notices of a pseudonymized
engine are keyed by that engine's pseudonym: with the pseudonym secret configured
that partition is read too (the pseudonym is only compared, never returned);
without it those receipts cannot be found and the others still are.

A topic that does not exist (notices and data keys come with later features) reads
as ``None``, which the renderings show as "none".
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.config import Settings
from streams.engine.codecs import DecodeError, get_codec
from streams.errors import PFilterError
from streams.kafka.clients import plain_consumer_config
from streams.kafka.partitioner import partition_for
from streams.transparency.records import (
    ConsentEntry,
    KeyEntry,
    Sources,
    decisions_from,
    erasures_from,
    notices_from,
)
from streams.transparency.summary import SubjectSummary, build_summary, policy_view

#: Defaults of topics whose settings come with other features (CONTRACT §2); a
#: setting of that name, once it exists, wins.
DEFAULT_NOTICES_TOPIC = "personalization.notices"
DEFAULT_KEYS_TOPIC = "personalization.keys"
#: Per-call wait of the reader; a whole read is bounded by the partition's end offset.
_POLL_S = 1.0
#: How long metadata and watermark requests may take before the broker counts as down.
_META_TIMEOUT_S = 30


class SourceError(PFilterError):
    """A subject's records could not be read (names the topic, never a record)."""


def _consumer(settings: Settings) -> Consumer:
    return Consumer(plain_consumer_config(settings, "pfilter-transparency", **{
        "enable.partition.eof": True, "isolation.level": "read_committed"}))


class _Reader:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.c = _consumer(settings)
        self._parts: dict[str, int | None] = {}

    def close(self) -> None:
        self.c.close()

    def partitions(self, topic: str) -> int | None:
        if topic not in self._parts:
            md = self.c.list_topics(topic, timeout=_META_TIMEOUT_S)
            t = md.topics.get(topic)
            ok = t is not None and t.error is None and len(t.partitions) > 0
            self._parts[topic] = len(t.partitions) if ok else None
        return self._parts[topic]

    def read(self, topic: str, key: bytes) -> Iterator[tuple[bytes | None, int, int | None]]:
        """(value, offset, log time ms) of every record keyed ``key`` in its partition."""
        n = self.partitions(topic)
        if n is None:
            return
        p = partition_for(key, n)
        lo, hi = self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=_META_TIMEOUT_S, cached=False)
        if hi <= lo:
            return
        self.c.assign([TopicPartition(topic, p, lo)])
        try:
            while True:
                msgs = self.c.consume(5000, timeout=_POLL_S)
                for m in msgs:
                    if m.error() is not None:
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            return
                        raise SourceError(f"reading {topic}[{p}] failed: {m.error().name()}")
                    if m.key() == key:
                        kind, ts = m.timestamp()
                        yield m.value(), m.offset(), ts if kind else None
                    if m.offset() >= hi - 1:
                        return
        finally:
            self.c.unassign()


def _decode_json_or(codec, value: bytes) -> dict:  # noqa: ANN001
    """JSON records are read leniently (a newer form of a record may add fields)."""
    return orjson.loads(value) if isinstance(codec, str) else codec.decode(value)


def read_sources(settings: Settings, subject: str, policy) -> Sources:  # noqa: ANN001
    """Every row of ``subject`` from its partitions (``policy``: the compiled policy)."""
    key = subject.encode("utf-8", "surrogatepass")
    out_fmt = settings.format_output
    dec_codec = "json" if out_fmt == "json" else get_codec("decision_record", out_fmt)
    r = _Reader(settings)
    try:
        if r.partitions(settings.topic_decisions) is None:
            raise SourceError(f"decision topic {settings.topic_decisions!r} does not exist")
        raw = []
        for v, _off, _ts in r.read(settings.topic_decisions, key):
            if v is None:
                continue
            d = _decode_json_or(dec_codec, v)
            if d.get("subject_id") in (subject, None):
                raw.append(d)
        decisions = decisions_from(raw, [e.name for e in policy.engines])

        consent_codec = get_codec("consent_record", settings.format_consent)
        consents = []
        for v, off, ts in r.read(settings.topic_consent, key):
            if v is None:
                consents.append(ConsentEntry(off, ts, "tombstone"))
                continue
            try:
                rec = consent_codec.decode(v)
            except DecodeError as exc:
                consents.append(ConsentEntry(off, ts, "malformed", problem=exc.error_class))
                continue
            if rec.get("subject_id") != subject:
                consents.append(ConsentEntry(off, ts, "malformed", problem="subject_mismatch"))
            else:
                consents.append(ConsentEntry(off, ts, "record", rec))

        notices_topic = getattr(settings, "topic_notices", None) or DEFAULT_NOTICES_TOPIC
        notices = None
        if r.partitions(notices_topic) is not None:
            notices = notices_from(orjson.loads(v) for v, _o, _t in r.read(notices_topic, key) if v is not None)

        erasures = None
        if r.partitions(settings.topic_erasures) is not None:
            er_codec = "json" if out_fmt == "json" else get_codec("erasure_notice", out_fmt)
            found = []
            refs = {key: {e.name for e in policy.engines if not e.pseudonymize_subject}}
            if _has_secret(settings):
                for e in policy.engines:
                    if e.pseudonymize_subject:
                        refs.setdefault(e.subject_ref(subject).encode(), set()).add(e.name)
            for ref, engines in refs.items():
                for v, _o, _t in r.read(settings.topic_erasures, ref):
                    if v is None:
                        continue
                    n = _decode_json_or(er_codec, v)
                    if n.get("engine") in engines:
                        # keyed by the pseudonym: say so (workers may leave the flag unset)
                        found.append({**n, "pseudonymized": bool(n.get("pseudonymized")) or ref != key})
            erasures = erasures_from(found)

        keys_topic = getattr(settings, "topic_keys", None) or DEFAULT_KEYS_TOPIC
        keys = None
        if r.partitions(keys_topic) is not None:
            keys = [KeyEntry(o, t, v is not None) for v, o, t in r.read(keys_topic, key)]
    finally:
        r.close()
    return Sources(decisions, consents, notices, erasures, keys)


def _has_secret(settings: Settings) -> bool:
    from streams.wiring import pseudonym_secret

    return pseudonym_secret(settings) is not None


def load_summary(settings: Settings, subject: str, now: int | None = None) -> SubjectSummary:
    """Read and build the subject's summary."""
    from streams.wiring import load_policy, policy_for_topics

    policy = load_policy(settings) if _has_secret(settings) else policy_for_topics(settings)
    src = read_sources(settings, subject, policy)
    return build_summary(policy_view(policy), subject, src, int(time.time() * 1000) if now is None else now)
