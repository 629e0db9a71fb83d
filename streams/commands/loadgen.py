"""`pfilter loadgen`: write the synthetic population's consent and events to the input topics.

    pfilter loadgen --count 2000000 --subjects 1000000          # backlog, as fast as possible
    pfilter loadgen --rate 2000 --duration 60 --churn-share 0.02 # live load
    pfilter loadgen --count 1000 --json                         # machine-readable summary

Topic names, partition count and the broker come from the settings
(``PFILTER_TOPIC_*``, ``PFILTER_PARTITIONS``, ``KAFKA_BOOTSTRAP_SERVERS`` or
the local broker on ``PFILTER_KAFKA_PORT``). Missing topics are created first
(``--no-create-topics`` to skip). Exits 1 when any record failed delivery.
"""

from __future__ import annotations

from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err = Console(stderr=True)


@click.command("loadgen")
@click.option("--count", type=click.IntRange(min=0), help="Backlog mode: produce this many events as fast as possible.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Rate mode: events per second.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Rate mode: seconds to produce for.")
@click.option("--subjects", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Size of the consent population.")
@click.option("--seed", type=int, default=7, show_default=True, help="Population seed (same seed, same records).")
@click.option("--churn-share", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Consent changes (withdrawals, re-grants, erasures, ...) per event, interleaved with them.")
@click.option("--purchase-share", type=click.FloatRange(0.0, 1.0), default=None,
              help="Share of events that are purchases [population default 0.15].")
@click.option("--consent/--no-consent", default=True, show_default=True,
              help="Write the population's consent records before the events.")
@click.option("--create-topics/--no-create-topics", default=True, show_default=True,
              help="Create missing topics first (idempotent).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.pass_obj
def loadgen(c: Any, count: int | None, rate: float | None, duration: float, subjects: int, seed: int,
            churn_share: float, purchase_share: float | None, consent: bool, create_topics: bool,
            as_json: bool, quiet: bool) -> None:
    """Produce consent and a click/purchase mix (murmur2-partitioned) to the input topics."""
    from streams.loadgen import LoadgenError, LoadStats, run

    if (count is None) == (rate is None):
        raise click.UsageError("give exactly one of --count N (backlog mode) and --rate N (rate mode, with --duration)")
    s = c.settings()
    if create_topics:
        from streams.kafka.admin import TopicError
        from streams.kafka.admin import create_topics as _create
        from streams.wiring import policy_for_topics

        try:
            _create(s, [e.topic for e in policy_for_topics(s).engines])
        except TopicError as exc:
            raise click.ClickException(str(exc)) from None

    what = f"{count:,} events (backlog)" if count is not None else f"{rate:,.0f} events/s for {duration:.0f}s"
    if not quiet:
        err.print(f"loadgen: {what} to [bold]{s.topic_clickstream}[/]/[bold]{s.topic_purchases}[/], "
                  f"consent of {subjects:,} subjects to [bold]{s.topic_consent}[/] ({s.bootstrap})")
    progress = None if quiet else Progress(
        TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), console=err, transient=False, refresh_per_second=4,
    )
    tasks: dict[str, Any] = {}

    def show(st: LoadStats) -> None:
        if progress is None:
            return
        if st.phase == "consent" and st.target_consent:
            if "consent" not in tasks:
                tasks["consent"] = progress.add_task("consent", total=st.target_consent, rate="")
            progress.update(tasks["consent"], completed=st.consent)
            return
        if "consent" in tasks:  # the consent phase is over: its exact count is known now
            progress.update(tasks.pop("consent"), completed=st.target_consent, total=st.target_consent)
        if "events" not in tasks:
            tasks["events"] = progress.add_task("events", total=st.target_events, rate="")
        extra = f"{st.events / max(1e-9, st.events_elapsed_now()):,.0f}/s, {st.delivery_errors} delivery errors"
        if st.mode == "rate" and st.consent:
            extra += f", {st.consent:,} consent records"
        progress.update(tasks["events"], completed=st.events, rate=extra)

    try:
        if progress is not None:
            progress.start()
        try:
            stats = run(s, count=count, rate=rate, duration=duration if rate is not None else None,
                        subjects=subjects, seed=seed, churn_share=churn_share, consent=consent,
                        purchase_share=purchase_share, progress=show)
        finally:
            if progress is not None:
                progress.stop()
    except LoadgenError as exc:
        raise click.UsageError(str(exc)) from None

    summary = stats.summary()
    if as_json:
        click.echo(orjson.dumps(summary).decode())
    elif not quiet:
        err.print(
            f"produced {stats.events:,} events ({stats.clicks:,} clicks, {stats.purchases:,} purchases) and "
            f"{stats.consent:,} consent records ({stats.tombstones:,} tombstones) in {stats.elapsed_s:.1f}s; "
            f"events {stats.events_per_s:,.0f}/s; delivery errors: {stats.delivery_errors}"
        )
    if stats.delivery_errors:
        err.print(f"[red]{stats.delivery_errors} records failed delivery[/] (first: {stats.first_error})")
        raise SystemExit(1)
