"""`pfilter demo`: the README's run command, the whole product in one minute.

1. starts the local broker unless KAFKA_BOOTSTRAP_SERVERS is given;
2. creates this run's topics (``demo.<run>.*``, so verify sees exactly this run);
3. loads a consent population (the five privacy segments);
4. starts a worker process and waits until it is ready;
5. streams clicks and purchases at a steady rate for ``--duration`` seconds,
   with consent churn (withdrawals, re-grants, expiries, erasures, GPC
   opt-outs), showing live events/s, emitted per engine and drops per reason
   (scraped from the worker's /metrics);
6. waits for the worker to drain, stops it, prints a summary and runs
   ``verify`` over everything the run wrote; exits non-zero if verify fails.
"""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import click
import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table

from streams.crypto import new_kek_text

console = Console()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(text: str) -> dict[str, dict[str, float]]:
    """Prometheus text -> {metric: {label value: value}} for the few metrics we show."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            label = next(iter(s.labels.values()), "")
            out.setdefault(s.name, {})[label] = out.get(s.name, {}).get(label, 0.0) + s.value
    return out


def _live_table(produced: int, consent_changes: int, rate: float, m: dict, elapsed: float, duration: float) -> Table:
    t = Table(title=f"pfilter demo  {elapsed:5.1f}/{duration:.0f}s", show_header=True, expand=False)
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("events produced", f"{produced:,}")
    t.add_row("produce rate (events/s)", f"{rate:,.0f}")
    t.add_row("consent changes produced", f"{consent_changes:,}")
    ins = sum(m.get("pfilter_events_in_total", {}).values())
    t.add_row("events decided by the worker", f"{ins:,.0f}")
    for engine, n in sorted(m.get("pfilter_emitted_total", {}).items()):
        t.add_row(f"  emitted to {engine}", f"{n:,.0f}")
    for reason, n in sorted(m.get("pfilter_dropped_total", {}).items()):
        t.add_row(f"  dropped (event x engine): {reason}", f"{n:,.0f}")
    dlq = sum(m.get("pfilter_dlq_total", {}).values())
    t.add_row("  to the DLQ", f"{dlq:,.0f}")
    return t


@click.command("demo")
@click.option("--duration", type=float, default=30.0, show_default=True, help="Seconds to stream events.")
@click.option("--rate", type=float, default=2000.0, show_default=True, help="Events per second to produce.")
@click.option("--subjects", type=int, default=5000, show_default=True, help="Size of the consent population.")
@click.option("--runtime", type=click.Choice(["faust", "fast"]), default=None, help="[PFILTER_RUNTIME, fast]")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--keep-worker-log", is_flag=True, help="Print the worker log path at the end.")
@click.pass_obj
def demo(c: Any, duration: float, rate: float, subjects: int, runtime: str | None, seed: int,
         keep_worker_log: bool) -> None:
    """Run the demo against the local broker (started if needed), then verify."""
    from confluent_kafka import Producer

    from streams import population
    from streams.kafka.admin import create_topics
    from streams.kafka.broker import BrokerError, LocalBroker
    from streams.kafka.clients import producer_config
    from streams.runtime.process import WorkerProcess
    from streams.verify import render_report, run_verify
    from streams.wiring import policy_for_topics

    base = c.settings()
    if not base.kafka_bootstrap_servers:
        try:
            with console.status("starting the local Kafka broker (first start fetches the jars)…"):
                st = LocalBroker(base).up()
        except BrokerError as exc:
            raise click.ClickException(str(exc)) from None
        console.print(f"Kafka at [bold]{st.bootstrap}[/] (pid {st.pid}; stop it with `pfilter kafka down`)")
        _drop_old_demo_topics(base)
    run = time.strftime("%H%M%S") + "-" + uuid.uuid4().hex[:4]
    pre = f"demo.{run}."
    s = c.settings(
        topic_clickstream=pre + "clickstream", topic_purchases=pre + "purchases", topic_consent=pre + "consent",
        topic_output_prefix=pre + "personalization.", topic_decisions=pre + "decisions",
        topic_erasures=pre + "erasures", topic_dlq=pre + "dlq", group_id=f"pfilter-demo-{run}",
        web_port=_free_port(), runtime=runtime,
        pseudonym_key=base.pseudonym_key or (None if base.pseudonym_key_file else f"demo-only-secret-{run}"),
        # the default policy encrypts the email engine's contact fields: a throwaway KEK per run
        topic_keys=pre + "keys",
        kek=base.kek or (None if base.kek_file else new_kek_text()),
    )
    engines = [e.topic for e in policy_for_topics(s).engines]
    create_topics(s, engines)
    console.print(f"topics: [bold]{pre}*[/] ({s.partitions} partitions each)")

    spec = population.PopulationSpec(subjects=subjects, seed=seed)
    producer = Producer(producer_config(s))
    now = int(time.time() * 1000)
    n_consent = 0
    for rec in population.consent_records(spec, now):
        producer.produce(s.topic_consent, orjson.dumps(rec), rec["subject_id"].encode())
        n_consent += 1
        if n_consent % 10000 == 0:
            producer.poll(0)
    producer.flush(60)
    console.print(f"consent population: {n_consent:,} records for {subjects:,} subjects "
                  f"({', '.join(population.SEGMENTS)})")

    log_file = s.state_dir / "demo" / f"worker-{run}.log"
    worker = WorkerProcess(s, log_file).start()
    try:
        with console.status(f"starting the {worker.runtime} worker…"):
            ready_s = worker.wait_ready()
        console.print(f"worker ready in {ready_s:.1f}s (metrics at {worker.url}/metrics)")
        produced, changes = _stream(s, producer, spec, duration, rate, worker)
        console.print("draining…")
        _drain(worker, produced, timeout=120)
    finally:
        code = worker.stop()
    console.print(f"worker stopped (exit {code}); log: {log_file}")

    eos = WorkerProcess(s, log_file).guarantee == "exactly_once"
    console.print("verifying every input, output and decision of this run"
                  + (" (read_committed; a duplicate is a violation)…" if eos else "…"))
    result = run_verify(s, exactly_once=eos)
    console.print(render_report(result))
    if keep_worker_log:
        console.print(f"worker log: {log_file}")
    if not result.ok:
        raise click.ClickException("verify found problems (see above)")


def _drop_old_demo_topics(s: Any) -> None:
    """Earlier demo runs' topics, on our own local broker only (never on a given cluster)."""
    from confluent_kafka.admin import AdminClient

    from streams.kafka.clients import admin_config

    admin = AdminClient(admin_config(s))
    old = [t for t in admin.list_topics(timeout=30).topics if t.startswith(("demo.", "pfilter-demo-"))]
    if old:
        for fut in admin.delete_topics(old, operation_timeout=30).values():
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - best effort housekeeping
                pass


