"""`pfilter erase SUBJECT`: forget a customer and prove it (CONTRACT §2, §10, G4).

What it does, in order:

1. notes where the subject's erasure notices will land: for every engine of
   the policy, the partition of ``personalization.erasures`` its subject
   reference (the id, or the engine's pseudonym of it) hashes to, and that
   partition's end offset *before* anything is produced;
2. produces the consent tombstone and the data-key tombstone (both keyed by
   the subject id, murmur2 like every producer of the project) and waits for
   both acknowledgements: their partition and offset go on the receipt;
3. waits, bounded by ``timeout_s``, for the worker: one erasure notice per
   engine, keyed by that engine's reference, at or after the end offset of
   step 1 (a notice that carries source coordinates must also point at this
   tombstone or a later one), and the worker group's committed offset on the
   consent partition moving past the tombstone (the runtimes commit consent
   offsets only after the state change and the notices are durable, so this
   is "state removed");
4. counts what it can see: consent notices that were pending for the subject
   (a ``reconfirm`` sent, its ``expired`` not yet due), and with ``scan``, the
   retained records of the subject in each engine topic that carry encrypted
   fields whose key is now gone, against those that are plaintext;
5. reads the compaction settings of ``consent`` and ``personalization.keys``
   and turns them into the bound after which the tombstones themselves are gone.

Every read goes to the one partition a key hashes to, like ``streams.report``.
Nothing here logs or prints a field value (G6); the subject id is the
operator's own input and is printed as given.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from confluent_kafka import ConsumerGroupTopicPartitions, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from streams.config import Settings
from streams.crypto import envelope_version, is_envelope
from streams.engine.codecs import DecodeError, get_codec
from streams.errors import PFilterError
from streams.kafka.clients import admin_config, plain_consumer_config, producer_config
from streams.kafka.partitioner import partition_for
from streams.wiring import load_policy

#: Default bound on waiting for the worker: a worker commits at least every
#: commit interval (250 ms) and polls consent when idle, so a live one confirms
#: in about a second; 60 s also covers a worker that is restoring or rebalancing.
DEFAULT_TIMEOUT_S = 60.0
#: Between two looks at the worker group's committed offset: one admin round
#: trip per look, well under the worker's commit interval times four.
GROUP_POLL_S = 0.5
#: Metadata, watermarks and config requests: the admin module's bound.
REQUEST_TIMEOUT_S = 30.0
#: Pause before asking again after a transient broker error (a leader election takes ~100 ms).
RETRY_S = 0.2
#: librdkafka log level of our admin clients: warnings and worse (4) still reach stderr.
LIBRDKAFKA_LOG_LEVEL = 4
#: The compaction settings the receipt shows, per compacted topic.
COMPACTION_KEYS = ("min.compaction.lag.ms", "max.compaction.lag.ms", "delete.retention.ms", "segment.ms")


class EraseError(PFilterError):
    """`pfilter erase` could not do its part (a topic missing, a tombstone not acknowledged)."""


class ErasureNotConfirmed(EraseError):
    """The tombstones are written but the worker did not confirm within the timeout."""


# ---------------------------------------------------------------- the receipt


@dataclass
class Coordinate:
    """Where a record of ours landed."""

    topic: str
    partition: int
    offset: int


@dataclass
class EngineNotice:
    """The erasure notice one engine must receive, and where it was found (None: not seen)."""

    engine: str
    pseudonymized: bool
    partition: int
    offset: int | None = None
    #: the notice's subject reference is printed only when it is the id itself (a pseudonym
    #: is not the operator's input); kept out of the JSON for the same reason
    reference: str = field(default="", repr=False)


@dataclass
class EngineScan:
    """Retained records of the subject in one engine topic (``--scan``)."""

    engine: str
    topic: str
    partition: int
    records: int = 0
    unreadable: int = 0     # carry envelopes whose data key is gone
    readable: int = 0       # carry envelopes under a key the subject has again (came back since)
    plaintext: int = 0      # carry no encrypted field: only the erasure notice protects them


@dataclass
class Compaction:
    """A compacted topic's settings and what they bound."""

    topic: str
    settings: dict[str, int | None]
    #: earlier records of the subject are compacted away at the latest this long after the tombstone
    superseded_gone_ms: int | None
    #: the tombstone itself stays readable at least this long ...
    tombstone_kept_ms: int | None
    #: ... and is gone, at the latest, this long after it was written (plus cleaner scheduling)
    tombstone_gone_ms: int | None


