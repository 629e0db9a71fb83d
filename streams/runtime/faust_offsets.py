"""Telling faust that offsets the runtime decided itself are done, so its commits pass them.

The continuity module (``streams.runtime.continuity``) reads a hole that faust left
undelivered straight from the broker and decides it. faust must then treat those
offsets as acknowledged, or its commit for the partition stops below the hole for good
(``min(acked) - committed > 1`` never clears).

Why not faust's own ``_add_gap``: a gap is turned into acked offsets only when a commit
computes the new offset, and those offsets do not enter the acked index. When faust
later redelivers the same records (refetched after its seek; the runtime drops them as
stale, and ``take_events`` acks them), they are appended a second time. The sorted acked
list then holds every offset twice, and faust's run of consecutive offsets stops at the
first duplicate: each commit advanced two offsets, one commit interval (2.8 s) at a
time. Seen in the two-worker rebalance test: 1,700 records of three clickstream
partitions still uncommitted three minutes after all of them were decided.

Marking the offsets acked exactly as ``Consumer.ack`` does (the index first, under
faust's ``ack_lock``) makes a later redelivery a no-op, as for any acked record.
"""

from __future__ import annotations

from typing import Any

from faust.types import TP
from faust.types.tuples import ack_lock


def mark_decided(consumer: Any, topic: str, partition: int, start: int, end: int) -> int:
    """Offsets ``start <= o < end`` of one partition, decided by the runtime, acked in
    faust's bookkeeping (those below its committed offset, or acked already, are left
    alone). Returns how many were added."""
    tp = TP(topic, partition)
    added = 0
    with ack_lock:
        committed = consumer._committed_offset[tp]
        acked_index = consumer._acked_index[tp]
        acked = consumer._acked[tp]
        for off in range(start, end):
            if (committed is None or off >= committed) and off not in acked_index:
                acked_index.add(off)
                acked.append(off)
                added += 1
        consumer._n_acked += added
    return added
