"""Benchmark peer, deliberately naive: the ``offers`` filter as a textbook faust app.

This is the baseline of what most faust tutorials would produce:

- every click event and consent record becomes a faust ``Record`` object
  (nested ``Context``/``Geo``/``Purpose`` records included);
- consent lives in a faust ``Table`` (in-memory store with its changelog
  topic); the consent agent keeps the record with the greatest ``updated_at``
  (ties go to the later record) and deletes the key on a tombstone;
- the click agent looks its subject up in the table once per event, decides,
  and ``await``s ``topic.send()`` for every output: no batching anywhere.

Faust co-partitions the two input topics and the table's changelog (the app's
``topic_partitions`` is set to the input partition count at start-up).
Drops are not recorded; malformed input is skipped.

Options: ``--bootstrap``, ``--group`` (the faust app id, which is the consumer
group), ``--clickstream-topic``, ``--consent-topic``, ``--output-topic``,
``--state-dir``, ``--idle-exit-s`` (stop after that many seconds without input;
0 = never), ``--policy-version``; each also from the environment
(``PEER_BOOTSTRAP``, ``PEER_GROUP``, ...). SIGTERM/SIGINT stop it cleanly. On
exit one JSON line with counts goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

import faust

PURPOSE = "personalization"
BROWSING = ("url", "title", "query", "product_id", "category", "price", "quantity")
PURCHASE_HISTORY = ("order_id", "items", "total", "currency")

COUNTS = {"events": 0, "consent": 0, "emitted": 0}


class Geo(faust.Record, serializer="json"):
    country: Optional[str] = None
    region: Optional[str] = None
    city: Optional[str] = None
    lat: Optional[float] = None
    lon: Optional[float] = None


class Context(faust.Record, serializer="json"):
    ip: Optional[str] = None
    user_agent: Optional[str] = None
    device_id: Optional[str] = None
    session_id: Optional[str] = None
    referrer: Optional[str] = None
    geo: Optional[Geo] = None


class ClickEvent(faust.Record, serializer="json"):
    event_id: str
    event_type: str
    ts: int
    subject_id: Optional[str] = None
    anonymous_id: Optional[str] = None
    context: Optional[Context] = None
    url: Optional[str] = None
    title: Optional[str] = None
    query: Optional[str] = None
    product_id: Optional[str] = None
    category: Optional[str] = None
    price: Optional[float] = None
    quantity: Optional[int] = None
    method: Optional[str] = None
    # purchase_history fields, in case the topic carries them
    order_id: Optional[str] = None
    items: Optional[List[Dict[str, Any]]] = None
    total: Optional[float] = None
    currency: Optional[str] = None


class Purpose(faust.Record, serializer="json"):
    status: str
    granted_at: Optional[int] = None
    expires_at: Optional[int] = None


class Consent(faust.Record, serializer="json"):
    subject_id: str
    updated_at: int
    purposes: Dict[str, Purpose]
    categories: Dict[str, bool]
    jurisdiction: Optional[str] = None
    gpc: bool = False


def offers_output(e: ClickEvent, c: Optional[Consent], now: int, policy_version: str) -> Optional[dict]:
    """The filtered record for engine ``offers``, or None when the rule drops the event."""
    if e.subject_id is None:
        return None  # anonymous
    if c is None:
        return None  # no_consent
    p = c.purposes.get(PURPOSE)
    if p is None or p.status != "granted":
        return None  # purpose_denied
    if p.granted_at is None or p.granted_at > e.ts:
        return None  # before_grant
    if p.expires_at is not None and not (now < p.expires_at and e.ts < p.expires_at):
        return None  # expired
    out: dict = {"event_id": e.event_id, "subject_id": e.subject_id, "event_type": e.event_type, "ts": e.ts}
    kept = 0
    if c.categories.get("browsing") is True:
        for f in BROWSING:
            v = getattr(e, f)
            if v is not None:
                out[f] = v
                kept += 1
        if e.context is not None and e.context.referrer is not None:
            out["context"] = {"referrer": e.context.referrer}
            kept += 1
    if c.categories.get("purchase_history") is True:
        for f in PURCHASE_HISTORY:
            v = getattr(e, f)
            if v is not None:
                out[f] = v
                kept += 1
    if not kept:
        return None  # nothing_permitted
    out["consent_version"] = c.updated_at
    out["policy_version"] = policy_version
    out["purposes"] = [PURPOSE]
    return out


def _options(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=env("PEER_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--group", default=env("PEER_GROUP", "offers-faust-peer"))
    ap.add_argument("--clickstream-topic", default=env("PEER_CLICKSTREAM_TOPIC", "clickstream"))
    ap.add_argument("--consent-topic", default=env("PEER_CONSENT_TOPIC", "consent"))
    ap.add_argument("--output-topic", default=env("PEER_OUTPUT_TOPIC", "personalization.offers"))
    ap.add_argument("--state-dir", default=env("PEER_STATE_DIR"))
    ap.add_argument("--idle-exit-s", type=float, default=float(env("PEER_IDLE_EXIT_S", "30")))
    ap.add_argument("--policy-version", default=env("PEER_POLICY_VERSION", "default-1"))
    return ap.parse_args(argv)


def _partitions(bootstrap: str, topic: str) -> int:
    """Partition count of an input topic (faust needs it for the table's changelog)."""
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=30)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise SystemExit(f"naive_faust: topic {topic} does not exist")
    return len(t.partitions)