@dataclass
class ErasureReceipt:
    """What `pfilter erase` did and what it saw the worker do."""

    subject: str
    consent_tombstone: Coordinate
    key_tombstone: Coordinate
    worker_passed: bool = False
    committed_offset: int | None = None   # the worker group's next consent offset, when seen
    notices: list[EngineNotice] = field(default_factory=list)
    pending_notices_cancelled: int | None = None   # None: there is no notices topic
    scan: list[EngineScan] | None = None
    compaction: list[Compaction] = field(default_factory=list)
    waited_s: float = 0.0
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def confirmed(self) -> bool:
        return self.worker_passed and all(n.offset is not None for n in self.notices)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for n in d["notices"]:
            n.pop("reference")
        d["confirmed"] = self.confirmed
        return d


# ---------------------------------------------------------------- pure parts


def expected_notices(policy: Any, subject: str, erasure_partitions: int) -> list[EngineNotice]:
    """One notice per engine of the policy, keyed as that engine knows the subject
    (the rule ``streams.verify`` checks G4 with: ``engine.subject_ref``)."""
    out = []
    for e in policy.engines:
        ref = e.subject_ref(subject)
        out.append(EngineNotice(e.name, bool(e.pseudonymize_subject),
                                partition_for(ref.encode("utf-8", "surrogatepass"), erasure_partitions),
                                reference=ref))
    return out


def notice_matches(notice: dict[str, Any], want: EngineNotice, tombstone: Coordinate) -> bool:
    """Is this decoded erasure notice the one ``want`` waits for, caused by ``tombstone``?

    The caller only hands notices from at/after the partition's end offset taken
    before the tombstone was produced. A notice with source coordinates must
    also name the tombstone's partition and an offset at or after it."""
    if notice.get("engine") != want.engine or notice.get("subject_id") != want.reference:
        return False
    src = notice.get("source_offset")
    if src is None:
        return True
    return (notice.get("source_topic") in (None, tombstone.topic)
            and notice.get("source_partition") in (None, tombstone.partition)
            and src >= tombstone.offset)


def compaction_bound(topic: str, cfg: dict[str, int | None]) -> Compaction:
    """The bound the settings put on the tombstone's lifetime (the README's "Erasure deadline").

    * earlier records: the cleaner must compact a record within
      ``max.compaction.lag.ms`` (never before ``min.compaction.lag.ms``), and
      the active segment rolls at least every ``segment.ms``; adding the two is
      the safe upper bound;
    * the tombstone: kept ``delete.retention.ms`` after the pass that compacted
      its segment, so it lives at least ``min.compaction.lag.ms +
      delete.retention.ms`` and is gone after the earlier records' bound plus
      ``delete.retention.ms``, at the cleaner's next pass of that partition."""
    lo, hi, keep, seg = (cfg.get(k) for k in COMPACTION_KEYS)
    gone = None if hi is None or seg is None else max(hi, lo or 0) + seg
    return Compaction(topic, dict(cfg), gone,
                      None if keep is None else (lo or 0) + keep,
                      None if gone is None or keep is None else gone + keep)


