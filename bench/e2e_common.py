"""Constants and small measuring helpers shared by the e2e phases (bench/e2e.py defines the figures)."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from streams.config import PROJECT_ROOT

#: Defaults: 2M events and 1M subjects (the sizes the targets are stated for).
#: The budget is 60 s per drain so that the whole run (three runtimes and three
#: peers, each restoring 1M subjects' consent first, plus the restore, memory
#: and latency phases) stays within 20 minutes on a 2-core machine.
DEFAULT_EVENTS = 2_000_000
DEFAULT_SUBJECTS = 1_000_000
DEFAULT_BUDGET_S = 60.0


@dataclass(frozen=True)
class DrainSpec:
    """What one drain runs: runtime, guarantee, engine (PFILTER_ENGINE; None: the settings'), and policy.

    ``policy="offers"`` is the like-for-like row: the default policy cut to its
    ``offers`` engine and fed clicks only (purchases go to an empty topic), which
    is what the peers decide; the decision log stays on (it is the product).
    """

    runtime: str
    guarantee: str
    engine: str | None = None
    policy: str = "default"

    @property
    def clicks_only(self) -> bool:
        return self.policy == "offers"


RUNTIMES: dict[str, DrainSpec] = {
    "fast-eos-native": DrainSpec("fast", "exactly_once", "native"),
    "fast-eos-python": DrainSpec("fast", "exactly_once", "python"),
    "fast-eos-offers": DrainSpec("fast", "exactly_once", "native", "offers"),
    "fast-eos": DrainSpec("fast", "exactly_once"),
    "fast-alo": DrainSpec("fast", "at_least_once"),
    "faust": DrainSpec("faust", "at_least_once"),
}
#: What `pfilter bench e2e` drains by default: each engine once with the full
#: default policy (exactly once), the like-for-like offers-only row, at least
#: once and faust. ``fast-eos`` (the settings' engine) stays selectable.
DEFAULT_RUNTIMES = ("fast-eos-native", "fast-eos-python", "fast-eos-offers", "fast-alo", "faust")
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
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
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
    #: `--json` output of an earlier run whose stage table the report shows beside this run's
    before_json: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class E2EError(RuntimeError):
    """The benchmark could not run (broker, topics); the message says why."""


# ---------------------------------------------------------------------- helpers
def free_port() -> int:
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


def stages(worker: Any) -> dict[str, float] | None:
    try:
        return scrape_labeled(worker.metrics(), "pfilter_stage_seconds_total")
    except Exception:  # noqa: BLE001 - worker busy or gone: no sample
        return None


def metric(worker: Any, name: str) -> float | None:
    try:
        return scrape(worker.metrics()).get(name, 0.0)
    except Exception:  # noqa: BLE001 - worker busy or gone: no sample
        return None


def cpu_s(proc: psutil.Process) -> float:
    """CPU seconds (user + system, all threads) of the process, its reaped children and its live children.

    A worker or peer that forks (a JVM launcher, a shell) is charged for all of it.
    """
    try:
        t = proc.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
    except psutil.Error:
        return 0.0
    try:
        for child in proc.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def offers_only_policy(path: Path) -> Path:
    """The default policy cut to its first engine (``offers``), written to ``path``.

    Cut as text at the second ``[[engines]]`` table so that categories and
    purposes stay exactly the shipped ones; the worker checks the result at start-up.
    """
    text = (PROJECT_ROOT / "streams" / "policy" / "default.toml").read_text()
    marker = "[[engines]]"
    first = text.index(marker)
    second = text.find(marker, first + len(marker))
    cut = text if second < 0 else text[:second]
    if 'name = "offers"' not in cut[first:]:
        raise E2EError("the default policy's first engine is not offers; the offers-only row needs it")
    # the TCF gates of the engines cut away go too ([signals.tcf.engines.<name>] tables):
    # a policy's mapping may only name its own engines
    lines, skip = [], False
    for line in cut.splitlines(keepends=True):
        head = line.strip()
        if head.startswith("["):
            skip = head.startswith("[signals.tcf.engines.") and head != "[signals.tcf.engines.offers]"
        if not skip:
            lines.append(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines).replace('version = "', 'version = "offers-only-', 1))
    return path


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def pct(values: list[float], q: float) -> float:
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


