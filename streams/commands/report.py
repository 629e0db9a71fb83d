"""`pfilter report SUBJECT`: what of a subject's data went where, and why."""

from __future__ import annotations

from typing import Any

import click


@click.command("report")
@click.argument("subject")
@click.option("--format", "fmt", type=click.Choice(["operator", "text", "json", "html"]), default=None,
              help="operator: the per-engine table for an operator (default); text: a short plain-language "
                   "summary for the person; json: the data export (schemas/subject_export.schema.json); "
                   "html: one self-contained page.")
@click.option("--lang", type=click.Choice(["en", "de"]), default="en", show_default=True,
              help="Language of --format text and html.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_obj
def report(c: Any, subject: str, fmt: str | None, lang: str, as_json: bool) -> None:
    """Per engine and purpose: events sent, categories, time range, consent versions, drops."""
    if as_json:
        if fmt not in (None, "json"):
            raise click.UsageError("--json is --format json; give only one of them")
        fmt = "json"
    if fmt in (None, "operator"):
        from streams.report import build_report, render_text

        try:
            rep = build_report(c.settings(), subject)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(render_text(rep))
        return
    from streams.transparency import render

    click.echo(render(c.settings(), subject, fmt, lang), nl=fmt != "text")
