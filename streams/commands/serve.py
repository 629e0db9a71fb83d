"""`pfilter serve`: the support page (look up a customer, export, erase, live worker overview)."""

from __future__ import annotations

from typing import Any

import click

#: A shorter token is guessable by anyone who can reach the port.
MIN_TOKEN_LEN = 16


@click.command("serve")
@click.option("--port", "support_port", type=int, help="[PFILTER_SUPPORT_PORT, 6070]")
@click.option("--bind", "support_bind", help="[PFILTER_SUPPORT_BIND, 127.0.0.1]")
@click.option("--metrics-url", "support_metrics_url",
              help="Worker /metrics for the overview [PFILTER_SUPPORT_METRICS_URL].")
@click.option("--admin-token", "support_admin_token", help="Enables erase [PFILTER_SUPPORT_ADMIN_TOKEN]; "
              "prefer the environment variable (a flag shows in the process list).")
@click.pass_obj
def serve(c: Any, **flags: Any) -> None:
    """Serve the support page; every page needs PFILTER_SUPPORT_TOKEN."""
    from aiohttp import web

    from streams import logs
    from streams.transparency.support import make_app

    s = c.settings(**flags)
    for name, value in (("PFILTER_SUPPORT_TOKEN", s.support_token), ("PFILTER_SUPPORT_ADMIN_TOKEN",
                                                                     s.support_admin_token)):
        if value is not None and len(value) < MIN_TOKEN_LEN:
            raise click.ClickException(f"{name}: at least {MIN_TOKEN_LEN} characters")
    if not s.support_token:
        raise click.ClickException("PFILTER_SUPPORT_TOKEN is not set: the support page never runs without a token")
    if s.support_admin_token == s.support_token:
        raise click.ClickException("PFILTER_SUPPORT_ADMIN_TOKEN must differ from PFILTER_SUPPORT_TOKEN")
    logs.setup(s.log_level)
    click.echo(f"support page on http://{s.support_bind}:{s.support_port}/ "
               f"(erase {'enabled' if s.support_admin_token else 'disabled'})")
    # access_log=None: request lines carry subject ids in query strings (G6)
    web.run_app(make_app(s), host=s.support_bind, port=s.support_port, access_log=None, print=None)
