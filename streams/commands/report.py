"""`pfilter report SUBJECT`: what of a subject's data went where, and why."""

from __future__ import annotations

from typing import Any

import click
import orjson


@click.command("report")
@click.argument("subject")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def report(c: Any, subject: str, as_json: bool) -> None:
    """Per engine and purpose: events sent, categories, time range, consent versions, drops."""
    from streams.report import build_report, render_text

    try:
        rep = build_report(c.settings(), subject)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(orjson.dumps(rep, option=orjson.OPT_INDENT_2).decode() if as_json else render_text(rep))
