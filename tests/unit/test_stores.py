"""The faust runtime's store views, over a stand-in for faust's memory store (the RocksDB
path is exercised end to end by the faust integration tests)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from streams.engine.consent import Vocabulary, blocked_state, state_to_bytes
from streams.runtime.stores import Overlay, PendingWrites, TablePartitionView, apply_to_store

V = Vocabulary(("personalization",), ("browsing",))
A = blocked_state(1, 1, V)
B = blocked_state(2, 2, V)


def _table() -> SimpleNamespace:
    store = SimpleNamespace(data={b"s-1": state_to_bytes(A)}, _key_partition={b"s-1": 0})
    return SimpleNamespace(data=store)


def test_table_view_reads_and_refuses_writes() -> None:
    view = TablePartitionView(_table(), 0)
    assert view.get("s-1") == A and view["s-1"] == A and "s-1" in view
    assert view.get("s-2") is None and "s-2" not in view
    with pytest.raises(KeyError):
        view["s-2"]
    with pytest.raises(TypeError):
        view["s-1"] = B  # per-key writes would bypass the bulk write-through


def test_pending_writes_read_through_and_buffer_until_applied() -> None:
    table = _table()
    pending = PendingWrites(TablePartitionView(table, 3))
    pending["s-2"] = B
    assert pending.get("s-2") == B and pending.get("s-1") == A
    del pending["s-1"]
    assert pending.get("s-1") is None and "s-1" not in pending
    with pytest.raises(KeyError):
        del pending["s-9"]
    assert table.data.data == {b"s-1": state_to_bytes(A)}  # nothing written yet
    apply_to_store(table, 3, pending.changes, changelog_offset=41)
    assert table.data.data == {b"s-2": state_to_bytes(B)}
    assert table.data._key_partition == {b"s-2": 3}


def test_overlay_prefers_its_own_states_and_erasures() -> None:
    base = TablePartitionView(_table(), 0)
    over: dict = {}
    view = Overlay(over, base)
    assert view.get("s-1") == A
    view["s-1"] = B
    assert view.get("s-1") == B and base.get("s-1") == A
    del view["s-1"]
    assert view.get("s-1") is None and "s-1" not in view and base.get("s-1") == A
