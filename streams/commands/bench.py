"""`pfilter bench ...`: benchmarks (code in bench/). Reports, never asserts."""

from __future__ import annotations

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
    for col in ("format", "events/s", "floor events/s", "ratio", "event bytes", "consent apply/s", "load 1m"):
        t.add_column(col, justify="right")
    for r in results:
        t.add_row(r["format"], f"{r['events_per_s']:,}", f"{r['floor_events_per_s']:,}", f"{r['ratio']:.2f}",
                  f"{r['mean_event_bytes']:.0f}", f"{r['consent_apply_per_s']:,}", str(r["loadavg_1m"]))
    Console().print(t)
