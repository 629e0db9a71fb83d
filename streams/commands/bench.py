"""`pfilter bench ...`: benchmarks (code in bench/). Reports, never asserts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table


@click.group("bench")
def bench() -> None:
    """Throughput benchmarks; figures are measured, with the floor beside them."""


@bench.command("engine")
@click.option("--events", type=int, default=200_000, show_default=True)
@click.option("--subjects", type=int, default=100_000, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["json", "avro", "both"]), default="both", show_default=True)
@click.option("--repeat", type=int, default=3, show_default=True, help="Best of N runs.")
@click.option("--json", "as_json", is_flag=True)
def engine(events: int, subjects: int, fmt: str, repeat: int, as_json: bool) -> None:
    """In-process engine throughput on one core vs the decode+encode floor."""
    from bench.engine import run

    fmts = ["json", "avro"] if fmt == "both" else [fmt]
    results = [run(events=events, subjects=subjects, fmt=f, repeat=repeat) for f in fmts]
    if as_json:
        out: Any = results[0] if len(results) == 1 else {**results[0], "avro": results[1]}
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return
    t = Table(title="pfilter bench engine (one core, in-process)")
    for col in ("format", "engine", "events/s", "events/CPU-s", "vs floor", "vs python", "floor events/s",
                "event bytes", "load 1m"):
        t.add_column(col, justify="right")
    for r in results:
        py_eps = r["by_engine"].get("python", {}).get("events_per_s")
        for name, e in r["by_engine"].items():
            vs_py = f"{e['events_per_s'] / py_eps:.2f}" if py_eps else "-"
            t.add_row(r["format"], name, f"{e['events_per_s']:,}", f"{e['events_per_cpu_s'] or 0:,}",
                      f"{e['ratio_to_floor']:.2f}", vs_py, f"{r['floor_events_per_s']:,}",
                      f"{r['mean_event_bytes']:.0f}", str(r["loadavg_1m"]))
    Console().print(t)
    for r in results:
        if r.get("encrypt_us_per_field") is not None:
            click.echo(f"{r['format']}: an encrypted field costs {r['encrypt_us_per_field']:.2f} µs CPU "
                       f"({r['encrypted_fields_per_run']:,} per run, keys existing; a new key "
                       f"{r['key_create_us']:.1f} µs once per subject; python-plain: the policy without encrypt)")
    from streams.engine import native

    if not native.available():
        click.echo(f"native engine not built ({native.IMPORT_ERROR}): Python engine only")


@bench.command("e2e")
@click.option("--events", type=click.IntRange(min=1), default=None,
              help="Events to preload [2,000,000].")
@click.option("--subjects", type=click.IntRange(min=1), default=None,
              help="Consent population (≈95% have a record) [1,000,000].")
@click.option("--budget-s", type=click.FloatRange(min=1), default=None,
              help="Per runtime/peer drain: seconds measured after the first decision [60].")
@click.option("--runtimes", default="fast-eos-native,fast-eos-python,fast-eos-offers,fast-alo,faust", show_default=True,
              help="Runtimes to drain the backlog with (comma-separated; empty for none; fast-eos: the configured "
              "engine; fast-eos-offers: offers-only policy over clicks, like the peers).")
@click.option("--peers", default="kstreams,quix,faust", show_default=True,
              help="Peers (bench/peers) to run on the same data (comma-separated; empty for none).")
@click.option("--latency-runtimes", default="fast-eos,fast-alo", show_default=True,
              help="Runtimes for the fixed-rate latency phase (fast-eos, fast-alo; empty for none).")
@click.option("--latency-rate", type=click.FloatRange(min=1), default=None, help="Events/s of the latency phase [2000].")
@click.option("--latency-duration-s", type=click.FloatRange(min=1), default=None,
              help="Seconds of the latency phase [20].")
@click.option("--latency-churn", type=click.FloatRange(0.0, 1.0), default=0.01, show_default=True,
              help="Consent changes per event during the latency phase.")
@click.option("--max-total-s", type=click.FloatRange(min=60), default=None,
              help="Whole run's time limit; the last phases (peers) share what is left [1140].")
@click.option("--memory/--no-memory", default=True, show_default=True,
              help="Fast runtime consent restore and memory phase.")
@click.option("--faust-memory/--no-faust-memory", default=True, show_default=True,
              help="Faust (RocksDB) memory phase.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the report and chart go [bench/results].")
@click.option("--no-files", is_flag=True, help="Do not write the report and the chart.")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON on stdout.")
@click.option("--before-json", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="`--json` output of an earlier run (e.g. on main) whose stage table the report shows beside this one.")
@click.pass_obj
def e2e(c: Any, events: int | None, subjects: int | None, budget_s: float | None, runtimes: str, peers: str,
        latency_runtimes: str, latency_rate: float | None, latency_duration_s: float | None,
        latency_churn: float, max_total_s: float | None, memory: bool,
        faust_memory: bool, seed: int, results_dir: Path | None, no_files: bool, as_json: bool,
        before_json: Path | None) -> None:
    """End-to-end throughput, restore, memory and latency on a real broker, beside the peers.

    Starts the local broker unless KAFKA_BOOTSTRAP_SERVERS is set, preloads the
    backlog into this run's own topics, then measures each runtime and peer in
    turn (see bench/e2e.py for how each figure is defined). Writes a markdown
    report and a bar chart to bench/results/ and prints a summary.
    """
    from bench import e2e as mod

    def names(value: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
        got = tuple(x.strip() for x in value.split(",") if x.strip())
        bad = [x for x in got if x not in known]
        if bad:
            raise click.BadParameter(f"unknown {what} {', '.join(bad)}; known: {', '.join(known)}")
        return got

    opts = mod.E2EOptions(
        events=events or mod.DEFAULT_EVENTS,
        subjects=subjects or mod.DEFAULT_SUBJECTS,
        budget_s=budget_s or mod.DEFAULT_BUDGET_S,
        runtimes=names(runtimes, tuple(mod.RUNTIMES), "runtime"),
        peers=names(peers, mod.PEER_NAMES, "peer"),
        latency_runtimes=names(latency_runtimes, ("fast-eos", "fast-alo"), "latency runtime"),
        latency_rate=latency_rate or mod.LATENCY_RATE,
        latency_duration_s=latency_duration_s or mod.LATENCY_DURATION_S,
        latency_churn=latency_churn,
        max_total_s=max_total_s or mod.MAX_TOTAL_S,
        memory=memory,
        faust_memory=faust_memory,
        seed=seed,
        results_dir=results_dir or mod.RESULTS_DIR,
        write_files=not no_files,
        before_json=before_json,
    )
    err = Console(stderr=True)

    def say(msg: str) -> None:
        err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {msg}", highlight=False)

    try:
        result = mod.run(c.settings(), opts, say)
    except mod.E2EError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
                                default=str).decode())
    _print_e2e(result, err if as_json else Console())


def _print_e2e(r: dict[str, Any], console: Console) -> None:
    t = Table(title=f"pfilter bench e2e {r.get('run')} ({r.get('total_wall_s')} s)")
    for col in ("runtime / peer", "events/s", "window s", "stopped by", "CPU cores", "events per CPU-s"):
        t.add_column(col, justify="right")
    for key, d in (r.get("drain") or {}).items():
        t.add_row(key, f"{d.get('events_per_s') or 0:,}", str(d.get("window_s")), str(d.get("stopped_by", d.get("error"))),
                  str(d.get("cpu_share")), f"{d.get('events_per_cpu_s') or 0:,}")
    ff = r.get("faust_floor") or {}
    if ff:
        t.add_row("faust floor (no work)", f"{ff.get('events_per_s') or 0:,}", str(ff.get("window_s")),
                  str(ff.get("stopped_by", ff.get("error"))), "-", "-")
    for name, p in (r.get("peers") or {}).items():
        t.add_row(f"peer {name}", f"{p.get('events_per_s') or 0:,.0f}", str(p.get("elapsed_s")),
                  str(p.get("stopped_by", (p.get("error") or "")[:40])), str(p.get("peer_cpu_share")),
                  f"{p.get('events_per_cpu_s') or 0:,}")
    console.print(t)
    tt = Table(title="targets")
    for col in ("target", "measured", "met", "margin"):
        tt.add_column(col)
    for x in r.get("targets") or []:
        met = "-" if x["met"] is None else ("met" if x["met"] else "missed")
        tt.add_row(x["name"], f"{x['measured']:,}" if isinstance(x["measured"], (int, float)) else "-", met, x["margin"])
    console.print(tt)
    if r.get("report_md"):
        console.print(f"report: {r['report_md']}" + (f", chart: {r['chart_png']}" if r.get("chart_png") else ""))
