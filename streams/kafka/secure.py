"""The secured variant of the local broker (`pfilter kafka up --secure`).

What production clusters enforce, on one machine, so the tests and the demo
exercise it: one SASL_SSL listener (SCRAM-SHA-512 over TLS) for every client,
KRaft's StandardAuthorizer with ``allow.everyone.if.no.acl.found=false``, and
ACLs per principal:

- ``admin``: super user (creates topics, writes ACLs);
- ``pfilter-worker``: reads the inputs, writes the outputs (engine topics,
  decisions, erasures, DLQ), its consumer groups (``<group>``, ``<group>.*``),
  transactional ids (``<group>.*``) and faust's internal topics (``<group>-*``);
- ``engine-<name>`` per engine of the policy: reads only its own topic,
  ``personalization.erasures`` and ``personalization.keys``, in the group
  ``engine-<name>`` or groups prefixed ``engine-<name>.``.

The controller listener is TLS with client certificates (the broker's own),
mapped to the principal ``broker``: KRaft cannot authenticate controllers
with SCRAM (its credentials live in the metadata log the controller serves),
and a plaintext controller listener would need ANONYMOUS as a super user.
There is no plaintext listener at all: the tools use SASL_SSL as ``admin``.

Files (``<broker home>/secure/``, private ones mode 0600): the CA and the
broker's certificate, one ``<user>.password`` per principal, and
``<user>.env`` with the PFILTER_KAFKA_* settings a client of that principal
needs. Passwords are random per state dir and never logged. They are passed to
the storage tool's ``--add-scram`` on its command line at format time (the
tool has no file option), visible to local processes for the second it runs:
acceptable for a loopback test broker, which is all this is.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.config import Settings
from streams.kafka import certs

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
WORKER = "pfilter-worker"
BROKER = "broker"
#: Topic of the per-subject keys (crypto-shredding); engines may read it.
KEYS_TOPIC = "personalization.keys"


def engine_user(engine: str) -> str:
    return f"engine-{engine}"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@dataclass(frozen=True)
class SecureFiles:
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.dir / f"{BROKER}.p12"

    @property
    def key_password_file(self) -> Path:
        return self.dir / "keystore.password"

    def password_file(self, user: str) -> Path:
        return self.dir / f"{user}.password"

    def env_file(self, user: str) -> Path:
        return self.dir / f"{user}.env"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def users(self) -> list[str]:
        return sorted(p.name.removesuffix(".password") for p in self.dir.glob("*.password")
                      if p.name != "keystore.password")


def prepare(home: Path, users: list[str]) -> SecureFiles:
    """CA, broker certificate and a password per user (existing ones are kept)."""
    files = SecureFiles(home / "secure")
    files.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(files.dir, 0o700)
    if not files.key_password_file.exists():
        _write_private(files.key_password_file, secrets.token_urlsafe(24))
    if not files.keystore.exists():
        certs.issue(files.dir, BROKER, hosts=["127.0.0.1", "localhost"], server=True, client=True,
                    keystore_password=files.key_password_file.read_bytes().strip())
    for user in sorted({ADMIN, BROKER, *users}):
        if not files.password_file(user).exists():
            # token_urlsafe: [A-Za-z0-9_-] only, safe in the storage tool's [name=..,password=..]
            _write_private(files.password_file(user), secrets.token_urlsafe(24))
    return files


def server_properties(files: SecureFiles, port: int, controller_port: int) -> dict[str, str]:
    """What replaces the plaintext listeners in server.properties."""
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="{BROKER}" password="{files.password(BROKER)}";')
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
        "listener.name.controller.ssl.client.auth": "required",
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(files.keystore),
        "ssl.keystore.password": files.key_password_file.read_text().strip(),
        "ssl.key.password": files.key_password_file.read_text().strip(),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(files.ca),
        "ssl.endpoint.identification.algorithm": "https",
        # the broker's certificate (CN=broker) is the principal User:broker
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+),.*$/$1/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN};User:{BROKER}",
    }


def scram_args(files: SecureFiles) -> list[str]:
    """The storage tool's --add-scram arguments: every user's credential, at format time."""
    args = []
    for user in files.users():
        args += ["--add-scram", f"{MECHANISM}=[name={user},password={files.password(user)}]"]
    return args


def client_settings(files: SecureFiles, user: str) -> dict[str, Any]:
    """Settings overrides for a client authenticating as ``user``."""
    return {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": MECHANISM,
        "kafka_sasl_username": user,
        "kafka_sasl_password_file": files.password_file(user),
        "kafka_ssl_ca_file": files.ca,
    }


def write_env_files(files: SecureFiles) -> None:
    """``<user>.env``: the PFILTER_KAFKA_* lines for that principal (paths, no secrets)."""
    for user in files.users():
        if user == BROKER:
            continue
        lines = [f"PFILTER_{k.upper()}={v}" for k, v in client_settings(files, user).items()]
        files.env_file(user).write_text("\n".join(lines) + "\n")


def acl_bindings(settings: Settings, engine_topics: dict[str, str]) -> list[Any]:
    """The ACLs of the worker and of each engine (``engine_topics``: engine name -> topic)."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    allow = AclPermissionType.ALLOW
    lit, pre = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    out: list[Any] = []

    def grant(user: str, rtype: Any, name: str, pattern: Any, *ops: Any) -> None:
        out.extend(AclBinding(rtype, name, pattern, f"User:{user}", "*", op, allow) for op in ops)

    R, W, D, C = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.CREATE
    topic, group, txn = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    for t in (settings.topic_clickstream, settings.topic_purchases, settings.topic_consent):
        grant(WORKER, topic, t, lit, R, D)
    # the start-up check reads the consent topic's cleanup.policy (it must be compacted)
    grant(WORKER, topic, settings.topic_consent, lit, AclOperation.DESCRIBE_CONFIGS)
    for t in (*engine_topics.values(), settings.topic_decisions, settings.topic_erasures, settings.topic_dlq):
        grant(WORKER, topic, t, lit, W, D)
    # data keys (CONTRACT §10): written on first use, read back on assignment; consent notices
    # (§9): written, and read back by the faust runtime for its clock
    for t in (settings.topic_keys, settings.topic_notices):
        grant(WORKER, topic, t, lit, R, W, D)
    # faust's changelog and assignor topics: <group>-...
    grant(WORKER, topic, f"{settings.group_id}-", pre, R, W, D, C)
    # <group> (faust's and the fast runtime's), and <group>.consent-reader, <group>.barrier, ...;
    # not a bare prefix <group>: it would also cover another app's group <group>2
    grant(WORKER, group, settings.group_id, lit, R, D)
    grant(WORKER, group, f"{settings.group_id}.", pre, R, D)
    # the fast runtime's transactional.id is <group>.<instance>
    grant(WORKER, txn, f"{settings.group_id}.", pre, W, D)
    for engine, t in engine_topics.items():
        user = engine_user(engine)
        for readable in (t, settings.topic_erasures, settings.topic_keys):
            grant(user, topic, readable, lit, R, D)
        # engine-offers and engine-offers.*, never engine-offers_eu (another engine's)
        grant(user, group, user, lit, R, D)
        grant(user, group, f"{user}.", pre, R, D)
    return out


def apply_acls(admin: Any, bindings: list[Any], timeout: float = 30.0) -> None:
    """Create the ACLs (idempotent: creating an existing binding is a no-op)."""
    for fut in admin.create_acls(bindings, request_timeout=timeout).values():
        fut.result()
