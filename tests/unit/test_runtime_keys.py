"""The runtimes' data keys per partition (streams/runtime/keys.py): restored from the keys
topic, tombstones applied, restored again when a partition is assigned again."""

from __future__ import annotations

from confluent_kafka import KafkaError

from streams.crypto import Kek, KeyRing
from streams.runtime.keys import PartitionKeys

KEK = Kek(bytes(range(32)))


class _Msg:
    def __init__(self, p: int, key: bytes | None, value: bytes | None, eof: bool = False) -> None:
        self._p, self._k, self._v, self._eof = p, key, value, eof

    def error(self):  # noqa: ANN201
        return KafkaError(KafkaError._PARTITION_EOF) if self._eof else None

    def partition(self) -> int:
        return self._p

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v


class _Consumer:
    """Serves the log of each assigned partition, then its EOF."""

    def __init__(self, log: dict[int, list[tuple]], reads: list) -> None:
        self.log, self.reads, self.batches = log, reads, []

    def assign(self, tps) -> None:  # noqa: ANN001
        parts = [tp.partition for tp in tps]
        self.reads.append(parts)
        self.batches = [[_Msg(p, k, v) for k, v in self.log.get(p, [])] + [_Msg(p, None, None, eof=True)]
                        for p in parts]

    def consume(self, n: int, timeout: float):  # noqa: ANN201
        return self.batches.pop(0) if self.batches else []

    def close(self) -> None:
        pass


def _key(subject: str, ring: KeyRing) -> bytes:
    rec = ring.ensure(subject, 1)
    return rec.to_json()


def test_restore_applies_records_and_tombstones_and_reassignment_restores_again():
    src = KeyRing(KEK)
    log = {0: [(b"a", _key("a", src)), (b"b", _key("b", src)), (b"a", None)], 1: [(b"c", _key("c", src))]}
    reads: list = []
    keys = PartitionKeys(lambda: _Consumer(log, reads), "keys", lambda: KeyRing(KEK))
    t0, t1 = {}, {}
    keys.sync({0: t0, 1: t1})
    assert reads == [[0, 1]]
    assert "a" not in keys.rings[0] and "b" in keys.rings[0] and "c" in keys.rings[1]
    assert keys.rings[0].aead("b")[0] == src.current_version("b")  # unwraps under the KEK

    keys.sync({0: t0, 1: t1})
    assert reads == [[0, 1]]  # same assignment: nothing read again
    keys.rings[0].ensure("new-in-aborted-txn", 2)  # a key whose transaction is then aborted
    keys.sync({0: {}, 1: t1})  # partition 0 assigned again (a new consent state object)
    assert reads == [[0, 1], [0]]
    assert "new-in-aborted-txn" not in keys.rings[0] and "b" in keys.rings[0]
    keys.sync({1: t1})
    assert set(keys.rings) == {1}
