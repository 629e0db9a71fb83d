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
