"""Shared fixtures. The Kafka fixture is real, never a mock:

1. ``KAFKA_BOOTSTRAP_SERVERS`` set: use that broker;
2. else a Docker engine answers: a testcontainers KRaft ``KafkaContainer``;
3. else the project's own local broker (official jars via Maven), started on a
   test port with a throwaway data dir and stopped at the end of the session.

Every test gets unique topic names and group ids (``names`` fixture), so tests
never see each other's records, whichever broker serves them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Port of the test broker; away from 9092 so a developer's demo broker can run too.
TEST_KAFKA_PORT = int(os.environ.get("PFILTER_TEST_KAFKA_PORT", "39092"))
TEST_STATE_DIR = Path(__file__).resolve().parent.parent / ".state" / "test"


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from streams.config import load_settings
    from streams.kafka.broker import LocalBroker

    # The suite creates a few thousand partitions over a run (each test its own topics):
    # 512 MiB ran a long-lived test broker out of heap (OutOfMemoryError in metadata
    # requests); 2 GiB of the machine's 24 GiB keeps it responsive.
    settings = load_settings(kafka_port=TEST_KAFKA_PORT, state_dir=TEST_STATE_DIR, kafka_heap="2g")
    broker = LocalBroker(settings)
    broker.destroy()  # a broker left by an interrupted run is ours: stop it, start clean
    broker.up()
    try:
        yield broker.bootstrap
    finally:
        broker.destroy()


class Names:
    """Unique topic names and group ids for one test."""

    def __init__(self) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:10]}"

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def group(self, name: str = "g") -> str:
        return f"{self.prefix}-{name}"


@pytest.fixture
def names() -> Names:
    return Names()


def _drop_topics(bootstrap: str, prefix: str) -> None:
    """Delete a finished test's topics, so the broker's metadata stays small over the suite."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        mine = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
        if mine:
            for f in admin.delete_topics(mine, operation_timeout=30).values():
                f.result(60)
    except Exception:  # noqa: BLE001 - housekeeping only; the next test has its own topics
        pass


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, names: Names, tmp_path: Path):
    """Settings pointing at the test broker, with this test's own topics and state."""
    from streams.config import load_settings

    settings = load_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        state_dir=tmp_path / "state",
        topic_clickstream=names.topic("clickstream"),
        topic_purchases=names.topic("purchases"),
        topic_consent=names.topic("consent"),
        topic_output_prefix=names.topic("personalization."),
        topic_decisions=names.topic("decisions"),
        topic_erasures=names.topic("erasures"),
        topic_dlq=names.topic("dlq"),
        topic_keys=names.topic("keys"),
        topic_notices=names.topic("notices"),
        group_id=names.group(),
        partitions=3,
        pseudonym_key="test-secret-not-for-production",
        # the default policy encrypts the email engine's contact fields (CONTRACT §8, §10):
        # the test KEK of schemas/examples/keys (bytes 0..31), never a production key
        kek=bytes(range(32)).hex(),
        web_port=_free_port(),
        log_level="INFO",
        # the broker's smallest allowed session (group.min.session.timeout.ms, 6 s): every
        # SIGKILL test waits one session for the group to drop the dead member, ~20 kills
        # in the suite, so 10 s (the product default) cost about 80 s of CI
        session_timeout_ms=6_000,
    )
    yield settings
    _drop_topics(kafka_bootstrap, names.prefix)  # its topics, faust's internal ones included


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
