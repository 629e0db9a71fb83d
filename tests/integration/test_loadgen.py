"""`pfilter loadgen` on a real broker: counts, Java-murmur2 partitions, no delivery errors.

A small backlog (consent of a few hundred subjects, a few thousand events with
consent churn) and a short rate run go to this test's own topics; reading them
back must give exactly the counts the summary reports, every keyed record
must sit in partition ``partition_for(key, n)`` (Kafka's Java partitioner, so
consent and events of a subject are co-partitioned), and nothing may have
failed delivery.
"""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from click.testing import CliRunner

from streams import loadgen
from streams.cli import cli
from streams.kafka.partitioner import partition_for
from streams.kafka.replay import replay
from tests.integration.kit import setup_topics

pytestmark = pytest.mark.kafka


def _read(settings) -> dict[str, list[tuple]]:  # noqa: ANN001
    topics = [settings.topic_clickstream, settings.topic_purchases, settings.topic_consent]
    out: dict[str, list[tuple]] = {t: [] for t in topics}
    for rec in replay(settings.bootstrap, topics, timeout_s=60):
        out[rec[0]].append(rec)
    return out


def _assert_partitioned(records: list[tuple], partitions: int) -> int:
    keyed = 0
    for _t, p, _o, key, _v, _h, _ts in records:
        if key is None:
            continue
        keyed += 1
        assert p == partition_for(key, partitions), (key, p)
    return keyed


def test_backlog_counts_partitions_and_no_delivery_errors(kafka_settings) -> None:  # noqa: ANN001
    s = kafka_settings
    setup_topics(s)
    stats = loadgen.run(s, count=3000, subjects=400, seed=11, churn_share=0.02)

    assert stats.delivery_errors == 0, stats.first_error
    assert stats.events == 3000
    assert stats.clicks + stats.purchases == 3000
    assert stats.purchases > 0 and stats.clicks > 0
    got = _read(s)
    clicks, purchases, consent = got[s.topic_clickstream], got[s.topic_purchases], got[s.topic_consent]
    assert len(clicks) == stats.clicks
    assert len(purchases) == stats.purchases
    assert len(consent) == stats.consent
    # population consent (~95% of 400 subjects have a record) plus ~2 changes per 100 events
    assert 300 < stats.consent <= 470
    assert sum(1 for r in consent if r[4] is None) == stats.tombstones

    n = s.partitions
    keyed = _assert_partitioned(clicks, n) + _assert_partitioned(purchases, n)
    assert keyed > 0.9 * 3000 - 300  # ~5% anonymous sessions carry no key
    assert _assert_partitioned(consent, n) == len(consent)  # every consent record is keyed

    # values are the population's JSON, keyed by their own subject id
    for _t, _p, _o, key, value, _h, _ts in clicks[:200] + purchases[:200]:
        ev = orjson.loads(value)
        assert ev["event_type"] in ("page_view", "product_view", "search", "add_to_cart", "login", "purchase")
        assert (key.decode() if key is not None else None) == ev.get("subject_id")
    for _t, _p, _o, key, value, _h, _ts in consent:
        if value is not None:
            assert orjson.loads(value)["subject_id"] == key.decode()
    # every event id once: nothing duplicated by retries (idempotent producer)
    ids = Counter(orjson.loads(r[4])["event_id"] for r in clicks + purchases)
    assert len(ids) == 3000 and max(ids.values()) == 1


def test_cli_rate_mode_json_summary(kafka_settings, monkeypatch) -> None:  # noqa: ANN001
    s = kafka_settings
    setup_topics(s)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": s.bootstrap,
        "PFILTER_TOPIC_CLICKSTREAM": s.topic_clickstream,
        "PFILTER_TOPIC_PURCHASES": s.topic_purchases,
        "PFILTER_TOPIC_CONSENT": s.topic_consent,
        "PFILTER_TOPIC_OUTPUT_PREFIX": s.topic_output_prefix,
        "PFILTER_TOPIC_DECISIONS": s.topic_decisions,
        "PFILTER_TOPIC_ERASURES": s.topic_erasures,
        "PFILTER_TOPIC_DLQ": s.topic_dlq,
        "PFILTER_PARTITIONS": str(s.partitions),
        "PFILTER_PSEUDONYM_KEY": "test-secret-not-for-production",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(
        cli, ["loadgen", "--rate", "500", "--duration", "2", "--subjects", "100", "--no-consent", "--json", "--quiet"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert set(summary) >= {"events", "consent", "delivery_errors", "elapsed_s", "events_per_s"}
    assert summary["events"] == 1000
    assert summary["consent"] == 0
    assert summary["delivery_errors"] == 0
    # paced: 1000 events at 500/s take about two seconds, not a burst
    assert 1.5 < summary["elapsed_s"] < 10
    assert 100 < summary["events_per_s"] <= 700
    got = _read(s)
    assert len(got[s.topic_clickstream]) + len(got[s.topic_purchases]) == 1000
    assert got[s.topic_consent] == []
    n = s.partitions
    _assert_partitioned(got[s.topic_clickstream], n)
    _assert_partitioned(got[s.topic_purchases], n)


def test_bad_arguments_are_refused(kafka_settings) -> None:  # noqa: ANN001
    with pytest.raises(loadgen.LoadgenError, match="either a count"):
        loadgen.run(kafka_settings, count=10, rate=5.0, duration=1.0)
    with pytest.raises(loadgen.LoadgenError, match="duration"):
        loadgen.run(kafka_settings, rate=5.0)
    with pytest.raises(loadgen.LoadgenError, match="churn share"):
        loadgen.run(kafka_settings, count=1, churn_share=2.0)
