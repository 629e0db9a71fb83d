"""The fault suite (issue 9, README "Reliability"): crashes, zombies, broker loss, state loss,
replay, poison input and start-up faults, each judged by ``pfilter verify`` on the real broker.

F1 here; the others follow in this file. Counts are printed (``-s``) for the README table.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from streams.config import Settings
from streams.verify import render_report, run_verify
from tests.integration import faults, kit

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _group_settings(kafka_settings: Settings, runtime: str, **kw: object) -> Settings:
    update: dict = {"partitions": 6, "batch_size": 500, "runtime": runtime, "checkpoint_interval_s": 2.0}
    update["processing_guarantee"] = "exactly_once" if runtime == "fast" else "at_least_once"
    update.update(kw)
    return kafka_settings.model_copy(update=update)


@pytest.mark.parametrize(("runtime", "kills"), [("fast", 5), ("faust", 2)])
def test_f1_random_sigkill_in_a_group_of_three(kafka_settings: Settings, tmp_path: Path, runtime: str,
                                               kills: int) -> None:
    """F1: three workers, six partitions, events at a fixed rate with consent churn and
    erasures; a random worker is SIGKILLed and restarted ``kills`` times. Exactly once on the
    fast runtime (0 violations, 0 lost, 0 duplicates), at least once on faust (0 violations,
    0 lost)."""
    s = _group_settings(kafka_settings, runtime)
    kit.setup_topics(s)
    now = int(time.time() * 1000) - faults.DAY
    spec = faults.produce_population(s, now)
    group = faults.Group(s, tmp_path, 3, runtime)
    group.start_all()
    eos = runtime == "fast"
    try:
        stream = faults.Stream(s, spec, now, events=12_000, seconds=6.0 * kills).start()
        done = faults.chaos(group, kills, every=5.0, rng=random.Random(9), stream=stream)
        n = stream.join()
        faults.wait_decided(s, n, read_committed=eos, timeout=240)
    finally:
        group.stop_all()
    result = run_verify(s, exactly_once=eos)
    print(f"\nF1 {runtime}: events={n} consent_changes={stream.changes} kills={done} "
          f"violations={result.violation_count} lost={result.unaccounted} duplicates={result.duplicates}")
    assert done == kills
    assert result.ok, render_report(result)
    assert result.violation_count == 0 and result.unaccounted == 0
    if eos:
        assert result.duplicates == 0
    assert sum(result.outputs.values()) > 0