def envelopes(obj: Any) -> Iterator[str | bytes]:
    """Every encrypted-field envelope in a decoded record."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from envelopes(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from envelopes(v)
    elif is_envelope(obj):
        yield obj


def classify(record: dict[str, Any], live_versions: set[int]) -> str:
    """``unreadable`` (an envelope whose key is gone), ``readable`` (all under a live key:
    the subject came back), or ``plaintext`` (no encrypted field)."""
    versions = [envelope_version(e) for e in envelopes(record)]
    if not versions:
        return "plaintext"
    return "readable" if all(v in live_versions for v in versions) else "unreadable"


def pending_notices(notices: list[dict[str, Any]], now_ms: int) -> int:
    """Consent notices of the subject still to come when it was erased: a grant that got its
    ``reconfirm`` notice and whose ``expired`` notice was not sent yet and not yet due
    (CONTRACT §9). The worker drops them with the subject's state; this counts them."""
    kinds: dict[tuple[Any, Any], set[str]] = {}
    for n in notices:
        kinds.setdefault((n.get("purpose"), n.get("expires_at")), set()).add(str(n.get("kind")))
    return sum(1 for (_p, exp), ks in kinds.items()
               if "reconfirm" in ks and "expired" not in ks and isinstance(exp, int) and exp > now_ms)


# ---------------------------------------------------------------- Kafka parts


def _partitions(settings: Settings, topics: list[str]) -> dict[str, int]:
    c = Consumer(plain_consumer_config(settings, "pfilter-erase"))
    try:
        md = c.list_topics(timeout=REQUEST_TIMEOUT_S)
    finally:
        c.close()
    return {t: len(md.topics[t].partitions) for t in topics
            if t in md.topics and md.topics[t].error is None and md.topics[t].partitions}


def _reader(settings: Settings) -> Consumer:
    # read_committed: what an engine (and the SDK) sees; aborted notices do not count
    return Consumer(plain_consumer_config(settings, "pfilter-erase", **{
        "isolation.level": "read_committed", "enable.partition.eof": True}))


def _watermarks(c: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """(low, high) of a partition, retrying the transient errors of a topic created moments
    ago (NOT_LEADER_FOR_PARTITION until its leader is known) for up to the request bound."""
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    while True:
        try:
            return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=REQUEST_TIMEOUT_S, cached=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if time.monotonic() > deadline or not getattr(err, "retriable", lambda: False)() and \
                    getattr(err, "code", lambda: None)() != KafkaError.NOT_LEADER_FOR_PARTITION:
                raise EraseError(f"could not read the end offsets of {topic}[{partition}]: {exc}") from None
            time.sleep(RETRY_S)


def _end_offset(c: Consumer, topic: str, partition: int) -> int:
    return _watermarks(c, topic, partition)[1]


def read_keyed(settings: Settings, topic: str, partition: int, key: bytes,
               start: int | None = None) -> list[tuple[int, bytes | None]]:
    """(offset, value) of every record with ``key`` in one partition, from ``start`` (default:
    the oldest retained) to the end taken now."""
    c = _reader(settings)
    try:
        lo, hi = _watermarks(c, topic, partition)
        first = lo if start is None else max(lo, start)
        if hi <= first:
            return []
        c.assign([TopicPartition(topic, partition, first)])
        out: list[tuple[int, bytes | None]] = []
        deadline = time.monotonic() + 10 * REQUEST_TIMEOUT_S
        while time.monotonic() < deadline:
            for m in c.consume(5000, timeout=1.0):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        return out
                    raise EraseError(f"reading {topic}[{partition}] failed: {m.error().name()}")
                if m.key() == key:
                    out.append((m.offset(), m.value()))
                if m.offset() >= hi - 1:
                    return out
        raise EraseError(f"reading {topic}[{partition}] did not reach its end within {10 * REQUEST_TIMEOUT_S:.0f} s")
    finally:
        c.close()


def produce_tombstones(settings: Settings, subject: str) -> tuple[Coordinate, Coordinate]:
    """The consent tombstone and the data-key tombstone, both acknowledged (acks=all)."""
    key = subject.encode("utf-8")
    p = Producer(producer_config(settings, **{"linger.ms": 0}))
    acked: dict[str, Coordinate | str] = {}

    def report(err: Any, msg: Any) -> None:
        acked[msg.topic()] = (err.name() if err is not None
                              else Coordinate(msg.topic(), msg.partition(), msg.offset()))

    for topic in (settings.topic_consent, settings.topic_keys):
        p.produce(topic, None, key, on_delivery=report)
    left = p.flush(REQUEST_TIMEOUT_S)
    done = {t: c for t, c in acked.items() if isinstance(c, Coordinate)}
    if left or len(done) < 2:
        what = ", ".join(f"{t}: {acked.get(t, 'no acknowledgement')}"
                         for t in (settings.topic_consent, settings.topic_keys) if t not in done)
        raise EraseError(f"tombstone not acknowledged ({what}); written so far: "
                         + (", ".join(f"{c.topic}[{c.partition}]@{c.offset}" for c in done.values()) or "nothing"))
    return done[settings.topic_consent], done[settings.topic_keys]


def committed_offset(admin: AdminClient, group: str, tp: TopicPartition) -> int | None:
    """The group's committed (next) offset of ``tp``; None when it has none (yet).

    ``require_stable``: an offset sent in a still-open worker transaction does
    not count; it counts once that transaction committed, together with the
    notices it holds."""
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(tp.topic, tp.partition)])
    try:
        res = admin.list_consumer_group_offsets([req], require_stable=True,
                                                request_timeout=REQUEST_TIMEOUT_S)[group].result()
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if getattr(err, "retriable", lambda: False)() or getattr(err, "code", lambda: None)() in (
                KafkaError.UNSTABLE_OFFSET_COMMIT, KafkaError.GROUP_ID_NOT_FOUND, KafkaError.COORDINATOR_LOAD_IN_PROGRESS):
            return None
        raise EraseError(f"could not read the committed offsets of group {group!r}: {exc}") from None
    for got in res.topic_partitions:
        if got.error is None and got.offset >= 0:
            return got.offset
    return None


