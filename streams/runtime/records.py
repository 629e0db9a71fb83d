"""From a transport's message to the engine's ``InputRecord``, and batches grouped by partition.

Both runtimes call these (quixstreams keeps the same glue in one processing
context): the engine decides ``(topic, partition, offset, key, value, headers,
timestamp_ms)`` tuples and knows nothing of confluent-kafka or faust. The
consent join is per partition (a subject's consent and events share a
partition number), so every batch is handed to the engine grouped by partition.

Contract: pure functions, no I/O, never block. An error message of the client
(other than end-of-partition, which only says "caught up") raises
``KafkaException``: the runtimes end on it, as before this module existed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException

#: (topic, partition, offset, key, value, headers, timestamp_ms): streams.engine.batch.InputRecord
InputRecord = tuple

def from_message(m: Any) -> InputRecord:
    """A confluent-kafka ``Message`` as a complete InputRecord (consent records: the
    engine may read their headers and timestamp)."""
    return (m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.headers(), m.timestamp()[1])


def from_faust(event: Any) -> InputRecord:
    """A faust event (its ``message``) as a complete InputRecord; faust gives the
    timestamp in seconds, the engine takes milliseconds."""
    m = event.message
    return (m.topic, m.partition, m.offset, m.key, m.value, m.headers, int(m.timestamp * 1000))


def is_partition_eof(m: Any) -> bool:
    """True for the client's end-of-partition notice; raises on any other error message."""
    err = m.error()
    if err is None:
        return False
    if err.code() == KafkaError._PARTITION_EOF:
        return True
    raise KafkaException(err)


def group_by_topic_partition(records: Iterable[InputRecord]) -> dict[tuple[str, int], list[InputRecord]]:
    """Records per (topic, partition), each list in the order given."""
    out: dict[tuple[str, int], list[InputRecord]] = {}
    for r in records:
        out.setdefault((r[0], r[1]), []).append(r)
    return out


@dataclass(slots=True)
class Positions:
    """What a batch of input records moves: the next offset to read per (topic, partition)
    (what a commit after it makes durable) and the records read per topic (metrics)."""

    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def positions(by_partition: dict[int, list[InputRecord]]) -> Positions:
    """The Positions of records already grouped by partition (each list in offset order)."""
    pos = Positions()
    nxt, counts = pos.next_offsets, pos.counts
    for records in by_partition.values():
        for r in records:
            counts[r[0]] = counts.get(r[0], 0) + 1
            nxt[(r[0], r[1])] = r[2] + 1
    return pos


def events_from_messages(msgs: Iterable[Any]) -> tuple[dict[int, list[InputRecord]], Positions]:
    """A consumed batch of event messages: records grouped by partition, and their Positions.

    One pass (this is the hot path of the fast runtime). Headers and the record
    timestamp play no part in the decision of an event, so they are left out
    (``None``, ``0``): taking them from the client costs per event."""
    by_p: dict[int, list[InputRecord]] = {}
    pos = Positions()
    nxt, counts = pos.next_offsets, pos.counts
    for m in msgs:
        if m.error() is not None and is_partition_eof(m):
            continue
        t, p, o = m.topic(), m.partition(), m.offset()
        recs = by_p.get(p)
        if recs is None:
            recs = by_p[p] = []
        recs.append((t, p, o, m.key(), m.value(), None, 0))
        nxt[(t, p)] = o + 1
        counts[t] = counts.get(t, 0) + 1
    return by_p, pos
