"""Production mode (CONTRACT §11): the settings a production worker refuses to start with.

With ``PFILTER_ENV=production`` the worker calls :func:`enforce` before any
I/O towards Kafka. :func:`check_production` is the rule book: a function of
the settings (and of the secret and policy files they name, read with the same
code the worker uses) returning one line per problem, each naming the setting
to change. It has no side effects, so each rule is unit-tested on its own.

The rules, and why:

- no TLS, or TLS without client authentication, towards a broker that is not
  on loopback: events carry personal data and consent; on the network they
  must be encrypted, and the broker must know who writes the outputs (ACLs);
- TLS without hostname verification: any certificate the CA signed would do,
  so a man in the middle with one reads everything;
- a pseudonym key or KEK missing, shorter than 32 bytes (HMAC-SHA256 and AES
  keys below 256 bits), or the example secret shipped in deploy/;
- a policy that fails its check (the worker would refuse it later anyway;
  here it is one line among the others);
- the fast runtime at less than exactly_once: a crash then re-emits outputs
  that a consumer may act on twice. ``PFILTER_PRODUCTION_ALLOW_AT_LEAST_ONCE``
  overrides it, with a warning in the log at every start.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from streams.config import PROJECT_ROOT, ConfigError, Settings

log = logging.getLogger(__name__)

#: 32 bytes = 256 bits: the HMAC-SHA256 key size (pseudonyms) and an AES-256 key (KEK).
MIN_SECRET_BYTES = 32
#: The placeholder secret of deploy/docker-compose.yml: known to everyone who cloned the repo.
EXAMPLE_SECRET_FILE = PROJECT_ROOT / "deploy" / "pseudonym_key.example"
#: Compiles a pseudonymizing policy when the real secret is missing (reported separately).
_POLICY_CHECK_SECRET = "production-check-only-never-pseudonymizes"


def _host(server: str) -> str:
    server = server.strip()
    if "://" in server:
        server = server.split("://", 1)[1]
    if server.startswith("["):  # [::1]:9092
        return server[1:].split("]", 1)[0]
    return server.rsplit(":", 1)[0] if server.count(":") == 1 else server


def is_loopback(host: str) -> bool:
    """localhost or a loopback address (127.0.0.0/8, ::1). Names other than
    localhost are not resolved: a name may point anywhere tomorrow."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_brokers(settings: Settings) -> list[str]:
    """The bootstrap hosts that are not on loopback."""
    hosts = [_host(s) for s in settings.bootstrap.split(",") if s.strip()]
    return [h for h in hosts if not is_loopback(h)]


def _secret(value: str | None, file: Path | None) -> bytes | None:
    if value:
        return value.encode()
    if file is not None:
        try:
            return Path(file).read_bytes().strip() or None
        except OSError:
            return None
    return None


def _example_secret() -> bytes | None:
    try:
        return EXAMPLE_SECRET_FILE.read_bytes().strip()
    except OSError:
        return None


def _secret_problems(settings: Settings) -> list[str]:
    problems = []
    example = _example_secret()
    for what, env, value, file in (
        ("pseudonym key", "PFILTER_PSEUDONYM_KEY", settings.pseudonym_key, settings.pseudonym_key_file),
        ("key-encryption key", "PFILTER_KEK", settings.kek, settings.kek_file),
    ):
        source = f"{env}_FILE ({file})" if file is not None and not value else env
        secret = _secret(value, file)
        if secret is None:
            unreadable = f" ({file} is missing, unreadable or empty)" if file is not None and not value else ""
            problems.append(f"production: the {what} is missing: set {env} or {env}_FILE{unreadable}")
        elif secret == example:
            problems.append(f"production: {source} is the example secret from deploy/; use a random one")
        elif len(secret) < MIN_SECRET_BYTES:
            # the length only, never the secret
            problems.append(f"production: {source} holds {len(secret)} bytes; the {what} needs at least "
                            f"{MIN_SECRET_BYTES}")
    return problems


