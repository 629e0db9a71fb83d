"""The fast runtime: one confluent-kafka consume-decide-produce loop around the engine.

One step per module, each with its contract in its docstring (as
getsentry/arroyo's strategies):

- this module: the clients and the loop (consume a batch, barrier, decide,
  produce; commit every interval);
- ``streams.runtime.records``: client messages to engine InputRecords, grouped
  by partition;
- ``streams.runtime.consent_reader``: consent state per partition, the G2
  catch-up, end offsets, the local checkpoint files;
- ``streams.runtime.decider``: the engine deciding per partition;
- ``streams.runtime.checkpoint``: what the next commit makes durable, and the
  commit (transaction or flush-then-commit);
- ``streams.runtime.rebalance``: assign / revoke / lost;
- ``streams.runtime.heap``: the garbage collector around a restore.

The design:

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

Contract of the loop: one thread; ``consume`` waits at most
``PFILTER_BATCH_TIMEOUT_MS``; every other wait is bounded by the step it
calls (see their modules).
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Producer, TopicPartition

from streams import metrics, wiring
from streams.config import Settings
from streams.kafka.admin import require_copartitioned
from streams.kafka.clients import consumer_config, output_producer_config, plain_consumer_config
from streams.logs import kv
from streams.runtime import records
from streams.runtime.checkpoint import COMMIT_TIMEOUT_S, COORDINATOR_TIMEOUT_S, TRANSACTION_TIMEOUT_MS, Checkpoint
from streams.runtime.consent_reader import ENDS_TIMEOUT_S, ConsentFiles, ConsentReader
from streams.runtime.heap import settle_gc
from streams.runtime.keys import PartitionKeys
from streams.runtime.notices import PartitionNotices
from streams.runtime.rebalance import Rebalance
from streams.runtime.stall import Heartbeat, StallWatch, start_watchdog
from streams.runtime.web import serve

log = logging.getLogger("streams.runtime.fast")

#: A loop step waits at most: a consume (batch timeout), a barrier catch-up (half the
#: transaction timeout), a commit (offsets to the coordinator, then the commit). Past the sum
#: of the worst cases the loop is stuck in a call, and the watchdog ends the worker.
LOOP_STUCK_S = TRANSACTION_TIMEOUT_MS / 2000 + COORDINATOR_TIMEOUT_S + COMMIT_TIMEOUT_S
#: How often the stall watch gets high watermarks asked of the broker (one ListOffsets
#: request for the owned input partitions) instead of the client's cache: the cache holds
#: the last fetch response's, which never changes once fetching stops (F3: a worker whose
#: consumer stopped fetching after a broker restart looked caught up and was never stopped).
FRESH_ENDS_S = 5.0


class FastWorker:
    """The clients, the parts of the fast runtime wired together, and the loop."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        make = wiring.filter_factory(settings)  # a bad policy or secret stops us before any I/O
        filt = make(None)
        self.policy = filt.policy
        self.partitions = require_copartitioned(settings, wiring.state_topics(settings, self.policy))
        self.eos = settings.guarantee == "exactly_once"
        self.instance = settings.instance_id or f"{socket.gethostname()}-{settings.web_port}"
        self.event_topics = [settings.topic_clickstream, settings.topic_purchases]
        self.running = True
        self._stage = dict.fromkeys(("consume", "barrier", "decide", "produce", "commit"), 0.0)
        self.stalls = StallWatch(settings.stall_timeout_s)
        self.heartbeat = Heartbeat()
        self._ends_at = 0.0

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
        consent_consumer = Consumer(plain_consumer_config(
            settings, f"{settings.group_id}.consent-reader", **{  # never subscribes, never commits
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.max.bytes": 52_428_800,
                "max.partition.fetch.bytes": 8_388_608,
                "fetch.wait.max.ms": 10,
            }))
        # End offsets are asked on a connection of their own (ConsentReader.ends).
        offsets_client = Consumer(plain_consumer_config(
            settings, f"{settings.group_id}.consent-ends", **{"isolation.level": "read_committed"}))
        files = ConsentFiles(Path(settings.state_dir) / "fast" / settings.group_id, self.policy.vocab.fingerprint)
        self.consent = ConsentReader(consent_consumer, offsets_client, settings.topic_consent, filt, files,
                                     catch_up_bound_s=TRANSACTION_TIMEOUT_MS / 2000,
                                     stall_s=settings.stall_timeout_s, heartbeat=self.heartbeat)
        extra: dict[str, Any] = {}
        if self.eos:
            extra = {"transactional.id": f"{settings.group_id}.{self.instance}",
                     "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS}
        self.checkpoint = Checkpoint(
            lambda on_delivery: Producer(output_producer_config(settings, on_delivery, **extra)),
            self.consumer, eos=self.eos, deliveries=frozenset(e.topic for e in self.policy.engines),
            heartbeat=self.heartbeat)
        # consent notices (CONTRACT §9): time-driven, their clock committed with the consent offsets
        self.consent.notices = PartitionNotices(self.policy, settings.topic_notices, settings.format_output,
                                                settings.schema_registry_url)
        self.rebalance = Rebalance(self.consent, self.checkpoint, self.stalls, self.event_topics, self.commit)
        # encrypted fields (CONTRACT §10): a ring per owned partition, restored from the keys
        # topic before consent; new keys go out in the transaction of their first output
        # (they are in the engine's BatchResult.records)
        self.keys: PartitionKeys | None = None
        if self.policy.encrypts:
            self.keys = PartitionKeys(
                lambda: Consumer(plain_consumer_config(settings, f"{settings.group_id}.keys-reader", **{
                    "isolation.level": "read_committed", "enable.partition.eof": True})),
                settings.topic_keys, lambda: wiring.new_keyring(settings, self.policy))
            self.consent.decider.rings = self.keys.rings

    # ------------------------------------------------------------------ commit
    def commit(self) -> None:
        """Lag, then one commit of the outputs, the event offsets and the consent offsets."""
        self._record_lag()
        self.checkpoint.commit(self.consent.uncommitted())
        self.consent.mark_committed()

    def _record_lag(self) -> None:
        """Consumer lag per input partition read since the last commit: the high watermark
        of the last fetch response (cached by the client, no request) minus the next offset.
        Every owned partition also feeds the stall watch, read or not (a partition the
        client stopped fetching is exactly the one that is not read), every FRESH_ENDS_S
        with high watermarks asked of the broker, not the client's cache."""
        for (t, p), nxt in self.checkpoint.event_next.items():
            try:
                _lo, hi = self.consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
            except KafkaException:
                continue
            metrics.record_lag(t, p, hi, nxt)
        if time.monotonic() - self._ends_at < FRESH_ENDS_S:
            return
        self._ends_at = time.monotonic()
        try:
            owned = [tp for tp in self.consumer.position(self.consumer.assignment()) if tp.offset >= 0]
            ends = self.consent.offsets_client.offsets_for_times(
                [TopicPartition(tp.topic, tp.partition, OFFSET_END) for tp in owned], timeout=ENDS_TIMEOUT_S)
        except KafkaException:
            return  # the broker did not answer: the stall clocks run on from the last reading
        his = {(e.topic, e.partition): e.offset for e in ends if e.error is None}
        for tp in owned:  # (offset < 0: not fetched yet since the assignment)
            hi = his.get((tp.topic, tp.partition), -1)
            if hi >= 0:
                self.stalls.observe((tp.topic, tp.partition), tp.offset, hi)

    # ------------------------------------------------------------------ loop
    def _batch(self, msgs: list) -> None:
        """Decide one consumed batch and produce its outputs (committed by a later commit)."""
        t0 = time.perf_counter()
        out: list = []
        by_p, read = records.events_from_messages(msgs)
        t1 = time.perf_counter()
        consent = self.consent
        if by_p:
            consent.catch_up(consent.ends(by_p), out)  # G2
        t2 = time.perf_counter()
        decide = consent.decider.decide
        for p, recs in by_p.items():
            res = decide(p, recs)
            out.extend(res.records)
            metrics.record_decided(res, recs[0][0])
        t3 = time.perf_counter()
        self.checkpoint.consumed(read, t0)
        self.checkpoint.produce(out)
        stage = self._stage
        stage["consume"] += t1 - t0  # taking the records out of the client's messages
        stage["barrier"] += t2 - t1
        stage["decide"] += t3 - t2
        stage["produce"] += time.perf_counter() - t3

    def run(self) -> None:
        s = self.s
        consent, checkpoint = self.consent, self.checkpoint
        checkpoint.start()
        self.consumer.subscribe(self.event_topics, on_assign=self.rebalance.on_assign,
                                on_revoke=self.rebalance.on_revoke, on_lost=self.rebalance.on_lost)
        web = serve(s.web_bind, s.web_port, lambda: consent.ready and self.stalls.healthy())
        # a stuck worker exits to be restarted
        start_watchdog(self.stalls, lambda: consent.ready, heartbeat=self.heartbeat, stuck_s=LOOP_STUCK_S)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "running", False))
        log.info("fast runtime started %s", kv(group=s.group_id, eos=self.eos, partitions=self.partitions,
                                               policy_version=self.policy.version))
        timeout = s.batch_timeout_ms / 1000
        interval = s.commit_interval_ms / 1000
        try:
            while self.running:
                self.heartbeat.beat()
                tc = time.perf_counter()
                msgs = self.consumer.consume(s.batch_size, timeout=timeout)
                self._stage["consume"] += time.perf_counter() - tc
                if not consent.ready and consent.states:
                    # recovered when consent is caught up to the end of every owned partition
                    out: list = []
                    if self.keys is not None:
                        self.keys.sync(consent.states)  # keys first: consent replay may shred
                    consent.restore(out)
                    checkpoint.produce(out)
                    self._catch_up_notices()
                    metrics.READY.set(1)
                    settle_gc()
                if msgs:
                    self._batch(msgs)
                else:
                    out = []
                    consent.poll(out, timeout=0)  # erasures and DLQ go out without events too
                    checkpoint.produce(out)
                if consent.ready and consent.notices.due():
                    out = []
                    consent.notices.tick(consent.states, out)  # due with or without any input
                    checkpoint.produce(out)
                if time.monotonic() - checkpoint.last_commit >= interval or not msgs:
                    tc = time.perf_counter()
                    self.commit()
                    self._stage["commit"] += time.perf_counter() - tc
                    self._publish_stages()
                    if time.monotonic() - consent.files.last_write > s.checkpoint_interval_s and consent.states:
                        consent.write_files()
            # clean stop: commit what was decided, then checkpoint at the committed positions
            self.commit()
            if consent.states:
                consent.write_files()
        except BaseException:
            checkpoint.failed = True
            raise
        finally:
            web.shutdown()
            self.consumer.close()
            consent.close()
            checkpoint.close()
            log.info("fast runtime stopped")

    def _catch_up_notices(self) -> None:
        """Send the notices already due before the first event is decided, one bounded tick
        (``NOTICE_TICK_MAX`` per partition) and one commit at a time: a group's first start
        over an old population has them by the million (1.16M for the e2e bench's 1M
        subjects, ~20 s). Interleaved with the events they took ~65% of the loop for the
        first 30 s of a drain (py-spy), and held in one tick they cost GBs of RSS."""
        notices = self.consent.notices
        if notices is None:
            return
        while True:
            self.heartbeat.beat()
            out: list = []
            notices.tick(self.consent.states, out)
            self.checkpoint.produce(out)
            if not notices.behind:
                return
            self.commit()  # the clock and the notices up to it, together

    def _publish_stages(self) -> None:
        """Stage times into the metrics once per commit (not per batch: labels cost)."""
        for name, secs in self._stage.items():
            if secs:
                metrics.STAGE_SECONDS.labels(name).inc(secs)
                self._stage[name] = 0.0


def run_fast_worker(settings: Settings) -> None:
    FastWorker(settings).run()
