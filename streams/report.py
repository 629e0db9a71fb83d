"""`pfilter report SUBJECT`: "what of mine went where, and why", from the decision log.

A subject's decision records (one per input, CONTRACT §7) are keyed by its id, so they all sit in one partition
of the decision topic (murmur2, as every producer here partitions); the
report reads only that partition. It shows, per engine: the purposes the
engine relies on, events sent and the categories they carried, the time
range of those events, the consent versions relied on, and drops by reason;
plus inputs of the subject that went to the DLQ.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.config import Settings
from streams.kafka.clients import plain_consumer_config
from streams.engine.codecs import get_codec
from streams.engine.decisions import engine_views
from streams.kafka.partitioner import partition_for
from streams.wiring import policy_for_topics


@dataclass
class EngineReport:
    engine: str
    topic: str
    purposes: list[str]
    party: str
    sent: int = 0
    categories: Counter = field(default_factory=Counter)
    first_ts: int | None = None
    last_ts: int | None = None
    consent_versions: set = field(default_factory=set)
    dropped: Counter = field(default_factory=Counter)


def _read_partition(settings: Settings, topic: str, partition: int, key: bytes) -> list[bytes]:
    c = Consumer(plain_consumer_config(settings, "pfilter-report", **{"enable.partition.eof": True}))
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=30, cached=False)
        if hi <= lo:
            return []
        c.assign([TopicPartition(topic, partition, lo)])
        values = []
        while True:
            for m in c.consume(5000, timeout=1.0):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        return values
                    raise RuntimeError(f"reading {topic}[{partition}] failed: {m.error().name()}")
                if m.key() == key:
                    values.append(m.value())
                if m.offset() >= hi - 1:
                    return values
    finally:
        c.close()


def build_report(settings: Settings, subject: str) -> dict[str, Any]:
    policy = policy_for_topics(settings)
    codec = get_codec("decision_record", settings.format_output, registry_url=settings.schema_registry_url)
    key = subject.encode()
    c = Consumer(plain_consumer_config(settings, "pfilter-report"))
    try:
        md = c.list_topics(settings.topic_decisions, timeout=30)
    finally:
        c.close()
    tmd = md.topics.get(settings.topic_decisions)
    if tmd is None or tmd.error is not None:
        raise ValueError(f"decision topic {settings.topic_decisions!r} does not exist")
    partition = partition_for(key, len(tmd.partitions))
    engines = {e.name: EngineReport(e.name, e.topic, list(e.relied_on), e.party) for e in policy.engines}
    dlq = Counter()
    seen: set[tuple] = set()
    names = [e.name for e in policy.engines]
    for value in _read_partition(settings, settings.topic_decisions, partition, key):
        d = codec.decode(value)
        if d.get("subject_id") != subject and d.get("outcome") != "dlq":
            continue
        ident = (d["source_topic"], d["source_partition"], d["source_offset"])
        if ident in seen:  # at-least-once redelivery: one decision record per input, count it once
            continue
        seen.add(ident)
        if d.get("outcome") == "dlq":
            dlq[d["reason"]] += 1
            continue
        for v in engine_views(d, names):  # one decision per engine (shared reasons too)
            r = engines.get(v["engine"])
            if r is None:
                r = engines[v["engine"]] = EngineReport(v["engine"], "?", [], "?")
            if v["outcome"] == "emitted":
                r.sent += 1
                r.categories.update(v["categories_sent"] or [])
                ts = v["ts"]
                r.first_ts = ts if r.first_ts is None else min(r.first_ts, ts)
                r.last_ts = ts if r.last_ts is None else max(r.last_ts, ts)
                r.consent_versions.add(v["consent_version"])
            else:
                r.dropped[v["reason"]] += 1
    return {
        "subject_id": subject,
        "policy_version": policy.version,
        "engines": [
            {
                "engine": r.engine, "topic": r.topic, "party": r.party, "purposes": r.purposes,
                "sent": r.sent, "categories": dict(r.categories), "first_ts": r.first_ts, "last_ts": r.last_ts,
                "consent_versions": sorted(v for v in r.consent_versions if v is not None),
                "dropped": dict(r.dropped),
            }
            for r in engines.values()
        ],
        "dlq": dict(dlq),
    }


def render_text(rep: dict[str, Any]) -> str:
    import datetime as dt

    def t(ms: int | None) -> str:
        return "-" if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    lines = [f"Data use report for subject {rep['subject_id']} (policy {rep['policy_version']})", ""]
    for e in rep["engines"]:
        lines.append(f"{e['engine']} ({e['party']} party, topic {e['topic']}), for: {', '.join(e['purposes']) or '-'}")
        if e["sent"]:
            cats = ", ".join(f"{c} x{n}" for c, n in sorted(e["categories"].items()))
            lines.append(f"  sent {e['sent']} events, {t(e['first_ts'])} .. {t(e['last_ts'])}")
            lines.append(f"  categories: {cats}")
            lines.append(f"  under consent versions: {', '.join(t(v) for v in e['consent_versions'])}")
        else:
            lines.append("  nothing sent")
        if e["dropped"]:
            lines.append("  not sent: " + ", ".join(f"{r} x{n}" for r, n in sorted(e["dropped"].items())))
        lines.append("")
    if rep["dlq"]:
        lines.append("inputs rejected as malformed: " + ", ".join(f"{r} x{n}" for r, n in sorted(rep["dlq"].items())))
    return "\n".join(lines).rstrip()
