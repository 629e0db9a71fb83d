"""The fast runtime: exactly once under repeated SIGKILL (G5), and the same results as faust."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest

from streams import population
from streams.config import Settings
from streams.kafka.replay import replay
from streams.verify import render_report, run_verify
from tests.integration import kit

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SUBJECTS = 2000
DAY = 24 * 3_600_000


def _produce(s: Settings, events: int, *, first: int = 0, now: int, with_consent: bool = True,
             churn: int = 100) -> int:
    p = kit.producer(s)
    spec = population.PopulationSpec(subjects=SUBJECTS, seed=13)
    if with_consent:
        for rec in population.consent_records(spec, now):
            p.produce(s.topic_consent, orjson.dumps(rec), rec["subject_id"].encode())
    n = 0
    for kind, value, key in population.event_bytes(spec, now, events, first=first):
        p.produce(s.topic_purchases if kind == "purchase" else s.topic_clickstream, value,
                  key.encode() if key else None)
        n += 1
        if n % 5000 == 0:
            p.poll(0)
    for sid, rec in population.churn(spec, now + first, churn):
        p.produce(s.topic_consent, orjson.dumps(rec) if rec is not None else None, sid.encode())
    # a malformed event and consent record: the DLQ path is part of exactly-once too
    p.produce(s.topic_clickstream, b"{broken", b"s-000001")
    p.produce(s.topic_consent, b"{broken", b"s-000002")
    assert p.flush(60) == 0
    return n + 1


def _committed_inputs(s: Settings) -> int:
    ds = [orjson.loads(v) for *_x, v, _h, _t in replay(s.bootstrap, [s.topic_decisions], read_committed=True)]
    return len({(d["source_topic"], d["source_partition"], d["source_offset"]) for d in ds
                if d["source_topic"] != s.topic_consent})


def _fast(kafka_settings: Settings, **kw: object) -> Settings:
    return kafka_settings.model_copy(update={"runtime": "fast", "processing_guarantee": "exactly_once",
                                             "batch_size": 500, "instance_id": "i1", **kw})


def test_repeated_sigkill_exactly_once(kafka_settings: Settings, tmp_path: Path) -> None:
    s = _fast(kafka_settings, checkpoint_interval_s=1.0)
    kit.setup_topics(s)
    now = int(time.time() * 1000) - DAY
    n = _produce(s, 15_000, now=now)
    kills = 0
    for round_ in range(4):
        w = kit.WorkerProcess(s, tmp_path / f"w{round_}.log").start()
        w.wait_ready()
        time.sleep(1.5 + round_ * 0.5)
        w.kill()  # SIGKILL mid-transaction, mid-batch, or mid-checkpoint
        kills += 1
        if round_ == 1:
            n += _produce(s, 3000, first=15_000, now=now, with_consent=False)
    w = kit.WorkerProcess(s, tmp_path / "final.log").start()
    try:
        w.wait_ready()
        deadline = time.monotonic() + 180
        while _committed_inputs(s) < n and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        w.stop()
    assert kills == 4
    result = run_verify(s, exactly_once=True)
    assert result.ok, render_report(result)
    assert result.duplicates == 0 and result.unaccounted == 0 and result.violation_count == 0
    assert sum(result.outputs.values()) > 0


def _stream(s: Settings, events: int, first: int, now: int, seconds: float) -> threading.Thread:
    """Produce ``events`` evenly over ``seconds`` in a background thread."""
    def run() -> None:
        p = kit.producer(s)
        spec = population.PopulationSpec(subjects=SUBJECTS, seed=13)
        t0 = time.monotonic()
        for i, (kind, value, key) in enumerate(population.event_bytes(spec, now, events, first=first)):
            p.produce(s.topic_purchases if kind == "purchase" else s.topic_clickstream, value,
                      key.encode() if key else None)
            if i % 100 == 0:
                p.poll(0)
                ahead = t0 + seconds * i / events - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        assert p.flush(60) == 0

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_rebalance_exactly_once(kafka_settings: Settings, tmp_path: Path) -> None:
    """A second instance joins while events stream in, then the first leaves: partitions
    move twice, each time after their owner committed its open transaction (revoke), and
    a read_committed reader still sees every input's outputs exactly once."""
    s = _fast(kafka_settings, partitions=4, commit_interval_ms=2000)
    kit.setup_topics(s)
    now = int(time.time() * 1000) - DAY
    n = _produce(s, 2000, now=now)
    w1 = kit.WorkerProcess(s, tmp_path / "w1.log").start()
    s2 = s.model_copy(update={"web_port": kit.free_port(), "state_dir": tmp_path / "state2", "instance_id": "i2"})
    w2 = kit.WorkerProcess(s2, tmp_path / "w2.log")
    try:
        w1.wait_ready()
        streaming = _stream(s, 12_000, first=2000, now=now, seconds=8.0)
        n += 12_000
        time.sleep(2.0)
        w2.start()  # joins mid-stream: the group rebalances with w1's transaction open
        w2.wait_ready()
        time.sleep(2.0)
        w1.stop()  # leaves mid-stream: its partitions move to w2
        streaming.join(60)
        deadline = time.monotonic() + 120
        while _committed_inputs(s) < n and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        w1.stop()
        w2.stop()
    assert "partitions revoked" in w1.log_file.read_text()
    result = run_verify(s, exactly_once=True)
    assert result.ok, render_report(result)
    assert result.duplicates == 0 and result.unaccounted == 0 and result.violation_count == 0


def _decisions(s: Settings) -> dict[tuple, dict]:
    """One decision per (input, engine): the decision records flattened (kit.flatten)."""
    records = kit.decision_records(s, read_committed=True)
    # exactly once: one decision record per input record
    assert len(records) == len({(d["source_topic"], d["source_partition"], d["source_offset"]) for d in records})
    out = {}
    for d in kit.flatten(s, records):
        # by event id: anonymous events (null key) land on a random partition, so offsets differ per run
        out[(d["source_topic"].rsplit(".", 1)[-1], d["event_id"], d["engine"])] = d
    return out


def _outputs(s: Settings, settings_engines: list[str]) -> dict[tuple, dict]:
    """Emitted records; encrypted fields decrypted (each run has its own random keys and
    nonces: the runtimes must agree on the plaintext, CONTRACT §10)."""
    from streams.crypto import Kek, KeyRing, decrypt_value, is_envelope

    ring = KeyRing(Kek.from_text(s.kek))
    for _t, _p, _o, k, v, _h, _ts in replay(s.bootstrap, [s.topic_keys], read_committed=True):
        ring.add_record(k.decode(), v)
    out = {}
    sealed = 0
    for engine in settings_engines:
        topic = s.topic_output_prefix + engine
        for *_x, v, _h, _t in replay(s.bootstrap, [topic], read_committed=True):
            r = orjson.loads(v)
            for f, x in list(r.items()):
                if isinstance(x, str) and is_envelope(x):
                    r[f] = ("decrypted", decrypt_value(ring, r["subject_id"], f, x))
                    sealed += 1
            out[(engine, r["event_id"])] = r
    assert sealed > 0, "no encrypted field: the default policy's email engine encrypts email/phone"
    return out


def test_differential_fast_vs_faust(kafka_settings: Settings, tmp_path: Path) -> None:
    """Same input through both runtimes: same decisions, same emitted records."""
    now = int(time.time() * 1000) - DAY  # expiries of the population lie far from the runs' `now`
    runs = {}
    for runtime in ("faust", "fast"):
        pre = f"{kafka_settings.group_id}-{runtime}"
        s = kafka_settings.model_copy(update={
            "runtime": runtime, "group_id": pre, "web_port": kit.free_port(),
            "topic_clickstream": f"{pre}.clickstream", "topic_purchases": f"{pre}.purchases",
            "topic_consent": f"{pre}.consent", "topic_output_prefix": f"{pre}.out.",
            "topic_decisions": f"{pre}.decisions", "topic_erasures": f"{pre}.erasures", "topic_dlq": f"{pre}.dlq",
            "topic_keys": f"{pre}.keys", "state_dir": tmp_path / runtime,
        })
        kit.setup_topics(s)
        n = _produce(s, 5000, now=now, churn=0)  # no churn: same consent for both at decision time
        w = kit.WorkerProcess(s, tmp_path / f"{runtime}.log").start()
        try:
            w.wait_ready()
            deadline = time.monotonic() + 120
            while _committed_inputs(s) < n and time.monotonic() < deadline:
                time.sleep(1)
        finally:
            w.stop()
        runs[runtime] = (_decisions(s), _outputs(s, ["offers", "email", "partner_ads"]))
    (d1, o1), (d2, o2) = runs["faust"], runs["fast"]
    assert set(d1) == set(d2) and len(d1) > 3 * 5000
    strip = lambda d: {k: v for k, v in d.items()  # noqa: E731
                       if k not in ("decided_at", "source_topic", "source_partition", "source_offset")}
    diff = [k for k in d1 if strip(d1[k]) != strip(d2[k])]
    assert diff == [], diff[:5]
    assert o1 == o2 and len(o1) > 0
