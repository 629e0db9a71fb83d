"""`pfilter erase` on the real broker with a real worker (CONTRACT §2, §10, G4)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition

from streams.cli import cli
from streams.config import Settings, settings_env
from streams.crypto import Kek, new_kek_text
from streams.engine.codecs import get_codec
from streams.kafka.admin import consent_topic_config, keys_topic_config
from streams.kafka.clients import plain_consumer_config
from streams.wiring import load_policy
from tests.integration import kit
from tests.integration.crypto_kit import World

pytestmark = pytest.mark.kafka

SUBJECT = "s-forget"
OTHER = "s-stays"


@pytest.fixture
def topics(kafka_settings: Settings) -> Settings:
    kit.setup_topics(kafka_settings)
    return kafka_settings


def erase(settings: Settings, *args: str):
    return CliRunner().invoke(cli, ["erase", *args], env=settings_env(settings), catch_exceptions=False)


def read_at(settings: Settings, topic: str, partition: int, offset: int) -> tuple[bytes | None, bytes | None]:
    """(key, value) of the record at exactly that offset (read_committed)."""
    c = Consumer(plain_consumer_config(settings, "test-read-at", **{"isolation.level": "read_committed"}))
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None or m.error() is not None:
                continue
            assert m.offset() == offset, f"{topic}[{partition}]: no record at {offset} (next is {m.offset()})"
            return m.key(), m.value()
        raise AssertionError(f"{topic}[{partition}]@{offset} not read within 30 s")
    finally:
        c.close()


@pytest.mark.parametrize("runtime", ["fast", "faust"])
def test_erase_receipt_with_a_worker(topics: Settings, tmp_path: Path, runtime: str) -> None:
    """Both runtimes commit the consent offset after the tombstone's effects: the receipt's
    "worker passed it" comes from that commit."""
    s = topics.model_copy(update={
        "runtime": runtime, "processing_guarantee": "exactly_once" if runtime == "fast" else "at_least_once"})
    now = int(time.time() * 1000)
    p = kit.producer(s)
    for subject in (SUBJECT, OTHER):
        kit.send(p, s.topic_consent, subject, kit.consent(subject, now))
    kit.send(p, s.topic_clickstream, SUBJECT, kit.page_view("e-1", SUBJECT, now))
    kit.send(p, s.topic_purchases, SUBJECT, kit.purchase("e-2", SUBJECT, now))
    # an `email` output with encrypted fields, as the worker writes them once encryption is on
    world = World(s, Kek.from_text(s.kek))  # the worker's KEK: it uses that key record too
    world.commit(world.outputs((SUBJECT, "forget@example.com", "+49 30 000000")))
    w = kit.start_worker(s, tmp_path)
    try:
        kit.wait_decisions(s, 2 * 3)
        res = erase(s, SUBJECT, "--json", "--scan", "--timeout", "60")
        assert res.exit_code == 0, res.output
        r = orjson.loads(res.stdout)
        print(f"\nreceipt ({runtime}): {res.stdout}")  # pytest -s shows a real receipt

        # both tombstones acknowledged, and readable back as null values where the receipt says
        ct, kt = r["consent_tombstone"], r["key_tombstone"]
        assert ct["topic"] == s.topic_consent and kt["topic"] == s.topic_keys
        assert read_at(s, ct["topic"], ct["partition"], ct["offset"]) == (SUBJECT.encode(), None)
        assert read_at(s, kt["topic"], kt["partition"], kt["offset"]) == (SUBJECT.encode(), None)
        assert ct["partition"] == kt["partition"]  # co-partitioned, murmur2

        # the worker passed the tombstone and sent one notice per engine, keyed as the engine knows the subject
        assert r["worker_passed"] is True and r["confirmed"] is True
        assert r["committed_offset"] > ct["offset"]
        policy = load_policy(s)
        assert [n["engine"] for n in r["notices"]] == [e.name for e in policy.engines]
        codec = get_codec("erasure_notice", s.format_output)
        for n, e in zip(r["notices"], policy.engines, strict=True):
            key, value = read_at(s, s.topic_erasures, n["partition"], n["offset"])
            ref = e.subject_ref(SUBJECT)
            assert key == ref.encode()
            notice = codec.decode(value)
            assert (notice["engine"], notice["subject_id"]) == (e.name, ref)
            assert n["pseudonymized"] is bool(e.pseudonymize_subject)
        assert any(n["pseudonymized"] for n in r["notices"])  # partner_ads: the pseudonym, not the id
        assert SUBJECT not in {n["engine"] for n in r["notices"]}

        # --scan: the encrypted copy is unreadable now; the worker's plaintext outputs are said to be plaintext
        scan = {e["engine"]: e for e in r["scan"]}
        # the world's copy and the worker's own output of e-2 (email/phone encrypted, §8)
        assert scan["email"]["unreadable"] == 2 and scan["email"]["plaintext"] == 0
        assert scan["offers"]["unreadable"] == 0 and scan["offers"]["plaintext"] >= 1
        for e in scan.values():
            assert e["records"] == e["unreadable"] + e["plaintext"] + e["readable"]

        # compaction settings as `topics create` set them, and a bound computed from them
        comp = {c["topic"]: c for c in r["compaction"]}
        for topic, want in ((s.topic_consent, consent_topic_config(s)), (s.topic_keys, keys_topic_config(s))):
            got = comp[topic]["settings"]
            assert {k: str(v) for k, v in got.items()} == {k: v for k, v in want.items() if k != "cleanup.policy"}
            assert comp[topic]["tombstone_gone_ms"] == (
                got["max.compaction.lag.ms"] + got["segment.ms"] + got["delete.retention.ms"])
        # the setup creates the notices topic (CONTRACT §9); these subjects had no pending notice
        assert r["pending_notices_cancelled"] == 0

        # the rich receipt for another subject: the same facts, in words
        text = erase(s, OTHER, "--timeout", "60")
        assert text.exit_code == 0, text.output
        assert f"Erasure receipt for subject {OTHER}" in text.stdout
        assert "worker passed it: yes" in text.stdout and "confirmed" in text.stdout
        assert "not seen" not in text.stdout
        assert "pending notices cancelled: 0" in text.stdout
    finally:
        w.stop()
    # erased again with the worker gone: the earlier notices and commits must not confirm this tombstone
    again = erase(s, SUBJECT, "--json", "--timeout", "2")
    assert again.exit_code == 1, again.output
    r2 = orjson.loads(again.stdout)
    assert r2["consent_tombstone"]["offset"] > ct["offset"]
    assert r2["worker_passed"] is False and r2["committed_offset"] == r["committed_offset"]
    assert all(n["offset"] is None for n in r2["notices"])
    # G6: the worker logged neither subject's encrypted field values
    assert "forget@example.com" not in w.tail(10_000)


def test_erase_without_a_worker_fails_in_one_line_after_the_receipt(topics: Settings) -> None:
    res = erase(topics, SUBJECT, "--json", "--timeout", "2")
    assert res.exit_code == 1, res.output
    r = orjson.loads(res.stdout)  # what was done is printed first
    assert r["confirmed"] is False and r["worker_passed"] is False and r["committed_offset"] is None
    assert all(n["offset"] is None for n in r["notices"])
    assert read_at(topics, topics.topic_consent, r["consent_tombstone"]["partition"],
                   r["consent_tombstone"]["offset"]) == (SUBJECT.encode(), None)
    err = res.stderr.strip().splitlines()
    assert len(err) == 1, res.stderr
    assert err[0].startswith("Error: tombstones written, but the worker did not confirm within 2 s")
    assert "offers" in err[0] and "partner_ads" in err[0]


def test_erase_counts_pending_notices_when_the_notices_topic_exists(topics: Settings) -> None:
    """A `reconfirm` sent whose `expired` is still to come is a pending notice; erasure cancels it."""
    s = topics
    now = int(time.time() * 1000)
    future, past = now + 10 * kit.DAY, now - kit.DAY
    p = kit.producer(s)  # the notices topic comes with the setup (streams.kafka.admin)

    def notice(subject: str, purpose: str, expires: int, kind: str) -> dict:
        return {"subject_id": subject, "purpose": purpose, "expires_at": expires, "kind": kind,
                "consent_version": now, "sent_at": now}

    for rec in (notice(SUBJECT, "marketing_email", future, "reconfirm"),        # pending: counted
                notice(SUBJECT, "analytics", past, "reconfirm"),                # its expiry is past
                notice(SUBJECT, "analytics", past, "expired"),
                notice(SUBJECT, "support", future, "reconfirm"),                # pending: counted
                notice(OTHER, "marketing_email", future, "reconfirm")):         # someone else
        kit.send(p, s.topic_notices, rec["subject_id"], rec)
    res = erase(s, SUBJECT, "--json", "--timeout", "0")
    assert res.exit_code == 1  # no worker
    assert orjson.loads(res.stdout)["pending_notices_cancelled"] == 2
