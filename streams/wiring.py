"""Builds the engine objects from Settings: the one place that knows both.

Runtimes and commands call these instead of re-reading settings themselves,
so the policy, the pseudonym secret and the topic names are resolved (and
validated, naming the bad setting) exactly once, at start-up.
"""

from __future__ import annotations

import logging
from pathlib import Path

from streams.config import ConfigError, Settings

#: Stand-in secret for commands that only need the policy's shape (topic
#: names, the policy table), never to pseudonymize a real id.
_SHAPE_ONLY_SECRET = b"pfilter-shape-only-not-a-secret"


def pseudonym_secret(settings: Settings) -> bytes | None:
    """The pseudonym secret from PFILTER_PSEUDONYM_KEY or PFILTER_PSEUDONYM_KEY_FILE."""
    if settings.pseudonym_key and settings.pseudonym_key_file:
        raise ConfigError("set only one of PFILTER_PSEUDONYM_KEY and PFILTER_PSEUDONYM_KEY_FILE")
    if settings.pseudonym_key:
        return settings.pseudonym_key.encode()
    if settings.pseudonym_key_file:
        path = Path(settings.pseudonym_key_file)
        try:
            data = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"PFILTER_PSEUDONYM_KEY_FILE: cannot read {path}: {exc.strerror}") from None
        if not data:
            raise ConfigError(f"PFILTER_PSEUDONYM_KEY_FILE: {path} is empty")
        return data
    return None


DEFAULT_OUTPUT_PREFIX = "personalization."


def _with_topics(policy, settings: Settings):  # noqa: ANN001, ANN202
    """A non-default PFILTER_TOPIC_OUTPUT_PREFIX renames every engine's topic to
    <prefix><engine>: how the demo and the tests isolate one run's outputs."""
    if settings.topic_output_prefix != DEFAULT_OUTPUT_PREFIX:
        for engine in policy.engines:
            engine.topic = settings.topic_output_prefix + engine.name
    return policy


def load_policy(settings: Settings):  # -> CompiledPolicy
    """The policy the worker runs with; a bad one stops start-up naming the problem."""
    from streams.engine.policy import load_policy as _load

    return _with_topics(_load(settings.policy_file, secret=pseudonym_secret(settings)), settings)


def policy_for_topics(settings: Settings):  # -> CompiledPolicy
    """The policy's shape only (engine names and topics); needs no real secret."""
    from streams.engine.policy import load_policy as _load

    secret = pseudonym_secret(settings) or _SHAPE_ONLY_SECRET
    return _with_topics(_load(settings.policy_file, secret=secret), settings)


def state_topics(settings: Settings, policy) -> list[str]:  # noqa: ANN001 - CompiledPolicy
    """The topics partitioned like consent that a worker keeps its own state in: notices,
    and data keys when the policy encrypts (start-up checks they exist, co-partitioned)."""
    return [settings.topic_notices, *([settings.topic_keys] if policy.encrypts else [])]


def topic_names(settings: Settings):  # -> TopicNames
    from streams.engine.batch import TopicNames

    return TopicNames(
        clickstream=settings.topic_clickstream,
        purchases=settings.topic_purchases,
        consent=settings.topic_consent,
        decisions=settings.topic_decisions,
        erasures=settings.topic_erasures,
        dlq=settings.topic_dlq,
        keys=settings.topic_keys,
    )


def kek(settings: Settings):  # -> Kek | None
    """The KEK of PFILTER_KEK / PFILTER_KEK_FILE (None when neither is set)."""
    from streams.crypto import CryptoError, load_kek

    try:
        return load_kek(settings.kek, settings.kek_file)
    except CryptoError as exc:
        raise ConfigError(f"PFILTER_KEK/PFILTER_KEK_FILE: {exc}") from None


def new_keyring(settings: Settings, policy=None):  # noqa: ANN001, ANN201 - KeyRing | None
    """A fresh KeyRing under the configured KEK for a policy that encrypts (None if it does
    not). A policy with ``encrypt`` transforms and no KEK stops start-up here."""
    from streams.crypto import KeyRing

    policy = policy if policy is not None else load_policy(settings)
    if not policy.encrypts:
        return None
    k = kek(settings)
    if k is None:
        engines = ", ".join(e.name for e in policy.engines if e.encrypted)
        raise ConfigError(f"the policy encrypts fields (engine {engines}) but no key-encryption key is "
                          "configured: set PFILTER_KEK or PFILTER_KEK_FILE")
    return KeyRing(k)


def formats(settings: Settings) -> dict[str, str]:
    f = settings.input_formats()
    f["output"] = settings.format_output
    return f


def filter_factory(settings: Settings):  # -> Callable[[store], Filter]
    """Resolve policy, secret, topics and formats once; then build Filters cheaply.

    Runtimes need one Filter per consent store (a partition view, an overlay),
    all sharing the same compiled policy.
    """
    from streams.engine.batch import Filter
    from streams.engine.native import NativeFilter, resolve

    policy = load_policy(settings)
    topics = topic_names(settings)
    fmts = formats(settings)
    new_keyring(settings, policy)  # an encrypting policy without a KEK: a start-up error
    engine = resolve(settings.engine)  # PFILTER_ENGINE; native asked for and not built: a start-up error
    why = ""
    if engine == "native" and settings.schema_registry_url:
        # the native core writes Avro with the checked-in schema ids (schemas/ids.json); with a
        # registry the ids are the registry's, which only the Python engine resolves so far
        if settings.engine == "native":
            raise ConfigError("PFILTER_ENGINE=native: the native engine does not take schema ids from "
                              "SCHEMA_REGISTRY_URL yet; use PFILTER_ENGINE=auto or python with a registry")
        engine, why = "python", ", a schema registry is set"
    logging.getLogger("streams.engine").info("decision engine: %s (PFILTER_ENGINE=%s%s)", engine, settings.engine, why)
    if engine == "native":
        secret = pseudonym_secret(settings)

        def make_native(store=None, keyring=None):  # noqa: ANN001, ANN202
            ring = keyring if keyring is not None else new_keyring(settings, policy)
            return NativeFilter(policy, topics, fmts, store=store, secret=secret, keyring=ring)

        return make_native

    def make(store=None, keyring=None):  # noqa: ANN001, ANN202
        """``keyring``: the data keys (a runtime's, per partition); None: a fresh one under the KEK."""
        ring = keyring if keyring is not None else new_keyring(settings, policy)
        return Filter(policy, topics, fmts, store=store, registry_url=settings.schema_registry_url, keyring=ring)

    return make
