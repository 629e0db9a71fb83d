"""Production mode (streams/production.py): one test per refusal, each against
settings that are otherwise fit, so each rule is shown to be the one refusing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from streams import production
from streams.config import ConfigError, Settings, load_settings

PSEUDONYM = "pseudonym-secret-0123456789abcdef-XYZ"  # 37 bytes
KEK = "a2VrLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ"  # 32 bytes, base64url
PASSWORD = "scram-password-never-shown"


def fit(**changes: Any) -> Settings:
    base: dict[str, Any] = dict(
        env="production", runtime="fast", processing_guarantee="exactly_once",
        kafka_bootstrap_servers="kafka-0.example.internal:9093,10.0.0.7:9093",
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="pfilter-worker", kafka_sasl_password=PASSWORD,
        pseudonym_key=PSEUDONYM, kek=KEK,
    )
    base.update(changes)
    return load_settings(**base)


def only_problem(settings: Settings) -> str:
    problems = production.check_production(settings)
    assert len(problems) == 1, problems
    for secret in (PSEUDONYM, KEK, PASSWORD):
        assert secret not in problems[0]
    return problems[0]


def test_fit_settings_pass() -> None:
    assert production.check_production(fit()) == []


def test_mtls_passes(tmp_path: Path) -> None:
    s = fit(kafka_security_protocol="SSL", kafka_sasl_mechanism=None, kafka_sasl_username=None,
            kafka_sasl_password=None, kafka_ssl_cert_file=tmp_path / "c.pem", kafka_ssl_key_file=tmp_path / "k.pem")
    assert production.check_production(s) == []


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:9092", "localhost:9092", "[::1]:9092", "127.0.0.2:1,localhost:2"])
def test_plaintext_to_loopback_is_allowed(bootstrap: str) -> None:
    s = fit(kafka_bootstrap_servers=bootstrap, kafka_security_protocol="PLAINTEXT", kafka_sasl_mechanism=None)
    assert production.check_production(s) == []


def test_refuses_plaintext_to_a_remote_broker() -> None:
    p = only_problem(fit(kafka_security_protocol="PLAINTEXT", kafka_sasl_mechanism=None))
    assert "PFILTER_KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in p and "kafka-0.example.internal" in p


def test_refuses_plaintext_when_one_broker_of_several_is_remote() -> None:
    p = only_problem(fit(kafka_bootstrap_servers="127.0.0.1:9092,broker.example:9092",
                         kafka_security_protocol="PLAINTEXT", kafka_sasl_mechanism=None))
    assert "broker.example" in p and "127.0.0.1" not in p


def test_refuses_sasl_without_tls_to_a_remote_broker() -> None:
    p = only_problem(fit(kafka_security_protocol="SASL_PLAINTEXT"))
    assert "SASL_PLAINTEXT" in p and "unencrypted" in p


def test_refuses_tls_without_authentication_to_a_remote_broker() -> None:
    p = only_problem(fit(kafka_security_protocol="SSL", kafka_sasl_mechanism=None))
    assert "PFILTER_KAFKA_SSL_CERT_FILE" in p


def test_refuses_tls_without_hostname_verification() -> None:
    p = only_problem(fit(kafka_ssl_verify_hostname=False))
    assert "PFILTER_KAFKA_SSL_VERIFY_HOSTNAME" in p


def test_refuses_sasl_without_a_password(tmp_path: Path) -> None:
    p = only_problem(fit(kafka_sasl_password=None, kafka_sasl_password_file=tmp_path / "absent"))
    assert "PFILTER_KAFKA_SASL_PASSWORD" in p


def test_refuses_a_missing_pseudonym_key() -> None:
    p = only_problem(fit(pseudonym_key=None))
    assert "PFILTER_PSEUDONYM_KEY" in p and "missing" in p


def test_refuses_a_short_pseudonym_key_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "pk").write_text("only-31-bytes-of-secret-xxxxxxx\n")
    p = only_problem(fit(pseudonym_key=None, pseudonym_key_file=tmp_path / "pk"))
    assert "PFILTER_PSEUDONYM_KEY_FILE" in p and "31 bytes" in p and "only-31" not in p


def test_refuses_the_example_pseudonym_key(tmp_path: Path) -> None:
    p = only_problem(fit(pseudonym_key=None, pseudonym_key_file=production.EXAMPLE_SECRET_FILE))
    assert "example secret" in p


def test_refuses_a_missing_kek() -> None:
    p = only_problem(fit(kek=None))
    assert "PFILTER_KEK" in p and "missing" in p


def test_refuses_a_short_kek() -> None:
    """A KEK that is not 32 bytes stops the settings themselves, in any mode, without its value."""
    with pytest.raises(ConfigError) as exc:
        fit(kek="x" * 31)
    assert "PFILTER_KEK" in str(exc.value) and "32 bytes" in str(exc.value) and "xxxx" not in str(exc.value)


def test_refuses_an_unreadable_kek_file(tmp_path: Path) -> None:
    p = only_problem(fit(kek=None, kek_file=tmp_path / "absent"))
    assert "PFILTER_KEK" in p and str(tmp_path / "absent") in p


def test_refuses_a_policy_that_fails_its_check(tmp_path: Path) -> None:
    bad = tmp_path / "policy.toml"
    bad.write_text('version = "x"\npurposes = ["a"]\n[[engines]]\nname = "e"\nneeds = ["not-a-purpose"]\n')
    p = only_problem(fit(policy_file=bad))
    assert "policy" in p and str(bad) in p


def test_refuses_at_least_once_on_the_fast_runtime() -> None:
    p = only_problem(fit(processing_guarantee="at_least_once"))
    assert "PFILTER_PROCESSING_GUARANTEE=at_least_once" in p and "PFILTER_PRODUCTION_ALLOW_AT_LEAST_ONCE" in p


def test_at_least_once_override_passes_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    s = fit(processing_guarantee="at_least_once", production_allow_at_least_once=True)
    assert production.check_production(s) == []
    with caplog.at_level(logging.WARNING, logger="streams.production"):
        production.enforce(s)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "at_least_once" in caplog.records[0].getMessage()


def test_faust_runtime_at_least_once_is_not_refused() -> None:
    assert production.check_production(fit(runtime="faust", processing_guarantee="at_least_once")) == []


def test_enforce_raises_one_line_and_logs_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    s = fit(kafka_security_protocol="PLAINTEXT", kafka_sasl_mechanism=None, kek=None)
    with caplog.at_level(logging.ERROR, logger="streams.production"), pytest.raises(ConfigError) as exc:
        production.enforce(s)
    msg = str(exc.value)
    assert "\n" not in msg and "PLAINTEXT" in msg and "(and 1 more, logged above)" in msg
    assert [r.getMessage() for r in caplog.records] == [production.check_production(s)[1]]


def test_outside_production_mode_nothing_is_enforced() -> None:
    production.enforce(fit(env="development", kafka_security_protocol="PLAINTEXT", kafka_sasl_mechanism=None,
                           pseudonym_key=None, kek=None))
