"""Stalled-partition detection, shared by both runtimes.

A partition is stalled when it has lag (its high watermark is beyond the next
offset the worker must decide) and that position has not moved for a while.
A consumer that stopped fetching a partition after a rebalance looks healthy
from the outside (the process runs, the group is stable); this is what makes
it visible: ``pfilter_partition_stalled_seconds{topic,partition}`` and a
``/readyz`` that turns unhealthy once any partition has been stalled longer
than ``PFILTER_STALL_TIMEOUT_S``.

Contract: :meth:`StallWatch.observe` is cheap (a dict lookup and a gauge set)
and never blocks; the runtimes call it from their loop or a timer with values
they already hold (positions they track, high watermarks cached by the client).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from streams import metrics
from streams.logs import kv

log = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]


class StallWatch:
    """Per input partition: since when it has had lag without progress."""

    __slots__ = ("_clock", "_since", "_seen", "timeout_s")

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._seen: dict[TopicPartitionKey, int] = {}     # last position observed
        self._since: dict[TopicPartitionKey, float] = {}  # lag without progress since

    def observe(self, tp: TopicPartitionKey, position: int, highwater: int) -> float:
        """Record one reading; returns how long the partition has been stalled (0: not)."""
        now = self._clock()
        stalled = 0.0
        if highwater <= position:
            self._since.pop(tp, None)  # no lag: nothing to make progress on
        elif self._seen.get(tp) != position or tp not in self._since:
            self._since[tp] = now      # progress (or first lag seen): the clock restarts
        else:
            stalled = now - self._since[tp]
        self._seen[tp] = position
        metrics.PARTITION_STALLED.labels(tp[0], str(tp[1])).set(stalled)
        return stalled

    def stalled(self) -> dict[TopicPartitionKey, float]:
        """Partitions stalled longer than the timeout, with their stalled seconds."""
        now = self._clock()
        return {tp: now - t for tp, t in self._since.items() if now - t > self.timeout_s}

    def healthy(self) -> bool:
        return not self.stalled()

    def forget(self, tps: Iterable[TopicPartitionKey]) -> None:
        """Partitions no longer owned: their gauge goes to 0 and their clock is dropped."""
        for tp in tps:
            self._seen.pop(tp, None)
            self._since.pop(tp, None)
            metrics.PARTITION_STALLED.labels(tp[0], str(tp[1])).set(0)


class Heartbeat:
    """When the worker's loop last made a step (monotonic seconds), and the client call it is
    in when that call has a bound of its own. The loop beats once per iteration and the
    consent restore once per poll; the watchdog reads both from its thread. Attribute writes
    are atomic under the GIL: no lock."""

    __slots__ = ("_clock", "call", "last")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last = clock()
        #: (name, deadline) of the bounded client call in progress, else None
        self.call: tuple[str, float] | None = None

    def beat(self) -> None:
        self.last = self._clock()

    def age(self) -> float:
        return self._clock() - self.last

    @contextmanager
    def bounded(self, name: str, seconds: float) -> Iterator[None]:
        """Around a client call that takes a timeout: past ``seconds`` plus CALL_GRACE_S the
        watchdog ends the worker. Why: librdkafka does not always keep the timeout it is
        given. ``send_offsets_to_transaction`` waits on the group coordinator with no
        deadline (librdkafka #5456, open, reproduced on 2.16: after a broker restart a fast
        worker sat in it for over 2 minutes with a 30 s timeout, F3). ``name`` is a fixed
        label, never data."""
        self.call = (name, self._clock() + seconds + CALL_GRACE_S)
        try:
            yield
        finally:
            self.call = None

    def overran(self) -> tuple[str, float] | None:
        """The bounded call in progress and how far past its deadline it is, if it is."""
        call = self.call
        if call is None:
            return None
        over = self._clock() - call[1]
        return (call[0], over) if over > 0 else None


#: Beyond a call's own timeout before the watchdog acts: the client raises its timeout error
#: a little after the deadline (a request in flight is let finish); 5 s covers that.
CALL_GRACE_S = 5.0
#: How often the watchdog looks; a stall is acted on within this of crossing the timeout.
WATCHDOG_CHECK_S = 5.0
#: Exit status of a worker stopped by its watchdog (EX_SOFTWARE, as a failed faust agent).
STALLED_EXIT = 70


def start_watchdog(watch: StallWatch, armed: Callable[[], bool], *, check_s: float = WATCHDOG_CHECK_S,
                   exit_: Callable[[int], None] | None = None, heartbeat: Heartbeat | None = None,
                   stuck_s: float | None = None) -> threading.Thread:
    """Fail-stop for a worker that stopped making progress, so a supervisor (Kubernetes, the
    fault suite) restarts it and it resumes from its commit. Two conditions, one line each:

    - once ``armed()`` (consent restored), a partition stalled past the watch's timeout;
    - armed or not, the loop's ``heartbeat`` older than ``stuck_s``: every wait of one loop
      step is bounded, so a loop that has not stepped for longer is stuck in a call;
    - armed or not, a call made under ``heartbeat.bounded`` past its deadline (a tighter
      bound than ``stuck_s`` for the calls librdkafka is known to overrun).

    Why: after a broker was killed and restarted, fast workers stayed alive without deciding
    anything for 4 minutes (F3 in loaded CI runs). In one run the stall clock caught it; in
    another it could not (no fresh high watermark, or a loop stuck before any reading), which
    is why the heartbeat is there too. A thread, not the loop: the loop may be what is stuck."""
    import os

    def stop(why: str, **fields: object) -> None:
        log.critical("%s, stopping the worker %s", why, kv(**fields))
        logging.shutdown()
        (exit_ or os._exit)(STALLED_EXIT)

    def run() -> None:
        while True:
            time.sleep(check_s)
            if heartbeat is not None and stuck_s is not None and heartbeat.age() > stuck_s:
                stop("the worker loop made no step past its bound", seconds=round(heartbeat.age()))
                return
            over = heartbeat.overran() if heartbeat is not None else None
            if over is not None:
                stop("a client call overran its timeout", call=over[0], seconds_over=round(over[1]))
                return
            if not armed():
                continue
            stalled = watch.stalled()
            if stalled:
                stop("input partitions stalled past PFILTER_STALL_TIMEOUT_S",
                     partitions=len(stalled), seconds=round(max(stalled.values())))
                return

    t = threading.Thread(target=run, name="pfilter-watchdog", daemon=True)
    t.start()
    return t
