"""Topic administration: create the contract's topics and check them.

The join is per partition, so the three inputs must have the same partition
count; the consent topic must be compacted with explicit lag and retention
settings, because they bound how long an erased subject's consent history
stays on disk (see README, "Erasure deadline").

``personalization.keys`` (CONTRACT §10) is compacted too and co-partitioned
with consent (same partition count: the worker that owns consent partition p
owns the keys of partition p). Its settings bound crypto-shredding:

* ``min.compaction.lag.ms`` 0: a live key is only ever superseded by its
  tombstone, so a lag would only keep a shredded key readable on disk longer;
* ``max.compaction.lag.ms`` (1 h) + ``segment.ms`` (10 min): the deadline by
  which the cleaner removes a shredded key's record after its tombstone;
* ``delete.retention.ms`` (1 day): how long the tombstone itself stays, so an
  engine SDK that lags behind by up to a day still sees it and drops the key
  it holds in memory (an SDK that starts later never reads the key at all).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from streams.config import Settings
from streams.errors import BrokerUnreachable, PFilterError
from streams.kafka.clients import admin_config
from streams.logs import kv

log = logging.getLogger(__name__)

#: How long admin calls may take before we call the broker unreachable.
ADMIN_TIMEOUT_S = 30.0


class TopicError(PFilterError, RuntimeError):
    """A topic is missing or misconfigured; the message names it."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    role: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


def consent_topic_config(settings: Settings) -> dict[str, str]:
    return {
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": str(settings.consent_min_compaction_lag_ms),
        "max.compaction.lag.ms": str(settings.consent_max_compaction_lag_ms),
        "delete.retention.ms": str(settings.consent_delete_retention_ms),
        "segment.ms": str(settings.consent_segment_ms),
    }


def keys_topic_config(settings: Settings) -> dict[str, str]:
    return {
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": str(settings.keys_min_compaction_lag_ms),
        "max.compaction.lag.ms": str(settings.keys_max_compaction_lag_ms),
        "delete.retention.ms": str(settings.keys_delete_retention_ms),
        "segment.ms": str(settings.keys_segment_ms),
    }


def compacted_topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """The compacted topics and the configs `topics check` insists on."""
    return {settings.topic_consent: consent_topic_config(settings),
            settings.topic_keys: keys_topic_config(settings)}


def topic_specs(settings: Settings, engine_topics: list[str]) -> list[TopicSpec]:
    """Every topic of CONTRACT §2; inputs and outputs share the partition count."""
    p, r = settings.partitions, settings.replication_factor
    specs = [
        TopicSpec(settings.topic_clickstream, "input", p, r),
        TopicSpec(settings.topic_purchases, "input", p, r),
        TopicSpec(settings.topic_consent, "consent", p, r, consent_topic_config(settings)),
    ]
    specs += [TopicSpec(t, "output", p, r) for t in engine_topics]
    specs += [
        TopicSpec(settings.topic_decisions, "decisions", p, r),
        TopicSpec(settings.topic_erasures, "erasures", p, r),
        TopicSpec(settings.topic_dlq, "dlq", p, r),
        # notices of consent partition p go to partition p (same count, murmur2 keys)
        TopicSpec(settings.topic_notices, "notices", p, r),
        TopicSpec(settings.topic_keys, "keys", p, r, keys_topic_config(settings)),
    ]
    return specs


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(admin_config(settings))


def create_topics(settings: Settings, engine_topics: list[str]) -> list[tuple[str, str]]:
    """Create what is missing (idempotent). Returns (topic, 'created'|'exists')."""
    admin = _admin(settings)
    existing = set(admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics)
    specs = topic_specs(settings, engine_topics)
    todo = [s for s in specs if s.name not in existing]
    result = [(s.name, "exists") for s in specs if s.name in existing]
    if todo:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication, config=s.config) for s in todo],
            operation_timeout=ADMIN_TIMEOUT_S, request_timeout=ADMIN_TIMEOUT_S,
        )
        for name, fut in futures.items():
            try:
                fut.result()
                result.append((name, "created"))
            except Exception as exc:  # noqa: BLE001
                if "TOPIC_ALREADY_EXISTS" in str(exc):
                    result.append((name, "exists"))
                else:
                    raise TopicError(f"could not create topic {name!r}: {exc}") from None
    order = {s.name: i for i, s in enumerate(specs)}
    return sorted(result, key=lambda x: order[x[0]])


