"""Consent-state stores the engine reads through: views over a faust Table,
a write buffer for the consent agent, and a read-ahead overlay for the
revocation barrier.

The engine wants a ``MutableMapping[str, ConsentState]``. faust keeps one
RocksDB database per partition and picks it from the *current event*, which
in a batch that spans partitions is the wrong one; so reads go straight to the
partition's database.

Writes: faust's ``table[key] = value`` costs a FutureMessage, an aiokafka send
and a callback per key (measured: the consent agent applied ~700 records/s
that way while events were flowing). The consent agent instead buffers a
batch's changes per partition (:class:`PendingWrites`) and
the agent makes them durable the way faust's Table would, in bulk: the
changelog records (same topic, key, value and partition as faust writes)
through the worker's confluent-kafka producer, acknowledged, then
:func:`apply_to_store` writes the store (one RocksDB write batch, or the
memory store's dict) and the changelog offset faust recovers from. So faust's recovery, standbys and rebalances see
exactly the changelog and store they expect.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from faust.types import TP

from streams.engine.consent import state_from_bytes, state_to_bytes

#: Marks a subject erased in an overlay, so the table's older state is not
#: consulted underneath it.
DELETED: Any = object()


class _StateMapping(MutableMapping):
    """What the engine needs of a store: ``get``, and writes where a subclass allows them.
    Lookups by subject only: iterating or sizing a partition of the table is never needed."""

    __slots__ = ()

    def get(self, subject: str, default: Any = None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, subject: str) -> Any:
        v = self.get(subject)
        if v is None:
            raise KeyError(subject)
        return v

    def __contains__(self, subject: object) -> bool:
        return isinstance(subject, str) and self.get(subject) is not None

    def __setitem__(self, subject: str, state: Any) -> None:
        raise TypeError(f"{type(self).__name__} is read-only")

    def __delitem__(self, subject: str) -> None:
        raise TypeError(f"{type(self).__name__} is read-only")

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError(f"iterating a {type(self).__name__} is not supported")

    def __len__(self) -> int:
        raise NotImplementedError(f"len of a {type(self).__name__} is not supported")


class TablePartitionView(_StateMapping):
    """The consent Table restricted to one partition (= one consent partition), read-only:
    the consent agent writes through ``PendingWrites`` and ``apply_to_store``."""

    __slots__ = ("_raw_get",)

    def __init__(self, table: Any, partition: int) -> None:
        store = table.data
        db_for = getattr(store, "_db_for_partition", None)
        if db_for is not None:  # RocksDB: one database per partition
            self._raw_get = db_for(partition).get
        else:  # memory store: one dict for all partitions
            self._raw_get = store.data.get

    def get(self, subject: str, default: Any = None) -> Any:
        raw = self._raw_get(subject.encode())
        return default if raw is None else state_from_bytes(raw)


class Overlay(_StateMapping):
    """Consent read ahead of the consent agent, layered over the table view.

    Writes (from replaying consent records the agent has not applied yet) land
    here only; deletions leave a DELETED marker. Reads prefer the overlay.
    """

    __slots__ = ("over", "base")

    def __init__(self, over: dict[str, Any], base: _StateMapping) -> None:
        self.over = over
        self.base = base

    def get(self, subject: str, default: Any = None) -> Any:
        v = self.over.get(subject)
        if v is None:
            return self.base.get(subject, default)
        return default if v is DELETED else v

    def __setitem__(self, subject: str, state: Any) -> None:
        self.over[subject] = state

    def __delitem__(self, subject: str) -> None:
        self.over[subject] = DELETED


class PendingWrites(_StateMapping):
    """A batch's consent changes for one partition, read through to the table view.

    ``changes``: subject key (bytes) -> encoded state, or None for a deletion."""

    __slots__ = ("base", "changes")

    def __init__(self, base: TablePartitionView) -> None:
        self.base = base
        self.changes: dict[bytes, bytes | None] = {}

    def get(self, subject: str, default: Any = None) -> Any:
        key = subject.encode()
        if key in self.changes:
            raw = self.changes[key]
            return default if raw is None else state_from_bytes(raw)
        return self.base.get(subject, default)

    def __setitem__(self, subject: str, state: Any) -> None:
        self.changes[subject.encode()] = state_to_bytes(state)

    def __delitem__(self, subject: str) -> None:
        if subject not in self:
            raise KeyError(subject)
        self.changes[subject.encode()] = None


def changelog_topic(table: Any) -> str:
    return table.changelog_topic.get_topic_name()


def apply_to_store(table: Any, partition: int, changes: dict[bytes, bytes | None], changelog_offset: int) -> None:
    """Write one partition's changes to the table's store, after their changelog records
    were acknowledged up to ``changelog_offset`` (the offset faust recovers from)."""
    store = table.data
    db_for = getattr(store, "_db_for_partition", None)
    if db_for is not None:  # RocksDB: one write batch, the key index faust keeps, the offset
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)  # as faust opens its databases
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        db_for(partition).write(batch)
        index = store._key_index
        for key in changes:
            index[key] = partition
        store.set_persisted_offset(TP(changelog_topic(table), partition), changelog_offset)
    else:  # memory store: one dict, and which partition each key belongs to
        data, where = store.data, store._key_partition
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
                where.pop(key, None)
            else:
                data[key] = value
                where[key] = partition
