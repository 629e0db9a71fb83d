"""Google Consent Mode v2 signals from a consent record's ``consent_mode`` object (pure).

The record carries the signals as the site set them with ``gtag('consent', ...)``:
an object whose keys are signal names and whose values are ``"granted"`` or
``"denied"``. The four v2 signals (``ad_storage``, ``ad_user_data``,
``ad_personalization``, ``analytics_storage``) and the three older ones
(``functionality_storage``, ``personalization_storage``, ``security_storage``)
are known; a signal left out is ``None`` (the site said nothing). Any other key
or value is a ``ConsentModeError``: a misspelt signal silently ignored would
turn a denial into nothing.

The ``gcs``/``gcd`` URL parameters are not documented by Google and are not
parsed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from streams.engine.signals.errors import ConsentModeError

__all__ = ["ConsentMode", "parse_consent_mode", "SIGNALS", "V2_SIGNALS"]

#: The signals Consent Mode v2 added to ad_storage/analytics_storage.
V2_SIGNALS = ("ad_storage", "ad_user_data", "ad_personalization", "analytics_storage")
#: Every signal this parser knows, v2 first.
SIGNALS = V2_SIGNALS + ("functionality_storage", "personalization_storage", "security_storage")

_VALUES = {"granted": True, "denied": False}


@dataclass(frozen=True, slots=True)
class ConsentMode:
    """Each signal: ``True`` granted, ``False`` denied, ``None`` not stated."""

    ad_storage: bool | None = None
    ad_user_data: bool | None = None
    ad_personalization: bool | None = None
    analytics_storage: bool | None = None
    functionality_storage: bool | None = None
    personalization_storage: bool | None = None
    security_storage: bool | None = None

    def get(self, signal: str) -> bool | None:
        """The value of a signal by name (``SIGNALS``)."""
        return getattr(self, signal)  # type: ignore[no-any-return]

    def stated(self) -> dict[str, bool]:
        """The signals the record states, by name."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


def parse_consent_mode(obj: Mapping[str, Any]) -> ConsentMode:
    """Parse a ``consent_mode`` object; raise ``ConsentModeError`` naming the bad key."""
    if not isinstance(obj, Mapping):
        raise ConsentModeError("consent_mode: not an object")
    values: dict[str, bool] = {}
    for key, value in obj.items():
        if key not in SIGNALS:
            # the unknown key is not echoed: the record controls it (G6)
            raise ConsentModeError(f"consent_mode: unknown signal (known: {', '.join(SIGNALS)})")
        if not isinstance(value, str) or value not in _VALUES:
            raise ConsentModeError(f"consent_mode: {key} is neither 'granted' nor 'denied'")
        values[key] = _VALUES[value]
    return ConsentMode(**values)