def check_topics(settings: Settings, engine_topics: list[str]) -> list[str]:
    """Problems with the topics (empty when all is well). Each names its topic."""
    admin = _admin(settings)
    md = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    specs = topic_specs(settings, engine_topics)
    problems: list[str] = []
    for s in specs:
        if s.name not in md.topics:
            problems.append(f"topic {s.name!r} ({s.role}) does not exist; run `pfilter topics create`")
    inputs = [s.name for s in specs if s.role in ("input", "consent") and s.name in md.topics]
    counts = {t: len(md.topics[t].partitions) for t in inputs}
    if len(set(counts.values())) > 1:
        desc = ", ".join(f"{t!r}={n}" for t, n in counts.items())
        odd = _odd_ones_out(counts)
        problems.append(
            f"input topics are not co-partitioned ({desc}): {', '.join(repr(t) for t in odd)} "
            "must have the same partition count as the others"
        )
    keys, consent = settings.topic_keys, settings.topic_consent
    if keys in md.topics and consent in md.topics:
        nk, nc = len(md.topics[keys].partitions), len(md.topics[consent].partitions)
        if nk != nc:
            problems.append(
                f"topic {keys!r} has {nk} partitions, {consent!r} has {nc}: the keys topic must be "
                "co-partitioned with consent (the worker owning a consent partition owns its keys)"
            )
    for topic, wanted in compacted_topic_configs(settings).items():
        if topic not in md.topics:
            continue
        res = ConfigResource(ResourceType.TOPIC, topic)
        cfg = admin.describe_configs([res], request_timeout=ADMIN_TIMEOUT_S)[res].result()
        for key, want in wanted.items():
            have = cfg[key].value if key in cfg else None
            if key == "cleanup.policy":
                if "compact" not in (have or ""):
                    problems.append(f"topic {topic!r}: cleanup.policy is {have!r}, must include 'compact'")
            elif have != want:
                problems.append(f"topic {topic!r}: {key} is {have!r}, expected {want!r}")
    return problems


def _odd_ones_out(counts: dict[str, int]) -> list[str]:
    values = list(counts.values())
    majority = max(set(values), key=values.count)
    return [t for t, n in counts.items() if n != majority]


def _metadata(settings: Settings, admin: AdminClient | None = None) -> Any:
    """Cluster metadata, or BrokerUnreachable naming the brokers after the start-up bound."""
    try:
        return (admin or _admin(settings)).list_topics(timeout=settings.startup_timeout_s)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        name = err.name() if hasattr(err, "name") else type(exc).__name__
        raise BrokerUnreachable(
            f"Kafka at {settings.bootstrap} did not answer within {settings.startup_timeout_s:g} s ({name}); "
            "is the broker running and KAFKA_BOOTSTRAP_SERVERS right?"
        ) from None


def partition_counts(settings: Settings, topics: list[str]) -> dict[str, int]:
    md = _metadata(settings)
    return {t: len(md.topics[t].partitions) for t in topics if t in md.topics}


def require_copartitioned(settings: Settings, state_topics: Sequence[str] = ()) -> int:
    """The worker's start-up check: the brokers answer, the inputs exist and share a partition
    count, and the consent topic is compacted (a deleting consent topic would lose consent
    state, and with it the grants, after its retention).

    ``state_topics`` (notices, and keys when the policy encrypts) are partitioned like
    consent, since partition p of each belongs to the owner of consent partition p: each must
    exist with the same count. A missing keys topic otherwise showed only as a key restore
    that waited on a topic that never came, until the loop watchdog ended the worker."""
    inputs = [settings.topic_clickstream, settings.topic_purchases, settings.topic_consent]
    admin = _admin(settings)
    md = _metadata(settings, admin)
    counts = {t: len(md.topics[t].partitions) for t in inputs if t in md.topics}
    missing = [t for t in inputs if t not in counts]
    if missing:
        raise TopicError(
            f"input topic {missing[0]!r} does not exist; run `pfilter topics create` first"
        )
    if len(set(counts.values())) != 1:
        desc = ", ".join(f"{t!r} has {n}" for t, n in counts.items())
        raise TopicError(
            f"input topics are not co-partitioned ({desc} partitions): the per-partition consent join "
            f"would miss; give {', '.join(repr(t) for t in _odd_ones_out(counts))} the same count"
        )
    consent = settings.topic_consent
    res = ConfigResource(ResourceType.TOPIC, consent)
    try:
        cfg = admin.describe_configs([res], request_timeout=settings.startup_timeout_s)[res].result()
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if getattr(err, "code", lambda: None)() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            # a principal without DescribeConfigs cannot check; the operator's `topics check` can
            log.warning("cannot check that the consent topic is compacted (no DescribeConfigs ACL) %s",
                        kv(topic=consent))
            return _state_topics_like_consent(settings, md, state_topics, counts[consent])
        raise TopicError(f"could not read the configuration of topic {consent!r}: {exc}") from None
    policy = cfg["cleanup.policy"].value if "cleanup.policy" in cfg else None
    if "compact" not in (policy or ""):
        raise TopicError(
            f"consent topic {consent!r} has cleanup.policy={policy!r}: it must be compacted "
            "(cleanup.policy=compact), or consent state is lost after retention; see `pfilter topics check`"
        )
    return _state_topics_like_consent(settings, md, state_topics, counts[consent])


def _state_topics_like_consent(settings: Settings, md: Any, topics: Sequence[str], want: int) -> int:
    for t in topics:
        if t not in md.topics:
            raise TopicError(f"state topic {t!r} does not exist; run `pfilter topics create` first")
        n = len(md.topics[t].partitions)
        if n != want:
            raise TopicError(f"state topic {t!r} has {n} partitions, the consent topic "
                             f"{settings.topic_consent!r} {want}: they must be co-partitioned")
    return want
