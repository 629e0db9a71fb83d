"""`pfilter`: the one command users type.

Flags override environment variables (``PFILTER_*``); both end up in one
``Settings`` built by ``streams.config.load_settings``. Sub-commands that need
heavy imports (faust, the engine) import them inside the command so that
``pfilter kafka up`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from streams.config import ConfigError, Settings, load_settings, masked, settings_markdown
from streams.errors import PFilterError

console = Console(stderr=False)
err = Console(stderr=True)


class Ctx:
    """Global flags, turned into Settings on first use (so --help never fails)."""

    def __init__(self, **overrides: Any) -> None:
        self.overrides = overrides
        self._settings: Settings | None = None

    def settings(self, **more: Any) -> Settings:
        if more or self._settings is None:
            try:
                self._settings = load_settings(**{**self.overrides, **more})
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings


pass_ctx = click.make_pass_decorator(Ctx)


# ---------------------------------------------------------------- lazily registered groups
#: Sub-command modules under streams/commands/, each exposing a click command
#: or group of the same name. Imported on demand so start-up stays quick.
_LAZY = {
    "policy": "streams.commands.policy:policy",
    "consent": "streams.commands.consent:consent",
    "demo": "streams.commands.demo:demo",
    "worker": "streams.commands.worker:worker",
    "verify": "streams.commands.verify:verify",
    "report": "streams.commands.report:report",
    "bench": "streams.commands.bench:bench",
    "loadgen": "streams.commands.loadgen:loadgen",
    "tail": "streams.commands.tail:tail",
    "serve": "streams.commands.serve:serve",
    "erase": "streams.commands.erase:erase",
    "registry": "streams.commands.registry:registry",
}


def _load(target: str) -> click.Command | None:
    mod, attr = target.split(":")
    try:
        module = importlib.import_module(mod)
    except ModuleNotFoundError as exc:
        if exc.name == mod:
            return None
        raise
    return getattr(module, attr)


class _LazyCli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        """Every error the filter raises on purpose ends the command with its one-line message."""
        try:
            return super().invoke(ctx)
        except PFilterError as exc:
            raise click.ClickException(str(exc)) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(n for n, t in _LAZY.items() if importlib.util.find_spec(t.split(":")[0]) is not None)
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is None and name in _LAZY:
            cmd = _load(_LAZY[name])
        return cmd



@click.group(cls=_LazyCli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--bootstrap-servers", "kafka_bootstrap_servers", help="Kafka brokers [KAFKA_BOOTSTRAP_SERVERS].")
@click.option("--state-dir", type=click.Path(path_type=Path), help="State directory [PFILTER_STATE_DIR].")
@click.option("--policy", "policy_file", type=click.Path(path_type=Path), help="Policy file [PFILTER_POLICY_FILE].")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="[PFILTER_LOG_LEVEL]")
@click.pass_context
def cli(ctx: click.Context, **overrides: Any) -> None:
    """Consent-enforcing personalization filter for Kafka."""
    ctx.obj = Ctx(**overrides)


# ---------------------------------------------------------------- kafka
@cli.group()
def kafka() -> None:
    """The project's local single-node Kafka broker (KRaft, official jars)."""


def _port_opt(f):  # noqa: ANN001
    return click.option("--port", "kafka_port", type=int, help="Client port [PFILTER_KAFKA_PORT, 9092].")(f)


@kafka.command("fetch")
@pass_ctx
def kafka_fetch(c: Ctx) -> None:
    """Fetch the broker jars with Maven (idempotent)."""
    from streams.kafka.broker import BrokerError, LocalBroker

    try:
        path = LocalBroker(c.settings()).fetch(quiet=False)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"Kafka jars in {path}")


def _secure_opt(f):  # noqa: ANN001
    return click.option("--secure", is_flag=True,
                        help="The SASL_SSL broker with ACLs (its own state dir kafka-<port>-secure).")(f)


