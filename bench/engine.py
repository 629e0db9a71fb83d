"""In-process engine benchmark (`pfilter bench engine`): no Kafka, one core.

Workload: the default policy's three engines, the synthetic population's
consent mix, ~300-byte click/purchase events. The engine's rate is reported
beside the *floor* measured in the same process on the same events: the cost
of decoding each event and encoding one record per engine plus its one
decision record with an entry per engine (the minimum any filter over these
formats must pay), so the ratio says how much the decision itself adds,
whatever the machine's speed. ``records_per_event`` is what the engine hands
the producer per input event (outputs plus the decision record).

Events are pre-generated and consent is applied before timing starts; the
timed region is `Filter.decide` over batches, like the runtimes call it.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import orjson

from streams import population
from streams.engine.batch import Filter, TopicNames
from streams.engine.codecs import get_codec
from streams.engine.policy import load_policy

#: Batch size handed to decide(), as the runtimes do (PFILTER_BATCH_SIZE default).
BATCH = 2000
BENCH_SECRET = b"bench-secret"


def _records(fmt: str, n: int, subjects: int, seed: int, now: int, topics: TopicNames) -> list[tuple]:
    spec = population.PopulationSpec(subjects=subjects, seed=seed)
    out = []
    click = get_codec("click_event", fmt)
    purchase = get_codec("purchase_event", fmt)
    for i, (kind, value, key) in enumerate(population.event_bytes(spec, now, n)):
        topic = topics.purchases if kind == "purchase" else topics.clickstream
        if fmt == "avro":
            value = (purchase if kind == "purchase" else click).encode(orjson.loads(value))
        out.append((topic, i % 6, i, key.encode() if key else None, value, None, now))
    return out


def _consent(fmt: str, subjects: int, seed: int, now: int, topics: TopicNames) -> list[tuple]:
    spec = population.PopulationSpec(subjects=subjects, seed=seed)
    codec = get_codec("consent_record", fmt)
    return [
        (topics.consent, 0, i, rec["subject_id"].encode(), codec.encode(rec), None, now)
        for i, rec in enumerate(population.consent_records(spec, now))
    ]


def _floor(fmt: str, records: list[tuple], engines: int) -> float:
    """Seconds for decode + engines outputs + one decision record (engines entries) per event."""
    click = get_codec("click_event", fmt)
    purchase = get_codec("purchase_event", fmt)
    out = get_codec("filtered_event", fmt)
    dec = get_codec("decision_record", fmt)
    sample_out = None
    sample_dec = {
        "event_id": "e", "subject_id": "s", "outcome": "decided", "reason": None,
        "engines": [{"engine": "offers", "outcome": "emitted", "reason": None, "categories_sent": ["browsing"]}
                    for _ in range(engines)],
        "consent_version": 1, "policy_version": "p", "ts": 1,
        "decided_at": 1, "source_topic": "t", "source_partition": 0, "source_offset": 0,
    }
    t0 = time.perf_counter()
    for topic, _p, _o, _k, value, _h, _t in records:
        ev = (purchase if topic == "purchases" else click).decode(value)
        sample_out = {"event_id": ev["event_id"], "subject_id": ev.get("subject_id") or "", "event_type": ev["event_type"],
                      "ts": ev["ts"], "url": ev.get("url"), "consent_version": 1, "policy_version": "p",
                      "purposes": ["personalization"], "engine": "offers"}
        for _ in range(engines):
            out.encode(sample_out)
        dec.encode(sample_dec)
    return time.perf_counter() - t0


def run(events: int = 200_000, subjects: int = 100_000, fmt: str = "json", seed: int = 7,
        repeat: int = 3) -> dict[str, Any]:
    """Best of ``repeat`` runs (the least disturbed by the other core's load)."""
    topics = TopicNames()
    policy = load_policy(None, secret=BENCH_SECRET)
    now = int(time.time() * 1000)
    formats = {topics.clickstream: fmt, topics.purchases: fmt, topics.consent: fmt, "output": fmt}
    filt = Filter(policy, topics, formats, store={}, clock=lambda: now)
    t0 = time.perf_counter()
    consent = _consent(fmt, subjects, seed, now, topics)
    filt.apply_consent(consent)
    consent_s = time.perf_counter() - t0
    records = _records(fmt, events, subjects, seed, now, topics)
    sizes = sum(len(r[4]) for r in records) / len(records)
    gc.collect()
    gc.freeze()  # the pre-generated inputs are not garbage; keep the collector off them
    best = float("inf")
    outcomes: dict[str, Any] = {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        emitted = dropped = dlq = produced = 0
        for i in range(0, len(records), BATCH):
            res = filt.decide(records[i:i + BATCH])
            emitted += sum(res.emitted.values())
            dropped += sum(res.dropped.values())
            dlq += res.dlq
            produced += len(res.records)
        best = min(best, time.perf_counter() - t0)
        outcomes = {"emitted": emitted, "dropped": dropped, "dlq": dlq, "records": produced}
    floor = min(_floor(fmt, records, len(policy.engines)) for _ in range(repeat))
    gc.unfreeze()
    eps = len(records) / best
    feps = len(records) / floor
    return {
        "format": fmt,
        "events": len(records),
        "subjects": subjects,
        "mean_event_bytes": round(sizes, 1),
        "engines": len(policy.engines),
        "events_per_s": round(eps),
        "floor_events_per_s": round(feps),
        "ratio": round(eps / feps, 3),
        "records_per_event": round(outcomes["records"] / len(records), 3),
        "outcomes_per_run": outcomes,
        "consent_apply_per_s": round(len(consent) / consent_s),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
