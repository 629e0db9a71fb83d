"""Configuration, CLI start-up errors and the partitioner: no broker needed."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config import ConfigError, load_settings, settings_env, settings_markdown
from streams.kafka.partitioner import murmur2, partition_for

ROOT = Path(__file__).resolve().parents[2]


def _pfilter(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    e = {k: v for k, v in os.environ.items() if not k.startswith("PFILTER_")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          env=e, timeout=120, cwd=ROOT)


def test_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PFILTER_KAFKA_PORT", "99999")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "PFILTER_KAFKA_PORT" in str(exc.value)


def test_secret_never_in_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PFILTER_PSEUDONYM_KEY", "s3cr3t-value")
    monkeypatch.setenv("PFILTER_BATCH_SIZE", "not-a-number")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "s3cr3t-value" not in str(exc.value) and "not-a-number" not in str(exc.value)


def test_cli_flags_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PFILTER_PARTITIONS", "4")
    assert load_settings().partitions == 4
    assert load_settings(partitions=8).partitions == 8
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "h:1")
    assert load_settings().bootstrap == "h:1"


def test_settings_env_round_trip() -> None:
    s = load_settings(partitions=5, pseudonym_key="k", group_id="g1", runtime="fast")
    env = settings_env(s)
    assert env["PFILTER_PARTITIONS"] == "5" and env["PFILTER_RUNTIME"] == "fast"
    assert env["PFILTER_GROUP_ID"] == "g1"


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_markdown() in readme, "README's configuration table is stale: pfilter config --markdown"


def test_murmur2_matches_java_kafka() -> None:
    # vectors from Kafka's UtilsTest
    assert ctypes.c_int32(murmur2(b"21")).value == -973932308
    assert ctypes.c_int32(murmur2(b"foobar")).value == -790332482
    assert ctypes.c_int32(murmur2(b"a-little-bit-long-string")).value == -985981536
    assert ctypes.c_int32(murmur2(b"")).value == 275646681
    assert all(0 <= partition_for(f"s-{i}".encode(), 6) < 6 for i in range(100))


def test_worker_refuses_a_bad_policy_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('version="x"\npurposes=["a"]\n[categories]\nbrowsing=["url"]\n'
                   '[[engines]]\nname="e"\nneeds=["a"]\nmay_receive=["bogus"]\nparty="first"\njurisdictions="any"\n')
    r = _pfilter("--policy", str(bad), "worker", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert r.returncode != 0
    assert "bogus" in r.stderr


def test_worker_refuses_to_pseudonymize_without_a_secret() -> None:
    r = _pfilter("worker", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert r.returncode != 0
    assert "PFILTER_PSEUDONYM_KEY" in r.stderr


def test_policy_check_cli() -> None:
    ok = _pfilter("policy", "check")
    assert ok.returncode == 0 and "partner_ads" in ok.stdout


def test_cluster_ids_never_look_like_an_option() -> None:
    from streams.kafka.broker import _cluster_id

    ids = [_cluster_id() for _ in range(5000)]  # ~78 of 5000 plain ids would start with "-"
    assert all(not i.startswith("-") and len(i) == 22 for i in ids)
    assert len(set(ids)) == len(ids)


def test_every_error_the_filter_raises_on_purpose_derives_from_the_root() -> None:
    """Issue 15: one hierarchy, one root a user (and the CLI) can catch."""
    from streams.crypto.keys import KeyRecordError
    from streams.engine.codecs.errors import DecodeError, EncodeError, RegistryUnavailable
    from streams.engine.consent import MalformedConsent
    from streams.engine.policy import PolicyError
    from streams.errors import PFilterError

    for cls in (DecodeError, EncodeError, RegistryUnavailable, MalformedConsent, PolicyError, KeyRecordError):
        assert issubclass(cls, PFilterError), cls.__name__
    # the builtin bases stay, so callers that caught ValueError / RuntimeError still do
    assert issubclass(PolicyError, ValueError) and issubclass(EncodeError, ValueError)
    assert issubclass(RegistryUnavailable, RuntimeError)
