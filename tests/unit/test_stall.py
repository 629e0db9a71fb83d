"""Stalled-partition detection (streams.runtime.stall)."""

from __future__ import annotations

from streams import metrics
from streams.runtime.stall import StallWatch

TP = ("clicks", 1)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _gauge(tp: tuple[str, int]) -> float:
    return metrics.REGISTRY.get_sample_value("pfilter_partition_stalled_seconds",
                                             {"topic": tp[0], "partition": str(tp[1])})


def test_lag_without_progress_is_a_stall_past_the_timeout() -> None:
    clock = Clock()
    w = StallWatch(30.0, clock)
    assert w.observe(TP, 10, 50) == 0.0
    clock.t += 20
    assert w.observe(TP, 10, 50) == 20.0
    assert _gauge(TP) == 20.0
    assert w.healthy()
    clock.t += 11
    w.observe(TP, 10, 60)
    assert not w.healthy()
    assert list(w.stalled()) == [TP]


def test_progress_or_no_lag_resets_the_clock() -> None:
    clock = Clock()
    w = StallWatch(5.0, clock)
    w.observe(TP, 10, 50)
    clock.t += 10
    assert w.observe(TP, 11, 50) == 0.0  # moved
    assert w.healthy()
    clock.t += 10
    w.observe(TP, 11, 50)
    assert not w.healthy()
    assert w.observe(TP, 50, 50) == 0.0  # caught up: no lag
    assert w.healthy()
    clock.t += 100
    assert w.observe(TP, 50, 50) == 0.0  # idle without lag is not a stall
    assert w.healthy()


def test_forget_clears_the_gauge() -> None:
    clock = Clock()
    w = StallWatch(1.0, clock)
    w.observe(TP, 1, 9)
    clock.t += 5
    w.observe(TP, 1, 9)
    assert not w.healthy()
    w.forget([TP])
    assert w.healthy()
    assert _gauge(TP) == 0.0


def test_watchdog_exits_once_armed_and_stalled() -> None:
    import time

    from streams.runtime.stall import STALLED_EXIT, start_watchdog

    clock = Clock()
    w = StallWatch(1.0, clock)
    w.observe(TP, 1, 9)
    clock.t += 5  # stalled for 5 s, past the 1 s timeout
    codes: list[int] = []
    armed = [False]
    start_watchdog(w, lambda: armed[0], check_s=0.01, exit_=codes.append)
    time.sleep(0.1)
    assert codes == []  # not armed (still restoring): never exits
    armed[0] = True
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert codes == [STALLED_EXIT]


def test_watchdog_ends_a_worker_whose_bounded_call_overran() -> None:
    """librdkafka #5456: send_offsets_to_transaction can wait past its timeout for ever. A
    call made under Heartbeat.bounded ends the worker once past its deadline, armed or not,
    long before the loop bound (F3 sat 2+ minutes in that call)."""
    import time

    from streams.runtime.stall import CALL_GRACE_S, STALLED_EXIT, Heartbeat, start_watchdog

    clock = Clock()
    hb = Heartbeat(clock)
    codes: list[int] = []
    start_watchdog(StallWatch(60.0, clock), lambda: False, check_s=0.01, exit_=codes.append,
                   heartbeat=hb, stuck_s=1000.0)
    with hb.bounded("send_offsets_to_transaction", 30.0):
        clock.t += 30.0 + CALL_GRACE_S - 1  # within its timeout and grace: left alone
        time.sleep(0.1)
        assert codes == []
        assert hb.overran() is None
        clock.t += 2
        deadline = time.monotonic() + 5
        while not codes and time.monotonic() < deadline:
            time.sleep(0.01)
    assert codes == [STALLED_EXIT]
    assert hb.overran() is None  # the call returned: nothing in progress


def test_checkpoint_runs_transaction_calls_under_their_bound() -> None:
    """Each transaction call of a commit is made inside Heartbeat.bounded with its timeout."""
    from streams.runtime.checkpoint import COMMIT_TIMEOUT_S, COORDINATOR_TIMEOUT_S, Checkpoint
    from streams.runtime.stall import Heartbeat

    seen: list[tuple[str, str, float]] = []
    hb = Heartbeat()

    class Producer:
        def __getattr__(self, name: str):  # every call records the bound it runs under
            def call(*_a: object) -> int:
                assert hb.call is not None, name
                seen.append((name, hb.call[0], hb.call[1] - hb.last))
                return 0
            return call

        def begin_transaction(self) -> None:
            pass

    class Consumer:
        def consumer_group_metadata(self) -> object:
            return object()

    ck = Checkpoint(lambda _cb: Producer(), Consumer(), eos=True, deliveries=frozenset(), heartbeat=hb)
    ck.start()
    ck.event_next[("clicks", 0)] = 5
    hb.beat()
    ck.commit()
    names = [(n, b) for n, b, _ in seen]
    assert names == [("init_transactions", "init_transactions"),
                     ("send_offsets_to_transaction", "send_offsets_to_transaction"),
                     ("commit_transaction", "commit_transaction")]
    bounds = {n: d for n, _, d in seen}
    assert COORDINATOR_TIMEOUT_S < bounds["send_offsets_to_transaction"] < COORDINATOR_TIMEOUT_S + 10
    assert COMMIT_TIMEOUT_S < bounds["commit_transaction"] < COMMIT_TIMEOUT_S + 10
