"""End-to-end benchmark (`pfilter bench e2e`): real broker, real worker processes.

Everything runs on one machine: the local broker (started with
:class:`~streams.kafka.broker.LocalBroker` unless ``KAFKA_BOOTSTRAP_SERVERS``
is set), this driver, and one worker process (or peer) at a time. Every run
uses its own topics (``e2e.<run>.*``, via the topic settings and
``topic_output_prefix`` as ``pfilter demo`` does) and its own consumer groups.

Phases, in order (the run as a whole is limited to ``max_total_s``, 19
minutes by default, counted from the command's start including peer builds
and the broker start; each drain's budget is cut if the phases after it would
not fit, and the peers, last, share what is left equally):

1. **preload** (``streams.loadgen``, backlog mode): consent for ``subjects``
   subjects (~95% of them have a record), then ``events`` click/purchase
   events (15% purchases) spread over the past hour, murmur2-partitioned.
2. **consent restore and memory, fast runtime** (``PFILTER_STORE`` does not
   apply: the fast runtime keeps a dict per partition). Three worker starts on
   *idle* event topics (a few hundred events, so each run commits and its
   numbers are not polluted by event fetch buffers):
   a baseline on an *empty* consent topic, a restore of the preloaded consent
   topic, and a restart of the same group (state from its local checkpoint,
   written on the clean stop). Time to ready is ``WorkerProcess.wait_ready``
   (process start, imports, group join, and the consent catch-up up to the
   high watermark that ``/readyz`` waits for). The **restore rate** is
   ``consent records / (restore ready - baseline ready)``: the baseline's time
   to ready is the fixed start-up cost that an empty consent topic also pays,
   so the difference is the time spent reading and applying consent. The
   gross rate (records / restore ready) is reported beside it.
   **Memory per subject**: worker RSS (psutil) after the restore, minus the
   baseline worker's RSS, divided by the consent records in state. It counts
   everything the restore left in the process: the dicts and state tuples,
   and heap the consent fetches and JSON decoding grew that the allocator
   kept. The same figure after the checkpoint restart (no fetches, no
   decoding) is reported beside it.
3. **drain** per runtime (``fast-eos``: fast runtime, exactly_once;
   ``fast-alo``: fast, at_least_once; ``faust``: faust runtime, RocksDB
   store), each in its own consumer group over the whole preloaded backlog.
   The worker's ``/metrics`` counter ``pfilter_events_in_total`` (summed over
   both event topics; the fast runtime increments it after a batch's outputs
   and offsets were committed, faust after the batch was decided) is sampled
   every ``SAMPLE_S``. **events/s = events decided between the first sample
   that shows decisions and the first sample that shows the final count (or
   the end of the budget) / the time between those samples.** Start-up and
   consent restore are outside that window; the window is capped at
   ``budget_s`` after the first decision, so a runtime that cannot drain the
   backlog in the budget is measured over the budget. Why the metric, not the
   decision topic: reading back millions of decision records would take as
   long as the run and compete with it for the two cores; sampling costs one
   small HTTP request per quarter second, and taking both ends of the window
   at sample instants makes the count and the time exact over that window
   (error: one sampling interval on the end of a drained run, <1% of a
   30-second window). The worker's CPU use over the window (psutil, all
   threads) is reported too: on a shared machine a worker may not get a core.
   The worker's ``pfilter_stage_seconds_total{stage}`` counters, read at
   both ends of the window, give the share of the window's wall time each
   stage of its loop took (consume, barrier, decide, produce, commit; faust:
   barrier, decide, send, consent): the profile that says where a runtime's
   time goes, measured on the run itself at the cost of a clock read per
   stage per batch.
3b. **faust floor** (when the faust runtime is measured): ``bench/faust_floor.py``,
   a faust agent that only takes batches of the same preloaded event topics
   (same batch size and buffer), for at most ``FAUST_FLOOR_S``: the rate no
   faust-based filter can exceed on this machine.
4. **faust memory** (RocksDB): baseline and restore runs like phase 2 with
   the faust runtime; the restore run lasts until its consent agent applied
   every consent record or ``FAUST_MEMORY_S``. Reported: RSS growth per
   subject held (RocksDB or the barrier's read-ahead overlay) and the on-disk
   size of the worker's state dir (``<state>/faust``) per subject in RocksDB.
5. **latency** at a fixed rate (``latency_rate`` events/s for
   ``latency_duration_s``, ``latency_churn`` consent changes per event)
   through the fast runtime (both guarantees by default), produced live by
   ``streams.loadgen`` into fresh input topics while the worker runs (the
   restore phase's group, so its checkpoint makes the start quick). Per
   decision record: **latency = the decision record's broker timestamp - the
   input record's CreateTime.** The input's CreateTime is set by the load
   generator's producer when it calls produce() (so producer batching, linger
   5 ms, is included). The input topics keep the default ``CreateTime``
   (LogAppendTime is not set on them); the decision topic of this phase is
   created by the benchmark with ``message.timestamp.type=LogAppendTime`` so
   that its timestamp is the broker's clock when it appended the decision
   (otherwise it would be the worker producer's CreateTime, taken before the
   worker's own batching and the broker round trip). Producer, broker and
   worker share one clock (one machine), so there is no skew. In exactly-once
   mode a decision becomes visible to read_committed consumers at the
   transaction commit shortly after its append; that commit time is not in
   the figure. Also reported: the worker-side part (``decided_at`` - input
   CreateTime).
6. **peers** (``bench/peers/run.py``'s ``run_peer``): Kafka Streams, Quix
   Streams and naive faust run only the ``offers`` filter over the *same*
   preloaded clickstream and consent topics (clicks only: the peers do not
   read purchases). Their rate is events consumed / time between first and
   last output (broker append time), as run_peer's docstring defines. Each
   peer gets ``budget_s + PEER_START_ALLOWANCE_S`` in total (start, consent
   restore, events) or its share of the time left; run_peer stops it then and
   measures over the window it had (run_peer's stop after 5 s without output
   is lifted for this: a peer restoring a large consent topic pauses its
   outputs for longer). Our ratio to a peer is our events/s / its events/s:
   note that our runtimes decide three engines (offers, email, partner_ads)
   and write one decision record per event (an entry per engine), and also decide purchases (larger
   events), while the peers decide one engine and write only the emitted
   events.

Targets (reported as met or missed, with the margin): fast runtime >= 150,000
events/s per worker process and ahead of Kafka Streams; faust >= 30,000
events/s; consent restore >= 500,000 records/s; memory mode <= 100 bytes of
RSS per subject.
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from streams.config import PROJECT_ROOT, Settings
from streams.kafka.clients import admin_config

#: Defaults: 2M events and 1M subjects (the sizes the targets are stated for).
#: The budget is 60 s per drain so that the whole run (three runtimes and three
#: peers, each restoring 1M subjects' consent first, plus the restore, memory
#: and latency phases) stays within 20 minutes on a 2-core machine.
DEFAULT_EVENTS = 2_000_000
DEFAULT_SUBJECTS = 1_000_000
DEFAULT_BUDGET_S = 60.0
RUNTIMES: dict[str, tuple[str, str]] = {
    "fast-eos": ("fast", "exactly_once"),
    "fast-alo": ("fast", "at_least_once"),
    "faust": ("faust", "at_least_once"),
}
PEER_NAMES = ("kstreams", "quix", "faust")
#: Metrics sampling interval during a drain (see the module docstring).
SAMPLE_S = 0.25
#: Longest a worker may take from start to its first decision (start-up plus a
#: 1M-record consent restore at well under the target rate) before the drain
#: counts as failed.
STARTUP_CAP_S = 240.0
#: Time a peer gets on top of the budget for its start and its consent restore
#: (Kafka Streams applies ~9,000 consent records/s here: ~110 s for 1M).
PEER_START_ALLOWANCE_S = 120.0
#: Whole run, from the command's start (peer builds and broker start included):
#: phases that come late (the peers) get what is left of it, shared equally.
MAX_TOTAL_S = 1140.0
#: Kept free at the end for the report, and the least a peer is given.
REPORT_RESERVE_S = 15.0
PEER_MIN_S = 45.0
#: The faust memory phase lasts at most this long (its consent agent applies
#: ~1,000 records/s, so it never finishes a large population anyway).
FAUST_MEMORY_S = 45.0
#: Stages of pfilter_stage_seconds_total, in the order the report lists them.
STAGE_ORDER = ("consume", "barrier", "decide", "produce", "commit", "consent", "send")
#: The faust floor (bench/faust_floor.py) runs at most this long.
FAUST_FLOOR_S = 30.0
#: Before each measured drain or peer run, wait (at most QUIET_WAIT_S) until
#: less than QUIET_BUSY of the machine's CPU is busy: on a shared machine other
#: processes would otherwise take the worker's core. The busy share seen is
#: reported beside each figure.
QUIET_BUSY = 0.5
QUIET_WAIT_S = 15.0
#: Events on the idle topics of the restore/memory phases: enough that every
#: partition sees some and the worker commits (the fast runtime's checkpoint
#: is used on restart only when it matches a committed consent offset).
IDLE_EVENTS = 600
#: Pause before reading RSS, so that the worker's last batch and fetches are done.
SETTLE_S = 2.0
LATENCY_RATE = 2000.0
LATENCY_DURATION_S = 20.0
#: Consent changes per event during the latency phase (1%: 20 changes/s at 2,000 events/s).
LATENCY_CHURN = 0.01
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"

TARGETS = {
    "fast_events_per_s": 150_000,
    "faust_events_per_s": 30_000,
    "restore_records_per_s": 500_000,
    "memory_bytes_per_subject": 100,
}


@dataclass
class E2EOptions:
    events: int = DEFAULT_EVENTS
    subjects: int = DEFAULT_SUBJECTS
    budget_s: float = DEFAULT_BUDGET_S
    runtimes: tuple[str, ...] = tuple(RUNTIMES)
    peers: tuple[str, ...] = PEER_NAMES
    latency_runtimes: tuple[str, ...] = ("fast-eos", "fast-alo")
    latency_rate: float = LATENCY_RATE
    latency_duration_s: float = LATENCY_DURATION_S
    latency_churn: float = 0.01
    memory: bool = True
    faust_memory: bool = True
    max_total_s: float = MAX_TOTAL_S
    seed: int = 7
    results_dir: Path = RESULTS_DIR
    write_files: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class E2EError(RuntimeError):
    """The benchmark could not run (broker, topics); the message says why."""


# ---------------------------------------------------------------------- helpers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(text: str) -> dict[str, float]:
    """Prometheus text -> {sample name: sum over labels} (``*_created`` left out)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def scrape_labeled(text: str, name: str) -> dict[str, float]:
    """Prometheus text -> {first label value: value} of one sample name."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                label = next(iter(s.labels.values()), "")
                out[label] = out.get(label, 0.0) + s.value
    return out


def _stages(worker: Any) -> dict[str, float] | None:
    try:
        return scrape_labeled(worker.metrics(), "pfilter_stage_seconds_total")
    except Exception:  # noqa: BLE001 - worker busy or gone: no sample
        return None


def _metric(worker: Any, name: str) -> float | None:
    try:
        return scrape(worker.metrics()).get(name, 0.0)
    except Exception:  # noqa: BLE001 - worker busy or gone: no sample
        return None


def _cpu_s(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(q / 100.0 * (len(v) - 1)))))
    return v[k]


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------------- the run
class E2E:
    def __init__(self, base: Settings, opts: E2EOptions, say: Callable[[str], None] = print) -> None:
        self.base = base
        self.opts = opts
        self.say = say
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.stamp = stamp
        self.run_id = f"{stamp[9:]}-{uuid.uuid4().hex[:4]}"
        self.pre = f"e2e.{self.run_id}."
        self.work = Path(base.state_dir) / "e2e" / self.run_id
        self.work.mkdir(parents=True, exist_ok=True)
        self.secret = base.pseudonym_key or (None if base.pseudonym_key_file else f"e2e-only-secret-{self.run_id}")
        self.results: dict[str, Any] = {"run": self.run_id}
        self.idle_events = 0
        self.n_consent = 0
        self.phase_times: dict[str, float] = {}

    # -------------------------------------------------------------- settings / topics
    def settings(self, name: str, *, inputs: str = "main", consent: str = "main", **changes: Any) -> Settings:
        """Settings for one phase: its input topics, its own outputs, group and state dir."""
        pre = self.pre
        upd: dict[str, Any] = {
            "topic_clickstream": f"{pre}{inputs}.clickstream",
            "topic_purchases": f"{pre}{inputs}.purchases",
            "topic_consent": f"{pre}{consent}.consent",
            "topic_output_prefix": f"{pre}{name}.personalization.",
            "topic_decisions": f"{pre}{name}.decisions",
            "topic_erasures": f"{pre}{name}.erasures",
            "topic_dlq": f"{pre}{name}.dlq",
            "group_id": f"e2e-{self.run_id}-{name}",
            "state_dir": self.work / name,
            "web_port": _free_port(),
            "pseudonym_key": self.secret,
        }
        upd.update(changes)
        return self.base.model_copy(update=upd)

    @staticmethod
    def engine_topics(s: Settings) -> list[str]:
        from streams.wiring import policy_for_topics

        return [e.topic for e in policy_for_topics(s).engines]

    def create(self, s: Settings) -> None:
        from streams.kafka.admin import create_topics

        create_topics(s, self.engine_topics(s))

    # -------------------------------------------------------------- broker
    def ensure_broker(self) -> None:
        from streams.kafka.broker import BrokerError, LocalBroker

        if self.base.kafka_bootstrap_servers:
            self.results["broker"] = {"bootstrap": self.base.bootstrap, "managed": False}
            return
        t = time.monotonic()
        try:
            st = LocalBroker(self.base).up()
        except BrokerError as exc:
            raise E2EError(str(exc)) from None
        self.results["broker"] = {"bootstrap": st.bootstrap, "managed": True, "pid": st.pid,
                                  "up_s": round(time.monotonic() - t, 1), "heap": self.base.kafka_heap,
                                  "kafka_version": self.base.kafka_version}
        self.say(f"broker at {st.bootstrap} (pid {st.pid}); stop it with `pfilter kafka down --port {self.base.kafka_port}`")
        self._drop_old_topics()

    def _drop_old_topics(self) -> None:
        """Earlier e2e runs' topics, on our own local broker only (disk)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(admin_config(self.base))
        old = [t for t in admin.list_topics(timeout=30).topics if t.startswith("e2e.")]
        if old:
            for fut in admin.delete_topics(old, operation_timeout=60).values():
                try:
                    fut.result()
                except Exception:  # noqa: BLE001 - best-effort housekeeping
                    pass
            self.say(f"dropped {len(old)} topics of earlier e2e runs")

    # -------------------------------------------------------------- workers
    def start_worker(self, s: Settings, name: str, runtime: str) -> Any:
        from streams.runtime.process import WorkerProcess

        return WorkerProcess(s, self.work / f"{name}.log", runtime=runtime).start()

    def wait_events(self, worker: Any, n: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        v = 0.0
        while time.monotonic() < deadline:
            v = _metric(worker, "pfilter_events_in_total") or 0.0
            if v >= n:
                return v
            if worker.proc.poll() is not None:
                break
            time.sleep(SAMPLE_S)
        return v

    # -------------------------------------------------------------- phase 1
    def preload(self) -> None:
        from streams import loadgen

        s = self.settings("preload")
        self.create(s)
        t = time.monotonic()
        self.say(f"preloading consent of {self.opts.subjects:,} subjects and {self.opts.events:,} events…")
        st = loadgen.run(s, count=self.opts.events, subjects=self.opts.subjects, seed=self.opts.seed)
        if st.delivery_errors:
            raise E2EError(f"preload: {st.delivery_errors} records failed delivery ({st.first_error})")
        self.n_consent = st.consent
        self.results["preload"] = {**st.summary(), "wall_s": round(time.monotonic() - t, 1),
                                   "consent_per_s": round(st.consent / max(st.consent_elapsed_s, 1e-9))}
        self.say(f"preloaded {st.consent:,} consent records ({st.consent_elapsed_s:.1f}s) and {st.events:,} events "
                 f"({st.clicks:,} clicks, {st.purchases:,} purchases) at {st.events_per_s:,.0f}/s")
        if self.opts.memory or self.opts.faust_memory:
            si = self.settings("idle-setup", inputs="idle", consent="empty")
            self.create(si)
            st2 = loadgen.run(si, count=IDLE_EVENTS, subjects=self.opts.subjects, seed=self.opts.seed + 1,
                              consent=False)
            self.idle_events = st2.events

    # -------------------------------------------------------------- phase 2
    def _ready_run(self, s: Settings, name: str, runtime: str, *, idle_events: bool = True) -> dict[str, Any]:
        """Start, time to ready, wait for the idle events, settle, RSS; the worker keeps running.

        ``idle_events=False`` for a restart of a group that already committed them.
        """
        w = self.start_worker(s, name, runtime)
        ready_s = w.wait_ready(timeout=STARTUP_CAP_S)
        consent_at_ready = _metric(w, "pfilter_consent_records_total")
        if idle_events:
            self.wait_events(w, self.idle_events, timeout=60)
        time.sleep(SETTLE_S)
        return {"worker": w, "ready_s": round(ready_s, 3), "rss": _rss(w.proc.pid),
                "consent_at_ready": consent_at_ready}

    def restore_fast(self) -> None:
        self.say("fast runtime: baseline (empty consent), restore, restart from checkpoint…")
        out: dict[str, Any] = {}
        s_base = self.settings("fast-baseline", inputs="idle", consent="empty", runtime="fast")
        r = self._ready_run(s_base, "fast-baseline", "fast")
        r.pop("worker").stop()
        out["baseline"] = r
        s_rest = self.settings("fast-restore", inputs="idle", runtime="fast")
        r = self._ready_run(s_rest, "fast-restore", "fast")
        w = r.pop("worker")
        r["consent_records"] = _metric(w, "pfilter_consent_records_total")
        w.stop()
        out["restore"] = r
        s_again = s_rest.model_copy(update={"web_port": _free_port()})
        r = self._ready_run(s_again, "fast-restart", "fast", idle_events=False)
        w = r.pop("worker")
        r["consent_records"] = _metric(w, "pfilter_consent_records_total")
        w.stop()
        out["restart_from_checkpoint"] = r
        n = out["restore"]["consent_records"] or self.n_consent
        net = out["restore"]["ready_s"] - out["baseline"]["ready_s"]
        out["consent_records"] = int(n)
        out["restore_net_s"] = round(net, 3)
        out["restore_records_per_s"] = round(n / net) if net > 0 else None
        out["restore_records_per_s_gross"] = round(n / out["restore"]["ready_s"])
        ck = out["restart_from_checkpoint"]
        ck_net = ck["ready_s"] - out["baseline"]["ready_s"]
        out["restart_net_s"] = round(ck_net, 3)
        out["restart_records_per_s"] = round(n / ck_net) if ck_net > 0 else None
        out["restart_read_from_log"] = ck.get("consent_records")
        growth = out["restore"]["rss"] - out["baseline"]["rss"]
        out["rss_growth_bytes"] = growth
        out["bytes_per_subject"] = round(growth / n, 1) if n else None
        # the same state loaded from the checkpoint: no consent fetches or JSON
        # decoding happened in this process, so what the allocator kept from
        # them is absent; closer to the size of the state itself
        ck_growth = ck["rss"] - out["baseline"]["rss"]
        out["rss_growth_bytes_checkpoint"] = ck_growth
        out["bytes_per_subject_checkpoint"] = round(ck_growth / n, 1) if n else None
        self.results["restore_fast"] = out
        self.say(f"  restore {n:,.0f} records: ready in {out['restore']['ready_s']:.2f}s "
                 f"(baseline {out['baseline']['ready_s']:.2f}s) -> {out['restore_records_per_s'] or 0:,} records/s; "
                 f"restart from checkpoint ready in {ck['ready_s']:.2f}s; "
                 f"RSS +{growth / 2**20:.0f} MiB = {out['bytes_per_subject']} B/subject "
                 f"(after the checkpoint restart: {out['bytes_per_subject_checkpoint']} B/subject)")

    # -------------------------------------------------------------- phase 3
    def drain(self, key: str, budget: float) -> dict[str, Any]:
        runtime, guarantee = RUNTIMES[key]
        name = f"drain-{key}"
        s = self.settings(name, runtime=runtime, processing_guarantee=guarantee)
        self.create(s)
        total = self.opts.events
        self.say(f"drain {key}: {total:,} events, budget {budget:.0f}s after the first decision…")
        res: dict[str, Any] = {"runtime": runtime, "processing_guarantee": guarantee, "budget_s": round(budget, 1),
                               "machine_busy_before": self.quiet(), "load_avg_before": round(os.getloadavg()[0], 2)}
        w = self.start_worker(s, name, runtime)
        t0 = time.monotonic()
        try:
            try:
                res["ready_s"] = round(w.wait_ready(timeout=STARTUP_CAP_S), 3)
            except (TimeoutError, RuntimeError) as exc:
                res["error"] = str(exc).splitlines()[0]
                return res
            proc = psutil.Process(w.proc.pid)
            first: tuple[float, float, float] | None = None  # (t, count, cpu)
            last: tuple[float, float, float] | None = None
            stages_first: dict[str, float] | None = None
            stages_last: dict[str, float] | None = None
            stop = "budget"
            prev_v = -1.0
            while True:
                v = _metric(w, "pfilter_events_in_total")
                t = time.monotonic()
                if v is not None:
                    if first is None and v > 0:
                        first = (t, v, _cpu_s(proc))
                        stages_first = _stages(w)
                        res["first_decision_s"] = round(t - t0, 2)
                    if first is not None and v != prev_v:
                        last = (t, v, _cpu_s(proc))
                        stages_last = _stages(w)
                    prev_v = v
                    if v >= total:
                        stop = "drained"
                        break
                if first is not None and t - first[0] >= budget:
                    last = (t, v if v is not None else last[1], _cpu_s(proc))  # type: ignore[index]
                    stages_last = _stages(w) or stages_last
                    break
                if first is None and t - t0 > STARTUP_CAP_S:
                    stop = "no decision within the start-up cap"
                    break
                if w.proc.poll() is not None:
                    stop = f"worker exited ({w.proc.returncode})"
                    break
                time.sleep(SAMPLE_S)
            res["stopped_by"] = stop
            res["rss_end"] = _rss(w.proc.pid) if w.proc.poll() is None else None
            res["consent_records"] = _metric(w, "pfilter_consent_records_total")
            if first is not None and last is not None and last[0] > first[0]:
                window = last[0] - first[0]
                res["window_s"] = round(window, 2)
                res["events_in_window"] = int(last[1] - first[1])
                res["events_decided"] = int(last[1])
                res["events_per_s"] = round((last[1] - first[1]) / window)
                res["cpu_share"] = round((last[2] - first[2]) / window, 2)
                if last[2] > first[2]:
                    res["events_per_cpu_s"] = round((last[1] - first[1]) / (last[2] - first[2]))
                if stages_first is not None and stages_last is not None:
                    # share of the window's wall time per stage of the worker's loop
                    res["stages"] = {k: round((stages_last.get(k, 0.0) - stages_first.get(k, 0.0)) / window, 3)
                                     for k in stages_last}
            res["load_avg_end"] = round(os.getloadavg()[0], 2)
        finally:
            code = w.stop()
            res["exit_code"] = code
            res["log"] = str(w.log_file)
        self.say(f"  {key}: {res.get('events_per_s', 0) or 0:,} events/s over {res.get('window_s', 0)}s "
                 f"({res.get('events_in_window', 0):,} events, {stop}; worker CPU {res.get('cpu_share')} cores)")
        return res

    def faust_floor(self, timeout_s: float) -> dict[str, Any]:
        """bench/faust_floor.py over the preloaded event topics (see its docstring)."""
        import subprocess

        import orjson

        s = self.settings("preload")
        busy = self.quiet()
        self.say(f"faust floor: a bare take_events agent over the same topics, up to {timeout_s:.0f}s…")
        cmd = [sys.executable, "-m", "bench.faust_floor", s.bootstrap, f"e2e-{self.run_id}-faust-floor",
               f"{s.topic_clickstream},{s.topic_purchases}", str(self.opts.events), str(timeout_s),
               str(self.base.batch_size)]
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=timeout_s + 90, cwd=PROJECT_ROOT)
            res = orjson.loads(p.stdout.strip().splitlines()[-1])
        except Exception as exc:  # noqa: BLE001 - the floor is context, not a figure we must have
            return {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "machine_busy_before": busy}
        res["machine_busy_before"] = busy
        self.say(f"  faust floor: {res.get('events_per_s') or 0:,} events/s over {res.get('window_s')}s")
        return res

    # -------------------------------------------------------------- phase 4
    def peer(self, name: str, timeout_s: float) -> dict[str, Any]:
        from bench.peers import run as peers_run

        s = self.settings("preload")
        topics = {"clickstream": s.topic_clickstream, "consent": s.topic_consent,
                  "output": f"{self.pre}peer-{name}.offers"}
        busy = self.quiet()
        self.say(f"peer {name}: up to {timeout_s:.0f}s…")
        # run_peer stops a peer after IDLE_S without new output. A peer that is
        # restoring a large consent topic pauses its outputs for longer than
        # that (Kafka Streams interleaves consent and events by timestamp), so
        # here only the time budget (or the peer's own exit) ends a run.
        saved_idle = peers_run.IDLE_S
        peers_run.IDLE_S = timeout_s
        try:
            peers_run.ensure_built(name)
            res = peers_run.run_peer(name, s.bootstrap, topics, f"e2e-{self.run_id}-peer-{name}", None, timeout_s)
        except Exception as exc:  # noqa: BLE001 - one peer failing must not lose the other figures
            msg = f"{type(exc).__name__}: {exc}"
            self.say(f"  {name}: failed: {msg.splitlines()[0]}")
            return {"peer": name, "error": msg[:2000], "machine_busy_before": busy}
        finally:
            peers_run.IDLE_S = saved_idle
        res["machine_busy_before"] = busy
        res["timeout_s"] = round(timeout_s, 1)
        rep = res.pop("peer_report", None) or {}
        res["peer_consent_records"] = rep.get("consent")
        res["peer_emitted"] = rep.get("emitted")
        self.say(f"  {name}: {res.get('events_per_s') or 0:,.0f} events/s over {res.get('elapsed_s')}s "
                 f"({res.get('events'):,} events, {res.get('stopped_by')}; CPU {res.get('peer_cpu_share')} cores)")
        return res

    def quiet(self) -> float:
        """Wait until the machine is mostly idle (at most QUIET_WAIT_S); the busy share seen."""
        from bench.peers.measure import wait_for_quiet

        return round(wait_for_quiet(QUIET_BUSY, QUIET_WAIT_S), 2)

    # -------------------------------------------------------------- phase 5
    def memory_faust(self) -> None:
        self.say("faust runtime (RocksDB): baseline (empty consent) and consent restore…")
        out: dict[str, Any] = {"store": self.base.store}
        s_base = self.settings("faust-baseline", inputs="idle", consent="empty", runtime="faust")
        r = self._ready_run(s_base, "faust-baseline", "faust")
        r.pop("worker").stop()
        r["state_dir_bytes"] = _du(Path(s_base.state_dir) / "faust")
        out["baseline"] = r
        s = self.settings("faust-restore", inputs="idle", runtime="faust")
        w = self.start_worker(s, "faust-restore", "faust")
        try:
            ready_s = w.wait_ready(timeout=STARTUP_CAP_S)
            t0 = time.monotonic()
            applied = 0.0
            first: tuple[float, float] | None = None
            stop = "budget"
            limit = min(self.opts.budget_s, FAUST_MEMORY_S)
            while time.monotonic() - t0 < limit:
                v = _metric(w, "pfilter_consent_records_total")
                if v is not None:
                    applied = v
                    if first is None and v > 0:
                        first = (time.monotonic(), v)
                    if v >= self.n_consent:
                        stop = "all applied"
                        break
                if w.proc.poll() is not None:
                    stop = "worker exited"
                    break
                time.sleep(SAMPLE_S)
            t_end = time.monotonic()
            self.wait_events(w, self.idle_events, timeout=30)
            time.sleep(SETTLE_S)
            rss = _rss(w.proc.pid) if w.proc.poll() is None else None
            ahead = _metric(w, "pfilter_barrier_catchup_records_total")
            applied = _metric(w, "pfilter_consent_records_total") or applied
        finally:
            w.stop()
        state_bytes = _du(Path(s.state_dir) / "faust")
        n = int(applied)
        out["restore"] = {"ready_s": round(ready_s, 3), "consent_applied": n, "stopped_by": stop, "rss": rss,
                          "state_dir_bytes": state_bytes, "barrier_read_ahead": int(ahead or 0)}
        if first is not None and t_end > first[0]:
            out["consent_apply_per_s"] = round((applied - first[1]) / (t_end - first[0]))
        # The worker holds a subject's state in RocksDB once its consent agent
        # applied the record, and before that in the barrier's read-ahead overlay
        # (a dict in memory) once an event of the partition made the barrier
        # read ahead: RSS is divided by all subjects held either way, disk by
        # those in RocksDB.
        held = max(n, min(self.n_consent, int(ahead or 0)))
        out["subjects_held"] = held
        if rss is not None and held:
            out["rss_growth_bytes"] = rss - out["baseline"]["rss"]
            out["bytes_per_subject"] = round(out["rss_growth_bytes"] / held, 1)
        if n:
            out["disk_bytes_per_subject"] = round((state_bytes - out["baseline"]["state_dir_bytes"]) / n, 1)
        self.results["memory_faust"] = out
        self.say(f"  faust: consent agent applied {n:,} records ({stop}, {out.get('consent_apply_per_s', 0):,}/s), "
                 f"barrier read {int(ahead or 0):,} ahead; RSS +{out.get('rss_growth_bytes', 0) / 2**20:.0f} MiB = "
                 f"{out.get('bytes_per_subject')} B/subject held; state dir {state_bytes / 2**20:.0f} MiB "
                 f"({out.get('disk_bytes_per_subject')} B/subject in RocksDB)")

    # -------------------------------------------------------------- phase 6
    def latency(self, key: str) -> dict[str, Any]:
        from confluent_kafka.admin import AdminClient, NewTopic

        from streams import loadgen
        from streams.kafka.replay import replay

        runtime, guarantee = RUNTIMES[key]
        name = f"lat-{key}"
        changes: dict[str, Any] = {"runtime": runtime, "processing_guarantee": guarantee}
        if self.opts.memory and runtime == "fast":
            # the restore phase's group and state dir: its checkpoint makes the start quick
            changes |= {"group_id": f"e2e-{self.run_id}-fast-restore", "state_dir": self.work / "fast-restore"}
        s = self.settings(name, inputs=name, **changes)
        admin = AdminClient(admin_config(s))
        fut = admin.create_topics([NewTopic(s.topic_decisions, s.partitions, s.replication_factor,
                                            config={"message.timestamp.type": "LogAppendTime"})])
        fut[s.topic_decisions].result(30)
        self.create(s)
        rate, duration = self.opts.latency_rate, self.opts.latency_duration_s
        self.say(f"latency {key}: {rate:,.0f} events/s for {duration:.0f}s…")
        w = self.start_worker(s, name, runtime)
        res: dict[str, Any] = {"runtime": runtime, "processing_guarantee": guarantee, "rate": rate,
                               "duration_s": duration, "churn_share": self.opts.latency_churn}
        try:
            res["ready_s"] = round(w.wait_ready(timeout=STARTUP_CAP_S), 3)
            st = loadgen.run(s, rate=rate, duration=duration, subjects=self.opts.subjects, seed=self.opts.seed + 2,
                             churn_share=self.opts.latency_churn, consent=False)
            res["produced"] = st.events
            res["produced_per_s"] = round(st.events_per_s, 1)
            res["consent_changes"] = st.consent
            res["delivery_errors"] = st.delivery_errors
            res["decided"] = int(self.wait_events(w, st.events, timeout=60))
            res["load_avg_end"] = round(os.getloadavg()[0], 2)
        finally:
            res["exit_code"] = w.stop()
        inputs = {s.topic_clickstream, s.topic_purchases}
        created: dict[tuple[str, int, int], int] = {}
        for t, p, o, _k, _v, _h, ts in replay(s, sorted(inputs)):
            created[(t, p, o)] = ts
        import orjson

        e2e_ms: list[float] = []
        worker_ms: list[float] = []
        events_seen: set[tuple[str, int, int]] = set()
        for _t, _p, _o, _k, v, _h, ts in replay(s, [s.topic_decisions], read_committed=True):
            d = orjson.loads(v)
            src = (d.get("source_topic"), d.get("source_partition"), d.get("source_offset"))
            c = created.get(src)  # type: ignore[arg-type]
            if c is None:
                continue
            events_seen.add(src)  # type: ignore[arg-type]
            e2e_ms.append(ts - c)
            if d.get("decided_at") is not None:
                worker_ms.append(d["decided_at"] - c)
        res["decision_records"] = len(e2e_ms)
        res["events_with_decisions"] = len(events_seen)
        if e2e_ms:
            res.update({
                "p50_ms": _pct(e2e_ms, 50), "p90_ms": _pct(e2e_ms, 90), "p99_ms": _pct(e2e_ms, 99),
                "max_ms": max(e2e_ms), "mean_ms": round(statistics.fmean(e2e_ms), 1),
                "decide_p50_ms": _pct(worker_ms, 50), "decide_p99_ms": _pct(worker_ms, 99),
            })
        self.say(f"  {key}: p50 {res.get('p50_ms')} ms, p99 {res.get('p99_ms')} ms, max {res.get('max_ms')} ms "
                 f"over {len(e2e_ms):,} decisions of {len(events_seen):,} events")
        return res

    # -------------------------------------------------------------- all
    def _timed(self, label: str, fn: Callable[[], Any]) -> Any:
        t = time.monotonic()
        try:
            return fn()
        finally:
            self.phase_times[label] = round(time.monotonic() - t, 1)

    def remaining(self) -> float:
        return self.t0 + self.opts.max_total_s - time.monotonic()

    def run(self) -> dict[str, Any]:
        t0 = self.t0 = time.monotonic()
        o = self.opts
        self.results["started_at"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
        self.results["machine"] = machine_info()
        self.results["options"] = {
            "events": o.events, "subjects": o.subjects, "budget_s": o.budget_s, "runtimes": list(o.runtimes),
            "peers": list(o.peers), "latency_runtimes": list(o.latency_runtimes), "latency_rate": o.latency_rate,
            "latency_duration_s": o.latency_duration_s, "latency_churn": o.latency_churn, "seed": o.seed,
            "max_total_s": o.max_total_s, **o.extra,
        }
        b = self.base
        self.results["settings"] = {
            "partitions": b.partitions, "batch_size": b.batch_size, "batch_timeout_ms": b.batch_timeout_ms,
            "checkpoint_interval_s": b.checkpoint_interval_s, "faust_store": b.store,
            "rocksdb_block_cache_mb": b.rocksdb_block_cache_mb, "rocksdb_write_buffer_mb": b.rocksdb_write_buffer_mb,
            "format": b.format_clickstream, "kafka_heap": b.kafka_heap,
        }
        if o.peers:
            from bench.peers.run import PeerError, ensure_built

            self.say("building peers (idempotent)…")
            for name in o.peers:
                try:
                    self._timed(f"build {name}", lambda n=name: ensure_built(n))
                except PeerError as exc:
                    self.say(f"  {name}: build failed: {str(exc).splitlines()[0]}")
        self._timed("broker", self.ensure_broker)
        self._timed("preload", self.preload)
        if o.memory:
            self._timed("restore fast", self.restore_fast)
        self.results["drain"] = {}
        for i, key in enumerate(o.runtimes):
            # keep time for what follows: faust memory, latency, and a minimum per peer
            after = ((FAUST_MEMORY_S + 25 if o.faust_memory else 0) + 45 * len(o.latency_runtimes)
                     + (FAUST_FLOOR_S + 20 if "faust" in o.runtimes else 0)
                     + (PEER_MIN_S + 15) * len(o.peers) + 110 * (len(o.runtimes) - i - 1))
            budget = max(10.0, min(o.budget_s, self.remaining() - after - 60))
            self.results["drain"][key] = self._timed(f"drain {key}", lambda k=key, b=budget: self.drain(k, b))
        if "faust" in o.runtimes:
            self.results["faust_floor"] = self._timed(
                "faust floor", lambda: self.faust_floor(min(FAUST_FLOOR_S, max(10.0, self.remaining() / 20))))
        if o.faust_memory:
            self._timed("memory faust", self.memory_faust)
        self.results["latency"] = {}
        for key in o.latency_runtimes:
            self.results["latency"][key] = self._timed(f"latency {key}", lambda k=key: self.latency(k))
        self.results["peers"] = {}
        for i, name in enumerate(o.peers):
            share = (self.remaining() - REPORT_RESERVE_S) / (len(o.peers) - i)
            timeout = max(PEER_MIN_S, min(o.budget_s + PEER_START_ALLOWANCE_S, share - 10))
            self.results["peers"][name] = self._timed(f"peer {name}", lambda n=name, t=timeout: self.peer(n, t))
        self.results["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        self.results["phase_s"] = self.phase_times
        self.results["total_wall_s"] = round(time.monotonic() - t0, 1)
        self.results["ratios"] = ratios(self.results)
        self.results["targets"] = targets(self.results)
        if o.write_files:
            o.results_dir.mkdir(parents=True, exist_ok=True)
            md = o.results_dir / f"e2e-{self.stamp}.md"
            png = o.results_dir / f"e2e-{self.stamp}.png"
            try:
                write_chart(self.results, png)
                self.results["chart_png"] = str(png)
            except Exception as exc:  # noqa: BLE001 - the figures matter more than the picture
                self.results["chart_error"] = f"{type(exc).__name__}: {exc}"
            self.results["report_md"] = str(md)
            md.write_text(render_markdown(self.results))
        return self.results


# ---------------------------------------------------------------------- figures
def _rate(d: dict | None) -> float | None:
    if not d:
        return None
    return d.get("events_per_s") or None


def ratios(r: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """ours / peer for every (runtime, peer) pair that has both figures."""
    out: dict[str, dict[str, float | None]] = {}
    for key, d in (r.get("drain") or {}).items():
        ours = _rate(d)
        out[key] = {}
        for name, p in (r.get("peers") or {}).items():
            theirs = _rate(p)
            out[key][name] = round(ours / theirs, 2) if ours and theirs else None
    return out


def _target(name: str, measured: float | None, target: float, higher_is_better: bool = True,
            unit: str = "") -> dict[str, Any]:
    if measured is None:
        return {"name": name, "target": target, "measured": None, "met": None, "margin": "not measured", "unit": unit}
    met = measured >= target if higher_is_better else measured <= target
    if higher_is_better:
        margin = f"{measured / target:.0%} of target ({measured - target:+,.0f} {unit})"
    else:
        margin = f"{measured / target:.1f}x the limit ({measured - target:+,.0f} {unit})"
    return {"name": name, "target": target, "measured": measured, "met": met, "margin": margin, "unit": unit}


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    drain = r.get("drain") or {}
    ks = _rate((r.get("peers") or {}).get("kstreams"))
    for key in ("fast-eos", "fast-alo"):
        if key in drain:
            v = _rate(drain[key])
            out.append(_target(f"{key} events/s per worker process", v, TARGETS["fast_events_per_s"], unit="events/s"))
            t = {"name": f"{key} ahead of Kafka Streams", "target": "ratio > 1", "unit": "x"}
            if v and ks:
                t.update(measured=round(v / ks, 2), met=v > ks, margin=f"{v / ks:.2f}x Kafka Streams ({v - ks:+,.0f} events/s)")
            else:
                t.update(measured=None, met=None, margin="not measured")
            out.append(t)
    if "faust" in drain:
        out.append(_target("faust events/s per worker process", _rate(drain["faust"]), TARGETS["faust_events_per_s"],
                           unit="events/s"))
    rf = r.get("restore_fast") or {}
    if rf:
        out.append(_target("consent restore records/s (fast, net of start-up)", rf.get("restore_records_per_s"),
                           TARGETS["restore_records_per_s"], unit="records/s"))
        out.append(_target("memory mode bytes RSS per subject (fast)", rf.get("bytes_per_subject"),
                           TARGETS["memory_bytes_per_subject"], higher_is_better=False, unit="B"))
    return out


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    if isinstance(v, float) and abs(v) < 10:
        return f"{v:.2f}"
    if isinstance(v, (int, float)):
        return f"{v:,.0f}"
    return str(v)


def render_markdown(r: dict[str, Any]) -> str:
    m = r.get("machine", {})
    o = r.get("options", {})
    st = r.get("settings", {})
    pre = r.get("preload", {})
    L: list[str] = []
    L.append(f"# End-to-end benchmark {r.get('run')}")
    L.append("")
    L.append(f"Started {r.get('started_at')}; total wall time {r.get('total_wall_s')} s. "
             "Produced by `pfilter bench e2e` (bench/e2e.py; its docstring defines every figure).")
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append(f"- {m.get('cores')} cores ({m.get('cpu_model')}), {m.get('memory_gib')} GiB RAM, "
             f"Python {m.get('python')}, {m.get('platform')}")
    L.append(f"- load average (1/5/15 min) at start {m.get('load_avg_start')}, at end {m.get('load_avg_end')}; "
             "the machine may be shared: each throughput row shows the share of all cores that was busy just "
             "before it (after waiting up to {:.0f} s for it to drop below {:.0%})".format(QUIET_WAIT_S, QUIET_BUSY))
    br = r.get("broker", {})
    L.append(f"- broker: {br.get('bootstrap')} ({'local, started by the benchmark' if br.get('managed') else 'given'}"
             f"{', Kafka ' + str(br.get('kafka_version')) + ', heap ' + str(br.get('heap')) if br.get('managed') else ''})")
    L.append("")
    L.append("## Settings")
    L.append("")
    L.append(f"- events preloaded: {_fmt(pre.get('events'))} ({_fmt(pre.get('clicks'))} clicks, "
             f"{_fmt(pre.get('purchases'))} purchases); consent records: {_fmt(pre.get('consent'))} "
             f"for {_fmt(o.get('subjects'))} subjects; seed {o.get('seed')}")
    L.append(f"- preload: events {_fmt(pre.get('events_per_s'))}/s, consent {_fmt(pre.get('consent_per_s'))}/s, "
             f"{pre.get('wall_s')} s, delivery errors {pre.get('delivery_errors')}")
    L.append(f"- drain budget: **{o.get('budget_s')} s after the first decision** per runtime (peers: budget + "
             f"{PEER_START_ALLOWANCE_S:.0f} s in total including start and consent restore). "
             "A runtime or peer that does not finish the backlog in its budget is measured over the window it had.")
    L.append(f"- partitions {st.get('partitions')}, batch size {st.get('batch_size')}, batch timeout "
             f"{st.get('batch_timeout_ms')} ms, format {st.get('format')}, faust store {st.get('faust_store')} "
             f"(block cache {st.get('rocksdb_block_cache_mb')} MiB, write buffer {st.get('rocksdb_write_buffer_mb')} MiB)")
    L.append(f"- latency: {_fmt(o.get('latency_rate'))} events/s for {o.get('latency_duration_s')} s, "
             f"{o.get('latency_churn', 0):.0%} consent churn (consent changes per event)")
    L.append("")
    L.append("## Throughput (drain of the preloaded backlog)")
    L.append("")
    L.append("| runtime / peer | engines | events/s | window s | events in window | stopped by | CPU cores used "
             "| events per CPU-s | ready s | machine busy before |")
    L.append("|---|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for key, d in (r.get("drain") or {}).items():
        if d.get("error"):
            L.append(f"| {key} | 3 | failed: {d['error']} | | | | | | | |")
            continue
        L.append(f"| {key} | 3 + decisions | **{_fmt(d.get('events_per_s'))}** | {d.get('window_s')} | "
                 f"{_fmt(d.get('events_in_window'))} | {d.get('stopped_by')} | {d.get('cpu_share')} | "
                 f"{_fmt(d.get('events_per_cpu_s'))} | {d.get('ready_s')} | {d.get('machine_busy_before')} |")
    ff = r.get("faust_floor")
    if ff:
        if ff.get("error"):
            L.append(f"| faust floor | none | failed: {ff['error'].splitlines()[0][:160]} | | | | | | | |")
        else:
            L.append(f"| faust floor (an agent that only takes batches) | none | {_fmt(ff.get('events_per_s'))} | "
                     f"{ff.get('window_s')} | {_fmt(ff.get('events'))} | {ff.get('stopped_by')} | - | - | - | "
                     f"{ff.get('machine_busy_before')} |")
    for name, p in (r.get("peers") or {}).items():
        if p.get("error"):
            L.append(f"| peer {name} | offers | failed: {p['error'].splitlines()[0][:160]} | | | | | | | |")
            continue
        share = p.get("peer_cpu_share")
        per_cpu = _fmt(p["events_per_s"] / share) if share and p.get("events_per_s") else "-"
        L.append(f"| peer {name} | offers only | **{_fmt(p.get('events_per_s'))}** | {p.get('elapsed_s')} | "
                 f"{_fmt(p.get('events'))} clicks ({_fmt(p.get('peer_consent_records'))} consent) | "
                 f"{p.get('stopped_by')} | {share} | {per_cpu} | - | {p.get('machine_busy_before')} |")
    L.append("")
    staged = {k: d["stages"] for k, d in (r.get("drain") or {}).items() if d.get("stages")}
    if staged:
        names = [n for n in STAGE_ORDER if any(n in st for st in staged.values())]
        L.append("### Where the worker's time goes (share of the window's wall time per stage)")
        L.append("")
        L.append("From the worker's own `pfilter_stage_seconds_total` (streams/metrics.py), read at both ends of "
                 "the window. Fast runtime: one thread, so the stages add up to the wall time and the rest is "
                 "the loop itself. Faust: the stages are parts of two agents that interleave on one event loop "
                 "(send and consent include waits during which the other agent runs); the rest is faust's own "
                 "fetching, conductor and event handling, whose cost alone the faust floor row shows.")
        L.append("")
        L.append("| runtime | " + " | ".join(names) + " | rest |")
        L.append("|---|" + "---:|" * (len(names) + 1))
        for key, st_ in staged.items():
            rest = 1.0 - sum(st_.values())
            L.append(f"| {key} | " + " | ".join(f"{st_[n]:.0%}" if n in st_ else "-" for n in names)
                     + f" | {max(rest, 0.0):.0%} |")
        L.append("")
    rat = r.get("ratios") or {}
    if rat and any(rat.values()):
        peers = list((r.get("peers") or {}).keys())
        L.append("### Our events/s relative to each peer")
        L.append("")
        L.append("| runtime | " + " | ".join(f"vs {p}" for p in peers) + " |")
        L.append("|---|" + "---:|" * len(peers))
        for key, row in rat.items():
            L.append(f"| {key} | " + " | ".join(f"{row.get(p):.2f}x" if row.get(p) else "-" for p in peers) + " |")
        L.append("")
        L.append("Our runtimes decide three engines, write one decision record per event (an entry per engine) and "
                 "also decide purchases; "
                 "the peers decide `offers` over clicks and write only what they emit.")
        L.append("")
    rf = r.get("restore_fast")
    if rf:
        L.append("## Consent restore and memory (fast runtime, in-memory dict per partition)")
        L.append("")
        L.append("| run | time to ready s | RSS MiB | consent records read |")
        L.append("|---|---:|---:|---:|")
        for label, k in (("baseline (empty consent topic)", "baseline"), ("restore from the consent topic", "restore"),
                         ("restart from the local checkpoint", "restart_from_checkpoint")):
            x = rf.get(k, {})
            rec = x.get("consent_records", x.get("consent_at_ready"))
            L.append(f"| {label} | {x.get('ready_s')} | {x.get('rss', 0) / 2**20:,.0f} | {_fmt(rec)} |")
        L.append("")
        L.append(f"- restore: {_fmt(rf.get('consent_records'))} records in {rf.get('restore_net_s')} s beyond the "
                 f"baseline's start-up = **{_fmt(rf.get('restore_records_per_s'))} records/s** "
                 f"(gross, start-up included: {_fmt(rf.get('restore_records_per_s_gross'))} records/s)")
        L.append(f"- restart from checkpoint: {rf.get('restart_net_s')} s beyond the baseline "
                 f"(= {_fmt(rf.get('restart_records_per_s'))} subjects/s)")
        L.append(f"- RSS growth after the restore from the topic {_fmt(rf.get('rss_growth_bytes', 0) / 2**20, 1)} MiB = "
                 f"**{rf.get('bytes_per_subject')} bytes per subject**; after the restart from the checkpoint "
                 f"{_fmt((rf.get('rss_growth_bytes_checkpoint') or 0) / 2**20, 1)} MiB = "
                 f"{rf.get('bytes_per_subject_checkpoint')} bytes per subject (no fetch buffers or decode garbage)")
        L.append("")
    mf = r.get("memory_faust")
    if mf:
        b, x = mf.get("baseline", {}), mf.get("restore", {})
        L.append("## Memory, faust runtime (RocksDB)")
        L.append("")
        L.append(f"- baseline RSS {b.get('rss', 0) / 2**20:,.0f} MiB. In {FAUST_MEMORY_S:.0f} s the consent agent "
                 f"applied {_fmt(x.get('consent_applied'))} records to RocksDB ({x.get('stopped_by')}, "
                 f"{_fmt(mf.get('consent_apply_per_s'))} records/s) and the revocation barrier read "
                 f"{_fmt(x.get('barrier_read_ahead'))} ahead into its in-memory overlay: RSS "
                 f"{(x.get('rss') or 0) / 2**20:,.0f} MiB for {_fmt(mf.get('subjects_held'))} subjects held = "
                 f"**{mf.get('bytes_per_subject')} bytes per subject**")
        L.append(f"- state dir on disk {x.get('state_dir_bytes', 0) / 2**20:,.1f} MiB "
                 f"(baseline {b.get('state_dir_bytes', 0) / 2**20:,.1f} MiB) = "
                 f"{mf.get('disk_bytes_per_subject')} bytes per subject")
        L.append("")
    lat = r.get("latency") or {}
    if lat:
        L.append("## Latency at a fixed rate (input CreateTime -> decision broker append time)")
        L.append("")
        L.append("| runtime | rate | decisions | p50 ms | p90 ms | p99 ms | max ms | worker-side p50 / p99 ms |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for key, d in lat.items():
            L.append(f"| {key} | {_fmt(d.get('produced_per_s'))}/s | {_fmt(d.get('decision_records'))} | "
                     f"**{_fmt(d.get('p50_ms'))}** | {_fmt(d.get('p90_ms'))} | **{_fmt(d.get('p99_ms'))}** | "
                     f"{_fmt(d.get('max_ms'))} | {_fmt(d.get('decide_p50_ms'))} / {_fmt(d.get('decide_p99_ms'))} |")
        L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | goal | measured | met | margin |")
    L.append("|---|---:|---:|---|---|")
    for t in r.get("targets") or []:
        goal = t["target"] if isinstance(t["target"], str) else (
            f"<= {t['target']:,} {t['unit']}" if "bytes" in t["name"] else f">= {t['target']:,} {t['unit']}")
        met = "-" if t["met"] is None else ("**met**" if t["met"] else "**missed**")
        L.append(f"| {t['name']} | {goal} | {_fmt(t['measured'])} | {met} | {t['margin']} |")
    L.append("")
    ph = r.get("phase_s") or {}
    if ph:
        L.append("## Wall time per phase (s)")
        L.append("")
        L.append(", ".join(f"{k} {v}" for k, v in ph.items()))
        L.append("")
    if r.get("chart_png"):
        L.append(f"![events/s per runtime and peer]({Path(r['chart_png']).name})")
        L.append("")
    return "\n".join(L)


def write_chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colors = [], [], []
    for key, d in (r.get("drain") or {}).items():
        labels.append(key)
        values.append(_rate(d) or 0)
        colors.append("#1f77b4" if key.startswith("fast") else "#2ca02c")
    ff = r.get("faust_floor") or {}
    if ff.get("events_per_s"):
        labels.append("faust floor")
        values.append(ff["events_per_s"])
        colors.append("#98df8a")
    for name, p in (r.get("peers") or {}).items():
        labels.append(f"peer {name}")
        values.append(_rate(p) or 0)
        colors.append("#7f7f7f")
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    bars = ax.bar(labels, values, color=colors)
    for bar, v in zip(bars, values):
        ax.annotate(f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8)
    ax.axhline(TARGETS["fast_events_per_s"], color="#1f77b4", linestyle="--", linewidth=1)
    ax.axhline(TARGETS["faust_events_per_s"], color="#2ca02c", linestyle="--", linewidth=1)
    ax.text(len(labels) - 0.5, TARGETS["fast_events_per_s"], "fast target", ha="right", va="bottom", fontsize=8,
            color="#1f77b4")
    ax.text(len(labels) - 0.5, TARGETS["faust_events_per_s"], "faust target", ha="right", va="bottom", fontsize=8,
            color="#2ca02c")
    m = r.get("machine", {})
    ax.set_ylabel("events/s (one worker process)")
    ax.set_title(f"pfilter e2e {r.get('run')}: {m.get('cores')} cores, load {m.get('load_avg_start', ['?'])[0]}",
                 fontsize=10)
    ax.set_ylim(0, max(values + [TARGETS["fast_events_per_s"]]) * 1.15)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(base: Settings, opts: E2EOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    return E2E(base, opts, say).run()


if __name__ == "__main__":  # pragma: no cover
    from streams.config import load_settings

    print(run(load_settings(), E2EOptions(events=int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_EVENTS)))
