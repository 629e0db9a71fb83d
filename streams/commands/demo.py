"""`pfilter demo`: the README's run command.

Starts the local broker when no KAFKA_BOOTSTRAP_SERVERS is given, creates the
topics, and shows records going through Kafka. (The full filter demo with a
worker, a synthetic population and verification replaces the round trip once
the worker exists.)
"""

from __future__ import annotations

import time
import uuid

import click
from rich.console import Console

console = Console()


@click.command("demo")
@click.option("--duration", type=float, default=20.0, show_default=True, help="Seconds to stream.")
@click.pass_obj
def demo(c, duration: float) -> None:  # noqa: ANN001
    """Run the demo against the local broker (started if needed)."""
    from confluent_kafka import Consumer, Producer

    from streams.kafka.admin import create_topics
    from streams.kafka.broker import BrokerError, LocalBroker
    from streams.kafka.clients import consumer_config, producer_config
    from streams.wiring import policy_for_topics

    s = c.settings()
    if not s.kafka_bootstrap_servers:
        try:
            with console.status("starting the local Kafka broker…"):
                st = LocalBroker(s).up()
        except BrokerError as exc:
            raise click.ClickException(str(exc)) from None
        console.print(f"Kafka at {st.bootstrap} (pid {st.pid})")
    for name, what in create_topics(s, [e.topic for e in policy_for_topics(s).engines]):
        console.print(f"  topic {name}: {what}")
    run = uuid.uuid4().hex[:8]
    p = Producer(producer_config(s))
    n = 1000
    t0 = time.perf_counter()
    for i in range(n):
        p.produce(s.topic_dlq + ".roundtrip", key=f"s-{i}".encode(), value=f"{run}-{i}".encode())
    p.flush(30)
    cons = Consumer(consumer_config(s, group_id=f"demo-{run}"))
    cons.subscribe([s.topic_dlq + ".roundtrip"])
    seen = 0
    deadline = time.monotonic() + max(duration, 10)
    while seen < n and time.monotonic() < deadline:
        for m in cons.consume(500, timeout=0.5):
            if m.error() is None and m.value().startswith(run.encode()):
                seen += 1
    cons.close()
    console.print(f"round trip: produced {n}, consumed {seen} in {time.perf_counter() - t0:.2f}s")
    if seen != n:
        raise click.ClickException("round trip incomplete")
