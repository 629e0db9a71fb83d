"""Run one benchmark peer as a subprocess and measure its throughput.

``run_peer(name, bootstrap, topics, group, expected_outputs, timeout_s)`` is the
entry point the end-to-end benchmark calls; ``start_peer`` and ``OutputTail``
are the pieces it is made of (the integration tests use them directly).

Peers (see README.md beside this file): ``kstreams`` (Java, Kafka Streams),
``quix`` (Quix Streams, own virtualenv), ``faust`` (naive faust agent).

``topics`` maps ``clickstream``, ``consent`` and ``output`` to topic names.
The input topics must exist. The output topic is created when missing, with
the clickstream's partition count and ``message.timestamp.type=LogAppendTime``
so that the broker stamps each output with its append time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PEERS = ("kstreams", "quix", "faust")
KSTREAMS_DIR = HERE / "kstreams"
KSTREAMS_JAR = KSTREAMS_DIR / "target" / "kstreams-offers-peer.jar"
QUIX_VENV = HERE / ".venv-quix"

#: run_peer stops waiting when no new output arrived for this long (after the
#: first output), or, before any output, when the peer has exited.
IDLE_S = 5.0
#: Peers stop by themselves after this long without input; run_peer normally
#: stops them first (SIGTERM), this is the safety net.
PEER_IDLE_EXIT_S = 60.0
#: Grace for a clean stop after SIGTERM (Kafka Streams closes in 1-5 s).
STOP_TIMEOUT_S = 60.0


class PeerError(RuntimeError):
    """A peer could not be built, started or measured; the message says why."""


# ---------------------------------------------------------------- build / command
def ensure_built(name: str) -> None:
    """Build what a peer needs (idempotent): the Java jar, or the Quix virtualenv."""
    if name == "kstreams":
        proc = subprocess.run(["bash", str(KSTREAMS_DIR / "build.sh")], capture_output=True, text=True)
        if proc.returncode != 0 or not KSTREAMS_JAR.exists():
            raise PeerError(f"kstreams build failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    elif name == "quix":
        if not (QUIX_VENV / "bin" / "python").exists() or not (QUIX_VENV / ".installed").exists():
            proc = subprocess.run(["bash", str(HERE / "setup-quix.sh")], capture_output=True, text=True)
            if proc.returncode != 0:
                raise PeerError(f"Quix venv setup failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    elif name != "faust":
        raise PeerError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")


def _faust_python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _topics(topics: dict[str, str]) -> dict[str, str]:
    """``clickstream``, ``consent`` and ``output`` (``offers`` is accepted for ``output``)."""
    out = dict(topics)
    if "output" not in out and "offers" in out:
        out["output"] = out["offers"]
    missing = [k for k in ("clickstream", "consent", "output") if not out.get(k)]
    if missing:
        raise PeerError(f"topics needs {', '.join(missing)}; got {sorted(topics)}")
    return out


def peer_command(name: str, bootstrap: str, topics: dict[str, str], group: str, state_dir: str,
                 idle_exit_s: float = PEER_IDLE_EXIT_S, threads: int = 1) -> list[str]:
    topics = _topics(topics)
    common = [
        "--bootstrap", bootstrap,
        "--clickstream-topic", topics["clickstream"],
        "--consent-topic", topics["consent"],
        "--output-topic", topics["output"],
        "--state-dir", state_dir,
    ]
    if name == "kstreams":
        return ["java", "-Xms512m", "-Xmx1g", "-jar", str(KSTREAMS_JAR), *common,
                "--application-id", group, "--threads", str(threads), "--idle-exit-s", str(int(idle_exit_s))]
    if name == "quix":
        return [str(QUIX_VENV / "bin" / "python"), str(HERE / "quix_offers.py"), *common,
                "--group", group, "--idle-exit-s", str(idle_exit_s)]
    if name == "faust":
        return [_faust_python(), str(HERE / "naive_faust.py"), *common,
                "--group", group, "--idle-exit-s", str(idle_exit_s)]
    raise PeerError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")


# ---------------------------------------------------------------- topics
def partition_count(bootstrap: str, topic: str) -> int:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=30)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise PeerError(f"topic {topic} does not exist")
    return len(t.partitions)


def ensure_output_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=30).topics:
        return
    fut = admin.create_topics([NewTopic(topic, partitions, 1, config={"message.timestamp.type": "LogAppendTime"})])
    try:
        fut[topic].result(30)
    except KafkaException as e:
        if "TOPIC_ALREADY_EXISTS" not in str(e):
            raise


def committed_total(bootstrap: str, group: str, topic: str) -> int | None:
    """Sum of the group's committed offsets on ``topic`` (None if it committed nothing)."""
    n = partition_count(bootstrap, topic)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(n)], timeout=30)
    finally:
        c.close()
    offs = [tp.offset for tp in got if tp.offset >= 0]
    return sum(offs) if offs else None


