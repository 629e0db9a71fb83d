"""The engine SDK: what a downstream engine needs to consume its ``personalization.<engine>`` topic.

::

    from streams.sdk import EngineConsumer

    def forget(subject: str) -> None:          # a subject id, or the engine's pseudonym of it
        db.execute("DELETE FROM profile WHERE subject = ?", (subject,))

    with EngineConsumer(engine="email", bootstrap="kafka:9092", group="email-engine",
                        kek=os.environ["PFILTER_KEK"], on_erasure=forget) as c:
        for event in c.iter(timeout=1.0):      # stops after 1 s without records
            use(event)                         # a dict; encrypted fields decrypted
            c.commit()                         # after the engine stored what it needed
        print(c.lag())                         # {partition: records behind}

What it does for the engine, so no team has to get it right alone:

* ``isolation.level=read_committed``: records of aborted transactions are never seen;
* decodes JSON or Avro filtered events with the project's codecs;
* pseudonymized subject ids stay as they are: the SDK never sees the mapping;
* erasure notices: every record of ``personalization.erasures`` addressed to
  this engine calls ``on_erasure(subject_id_or_pseudonym)``, in partition order
  with the engine's events (one consumer group reads both topics). Notices for
  other engines are skipped. Without a hook, a notice raises
  :class:`ErasureUnhandled` at once: an engine that ignores erasures must say
  so explicitly (``on_erasure=lambda s: None``);
* encrypted fields (envelopes ``pfe1.<version>.<...>``, CONTRACT §10): with a
  KEK, the SDK reads ``personalization.keys`` (all partitions, from the start,
  kept in memory, never committed) and replaces every envelope by its value.
  A tombstone there removes the key. A field whose key is gone (the subject
  was erased: crypto-shredded) is **dropped from the dict and counted** in
  ``stats["unreadable"]``; with ``strict=True`` it raises
  :class:`~streams.crypto.KeyMissingError` instead. A wrong KEK, or a
  ciphertext that does not authenticate, always raises
  :class:`~streams.crypto.WrongKeyError`: never garbage. Without a KEK,
  envelopes are left in the dict as they are.

A key tombstone takes effect when the SDK has read it: every :meth:`poll`
applies what the keys consumer fetched in the background (typically within
a fetch round trip), and :meth:`sync_keys` reads the keys topic to its end
on demand. A running engine may therefore still decrypt, for a moment, a
record it reads right after the erasure. Before its first event the SDK reads
the keys topic to its end, so a process started after the tombstone never can.

A missing key is looked up again only if the keys topic has not been read to
its end since the record was fetched. The filter writes a new subject's key in
the same transaction as the first output that uses it, so a key that is
missing after such a read (to the high watermark, waiting for the transaction's
markers: ``sync_keys(settle=True)``) is really gone; that key version is then
remembered as gone, so a replay of a shredded subject costs one read, not one
per record.

Bounded by design: :meth:`poll` waits at most ``timeout``; :meth:`iter` stops
after ``max_records`` or after one ``timeout`` without a record. Offsets are
committed only by :meth:`commit` (at least once: commit after the engine has
stored the effect of the records).

Logs (logger ``streams.sdk``) carry counts, topics, partitions and offsets only:
never a field value, a subject id, a key or a KEK (G6).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.crypto import (
    EnvelopeError,
    Kek,
    KeyMissingError,
    KeyRecordError,
    KeyRing,
    decrypt_value,
    envelope_version,
    is_envelope,
)
from streams.engine.codecs import DecodeError, decode_key, get_codec
from streams.errors import PFilterError

log = logging.getLogger("streams.sdk")

#: How long a catch-up read of the keys topic may take before the SDK gives up
#: and treats still-missing keys as missing (bounded: a test or an engine never hangs).
KEYS_CATCHUP_TIMEOUT_S = 10.0
#: Records fetched per consume() call from the keys topic while catching up.
_KEYS_BATCH = 500
#: Shredded (subject, key version) pairs remembered so that their records need no
#: keys-topic read each; ~100 B each, cleared when full (then re-learnt, one read each).
_GONE_MAX = 100_000
#: Admin-ish calls (watermarks, committed offsets): a broker that does not answer
#: within this is an outage the caller should see.
_META_TIMEOUT_S = 10.0
#: Errors of a leader moving or a topic just created (not always flagged retriable).
_TRANSIENT = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                        KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.REQUEST_TIMED_OUT,
                        KafkaError._TRANSPORT, KafkaError._TIMED_OUT})
#: Pause between retries of a retriable metadata error (a leader election takes ~100s of ms).
_META_RETRY_S = 0.1


class SdkError(PFilterError):
    """The engine SDK cannot go on (configuration, broker)."""


class ErasureUnhandled(SdkError):
    """An erasure notice arrived and no ``on_erasure`` hook was given."""


def _as_kek(kek: Kek | str | bytes | None) -> Kek | None:
    if kek is None or isinstance(kek, Kek):
        return kek
    if isinstance(kek, (bytes, bytearray)):
        return Kek(bytes(kek))
    return Kek.from_text(kek)


class EngineConsumer:
    """Consume one engine's filtered events, erasure notices and (with a KEK) data keys."""

    def __init__(
        self,
        engine: str,
        bootstrap: str,
        group: str,
        *,
        kek: Kek | str | bytes | None = None,
        on_erasure: Callable[[str], None] | None = None,
        topic: str | None = None,
        topic_prefix: str = "personalization.",
        erasures_topic: str = "personalization.erasures",
        keys_topic: str = "personalization.keys",
        fmt: str = "json",
        registry_url: str | None = None,
        strict: bool = False,
        config: dict[str, Any] | None = None,
        keys_catchup_timeout_s: float = KEYS_CATCHUP_TIMEOUT_S,
        start: str = "earliest",
    ) -> None:
        kek_obj = _as_kek(kek)  # a bad KEK fails before any client exists
        self.engine = engine
        self.topic = topic or f"{topic_prefix}{engine}"
        self.erasures_topic = erasures_topic
        self.keys_topic = keys_topic
        self.strict = strict
        self.on_erasure = on_erasure
        self._keys_timeout = keys_catchup_timeout_s
        self._events = get_codec("filtered_event", fmt, registry_url=registry_url)
        self._notices = get_codec("erasure_notice", fmt, registry_url=registry_url)
        self.stats: dict[str, int] = {"events": 0, "erasures": 0, "decrypted": 0, "unreadable": 0,
                                      "undecodable": 0, "keys": 0, "key_tombstones": 0, "key_reads": 0}
        #: (topic, partition, offset) of the last record returned by poll()
        self.last: tuple[str, int, int] | None = None
        #: dotted paths of the fields dropped from the last event (key shredded)
        self.last_unreadable: list[str] = []
        base = {"bootstrap.servers": bootstrap, "isolation.level": "read_committed",
                **(config or {})}
        self._consumer = Consumer({
            **base,
            "group.id": group,
            # where a group without committed offsets starts: "earliest" (an engine must not
            # miss records) or "latest" (a live view such as `pfilter tail`)
            "auto.offset.reset": start,
            # the engine commits (commit()) after it stored the records' effect: at least once
            "enable.auto.commit": False,
        })
        self._consumer.subscribe([self.topic, self.erasures_topic])
        # End offsets come from an admin client: on the consumers' own connections a
        # ListOffsets request waits behind the long-poll fetch (~0.5 s per partition).
        self._admin = AdminClient({k: v for k, v in base.items() if k != "isolation.level"})
        self.ring: KeyRing | None = KeyRing(kek_obj) if kek_obj is not None else None
        self._keys: Consumer | None = None
        # monotonic time the last settled read (to the high watermark) of the keys topic started
        self._keys_settled_at = -1.0
        self._gone: set[tuple[str, int]] = set()  # (subject, key version) known to be shredded
        self._first_read_tried = False
        if self.ring is not None:
            self._keys = Consumer({
                **base,
                # never committed: the keys are re-read from the start by every process
                "group.id": f"{group}.keys",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            })
            md = self._keys.list_topics(keys_topic, timeout=_META_TIMEOUT_S)
            t = md.topics.get(keys_topic)
            if t is None or t.error is not None or not t.partitions:
                self.close()
                raise SdkError(f"keys topic {keys_topic!r} does not exist (needed to decrypt fields)")
            self._keys_parts = sorted(t.partitions)
            self._keys.assign([TopicPartition(keys_topic, p, OFFSET_BEGINNING) for p in self._keys_parts])

    @classmethod
    def from_settings(cls, settings: Any, engine: str, group: str, **kw: Any) -> EngineConsumer:
        """An SDK consumer configured like the filter (``streams.config.Settings``)."""
        from streams.crypto import load_kek
        from streams.wiring import policy_for_topics

        topic = kw.pop("topic", None)
        if topic is None:
            topics = {e.name: e.topic for e in policy_for_topics(settings).engines}
            if engine not in topics:
                raise SdkError(f"engine {engine!r} is not in the policy ({', '.join(topics)})")
            topic = topics[engine]
        if "kek" not in kw:
            kw["kek"] = load_kek(settings.kek, settings.kek_file)
        return cls(engine, settings.bootstrap, group, topic=topic,
                   erasures_topic=settings.topic_erasures, keys_topic=settings.topic_keys,
                   fmt=settings.format_output, registry_url=settings.schema_registry_url, **kw)

    # ---------------------------------------------------------------- keys
    def _apply_key(self, msg: Message) -> None:
        assert self.ring is not None
        try:
            subject = decode_key(msg.key())
        except DecodeError:
            subject = None
        if subject is None:
            log.warning("skipping key record without a valid key: partition=%d offset=%d",
                        msg.partition(), msg.offset())
            return
        value = msg.value()
        try:
            rec = self.ring.add_record(subject, value)
        except KeyRecordError as exc:
            log.warning("skipping bad key record: partition=%d offset=%d problem=%s",
                        msg.partition(), msg.offset(), exc)
            return
        if rec is not None:
            self._gone.discard((subject, rec.key_version))
        self.stats["key_tombstones" if value is None else "keys"] += 1

    def _drain_keys(self) -> None:
        """Apply what the keys consumer already fetched (no waiting): tombstones act promptly."""
        if self._keys is None:
            return
        while True:
            msgs = self._keys.consume(_KEYS_BATCH, timeout=0)
            for m in msgs:
                if m.error() is None:
                    self._apply_key(m)
            if len(msgs) < _KEYS_BATCH:
                return

    def sync_keys(self, timeout_s: float | None = None, *, settle: bool = False) -> bool:
        """Read the keys topic to its current end (bounded); True when the end was reached.

        The end is the last stable offset: everything committed so far. With
        ``settle``, it is the high watermark: every key record written so far,
        waiting for the transactions it belongs to to be decided. That is the
        read a missing key needs: a transaction's commit markers reach its
        partitions one by one, so an output can be readable a moment before the
        key record committed with it."""
        if self._keys is None:
            return True
        started = time.monotonic()
        deadline = started + (self._keys_timeout if timeout_s is None else timeout_s)
        ends = self._ends(self.keys_topic, self._keys_parts, committed=not settle)
        pending = set(self._keys_parts)
        while pending:
            positions = self._keys.position([TopicPartition(self.keys_topic, p) for p in pending])
            for tp in positions:
                if ends[tp.partition] <= 0 or tp.offset >= ends[tp.partition]:
                    pending.discard(tp.partition)
            if not pending:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("keys topic not read to its end within %.1f s: %d partitions behind",
                            self._keys_timeout if timeout_s is None else timeout_s, len(pending))
                return False
            for m in self._keys.consume(_KEYS_BATCH, timeout=min(left, 0.5)):
                err = m.error()
                if err is None:
                    self._apply_key(m)
                elif err.code() == KafkaError._PARTITION_EOF:
                    # an EOF queued before this read began may name an older end: only one at
                    # or past the end taken above counts
                    if m.offset() >= ends.get(m.partition(), 0):
                        pending.discard(m.partition())
                else:
                    raise SdkError(f"reading the keys topic failed: {err.str()}")
        if settle:
            self._keys_settled_at = started
        self.stats["key_reads"] += 1
        return True

    def _ends(self, topic: str, partitions: list[int], *, committed: bool = True) -> dict[int, int]:
        """End offset per partition: the last stable offset (``committed``: what a
        read_committed reader can reach now) or the high watermark."""
        level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
        deadline = time.monotonic() + _META_TIMEOUT_S
        while True:
            futures = self._admin.list_offsets(
                {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
                isolation_level=level, request_timeout=_META_TIMEOUT_S)
            try:
                return {tp.partition: f.result().offset for tp, f in futures.items()}
            except KafkaException as exc:
                err = exc.args[0]
            # a leader moving or a topic just created answers NOT_LEADER for a moment: retry
            transient = err.retriable() or err.code() in _TRANSIENT
            if not transient or time.monotonic() >= deadline:
                raise SdkError(f"cannot read the end offsets of {topic!r}: {err.str()}")
            time.sleep(_META_RETRY_S)

    # ---------------------------------------------------------------- decryption
    def _decrypt(self, event: dict[str, Any], fetched_at: float) -> None:
        assert self.ring is not None
        subject = event.get("subject_id")
        if not isinstance(subject, str):
            return
        self._walk(event, "", subject, fetched_at)

    def _walk(self, obj: dict[str, Any], prefix: str, subject: str, fetched_at: float) -> None:
        for name in list(obj):
            value = obj[name]
            if isinstance(value, dict):
                self._walk(value, f"{prefix}{name}.", subject, fetched_at)
            elif value is not None and is_envelope(value):
                path = prefix + name
                try:
                    obj[name] = self._decrypt_one(subject, path, value, fetched_at)
                    self.stats["decrypted"] += 1
                except (KeyMissingError, EnvelopeError):
                    if self.strict:
                        raise
                    del obj[name]
                    self.stats["unreadable"] += 1
                    self.last_unreadable.append(path)

    def _decrypt_one(self, subject: str, path: str, envelope: str | bytes, fetched_at: float) -> Any:
        assert self.ring is not None
        try:
            return decrypt_value(self.ring, subject, path, envelope)
        except KeyMissingError:
            gone = (subject, envelope_version(envelope))
            if gone in self._gone:
                raise
            # Read the keys topic to its end unless that was done after this record
            # was fetched. A key version still missing then is gone for good (a key
            # is committed with the first record that uses it), so later records
            # under it skip the read: a replay of a shredded subject stays cheap.
            if self._keys_settled_at < fetched_at and not self.sync_keys(settle=True):
                raise  # not read to the end: missing for now, not known to be gone
            try:
                return decrypt_value(self.ring, subject, path, envelope)
            except KeyMissingError:
                if len(self._gone) >= _GONE_MAX:
                    self._gone.clear()
                self._gone.add(gone)
                raise

    # ---------------------------------------------------------------- records
    def _notice(self, msg: Message) -> None:
        value = msg.value()
        if value is None:
            return
        try:
            notice = self._notices.decode(value)
        except DecodeError as exc:
            log.warning("skipping undecodable erasure notice: partition=%d offset=%d error=%s",
                        msg.partition(), msg.offset(), exc.error_class)
            self.stats["undecodable"] += 1
            return
        if notice.get("engine") != self.engine:
            return
        subject = notice.get("subject_id")
        if not isinstance(subject, str):
            self.stats["undecodable"] += 1
            return
        if self.on_erasure is None:
            raise ErasureUnhandled(
                f"erasure notice at {msg.topic()}[{msg.partition()}]@{msg.offset()} and no on_erasure hook"
            )
        self.on_erasure(subject)
        self.stats["erasures"] += 1
        log.debug("erasure handled: partition=%d offset=%d", msg.partition(), msg.offset())

    def poll(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """The next filtered event (a dict), or None when none came within ``timeout`` seconds.

        Erasure notices met on the way call ``on_erasure`` and are not returned."""
        deadline = time.monotonic() + timeout
        if self._keys is not None and not self._first_read_tried:
            self._first_read_tried = True
            # before the first event: every key and tombstone written so far, so a process
            # started after an erasure never decrypts that subject (bounded by the catch-up timeout)
            self.sync_keys()
        while True:
            left = max(0.0, deadline - time.monotonic())
            msg = self._consumer.poll(left)
            fetched_at = time.monotonic()
            self._drain_keys()
            if msg is None:
                return None
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal() or not err.retriable():
                    if err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise SdkError(f"consumer error: {err.str()}")
                log.warning("consumer error (retrying): %s", err.str())
                if time.monotonic() >= deadline:
                    return None
                continue
            if msg.topic() == self.erasures_topic:
                self._notice(msg)
            elif msg.value() is not None:
                event = self._event(msg, fetched_at)
                if event is not None:
                    return event
            if time.monotonic() >= deadline:
                return None

    def _event(self, msg: Message, fetched_at: float) -> dict[str, Any] | None:
        try:
            event = self._events.decode(msg.value())
        except DecodeError as exc:
            log.warning("skipping undecodable event: topic=%s partition=%d offset=%d error=%s",
                        msg.topic(), msg.partition(), msg.offset(), exc.error_class)
            self.stats["undecodable"] += 1
            return None
        self.last_unreadable = []
        if self.ring is not None:
            self._decrypt(event, fetched_at)
        self.stats["events"] += 1
        self.last = (msg.topic(), msg.partition(), msg.offset())
        return event

    def iter(self, max_records: int | None = None, timeout: float = 1.0) -> Iterator[dict[str, Any]]:
        """Events until ``max_records`` were yielded or one ``timeout`` passed without one."""
        n = 0
        while max_records is None or n < max_records:
            event = self.poll(timeout)
            if event is None:
                return
            n += 1
            yield event

    def commit(self) -> None:
        """Commit the positions of everything returned so far (synchronously)."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                raise

    def lag(self) -> dict[int, int]:
        """Committed records not yet consumed, per partition of the engine topic assigned here
        (last stable offset minus position; transaction markers count as records)."""
        parts = [tp for tp in self._consumer.assignment() if tp.topic == self.topic]
        if not parts:
            return {}
        ends = self._ends(self.topic, [tp.partition for tp in parts])
        positions = {tp.partition: tp.offset for tp in self._consumer.position(parts)}
        unknown = [tp for tp in parts if positions.get(tp.partition, -1) < 0]
        if unknown:  # nothing fetched yet here: the group's committed offset, else the start
            for tp in self._consumer.committed(unknown, timeout=_META_TIMEOUT_S):
                if tp.offset >= 0:
                    positions[tp.partition] = tp.offset
                else:
                    lo, _ = self._consumer.get_watermark_offsets(tp, timeout=_META_TIMEOUT_S, cached=False)
                    positions[tp.partition] = lo
        return {p: max(0, ends[p] - positions[p]) for p in sorted(ends)}

    def close(self) -> None:
        for c in (self._consumer, self._keys):
            if c is not None:
                try:
                    c.close()
                except RuntimeError:
                    pass  # already closed

    def __enter__(self) -> EngineConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
