"""The worker's live overview for the support page, from its Prometheus ``/metrics``.

Pure: text in, a small dict out. Only the filter's own counters are read (engine
names, reason codes, topics, partitions: no personal data, see ``streams.metrics``).
Events per second come from two readings, so the caller keeps the previous one.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def parse_metrics(text: str) -> dict[str, Any]:
    """The overview numbers of one ``/metrics`` reading."""
    events_in = 0.0
    emitted: dict[str, float] = {}
    dropped: dict[str, float] = {}
    dlq = 0.0
    consent_lag = 0.0
    ready = None
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "pfilter_events_in_total":
                events_in += s.value
            elif s.name == "pfilter_emitted_total":
                emitted[s.labels.get("engine", "?")] = emitted.get(s.labels.get("engine", "?"), 0) + s.value
            elif s.name == "pfilter_dropped_total":
                dropped[s.labels.get("reason", "?")] = dropped.get(s.labels.get("reason", "?"), 0) + s.value
            elif s.name == "pfilter_dlq_total":
                dlq += s.value
            elif s.name == "pfilter_consent_lag_records":
                consent_lag += s.value
            elif s.name == "pfilter_ready":
                ready = s.value >= 1
    return {
        "events_in_total": int(events_in),
        "emitted": {k: int(v) for k, v in sorted(emitted.items())},
        "dropped": {k: int(v) for k, v in sorted(dropped.items())},
        "dlq_total": int(dlq),
        "consent_lag_records": int(consent_lag),
        "ready": ready,
    }


def with_rate(now: dict[str, Any], t_now: float, prev: tuple[float, int] | None) -> dict[str, Any]:
    """``now`` plus ``events_per_s`` since ``prev`` = (time s, events_in_total); None on the
    first reading or after a worker restart (its counter went down)."""
    rate = None
    if prev is not None and t_now > prev[0] and now["events_in_total"] >= prev[1]:
        rate = round((now["events_in_total"] - prev[1]) / (t_now - prev[0]), 1)
    return {**now, "events_per_s": rate}
