"""Consent-state stores the engine reads through: views over a faust Table and
a read-ahead overlay for the revocation barrier.

The engine wants a ``MutableMapping[str, ConsentState]``. faust keeps one
RocksDB database per partition and picks it from the *current event*, which
in a batch that spans partitions is the wrong one; so reads go straight to the
partition's database, and writes go through the Table (which also writes the
changelog) while the consent agent handles exactly the event that caused
them.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from streams.engine.consent import state_from_bytes, state_to_bytes

#: Marks a subject erased in an overlay, so the table's older state is not
#: consulted underneath it.
DELETED: Any = object()


class TablePartitionView(MutableMapping):
    """The consent Table restricted to one partition (= one consent partition)."""

    __slots__ = ("_table", "_partition", "_raw_get")

    def __init__(self, table: Any, partition: int) -> None:
        self._table = table
        self._partition = partition
        store = table.data
        db_for = getattr(store, "_db_for_partition", None)
        if db_for is not None:  # RocksDB: one database per partition
            self._raw_get = db_for(partition).get
        else:  # memory store: one dict for all partitions
            self._raw_get = store.data.get

    def get(self, subject: str, default: Any = None) -> Any:
        raw = self._raw_get(subject.encode())
        return default if raw is None else state_from_bytes(raw)

    def __getitem__(self, subject: str) -> Any:
        v = self.get(subject)
        if v is None:
            raise KeyError(subject)
        return v

    def __contains__(self, subject: object) -> bool:
        return isinstance(subject, str) and self._raw_get(subject.encode()) is not None

    def __setitem__(self, subject: str, state: Any) -> None:
        # through the Table: it writes the store and the changelog partition of
        # the current (consent) event, which is this partition.
        self._table[subject.encode()] = state_to_bytes(state)

    def __delitem__(self, subject: str) -> None:
        key = subject.encode()
        if self._raw_get(key) is None:
            raise KeyError(subject)
        del self._table[key]

    def __iter__(self) -> Iterator[str]:  # not used on the hot path
        raise NotImplementedError("iterating a partition view is not supported")

    def __len__(self) -> int:
        raise NotImplementedError("len of a partition view is not supported")


class Overlay(MutableMapping):
    """Consent read ahead of the consent agent, layered over the table view.

    Writes (from replaying consent records the agent has not applied yet) land
    here only; deletions leave a DELETED marker. Reads prefer the overlay.
    """

    __slots__ = ("over", "base")

    def __init__(self, over: dict[str, Any], base: MutableMapping) -> None:
        self.over = over
        self.base = base

    def get(self, subject: str, default: Any = None) -> Any:
        v = self.over.get(subject)
        if v is None:
            return self.base.get(subject, default)
        return default if v is DELETED else v

    def __getitem__(self, subject: str) -> Any:
        v = self.get(subject)
        if v is None:
            raise KeyError(subject)
        return v

    def __contains__(self, subject: object) -> bool:
        return self.get(subject) is not None  # type: ignore[arg-type]

    def __setitem__(self, subject: str, state: Any) -> None:
        self.over[subject] = state

    def __delitem__(self, subject: str) -> None:
        self.over[subject] = DELETED

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError
