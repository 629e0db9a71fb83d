"""The fault suite (issue 9, README "Reliability"): crashes, zombies, broker loss, state loss,
replay, poison input and start-up faults, each judged by ``pfilter verify`` on the real broker.

F1 here; the others follow in this file. Counts are printed (``-s``) for the README table.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import orjson
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


# ---------------------------------------------------------------------------- F5: replay
def _withdraw_all(subject: str, updated_at: int) -> dict:
    gone = {"status": "withdrawn", "granted_at": None, "expires_at": None}
    return kit.consent(subject, updated_at, purposes={p: dict(gone) for p in (
        "personalization", "marketing_email", "marketing_phone", "analytics", "third_party_sharing", "support")})


def _event_subjects(s: Settings) -> dict[str, str]:
    """event_id -> subject_id of every input event."""
    out = {}
    for *_x, v, _h, _t in faults.replay(s.bootstrap, [s.topic_clickstream, s.topic_purchases]):
        e = orjson.loads(v)
        out[e["event_id"]] = e.get("subject_id")
    return out


def _end_offsets(s: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": s.bootstrap, "group.id": f"{s.group_id}.probe"})
    try:
        out = {}
        for t in topics:
            for p in range(s.partitions):
                out[(t, p)] = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
        return out
    finally:
        c.close()


def _outputs_after(s: Settings, ends: dict[tuple[str, int], int]) -> list[dict]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": s.bootstrap, "group.id": f"{s.group_id}.after",
                  "isolation.level": "read_committed", "enable.partition.eof": True, "enable.auto.commit": False})
    c.assign([TopicPartition(t, p, o) for (t, p), o in ends.items()])
    out, eof, deadline = [], set(), time.monotonic() + 60
    try:
        while len(eof) < len(ends) and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.5):
                if m.error() is not None:
                    eof.add((m.topic(), m.partition()))
                    continue
                out.append(orjson.loads(m.value()))
        return out
    finally:
        c.close()


def _reset_to_earliest(s: Settings) -> None:
    from confluent_kafka import TopicPartition
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    tps = [TopicPartition(t, p, 0) for t in (s.topic_clickstream, s.topic_purchases) for p in range(s.partitions)]
    for f in admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(s.group_id, tps)]).values():
        f.result(30)


def test_f5_replay_after_withdrawals_and_erasures(kafka_settings: Settings, tmp_path: Path) -> None:
    """F5: everything decided; then, while the worker is down, withdrawals and erasures for
    subjects whose events were emitted, and the group reset to the earliest offsets. The
    replay must emit nothing for those subjects (their consent is applied first: G2 at
    start-up), and verify passes over the whole log, the replay included."""
    s = _group_settings(kafka_settings, "fast", partitions=3)
    kit.setup_topics(s)
    now = int(time.time() * 1000) - faults.DAY
    spec = faults.produce_population(s, now)
    group = faults.Group(s, tmp_path, 1, "fast")
    group.start_all()
    try:
        stream = faults.Stream(s, spec, now, events=4000, seconds=2.0, churn_every=10**9).start()
        n = stream.join()
        faults.wait_decided(s, n, read_committed=True)
    finally:
        group.stop_all()
    engines = [e.topic for e in kit.policy_for_topics(s).engines]
    subjects = _event_subjects(s)
    first_run = _outputs_after(s, {tp: 0 for tp in _end_offsets(s, engines)})
    emitted_subjects = sorted({subjects[r["event_id"]] for r in first_run if subjects.get(r["event_id"])})
    assert len(emitted_subjects) > 100
    withdrawn, erased = emitted_subjects[:50], emitted_subjects[50:100]
    p = kit.producer(s)
    later = int(time.time() * 1000)
    for sid in withdrawn:
        kit.send(p, s.topic_consent, sid, _withdraw_all(sid, later))
    for sid in erased:
        kit.send(p, s.topic_consent, sid, None)
    _reset_to_earliest(s)
    before = _end_offsets(s, engines)
    group.start(0)
    try:
        group.procs[0].wait_ready()
        # every input decided a second time: the replay is complete
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            # one decision record per input: the first pass and the replay make 2n
            if sum(1 for _ in faults.replay(s.bootstrap, [s.topic_decisions], read_committed=True)) >= 2 * n:
                break
            time.sleep(1)
    finally:
        group.stop_all()
    replayed = _outputs_after(s, before)
    leaked = [r["event_id"] for r in replayed if subjects.get(r["event_id"]) in set(withdrawn) | set(erased)]
    result = run_verify(s)
    print(f"\nF5: events={n} replayed_outputs={len(replayed)} withdrawn={len(withdrawn)} erased={len(erased)} "
          f"leaked={len(leaked)} violations={result.violation_count} lost={result.unaccounted}")
    assert replayed, "the replay emitted nothing at all: the test would prove nothing"
    assert not leaked, f"{len(leaked)} outputs of withdrawn or erased subjects in the replay"
    assert result.violation_count == 0 and result.unaccounted == 0, render_report(result)


# ---------------------------------------------------------------------------- F6: poison
def _poison(s: Settings, now: int, i: int) -> tuple[str, bytes | None, bytes | None]:
    """The i-th bad record: (topic, key, value)."""
    good = orjson.dumps(kit.page_view(f"bad-{i}", f"s-{i % 2000:06d}", now))
    kind = i % 9
    if kind == 0:
        return s.topic_clickstream, b"s-000001", random.Random(i).randbytes(64)      # random bytes
    if kind == 1:
        return s.topic_clickstream, b"s-000001", good[: len(good) // 2]             # truncated JSON
    if kind == 2:
        return s.topic_clickstream, b"s-000001", good.replace(b'"ts":', b'"ts":"yesterday","x":')  # wrong type
    if kind == 3:
        return s.topic_clickstream, b"s-000001", b"{" + b'"pad":"' + b"x" * 1_100_000 + b'"}'      # over the limit
    if kind == 4:
        return s.topic_clickstream, b"\xff\xfe-bad-utf8", orjson.dumps(kit.page_view(f"bad-{i}", "s-000002", now))
    if kind == 5:
        return s.topic_clickstream, None, orjson.dumps(kit.page_view(f"bad-{i}", "s-000003", now))  # null key
    if kind == 6:  # consent that ends before it began
        rec = kit.consent(f"s-{1000 + i % 500:06d}", now)
        rec["purposes"]["personalization"] = {"status": "granted", "granted_at": now, "expires_at": now - 10**9}
        return s.topic_consent, rec["subject_id"].encode(), orjson.dumps(rec)
    if kind == 7:  # consent updated_at beyond a 64-bit long
        rec = kit.consent(f"s-{1500 + i % 400:06d}", now)
        raw = orjson.dumps(rec).replace(b'"updated_at":%d' % now, b'"updated_at":%d' % 2 ** 70)
        return s.topic_consent, rec["subject_id"].encode(), raw
    return s.topic_purchases, b"s-000004", b"\x00\x00\x0f\x42\x3f" + b"\x02" * 20      # Avro, unknown schema id


def test_f6_poison_flood(kafka_settings: Settings, tmp_path: Path) -> None:
    """F6: 10% bad input mixed into valid traffic. Every bad record reaches the DLQ with its
    reason, a bad consent record fails its subject closed, counts reconcile exactly (G3),
    and the worker never stops."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    s = _group_settings(kafka_settings, "fast", partitions=3, format_purchases="avro")
    kit.setup_topics(s)
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    # the broker must accept an input over the filter's 1 MiB limit for the worker to see one
    res = ConfigResource(ResourceType.TOPIC, s.topic_clickstream, set_config={"max.message.bytes": "4194304"})
    for f in admin.alter_configs([res]).values():
        f.result(30)
    now = int(time.time() * 1000) - faults.DAY
    spec = faults.produce_population(s, now)
    group = faults.Group(s, tmp_path, 1, "fast")
    group.start_all()
    big = Producer({"bootstrap.servers": s.bootstrap, "partitioner": "murmur2_random", "message.max.bytes": 8_000_000})
    bad = 0
    try:
        stream = faults.Stream(s, spec, now, events=4500, seconds=6.0).start()
        while bad < 500:  # 10% of all input, spread over the stream
            topic, key, value = _poison(s, now, bad)
            big.produce(topic, value, key)
            bad += 1
            big.poll(0)
            time.sleep(5.0 / 500)
        n = stream.join()
        assert big.flush(60) == 0
        bad_events = sum(1 for i in range(bad) if _poison(s, now, i)[0] != s.topic_consent)
        faults.wait_decided(s, n + bad_events, read_committed=True)
        alive = group.alive(0)
    finally:
        group.stop_all()
    dlq = list(faults.replay(s.bootstrap, [s.topic_dlq], read_committed=True))
    reasons: dict[str, int] = {}
    for *_x, _v, headers, _t in dlq:
        h = dict(headers or [])
        reasons[h["error.class"].decode()] = reasons.get(h["error.class"].decode(), 0) + 1
    result = run_verify(s, exactly_once=True)
    print(f"\nF6: events={n} bad={bad} dlq={len(dlq)} reasons={reasons} violations={result.violation_count} "
          f"lost={result.unaccounted} duplicates={result.duplicates}")
    assert alive, "the worker stopped under poison input"
    assert bad >= 0.1 * n
    # the population and the stream are valid: every DLQ entry is one of ours, and every one of ours is there
    assert len(dlq) == bad, reasons
    assert {"invalid_json", "wrong_type", "oversize", "invalid_utf8", "key_mismatch",
            "unknown_schema_id"} <= set(reasons), reasons
    assert result.ok, render_report(result)
    assert result.violation_count == 0 and result.unaccounted == 0 and result.duplicates == 0


# ---------------------------------------------------------------------------- F2: zombie
def _probe_events(s: Settings, prefix: str, subjects: list[str], ts: int) -> int:
    p = kit.producer(s)
    for i, sid in enumerate(subjects):
        p.produce(s.topic_clickstream, orjson.dumps(kit.page_view(f"{prefix}-{i}", sid, ts)), sid.encode())
    assert p.flush(60) == 0
    return len(subjects)


def _outputs_of(s: Settings, prefix: str) -> list[dict]:
    engines = [e.topic for e in kit.policy_for_topics(s).engines]
    return [r for r in _outputs_after(s, {tp: 0 for tp in _end_offsets(s, engines)})
            if str(r["event_id"]).startswith(prefix)]


@pytest.mark.parametrize("runtime", ["fast", "faust"])
def test_f2_zombie_is_fenced(kafka_settings: Settings, tmp_path: Path, runtime: str) -> None:
    """F2: one of two workers is SIGSTOPped mid-stream until the group gives its partitions
    to the other; consent is then withdrawn for 200 subjects and events of theirs produced;
    then the zombie gets SIGCONT. No event produced after the withdrawal may be emitted for
    those subjects by anyone (G2), and on the fast runtime nothing the zombie wrote in its
    open transaction may be visible to a read_committed reader: its commit is refused
    (the group generation fences it, KIP-447), so there are no duplicates either.
    faust offers no fencing: its zombie's writes stay visible as at-least-once duplicates,
    and its barrier still reads the withdrawal before it decides anything new."""
    eos = runtime == "fast"
    # a long commit interval: the zombie is stopped with a transaction open (outputs in it)
    s = _group_settings(kafka_settings, runtime, partitions=4, commit_interval_ms=5000)
    kit.setup_topics(s)
    now = int(time.time() * 1000) - faults.DAY
    spec = faults.produce_population(s, now)
    group = faults.Group(s, tmp_path, 2, runtime)
    group.start_all()
    withdrawn = [f"s-{i:06d}" for i in range(0, 2000, 10)]
    try:
        stream = faults.Stream(s, spec, now, events=9000, seconds=18.0, churn_every=10**9).start()
        time.sleep(3.0)
        group.signal(0, signal.SIGSTOP)  # mid-batch, mid-transaction: a zombie
        time.sleep(s.session_timeout_ms / 1000 + 6.0)  # the group moves its partitions to w1
        p = kit.producer(s)
        later = int(time.time() * 1000)
        for sid in withdrawn:
            p.produce(s.topic_consent, orjson.dumps(_withdraw_all(sid, later)), sid.encode())
        assert p.flush(60) == 0  # acknowledged: every event produced from now on must see it
        probes = _probe_events(s, "after-withdrawal", withdrawn, later + 1)
        group.signal(0, signal.SIGCONT)
        n = stream.join() + probes
        faults.wait_decided(s, n, read_committed=eos, timeout=240)
        zombie_alive = group.alive(0)
    finally:
        codes = group.stop_all()
    leaked = _outputs_of(s, "after-withdrawal")
    result = run_verify(s, exactly_once=eos)
    print(f"\nF2 {runtime}: events={n} withdrawn={len(withdrawn)} zombie_alive_after={zombie_alive} "
          f"exit_codes={codes} leaked={len(leaked)} violations={result.violation_count} "
          f"lost={result.unaccounted} duplicates={result.duplicates}")
    assert not leaked, f"{len(leaked)} events produced after the withdrawal were emitted"
    assert result.violation_count == 0 and result.unaccounted == 0, render_report(result)
    if eos:
        assert result.ok and result.duplicates == 0, render_report(result)


# ---------------------------------------------------------------------------- F3: broker loss
def test_f3_broker_killed_and_restarted(kafka_settings: Settings, tmp_path: Path) -> None:
    """F3: the broker is SIGKILLed mid-stream and restarted on the same data dir. Workers
    recover, or exit non-zero and are restarted here as a supervisor would: 0 violations,
    0 lost, 0 duplicates (exactly once)."""
    from streams.kafka.broker import LocalBroker

    port = kit.free_port()
    bs = kafka_settings.model_copy(update={"kafka_bootstrap_servers": None, "kafka_port": port,
                                           "kafka_controller_port": kit.free_port(), "state_dir": tmp_path / "broker"})
    broker = LocalBroker(bs)
    broker.up()
    try:
        s = _group_settings(kafka_settings, "fast", partitions=3).model_copy(
            update={"kafka_bootstrap_servers": broker.bootstrap})
        kit.setup_topics(s)
        now = int(time.time() * 1000) - faults.DAY
        spec = faults.produce_population(s, now)
        group = faults.Group(s, tmp_path, 2, "fast")
        group.start_all()
        restarts = 0
        try:
            stream = faults.Stream(s, spec, now, events=6000, seconds=10.0).start()
            time.sleep(3.0)
            pid = broker.status().pid
            assert pid
            os.kill(pid, signal.SIGKILL)
            time.sleep(4.0)
            broker.up()  # same data dir: the log, the offsets and the transactions survive
            n = stream.join(180)

            def supervise() -> None:
                nonlocal restarts
                for i in range(2):
                    if not group.alive(i):
                        restarts += 1
                        group.start(i)

            faults.wait_decided(s, n, read_committed=True, timeout=240, on_wait=supervise)
        finally:
            group.stop_all()
        result = run_verify(s, exactly_once=True)
        print(f"\nF3: events={n} broker_kills=1 worker_restarts={restarts} violations={result.violation_count} "
              f"lost={result.unaccounted} duplicates={result.duplicates}")
        assert result.ok, render_report(result)
        assert result.violation_count == 0 and result.unaccounted == 0 and result.duplicates == 0
    finally:
        broker.destroy()


