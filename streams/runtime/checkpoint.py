"""What the next commit of the fast runtime makes durable, and the commit itself.

One object owns it (as quixstreams' ``checkpointing/checkpoint.py`` does):
the next event offset per (topic, partition) decided since the last commit,
the engine outputs an at-least-once worker holds back until the commit point,
whether anything was produced, the open transaction (exactly once), and the
delivery errors the producer reported.

- Exactly once: the first output after a commit opens a transaction; the
  commit adds the event and consent offsets to it
  (``send_offsets_to_transaction``) and commits it. Outputs and the offsets of
  the inputs that caused them become visible together or not at all.
- At least once: decisions and DLQ entries are produced as decided; at the
  commit: flush (all acknowledged), produce the engine outputs they account
  for, flush, then commit the offsets behind them. A crash can so leave a
  decision whose output never went out (its input is decided again), never
  an output that no decision accounts for.

Contracts: ``consumed`` and ``produce`` never block on the broker (they hand
records to the producer's local queue, which waits only while that queue is
full, see ``streams.runtime.sink.produce_records``). ``commit`` blocks until
the broker acknowledged everything (bounded by ``COMMIT_TIMEOUT_S`` per
step) and raises ``DeliveryError`` if anything was not: the worker must then
end without committing again (``failed``). ``abandon`` (partitions lost)
never commits. All methods are called from the loop's thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import TopicPartition

from streams import metrics
from streams.runtime.records import Positions
from streams.runtime.sink import DeliveryError, produce_records, split_audit_first
from streams.runtime.stall import Heartbeat

#: Transaction timeout: longer than the slowest batch (a barrier that reads a
#: large consent backlog), short enough that a zombie's open transaction does
#: not block read_committed readers for long if it is never fenced.
TRANSACTION_TIMEOUT_MS = 60_000
#: Bound of one flush, transaction commit or transaction init: a healthy broker
#: answers in milliseconds; a minute means the cluster is unavailable and the
#: worker ends (and is restarted) rather than wait on.
COMMIT_TIMEOUT_S = 60
#: Bound of sending the offsets to a transaction, or aborting one (a request to
#: the group / transaction coordinator, no data).
COORDINATOR_TIMEOUT_S = 30

#: ``producer_factory(on_delivery) -> Producer``: the producer must report every
#: delivery to the given callback (the checkpoint counts the failed ones).
ProducerFactory = Callable[[Callable[[Any, Any], None]], Any]


class Checkpoint:
    """Everything produced since the last commit and the input offsets behind it."""

    def __init__(self, producer_factory: ProducerFactory, consumer: Any, *, eos: bool,
                 deliveries: frozenset[str], heartbeat: Heartbeat | None = None) -> None:
        """``consumer``: the group consumer of the events (its offsets are committed, or its
        group metadata fences the transaction). ``deliveries``: the engines' output
        topics, which an at-least-once commit writes after the audit trail. ``heartbeat``:
        the transaction calls run under its bound, so the watchdog ends a worker whose call
        overran its timeout (``stall.Heartbeat.bounded``)."""
        self.heartbeat = heartbeat or Heartbeat()
        self.consumer = consumer
        self.eos = eos
        self.deliveries = deliveries
        self.producer = producer_factory(self._on_delivery)
        #: event offsets (next to read) decided since the last commit
        self.event_next: dict[tuple[str, int], int] = {}
        #: events read per topic since the last commit (counted when committed)
        self._uncommitted_in: dict[str, int] = {}
        self._batch_started: list[float] = []  # perf_counter() when each batch was fetched
        self._deferred: list[tuple] = []  # at least once: engine outputs held for the commit point
        self._dirty = False  # anything produced since the last commit
        self.in_txn = False
        self.delivery_errors = 0
        #: set by the loop after an error: nothing more may be committed
        self.failed = False
        self.last_commit = time.monotonic()

    # ------------------------------------------------------------------ producing
    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.delivery_errors += 1

    def start(self) -> None:
        """Before the first output: with exactly once, fence any predecessor with the same
        transactional.id (its open transaction is aborted)."""
        if self.eos:
            with self.heartbeat.bounded("init_transactions", COMMIT_TIMEOUT_S):
                self.producer.init_transactions(COMMIT_TIMEOUT_S)

    def consumed(self, read: Positions, fetched_at: float) -> None:
        """A batch was decided: its positions are what the next commit makes durable."""
        self.event_next.update(read.next_offsets)
        counts = self._uncommitted_in
        for t, n in read.counts.items():
            counts[t] = counts.get(t, 0) + n
        self._batch_started.append(fetched_at)

    def produce(self, records: list) -> None:
        """Hand a batch's outputs to the producer (exactly once: inside the open
        transaction; at least once: engine outputs wait for the commit point)."""
        if not records:
            return
        if self.eos:
            self._begin()
        else:
            # at least once: engine outputs wait for the commit point, after the decisions
            # that account for them were acknowledged (streams.runtime.sink)
            records, delivered = split_audit_first(records, self.deliveries)
            self._deferred.extend(delivered)
        self._send(records)

    def _begin(self) -> None:
        if not self.in_txn:
            self.producer.begin_transaction()
            self.in_txn = True

    def _send(self, records: list) -> None:
        produce_records(self.producer, records)
        self._dirty = True

    # ------------------------------------------------------------------ committing
    def commit(self, consent_offsets: Iterable[TopicPartition] = ()) -> None:
        """Make everything produced since the last commit durable together with the event
        offsets behind it and ``consent_offsets`` (consent records applied since the last
        commit): one transaction (exactly once), or flush-then-commit (at least once).
        Raises ``DeliveryError`` when the broker did not acknowledge every output."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.event_next.items()]
        offsets += consent_offsets
        if offsets or self._dirty:
            if self.eos:
                self._begin()
                bounded = self.heartbeat.bounded
                if offsets:
                    with bounded("send_offsets_to_transaction", COORDINATOR_TIMEOUT_S):
                        self.producer.send_offsets_to_transaction(
                            offsets, self.consumer.consumer_group_metadata(), COORDINATOR_TIMEOUT_S)
                with bounded("commit_transaction", COMMIT_TIMEOUT_S):
                    self.producer.commit_transaction(COMMIT_TIMEOUT_S)
                self.in_txn = False
            else:
                self._flush()
                if self._deferred:
                    self._send(self._deferred)
                    self._deferred = []
                    self._flush()
                if offsets:
                    self.consumer.commit(offsets=offsets, asynchronous=False)
            if self.delivery_errors:
                raise DeliveryError(f"{self.delivery_errors} outputs failed delivery")
        done = time.perf_counter()
        for t0 in self._batch_started:
            metrics.DECISION_LATENCY.observe(done - t0)
        self._batch_started.clear()
        for t, n in self._uncommitted_in.items():
            metrics.EVENTS_IN.labels(t).inc(n)
        self._uncommitted_in.clear()
        self.event_next.clear()
        self._dirty = False
        self.last_commit = time.monotonic()

    def _flush(self) -> None:
        with self.heartbeat.bounded("flush", COMMIT_TIMEOUT_S):
            left = self.producer.flush(COMMIT_TIMEOUT_S)
        if left:
            raise DeliveryError(f"outputs not acknowledged within {COMMIT_TIMEOUT_S} s")

    def abandon(self) -> bool:
        """The partitions were lost (no longer a member): nothing can be committed. With
        exactly once the open transaction is aborted (its outputs are never seen); the
        next owner decides those inputs again. Returns whether a transaction was aborted."""
        aborted = self.eos and self.in_txn
        if aborted:
            with self.heartbeat.bounded("abort_transaction", COORDINATOR_TIMEOUT_S):
                self.producer.abort_transaction(COORDINATOR_TIMEOUT_S)
            self.in_txn = False
        self.event_next.clear()
        self._uncommitted_in.clear()
        self._batch_started.clear()
        self._deferred = []
        self._dirty = False
        return aborted

    def forget(self, gone: set[int]) -> None:
        """Partitions revoked (after their commit) or lost: their positions are not ours."""
        self.event_next = {tp: o for tp, o in self.event_next.items() if tp[1] not in gone}

    def close(self) -> None:
        """Hand over what is still queued (bounded); called last, after the consumers closed."""
        self.producer.flush(COORDINATOR_TIMEOUT_S)
