"""`pfilter registry fetch/up/down/status`: the project's local schema registry.

A thin shell over ``streams.kafka.registry.LocalRegistry`` (Apicurio Registry
from Maven Central, in-memory storage, loopback only). ``up`` prints the URL to
put in ``SCHEMA_REGISTRY_URL``, the way ``pfilter kafka up`` prints the
bootstrap address.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console

console = Console()
err = Console(stderr=True)


def _port_opt(f):  # noqa: ANN001, ANN202
    return click.option("--port", "registry_port", type=int,
                        help="Registry port [PFILTER_REGISTRY_PORT, 8081].")(f)


@click.group("registry")
def registry() -> None:
    """The project's local schema registry (Apicurio Registry, Confluent-compatible API)."""


@registry.command("fetch")
@click.pass_obj
def registry_fetch(c: Any) -> None:
    """Fetch the registry with Maven, then prepare its start-up cache (both idempotent)."""
    from streams.kafka.registry import LocalRegistry

    reg = LocalRegistry(c.settings())
    path = reg.fetch(quiet=False)
    console.print(f"Apicurio Registry in {path}")
    with console.status("one start to build its AOT cache (Java 25+)…", spinner="dots"):
        aot = reg.train()
    console.print(f"start-up cache {aot}" if aot else "no start-up cache (needs Java 25+); it starts slower")


@registry.command("up")
@_port_opt
@click.option("--heap", "registry_heap", help="Registry heap, e.g. 256m [PFILTER_REGISTRY_HEAP].")
@click.pass_obj
def registry_up(c: Any, **flags: Any) -> None:
    """Start the registry (or reuse the one already started) and print its SCHEMA_REGISTRY_URL."""
    from streams.kafka.registry import LocalRegistry

    reg = LocalRegistry(c.settings(**flags))
    was_running = reg.status().running
    if was_running:
        st = reg.up()
    else:
        with console.status("starting the schema registry…", spinner="dots"):
            st = reg.up()
    note = "already running" if was_running else "started"
    err.print(f"[green]Schema registry {note}[/] (pid {st.pid}, in-memory storage, log {st.log_file})")
    click.echo(st.url)


@registry.command("down")
@_port_opt
@click.pass_obj
def registry_down(c: Any, **flags: Any) -> None:
    """Stop the registry this project started on that port (and nothing else); its schemas go with it."""
    from streams.kafka.registry import LocalRegistry

    stopped = LocalRegistry(c.settings(**flags)).down()
    console.print("schema registry stopped" if stopped else "no registry of ours was running")


@registry.command("status")
@_port_opt
@click.pass_obj
def registry_status(c: Any, **flags: Any) -> None:
    """Say whether our registry runs; exit 1 when it does not."""
    from streams.kafka.registry import LocalRegistry

    st = LocalRegistry(c.settings(**flags)).status()
    if st.running:
        console.print(f"running: pid {st.pid}, {st.url}")
    else:
        console.print(f"not running ({st.url})")
        sys.exit(1)
