"""`pfilter verify`: replay inputs and outputs, check G1, G3, G4 independently."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson


@click.command("verify")
@click.option("--exactly-once", is_flag=True, help="Read committed only; duplicates are violations.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@click.pass_obj
def verify(c: Any, exactly_once: bool, as_json: bool) -> None:
    """Exit 0 only if no violation and every input has its outcome."""
    from streams import verify as v

    s = c.settings()
    try:
        result = v.run_verify(s, exactly_once=exactly_once)
    except (ValueError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(orjson.dumps(v.as_json(result), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(v.render_report(result))
    sys.exit(0 if result.ok else 1)
