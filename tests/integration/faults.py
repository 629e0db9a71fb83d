"""Building blocks of the fault suite (test_fault_suite.py): a group of worker processes
that can be killed, stopped and restarted, a paced event stream with consent churn, and
counts read back from the broker. Every judgement is left to ``pfilter verify``."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import orjson

from streams import population
from streams.config import Settings
from streams.engine.codecs import get_codec
from streams.kafka.replay import replay  # noqa: F401 - re-exported for the suite
from streams.runtime.process import WorkerProcess
from tests.integration import kit

SUBJECTS = 2000
DAY = 24 * 3_600_000


class Group:
    """``n`` workers of one consumer group, each with its own port, state dir and instance id
    (a restart keeps them: the same transactional.id fences the killed predecessor)."""

    def __init__(self, s: Settings, tmp: Path, n: int, runtime: str) -> None:
        self.tmp = tmp
        self.runtime = runtime
        self.settings = [
            s.model_copy(update={"web_port": kit.free_port(), "state_dir": tmp / f"state{i}", "instance_id": f"w{i}"})
            for i in range(n)
        ]
        self.procs: list[WorkerProcess | None] = [None] * n
        self.starts = [0] * n

    def start(self, i: int) -> WorkerProcess:
        self.starts[i] += 1
        w = WorkerProcess(self.settings[i], self.tmp / f"w{i}.{self.starts[i]}.log", runtime=self.runtime).start()
        self.procs[i] = w
        return w

    def start_all(self) -> None:
        for i in range(len(self.procs)):
            self.start(i)
        for w in self.procs:
            assert w is not None
            w.wait_ready()

    def kill(self, i: int) -> None:
        w = self.procs[i]
        assert w is not None
        w.kill()

    def signal(self, i: int, sig: int) -> None:
        w = self.procs[i]
        assert w is not None and w.proc is not None
        os.killpg(w.proc.pid, sig)

    def stop_all(self) -> list[int | None]:
        codes = []
        for w in self.procs:
            if w is not None:
                if w.proc is not None and w.proc.poll() is None:
                    os.killpg(w.proc.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
                codes.append(w.stop())
        return codes

    def alive(self, i: int) -> bool:
        w = self.procs[i]
        return w is not None and w.proc is not None and w.proc.poll() is None

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("w*.log")))


def produce_population(s: Settings, now: int, seed: int = 11) -> population.PopulationSpec:
    spec = population.PopulationSpec(subjects=SUBJECTS, seed=seed)
    p = kit.producer(s)
    for rec in population.consent_records(spec, now):
        p.produce(s.topic_consent, orjson.dumps(rec), rec["subject_id"].encode())
    assert p.flush(60) == 0
    return spec


class Stream:
    """Events at a fixed rate in a background thread, with consent churn (withdrawals,
    re-grants, erasures, ...) mixed in: one change per ``churn_every`` events."""

    def __init__(self, s: Settings, spec: population.PopulationSpec, now: int, events: int, seconds: float,
                 *, first: int = 0, churn_every: int = 40) -> None:
        self.s, self.spec, self.now = s, spec, now
        self.events, self.seconds, self.first, self.churn_every = events, seconds, first, churn_every
        self.produced = 0
        self.changes = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            s = self.s
            p = kit.producer(s)
            churn = population.churn(self.spec, self.now + self.first, self.events // self.churn_every + 1)
            t0 = time.monotonic()
            formats = s.input_formats()
            codecs = {t: get_codec("purchase_event" if t == s.topic_purchases else "click_event", "avro")
                      for t in (s.topic_clickstream, s.topic_purchases) if formats[t] == "avro"}
            for i, (kind, value, key) in enumerate(
                    population.event_bytes(self.spec, self.now, self.events, first=self.first)):
                topic = s.topic_purchases if kind == "purchase" else s.topic_clickstream
                if topic in codecs:  # the population writes JSON; Avro topics get the same event in Avro
                    value = codecs[topic].encode(orjson.loads(value))
                p.produce(topic, value, key.encode() if key else None)
                self.produced += 1
                if i % self.churn_every == 0:
                    sid, rec = next(churn)
                    p.produce(s.topic_consent, orjson.dumps(rec) if rec is not None else None, sid.encode())
                    self.changes += 1
                if i % 100 == 0:
                    p.poll(0)
                    ahead = t0 + self.seconds * i / self.events - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
            assert p.flush(60) == 0
        except BaseException as exc:  # noqa: BLE001 - surfaced by join()
            self.error = exc

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 120.0) -> int:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the event stream did not finish"
        if self.error is not None:
            raise self.error
        return self.produced


def decided_inputs(s: Settings, *, read_committed: bool) -> set[tuple[str, int, int]]:
    """Input records of the event topics that have a decision record."""
    out = set()
    for *_x, v, _h, _t in replay(s.bootstrap, [s.topic_decisions], read_committed=read_committed):
        d = orjson.loads(v)
        if d["source_topic"] != s.topic_consent:
            out.add((d["source_topic"], d["source_partition"], d["source_offset"]))
    return out


def wait_decided(s: Settings, n: int, *, read_committed: bool, timeout: float = 180.0,
                 on_wait: object = None) -> None:
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        got = len(decided_inputs(s, read_committed=read_committed))
        if got >= n:
            if s.runtime == "faust":  # its consent agent commits too: let it finish (kit.wait_consumed)
                kit.wait_consumed(s, [s.topic_consent, s.topic_clickstream, s.topic_purchases],
                                  timeout=max(1.0, deadline - time.monotonic()))
            return
        if callable(on_wait):
            on_wait()
        time.sleep(1.0)
    raise TimeoutError(f"{got} of {n} inputs decided after {timeout}s")


def input_count(s: Settings) -> int:
    return sum(1 for _ in replay(s.bootstrap, [s.topic_clickstream, s.topic_purchases]))


def chaos(group: Group, kills: int, every: float, rng: random.Random, stream: Stream) -> int:
    """SIGKILL a random worker every ``every`` seconds and restart it at once, ``kills`` times."""
    done = 0
    while done < kills:
        time.sleep(every)
        i = rng.randrange(len(group.procs))
        group.kill(i)
        done += 1
        group.start(i)
    return done
