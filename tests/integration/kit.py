"""Helpers for integration tests against the real broker: produce, wait, read back."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.config import Settings
from streams.engine.decisions import engine_views
from streams.kafka.admin import create_topics
from streams.kafka.clients import plain_consumer_config, producer_config
from streams.kafka.replay import replay
from streams.runtime.process import WorkerProcess
from streams.wiring import policy_for_topics

HOUR = 3_600_000
DAY = 24 * HOUR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_topics(settings: Settings) -> None:
    create_topics(settings, [e.topic for e in policy_for_topics(settings).engines])


def producer(settings: Settings) -> Producer:
    return Producer(producer_config(settings, **{"linger.ms": 0}))


def send(p: Producer, topic: str, key: str | bytes | None, value: Any) -> None:
    """Produce and wait for the broker's acknowledgement."""
    k = key.encode() if isinstance(key, str) else key
    v = value if value is None or isinstance(value, bytes) else orjson.dumps(value)
    errors: list = []
    p.produce(topic, v, k, on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(30) == 0
    assert not errors, errors


def consent(subject: str, updated_at: int, *, purposes: dict | None = None, categories: dict | None = None,
            jurisdiction: str = "EU", gpc: bool = False) -> dict:
    """A consent record; by default everything granted since a day ago, no expiry."""
    granted = {"status": "granted", "granted_at": updated_at - DAY, "expires_at": None}
    all_purposes = ["personalization", "marketing_email", "marketing_phone", "analytics",
                    "third_party_sharing", "support"]
    all_categories = ["browsing", "purchase_history", "connection_data", "location", "contact", "payment"]
    return {
        "subject_id": subject,
        "updated_at": updated_at,
        "purposes": purposes if purposes is not None else {p: dict(granted) for p in all_purposes},
        "categories": categories if categories is not None else {c: True for c in all_categories},
        "jurisdiction": jurisdiction,
        "gpc": gpc,
    }


def page_view(event_id: str, subject: str | None, ts: int) -> dict:
    e: dict[str, Any] = {
        "event_id": event_id, "subject_id": subject, "event_type": "page_view", "ts": ts,
        "context": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "device_id": "d-1", "session_id": "x-1",
                    "referrer": "https://search.example/", "geo": {"country": "DE", "region": "BE",
                                                                    "city": "Berlin", "lat": 52.5, "lon": 13.4}},
        "url": "https://shop.example/p/1", "title": "Shoes",
    }
    if subject is None:
        e["anonymous_id"] = "anon-1"
    return e


def purchase(event_id: str, subject: str, ts: int) -> dict:
    return {
        "event_id": event_id, "subject_id": subject, "event_type": "purchase", "ts": ts,
        "context": {"ip": "203.0.113.9", "geo": {"country": "FR", "city": "Paris"}},
        "order_id": "o-1", "items": [{"product_id": "p-1", "category": "shoes", "quantity": 1, "price": 10.0}],
        "total": 10.0, "currency": "EUR", "payment_method": "card",
        "shipping_address": {"street": "1 Main Street", "city": "Paris", "postal_code": "75001", "country": "FR"},
        "email": "someone@example.com", "phone": "+33100000000",
    }


def decision_records(settings: Settings, *, read_committed: bool = False) -> list[dict]:
    """The decision log as written: one record per input (CONTRACT §7)."""
    return [orjson.loads(v) for *_x, v, _h, _t in
            replay(settings, [settings.topic_decisions], read_committed=read_committed)]


def flatten(settings: Settings, records: list[dict]) -> list[dict]:
    """Decision records as one flat decision per engine (``decisions.engine_views``): the
    shared fields plus ``engine``, ``outcome``, ``reason``, ``categories_sent``; a DLQ
    record is one decision with ``engine`` None."""
    names = [e.name for e in policy_for_topics(settings).engines]
    return [v for r in records for v in engine_views(r, names)]


def decisions(settings: Settings, *, read_committed: bool = False) -> list[dict]:
    """The decision log as one decision per (input, engine), see ``flatten``."""
    return flatten(settings, decision_records(settings, read_committed=read_committed))


def wait_decisions(settings: Settings, count: int, timeout: float = 90.0) -> list[dict]:
    """Wait until at least ``count`` distinct (input, engine) decisions exist (flattened)."""
    deadline = time.monotonic() + timeout
    got: list[dict] = []
    while time.monotonic() < deadline:
        got = decisions(settings)
        distinct = {(d["source_topic"], d["source_partition"], d["source_offset"], d["engine"]) for d in got}
        if len(distinct) >= count:
            return got
        time.sleep(0.5)
    raise TimeoutError(f"only {len(got)} of {count} decisions after {timeout}s")


def group_lag(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Per partition ("topic/p") with any, the records of ``topics`` past the worker group's
    committed offsets (a partition the group never committed counts from its low watermark)."""
    c = Consumer(plain_consumer_config(settings, settings.group_id))  # never subscribes: reads only
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        lag = {}
        for tp in c.committed(tps, timeout=10):
            lo, hi = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10, cached=False)
            behind = hi - (tp.offset if tp.offset >= 0 else lo)
            if behind:
                lag[f"{tp.topic}/{tp.partition}"] = behind
        return lag
    finally:
        c.close()


def wait_consumed(settings: Settings, topics: list[str], timeout: float = 120.0) -> None:
    """Wait until the worker group has committed every record of ``topics``.

    Why tests need it before stopping the last worker: events are decided as soon as the
    barrier has read the consent they need, while the consent agent's own pass over the same
    records (the one that sends erasure and consent notices) may still be behind. Stopping
    on "every event decided" alone could stop a worker with tombstones not yet applied, and
    verify then rightly finds their erasure notices missing."""
    deadline = time.monotonic() + timeout
    lag: dict[str, int] = {}
    while time.monotonic() < deadline:
        lag = group_lag(settings, topics)
        if not lag:
            return
        time.sleep(0.5)
    raise TimeoutError(f"records not committed by the group after {timeout:.0f}s: {lag}")


def by_event(ds: list[dict]) -> dict[tuple[str | None, str | None], dict]:
    """(event_id, engine) -> the last decision."""
    return {(d["event_id"], d["engine"]): d for d in ds}


def start_worker(settings: Settings, tmp: Path, name: str = "worker", **kw: Any) -> WorkerProcess:
    w = WorkerProcess(settings, tmp / f"{name}.log", **kw).start()
    w.wait_ready()
    return w
