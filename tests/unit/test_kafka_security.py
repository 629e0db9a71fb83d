"""Client security settings (streams/kafka/clients.py): every client gets them,
secrets never show. No broker needed; the secured-broker tests are integration."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config import ConfigError, Settings, load_settings, masked, secret_fields, settings_env
from streams.kafka import certs, clients
from streams.loadgen import loadgen_producer_config

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-Zq8-never-shown"
OAUTH_SECRET = "oidc-client-secret-never-shown"


@pytest.fixture
def sasl_ssl(tmp_path: Path) -> Settings:
    ca, _key = certs.ensure_ca(tmp_path)
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    return load_settings(kafka_bootstrap_servers="kafka.example:9093", kafka_security_protocol="SASL_SSL",
                         kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="pfilter-worker",
                         kafka_sasl_password_file=tmp_path / "pw", kafka_ssl_ca_file=ca)


def test_plaintext_adds_nothing() -> None:
    assert clients.base_config(load_settings(kafka_bootstrap_servers="h:1")) == {"bootstrap.servers": "h:1"}


def test_sasl_ssl_scram_with_a_password_file(sasl_ssl: Settings) -> None:
    cfg = clients.base_config(sasl_ssl)
    assert cfg == {
        "bootstrap.servers": "kafka.example:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "pfilter-worker",
        "sasl.password": PASSWORD,  # the file's content, newline stripped
        "ssl.ca.location": str(sasl_ssl.kafka_ssl_ca_file),
        "ssl.endpoint.identification.algorithm": "https",
    }


def test_every_client_helper_carries_the_security_settings(sasl_ssl: Settings) -> None:
    configs = {
        "admin": clients.admin_config(sasl_ssl),
        "producer": clients.producer_config(sasl_ssl),
        "output producer": clients.output_producer_config(sasl_ssl, lambda *_: None),
        "consumer": clients.consumer_config(sasl_ssl),
        "plain consumer": clients.plain_consumer_config(sasl_ssl, "g"),
        "loadgen": loadgen_producer_config(sasl_ssl, rate_mode=False),
    }
    for name, cfg in configs.items():
        assert cfg["security.protocol"] == "SASL_SSL", name
        assert cfg["sasl.password"] == PASSWORD, name
        assert cfg["ssl.endpoint.identification.algorithm"] == "https", name


def test_mtls_and_hostname_verification_off(tmp_path: Path) -> None:
    for f in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / f).write_text("x")
    s = load_settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=tmp_path / "ca.pem",
                      kafka_ssl_cert_file=tmp_path / "cert.pem", kafka_ssl_key_file=tmp_path / "key.pem",
                      kafka_ssl_verify_hostname=False)
    cfg = clients.security_config(s)
    assert cfg["ssl.certificate.location"] == str(tmp_path / "cert.pem")
    assert cfg["ssl.key.location"] == str(tmp_path / "key.pem")
    assert cfg["ssl.endpoint.identification.algorithm"] == "none"
    assert "sasl.mechanism" not in cfg


def test_oauthbearer_passthrough() -> None:
    oauth = {"sasl.oauthbearer.method": "oidc", "sasl.oauthbearer.client.id": "pfilter",
             "sasl.oauthbearer.client.secret": OAUTH_SECRET,
             "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token"}
    s = load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="OAUTHBEARER",
                      kafka_sasl_oauthbearer_config=oauth)
    cfg = clients.security_config(s)
    assert {k: cfg[k] for k in oauth} == oauth and cfg["sasl.mechanism"] == "OAUTHBEARER"
    assert "sasl.password" not in cfg
    with pytest.raises(ConfigError) as exc:
        load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="OAUTHBEARER",
                      kafka_sasl_oauthbearer_config={"bootstrap.servers": OAUTH_SECRET})
    assert "sasl.oauthbearer" in str(exc.value) and OAUTH_SECRET not in str(exc.value)


def test_oauthbearer_config_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PFILTER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PFILTER_KAFKA_SASL_MECHANISM", "OAUTHBEARER")
    monkeypatch.setenv("PFILTER_KAFKA_SASL_OAUTHBEARER_CONFIG", '{"sasl.oauthbearer.method": "oidc"}')
    s = load_settings()
    assert s.kafka_sasl_oauthbearer_config == {"sasl.oauthbearer.method": "oidc"}
    # and a child process gets it back the same way
    assert settings_env(s)["PFILTER_KAFKA_SASL_OAUTHBEARER_CONFIG"] == '{"sasl.oauthbearer.method": "oidc"}'


@pytest.mark.parametrize("settings, named", [
    ({"kafka_security_protocol": "SASL_SSL"}, "PFILTER_KAFKA_SASL_MECHANISM"),
    ({"kafka_sasl_mechanism": "PLAIN"}, "PFILTER_KAFKA_SASL_MECHANISM"),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN",
      "kafka_sasl_password": PASSWORD, "kafka_sasl_password_file": "/x"}, "PFILTER_KAFKA_SASL_PASSWORD_FILE"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": "/c"}, "PFILTER_KAFKA_SSL_KEY_FILE"),
    ({"kafka_security_protocol": "TLS"}, "PFILTER_KAFKA_SECURITY_PROTOCOL"),
])
def test_inconsistent_security_settings_stop_start_up_naming_them(settings: dict, named: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(**settings)
    assert named in str(exc.value)
    assert PASSWORD not in str(exc.value)


def test_missing_credentials_and_unreadable_files_are_named(tmp_path: Path) -> None:
    s = load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                      kafka_sasl_username="u")
    with pytest.raises(ConfigError, match="PFILTER_KAFKA_SASL_PASSWORD"):
        clients.base_config(s)
    s = load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                      kafka_sasl_username="u", kafka_sasl_password_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match="PFILTER_KAFKA_SASL_PASSWORD_FILE"):
        clients.base_config(s)
    s = load_settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match="PFILTER_KAFKA_SSL_CA_FILE"):
        clients.base_config(s)


def test_secrets_are_masked_and_never_in_repr(sasl_ssl: Settings) -> None:
    s = sasl_ssl.model_copy(update={"kafka_sasl_password": None, "pseudonym_key": "pk-never-shown",
                                    "kek": "kek-never-shown-0123456789abcdef0123",
                                    "kafka_ssl_key_password": "keypw-never-shown",
                                    "kafka_sasl_oauthbearer_config": {"sasl.oauthbearer.client.secret": OAUTH_SECRET}})
    shown = masked(s)
    for name in ("pseudonym_key", "kek", "kafka_ssl_key_password", "kafka_sasl_oauthbearer_config"):
        assert name in secret_fields() and shown[name] == "***", name
    text = repr(s) + str(s) + repr(shown)
    for secret in ("pk-never-shown", "kek-never-shown", "keypw-never-shown", OAUTH_SECRET):
        assert secret not in text
    assert shown["kafka_sasl_username"] == "pfilter-worker"  # not a secret: shown


def test_pfilter_config_masks_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PFILTER_")}
    env.update({"PFILTER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PFILTER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "PFILTER_KAFKA_SASL_USERNAME": "u", "PFILTER_KAFKA_SASL_PASSWORD": PASSWORD,
                "PFILTER_KEK": "a2VrLW5ldmVyLXNob3duLTAxMjM0NTY3ODlhYmNkZWY",  # 32 bytes, base64url
                "PFILTER_KAFKA_SSL_KEY_PASSWORD": "keypw-never-shown"})
    out = subprocess.run([sys.executable, "-m", "streams.cli", "config"], capture_output=True, text=True,
                         env=env, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "kafka_sasl_password = ***" in out.stdout and "kek = ***" in out.stdout
    assert "kafka_ssl_key_password = ***" in out.stdout
    for secret in (PASSWORD, "kek-never-shown", "keypw-never-shown"):
        assert secret not in out.stdout + out.stderr


def test_faust_credentials(sasl_ssl: Settings) -> None:
    import ssl

    import faust

    creds = clients.faust_credentials(sasl_ssl)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.mechanism.value == "SCRAM-SHA-512" and creds.protocol.value == "SASL_SSL"
    assert creds.username == "pfilter-worker" and creds.password == PASSWORD
    assert PASSWORD not in repr(creds)
    assert creds.ssl_context.check_hostname and creds.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert clients.faust_credentials(load_settings()) is None


def test_faust_credentials_mtls(tmp_path: Path) -> None:
    import faust

    client = certs.issue(tmp_path, "engine-offers", hosts=[], server=False)
    s = load_settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=client.ca_cert,
                      kafka_ssl_cert_file=client.cert, kafka_ssl_key_file=client.key)
    creds = clients.faust_credentials(s)
    assert isinstance(creds, faust.SSLCredentials) and creds.context.check_hostname
    # a CA file that holds no certificate is named, not a traceback
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="PFILTER_KAFKA_SSL_CA_FILE"):
        clients.faust_credentials(s.model_copy(update={"kafka_ssl_ca_file": tmp_path / "bad.pem"}))
    # a key that does not match the certificate
    other = certs.issue(tmp_path, "other", hosts=[], server=False)
    with pytest.raises(ConfigError, match="PFILTER_KAFKA_SSL_KEY_FILE"):
        clients.faust_credentials(s.model_copy(update={"kafka_ssl_key_file": other.key}))


#: Places that still build a client config by hand, each with its reason. The
#: test below fails on any other: a new client must start from clients.base_config.
HAND_BUILT = {
    # the engine SDK runs in the engines' processes, without our Settings: engines pass their
    # own client settings (security included) through EngineConsumer(config=...)
    "streams/sdk/consumer.py": 1,
}


def test_no_client_config_is_built_by_hand() -> None:
    found: dict[str, int] = {}
    for path in [*(ROOT / "streams").rglob("*.py"), *(ROOT / "bench").glob("e2e*.py"), ROOT / "bench" / "engine.py"]:
        rel = path.relative_to(ROOT).as_posix()
        if rel == "streams/kafka/clients.py":
            continue
        n = len(re.findall(r'"bootstrap\.servers"', path.read_text()))
        if n:
            found[rel] = n
    assert found == HAND_BUILT


def test_acls_grant_each_principal_only_what_it_needs() -> None:
    from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

    from streams.kafka import secure

    s = load_settings(group_id="pf")
    engines = {"offers": "personalization.offers", "email": "personalization.email"}
    grants: dict[str, set] = {}
    for b in secure.acl_bindings(s, engines):
        assert b.name != "*" and b.operation not in (AclOperation.ALL, AclOperation.ANY), b
        grants.setdefault(b.principal, set()).add((b.restype, b.name, b.resource_pattern_type, b.operation))
    R, W, D, C = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.CREATE
    T, G, X = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    lit, pre = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    assert grants["User:engine-offers"] == {
        (T, "personalization.offers", lit, R), (T, "personalization.offers", lit, D),
        (T, "personalization.erasures", lit, R), (T, "personalization.erasures", lit, D),
        (T, secure.KEYS_TOPIC, lit, R), (T, secure.KEYS_TOPIC, lit, D),
        (G, "engine-offers", lit, R), (G, "engine-offers", lit, D),
        (G, "engine-offers.", pre, R), (G, "engine-offers.", pre, D),
    }
    worker = grants["User:pfilter-worker"]
    read_topics = {name for rtype, name, _p, op in worker if rtype == T and op == R}
    # inputs, faust internals, and what the worker writes and restores: data keys (§10), notices (§9)
    assert read_topics == {"clickstream", "purchases", "consent", "pf-", s.topic_keys, s.topic_notices}
    written = {name for rtype, name, _p, op in worker if rtype == T and op == W}
    assert written == {*engines.values(), s.topic_decisions, s.topic_erasures, s.topic_dlq, "pf-",
                       s.topic_keys, s.topic_notices}
    assert {(rtype, name, p, op) for rtype, name, p, op in worker if rtype in (G, X)} == {
        (G, "pf", lit, R), (G, "pf", lit, D), (G, "pf.", pre, R), (G, "pf.", pre, D),
        (X, "pf.", pre, W), (X, "pf.", pre, D)}
    assert {op for rtype, name, _p, op in worker if op == C} == {C}  # only on faust's own topics
    assert all(name == "pf-" for rtype, name, _p, op in worker if op == C)
    assert set(grants) == {"User:pfilter-worker", "User:engine-offers", "User:engine-email"}
