"""`pfilter worker`: run the filter (the fast runtime by default, or the faust one)."""

from __future__ import annotations

from typing import Any

import click


@click.command("worker")
@click.option("--runtime", type=click.Choice(["faust", "fast"]), help="[PFILTER_RUNTIME, fast]")
@click.option("--store", type=click.Choice(["rocksdb", "memory"]), help="Consent store [PFILTER_STORE].")
@click.option("--web-port", type=int, help="[PFILTER_WEB_PORT, 6066]")
@click.option("--group-id", help="Consumer group / app id [PFILTER_GROUP_ID].")
@click.option("--processing-guarantee", type=click.Choice(["at_least_once", "exactly_once"]),
              help="[PFILTER_PROCESSING_GUARANTEE]")
@click.pass_obj
def worker(c: Any, **flags: Any) -> None:
    """Consume events and consent, emit per engine what consent and policy allow."""
    from streams import logs
    from streams.config import ConfigError
    from streams.kafka.admin import TopicError

    s = c.settings(**flags)
    logs.setup(s.log_level)
    from streams import production

    production.enforce(s)  # PFILTER_ENV=production: unsafe settings stop the worker here, one line
    try:
        if s.runtime == "fast":
            from streams.runtime.fast import run_fast_worker

            run_fast_worker(s)
            return
        if s.guarantee == "exactly_once":
            raise click.ClickException(
                "the faust runtime offers at_least_once only; use --runtime fast for exactly_once"
            )
        from faust.worker import Worker

        from streams.runtime.faust_app import create_app

        app = create_app(s)
    except (ConfigError, TopicError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    Worker(app, loglevel=logs.library_level(s.log_level),
           logging_config=logs.dict_config(s.log_level)).execute_from_commandline()
