"""Rebalance handling of the fast runtime: what happens when the group assigns, revokes or
loses event partitions.

- assign: the new partitions' consent state is loaded (checkpoint file plus the
  committed consent offset) and the consent consumer follows; the worker is
  not ready until the loop restored it (``ConsentReader.restore``).
- revoke: still a member of the old generation, so what was decided is
  committed first: the partitions' next owner starts exactly where our
  outputs end. Nothing is committed after a failure (``Checkpoint.failed``).
- lost: no longer a member, offsets can't be committed; with exactly once the
  open transaction is aborted (its outputs are never seen) and the next owner
  decides those inputs again.

Contract: librdkafka calls these from inside ``consumer.consume()`` on the
loop's thread. ``on_assign`` blocks for one committed-offsets request,
``on_revoke`` for one commit (``Checkpoint.commit``'s bounds); ``on_lost``
does no I/O except aborting an open transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import OFFSET_INVALID, TopicPartition

from streams.logs import kv
from streams.runtime.checkpoint import Checkpoint
from streams.runtime.consent_reader import ConsentReader
from streams.runtime.heap import pause_gc
from streams.runtime.notices import clock_from_metadata
from streams.runtime.stall import StallWatch

log = logging.getLogger("streams.runtime.fast")

#: Bound of the committed-offsets request made when partitions are assigned.
COMMITTED_TIMEOUT_S = 30


class Rebalance:
    """The three callbacks ``Consumer.subscribe`` takes, over the worker's parts."""

    def __init__(self, consent: ConsentReader, checkpoint: Checkpoint, stalls: StallWatch,
                 event_topics: Sequence[str], commit: Callable[[], None]) -> None:
        """``commit``: the worker's full commit (lag, checkpoint and consent positions)."""
        self.consent = consent
        self.checkpoint = checkpoint
        self.stalls = stalls
        self.event_topics = list(event_topics)
        self.commit = commit

    def on_assign(self, consumer: Any, parts: list[TopicPartition]) -> None:
        new = sorted({tp.partition for tp in parts} - set(self.consent.states))
        if not new:
            return
        t0 = time.perf_counter()
        # the group's committed consent offsets: outputs of consent records below them went out
        committed = consumer.committed([TopicPartition(self.consent.topic, p) for p in new],
                                       timeout=COMMITTED_TIMEOUT_S)
        self.consent.assign({tp.partition: tp.offset if tp.offset not in (OFFSET_INVALID,) and tp.offset >= 0 else 0
                             for tp in committed},
                            clocks={tp.partition: clock_from_metadata(tp.metadata) for tp in committed})
        # Restoring builds the state and makes no garbage cycles, while the collector
        # would walk the growing state again and again: off until ready (heap.settle_gc).
        pause_gc()
        log.info("partitions assigned %s", kv(partitions=len(new), checkpoint_load_s=round(time.perf_counter() - t0, 3)))

    def on_revoke(self, consumer: Any, parts: list[TopicPartition]) -> None:
        if not self.checkpoint.failed:
            self.commit()
        self._forget({tp.partition for tp in parts})

    def on_lost(self, consumer: Any, parts: list[TopicPartition]) -> None:
        aborted = self.checkpoint.abandon()
        log.warning("partitions lost (no longer a group member) %s", kv(partitions=len(parts),
                                                                        open_transaction_aborted=aborted))
        self._forget({tp.partition for tp in parts})

    def _forget(self, gone: set[int]) -> None:
        self.consent.forget(gone)
        self.checkpoint.forget(gone)
        self.stalls.forget([(t, p) for t in self.event_topics for p in gone])
        log.info("partitions revoked %s", kv(partitions=len(gone)))
