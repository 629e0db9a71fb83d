"""Consent notices for the faust runtime (CONTRACT §9): at least once.

The faust runtime has no transaction to put the notice clock in, so the notices topic
itself is the record: the notices of consent partition p go to partition p of the
notices topic (same partition count, murmur2 keys), and the greatest *due time* of the
notices found at its end is the partition's clock (``last_clock``; every notice due up
to it went out: see ``streams.engine.notices``). A new owner reads it when it first
ticks the partition, then schedules the partition's state from its table.

Why the due time and not ``sent_at``: a tick that stops at its limit
(``runtime.notices.NOTICE_TICK_MAX``) has sent everything due up to the due time of
its last notice, not up to the time it ran; and a late grant's notice sent between two
ticks carries a ``sent_at`` past the last tick. Either way ``sent_at`` would be a clock
too far ahead, and the notices between would never go out. The due time is never
ahead of the clock that sent the notice, so at worst (the end of the topic holding only
late grants' notices) a new owner resends some: at least once, as below. Each due time
is capped at its notice's ``sent_at``, so a policy whose ``notice_before`` changed
cannot make it later than when the notice went out.

Guarantee: at least once. A notice acknowledged by the broker is never sent again by
a later owner of its partition while it is among the topic's last notices (its due
time is then at or below the clock read back), but a consent record
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
from streams.engine.notices import RECONFIRM
from streams.kafka.clients import plain_consumer_config
from streams.kafka.partitioner import partition_for

#: Bound of reading the tail of one notices partition (a healthy broker: milliseconds).
TAIL_TIMEOUT_S = 30.0


def last_clock(settings: Settings, partition: int, notice_before_ms: int) -> int | None:
    """Greatest due time (``expires_at - notice_before_ms`` of a reconfirm notice,
    ``expires_at`` of an expired one; at most its ``sent_at``) among the last notices of
    the notices topic's ``partition`` (read_committed); None when it holds none."""
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
                    due = notice_due(codec.decode(m.value()), notice_before_ms)
                except (DecodeError, KeyError, TypeError, ValueError):
                    due = None
                if due is not None:
                    best = due if best is None else max(best, due)
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


def notice_due(notice: dict, notice_before_ms: int) -> int:
    """The time a sent notice was due at, at most its ``sent_at`` (see the module doc)."""
    ea, sent_at = int(notice["expires_at"]), int(notice["sent_at"])
    due = ea - notice_before_ms if notice["kind"] == RECONFIRM else ea
    return min(due, sent_at)


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
