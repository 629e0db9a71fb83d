"""The secured local broker (`pfilter kafka up --secure`): SASL_SSL with
SCRAM-SHA-512, StandardAuthorizer without allow-everyone, ACLs per principal.

The test starts its own secured broker on free ports in a throwaway state dir
(never the shared one), so the ACLs and users are exactly what
streams/kafka/secure.py sets up."""

from __future__ import annotations

import socket
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from streams.config import ConfigError, Settings, load_settings
from streams.kafka import clients, secure
from streams.kafka.admin import create_topics
from streams.kafka.broker import LocalBroker

pytestmark = pytest.mark.kafka

#: How long a read waits for a record or an error: a fresh broker's first
#: fetch (group coordinator, metadata, TLS handshakes) takes a few seconds here.
READ_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    settings = load_settings(kafka_port=_free_port(), kafka_controller_port=_free_port(),
                             state_dir=tmp_path_factory.mktemp("secure-broker"), partitions=1)
    b = LocalBroker(settings, secure=True)
    b.up()
    try:
        yield b
    finally:
        b.destroy()


@pytest.fixture(scope="module")
def topics(broker: LocalBroker) -> Settings:
    """The default topics (a fresh broker), created by the admin principal."""
    admin = broker.client_settings()
    engine_topics = [t for t in broker._engine_topics().values()]
    created = dict(create_topics(admin, engine_topics))  # the keys topic is one of the contract's topics
    assert secure.KEYS_TOPIC in created
    producer = Producer(clients.producer_config(broker.client_settings(secure.WORKER)))
    for t in ("personalization.offers", "personalization.email"):
        producer.produce(t, key=b"k", value=b'{"n": 1}')
    assert producer.flush(30) == 0
    return admin


def _read_one(settings: Settings, topic: str, group: str) -> tuple[bytes | None, KafkaError | None]:
    """The first record of ``topic`` read in consumer group ``group``, or the error the
    broker answers with (librdkafka hands a subscribed topic's errors to poll())."""
    c = Consumer(clients.consumer_config(settings, group, **{"isolation.level": "read_uncommitted"}))
    try:
        c.subscribe([topic])
        for _ in range(int(READ_TIMEOUT_S / 0.5)):
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                return None, m.error()
            return m.value(), None
    finally:
        c.close()
    raise AssertionError(f"neither a record nor an error from {topic} in {READ_TIMEOUT_S:.0f}s")


def test_an_engine_reads_its_own_topic(broker: LocalBroker, topics: Settings) -> None:
    value, err = _read_one(broker.client_settings("engine-offers"), "personalization.offers",
                           f"engine-offers.{uuid.uuid4().hex[:6]}")
    assert err is None and value == b'{"n": 1}'


@pytest.mark.parametrize("topic", ["personalization.email", "clickstream", "consent"])
def test_an_engine_is_refused_another_engines_topic_and_the_inputs(broker: LocalBroker, topics: Settings,
                                                                    topic: str) -> None:
    value, err = _read_one(broker.client_settings("engine-offers"), topic, f"engine-offers.{uuid.uuid4().hex[:6]}")
    assert value is None and err is not None
    assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


@pytest.mark.parametrize("group", ["pfilter", "engine-email.x"])
def test_an_engine_may_not_use_another_principals_group(broker: LocalBroker, topics: Settings, group: str) -> None:
    value, err = _read_one(broker.client_settings("engine-offers"), "personalization.offers", group)
    assert value is None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, err