def _stream(s: Any, producer: Any, spec: Any, duration: float, rate: float, worker: Any) -> tuple[int, int]:
    """Produce events at ``rate`` for ``duration`` with consent churn; live display."""
    from streams import population

    now = int(time.time() * 1000)
    expected = int(duration * rate)
    events = population.event_bytes(spec, now, expected, start_ts=now, rate_per_s=rate)
    churn = population.churn(spec, now, max(1, expected // 50))  # ~2% consent changes
    produced = changes = 0
    t0 = time.monotonic()
    last_ui = 0.0
    metrics: dict = {}
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            elapsed = time.monotonic() - t0
            if elapsed >= duration:
                break
            due = min(expected, int(elapsed * rate))
            while produced < due:
                try:
                    kind, value, key = next(events)
                except StopIteration:
                    break
                topic = s.topic_purchases if kind == "purchase" else s.topic_clickstream
                producer.produce(topic, value, key.encode() if key else None)
                produced += 1
                if produced % 50 == 0:
                    try:
                        sid, rec = next(churn)
                    except StopIteration:
                        pass
                    else:
                        producer.produce(s.topic_consent, orjson.dumps(rec) if rec is not None else None, sid.encode())
                        changes += 1
            producer.poll(0)
            if elapsed - last_ui >= 0.5:
                last_ui = elapsed
                try:
                    metrics = _scrape(worker.metrics())
                except Exception:  # noqa: BLE001 - display only
                    pass
                live.update(_live_table(produced, changes, produced / max(elapsed, 1e-9), metrics, elapsed, duration))
            time.sleep(0.005)
        producer.flush(60)
        try:
            metrics = _scrape(worker.metrics())
        except Exception:  # noqa: BLE001
            pass
        live.update(_live_table(produced, changes, produced / max(duration, 1e-9), metrics, duration, duration))
    return produced, changes


def _drain(worker: Any, produced: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _scrape(worker.metrics())
        if sum(m.get("pfilter_events_in_total", {}).values()) >= produced:
            return
        time.sleep(0.5)
    raise click.ClickException(f"worker did not decide all {produced} events within {timeout:.0f}s")
