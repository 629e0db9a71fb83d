"""`pfilter erase SUBJECT`: the consent and data-key tombstones, then a receipt (streams.erase)."""

from __future__ import annotations

from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from streams.erase import DEFAULT_TIMEOUT_S, ErasureNotConfirmed, ErasureReceipt, run_erase


def _dur(ms: int | None) -> str:
    """Milliseconds in plain words (the bound is read by people, not parsers)."""
    if ms is None:
        return "unknown"
    s = ms / 1000
    if s < 120:
        return f"{s:g} s"
    if s < 7200:
        return f"{s / 60:g} min"
    if s < 172_800:
        h, m = int(s // 3600), round(s % 3600 / 60)
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{s / 86400:.4g} days"


def render(out: Console, r: ErasureReceipt) -> None:
    ok = "[green]yes[/]"
    no = "[red]no[/]"
    out.print(f"[bold]Erasure receipt[/] for subject [cyan]{r.subject}[/]")
    ct, kt = r.consent_tombstone, r.key_tombstone
    seen = ("not seen" if r.committed_offset is None else f"committed offset {r.committed_offset}")
    out.print(f"  state removed      consent tombstone {ct.topic}[{ct.partition}]@{ct.offset}; "
              f"worker passed it: {ok if r.worker_passed else no} ({seen})")
    out.print(f"  data key shredded  key tombstone {kt.topic}[{kt.partition}]@{kt.offset}")
    t = Table(title="erasure notices", title_justify="left", box=None, pad_edge=False)
    for col in ("engine", "keyed by", "partition", "offset"):
        t.add_column(col)
    for n in r.notices:
        t.add_row(n.engine, "pseudonym" if n.pseudonymized else "subject id", str(n.partition),
                  str(n.offset) if n.offset is not None else "[red]not seen[/]")
    out.print(t)
    pending = ("none (no notices topic)" if r.pending_notices_cancelled is None
               else str(r.pending_notices_cancelled))
    out.print(f"  pending notices cancelled: {pending}")
    if r.scan is not None:
        s = Table(title="retained records of the subject (--scan)", title_justify="left", box=None, pad_edge=False)
        for col in ("engine", "partition", "records", "unreadable", "plaintext", "new key"):
            s.add_column(col)
        for e in r.scan:
            s.add_row(e.engine, str(e.partition), str(e.records), str(e.unreadable),
                      str(e.plaintext), str(e.readable))
        out.print(s)
        if any(e.plaintext for e in r.scan):
            out.print("  unreadable: encrypted fields under the shredded key; new key: the subject came back "
                      "since and those records are readable again")
            out.print("  plaintext records have no encrypted field: only the erasure notice makes "
                      "engines forget them, and they stay in the topic until its retention")
    for c in r.compaction:
        cfg = ", ".join(f"{k}={_dur(v)}" for k, v in c.settings.items())
        out.print(f"  {c.topic}: {cfg}")
        out.print(f"    earlier records compacted away within {_dur(c.superseded_gone_ms)}; the tombstone "
                  f"stays at least {_dur(c.tombstone_kept_ms)} and is gone within "
                  f"{_dur(c.tombstone_gone_ms)} (plus the log cleaner's scheduling delay)")
    out.print(f"  waited {r.waited_s:g} s of {r.timeout_s:g} s for the worker: "
              + ("[green]confirmed[/]" if r.confirmed else "[red]not confirmed[/]"))


@click.command("erase")
@click.argument("subject")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as one JSON object.")
@click.option("--scan", is_flag=True, help="Count the subject's retained records per engine topic "
              "(unreadable now vs. plaintext).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.0), default=DEFAULT_TIMEOUT_S,
              show_default=True, help="Seconds to wait for the worker to confirm.")
@click.pass_obj
def erase(c: Any, subject: str, as_json: bool, scan: bool, timeout_s: float) -> None:
    """Forget SUBJECT: consent and data-key tombstones, wait for the worker, print a receipt.

    Exits non-zero when the worker did not confirm (erasure notice for every
    engine, consent offset committed past the tombstone) within --timeout; the
    receipt of what was done is printed first."""
    receipt = run_erase(c.settings(), subject, timeout_s=timeout_s, scan=scan)
    if as_json:
        click.echo(orjson.dumps(receipt.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        render(Console(highlight=False, soft_wrap=True), receipt)
    if not receipt.confirmed:
        missing = [n.engine for n in receipt.notices if n.offset is None]
        what = []
        if not receipt.worker_passed:
            what.append(f"group {c.settings().group_id!r} did not commit past the tombstone")
        if missing:
            what.append("no erasure notice for " + ", ".join(missing))
        raise ErasureNotConfirmed(f"tombstones written, but the worker did not confirm within {timeout_s:g} s: "
                                  + "; ".join(what))
