"""Derived figures of an e2e run: ratios to the peers and the targets, met or missed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.e2e_common import TARGETS

#: The peer every ratio is taken against, and issue 10's targets for the fast
#: runtime (exactly once, full default policy, native engine) against it.
REFERENCE_PEER = "kstreams"
KS_EVENTS_RATIO_TARGET = 1.5
KS_PER_CPU_RATIO_TARGET = 2.0


@dataclass(frozen=True)
class Sample:
    """One reading of a worker during a drain: when, events counted, CPU seconds so far, stage seconds."""

    t: float
    count: float
    cpu: float
    stages: dict[str, float] | None


Window = tuple[Sample, Sample]


@dataclass
class DrainResult:
    """One drain of the backlog by one of our runtimes; ``to_json`` gives the ``drain.<key>`` object."""

    runtime: str
    processing_guarantee: str
    engine: str
    policy: str
    budget_s: float
    machine_busy_before: float
    load_avg_before: float
    ready_s: float | None = None
    error: str | None = None
    first_decision_s: float | None = None
    stopped_by: str | None = None
    rss_end: int | None = None
    consent_records: float | None = None
    window_s: float | None = None
    events_in_window: int | None = None
    events_decided: int | None = None
    events_per_s: int | None = None
    cpu_share: float | None = None
    events_per_cpu_s: int | None = None
    stages: dict[str, float] | None = None
    load_avg_end: float | None = None
    exit_code: int | None = None
    log: str | None = None

    def set_window(self, first: Sample, last: Sample) -> None:
        """Rates over [first, last]: events, CPU (worker and children) and the share of wall time per stage."""
        window = last.t - first.t
        events = last.count - first.count
        cpu = last.cpu - first.cpu
        self.window_s = round(window, 2)
        self.events_in_window = int(events)
        self.events_decided = int(last.count)
        self.events_per_s = round(events / window)
        self.cpu_share = round(cpu / window, 2)
        if cpu > 0:
            self.events_per_cpu_s = round(events / cpu)
        if first.stages is not None and last.stages is not None:
            self.stages = {k: round((last.stages.get(k, 0.0) - first.stages.get(k, 0.0)) / window, 3)
                           for k in last.stages}

    def to_json(self) -> dict[str, Any]:
        """The figures measured (unset ones left out, as the earlier dict form did)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def per_cpu(d: dict | None) -> float | None:
    """Events per CPU-second of a drain or a peer (a peer reports its CPU share of the window)."""
    if not d:
        return None
    if d.get("events_per_cpu_s"):
        return d["events_per_cpu_s"]
    share, eps = d.get("peer_cpu_share"), d.get("events_per_s")
    return round(eps / share) if share and eps else None


def _rate(d: dict | None) -> float | None:
    if not d:
        return None
    return d.get("events_per_s") or None


def ratios(r: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """ours / peer events/s for every (runtime, peer) pair that has both figures."""
    return _ratio_table(r, _rate)


def ratios_per_cpu(r: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """ours / peer events per CPU-second for every (runtime, peer) pair that has both figures."""
    return _ratio_table(r, per_cpu)


def _ratio_table(r: dict[str, Any], figure: Any) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for key, d in (r.get("drain") or {}).items():
        ours = figure(d)
        out[key] = {}
        for name, p in (r.get("peers") or {}).items():
            theirs = figure(p)
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
    for key in ("fast-eos-native", "fast-eos-python", "fast-eos", "fast-alo"):
        if key in drain:
            v = _rate(drain[key])
            out.append(_target(f"{key} events/s per worker process", v, TARGETS["fast_events_per_s"], unit="events/s"))
            t = {"name": f"{key} ahead of Kafka Streams", "target": "ratio > 1", "unit": "x"}
            if v and ks:
                t.update(measured=round(v / ks, 2), met=v > ks, margin=f"{v / ks:.2f}x Kafka Streams ({v - ks:+,.0f} events/s)")
            else:
                t.update(measured=None, met=None, margin="not measured")
            out.append(t)
    ks_peer = (r.get("peers") or {}).get(REFERENCE_PEER)
    for key in ("fast-eos-native", "fast-eos"):
        if key in drain:
            out.append(_ratio_target(f"{key} (full default policy) events/s vs Kafka Streams", _rate(drain[key]),
                                     _rate(ks_peer), KS_EVENTS_RATIO_TARGET, "events/s"))
            out.append(_ratio_target(f"{key} (full default policy) events per CPU-s vs Kafka Streams",
                                     per_cpu(drain[key]), per_cpu(ks_peer), KS_PER_CPU_RATIO_TARGET, "events/CPU-s"))
            break
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


def _ratio_target(name: str, ours: float | None, theirs: float | None, goal: float, unit: str) -> dict[str, Any]:
    t: dict[str, Any] = {"name": name, "target": f"ratio >= {goal}", "unit": "x"}
    if ours and theirs:
        ratio = ours / theirs
        return t | {"measured": round(ratio, 2), "met": ratio >= goal,
                    "margin": f"{ratio:.2f}x ({ours:,.0f} vs {theirs:,.0f} {unit})"}
    return t | {"measured": None, "met": None, "margin": "not measured"}


def before_summary(path: Path) -> dict[str, Any]:
    """What the report compares from an earlier run's `--json` output: per drain, events/s, per CPU-s, stages."""
    import orjson

    r = orjson.loads(path.read_bytes())
    keep = ("engine", "policy", "events_per_s", "events_per_cpu_s", "cpu_share", "window_s", "stages")
    return {"source": str(path), "run": r.get("run"), "started_at": r.get("started_at"),
            "load_avg_start": (r.get("machine") or {}).get("load_avg_start"),
            "drain": {k: {f: d.get(f) for f in keep if f in d} for k, d in (r.get("drain") or {}).items()}}