def watermarks_total(bootstrap: str, topic: str) -> tuple[int, int]:
    """(sum of low watermarks, sum of high watermarks) of ``topic``."""
    n = partition_count(bootstrap, topic)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{os.getpid()}", "enable.auto.commit": False})
    try:
        lo = hi = 0
        for p in range(n):
            a, b = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            lo += a
            hi += b
        return lo, hi
    finally:
        c.close()


# ---------------------------------------------------------------- the output tail
@dataclass
class OutputTail:
    """Reads the output topic from its end at creation; counts and times what arrives.

    Time of an output: the record's timestamp when the topic stamps
    LogAppendTime (the broker's append time), else the wall clock when this
    consumer received it.
    """

    bootstrap: str
    topic: str
    keep_values: bool = False
    count: int = 0
    first_s: float | None = None
    last_s: float | None = None
    last_arrival: float | None = None
    values: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = partition_count(self.bootstrap, self.topic)
        self._c = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": f"peer-tail-{os.getpid()}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        })
        tps = []
        for p in range(n):
            _, hi = self._c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)
            tps.append(TopicPartition(self.topic, p, hi))
        self._c.assign(tps)

    def poll(self, timeout: float = 0.5) -> int:
        msgs = self._c.consume(10_000, timeout=timeout)
        now = time.time()
        got = 0
        for m in msgs:
            if m.error() is not None:
                continue
            kind, ts_ms = m.timestamp()
            t = ts_ms / 1000.0 if kind == TIMESTAMP_LOG_APPEND_TIME else now
            if self.first_s is None or t < self.first_s:
                self.first_s = t
            if self.last_s is None or t > self.last_s:
                self.last_s = t
            if self.keep_values:
                self.values.append(json.loads(m.value()))
            got += 1
        if got:
            self.count += got
            self.last_arrival = time.monotonic()
        return got

    def close(self) -> None:
        self._c.close()


# ---------------------------------------------------------------- the peer process
@dataclass
class PeerProcess:
    name: str
    proc: subprocess.Popen
    log_path: Path
    state_dir: str

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait for a clean exit; SIGKILL (this peer's own group) past ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def report(self) -> dict[str, Any] | None:
        """The JSON line a peer prints on exit (counts), if it printed one."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            i = line.find("{\"peer\"")
            if i >= 0:
                try:
                    return json.loads(line[i:].strip())
                except ValueError:
                    return None
        return None

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system, all threads) the peer process and its children used so far.

        Children count too: a peer started through a launcher (a shell, the JVM's
        own wrapper) does its work in a child process.
        """
        import psutil

        from bench.e2e_common import cpu_s

        try:
            return cpu_s(psutil.Process(self.proc.pid))
        except psutil.Error:
            return None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_peer(name: str, bootstrap: str, topics: dict[str, str], group: str, *,
               idle_exit_s: float = PEER_IDLE_EXIT_S, threads: int = 1, work_dir: str | None = None) -> PeerProcess:
    ensure_built(name)
    work = Path(work_dir or tempfile.mkdtemp(prefix=f"peer-{name}-"))
    work.mkdir(parents=True, exist_ok=True)
    state_dir = str(work / "state")
    log_path = work / "peer.log"
    cmd = peer_command(name, bootstrap, topics, group, state_dir, idle_exit_s, threads)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(work), start_new_session=True)
    return PeerProcess(name, proc, log_path, state_dir)