# ---------------------------------------------------------------------------- F4: state loss
def _outcomes(s: Settings, prefix: str) -> dict[tuple[str, str], str | None]:
    """(probe index, engine) -> reason of the decisions of one probe set (None: emitted)."""
    out = {}
    for d in kit.decisions(s):
        eid = str(d.get("event_id"))
        if eid.startswith(prefix + "-"):
            out[(eid.rsplit("-", 1)[1], d["engine"])] = d["outcome"] if d["outcome"] != "dropped" else d["reason"]
    return out


@pytest.mark.parametrize("runtime", ["fast", "faust"])
def test_f4_state_dir_lost(kafka_settings: Settings, tmp_path: Path, runtime: str) -> None:
    """F4: a stopped worker's state dir (fast checkpoint / faust RocksDB) is deleted; it
    rebuilds from the consent topic or the changelog and decides exactly as before: the
    same probe events get the same outcome per engine before and after, and verify checks
    every decision against the reference rule."""
    import shutil

    eos = runtime == "fast"
    s = _group_settings(kafka_settings, runtime, partitions=3)
    kit.setup_topics(s)
    now = int(time.time() * 1000) - faults.DAY
    spec = faults.produce_population(s, now)
    group = faults.Group(s, tmp_path, 1, runtime)
    subjects = [f"s-{i:06d}" for i in range(0, 2000, 7)]
    group.start_all()
    try:
        stream = faults.Stream(s, spec, now, events=3000, seconds=2.0).start()
        n = stream.join()
        ts = int(time.time() * 1000)
        n += _probe_events(s, "before", subjects, ts)
        faults.wait_decided(s, n, read_committed=eos)
    finally:
        group.stop_all()
    state = group.settings[0].state_dir
    assert any(state.rglob("*")), "no state was written: the test would prove nothing"
    shutil.rmtree(state)
    group.start(0)
    try:
        group.procs[0].wait_ready()
        n += _probe_events(s, "after", subjects, ts)
        faults.wait_decided(s, n, read_committed=eos)
    finally:
        group.stop_all()
    before, after = _outcomes(s, "before"), _outcomes(s, "after")
    result = run_verify(s, exactly_once=eos)
    same = sum(1 for k, v in before.items() if after.get(k) == v)
    print(f"\nF4 {runtime}: events={n} probes={len(subjects)} same_outcome={same}/{len(before)} "
          f"violations={result.violation_count} lost={result.unaccounted} duplicates={result.duplicates}")
    assert len(before) == len(subjects) * 3 and before == after
    assert {v for v in before.values()} - {"emitted"}, "every probe emitted: the state mattered for nothing"
    assert result.ok, render_report(result)
