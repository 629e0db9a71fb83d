"""Offset continuity (streams.runtime.continuity): holes are found, stale redeliveries skipped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.runtime.continuity import Hole, OffsetContinuity, order_batch

TP = ("clicks", 3)


def test_contiguous_batches_have_no_holes() -> None:
    c = OffsetContinuity()
    c.start(TP, 10)
    assert c.plan(TP, [10, 11, 12]) == ([], [0, 1, 2])
    assert c.plan(TP, [13, 14]) == ([], [0, 1])
    assert c.position(TP) == 15


def test_the_faust_rebalance_skip_is_a_hole() -> None:
    """Committed offset 100; the transport hands over 101 first (then drops 100): 100 is a hole."""
    c = OffsetContinuity()
    c.start(TP, 100)
    holes, keep = c.plan(TP, [101, 102])
    assert holes == [Hole("clicks", 3, 100, 101)]
    assert keep == [0, 1]
    assert c.position(TP) == 103


def test_stale_redeliveries_are_skipped_and_inner_gaps_found() -> None:
    c = OffsetContinuity()
    c.start(TP, 50)
    holes, keep = c.plan(TP, [48, 49, 50, 53, 54])
    assert holes == [Hole("clicks", 3, 51, 53)]
    assert keep == [2, 3, 4]


def test_forget_requires_a_new_start() -> None:
    c = OffsetContinuity()
    c.start(TP, 5)
    c.forget([TP])
    assert not c.known(TP)
    with pytest.raises(KeyError):
        c.plan(TP, [5])


@given(st.integers(0, 1000), st.lists(st.lists(st.integers(0, 1200), max_size=20), max_size=10))
def test_every_offset_from_the_start_is_decided_once(start: int, batches: list[list[int]]) -> None:
    """Whatever order the transport delivers in: kept records plus holes cover every offset
    from the start up to the highest seen, exactly once."""
    c = OffsetContinuity()
    c.start(TP, start)
    decided: list[int] = []
    for batch in batches:
        offs = sorted(batch)
        holes, keep = c.plan(TP, offs)
        for h in holes:
            decided.extend(range(h.start, h.end))
        decided.extend(offs[i] for i in keep)
    top = max([o for b in batches for o in b if o >= start], default=None)
    if top is None:
        assert decided == []
    else:
        assert sorted(decided) == list(range(start, top + 1))


def _recs(topic: str, p: int, offs: list[int]) -> list[tuple]:
    return [(topic, p, o, b"k", b"v") for o in offs]


def test_a_partition_with_only_stale_redeliveries_is_left_out() -> None:
    """After a rebalance a batch can hold nothing but stale redeliveries of one partition
    (F2, faust: both workers crashed with IndexError on the empty list handed on)."""
    c = OffsetContinuity()
    c.start(("clicks", 0), 10)
    c.start(("clicks", 1), 5)
    by_tp = {("clicks", 0): _recs("clicks", 0, [7, 8, 9]), ("clicks", 1): _recs("clicks", 1, [5, 6])}
    by_p, holes = order_batch(c, by_tp, lambda h: [])
    assert by_p == {1: _recs("clicks", 1, [5, 6])}
    assert holes == []


def test_holes_are_read_and_decided_in_offset_order() -> None:
    c = OffsetContinuity()
    c.start(("clicks", 2), 100)
    c.start(("buys", 2), 0)
    by_tp = {("clicks", 2): _recs("clicks", 2, [101, 102]), ("buys", 2): _recs("buys", 2, [0])}
    peeked = c.peek(("clicks", 2), [101, 102])
    by_p, holes = order_batch(c, by_tp, lambda h: _recs(h.topic, h.partition, list(range(h.start, h.end))))
    assert holes == peeked == [Hole("clicks", 2, 100, 101)]
    assert [r[2] for r in by_p[2]] == [100, 101, 102, 0]
    assert c.position(("clicks", 2)) == 103
