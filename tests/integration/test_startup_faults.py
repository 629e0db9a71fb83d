"""F7 of the fault suite: a worker that cannot run says why in one line and exits non-zero,
within a bounded time, never hangs. Both runtimes share these checks; each runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import Settings, settings_env
from tests.integration import kit

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
#: Generous bound for one refused start: interpreter and faust imports (~3 s on 2 loaded
#: cores) plus the 5 s start-up timeout these tests set; a hang would take the full 120 s.
BOUND_S = 60.0


def _worker(s: Settings, runtime: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PFILTER_")}
    env.update(settings_env(s.model_copy(update={"startup_timeout_s": 5.0})))
    env["PFILTER_RUNTIME"] = runtime
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)
    return proc, time.monotonic() - t0


def _refused(s: Settings, runtime: str, *needles: str) -> str:
    proc, took = _worker(s, runtime)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert took < BOUND_S, f"took {took:.0f}s"
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert lines, "no message on stderr"
    last = lines[-1]
    assert last.startswith("Error: "), proc.stderr  # one line, no traceback
    assert "Traceback" not in proc.stderr, proc.stderr
    # librdkafka's own stderr lines ("%3|...|FAIL|rdkafka#producer-1| ... Connect ... failed")
    # came ~100 to a refused start, some after the "Error:" line, from the admin clients
    assert "|rdkafka#" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in last, last
    return last


def _create(s: Settings, specs: dict[str, tuple[int, dict]]) -> None:
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    futs = admin.create_topics([NewTopic(t, n, 1, config=cfg) for t, (n, cfg) in specs.items()])
    for f in futs.values():
        f.result(30)


RUNTIMES = ["fast", "faust"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_broker_not_reachable(kafka_settings: Settings, runtime: str) -> None:
    s = kafka_settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{kit.free_port()}"})
    _refused(s, runtime, "did not answer", s.kafka_bootstrap_servers)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_topics_missing(kafka_settings: Settings, runtime: str) -> None:
    _refused(kafka_settings, runtime, "does not exist", kafka_settings.topic_clickstream)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_partition_counts_differ(kafka_settings: Settings, runtime: str) -> None:
    s = kafka_settings
    compact = {"cleanup.policy": "compact"}
    _create(s, {s.topic_clickstream: (3, {}), s.topic_purchases: (2, {}), s.topic_consent: (3, compact)})
    _refused(s, runtime, "not co-partitioned", s.topic_purchases)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_consent_topic_not_compacted(kafka_settings: Settings, runtime: str) -> None:
    s = kafka_settings
    _create(s, {s.topic_clickstream: (3, {}), s.topic_purchases: (3, {}),
                s.topic_consent: (3, {"cleanup.policy": "delete"})})
    _refused(s, runtime, "must be compacted", s.topic_consent)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_policy_invalid(kafka_settings: Settings, tmp_path: Path, runtime: str) -> None:
    bad = tmp_path / "bad.toml"
    text = (ROOT / "streams" / "policy" / "default.toml").read_text()
    bad.write_text(text.replace('may_receive = ["browsing", "purchase_history"]',
                                'may_receive = ["browsing", "shoe_sizes"]', 1))
    assert bad.read_text() != text, "the policy edit did not apply: the test would prove nothing"
    kit.setup_topics(kafka_settings)
    s = kafka_settings.model_copy(update={"policy_file": bad})
    _refused(s, runtime, "shoe_sizes")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_keys_topic_missing(kafka_settings: Settings, runtime: str) -> None:
    # the default policy encrypts email's fields: the worker restores data keys from the keys
    # topic, and a missing one must stop start-up naming it (it hung until the watchdog)
    s = kafka_settings
    compact = {"cleanup.policy": "compact"}
    _create(s, {s.topic_clickstream: (3, {}), s.topic_purchases: (3, {}), s.topic_consent: (3, compact),
                s.topic_notices: (3, {})})
    _refused(s, runtime, "does not exist", s.topic_keys)
