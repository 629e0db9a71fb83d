"""`pfilter consent explain RECORD.json`: how a consent record becomes the effective state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

console = Console()


@click.group("consent")
def consent() -> None:
    """Inspect consent records."""


@consent.command("explain")
@click.argument("record", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--policy", "policy_file", type=click.Path(path_type=Path, dir_okay=False),
              help="policy file (default: --policy / PFILTER_POLICY_FILE, else the shipped one)")
@click.pass_obj
def explain(obj: Any, record: Path, policy_file: Path | None) -> None:
    """Explain RECORD (a consent record as JSON) purpose by purpose: explicit fields, legal
    bases, each signal (TCF, GPP, Consent Mode, Sec-GPC), objections, and the effective state.

    A malformed record (one the worker would send to the DLQ) prints one line naming the
    problem and exits 1. The output holds the record's consent choices: it is for the
    person asking, not for logs.
    """
    import orjson

    from streams.commands.policy import load_for_cli
    from streams.engine.explain import explain_record
    from streams.errors import PFilterError

    cp, _path, _stand_in = load_for_cli(obj, policy_file)
    try:
        doc = orjson.loads(record.read_bytes())
    except orjson.JSONDecodeError:
        raise click.ClickException(f"{record}: not JSON") from None
    try:
        lines = explain_record(doc, cp)
    except PFilterError as exc:
        raise click.ClickException(f"{record}: malformed consent record: {exc}") from None
    for line in lines:
        console.print(line, markup=False, highlight=False)