@kafka.command("up")
@_port_opt
@_secure_opt
@click.option("--heap", "kafka_heap", help="Broker heap, e.g. 512m [PFILTER_KAFKA_HEAP].")
@pass_ctx
def kafka_up(c: Ctx, secure: bool, **flags: Any) -> None:
    """Start the broker (or reuse the one already started) and print its address."""
    from streams.kafka.broker import BrokerError, LocalBroker

    broker = LocalBroker(c.settings(**flags), secure=secure)
    was_running = broker.status().running
    try:
        with console.status("starting Kafka…", spinner="dots") if not was_running else _null():
            st = broker.up()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    note = "already running" if was_running else "started"
    err.print(f"[green]Kafka {note}[/] (pid {st.pid}, log {st.log_file})")
    if secure:
        files = broker.secure_files
        err.print(f"SASL_SSL, SCRAM-SHA-512; principals {', '.join(u for u in files.users() if u != 'broker')}; "
                  f"client settings per principal in {files.dir}/<principal>.env (passwords in <principal>.password)")
    click.echo(st.bootstrap)


@kafka.command("down")
@_port_opt
@_secure_opt
@pass_ctx
def kafka_down(c: Ctx, secure: bool, **flags: Any) -> None:
    """Stop the broker this project started on that port (and nothing else)."""
    from streams.kafka.broker import LocalBroker

    stopped = LocalBroker(c.settings(**flags), secure=secure).down()
    console.print("Kafka stopped" if stopped else "no broker of ours was running")


@kafka.command("status")
@_port_opt
@_secure_opt
@pass_ctx
def kafka_status(c: Ctx, secure: bool, **flags: Any) -> None:
    """Say whether our broker runs; exit 1 when it does not."""
    from streams.kafka.broker import LocalBroker

    st = LocalBroker(c.settings(**flags), secure=secure).status()
    if st.running:
        console.print(f"running: pid {st.pid}, {st.bootstrap}, data in {st.home}")
    else:
        console.print(f"not running ({st.bootstrap})")
        sys.exit(1)


# ---------------------------------------------------------------- topics
@cli.group()
def topics() -> None:
    """Create and check the contract's topics."""


def _engine_topics(settings: Settings) -> list[str]:
    from streams.wiring import policy_for_topics

    return [e.topic for e in policy_for_topics(settings).engines]


@topics.command("create")
@click.option("--partitions", type=int, help="[PFILTER_PARTITIONS, 6]")
@click.option("--replication-factor", type=int, help="[PFILTER_REPLICATION_FACTOR, 1]")
@pass_ctx
def topics_create(c: Ctx, **flags: Any) -> None:
    """Create missing topics (idempotent); the consent topic compacted."""
    from streams.kafka.admin import TopicError, create_topics

    s = c.settings(**flags)
    try:
        for name, what in create_topics(s, _engine_topics(s)):
            console.print(f"{what:8} {name}")
    except TopicError as exc:
        raise click.ClickException(str(exc)) from None


@topics.command("check")
@pass_ctx
def topics_check(c: Ctx) -> None:
    """Verify existence, co-partitioning and consent topic configs; exit 1 on a problem."""
    from streams.kafka.admin import check_topics

    s = c.settings()
    problems = check_topics(s, _engine_topics(s))
    for p in problems:
        err.print(f"[red]problem:[/] {p}")
    if problems:
        sys.exit(1)
    console.print("topics OK")


# ---------------------------------------------------------------- config
@cli.command("config")
@click.option("--markdown", is_flag=True, help="Print the README's configuration table.")
@pass_ctx
def config_cmd(c: Ctx, markdown: bool) -> None:
    """Show the effective configuration (secrets masked)."""
    if markdown:
        click.echo(settings_markdown())
        return
    for name, value in masked(c.settings()).items():
        click.echo(f"{name} = {value}")




class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def main() -> None:
    cli(prog_name="pfilter")


if __name__ == "__main__":
    main()
