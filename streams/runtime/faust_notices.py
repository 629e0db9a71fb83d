"""Consent notices for the faust runtime (CONTRACT §9): at least once.

The faust runtime has no transaction to put the notice clock in, so the notices topic
itself is the record: the notices of consent partition p go to partition p of the
notices topic (same partition count, murmur2 keys), and the greatest ``sent_at`` found
there is the partition's clock (every notice due up to it went out: see
``streams.engine.notices``). A new owner reads it when it first ticks the partition
(``last_sent_at``), then schedules the partition's state from its table.

Guarantee: at least once. A notice acknowledged by the broker is never sent again by
a later owner of its partition (its ``sent_at`` is in the topic), but a consent record
re-delivered after a crash whose state change the table had not recorded can send a
late grant's notice a second time, and two owners whose wall clocks disagree can each
send the notices between their clocks during a rebalance.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streams.config import Settings
from streams.engine.codecs import DecodeError, get_codec
from streams.engine.consent import state_from_bytes
from streams.kafka.clients import plain_consumer_config
from streams.kafka.partitioner import partition_for

#: Bound of reading the tail of one notices partition (a healthy broker: milliseconds).
TAIL_TIMEOUT_S = 30.0


def last_sent_at(settings: Settings, partition: int) -> int | None:
    """Greatest ``sent_at`` among the last notices of the notices topic's ``partition``
    (read_committed); None when it holds none."""
    codec = get_codec("consent_notice", settings.format_output, registry_url=settings.schema_registry_url)
    c = Consumer(plain_consumer_config(settings, f"{settings.group_id}.notices-tail",
                                       **{"isolation.level": "read_committed", "enable.partition.eof": True}))
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(settings.topic_notices, partition), timeout=10)
        end, step = hi, 64
        deadline = time.monotonic() + TAIL_TIMEOUT_S
        while end > lo:
            start = max(lo, end - step)
            c.assign([TopicPartition(settings.topic_notices, partition, start)])
            best = None
            while time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is None:
                    continue
                if m.error() is not None:
                    break  # partition EOF (or an error: take what was read)
                if m.offset() >= end:
                    break
                try:
                    best = max(best or 0, int(codec.decode(m.value())["sent_at"]))
                except (DecodeError, KeyError, TypeError, ValueError):
                    pass
                if m.offset() >= end - 1:
                    break
            if best is not None:
                return best
            if time.monotonic() >= deadline:
                raise TimeoutError("could not read the notices topic's tail")
            end, step = start, step * 4
        return None
    finally:
        c.close()


def partition_states(table: Any, partition: int, partitions: int) -> Iterator[tuple[str, tuple]]:
    """(subject, state) of one partition of the consent Table, read from its store."""
    store = table.data
    db_for = getattr(store, "_db_for_partition", None)
    if db_for is not None:  # RocksDB: one database per partition
        items = db_for(partition).items()
        mine = None
    else:  # memory store: one dict for all partitions
        items = list(store.data.items())
        mine = partitions
    for key, raw in items:
        if raw is None or (mine is not None and partition_for(key, mine) != partition):
            continue
        if key.startswith(b"__faust"):
            continue  # faust's own bookkeeping (the changelog offset it recovers from)
        try:
            state = state_from_bytes(raw)
        except ValueError:
            continue  # not a consent state: nothing to notify
        yield key.decode("utf-8", "surrogatepass"), state