@pytest.mark.parametrize("topic", ["personalization.offers", "personalization.email"])
def test_the_worker_cannot_read_the_outputs(broker: LocalBroker, topics: Settings, topic: str) -> None:
    """It writes them; reading them back is no business of its (it does read the data keys
    it restores on assignment, CONTRACT §10, and the notices topic, §9)."""
    value, err = _read_one(broker.client_settings(secure.WORKER), topic, f"pfilter.{uuid.uuid4().hex[:6]}")
    assert value is None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_wrong_password_fails_with_a_clear_error(broker: LocalBroker, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    s = broker.client_settings(secure.WORKER).model_copy(update={"kafka_sasl_password_file": wrong})
    with pytest.raises(ConfigError) as exc:
        clients.check_connection(s)
    msg = str(exc.value)
    assert "refused the credentials of PFILTER_KAFKA_SASL_USERNAME=pfilter-worker" in msg
    assert "not-the-password" not in msg and "\n" not in msg
    clients.check_connection(broker.client_settings(secure.WORKER))  # the right one connects


def test_a_broker_certificate_from_another_ca_is_refused(broker: LocalBroker, tmp_path: Path) -> None:
    from streams.kafka import certs

    other_ca, _ = certs.ensure_ca(tmp_path)
    s = broker.client_settings(secure.WORKER).model_copy(update={"kafka_ssl_ca_file": other_ca})
    with pytest.raises(ConfigError, match="TLS to 127.0.0.1:.* failed.*PFILTER_KAFKA_SSL_CA_FILE"):
        clients.check_connection(s)


def test_no_plaintext_door(broker: LocalBroker) -> None:
    s = broker.client_settings().model_copy(update={"kafka_security_protocol": "PLAINTEXT",
                                                    "kafka_sasl_mechanism": None})
    with pytest.raises(ConfigError, match="no Kafka broker answered"):
        clients.check_connection(s, timeout=5)


def test_secrets_are_private_and_not_logged(broker: LocalBroker) -> None:
    files = broker.secure_files
    assert set(files.users()) >= {"admin", "broker", "pfilter-worker", "engine-offers", "engine-email"}
    log = broker.log_file.read_text(errors="replace")
    for user in files.users():
        assert stat.S_IMODE(files.password_file(user).stat().st_mode) == 0o600
        assert files.password(user) not in log
    assert stat.S_IMODE(broker.config_file.stat().st_mode) == 0o600
    assert "PASSWORD" not in files.env_file(secure.WORKER).read_text().replace("PASSWORD_FILE", "")


# ------------------------------------------------- the worker over SASL_SSL
@pytest.mark.parametrize("runtime", ["fast", "faust"])
def test_worker_every_reason_code_over_sasl_ssl(broker: LocalBroker, tmp_path: Path, runtime: str) -> None:
    """The reason-code end-to-end test of test_worker.py, with the worker authenticated as
    pfilter-worker holding only the ACLs secure.acl_bindings gives it, while the test
    produces and verifies as admin."""
    from confluent_kafka.admin import AdminClient

    from streams.runtime.process import WorkerProcess
    from streams.wiring import policy_for_topics
    from tests.integration import kit, test_worker

    prefix = f"t{uuid.uuid4().hex[:10]}"
    run = broker.settings.model_copy(update={
        **{f"topic_{t}": f"{prefix}.{t}" for t in ("clickstream", "purchases", "consent", "decisions",
                                                    "erasures", "dlq", "keys", "notices")},
        "topic_output_prefix": f"{prefix}.personalization.", "group_id": f"{prefix}-g", "partitions": 3,
        "pseudonym_key": "test-secret-not-for-production", "web_port": _free_port(),
        "kek": bytes(range(32)).hex(),  # the tests' KEK (schemas/examples/keys), never a production key
        "state_dir": tmp_path / "state", "runtime": runtime,
        "processing_guarantee": "exactly_once" if runtime == "fast" else "at_least_once",
    })
    admin = broker.client_settings(base=run)
    kit.setup_topics(admin)
    client = AdminClient(clients.admin_config(admin))
    engines = {e.name: e.topic for e in policy_for_topics(run).engines}
    secure.apply_acls(client, secure.acl_bindings(run, engines))
    w = WorkerProcess(broker.client_settings(secure.WORKER, base=run), tmp_path / "worker.log").start()
    try:
        w.wait_ready(timeout=90)
        test_worker.test_every_reason_code_end_to_end(admin, w, tmp_path)
    finally:
        w.stop()
