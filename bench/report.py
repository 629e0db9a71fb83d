"""Markdown report and bar chart of an e2e run (bench/e2e.py defines every figure)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.e2e_common import *  # noqa: F403
from bench.e2e_results import _rate, per_cpu


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


def table(headers: list[str], rows: list[list[Any]], right: set[int] | None = None) -> list[str]:
    """A markdown table; columns in ``right`` are right-aligned (numbers)."""
    right = right or set()
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def section(title: str, *parts: list[str] | str, level: int = 2) -> list[str]:
    """A heading and its parts (paragraph strings or lists of lines), blank line after each."""
    out = ["#" * level + " " + title, ""]
    for part in parts:
        out += [part, ""] if isinstance(part, str) else part
    return out


def _header(r: dict[str, Any]) -> list[str]:
    return [f"# End-to-end benchmark {r.get('run')}", "",
            f"Started {r.get('started_at')}; total wall time {r.get('total_wall_s')} s. "
            "Produced by `pfilter bench e2e` (bench/e2e.py; its docstring defines every figure).", ""]


def _machine(r: dict[str, Any]) -> list[str]:
    m, br = r.get("machine", {}), r.get("broker", {})
    managed = br.get("managed")
    broker = (f"{br.get('bootstrap')} (local, started by the benchmark, Kafka {br.get('kafka_version')}, "
              f"heap {br.get('heap')})" if managed else f"{br.get('bootstrap')} (given)")
    return section("Machine", [
        f"- {m.get('cores')} cores ({m.get('cpu_model')}), {m.get('memory_gib')} GiB RAM, "
        f"Python {m.get('python')}, {m.get('platform')}",
        f"- load average (1/5/15 min) at start {m.get('load_avg_start')}, at end {m.get('load_avg_end')}; "
        "the machine may be shared: each throughput row shows the share of all cores that was busy just "
        f"before it (after waiting up to {QUIET_WAIT_S:.0f} s for it to drop below {QUIET_BUSY:.0%})",
        f"- broker: {broker}", ""])


def _settings(r: dict[str, Any]) -> list[str]:
    o, st, pre = r.get("options", {}), r.get("settings", {}), r.get("preload", {})
    return section("Settings", [
        f"- events preloaded: {_fmt(pre.get('events'))} ({_fmt(pre.get('clicks'))} clicks, "
        f"{_fmt(pre.get('purchases'))} purchases); consent records: {_fmt(pre.get('consent'))} "
        f"for {_fmt(o.get('subjects'))} subjects; seed {o.get('seed')}",
        f"- preload: events {_fmt(pre.get('events_per_s'))}/s, consent {_fmt(pre.get('consent_per_s'))}/s, "
        f"{pre.get('wall_s')} s, delivery errors {pre.get('delivery_errors')}",
        f"- drain budget: **{o.get('budget_s')} s after the first decision** per runtime (peers: budget + "
        f"{PEER_START_ALLOWANCE_S:.0f} s in total including start and consent restore). "
        "A runtime or peer that does not finish the backlog in its budget is measured over the window it had.",
        f"- partitions {st.get('partitions')}, batch size {st.get('batch_size')}, batch timeout "
        f"{st.get('batch_timeout_ms')} ms, format {st.get('format')}, faust store {st.get('faust_store')} "
        f"(block cache {st.get('rocksdb_block_cache_mb')} MiB, write buffer {st.get('rocksdb_write_buffer_mb')} MiB)",
        f"- latency: {_fmt(o.get('latency_rate'))} events/s for {o.get('latency_duration_s')} s, "
        f"{o.get('latency_churn', 0):.0%} consent churn (consent changes per event)", ""])


def _what_drain_decides(d: dict[str, Any]) -> str:
    if d.get("policy") == "offers":
        return "offers only, clicks only + decisions"
    return "3 + decisions" if d.get("runtime") == "fast" or d.get("runtime") == "faust" else "-"


def _throughput(r: dict[str, Any]) -> list[str]:
    rows: list[list[Any]] = []
    for key, d in (r.get("drain") or {}).items():
        if d.get("error"):
            rows.append([key, d.get("engine", "-"), _what_drain_decides(d), f"failed: {d['error']}"] + [""] * 7)
            continue
        rows.append([key, d.get("engine", "-"), _what_drain_decides(d), f"**{_fmt(d.get('events_per_s'))}**",
                     d.get("window_s"), _fmt(d.get("events_in_window")), d.get("stopped_by"), d.get("cpu_share"),
                     f"**{_fmt(d.get('events_per_cpu_s'))}**", d.get("ready_s"), d.get("machine_busy_before")])
    ff = r.get("faust_floor")
    if ff:
        if ff.get("error"):
            rows.append(["faust floor", "-", "none", f"failed: {ff['error'].splitlines()[0][:160]}"] + [""] * 7)
        else:
            rows.append(["faust floor (an agent that only takes batches)", "-", "none", _fmt(ff.get("events_per_s")),
                         ff.get("window_s"), _fmt(ff.get("events")), ff.get("stopped_by"), "-", "-", "-",
                         ff.get("machine_busy_before")])
    for name, p in (r.get("peers") or {}).items():
        if p.get("error"):
            rows.append([f"peer {name}", "-", "offers", f"failed: {p['error'].splitlines()[0][:160]}"] + [""] * 7)
            continue
        rows.append([f"peer {name}", "-", "offers only, clicks only", f"**{_fmt(p.get('events_per_s'))}**",
                     p.get("elapsed_s"), f"{_fmt(p.get('events'))} clicks ({_fmt(p.get('peer_consent_records'))} consent)",
                     p.get("stopped_by"), p.get("peer_cpu_share"), f"**{_fmt(per_cpu(p))}**", "-",
                     p.get("machine_busy_before")])
    headers = ["runtime / peer", "engine", "decides", "events/s", "window s", "events in window", "stopped by",
               "CPU cores used", "events per CPU-s", "ready s", "machine busy before"]
    return section("Throughput (drain of the preloaded backlog)", table(headers, rows, {3, 4, 5, 7, 8, 9, 10}),
                   "CPU: user + system seconds of the worker process (all threads) and its children over the "
                   "window (psutil); for a peer, of the peer process and its children (the JVM for Kafka Streams) "
                   "between the first and the last poll that saw its outputs.")


def stage_rows(staged: dict[str, dict[str, float]]) -> tuple[list[str], list[list[Any]]]:
    """Stage-share table (headers, rows) of {label: {stage: share of wall time}}."""
    names = [n for n in STAGE_ORDER if any(n in st for st in staged.values())]
    rows = [[label] + [f"{st[n]:.0%}" if n in st else "-" for n in names] + [f"{max(1.0 - sum(st.values()), 0.0):.0%}"]
            for label, st in staged.items()]
    return ["runtime"] + names + ["rest"], rows


def _stages(r: dict[str, Any]) -> list[str]:
    staged = {k: d["stages"] for k, d in (r.get("drain") or {}).items() if d.get("stages")}
    if not staged:
        return []
    headers, rows = stage_rows(staged)
    return section("Where the worker's time goes (share of the window's wall time per stage)",
                   "From the worker's own `pfilter_stage_seconds_total` (streams/metrics.py), read at both ends of "
                   "the window. Fast runtime: one thread, so the stages add up to the wall time and the rest is "
                   "the loop itself. Faust: the stages are parts of two agents that interleave on one event loop "
                   "(send and consent include waits during which the other agent runs); the rest is faust's own "
                   "fetching, conductor and event handling, whose cost alone the faust floor row shows.",
                   table(headers, rows, set(range(1, len(headers)))), level=3)


def _before_after(r: dict[str, Any]) -> list[str]:
    b = r.get("before")
    if not b:
        return []
    staged = {f"before: {k} (run {b.get('run')})": d["stages"] for k, d in (b.get("drain") or {}).items()
              if d.get("stages")}
    staged |= {f"after: {k}": d["stages"] for k, d in (r.get("drain") or {}).items()
               if d.get("stages") and d.get("runtime") == "fast"}
    headers, rows = stage_rows(staged)
    rates = [[f"before: {k}", _fmt(d.get("events_per_s")), _fmt(d.get("events_per_cpu_s")), d.get("window_s")]
             for k, d in (b.get("drain") or {}).items()]
    rates += [[f"after: {k}", _fmt(d.get("events_per_s")), _fmt(d.get("events_per_cpu_s")), d.get("window_s")]
              for k, d in (r.get("drain") or {}).items() if d.get("runtime") == "fast"]
    return section("Stage table before and after (same machine)",
                   f"Before: `{b.get('source')}`, started {b.get('started_at')}, load at start "
                   f"{b.get('load_avg_start')}.",
                   table(headers, rows, set(range(1, len(headers)))),
                   table(["run", "events/s", "events per CPU-s", "window s"], rates, {1, 2, 3}), level=3)


def _ratio_section(title: str, rat: dict[str, dict[str, float | None]], peers: list[str]) -> list[str]:
    if not rat or not any(any(v for v in row.values()) for row in rat.values()):
        return []
    rows = [[key] + [f"{row.get(p):.2f}x" if row.get(p) else "-" for p in peers] for key, row in rat.items()]
    return section(title, table(["runtime"] + [f"vs {p}" for p in peers], rows, set(range(1, len(peers) + 1))),
                   level=3)


def _ratios(r: dict[str, Any]) -> list[str]:
    peers = list((r.get("peers") or {}).keys())
    out = _ratio_section("Our events/s relative to each peer", r.get("ratios") or {}, peers)
    out += _ratio_section("Our events per CPU-second relative to each peer", r.get("ratios_per_cpu") or {}, peers)
    if out:
        out += ["Rows with the full default policy decide three engines, write one decision record per event (an "
                "entry per engine) and also decide purchases; `fast-eos-offers` decides `offers` over clicks only, "
                "as the peers do, and still writes its decision log; the peers write only what they emit.", ""]
    return out


def _restore(r: dict[str, Any]) -> list[str]:
    rf = r.get("restore_fast")
    if not rf:
        return []
    rows = []
    for label, k in (("baseline (empty consent topic)", "baseline"), ("restore from the consent topic", "restore"),
                     ("restart from the local checkpoint", "restart_from_checkpoint")):
        x = rf.get(k, {})
        rows.append([label, x.get("ready_s"), f"{x.get('rss', 0) / 2**20:,.0f}",
                     _fmt(x.get("consent_records", x.get("consent_at_ready")))])
    return section("Consent restore and memory (fast runtime, in-memory dict per partition)",
                   table(["run", "time to ready s", "RSS MiB", "consent records read"], rows, {1, 2, 3}), [
        f"- restore: {_fmt(rf.get('consent_records'))} records in {rf.get('restore_net_s')} s beyond the "
        f"baseline's start-up = **{_fmt(rf.get('restore_records_per_s'))} records/s** "
        f"(gross, start-up included: {_fmt(rf.get('restore_records_per_s_gross'))} records/s)",
        f"- restart from checkpoint: {rf.get('restart_net_s')} s beyond the baseline "
        f"(= {_fmt(rf.get('restart_records_per_s'))} subjects/s)",
        f"- RSS growth after the restore from the topic {_fmt(rf.get('rss_growth_bytes', 0) / 2**20, 1)} MiB = "
        f"**{rf.get('bytes_per_subject')} bytes per subject**; after the restart from the checkpoint "
        f"{_fmt((rf.get('rss_growth_bytes_checkpoint') or 0) / 2**20, 1)} MiB = "
        f"{rf.get('bytes_per_subject_checkpoint')} bytes per subject (no fetch buffers or decode garbage)", ""])


def _memory_faust(r: dict[str, Any]) -> list[str]:
    mf = r.get("memory_faust")
    if not mf:
        return []
    b, x = mf.get("baseline", {}), mf.get("restore", {})
    return section("Memory, faust runtime (RocksDB)", [
        f"- baseline RSS {b.get('rss', 0) / 2**20:,.0f} MiB. In {FAUST_MEMORY_S:.0f} s the consent agent "
        f"applied {_fmt(x.get('consent_applied'))} records to RocksDB ({x.get('stopped_by')}, "
        f"{_fmt(mf.get('consent_apply_per_s'))} records/s) and the revocation barrier read "
        f"{_fmt(x.get('barrier_read_ahead'))} ahead into its in-memory overlay: RSS "
        f"{(x.get('rss') or 0) / 2**20:,.0f} MiB for {_fmt(mf.get('subjects_held'))} subjects held = "
        f"**{mf.get('bytes_per_subject')} bytes per subject**",
        f"- state dir on disk {x.get('state_dir_bytes', 0) / 2**20:,.1f} MiB "
        f"(baseline {b.get('state_dir_bytes', 0) / 2**20:,.1f} MiB) = "
        f"{mf.get('disk_bytes_per_subject')} bytes per subject", ""])


def _latency(r: dict[str, Any]) -> list[str]:
    lat = r.get("latency") or {}
    if not lat:
        return []
    rows = [[key, f"{_fmt(d.get('produced_per_s'))}/s", _fmt(d.get("decision_records")), f"**{_fmt(d.get('p50_ms'))}**",
             _fmt(d.get("p90_ms")), f"**{_fmt(d.get('p99_ms'))}**", _fmt(d.get("max_ms")),
             f"{_fmt(d.get('decide_p50_ms'))} / {_fmt(d.get('decide_p99_ms'))}"] for key, d in lat.items()]
    return section("Latency at a fixed rate (input CreateTime -> decision broker append time)",
                   table(["runtime", "rate", "decisions", "p50 ms", "p90 ms", "p99 ms", "max ms",
                          "worker-side p50 / p99 ms"], rows, {1, 2, 3, 4, 5, 6}))


def _goal(t: dict[str, Any]) -> str:
    if isinstance(t["target"], str):
        return t["target"]
    return f"<= {t['target']:,} {t['unit']}" if "bytes" in t["name"] else f">= {t['target']:,} {t['unit']}"


def _targets(r: dict[str, Any]) -> list[str]:
    rows = [[t["name"], _goal(t), _fmt(t["measured"]),
             "-" if t["met"] is None else ("**met**" if t["met"] else "**missed**"), t["margin"]]
            for t in r.get("targets") or []]
    return section("Targets", table(["target", "goal", "measured", "met", "margin"], rows, {1, 2}))


def _phases(r: dict[str, Any]) -> list[str]:
    ph = r.get("phase_s") or {}
    return section("Wall time per phase (s)", ", ".join(f"{k} {v}" for k, v in ph.items())) if ph else []


def _chart(r: dict[str, Any]) -> list[str]:
    return [f"![events/s per runtime and peer]({Path(r['chart_png']).name})", ""] if r.get("chart_png") else []

#: The report's sections, in order; each takes the results and returns its lines (none when it has no data).
SECTIONS: tuple[Callable[[dict[str, Any]], list[str]], ...] = (
    _header, _machine, _settings, _throughput, _stages, _before_after, _ratios, _restore, _memory_faust, _latency, _targets,
    _phases, _chart,
)


def render_markdown(r: dict[str, Any]) -> str:
    """The whole report: the sections in order."""
    return "\n".join(line for sec in SECTIONS for line in sec(r))


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

