"""Offsets the faust runtime decided itself (holes) let faust's commits pass, even when faust
redelivers them afterwards. faust's own ``ack`` and ``_new_offset`` run on a bare consumer
state, so the test follows faust's real bookkeeping, not a model of it."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from intervaltree import IntervalTree

from streams.runtime.faust_offsets import mark_decided

TOPIC = "t.clickstream"
TPX = TP(TOPIC, 0)


class _Message:
    """What faust's ack reads of a message (hashable: faust keeps unacked ones in a set)."""

    def __init__(self, offset: int) -> None:
        self.acked = False
        self.tp = TPX
        self.topic = TOPIC
        self.offset = offset


class _Bookkeeping:
    """The attributes of a faust consumer that ack, _add_gap and _new_offset use."""

    ack = FaustConsumer.ack
    _new_offset = FaustConsumer._new_offset
    _add_gap = FaustConsumer._add_gap

    def __init__(self, committed: int) -> None:
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda _t: True))
        self._acked: defaultdict = defaultdict(list)
        self._acked_index: defaultdict = defaultdict(set)
        self._gap: defaultdict = defaultdict(IntervalTree)
        self._committed_offset: defaultdict = defaultdict(lambda: None)
        self._committed_offset[TPX] = committed  # as after faust's seek: the next offset to read
        self._unacked_messages: set = set()
        self._waiting_for_ack = None
        self._n_acked = 0

    def deliver(self, start: int, end: int) -> None:
        """faust's stream acks records [start, end) (take_events acks every record of a batch)."""
        for off in range(start, end):
            self.ack(_Message(off))

    def commit(self) -> int:
        """One commit: faust's new offset for the partition, recorded as committed."""
        new = self._new_offset(TPX)
        if new is not None:
            self._committed_offset[TPX] = new
        return self._committed_offset[TPX]


def test_a_hole_marked_decided_lets_the_commit_pass_it() -> None:
    c = _Bookkeeping(committed=100)
    c.deliver(150, 160)  # faust delivered from 150: 100..149 is the hole
    assert c.commit() == 100  # stuck below the hole
    assert mark_decided(c, TOPIC, 0, 100, 150) == 50
    assert c.commit() == 160


def test_a_redelivered_hole_does_not_slow_the_commit() -> None:
    c = _Bookkeeping(committed=100)
    c.deliver(150, 160)
    mark_decided(c, TOPIC, 0, 100, 150)
    c.deliver(100, 150)  # faust refetches the hole after its seek; the runtime drops and acks it
    assert c.commit() == 160
    c.deliver(160, 170)
    assert c.commit() == 170


def test_marking_skips_offsets_below_the_commit_or_acked_already() -> None:
    c = _Bookkeeping(committed=100)
    c.deliver(100, 105)
    assert mark_decided(c, TOPIC, 0, 95, 110) == 5  # 95..99 committed, 100..104 acked
    assert c.commit() == 110


def test_faust_gap_with_a_redelivery_crawls() -> None:
    """Why faust_offsets exists: with faust's ``_add_gap`` and the same redelivery, each
    commit passes two offsets. If this starts failing, faust changed and the module's
    reason should be re-read."""
    import asyncio

    c = _Bookkeeping(committed=100)
    c.deliver(150, 160)
    asyncio.run(c._add_gap(TPX, 100, 149))
    assert c.commit() == 160  # the gap alone works ...
    c = _Bookkeeping(committed=100)
    c.deliver(150, 160)
    asyncio.run(c._add_gap(TPX, 100, 149))
    c.deliver(100, 150)  # ... but the refetched hole is acked on top of it
    first = c.commit()
    assert first < 110, first
