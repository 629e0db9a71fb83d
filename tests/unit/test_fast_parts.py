"""The fast runtime's parts without a broker: the checkpoint (what a commit makes durable)
with a fake producer and consumer, the consent reader's files and commit bookkeeping,
the per-partition decider, and the message-to-InputRecord conversion both runtimes use."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams import metrics
from streams.errors import PFilterError
from streams.runtime import records
from streams.runtime.checkpoint import Checkpoint
from streams.runtime.consent_reader import ConsentFiles, ConsentReader
from streams.runtime.decider import PartitionDecider
from streams.runtime.sink import DeliveryError


# ------------------------------------------------------------------ fakes
class FakeProducer:
    """Records every call in order; ``fail`` deliveries report an error at flush."""

    def __init__(self, on_delivery: Any, *, unflushed: int = 0, fail: int = 0) -> None:
        self.on_delivery = on_delivery
        self.calls: list[tuple] = []
        self.produced: list[str] = []
        self.unflushed = unflushed
        self.fail = fail

    def produce(self, topic: str, value: Any = None, key: Any = None, headers: Any = None, **_: Any) -> None:
        self.produced.append(topic)
        self.calls.append(("produce", topic))

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, _timeout: float = 0) -> int:
        self.calls.append(("flush",))
        for _ in range(self.fail):
            self.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)
        self.fail = 0
        return self.unflushed

    def __len__(self) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:  # transactions: recorded
        if name in ("init_transactions", "begin_transaction", "commit_transaction", "abort_transaction",
                    "send_offsets_to_transaction"):
            return lambda *a: self.calls.append((name, *a))
        raise AttributeError(name)


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[list] = []

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def commit(self, offsets: list, asynchronous: bool) -> None:
        assert asynchronous is False
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])


def _checkpoint(eos: bool, **producer_kw: Any) -> tuple[Checkpoint, FakeProducer, FakeConsumer]:
    consumer = FakeConsumer()
    made: list[FakeProducer] = []
    ckpt = Checkpoint(lambda cb: made.append(FakeProducer(cb, **producer_kw)) or made[0], consumer,
                      eos=eos, deliveries=frozenset({"out.offers"}))
    return ckpt, made[0], consumer


DECISION = ("decisions", b"k", b"d", None)
OUTPUT = ("out.offers", b"k", b"o", None)


def _read(topic: str, p: int, nxt: int, n: int = 1) -> records.Positions:
    return records.Positions({(topic, p): nxt}, {topic: n})


# ------------------------------------------------------------------ checkpoint
def test_at_least_once_writes_decisions_then_outputs_then_offsets() -> None:
    ckpt, prod, cons = _checkpoint(eos=False)
    ckpt.consumed(_read("clicks", 0, 11), 0.0)
    ckpt.produce([OUTPUT, DECISION])
    assert prod.produced == ["decisions"]  # the engine output waits for the commit point
    ckpt.commit()
    assert prod.calls == [("produce", "decisions"), ("flush",), ("produce", "out.offers"), ("flush",)]
    assert cons.commits == [[("clicks", 0, 11)]]
    ckpt.commit()  # nothing new: no flush, no offset commit
    assert len(cons.commits) == 1 and prod.calls[-1] == ("flush",) and len(prod.calls) == 4


def test_exactly_once_outputs_and_offsets_in_one_transaction() -> None:
    ckpt, prod, cons = _checkpoint(eos=True)
    ckpt.start()
    ckpt.consumed(_read("clicks", 2, 5), 0.0)
    ckpt.produce([DECISION, OUTPUT])
    assert ckpt.in_txn
    ckpt.commit([_tp("consent", 2, 9)])
    names = [c[0] for c in prod.calls]
    assert names == ["init_transactions", "begin_transaction", "produce", "produce",
                     "send_offsets_to_transaction", "commit_transaction"]
    sent = prod.calls[4]
    assert [(tp.topic, tp.partition, tp.offset) for tp in sent[1]] == [("clicks", 2, 5), ("consent", 2, 9)]
    assert sent[2] == "group-metadata"
    assert not ckpt.in_txn and cons.commits == []  # offsets go through the transaction only
    assert ckpt.event_next == {}


def test_exactly_once_consent_offsets_alone_open_a_transaction() -> None:
    ckpt, prod, _cons = _checkpoint(eos=True)
    ckpt.commit([_tp("consent", 0, 3)])
    assert [c[0] for c in prod.calls] == ["begin_transaction", "send_offsets_to_transaction", "commit_transaction"]


def test_unacknowledged_outputs_raise_delivery_error_before_any_offset_commit() -> None:
    ckpt, _prod, cons = _checkpoint(eos=False, unflushed=1)
    ckpt.consumed(_read("clicks", 0, 4), 0.0)
    ckpt.produce([DECISION])
    with pytest.raises(DeliveryError):
        ckpt.commit()
    assert cons.commits == []
    assert issubclass(DeliveryError, PFilterError)


def test_failed_deliveries_raise_after_the_flush() -> None:
    ckpt, _prod, _cons = _checkpoint(eos=False, fail=2)
    ckpt.produce([DECISION])
    with pytest.raises(DeliveryError, match="2 outputs failed delivery"):
        ckpt.commit()


def test_events_in_are_counted_when_committed_not_when_read() -> None:
    ckpt, _prod, _cons = _checkpoint(eos=False)
    counter = metrics.EVENTS_IN.labels("unit-topic-counted")
    before = counter._value.get()
    ckpt.consumed(_read("unit-topic-counted", 0, 8, n=3), 0.0)
    assert counter._value.get() == before
    ckpt.commit()
    assert counter._value.get() == before + 3


def test_lost_partitions_abort_the_transaction_and_drop_what_was_pending() -> None:
    ckpt, prod, cons = _checkpoint(eos=True)
    ckpt.consumed(_read("clicks", 1, 7), 0.0)
    ckpt.produce([DECISION])
    assert ckpt.abandon() is True
    assert prod.calls[-1][0] == "abort_transaction" and not ckpt.in_txn
    assert ckpt.abandon() is False  # nothing open any more
    ckpt.commit()  # nothing left to make durable
    assert [c[0] for c in prod.calls].count("commit_transaction") == 0 and cons.commits == []


def test_forget_drops_only_the_revoked_partitions_positions() -> None:
    ckpt, _prod, _cons = _checkpoint(eos=False)
    ckpt.consumed(records.Positions({("clicks", 0): 3, ("clicks", 1): 4, ("buys", 1): 2}, {}), 0.0)
    ckpt.forget({1})
    assert ckpt.event_next == {("clicks", 0): 3}


def _tp(topic: str, p: int, o: int) -> Any:
    from confluent_kafka import TopicPartition
    return TopicPartition(topic, p, o)


# ------------------------------------------------------------------ consent reader
class _Assigns:
    def __init__(self) -> None:
        self.assigned: list = []

    def assign(self, tps: list) -> None:
        self.assigned = [(tp.partition, tp.offset) for tp in tps]


def test_consent_files_round_trip_and_refuse_another_vocabulary(tmp_path: Path) -> None:
    files = ConsentFiles(tmp_path / "c", "fp1")
    files.write({3: {"s": (1, 2)}}, {3: 42})
    assert files.load(3) == ({"s": (1, 2)}, 42)
    assert ConsentFiles(tmp_path / "c", "fp2").load(3) == ({}, 0)
    files.path(4).write_bytes(b"\x00garbage")
    assert files.load(4) == ({}, 0)


def test_a_partition_whose_position_did_not_move_is_not_written_again(tmp_path: Path) -> None:
    files = ConsentFiles(tmp_path, "fp")
    files.write({0: {"a": (1,)}, 1: {"b": (2,)}}, {0: 10, 1: 50})
    before = {p: files.path(p).stat().st_mtime_ns for p in (0, 1)}
    files.path(0).write_bytes(b"marker")  # what is on disk now: the write below must not touch it
    files.write({0: {"a": (1,)}, 1: {"b": (3,)}}, {0: 10, 1: 51})
    assert files.path(0).read_bytes() == b"marker"
    assert files.load(1) == ({"b": (3,)}, 51) and files.path(1).stat().st_mtime_ns >= before[1]
    # a file read back counts as written at its offset
    again = ConsentFiles(tmp_path, "fp")
    assert again.load(1) == ({"b": (3,)}, 51)
    files.path(1).write_bytes(b"marker")
    again.write({1: {"b": (3,)}}, {1: 51})
    assert files.path(1).read_bytes() == b"marker"


def test_a_checkpoint_ahead_of_the_commit_is_not_used(tmp_path: Path) -> None:
    files = ConsentFiles(tmp_path, "fp")
    files.write({0: {"a": (1,)}, 1: {"b": (2,)}}, {0: 10, 1: 50})
    reader = ConsentReader(_Assigns(), None, "consent", SimpleNamespace(policy=None), files, 1.0)
    reader.assign({0: 20, 1: 30})  # partition 1's file is ahead of its commit (30 < 50)
    assert reader.states == {0: {"a": (1,)}, 1: {}}
    assert reader.pos == {0: 10, 1: 0} and reader.emit_from == {0: 20, 1: 30}
    assert reader.consumer.assigned[0] == (0, 10)
    assert not reader.ready


def test_consent_offsets_are_committed_once(tmp_path: Path) -> None:
    reader = ConsentReader(_Assigns(), None, "consent", SimpleNamespace(policy=None), ConsentFiles(tmp_path, "f"), 1.0)
    reader.assign({0: 0, 1: 5})
    reader.pos.update({0: 4, 1: 5})
    assert [(tp.partition, tp.offset) for tp in reader.uncommitted()] == [(0, 4)]
    reader.mark_committed()
    assert reader.uncommitted() == [] and reader.emit_from == {0: 4, 1: 5}
    reader.forget({0})
    assert set(reader.states) == {1} and reader.consumer.assigned == [(1, 5)]


# ------------------------------------------------------------------ decider
class _Filter:
    policy = "policy"

    def __init__(self) -> None:
        self.store: Any = None
        self.seen: list = []

    def decide(self, recs: list) -> str:
        self.seen.append(("decide", self.store, recs))
        return "decided"

    def apply_consent(self, recs: list, store: Any) -> str:
        self.seen.append(("apply", store, recs))
        return "applied"


def test_decider_uses_each_partitions_store() -> None:
    f, stores = _Filter(), {0: {"a": 1}, 1: {"b": 2}}
    d = PartitionDecider(f, stores)
    d.decide(1, ["r1"])
    d.apply_consent(0, ["c0"])
    stores[1] = {"new": 3}  # reassigned: looked up at the next call
    d.decide(1, ["r2"])
    assert f.seen == [("decide", {"b": 2}, ["r1"]), ("apply", {"a": 1}, ["c0"]), ("decide", {"new": 3}, ["r2"])]


# ------------------------------------------------------------------ records
class _Msg:
    def __init__(self, topic: str, p: int, o: int, err: Any = None) -> None:
        self._t, self._p, self._o, self._e = topic, p, o, err

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return b"k%d" % self._o

    def value(self) -> bytes:
        return b"v"

    def headers(self) -> list:
        return [("h", b"1")]

    def timestamp(self) -> tuple[int, int]:
        return (1, 1234)

    def error(self) -> Any:
        return self._e


def test_event_messages_grouped_by_partition_with_their_positions() -> None:
    eof = KafkaError(KafkaError._PARTITION_EOF)
    msgs = [_Msg("clicks", 0, 5), _Msg("buys", 1, 2), _Msg("clicks", 0, 6), _Msg("clicks", 1, 0, eof),
            _Msg("buys", 0, 9)]
    by_p, read = records.events_from_messages(msgs)
    assert by_p == {0: [("clicks", 0, 5, b"k5", b"v", None, 0), ("clicks", 0, 6, b"k6", b"v", None, 0),
                        ("buys", 0, 9, b"k9", b"v", None, 0)],
                    1: [("buys", 1, 2, b"k2", b"v", None, 0)]}
    assert read.next_offsets == {("clicks", 0): 7, ("buys", 1): 3, ("buys", 0): 10}
    assert read.counts == {"clicks": 2, "buys": 2}
    assert records.positions(by_p) == read


def test_an_error_message_other_than_eof_raises() -> None:
    with pytest.raises(KafkaException):
        records.events_from_messages([_Msg("clicks", 0, 1, KafkaError(KafkaError._TRANSPORT))])


def test_complete_records_from_both_transports() -> None:
    assert records.from_message(_Msg("consent", 2, 7)) == ("consent", 2, 7, b"k7", b"v", [("h", b"1")], 1234)
    ev = SimpleNamespace(message=SimpleNamespace(topic="consent", partition=2, offset=7, key=b"k7", value=b"v",
                                                 headers=[("h", b"1")], timestamp=1.234))
    assert records.from_faust(ev) == ("consent", 2, 7, b"k7", b"v", [("h", b"1")], 1234)
    grouped = records.group_by_topic_partition([("a", 0, 1), ("b", 0, 2), ("a", 0, 3)])
    assert grouped == {("a", 0): [("a", 0, 1), ("a", 0, 3)], ("b", 0): [("b", 0, 2)]}


def test_lag_metric_only_with_a_known_high_watermark() -> None:
    gauge = metrics.CONSUMER_LAG.labels("unit-lag", "0")
    metrics.record_lag("unit-lag", 0, 100, 40)
    assert gauge._value.get() == 60
    metrics.record_lag("unit-lag", 0, None, 90)
    metrics.record_lag("unit-lag", 0, -1, 90)
    assert gauge._value.get() == 60
    metrics.record_lag("unit-lag", 0, 10, 40)
    assert gauge._value.get() == 0


def test_a_barrier_that_cannot_catch_up_raises_a_filter_error(tmp_path: Path) -> None:
    from streams.runtime.consent_reader import ConsentCatchUpTimeout

    class Silent(_Assigns):
        def consume(self, _n: int, timeout: float) -> list:
            return []

    reader = ConsentReader(Silent(), None, "consent", SimpleNamespace(policy=None), ConsentFiles(tmp_path, "f"), 0.0)
    reader.assign({0: 0})
    with pytest.raises(ConsentCatchUpTimeout) as caught:
        reader.catch_up({0: 5}, [])
    assert isinstance(caught.value, PFilterError) and isinstance(caught.value, TimeoutError)


def test_a_restore_that_reads_nothing_gives_up_instead_of_hanging(tmp_path: Path) -> None:
    """F3: after a broker restart a consent reader stopped fetching; the restore waited for it
    forever, the worker never became ready, and its watchdog (armed at ready) never fired."""
    from streams.runtime.consent_reader import ConsentRestoreStalled
    from streams.runtime.stall import Heartbeat

    class Silent(_Assigns):
        polls = 0

        def consume(self, _n: int, timeout: float) -> list:
            Silent.polls += 1
            return []

    beat = Heartbeat()
    reader = ConsentReader(Silent(), None, "consent", SimpleNamespace(policy=None), ConsentFiles(tmp_path, "f"),
                           1.0, stall_s=0.3, heartbeat=beat)
    reader.assign({0: 0})
    beat.last = -1e9
    with pytest.raises(ConsentRestoreStalled) as caught:
        reader.catch_up({0: 5}, [], restoring=True)
    assert "consent" in str(caught.value) and isinstance(caught.value, PFilterError)
    assert Silent.polls > 1 and beat.age() < 5  # it polled, beating the heartbeat each time


def test_watchdog_exits_when_the_loop_stops_stepping_even_before_ready() -> None:
    import time

    from streams.runtime.stall import STALLED_EXIT, Heartbeat, StallWatch, start_watchdog

    beat = Heartbeat()
    codes: list[int] = []
    start_watchdog(StallWatch(60.0), lambda: False, check_s=0.01, exit_=codes.append, heartbeat=beat, stuck_s=0.2)
    deadline = time.monotonic() + 0.15
    while time.monotonic() < deadline:
        beat.beat()  # a loop that steps: never stopped
        time.sleep(0.01)
    assert codes == []
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert codes == [STALLED_EXIT]