def _connection_problems(settings: Settings) -> list[str]:
    proto = settings.kafka_security_protocol
    remote = remote_brokers(settings)
    problems = []
    if remote:
        where = ", ".join(sorted(set(remote)))
        if proto in ("PLAINTEXT", "SASL_PLAINTEXT"):
            problems.append(f"production: PFILTER_KAFKA_SECURITY_PROTOCOL={proto} sends records unencrypted "
                            f"to {where}; use SASL_SSL (or SSL with a client certificate)")
        elif proto == "SSL" and settings.kafka_ssl_cert_file is None:
            problems.append(f"production: PFILTER_KAFKA_SECURITY_PROTOCOL=SSL without a client certificate "
                            f"does not authenticate to {where}; set PFILTER_KAFKA_SSL_CERT_FILE and "
                            f"PFILTER_KAFKA_SSL_KEY_FILE (mTLS) or use SASL_SSL")
    if proto in ("SSL", "SASL_SSL") and not settings.kafka_ssl_verify_hostname:
        problems.append("production: PFILTER_KAFKA_SSL_VERIFY_HOSTNAME=false accepts any certificate the CA "
                        "signed for any host; turn it on")
    if proto.startswith("SASL_") and settings.kafka_sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        if not settings.kafka_sasl_username or _secret(settings.kafka_sasl_password,
                                                       settings.kafka_sasl_password_file) is None:
            problems.append(f"production: {settings.kafka_sasl_mechanism} needs PFILTER_KAFKA_SASL_USERNAME and "
                            "PFILTER_KAFKA_SASL_PASSWORD (or a readable PFILTER_KAFKA_SASL_PASSWORD_FILE)")
    return problems


def _policy_problems(settings: Settings) -> list[str]:
    from streams import wiring
    from streams.engine.policy import PolicyError

    if _secret(settings.pseudonym_key, settings.pseudonym_key_file) is None:
        # the missing secret is its own problem; check the policy's shape with a stand-in
        settings = settings.model_copy(update={"pseudonym_key": _POLICY_CHECK_SECRET, "pseudonym_key_file": None})
    try:
        wiring.load_policy(settings)
    except (PolicyError, ConfigError) as exc:
        return [f"production: the policy fails its check: {exc}"]
    return []


def _guarantee_problems(settings: Settings) -> list[str]:
    if (settings.runtime == "fast" and settings.processing_guarantee != "exactly_once"
            and not settings.production_allow_at_least_once):
        return [f"production: PFILTER_PROCESSING_GUARANTEE={settings.processing_guarantee} on the fast runtime "
                "re-emits outputs after a crash; use exactly_once, or set "
                "PFILTER_PRODUCTION_ALLOW_AT_LEAST_ONCE=true to accept that"]
    return []


def check_production(settings: Settings) -> list[str]:
    """Every reason the settings are unfit for production, one line each (empty: fit)."""
    return [*_connection_problems(settings), *_secret_problems(settings),
            *_policy_problems(settings), *_guarantee_problems(settings)]


def production_warnings(settings: Settings) -> list[str]:
    """What production mode accepts but says at every start."""
    if (settings.runtime == "fast" and settings.processing_guarantee != "exactly_once"
            and settings.production_allow_at_least_once):
        return [f"production: the fast runtime runs {settings.processing_guarantee} "
                "(PFILTER_PRODUCTION_ALLOW_AT_LEAST_ONCE): a crash re-emits outputs"]
    return []


def enforce(settings: Settings) -> None:
    """Worker start-up: in production mode, raise ConfigError on the first problem
    (one line; the others are logged first, so one restart fixes them all) and log
    the warnings. Outside production mode: nothing."""
    if settings.env != "production":
        return
    problems = check_production(settings)
    for p in problems[1:]:
        log.error("%s", p)
    if problems:
        more = f" (and {len(problems) - 1} more, logged above)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    for w in production_warnings(settings):
        log.warning("%s", w)
