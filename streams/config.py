"""All configuration, read in one place.

Every setting is an environment variable with the prefix ``PFILTER_`` (the
field name upper-cased), except the conventional ``KAFKA_BOOTSTRAP_SERVERS``
and ``SCHEMA_REGISTRY_URL``. CLI flags override the environment: the CLI
builds ``Settings(**flags)`` and pydantic-settings gives init arguments
precedence over env vars. The README's configuration table is generated from
the ``description`` of each field (``pfilter config --markdown``), so the
documentation cannot drift from the code.

Bad values stop the process at start-up with a message that names the
setting (pydantic's validation error, re-raised as ``ConfigError``).

Size (about 500 lines): one field per setting with its description, which the README
table is generated from and checked against; splitting it would split that one place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.errors import PFilterError

#: Root of the source checkout (or of the installed package's parent).
PROJECT_ROOT = Path(__file__).resolve().parent.parent

Format = Literal["json", "avro"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

#: Marks a field whose value is secret: masked by `pfilter config`, never in
#: an error message or a log line (secret_fields() lists them).
SECRET = {"secret": True}


class ConfigError(PFilterError, ValueError):
    """A setting has a value the filter cannot run with."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PFILTER_",
        extra="forbid",
        populate_by_name=True,
        validate_default=True,
    )

    # --- Kafka connection -------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
        description="`KAFKA_BOOTSTRAP_SERVERS`: brokers to use. Unset: the project's local broker "
        "(`127.0.0.1:$PFILTER_KAFKA_PORT`).",
    )
    schema_registry_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("schema_registry_url", "SCHEMA_REGISTRY_URL"),
        description="`SCHEMA_REGISTRY_URL`: Confluent schema registry for Avro ids. Unset: the "
        "checked-in id map `schemas/ids.json`.",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="How every client of the project talks to the brokers: PLAINTEXT, SSL (TLS; with "
        "a client certificate: mTLS), SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        default=None,
        description="SASL mechanism (required with SASL_*): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or "
        "OAUTHBEARER.",
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL username (PLAIN, SCRAM).")
    kafka_sasl_password: str | None = Field(
        default=None, repr=False, json_schema_extra=SECRET,
        description="SASL password (PLAIN, SCRAM). Secret: masked, never logged. Prefer the _FILE form.",
    )
    kafka_sasl_password_file: Path | None = Field(
        default=None,
        description="File holding the SASL password, instead of PFILTER_KAFKA_SASL_PASSWORD.",
    )
    kafka_sasl_oauthbearer_config: dict[str, str] = Field(
        default_factory=dict, repr=False, json_schema_extra=SECRET,
        description="OAUTHBEARER: a JSON object of librdkafka `sasl.oauthbearer.*` properties, passed "
        "through (e.g. `{\"sasl.oauthbearer.method\": \"oidc\", \"sasl.oauthbearer.client.id\": ...}`). "
        "Secret: masked.",
    )
    kafka_ssl_ca_file: Path | None = Field(
        default=None,
        description="CA certificate(s) (PEM) to verify the brokers with. Unset: the system's CAs.",
    )
    kafka_ssl_cert_file: Path | None = Field(default=None, description="Client certificate (PEM), for mTLS.")
    kafka_ssl_key_file: Path | None = Field(default=None, description="Client private key (PEM), for mTLS.")
    kafka_ssl_key_password: str | None = Field(
        default=None, repr=False, json_schema_extra=SECRET,
        description="Password of an encrypted client key. Secret: masked.",
    )
    kafka_ssl_verify_hostname: bool = Field(
        default=True,
        description="Check that the broker's certificate names the host connected to. Production mode "
        "refuses false.",
    )

    # --- Local broker (pfilter kafka up/down/status) ----------------------
    kafka_port: int = Field(
        default=9092, ge=1, le=65535,
        description="Client port of the local broker (loopback only).",
    )
    kafka_controller_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="KRaft controller port of the local broker. Unset: kafka_port + 1.",
    )
    kafka_version: str = Field(
        default="4.3.1", pattern=r"^4\.\d+\.\d+$",
        description="Apache Kafka release whose jars Maven fetches for the local broker.",
    )
    kafka_heap: str = Field(
        default="512m", pattern=r"^\d+[kKmMgG]$",
        description="JVM heap (-Xmx and -Xms) of the local broker.",
    )
    state_dir: Path = Field(
        default=PROJECT_ROOT / ".state",
        description="Where the local broker's data, pid and log, and worker state live.",
    )
    kafka_jars_dir: Path | None = Field(
        default=None,
        description="Cache of the broker jars. Unset: `~/.cache/pfilter/kafka-<version>` "
        "(outside the repository, shared by clones).",
    )

    # --- Local schema registry (pfilter registry up/down/status) ----------
    registry_port: int = Field(
        default=8081, ge=1, le=65535,
        description="Port of the local schema registry (loopback only); its Confluent API is "
        "`http://127.0.0.1:<port>/apis/ccompat/v7`.",
    )
    registry_version: str = Field(
        default="3.3.3", pattern=r"^3\.\d+\.\d+$",
        description="Apicurio Registry release Maven fetches for the local schema registry.",
    )
    registry_java: Path | None = Field(
        default=None,
        description="`java` (21+) that runs the local schema registry. Unset: `$JAVA_HOME`, `java` on "
        "PATH, or a JDK under /usr/lib/jvm, the first of release 21 or newer.",
    )
    registry_heap: str = Field(
        default="256m", pattern=r"^\d+[kKmMgG]$",
        description="JVM heap (-Xmx and -Xms) of the local schema registry.",
    )

    # --- Topics -----------------------------------------------------------
    topic_clickstream: str = Field(default="clickstream", description="Click event input topic.")
    topic_purchases: str = Field(default="purchases", description="Purchase event input topic.")
    topic_consent: str = Field(default="consent", description="Compacted consent input topic.")
    topic_output_prefix: str = Field(
        default="personalization.",
        description="Prefix of per-engine output topics. The default keeps the topics the policy "
        "names; any other value renames every engine's topic to <prefix><engine> (isolates a run).",
    )
    topic_decisions: str = Field(default="personalization.decisions", description="Decision (audit) log.")
    topic_erasures: str = Field(default="personalization.erasures", description="Erasure notices.")
    topic_dlq: str = Field(default="personalization.dlq", description="Dead-letter queue for bad input.")
    topic_notices: str = Field(
        default="personalization.notices",
        description="Consent notices (re-confirm before a grant expires, expired).",
    )
    topic_keys: str = Field(
        default="personalization.keys",
        description="Compacted per-subject wrapped data keys of encrypted fields; a tombstone shreds.",
    )
    partitions: int = Field(default=6, ge=1, le=10000, description="Partitions of every topic created.")
    replication_factor: int = Field(default=1, ge=1, le=32, description="Replication factor of topics created.")
    consent_min_compaction_lag_ms: int = Field(
        default=0, ge=0,
        description="`min.compaction.lag.ms` of the consent topic.",
    )
    consent_max_compaction_lag_ms: int = Field(
        default=3_600_000, ge=1,
        description="`max.compaction.lag.ms` of the consent topic: bounds how long a superseded "
        "consent record or a tombstone's predecessors stay on disk.",
    )
    consent_delete_retention_ms: int = Field(
        default=3_600_000, ge=0,
        description="`delete.retention.ms` of the consent topic: how long a tombstone itself stays "
        "readable after compaction, so that lagging readers still see the erasure.",
    )
    consent_segment_ms: int = Field(
        default=600_000, ge=1,
        description="`segment.ms` of the consent topic: the active segment is never compacted, "
        "so it must roll for the compaction deadline to hold.",
    )
    keys_min_compaction_lag_ms: int = Field(
        default=0, ge=0,
        description="`min.compaction.lag.ms` of the keys topic. 0: only a tombstone supersedes a "
        "live key, so any lag would only keep a shredded key on disk longer.",
    )
    keys_max_compaction_lag_ms: int = Field(
        default=3_600_000, ge=1,
        description="`max.compaction.lag.ms` of the keys topic: bounds how long a shredded key's "
        "record stays on disk after its tombstone (plus `segment.ms`).",
    )
    keys_delete_retention_ms: int = Field(
        default=86_400_000, ge=0,
        description="`delete.retention.ms` of the keys topic: how long a key tombstone stays "
        "readable, so an engine SDK lagging up to this long still drops the key it cached.",
    )
    keys_segment_ms: int = Field(
        default=600_000, ge=1,
        description="`segment.ms` of the keys topic: the active segment is never compacted.",
    )
    format_clickstream: Format = Field(default="json", description="Value format of the click topic.")
    format_purchases: Format = Field(default="json", description="Value format of the purchase topic.")
    format_consent: Format = Field(default="json", description="Value format of the consent topic.")
    format_output: Format = Field(default="json", description="Value format of outputs, decisions, erasures.")

    # --- Policy -----------------------------------------------------------
    policy_file: Path | None = Field(
        default=None,
        description="Policy file (TOML). Unset: the shipped default policy.",
    )
    pseudonym_key: str | None = Field(
        default=None, repr=False, json_schema_extra=SECRET,
        description="Secret for pseudonymizing subject ids (HMAC-SHA256, one key derived per "
        "engine). Never logged. Required when the policy pseudonymizes.",
    )
    pseudonym_key_file: Path | None = Field(
        default=None,
        description="File holding the pseudonym secret, instead of PFILTER_PSEUDONYM_KEY.",
    )
    kek: str | None = Field(
        default=None, repr=False, json_schema_extra=SECRET,
        description="Key-encryption key (32 bytes, base64url or hex) that wraps the per-subject data "
        "keys of encrypted fields. Never logged. Required when the policy encrypts, and for the "
        "engine SDK / `pfilter tail --decrypt` to read encrypted fields.",
    )
    kek_file: Path | None = Field(
        default=None,
        description="File holding the key-encryption key (its text, or 32 raw bytes), instead of PFILTER_KEK.",
    )

    # --- Production mode (streams/production.py) --------------------------
    env: Literal["development", "production"] = Field(
        default="development",
        description="development or production. In production the worker refuses to start with unsafe settings (README "
        "\"Deploying\": unauthenticated or unverified broker connections, missing or short secrets, "
        "a policy that fails its check, less than exactly_once on the fast runtime).",
    )
    production_allow_at_least_once: bool = Field(
        default=False,
        description="Production mode: let the fast runtime run at_least_once (logs a warning).",
    )

    # --- Worker -----------------------------------------------------------
    runtime: Literal["faust", "fast"] = Field(
        default="fast",
        description="Worker runtime: `fast` (confluent-kafka, exactly once) or `faust` (faust-streaming, "
        "RocksDB-backed consent with standby replicas; at least once).",
    )
    group_id: str = Field(default="pfilter", description="Consumer group / faust app id.")
    processing_guarantee: Literal["at_least_once", "exactly_once"] | None = Field(
        default=None,
        description="Delivery guarantee of the worker. Unset: `exactly_once` on the fast runtime, "
        "`at_least_once` on faust (the only one it offers).",
    )
    store: Literal["rocksdb", "memory"] = Field(default="rocksdb", description="Consent state store.")
    table_standby_replicas: int = Field(default=0, ge=0, le=8, description="Standby replicas of the consent table.")
    instance_id: str | None = Field(
        default=None,
        description="Stable id of this worker instance; the fast runtime's transactional.id is "
        "<group_id>.<instance_id>, so a restarted instance fences its crashed predecessor at once. "
        "Unset: <hostname>-<web_port>.",
    )
    checkpoint_interval_s: float = Field(
        default=30.0, gt=0,
        description="Fast runtime: how often consent state is checkpointed locally for quick restart.",
    )
    engine: Literal["auto", "native", "python"] = Field(
        default="auto",
        description="Decision engine: native (the Rust core, built by make install when cargo is present), "
        "python (the reference engine), or auto (native when built, else python, said once at start-up).",
    )
    batch_size: int = Field(default=2000, ge=1, le=1_000_000, description="Max events decided per batch.")
    commit_interval_ms: int = Field(
        default=250, ge=1, le=60_000,
        description="Fast runtime: outputs and input offsets are committed together at most this "
        "often (one transaction per interval with exactly_once; a flush then an offset commit with "
        "at_least_once). Longer: fewer commits and more throughput; shorter: read_committed readers "
        "see outputs sooner and a crash redoes less.",
    )
    batch_timeout_ms: int = Field(default=100, ge=1, le=60_000, description="Max wait to fill a batch.")
    startup_timeout_s: float = Field(
        default=30.0, gt=0, le=600,
        description="How long start-up waits for the brokers to answer before the worker exits "
        "naming them (a wrong address or a broker that is down never hangs the worker).",
    )
    session_timeout_ms: int = Field(
        default=10_000, ge=1_000, le=300_000,
        description="Consumer group session timeout: a crashed worker's partitions move to the others "
        "after this long (Kafka's default is 45 s). Heartbeats come from the clients' own threads, so "
        "a slow batch does not trip it.",
    )
    stall_timeout_s: float = Field(
        default=60.0, gt=0,
        description="An input partition with lag and no progress for this long makes `/readyz` "
        "unhealthy (`pfilter_partition_stalled_seconds` shows it from the first second). Longer "
        "than a rebalance plus a consent restore.",
    )
    web_port: int = Field(default=6066, ge=1, le=65535, description="Port of /metrics, /healthz, /readyz.")
    web_bind: str = Field(
        default="127.0.0.1",
        description="Address the web endpoints bind to (0.0.0.0 in containers).",
    )
    rocksdb_block_cache_mb: int = Field(
        default=64, ge=1, le=65536,
        description="RocksDB block cache per table partition (MiB): hot consent states stay in memory.",
    )
    rocksdb_write_buffer_mb: int = Field(
        default=16, ge=1, le=4096,
        description="RocksDB memtable size (MiB): larger absorbs consent bursts, costs RSS.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")

    # --- Support page (pfilter serve) -----------------------------------------
    support_port: int = Field(
        default=6070, ge=1, le=65535,
        description="Port of the support page (`pfilter serve`), apart from the worker's web port.",
    )
    support_bind: str = Field(
        default="127.0.0.1",
        description="Address the support page binds to (loopback: only this machine reaches it).",
    )
    support_token: str | None = Field(
        default=None, repr=False, json_schema_extra=SECRET,
        description="Secret every request to the support page must carry (login form, or "
        "`Authorization: Bearer`). Required by `pfilter serve`. Never logged.",
    )
    support_admin_token: str | None = Field(
        default=None, repr=False, json_schema_extra=SECRET,
        description="Second secret that `erase` on the support page needs besides the access token. "
        "Unset: the page cannot erase.",
    )
    support_metrics_url: str | None = Field(
        default=None,
        description="Worker `/metrics` the support page's live overview reads. Unset: "
        "`http://127.0.0.1:$PFILTER_WEB_PORT/metrics`.",
    )

    @field_validator("kafka_bootstrap_servers", "schema_registry_url", "kafka_sasl_mechanism", "kek", "kek_file",
                     "support_token", "support_admin_token", "support_metrics_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("kafka_sasl_oauthbearer_config")
    @classmethod
    def _oauthbearer_keys(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not k.startswith("sasl.oauthbearer.")]
        if bad:  # names only: the values may be client secrets
            raise ValueError(f"only sasl.oauthbearer.* properties pass through, not {', '.join(sorted(bad))}")
        return v

    @model_validator(mode="after")
    def _security_consistent(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and self.kafka_sasl_mechanism is None:
            raise ValueError(f"PFILTER_KAFKA_SASL_MECHANISM is required with "
                             f"PFILTER_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}")
        if not sasl and self.kafka_sasl_mechanism is not None:
            raise ValueError(f"PFILTER_KAFKA_SASL_MECHANISM needs a SASL_* PFILTER_KAFKA_SECURITY_PROTOCOL, "
                             f"not {self.kafka_security_protocol}")
        for a, b in (("kafka_sasl_password", "kafka_sasl_password_file"), ("kek", "kek_file")):
            if getattr(self, a) and getattr(self, b):
                raise ValueError(f"set only one of PFILTER_{a.upper()} and PFILTER_{b.upper()}")
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("PFILTER_KAFKA_SSL_CERT_FILE and PFILTER_KAFKA_SSL_KEY_FILE go together (mTLS)")
        return self


    @field_validator("kek", mode="after")
    @classmethod
    def _kek_decodes(cls, v: str | None) -> str | None:
        # a KEK that does not decode must stop start-up, not the first encrypted field
        if v is not None:
            from streams.crypto.keys import Kek
            from streams.crypto.errors import KekError

            try:
                Kek.from_text(v)
            except KekError as exc:
                raise ValueError(str(exc)) from None
        return v

    # --- derived ------------------------------------------------------------
    @property
    def guarantee(self) -> str:
        """The processing guarantee in force: the one set, else the runtime's default."""
        if self.processing_guarantee is not None:
            return self.processing_guarantee
        return "exactly_once" if self.runtime == "fast" else "at_least_once"

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers to use: the given ones, else the local broker."""
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def metrics_url(self) -> str:
        """The worker metrics the support page reads: the given URL, else the local worker's."""
        return self.support_metrics_url or f"http://127.0.0.1:{self.web_port}/metrics"

    @property
    def controller_port(self) -> int:
        return self.kafka_controller_port or self.kafka_port + 1

    @property
    def jars_dir(self) -> Path:
        if self.kafka_jars_dir is not None:
            return self.kafka_jars_dir
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        return base / "pfilter" / f"kafka-{self.kafka_version}"

    @property
    def registry_dist_dir(self) -> Path:
        """Cache of the unpacked schema registry, outside the repository like the broker jars."""
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        return base / "pfilter" / f"apicurio-registry-{self.registry_version}"

    def input_formats(self) -> dict[str, str]:
        """Value format per input topic, as the engine wants it."""
        return {
            self.topic_clickstream: self.format_clickstream,
            self.topic_purchases: self.format_purchases,
            self.topic_consent: self.format_consent,
        }


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment with CLI overrides (None means 'not given')."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            # err["input"] is deliberately not shown: a secret may be the bad value.
            if not name:  # a check across settings: its message names them
                problems.append(err["msg"].removeprefix("Value error, "))
                continue
            env = name if name.isupper() else f"PFILTER_{name.split('.')[0].upper()}"
            problems.append(f"{env}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def settings_markdown() -> str:
    """The README's configuration table, from the field descriptions."""
    rows = ["| env var | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        env = f"PFILTER_{name.upper()}"
        desc = field.description or ""
        if desc.startswith("`") and "`:" in desc:
            env, desc = desc[1:].split("`:", 1)
            env, desc = env.strip("`"), desc.strip()
        default = field.default_factory() if field.default_factory else field.default
        if isinstance(default, Path):
            default = str(default).replace(str(PROJECT_ROOT), ".")
        rows.append(f"| `{env}` | `{default}` | {desc} |")
    return "\n".join(rows)


def secret_fields() -> frozenset[str]:
    """Names of the settings whose values are secret (masked, never logged)."""
    return frozenset(n for n, f in Settings.model_fields.items()
                     if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("secret"))


def secret_env_names() -> frozenset[str]:
    """The environment variables of the secret settings."""
    return frozenset(f"PFILTER_{n.upper()}" for n in secret_fields())


def masked(settings: Settings) -> dict[str, Any]:
    """Every setting with the secret ones replaced by ``***`` (for display)."""
    secret = secret_fields()
    return {n: ("***" if n in secret and getattr(settings, n) else getattr(settings, n))
            for n in Settings.model_fields}


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        key = {"kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
               "schema_registry_url": "SCHEMA_REGISTRY_URL"}.get(name, f"PFILTER_{name.upper()}")
        # complex values as JSON, how pydantic-settings reads them back
        env[key] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return env
