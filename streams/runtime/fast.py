"""The fast runtime: one confluent-kafka consume-decide-produce loop around the engine.

- Events: a group consumer on clickstream + purchases with the *range*
  assignor, which gives one member partition p of both topics (equal counts).
- Consent: a second consumer, manually assigned the consent partitions that
  match the owned event partitions (the join is per partition). State lives
  in a dict per partition; it is rebuilt from a local checkpoint plus the
  compacted consent topic.
- G2: before deciding a batch, each of its partitions' consent is read up to
  the consent end offset asked of the broker *after* the batch was fetched
  (one ListOffsets request for all partitions of the batch).
- Batches are decided and their outputs produced at once; commits happen
  every ``PFILTER_COMMIT_INTERVAL_MS`` (and before partitions are revoked),
  so the commit round trips are paid per interval, not per batch.
- Exactly once (PFILTER_PROCESSING_GUARANTEE=exactly_once): the outputs of
  every batch of an interval (engine records, decisions, erasure notices,
  DLQ) and the offsets of both the events and the consent records that caused
  them are committed in one Kafka transaction
  (``send_offsets_to_transaction``). Consent records between the checkpoint
  and the committed consent offset are re-applied to state only, so their
  erasure notices and DLQ entries are not produced twice.
- At least once: decisions and DLQ entries are produced as decided; per
  interval: flush (all acknowledged), produce the engine outputs they account
  for, flush, then commit the offsets behind them. A crash can so leave a
  decision whose output never went out (its input is decided again), never
  an output that no decision accounts for.
- Any transaction or delivery failure ends the process (non-zero): a restart
  recovers from committed offsets, and a crashed predecessor's open
  transaction is aborted by the new one's ``init_transactions`` (stable
  transactional.id).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import marshal
import os
import signal
import socket
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streams import metrics, wiring
from streams.config import Settings
from streams.kafka.admin import require_copartitioned
from streams.kafka.clients import consumer_config, output_producer_config, plain_consumer_config
from streams.logs import kv
from streams.runtime.sink import produce_records, split_audit_first
from streams.runtime.stall import StallWatch
from streams.runtime.web import serve

log = logging.getLogger("streams.runtime.fast")

#: Transaction timeout: longer than the slowest batch (a barrier that reads a
#: large consent backlog), short enough that a zombie's open transaction does
#: not block read_committed readers for long if it is never fenced.
TRANSACTION_TIMEOUT_MS = 60_000
#: Consent records applied per consume() call while catching up.
CONSENT_CHUNK = 10_000
#: A long restore says how far it got this often (counts only).
RESTORE_REPORT_S = 5.0
#: 2: compact states (consent.py: updated_at, offset, interned profile, packed times)
_CKPT_VERSION = 2


class FastWorker:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        make = wiring.filter_factory(settings)  # a bad policy or secret stops us before any I/O
        self.partitions = require_copartitioned(settings)
        self.filter = make(None)
        self.policy = self.filter.policy
        self.eos = settings.guarantee == "exactly_once"
        self.instance = settings.instance_id or f"{socket.gethostname()}-{settings.web_port}"
        self.ckpt_dir = Path(settings.state_dir) / "fast" / settings.group_id
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.event_topics = [settings.topic_clickstream, settings.topic_purchases]
        self.consent_topic = settings.topic_consent

        self.states: dict[int, dict[str, tuple]] = {}
        self.consent_pos: dict[int, int] = {}       # next consent offset to apply
        self.consent_emit_from: dict[int, int] = {}  # records below were already output
        self.consent_high: dict[int, int] = {}      # last known end offset
        self._consent_committed: dict[int, int] = {}  # consent offset of the last commit
        self.ready = False
        self.running = True
        self._last_ckpt = time.monotonic()
        # what the next _commit makes durable: event offsets (next to read) and counts
        # of events decided since the last commit; whether anything was produced
        self._event_next: dict[tuple[str, int], int] = {}
        self._uncommitted_in: dict[str, int] = {}
        self._batch_started: list[float] = []  # perf_counter() when each batch was fetched
        self._deliveries = frozenset(e.topic for e in self.policy.engines)
        self._stage = dict.fromkeys(("consume", "barrier", "decide", "produce", "commit"), 0.0)
        self._deferred: list[tuple] = []  # at least once: engine outputs held for the commit point
        self._dirty = False
        self._in_txn = False
        self._failed = False  # after an error nothing more is committed
        self._last_commit = time.monotonic()
        self.stalls = StallWatch(settings.stall_timeout_s)

        self.consumer = Consumer(consumer_config(settings, **{
            "partition.assignment.strategy": "range",
            # big fetches: 300-byte events, thousands per batch
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 4_194_304,
            "queued.max.messages.kbytes": 262_144,
            "max.poll.interval.ms": 300_000,
            "session.timeout.ms": settings.session_timeout_ms,
            # a third of the session: two heartbeats may be lost before the member is
            "heartbeat.interval.ms": max(1000, settings.session_timeout_ms // 3),
        }))
        self.consent_consumer = Consumer(plain_consumer_config(
            settings, f"{settings.group_id}.consent-reader", **{  # never subscribes, never commits
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.max.bytes": 52_428_800,
                "max.partition.fetch.bytes": 8_388_608,
                "fetch.wait.max.ms": 10,
            }))
        # End offsets are asked on a connection of their own: the broker answers a
        # connection's requests in order, so on the consent consumer's connection the
        # ListOffsets request would wait behind that consumer's fetch long-poll
        # (measured: ~5 ms per batch instead of ~0.2 ms).
        self.offsets_client = Consumer(plain_consumer_config(
            settings, f"{settings.group_id}.consent-ends", **{"isolation.level": "read_committed"}))
        extra: dict[str, Any] = {}
        if self.eos:
            extra = {"transactional.id": f"{settings.group_id}.{self.instance}",
                     "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS}
        self.producer = Producer(output_producer_config(settings, self._on_delivery, **extra))
        self._delivery_errors = 0

    # ------------------------------------------------------------------ checkpoints
    def _ckpt_path(self, p: int) -> Path:
        return self.ckpt_dir / f"consent-{p}.ckpt"

    def _load_checkpoint(self, p: int) -> tuple[dict[str, tuple], int]:
        try:
            data = marshal.loads(self._ckpt_path(p).read_bytes())
            version, fp, offset, states = data
            if version == _CKPT_VERSION and fp == self.policy.vocab.fingerprint:
                return states, offset
            log.info("checkpoint ignored (policy vocabulary changed) %s", kv(partition=p))
        except FileNotFoundError:
            pass
        except (ValueError, EOFError, TypeError) as exc:
            log.warning("checkpoint unreadable, rebuilding from the log %s", kv(partition=p, error=type(exc).__name__))
        return {}, 0

    def _write_checkpoints(self) -> None:
        """Only called right after a commit: positions equal the committed consent offsets."""
        for p, states in self.states.items():
            tmp = self._ckpt_path(p).with_suffix(".tmp")
            tmp.write_bytes(marshal.dumps((_CKPT_VERSION, self.policy.vocab.fingerprint, self.consent_pos[p], states)))
            os.replace(tmp, self._ckpt_path(p))
        self._last_ckpt = time.monotonic()

    # ------------------------------------------------------------------ rebalance
    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        new = sorted({tp.partition for tp in parts} - set(self.states))
        if not new:
            return
        t0 = time.perf_counter()
        committed = consumer.committed([TopicPartition(self.consent_topic, p) for p in new], timeout=30)
        for tp in committed:
            p = tp.partition
            states, offset = self._load_checkpoint(p)
            emit_from = tp.offset if tp.offset not in (OFFSET_INVALID,) and tp.offset >= 0 else 0
            if offset > emit_from:  # a checkpoint can never be ahead of the commit it followed
                states, offset = {}, 0
            self.states[p] = states
            self.consent_pos[p] = offset
            self.consent_emit_from[p] = emit_from
            self._consent_committed[p] = emit_from
        self._reassign_consent()
        self.ready = False
        # Restoring builds the state and makes no garbage cycles, while the collector
        # would walk the growing state again and again: off until ready (_settle_gc).
        gc.disable()
        log.info("partitions assigned %s", kv(partitions=len(new), checkpoint_load_s=round(time.perf_counter() - t0, 3)))

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        # Still a member of the old generation: make what was decided durable, so the
        # partitions' next owner starts exactly where our outputs end.
        if not self._failed:
            self._commit()
        self._forget({tp.partition for tp in parts})

    def _on_lost(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        # No longer a member: offsets can't be committed. With exactly_once the open
        # transaction is aborted (its outputs are never seen); the next owner redoes them.
        aborted = self.eos and self._in_txn
        if aborted:
            self.producer.abort_transaction(30)
            self._in_txn = False
        log.warning("partitions lost (no longer a group member) %s", kv(partitions=len(parts),
                                                                        open_transaction_aborted=aborted))
        self._event_next.clear()
        self._uncommitted_in.clear()
        self._batch_started.clear()
        self._deferred = []
        self._dirty = False
        self._forget({tp.partition for tp in parts})

    def _forget(self, gone: set[int]) -> None:
        for p in gone:
            self.states.pop(p, None)
            self.consent_pos.pop(p, None)
            self.consent_emit_from.pop(p, None)
            self.consent_high.pop(p, None)
            self._consent_committed.pop(p, None)
        self._event_next = {tp: o for tp, o in self._event_next.items() if tp[1] not in gone}
        self.stalls.forget([(t, p) for t in self.event_topics for p in gone])
        self._reassign_consent()
        log.info("partitions revoked %s", kv(partitions=len(gone)))

    def _reassign_consent(self) -> None:
        tps = [TopicPartition(self.consent_topic, p, self.consent_pos[p] or OFFSET_BEGINNING) for p in sorted(self.states)]
        self.consent_consumer.assign(tps)

    # ------------------------------------------------------------------ consent
    def _catch_up(self, targets: dict[int, int], out: list, *, restoring: bool = False) -> int:
        """Apply consent until every partition in ``targets`` reached its offset (exclusive).

        Within a batch (the barrier) this is bounded by half the transaction timeout:
        longer and an open transaction would be aborted under us. The restore before
        the worker is ready holds no transaction and takes as long as the topic needs
        (at ~130,000 records/s), reporting its progress."""
        pending = {p for p, hw in targets.items() if self.consent_pos.get(p, 0) < hw}
        applied = 0
        start = time.monotonic()
        deadline = None if restoring else start + TRANSACTION_TIMEOUT_MS / 2000
        next_report = start + RESTORE_REPORT_S
        while pending:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise TimeoutError("consent catch-up exceeded half the transaction timeout")
            if restoring and now > next_report:
                log.info("restoring consent %s", kv(records=applied, partitions_left=len(pending),
                                                     seconds=round(now - start)))
                next_report = now + RESTORE_REPORT_S
            applied += self._poll_consent(out, timeout=0.1)
            pending = {p for p in pending if self.consent_pos.get(p, 0) < targets[p]}
        return applied

    def _poll_consent(self, out: list, timeout: float) -> int:
        msgs = self.consent_consumer.consume(CONSENT_CHUNK, timeout=timeout)
        if not msgs:
            return 0
        by_p: dict[int, list[tuple]] = defaultdict(list)
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    p = m.partition()
                    if p in self.consent_pos:
                        self.consent_pos[p] = max(self.consent_pos[p], m.offset())
                    continue
                raise KafkaException(err)
            p = m.partition()
            if p not in self.states:
                continue  # revoked meanwhile
            by_p[p].append((m.topic(), p, m.offset(), m.key(), m.value(), m.headers(), m.timestamp()[1]))
        n = 0
        for p, recs in by_p.items():
            store = self.states[p]
            emit_from = self.consent_emit_from[p]
            replay = [r for r in recs if r[2] < emit_from]
            live = [r for r in recs if r[2] >= emit_from]
            if replay:
                self.filter.apply_consent(replay, store)  # state only: outputs were committed before
            if live:
                res = self.filter.apply_consent(live, store)
                out.extend(res.records)
                if res.dlq:
                    metrics.DLQ.labels(self.consent_topic).inc(res.dlq)
                if res.erasures:
                    metrics.ERASURES.inc(res.erasures)
            self.consent_pos[p] = recs[-1][2] + 1
            n += len(recs)
        metrics.CONSENT_APPLIED.inc(n)
        return n

    def _consent_ends(self, parts: set[int] | list[int]) -> dict[int, int]:
        """End offset of each consent partition, asked of the broker now (one request).

        The consent consumer reads read_committed, so this is the last stable
        offset: every consent record the broker acknowledged (and, if written in
        a transaction, committed) before this call lies below it."""
        tps = [TopicPartition(self.consent_topic, p, OFFSET_END) for p in sorted(parts)]
        ends = {}
        for tp in self.offsets_client.offsets_for_times(tps, timeout=10):
            if tp.error is not None:
                raise KafkaException(tp.error)
            ends[tp.partition] = tp.offset
            self.consent_high[tp.partition] = tp.offset
            metrics.CONSENT_LAG.labels(str(tp.partition)).set(max(0, tp.offset - self.consent_pos.get(tp.partition, 0)))
        return ends

    # ------------------------------------------------------------------ output
    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._delivery_errors += 1

    def _produce(self, records: list) -> None:
        if not records:
            return
        if self.eos:
            if not self._in_txn:
                self.producer.begin_transaction()
                self._in_txn = True
        else:
            # at least once: engine outputs wait for the commit point, after the decisions
            # that account for them were acknowledged (streams.runtime.sink)
            records, delivered = split_audit_first(records, self._deliveries)
            self._deferred.extend(delivered)
        self._send(records)

    def _send(self, records: list) -> None:
        produce_records(self.producer, records)
        self._dirty = True

    def _offsets(self) -> list[TopicPartition]:
        tps = [TopicPartition(t, p, o) for (t, p), o in self._event_next.items()]
        tps += [TopicPartition(self.consent_topic, p, o) for p, o in self.consent_pos.items()
                if o > self._consent_committed.get(p, 0)]
        return tps

    def _record_lag(self) -> None:
        """Consumer lag per input partition read since the last commit: the high watermark
        of the last fetch response (cached by the client, no request) minus the next offset.
        Every owned partition also feeds the stall watch, read or not: a partition the
        client stopped fetching is exactly the one that is not read."""
        for (t, p), nxt in self._event_next.items():
            try:
                _lo, hi = self.consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
            except KafkaException:
                continue
            if hi >= 0:
                metrics.CONSUMER_LAG.labels(t, str(p)).set(max(0, hi - nxt))
        try:
            owned = self.consumer.position(self.consumer.assignment())
        except KafkaException:
            return
        for tp in owned:
            if tp.offset < 0:
                continue  # not fetched yet since the assignment
            try:
                _lo, hi = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if hi >= 0:
                self.stalls.observe((tp.topic, tp.partition), tp.offset, hi)

    def _commit(self) -> None:
        """Make everything produced since the last commit durable together with the input
        offsets behind it: one transaction (exactly once), or flush-then-commit (at least once)."""
        self._record_lag()
        offsets = self._offsets()
        if offsets or self._dirty:
            if self.eos:
                if not self._in_txn:
                    self.producer.begin_transaction()
                    self._in_txn = True
                if offsets:
                    self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
                self.producer.commit_transaction(60)
                self._in_txn = False
            else:
                if self.producer.flush(60):
                    raise RuntimeError("outputs not acknowledged within 60 s")
                if self._deferred:
                    self._send(self._deferred)
                    self._deferred = []
                    if self.producer.flush(60):
                        raise RuntimeError("outputs not acknowledged within 60 s")
                if offsets:
                    self.consumer.commit(offsets=offsets, asynchronous=False)
            if self._delivery_errors:
                raise RuntimeError(f"{self._delivery_errors} outputs failed delivery")
        for p, o in self.consent_pos.items():
            self.consent_emit_from[p] = max(self.consent_emit_from[p], o)
            self._consent_committed[p] = o
        done = time.perf_counter()
        for t0 in self._batch_started:
            metrics.DECISION_LATENCY.observe(done - t0)
        self._batch_started.clear()
        for t, n in self._uncommitted_in.items():
            metrics.EVENTS_IN.labels(t).inc(n)
        self._uncommitted_in.clear()
        self._event_next.clear()
        self._dirty = False
        self._last_commit = time.monotonic()

    # ------------------------------------------------------------------ loop
    def _batch(self, msgs: list) -> None:
        """Decide one consumed batch and produce its outputs (committed by a later _commit)."""
        t0 = time.perf_counter()
        out: list = []
        by_p: dict[int, list[tuple]] = defaultdict(list)
        event_next = self._event_next
        counts = self._uncommitted_in
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(err)
            t, p, o = m.topic(), m.partition(), m.offset()
            # headers and the record timestamp play no part in the decision
            by_p[p].append((t, p, o, m.key(), m.value(), None, 0))
            event_next[(t, p)] = o + 1
            counts[t] = counts.get(t, 0) + 1
        t1 = time.perf_counter()
        if by_p:
            self._catch_up(self._consent_ends(by_p), out)  # G2
        t2 = time.perf_counter()
        for p, recs in by_p.items():
            res = self.filter_for(p).decide(recs)
            out.extend(res.records)
            metrics.record_batch(res)
            if res.dlq:
                metrics.DLQ.labels(recs[0][0]).inc(res.dlq)
        t3 = time.perf_counter()
        self._produce(out)
        self._batch_started.append(t0)
        stage = self._stage
        stage["consume"] += t1 - t0  # taking the records out of the client's messages
        stage["barrier"] += t2 - t1
        stage["decide"] += t3 - t2
        stage["produce"] += time.perf_counter() - t3

    def run(self) -> None:
        s = self.s
        if self.eos:
            self.producer.init_transactions(60)
        self.consumer.subscribe(self.event_topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        web = serve(s.web_bind, s.web_port, lambda: self.ready and self.stalls.healthy())
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "running", False))
        log.info("fast runtime started %s", kv(group=s.group_id, eos=self.eos, partitions=self.partitions,
                                               policy_version=self.policy.version))
        timeout = s.batch_timeout_ms / 1000
        interval = s.commit_interval_ms / 1000
        try:
            while self.running:
                tc = time.perf_counter()
                msgs = self.consumer.consume(s.batch_size, timeout=timeout)
                self._stage["consume"] += time.perf_counter() - tc
                if not self.ready and self.states:
                    # recovered when consent is caught up to the end of every owned partition
                    out: list = []
                    n = self._catch_up(self._consent_ends(set(self.states)), out, restoring=True)
                    self._produce(out)
                    log.info("consent restored %s", kv(records=n, partitions=len(self.states)))
                    self.ready = True
                    metrics.READY.set(1)
                    _settle_gc()
                if msgs:
                    self._batch(msgs)
                else:
                    out = []
                    self._poll_consent(out, timeout=0)  # erasures and DLQ go out without events too
                    self._produce(out)
                if time.monotonic() - self._last_commit >= interval or not msgs:
                    tc = time.perf_counter()
                    self._commit()
                    self._stage["commit"] += time.perf_counter() - tc
                    self._publish_stages()
                    if time.monotonic() - self._last_ckpt > s.checkpoint_interval_s and self.states:
                        self._write_checkpoints()
            # clean stop: commit what was decided, then checkpoint at the committed positions
            self._commit()
            if self.states:
                self._write_checkpoints()
        except BaseException:
            self._failed = True
            raise
        finally:
            web.shutdown()
            self.consumer.close()
            self.consent_consumer.close()
            self.offsets_client.close()
            self.producer.flush(30)
            log.info("fast runtime stopped")

    def _publish_stages(self) -> None:
        """Stage times into the metrics once per commit (not per batch: labels cost)."""
        for name, secs in self._stage.items():
            if secs:
                metrics.STAGE_SECONDS.labels(name).inc(secs)
                self._stage[name] = 0.0

    def filter_for(self, p: int) -> Any:
        self.filter.store = self.states[p]
        return self.filter


#: Young-generation threshold of the cyclic garbage collector while deciding. Decoding
#: allocates a few dicts per event, so the default (700) runs a collection every ~200
#: events, each of which also ages survivors towards the full collections that walk
#: the whole consent state. Nothing the hot path allocates forms cycles; 50,000 keeps
#: collections rare without letting garbage grow (reference counting frees it).
GC_GEN0_THRESHOLD = 50_000


def _settle_gc() -> None:
    """Once state is restored: collect once, move what is left (the state) out of the
    collector's sight (``gc.freeze``), and make young collections rare."""
    gc.enable()
    gc.collect()
    gc.freeze()
    _g0, g1, g2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, g1, g2)
    _trim_heap()


def _trim_heap() -> None:
    """Give the heap the restore freed back to the OS (glibc ``malloc_trim``).

    Reading the consent topic passes every record through fetch buffers (in the
    client's own threads' malloc arenas) and JSON decoding; glibc keeps what was
    freed, so RSS after a restore stayed ~450 bytes per subject above the state
    itself (measured: 802 vs 356 B/subject after a restart from the checkpoint).
    A no-op where the C library has no malloc_trim."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def run_fast_worker(settings: Settings) -> None:
    FastWorker(settings).run()
