"""Builds the engine objects from Settings: the one place that knows both.

Runtimes and commands call these instead of re-reading settings themselves,
so the policy, the pseudonym secret and the topic names are resolved (and
validated, naming the bad setting) exactly once, at start-up.
"""

from __future__ import annotations

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


def load_policy(settings: Settings):  # -> CompiledPolicy
    """The policy the worker runs with; a bad one stops start-up naming the problem."""
    from streams.engine.policy import load_policy as _load

    return _load(settings.policy_file, secret=pseudonym_secret(settings))


def policy_for_topics(settings: Settings):  # -> CompiledPolicy
    """The policy's shape only (engine names and topics); needs no real secret."""
    from streams.engine.policy import load_policy as _load

    return _load(settings.policy_file, secret=pseudonym_secret(settings) or _SHAPE_ONLY_SECRET)
