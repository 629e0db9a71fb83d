"""`pfilter policy`: inspect and validate policy files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)

#: Used by `check` when no pseudonym secret is configured: it only proves the
#: policy compiles; it never pseudonymizes anything real.
_CHECK_ONLY_SECRET = b"pfilter-policy-check-only-not-a-secret"


def _settings(obj: Any):  # noqa: ANN202
    """Settings from the CLI context (or from the environment when run standalone)."""
    from streams.config import ConfigError, load_settings

    try:
        if obj is not None and hasattr(obj, "settings"):
            return obj.settings()
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def load_for_cli(obj: Any, file: Path | None) -> tuple[Any, Path, bool]:
    """(compiled policy, its path, True when compiled with a stand-in secret): FILE, else
    --policy / PFILTER_POLICY_FILE, else the shipped one. A bad policy: ClickException."""
    from streams.config import ConfigError
    from streams.engine.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy
    from streams.wiring import pseudonym_secret

    settings = _settings(obj)
    path = file or settings.policy_file or DEFAULT_POLICY_PATH
    try:
        secret = pseudonym_secret(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    stand_in = not secret
    try:
        cp = load_policy(path, secret=secret or _CHECK_ONLY_SECRET, topic_prefix=settings.topic_output_prefix)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    return cp, Path(path), stand_in


@click.group("policy")
def policy() -> None:
    """Inspect and validate policy files."""


@policy.command("check")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def check(obj: Any, file: Path | None) -> None:
    """Validate a policy (default: --policy / PFILTER_POLICY_FILE, else the shipped one) and show it.

    Exits 1 with a message naming the problem when the policy is invalid.
    """
    cp, path, note = load_for_cli(obj, file)
    if note and cp.pseudonymizes:
        err.print("[yellow]note:[/] this policy pseudonymizes; at run time set PFILTER_PSEUDONYM_KEY "
                  "or PFILTER_PSEUDONYM_KEY_FILE (checked here with a stand-in secret)")
    render(cp)
    console.print(f"[green]policy OK[/] ({path})")


def _transform_names() -> dict[int, str]:
    from streams.engine.policy import TRANSFORMS

    return {v: k for k, v in TRANSFORMS.items()}


def render(cp: Any) -> None:
    """Print the engines table, the engines x purposes / categories matrices, the legal
    bases and objection classes per purpose, and the consent signals mapping."""
    names = _transform_names()
    console.print(f"policy version [bold]{cp.version}[/], {len(cp.engines)} engines, "
                  f"{len(cp.purposes)} purposes, {len(cp.categories)} categories")

    t = Table(title="engines")
    for col in ("engine", "topic", "party", "jurisdictions", "subject", "transforms"):
        t.add_column(col, overflow="fold")
    for e in cp.engines:
        transforms = "\n".join(f"{p}: {names[c]}" for p, c in e.transforms.items()) or "-"
        t.add_row(
            e.name, e.topic, e.party,
            "any" if e.jurisdictions is None else ", ".join(sorted(e.jurisdictions)),
            "pseudonym" if e.pseudonymize_subject else "id",
            transforms,
        )
    console.print(t)

    m = Table(title="purposes needed (x) / relied on for third-party sharing (3p)")
    m.add_column("engine")
    for p in cp.purposes:
        m.add_column(p, justify="center")
    for e in cp.engines:
        m.add_row(e.name, *("x" if p in e.needs else ("3p" if p in e.relied_on else "") for p in cp.purposes))
    console.print(m)

    c = Table(title="categories each engine may receive (never: payment)")
    c.add_column("category")
    c.add_column("fields")
    for e in cp.engines:
        c.add_column(e.name, justify="center")
    for cat in cp.categories:
        c.add_row(cat, ", ".join(cp.category_fields[cat]),
                  *("x" if cat in e.categories else "" for e in cp.engines))
    console.print(c)

    b = Table(title="legal bases a purpose may rest on / objection classes it belongs to (CONTRACT §3)")
    for col in ("purpose", "bases", "objection classes"):
        b.add_column(col)
    rules = cp.rules
    for p in cp.purposes:
        b.add_row(p, ", ".join(rules.bases[p]), ", ".join(rules.objections[p]) or "-")
    console.print(b)

    lines = rules.mapping.describe()
    console.print("[bold]consent signals mapping[/] (\\[signals]; signals only ever narrow the record):")
    for line in lines or ["no signal is mapped: TCF, GPP and Consent Mode strings are checked, not used"]:
        console.print(f"  {line}", markup=False, highlight=False)
