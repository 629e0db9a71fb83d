"""The project's own broker: idempotent up, real round trip, clean down, taken port."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import load_settings
from streams.kafka.broker import BrokerError, LocalBroker
from streams.kafka.clients import producer_config

pytestmark = pytest.mark.kafka

PORT = 39192


def _our_java_pids(home: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"kafka.Kafka {home}"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("broker-state")
    b = LocalBroker(load_settings(kafka_port=PORT, state_dir=state))
    yield b
    b.destroy()


def test_up_twice_reuses_one_broker(broker: LocalBroker) -> None:
    first = broker.up()
    second = broker.up()
    assert first.running and second.running
    assert first.pid == second.pid
    assert len(_our_java_pids(broker.home)) == 1


def test_round_trip_with_confluent_kafka(broker: LocalBroker) -> None:
    broker.up()
    s = load_settings(kafka_bootstrap_servers=broker.bootstrap)
    topic = f"rt-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    p = Producer(producer_config(s))
    for i in range(10):
        p.produce(topic, key=f"s-{i}".encode(), value=f"v{i}".encode())
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": topic, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = {}
    for _ in range(60):
        for m in c.consume(100, timeout=1.0):
            assert m.error() is None
            got[m.key()] = m.value()
        if len(got) == 10:
            break
    c.close()
    assert got == {f"s-{i}".encode(): f"v{i}".encode() for i in range(10)}


def test_taken_port_fails_fast_naming_it(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        b = LocalBroker(load_settings(kafka_port=port, kafka_controller_port=port + 1 if port < 65535 else port - 1, state_dir=tmp_path))
        with pytest.raises(BrokerError) as exc:
            b.up(timeout=5)
        assert str(port) in str(exc.value)
        assert "PFILTER_KAFKA_PORT" in str(exc.value)
        assert not b.status().running


def test_cli_taken_port_message(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "streams.cli", "--state-dir", str(tmp_path), "kafka", "up", "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )
    assert proc.returncode != 0
    assert f"port {port}" in proc.stderr


def test_down_leaves_no_process(broker: LocalBroker) -> None:
    broker.up()
    assert _our_java_pids(broker.home)
    assert broker.down() is True
    assert _our_java_pids(broker.home) == []
    assert not broker.status().running
    assert broker.down() is False  # idempotent