def wait_for_worker(settings: Settings, receipt: ErasureReceipt, starts: dict[int, int], timeout_s: float) -> None:
    """Fill in the notices' offsets and ``worker_passed``, until confirmed or ``timeout_s``."""
    codec = get_codec("erasure_notice", settings.format_output, registry_url=settings.schema_registry_url)
    tomb = receipt.consent_tombstone
    admin = _admin(settings)
    c = _reader(settings)
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    next_look = t0
    try:
        c.assign([TopicPartition(settings.topic_erasures, p, o) for p, o in sorted(starts.items())])
        while True:
            now = time.monotonic()
            if not receipt.worker_passed and now >= next_look:
                receipt.committed_offset = committed_offset(
                    admin, settings.group_id, TopicPartition(tomb.topic, tomb.partition))
                receipt.worker_passed = receipt.committed_offset is not None and receipt.committed_offset > tomb.offset
                next_look = now + GROUP_POLL_S
            if receipt.confirmed or now >= deadline:
                break
            wanted = [n for n in receipt.notices if n.offset is None]
            if not wanted:
                time.sleep(min(GROUP_POLL_S, max(0.0, deadline - now)))
                continue
            for m in c.consume(500, timeout=min(GROUP_POLL_S, max(0.01, deadline - now))):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise EraseError(f"reading {settings.topic_erasures}[{m.partition()}] failed: {m.error().name()}")
                try:
                    notice = codec.decode(m.value())
                except DecodeError:
                    continue  # not ours to judge: `pfilter verify` reports undecodable notices
                for n in wanted:
                    if n.offset is None and n.partition == m.partition() and notice_matches(notice, n, tomb):
                        n.offset = m.offset()
    finally:
        c.close()
        receipt.waited_s = round(time.monotonic() - t0, 3)


def count_pending_notices(settings: Settings, subject: str, partitions: int, now_ms: int) -> int:
    key = subject.encode("utf-8")
    decoded = []
    for _off, value in read_keyed(settings, settings.topic_notices, partition_for(key, partitions), key):
        try:
            obj = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj.get("subject_id") == subject:
            decoded.append(obj)
    return pending_notices(decoded, now_ms)


