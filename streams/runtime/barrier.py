"""The revocation barrier (CONTRACT G2) for the faust runtime.

Before events of partition p are decided, consent state must reflect consent
partition p up to its high watermark read *after* those events were fetched.
Any consent change the broker acknowledged before an event was produced is
then below that watermark, so it is applied.

In faust the consent agent and the event agent share one conductor; an event
agent that simply waited for the consent agent could deadlock when the event
buffer is full and the conductor blocks delivering to it. So the barrier waits
only briefly for the consent agent, then reads the missing consent records
itself (a side consumer, assigned, no group membership) into an overlay that
is layered over the table for deciding. The consent agent applies the same
records to the table later (last-writer-wins makes this idempotent), and the
overlay is dropped once the agent has passed it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_END, OFFSET_INVALID, Consumer, KafkaError, TopicPartition

from streams import metrics
from streams.config import Settings
from streams.errors import PFilterError
from streams.kafka.clients import plain_consumer_config
from streams.logs import kv
from streams.runtime import records

log = logging.getLogger(__name__)


class SideReadError(PFilterError, RuntimeError):
    """The broker refused a side read of the barrier (offsets or records); the agent stops."""


class SideReadTimeout(PFilterError, TimeoutError):
    """A side read of the barrier made no progress within ``READ_TIMEOUT_S``."""


#: How long the event agent waits for the consent agent before reading ahead
#: itself. Long enough that in steady state (consent agent a few ms behind)
#: nothing is read twice; short enough that a withdrawal is never waited on
#: for more than a blink.
WAIT_FOR_AGENT_S = 0.05
#: A side read that gets no record for this long fails (the broker is
#: unreachable); a long backlog is read to its end however long that takes.
READ_TIMEOUT_S = 30.0


class ConsentSideReader:
    """Blocking Kafka calls for the barrier; run them in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic_consent
        group_id = settings.group_id
        # Same group id as the faust app only to read its committed offsets;
        # this consumer never subscribes, so it never joins the group.
        self._meta = Consumer(plain_consumer_config(settings, group_id, **{"isolation.level": "read_uncommitted"}))
        self._reader = Consumer(plain_consumer_config(settings, f"{group_id}.barrier", **{
            "enable.partition.eof": True, "isolation.level": "read_uncommitted", "fetch.wait.max.ms": 10,
        }))

    def ends(self, partitions: list[int]) -> dict[int, int]:
        """End offset of each consent partition, asked of the broker now: one ListOffsets
        request, on a connection that carries no fetch (the broker answers a
        connection's requests in order, so behind a fetch long-poll it would wait)."""
        tps = [TopicPartition(self.topic, p, OFFSET_END) for p in partitions]
        out = {}
        for tp in self._meta.offsets_for_times(tps, timeout=10):
            if tp.error is not None:
                raise SideReadError(f"consent end offsets unavailable: {tp.error.name()}")
            out[tp.partition] = tp.offset
        return out

    def committed(self, partitions: list[int]) -> dict[int, int]:
        """The faust group's committed offsets (next to read), or -1 each."""
        tps = self._meta.committed([TopicPartition(self.topic, p) for p in partitions], timeout=10)
        return {tp.partition: -1 if tp.offset == OFFSET_INVALID or tp.offset < 0 else tp.offset for tp in tps}

    def starts(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Where the group resumes each input partition: its committed offset, or the log
        start where it has none (the app reads from the earliest offset then)."""
        got = self._meta.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
        out = {}
        for tp in got:
            if tp.error is not None:
                raise SideReadError(f"committed offsets unavailable: {tp.error.name()}")
            off = tp.offset
            if off == OFFSET_INVALID or off < 0:
                off, _high = self._meta.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            out[(tp.topic, tp.partition)] = off
        return out

    def read(self, partition: int, start: int, end: int, topic: str | None = None) -> list[tuple]:
        """Records of ``topic`` (default: consent) with start <= offset < end as engine
        InputRecords. A record at ``end - 1`` or beyond, or the partition's end, stops
        the read, so a range whose last offsets hold no record (transaction markers)
        still ends."""
        out: list[tuple] = []
        if start >= end:
            return out
        topic = topic or self.topic
        self._reader.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + READ_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                msgs = self._reader.consume(1000, timeout=0.2)
                if msgs:  # a long backlog is read to its end: only a stalled read times out
                    deadline = time.monotonic() + READ_TIMEOUT_S
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            return out
                        raise SideReadError(f"barrier read failed on partition {partition}: {err.name()}")
                    off = m.offset()
                    if off >= end:
                        return out
                    out.append(records.from_message(m))
                    if off >= end - 1:
                        return out
            raise SideReadTimeout(f"side read of {topic} partition {partition} timed out")
        finally:
            self._reader.unassign()

    def close(self) -> None:
        self._meta.close()
        self._reader.close()


class RevocationBarrier:
    """Tracks how far the consent agent got and builds the store to decide with."""

    def __init__(
        self,
        reader: ConsentSideReader,
        table_view: Callable[[int], Any],
        apply_ahead: Callable[[list[tuple], Any], None],
    ) -> None:
        self._reader = reader
        self._table_view = table_view
        self._apply_ahead = apply_ahead
        self.processed: dict[int, int] = {}     # partition -> last offset the agent applied
        self._base: dict[int, int] = {}         # partition -> committed - 1 at first use
        self._overlay: dict[int, dict[str, Any]] = {}
        self._overlay_upto: dict[int, int] = {}  # partition -> last offset in the overlay
        self._progress = asyncio.Event()
        self.lock = asyncio.Lock()

    def consent_applied(self, partition: int, offset: int) -> None:
        """Called by the consent agent after each record it applied to the table."""
        if offset > self.processed.get(partition, -1):
            self.processed[partition] = offset
        self._progress.set()

    def forget(self, partitions: set[int]) -> None:
        """On revocation: state of partitions we no longer own must not be reused."""
        for p in partitions:
            self.processed.pop(p, None)
            self._base.pop(p, None)
            self._overlay.pop(p, None)
            self._overlay_upto.pop(p, None)

    async def _run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _done(self, p: int) -> int:
        return max(self.processed.get(p, -1), self._base.get(p, -1))

    async def stores_for(self, partitions: list[int]) -> dict[int, Any]:
        """Per partition, a store that reflects its consent partition up to the end offset
        asked of the broker now (after the events were fetched)."""
        from streams.runtime.stores import Overlay

        async with self.lock:
            new = [p for p in partitions if p not in self._base]
            if new:
                for p, off in (await self._run(self._reader.committed, new)).items():
                    self._base[p] = off - 1
            targets = {p: end - 1 for p, end in (await self._run(self._reader.ends, partitions)).items()}

            def behind() -> bool:
                return any(max(self._done(p), self._overlay_upto.get(p, -1)) < t for p, t in targets.items())

            # a short wait lets the consent agent catch up in steady state; only when
            # neither it nor the overlay reached a target
            deadline = time.monotonic() + WAIT_FOR_AGENT_S
            while behind() and time.monotonic() < deadline:
                self._progress.clear()
                try:
                    await asyncio.wait_for(self._progress.wait(), timeout=max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
            stores = {}
            for p, target in targets.items():
                done = self._done(p)
                metrics.CONSENT_LAG.labels(str(p)).set(max(0, target - done))
                # the agent passed the overlay: the table alone is current
                if p in self._overlay and done >= self._overlay_upto[p]:
                    del self._overlay[p]
                    del self._overlay_upto[p]
                have = max(done, self._overlay_upto.get(p, -1))
                base_view = self._table_view(p)
                if have < target:
                    got = await self._run(self._reader.read, p, have + 1, target + 1)
                    over = self._overlay.setdefault(p, {})
                    view = Overlay(over, base_view)
                    if got:
                        self._apply_ahead(got, view)
                        metrics.BARRIER_CATCHUP.inc(len(got))
                        log.debug("barrier read-ahead %s", kv(partition=p, records=len(got), upto=target))
                    self._overlay_upto[p] = target
                    stores[p] = view
                elif p in self._overlay:
                    stores[p] = Overlay(self._overlay[p], base_view)
                else:
                    stores[p] = base_view
            return stores
