"""confluent-kafka client configurations, in one place so every producer agrees.

Every producer of the project sets ``partitioner=murmur2_random``: the input
topics are co-partitioned by subject id and the Java clients (Kafka Streams,
Connect, the JVM producers shops use) hash keys with murmur2. librdkafka's
default (``consistent_random``, CRC32) would put a subject's events and its
consent on different partitions, and the per-partition join would miss.

Every client also gets the connection's security settings from
:func:`security_config` (``PFILTER_KAFKA_SECURITY_PROTOCOL`` and friends):
:func:`base_config` is the one dict every Consumer, Producer and AdminClient
of the project starts from, so no client can connect without them.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.config import ConfigError, Settings


def _read_secret_file(path: Path, setting: str) -> str:
    """A secret from a file; errors name the setting and the path, never the content."""
    try:
        data = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{setting}: {path} is not text") from None
    if not data:
        raise ConfigError(f"{setting}: {path} is empty")
    return data


def sasl_password(settings: Settings) -> str | None:
    """The SASL password from PFILTER_KAFKA_SASL_PASSWORD or its _FILE (read at each call,
    so a rotated secret file is picked up by the next client)."""
    if settings.kafka_sasl_password_file is not None:
        return _read_secret_file(settings.kafka_sasl_password_file, "PFILTER_KAFKA_SASL_PASSWORD_FILE")
    return settings.kafka_sasl_password


def _readable(path: Path | None, setting: str) -> str | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"{setting}: {path} is not a readable file")
    return str(path)


def security_config(settings: Settings) -> dict[str, Any]:
    """librdkafka properties for the connection's security settings (empty for PLAINTEXT)."""
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return {}
    cfg: dict[str, Any] = {"security.protocol": proto}
    if proto.startswith("SASL_"):
        mech = settings.kafka_sasl_mechanism
        cfg["sasl.mechanism"] = mech
        if mech == "OAUTHBEARER":
            cfg.update(settings.kafka_sasl_oauthbearer_config)
        else:
            password = sasl_password(settings)
            if not settings.kafka_sasl_username or not password:
                raise ConfigError(f"{mech} needs PFILTER_KAFKA_SASL_USERNAME and PFILTER_KAFKA_SASL_PASSWORD "
                                  "(or PFILTER_KAFKA_SASL_PASSWORD_FILE)")
            cfg["sasl.username"] = settings.kafka_sasl_username
            cfg["sasl.password"] = password
    if proto in ("SSL", "SASL_SSL"):
        ca = _readable(settings.kafka_ssl_ca_file, "PFILTER_KAFKA_SSL_CA_FILE")
        if ca:
            cfg["ssl.ca.location"] = ca
        cert = _readable(settings.kafka_ssl_cert_file, "PFILTER_KAFKA_SSL_CERT_FILE")
        if cert:
            cfg["ssl.certificate.location"] = cert
            cfg["ssl.key.location"] = _readable(settings.kafka_ssl_key_file, "PFILTER_KAFKA_SSL_KEY_FILE")
            if settings.kafka_ssl_key_password:
                cfg["ssl.key.password"] = settings.kafka_ssl_key_password
        # librdkafka's default is already https; said explicitly so that "off" is a visible choice
        cfg["ssl.endpoint.identification.algorithm"] = "https" if settings.kafka_ssl_verify_hostname else "none"
    return cfg


def base_config(settings: Settings, bootstrap: str | None = None) -> dict[str, Any]:
    """What every client of the project starts from: the brokers and the security settings.

    ``bootstrap`` overrides the brokers (the local broker's own tools); the
    security settings still apply."""
    return {"bootstrap.servers": bootstrap or settings.bootstrap, **security_config(settings)}


