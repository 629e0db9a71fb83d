"""Prometheus metrics shared by both runtimes.

Label values are engine names, reason codes, topic names and partition
numbers: a closed, small set that never contains personal data (G6).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_IN = Counter("pfilter_events_in_total", "Input records read", ["topic"], registry=REGISTRY)
EMITTED = Counter("pfilter_emitted_total", "Events emitted per engine", ["engine"], registry=REGISTRY)
DROPPED = Counter("pfilter_dropped_total", "Event x engine drops per reason", ["reason"], registry=REGISTRY)
DLQ = Counter("pfilter_dlq_total", "Input records sent to the DLQ", ["topic"], registry=REGISTRY)
CONSENT_APPLIED = Counter("pfilter_consent_records_total", "Consent records applied", registry=REGISTRY)
ERASURES = Counter("pfilter_erasures_total", "Tombstones processed (subjects erased)", registry=REGISTRY)
CONSENT_LAG = Gauge(
    "pfilter_consent_lag_records", "Consent records behind the high watermark at the last barrier",
    ["partition"], registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "pfilter_consumer_lag_records", "Records behind the high watermark per input partition",
    ["topic", "partition"], registry=REGISTRY,
)
BARRIER_CATCHUP = Counter(
    "pfilter_barrier_catchup_records_total",
    "Consent records read ahead of the consent agent to honour the revocation barrier (G2)",
    registry=REGISTRY,
)
# Buckets from 100 us (in-process decide) to 10 s (a stalled broker).
DECISION_LATENCY = Histogram(
    "pfilter_decision_latency_seconds", "Time from fetching a batch to its outputs being acknowledged, per batch",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)
HOLES_FILLED = Counter(
    "pfilter_input_holes_filled_records_total",
    "Input records the transport skipped (faust, after a rebalance), read from the broker and decided",
    ["topic"], registry=REGISTRY,
)
PARTITION_STALLED = Gauge(
    "pfilter_partition_stalled_seconds",
    "Seconds an input partition with lag has made no progress (0 while it progresses or has no lag)",
    ["topic", "partition"], registry=REGISTRY,
)
NOTICES = Counter(
    "pfilter_notices_sent", "Consent notices produced (CONTRACT §9), per kind: reconfirm, expired "
    "(exactly once: counted when produced; an aborted transaction's are counted too)",
    ["kind"], registry=REGISTRY,
)
NOTICES_PENDING = Gauge(
    "pfilter_notices_pending", "Scheduled consent notices of the owned partitions (cancelled ones "
    "leave at their due time)", registry=REGISTRY,
)
READY = Gauge("pfilter_ready", "1 once consent state has recovered", registry=REGISTRY)
# Where the worker's time goes, per stage of its loop (a profile that is always on:
# one clock read per stage per batch). Stages: consume (waiting for and taking a
# batch from the client), barrier (consent end offsets and catch-up, G2), decide
# (the engine), produce (handing records to the client), commit (flushes,
# transactions, offset commits, including their waits), consent (the faust
# consent agent's batches), send (faust: produce and wait for acknowledgements).
STAGE_SECONDS = Counter(
    "pfilter_stage_seconds", "Wall time the worker spent per stage of its loop", ["stage"], registry=REGISTRY,
)


def record_batch(result, topic_counts: dict[str, int] | None = None) -> None:  # noqa: ANN001
    """Fold a BatchResult's counters into the metrics."""
    for engine, n in result.emitted.items():
        if n:
            EMITTED.labels(engine).inc(n)
    for reason, n in result.dropped.items():
        if n:
            DROPPED.labels(reason).inc(n)
    for topic, n in (topic_counts or {}).items():
        EVENTS_IN.labels(topic).inc(n)


def record_decided(result, topic: str) -> None:  # noqa: ANN001
    """After ``Filter.decide`` of one partition's records of ``topic`` (the first record's):
    the engine counters and the DLQ entries it wrote."""
    record_batch(result)
    if result.dlq:
        DLQ.labels(topic).inc(result.dlq)


def record_consent(result, topic: str, applied: int = 0) -> None:  # noqa: ANN001
    """After ``Filter.apply_consent``: ``applied`` consent records merged into state, and
    the DLQ entries and erasures of ``result`` (None: records re-applied to state only,
    whose outputs went out before)."""
    if applied:
        CONSENT_APPLIED.inc(applied)
    if result is None:
        return
    if result.dlq:
        DLQ.labels(topic).inc(result.dlq)
    if result.erasures:
        ERASURES.inc(result.erasures)


def record_lag(topic: str, partition: int, high_watermark: int | None, next_offset: int) -> None:
    """Consumer lag of one input partition: its high watermark (as the client last saw it;
    None or negative: not known yet, nothing is set) minus the next offset to read."""
    if high_watermark is not None and high_watermark >= 0:
        CONSUMER_LAG.labels(topic, str(partition)).set(max(0, high_watermark - next_offset))


def record_consent_lag(partition: int, end_offset: int, position: int) -> None:
    """Consent records of a partition not yet applied, at the last barrier."""
    CONSENT_LAG.labels(str(partition)).set(max(0, end_offset - position))


def exposition() -> bytes:
    return generate_latest(REGISTRY)