def scan_engines(settings: Settings, policy: Any, subject: str, key_tombstone: Coordinate,
                 counts: dict[str, int]) -> list[EngineScan]:
    """Count the subject's retained records per engine topic by what can still be read."""
    key = subject.encode("utf-8")
    # keys the subject has again: key records after our tombstone (the subject came back)
    live: set[int] = set()
    for _off, value in read_keyed(settings, key_tombstone.topic, key_tombstone.partition, key,
                                  start=key_tombstone.offset + 1):
        if value is None:
            live.clear()
        else:
            try:
                live.add(int(orjson.loads(value)["key_version"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    codec = get_codec("filtered_event", settings.format_output, registry_url=settings.schema_registry_url)
    out = []
    for e in policy.engines:
        if e.topic not in counts:
            raise EraseError(f"engine topic {e.topic!r} does not exist; run `pfilter topics create`")
        ref = e.subject_ref(subject).encode("utf-8", "surrogatepass")
        scan = EngineScan(e.name, e.topic, partition_for(ref, counts[e.topic]))
        for _off, value in read_keyed(settings, e.topic, scan.partition, ref):
            if value is None:
                continue
            try:
                rec = codec.decode(value)
            except DecodeError:
                continue
            scan.records += 1
            kind = classify(rec, live)
            setattr(scan, kind, getattr(scan, kind) + 1)
        out.append(scan)
    return out


def _admin(settings: Settings) -> AdminClient:
    # librdkafka logs "Purging N unserved events from background queue" (level 6, info)
    # when an admin client with finished futures is destroyed: noise under the receipt
    return AdminClient(admin_config(settings, log_level=LIBRDKAFKA_LOG_LEVEL))


def compaction_settings(settings: Settings) -> list[Compaction]:
    admin = _admin(settings)
    out = []
    for topic in (settings.topic_consent, settings.topic_keys):
        res = ConfigResource(ResourceType.TOPIC, topic)
        cfg = admin.describe_configs([res], request_timeout=REQUEST_TIMEOUT_S)[res].result()
        values: dict[str, int | None] = {}
        for k in COMPACTION_KEYS:
            v = cfg[k].value if k in cfg else None
            values[k] = int(v) if v not in (None, "") else None
        out.append(compaction_bound(topic, values))
    return out


def run_erase(settings: Settings, subject: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, scan: bool = False,
              now_ms: int | None = None) -> ErasureReceipt:
    """Erase ``subject`` and return the receipt. The caller decides what an unconfirmed receipt
    means (the CLI prints it, then fails with :class:`ErasureNotConfirmed`)."""
    if not subject:
        raise EraseError("the subject id is empty")
    policy = load_policy(settings)  # the pseudonym secret: the references of pseudonymizing engines
    need = [settings.topic_consent, settings.topic_keys, settings.topic_erasures]
    counts = _partitions(settings, need + [settings.topic_notices] + [e.topic for e in policy.engines])
    for t in need:
        if t not in counts:
            raise EraseError(f"topic {t!r} does not exist; run `pfilter topics create`")
    if counts[settings.topic_keys] != counts[settings.topic_consent]:
        raise EraseError(f"topic {settings.topic_keys!r} is not co-partitioned with {settings.topic_consent!r}; "
                         "see `pfilter topics check`")
    notices = expected_notices(policy, subject, counts[settings.topic_erasures])
    c = _reader(settings)
    try:  # before the tombstone: any notice of ours can only land after these
        starts = {p: _end_offset(c, settings.topic_erasures, p) for p in {n.partition for n in notices}}
    finally:
        c.close()
    consent, key = produce_tombstones(settings, subject)
    receipt = ErasureReceipt(subject, consent, key, notices=notices, timeout_s=timeout_s)
    wait_for_worker(settings, receipt, starts, timeout_s)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if settings.topic_notices in counts:
        receipt.pending_notices_cancelled = count_pending_notices(
            settings, subject, counts[settings.topic_notices], now)
    if scan:
        receipt.scan = scan_engines(settings, policy, subject, key, counts)
    receipt.compaction = compaction_settings(settings)
    return receipt