#: Where admin clients' librdkafka log lines go. Without a logger librdkafka prints
#: its own lines straight to stderr from its threads, even after the CLI has printed
#: its one-line error (a refused connection gave ~100 "Connect ... failed" lines, some
#: after the "Error:" line). Every admin call reports its failure as an exception that
#: we turn into one line, so its chatter belongs at debug level only.
class _DebugLog:
    """A librdkafka ``logger`` that writes every line at debug level, whatever its severity."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)

    def log(self, level: int, msg: str, *args: object) -> None:
        self._log.debug(msg, *args)


RDKAFKA_ADMIN_LOG = _DebugLog("streams.kafka.rdkafka.admin")


def admin_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    return {**base_config(settings), "logger": RDKAFKA_ADMIN_LOG, **overrides}


def plain_consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """A consumer that only assigns and reads (never subscribes, never commits): readers of
    the decision log, the consent topic, end offsets."""
    return {**base_config(settings), "group.id": group_id, "enable.auto.commit": False, **overrides}


def faust_credentials(settings: Settings) -> Any:
    """faust's ``broker_credentials`` for the same settings (None for PLAINTEXT).

    faust talks to Kafka through aiokafka, which takes an ``ssl.SSLContext``
    instead of file names. OAUTHBEARER would need an aiokafka token provider
    (the librdkafka passthrough does not apply): it stops start-up, naming the
    fast runtime as the one that supports it."""
    import faust

    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    context = None
    if proto in ("SSL", "SASL_SSL"):
        cafile = _readable(settings.kafka_ssl_ca_file, "PFILTER_KAFKA_SSL_CA_FILE")
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        except ssl.SSLError as exc:
            raise ConfigError(f"PFILTER_KAFKA_SSL_CA_FILE: {cafile} holds no usable certificate "
                              f"({exc.reason or exc.__class__.__name__})") from None
        context.check_hostname = settings.kafka_ssl_verify_hostname
        cert = _readable(settings.kafka_ssl_cert_file, "PFILTER_KAFKA_SSL_CERT_FILE")
        if cert:
            key = _readable(settings.kafka_ssl_key_file, "PFILTER_KAFKA_SSL_KEY_FILE")
            try:
                context.load_cert_chain(cert, key, password=settings.kafka_ssl_key_password)
            except (ssl.SSLError, OSError) as exc:  # the reason only: never the key material
                raise ConfigError("PFILTER_KAFKA_SSL_CERT_FILE/PFILTER_KAFKA_SSL_KEY_FILE: cannot load "
                                  f"them ({exc.__class__.__name__})") from None
    if proto == "SSL":
        return faust.SSLCredentials(context)
    if settings.kafka_sasl_mechanism == "OAUTHBEARER":
        raise ConfigError("PFILTER_KAFKA_SASL_MECHANISM=OAUTHBEARER: supported by the fast runtime only "
                          "(PFILTER_RUNTIME=fast)")
    password = sasl_password(settings)
    if not settings.kafka_sasl_username or not password:
        raise ConfigError(f"{settings.kafka_sasl_mechanism} needs PFILTER_KAFKA_SASL_USERNAME and "
                          "PFILTER_KAFKA_SASL_PASSWORD (or PFILTER_KAFKA_SASL_PASSWORD_FILE)")
    return faust.SASLCredentials(username=settings.kafka_sasl_username, password=password,
                                 ssl_context=context, mechanism=settings.kafka_sasl_mechanism)


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        **base_config(settings),
        "partitioner": "murmur2_random",
        # idempotence gives ordered, de-duplicated retries per partition (acks=all implied)
        "enable.idempotence": True,
        # 5 ms lets batches fill under load without adding visible latency for the demo
        "linger.ms": 5,
        # 1 MiB batches: ~3,000 events of ~300 B per request, the sweet spot for one local broker
        "batch.size": 1_048_576,
        # lz4 is the cheapest codec per byte on 2 cores; JSON compresses ~4x
        "compression.type": "lz4",
    }
    cfg.update(overrides)
    return cfg


#: Outputs per worker batch: up to 4 records per input event with the default
#: policy's 3 engines (its one decision record plus one per engine emitted to;
#: 1.6 on the synthetic mix), so a 250 ms commit interval at 60,000 events/s
#: queues at most ~60,000 records; 500,000 rides out a broker pause of a few
#: seconds before produce() raises BufferError (handled: poll, then retry).
OUTPUT_QUEUE_MAX_MESSAGES = 500_000


def output_producer_config(settings: Settings, on_error: Callable[[Any, Any], None],
                           **overrides: Any) -> dict[str, Any]:
    """The workers' output producer: delivery reports for *failed* records only.

    A Python callback per acknowledged record costs about as much as the
    produce() call itself (measured: 0.7 M vs 1.4 M records/s acknowledged);
    success needs no report because the worker only commits after flush() (at
    least once) or commit_transaction() (exactly once) returned, and either
    fails if a record was not delivered."""
    return producer_config(settings, **{
        "on_delivery": on_error,
        "delivery.report.only.error": True,
        "queue.buffering.max.messages": OUTPUT_QUEUE_MAX_MESSAGES,
        **overrides,
    })


def consumer_config(settings: Settings, group_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        **base_config(settings),
        "group.id": group_id or settings.group_id,
        "auto.offset.reset": "earliest",
        # offsets are committed by the worker only after its outputs are written
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    }
    cfg.update(overrides)
    return cfg


#: How long check_connection waits for the brokers: a refused login is reported
#: by the broker within a round trip or two; 15 s also covers a slow TLS start.
CONNECT_TIMEOUT_S = 15.0


class _Quiet:
    """librdkafka logger that drops the retry chatter check_connection reports itself."""

    def log(self, *args: object, **kwargs: object) -> None:
        pass

    def __getattr__(self, name: str) -> Callable[..., None]:
        return self.log


def check_connection(settings: Settings, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Ask the brokers for metadata with the configured security settings.

    Raises ConfigError with one line that names the cause: refused credentials
    (naming the username and the password settings, never the password), a TLS
    failure, or brokers that cannot be reached. Start-up calls it so that a
    wrong password stops the process at once instead of in retry loops."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[Any] = []
    admin = AdminClient({**base_config(settings), "error_cb": errors.append, "logger": _Quiet()})
    deadline = time.monotonic() + timeout
    md = None
    fatal = (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL)
    while md is None and time.monotonic() < deadline:
        try:
            # short requests: error_cb (where a refused login shows) is served between them
            md = admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
            if not md.brokers:
                md = None
        except KafkaException as exc:
            errors.append(exc.args[0])
        admin.poll(0)
        if any(e.code() in fatal for e in errors):
            break
    auth = [e for e in errors if e.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)]
    if auth:
        who = settings.kafka_sasl_username or "(no username)"
        raise ConfigError(
            f"Kafka refused the credentials of PFILTER_KAFKA_SASL_USERNAME={who} "
            f"({settings.kafka_sasl_mechanism or settings.kafka_security_protocol}): check "
            f"PFILTER_KAFKA_SASL_PASSWORD / PFILTER_KAFKA_SASL_PASSWORD_FILE ({auth[0].str()})")
    ssl_errors = [e for e in errors if e.code() == KafkaError._SSL]
    if ssl_errors:
        raise ConfigError(f"TLS to {settings.bootstrap} failed: {ssl_errors[0].str()} (check "
                          "PFILTER_KAFKA_SSL_CA_FILE and PFILTER_KAFKA_SSL_VERIFY_HOSTNAME)")
    if md is None or not md.brokers:
        last = f": {errors[-1].str()}" if errors else ""
        raise ConfigError(f"no Kafka broker answered at {settings.bootstrap} within {timeout:.0f}s with "
                          f"PFILTER_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}{last}")
