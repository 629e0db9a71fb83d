"""Data keys of the owned partitions, restored from ``personalization.keys`` (CONTRACT §2, §10).

The keys topic is co-partitioned with ``consent`` (same count, murmur2 on the
subject id): the worker that owns consent partition p owns the keys of
partition p's subjects, and is the only writer of new keys for them. It keeps
one :class:`~streams.crypto.KeyRing` per owned partition, rebuilt on every
assignment by reading the keys partition from its start to its end,
``read_committed``: a key created in a transaction that was aborted (a lost
partition, a crash) is not there, so it is never reused; its outputs were
aborted with it. Tombstones (erasures) remove the subject's keys.

After that, the ring is the truth: new keys are created by the engine
(``streams.engine.sealing``) and produced with the outputs that use them; an
erasure forgets them in the ring and produces a tombstone (``Filter.apply_consent``).

Contract: ``restore`` blocks until every asked partition was read to its end,
bounded by ``RESTORE_TIMEOUT_S`` (then :class:`KeysRestoreTimeout`); its log
lines carry counts and partitions only, never a subject or a key (G6).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from streams.crypto import KeyRecordError, KeyRing
from streams.errors import PFilterError
from streams.logs import kv

log = logging.getLogger("streams.runtime.keys")

#: A keys partition holds one small record (~250 B) per subject and erasure; a million
#: subjects read in seconds. Longer than this means the broker is not answering, or an
#: open transaction of another producer holds the last stable offset back (bounded by
#: its transaction timeout, 60 s): fail and be restarted rather than decide without keys.
RESTORE_TIMEOUT_S = 120.0
_CHUNK = 10_000


class KeysRestoreTimeout(PFilterError, TimeoutError):
    """The keys topic could not be read to its end in time."""


class PartitionKeys:
    """One KeyRing per owned partition (``rings``), restored from the keys topic."""

    def __init__(self, consumer_factory: Callable[[], Any], topic: str, new_ring: Callable[[], KeyRing]) -> None:
        """``consumer_factory()``: a read_committed consumer with ``enable.partition.eof``
        (assigned here, never subscribes, never commits). ``new_ring()``: an empty ring
        under the worker's KEK."""
        self._consumer_factory = consumer_factory
        self.topic = topic
        self._new_ring = new_ring
        self.rings: dict[int, KeyRing] = {}
        #: partition -> token of the assignment its ring was restored for (see ``sync``)
        self._token: dict[int, Any] = {}

    def sync(self, owned: dict[int, Any]) -> int:
        """Rings for exactly the ``owned`` partitions (partition -> assignment token, e.g.
        the consent state object): a partition whose token changed (assigned again, maybe
        after a lost assignment whose transaction was aborted) is restored again."""
        for p in [p for p in self.rings if p not in owned or self._token.get(p) is not owned[p]]:
            self.rings.pop(p, None)
            self._token.pop(p, None)
        todo = [p for p in owned if p not in self.rings]
        n = self.restore(todo) if todo else 0
        for p in todo:
            self._token[p] = owned[p]
        return n

    def restore(self, partitions: Iterable[int]) -> int:
        """Fresh rings for ``partitions``, read from the keys topic; returns records read."""
        parts = sorted(set(partitions))
        rings = {p: self._new_ring() for p in parts}
        c = self._consumer_factory()
        n = bad = 0
        t0 = time.monotonic()
        try:
            c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
            pending = set(parts)
            while pending:
                if time.monotonic() - t0 > RESTORE_TIMEOUT_S:
                    raise KeysRestoreTimeout(
                        f"reading {self.topic} to its end took over {RESTORE_TIMEOUT_S:.0f} s "
                        f"({len(pending)} partitions left)")
                for m in c.consume(_CHUNK, timeout=0.2):
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard(m.partition())
                            continue
                        raise PFilterError(f"reading {self.topic}[{m.partition()}] failed: {err.name()}")
                    key = m.key()
                    if key is None:
                        bad += 1
                        continue
                    try:
                        rings[m.partition()].add_record(key.decode("utf-8"), m.value())
                    except (UnicodeDecodeError, KeyRecordError):
                        bad += 1  # not ours to judge here: `pfilter verify` reports it
                    n += 1
        finally:
            c.close()
        self.rings.update(rings)
        log.info("data keys restored %s", kv(partitions=len(parts), records=n, skipped=bad,
                                              subjects=sum(len(r) for r in rings.values()),
                                              seconds=round(time.monotonic() - t0, 2)))
        return n