def build(opts: argparse.Namespace) -> faust.App:
    partitions = _partitions(opts.bootstrap, opts.clickstream_topic)
    app = faust.App(
        opts.group,
        broker=";".join(f"kafka://{h.strip()}" for h in opts.bootstrap.split(",") if h.strip()),
        store="memory://",
        datadir=opts.state_dir or os.path.join(tempfile.gettempdir(), "faust-offers-peer", opts.group),
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_partitions=partitions,
        web_enabled=False,
    )
    # Raw values on the consent topic: faust refuses a null value for a Record
    # value type (ValueDecodeError, record skipped), so tombstones would be lost.
    consent_topic = app.topic(opts.consent_topic, key_type=str, value_type=bytes, value_serializer="raw")
    click_topic = app.topic(opts.clickstream_topic, key_type=str, value_type=ClickEvent)
    offers_topic = app.topic(opts.output_topic, key_type=str, value_serializer="json")
    consents = app.Table("consent", key_type=str, value_type=Consent, default=None, partitions=partitions)
    policy_version = opts.policy_version
    last_input = [time.monotonic()]

    @app.agent(consent_topic)
    async def consent_agent(stream: faust.StreamT) -> None:
        async for subject, raw in stream.items():
            COUNTS["consent"] += 1
            last_input[0] = time.monotonic()
            if subject is None:
                continue
            if raw is None:  # tombstone: erasure
                consents.pop(subject, None)
                continue
            try:
                consent = Consent.loads(raw)
            except Exception:  # malformed: skipped (the real filter blocks the subject)
                continue
            current = consents.get(subject)
            if current is None or consent.updated_at >= current.updated_at:
                consents[subject] = consent

    @app.agent(click_topic)
    async def offers_agent(stream: faust.StreamT) -> None:
        async for subject, event in stream.items():
            COUNTS["events"] += 1
            last_input[0] = time.monotonic()
            consent = consents.get(event.subject_id) if event.subject_id is not None else None
            out = offers_output(event, consent, int(time.time() * 1000), policy_version)
            if out is not None:
                await offers_topic.send(key=subject, value=out)
                COUNTS["emitted"] += 1

    if opts.idle_exit_s > 0:
        @app.timer(interval=1.0)
        async def stop_when_idle() -> None:
            if time.monotonic() - last_input[0] > opts.idle_exit_s:
                os.kill(os.getpid(), signal.SIGTERM)  # the worker's own clean shutdown path

        @app.on_partitions_assigned.connect
        async def reset_idle(app_: faust.App, *args: Any, **kw: Any) -> None:  # noqa: ARG001
            last_input[0] = time.monotonic()

    return app


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    app = build(opts)
    started = time.monotonic()
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        print(json.dumps({"peer": "faust", **COUNTS, "run_s": round(time.monotonic() - started, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
