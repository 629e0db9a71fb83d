"""Read whole topics from the beginning up to their current end.

`verify`, `report` and the tests need "everything that is there now": the end
is fixed when the replay starts (high watermarks, or the last stable offsets
for read_committed), so a replay of a live topic terminates.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.config import Settings
from streams.kafka.clients import plain_consumer_config

#: Records fetched per consume() call: large batches keep the Python overhead
#: per record low when replaying millions of decisions.
_BATCH = 5000


def replay(
    source: Settings | str,
    topics: list[str],
    *,
    read_committed: bool = False,
    timeout_s: float = 300.0,
) -> Iterator[tuple[str, int, int, bytes | None, bytes | None, list | None, int]]:
    """Yield (topic, partition, offset, key, value, headers, timestamp_ms) for every record.

    ``source``: the Settings (brokers and security settings), or a bare
    bootstrap string for a PLAINTEXT broker (the tests' local one).
    Missing topics yield nothing. Raises TimeoutError if the end is not reached.
    """
    settings = source if isinstance(source, Settings) else Settings(kafka_bootstrap_servers=source)
    c = Consumer(plain_consumer_config(
        settings, f"pfilter-replay-{uuid.uuid4().hex[:8]}",
        **{"isolation.level": "read_committed" if read_committed else "read_uncommitted",
           "enable.partition.eof": True},
    ))
    try:
        md = c.list_topics(timeout=30)
        ends: dict[tuple[str, int], int] = {}
        assign = []
        for t in topics:
            if t not in md.topics:
                continue
            for p in md.topics[t].partitions:
                lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=30, cached=False)
                if hi > lo:
                    ends[(t, p)] = hi
                    assign.append(TopicPartition(t, p, OFFSET_BEGINNING))
        if not assign:
            return
        c.assign(assign)
        pending = set(ends)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"replay did not reach the end of {len(pending)} partitions")
            for m in c.consume(_BATCH, timeout=0.5):
                err = m.error()
                tp = (m.topic(), m.partition())
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(tp)
                        continue
                    raise RuntimeError(f"replay of {tp[0]}[{tp[1]}] failed: {err.name()}")
                off = m.offset()
                if tp in pending and off >= ends[tp] - 1:
                    pending.discard(tp)
                if off < ends[tp]:
                    yield (m.topic(), m.partition(), off, m.key(), m.value(), m.headers(), m.timestamp()[1])
    finally:
        c.close()
