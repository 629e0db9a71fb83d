"""The faust worker under crashes and rebalances: nothing forbidden, nothing lost (G1, G3).

The fast runtime's equivalents are in test_fast_runtime.py; the fault suite is test_fault_suite.py."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from streams import population
from streams.config import Settings
from streams.verify import render_report, run_verify
from tests.integration import faults, kit

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SUBJECTS = 2000
EVENTS = 12_000


def _load(s: Settings, events: int, first: int = 0) -> int:
    """Consent for the population (first call) and a batch of events; returns events produced."""
    p = kit.producer(s)
    spec = population.PopulationSpec(subjects=SUBJECTS, seed=11)
    now = int(time.time() * 1000)
    if first == 0:
        for rec in population.consent_records(spec, now):
            p.produce(s.topic_consent, orjson.dumps(rec), rec["subject_id"].encode())
    n = 0
    for kind, value, key in population.event_bytes(spec, now, events, first=first):
        topic = s.topic_purchases if kind == "purchase" else s.topic_clickstream
        p.produce(topic, value, key.encode() if key else None)
        n += 1
        if n % 5000 == 0:
            p.poll(0)
    # a little churn, including erasures, while the worker runs
    for sid, rec in population.churn(spec, now, 100):
        p.produce(s.topic_consent, orjson.dumps(rec) if rec is not None else None, sid.encode())
    assert p.flush(60) == 0
    return n


def _inputs_decided(s: Settings) -> int:
    ds = kit.decisions(s)
    return len({(d["source_topic"], d["source_partition"], d["source_offset"]) for d in ds
                if d["source_topic"] != s.topic_consent})


def _wait_all(s: Settings, n: int, timeout: float = 180.0) -> None:
    """Every event decided, then every input record (consent included) committed by the group."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _inputs_decided(s) >= n:
            kit.wait_consumed(s, [s.topic_consent, s.topic_clickstream, s.topic_purchases],
                              timeout=max(1.0, deadline - time.monotonic()))
            return
        time.sleep(1.0)
    raise TimeoutError(f"{_inputs_decided(s)} of {n} inputs decided after {timeout}s")


def test_sigkill_mid_stream_and_restart(kafka_settings: Settings, tmp_path: Path, record_property) -> None:
    s = kafka_settings.model_copy(update={"batch_size": 500, "runtime": "faust"})
    kit.setup_topics(s)
    w = kit.start_worker(s, tmp_path, name="w1")
    now = int(time.time() * 1000)
    spec = faults.produce_population(s, now)
    # paced, so the kill lands mid-stream whatever the machine's speed (produced all at
    # once, a fast worker had decided all of it before the first look)
    stream = faults.Stream(s, spec, now, events=EVENTS, seconds=12.0).start()
    deadline = time.monotonic() + 120
    while _inputs_decided(s) < EVENTS // 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    decided_at_kill = _inputs_decided(s)
    w.kill()  # SIGKILL: no shutdown, no final commit
    n = stream.join()
    assert 0 < decided_at_kill < n, "the kill must land mid-stream for this test to mean anything"
    n += _load(s, 2000, first=EVENTS)  # more input arrives while the worker is down
    w2 = kit.WorkerProcess(s, tmp_path / "w2.log").start()
    recovery_s = w2.wait_ready()
    record_property("recovery_s", round(recovery_s, 2))
    print(f"\nrecovery after SIGKILL: ready in {recovery_s:.2f}s")
    try:
        _wait_all(s, n)
    finally:
        w2.stop()
    result = run_verify(s)
    assert result.ok, render_report(result)
    assert result.violation_count == 0 and result.unaccounted == 0


def test_two_workers_through_a_rebalance(kafka_settings: Settings, tmp_path: Path) -> None:
    s = kafka_settings.model_copy(update={"batch_size": 500, "partitions": 4, "runtime": "faust"})
    kit.setup_topics(s)
    w1 = kit.start_worker(s, tmp_path, name="w1")
    n = _load(s, EVENTS // 2)
    s2 = s.model_copy(update={"web_port": kit.free_port(), "state_dir": tmp_path / "state2"})
    w2 = kit.WorkerProcess(s2, tmp_path / "w2.log").start()  # joins: the group rebalances
    try:
        w2.wait_ready()
        n += _load(s, EVENTS // 2, first=EVENTS // 2)
        time.sleep(2)
        w1.stop()  # leaves: everything moves to w2
        _wait_all(s, n)
    finally:
        w1.stop()
        w2.stop()
    result = run_verify(s)
    assert result.ok, render_report(result)