# ---------------------------------------------------------------- run_peer
def run_peer(name: str, bootstrap: str, topics: dict, group: str, expected_outputs: int | None,
             timeout_s: float) -> dict:
    """Run peer ``name`` over preloaded input; return its throughput.

    Starts the peer (consumer group / application id ``group``, which should be
    new so that it reads the inputs from the start), tails the output topic from
    its end, and waits until ``expected_outputs`` records arrived, or no new
    output arrived for ``IDLE_S`` seconds after the first one, or the peer
    exited, or ``timeout_s`` passed. Then it stops the peer with SIGTERM (clean
    shutdown, which commits its offsets).

    Measurement:
    - ``elapsed_s`` = time of the last output - time of the first output, where
      an output's time is its broker append time (LogAppendTime output topic;
      the wall clock of arrival at the tail if the topic has CreateTime).
      Start-up, group join, state restore and the wait for the first decision
      are left out; so is the idle wait at the end.
    - ``events`` = input click events the peer consumed: the group's committed
      offsets on the clickstream topic after the clean stop, minus where it
      started (the low watermarks for a new group). When the group committed
      nothing, the peer's own count (its exit line) is used.
    - ``events_per_s`` = events / elapsed_s. Every consumed event counts,
      emitted or dropped, as in the filter's own benchmark.
    Consent records are not counted as events, but the time spent on the ones
    interleaved with events (all peers process both inputs together) is in
    ``elapsed_s``.
    - ``peer_cpu_share``: CPU seconds the peer process (all its threads) used
      between the first and the last poll that saw outputs, per wall second
      (1.0 = one full core). On a shared machine it tells whether the peer had
      its core; ``events_per_s / peer_cpu_share`` is events per CPU-second.
    - ``load_avg_1m``: the machine's load average at the end, for context.
    """
    topics = _topics(topics)
    clickstream = topics["clickstream"]
    partitions = partition_count(bootstrap, clickstream)
    partition_count(bootstrap, topics["consent"])
    ensure_output_topic(bootstrap, topics["output"], partitions)
    ensure_built(name)
    before = committed_total(bootstrap, group, clickstream)
    lo, hi = watermarks_total(bootstrap, clickstream)
    start_offsets = before if before is not None else lo

    tail = OutputTail(bootstrap, topics["output"])
    t0 = time.monotonic()
    peer = start_peer(name, bootstrap, topics, group)
    stopped_by = "timeout"
    cpu_first = cpu_last = t_cpu_first = t_cpu_last = None
    try:
        while time.monotonic() - t0 < timeout_s:
            if tail.poll(0.5):
                cpu, now = peer.cpu_s(), time.monotonic()
                if cpu_first is None:
                    cpu_first, t_cpu_first = cpu, now
                cpu_last, t_cpu_last = cpu, now
            if expected_outputs is not None and tail.count >= expected_outputs:
                stopped_by = "expected_outputs"
                break
            if tail.last_arrival is not None and time.monotonic() - tail.last_arrival >= IDLE_S:
                stopped_by = "idle"
                break
            if not peer.running():
                tail.poll(1.0)
                stopped_by = f"peer exited ({peer.proc.returncode})"
                break
    finally:
        rc = peer.stop()
        tail.poll(0.5)
        tail.close()
        shutil.rmtree(peer.state_dir, ignore_errors=True)  # the log stays beside it
    wall = time.monotonic() - t0
    after = committed_total(bootstrap, group, clickstream)
    report = peer.report()
    if after is not None:
        events = after - start_offsets
    elif report and "events" in report:
        events = int(report["events"])
    else:
        events = hi - start_offsets
    elapsed = (tail.last_s - tail.first_s) if tail.count >= 2 else None
    cpu_share = None
    if cpu_first is not None and cpu_last is not None and t_cpu_last - t_cpu_first >= 1.0:
        cpu_share = round((cpu_last - cpu_first) / (t_cpu_last - t_cpu_first), 2)
    return {
        "peer": name,
        "events_per_s": round(events / elapsed, 1) if elapsed else None,
        "elapsed_s": round(elapsed, 3) if elapsed is not None else None,
        "outputs": tail.count,
        "events": events,
        "expected_outputs": expected_outputs,
        "stopped_by": stopped_by,
        "exit_code": rc,
        "wall_s": round(wall, 3),
        "peer_cpu_share": cpu_share,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "peer_report": report,
        "log": str(peer.log_path),
    }


if __name__ == "__main__":  # pragma: no cover - manual use
    import argparse

    ap = argparse.ArgumentParser(description="run one benchmark peer over preloaded topics")
    ap.add_argument("peer", choices=PEERS)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--clickstream", default="clickstream")
    ap.add_argument("--consent", default="consent")
    ap.add_argument("--output", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--expected-outputs", type=int)
    ap.add_argument("--timeout-s", type=float, default=600)
    a = ap.parse_args()
    print(json.dumps(run_peer(a.peer, a.bootstrap, {"clickstream": a.clickstream, "consent": a.consent,
                                                    "output": a.output}, a.group, a.expected_outputs,
                              a.timeout_s)))
