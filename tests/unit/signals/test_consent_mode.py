"""Consent Mode v2 parser."""

from __future__ import annotations

import pytest

from streams.engine.signals import ConsentMode, ConsentModeError, parse_consent_mode
from streams.engine.signals.consent_mode import SIGNALS, V2_SIGNALS


def test_v2_and_older_signals():
    cm = parse_consent_mode(
        {"ad_storage": "granted", "ad_user_data": "denied", "ad_personalization": "denied",
         "analytics_storage": "granted", "functionality_storage": "granted",
         "personalization_storage": "denied", "security_storage": "granted"}
    )  # fmt: skip
    assert cm == ConsentMode(True, False, False, True, True, False, True)
    assert cm.stated() == {s: cm.get(s) for s in SIGNALS}
    assert V2_SIGNALS == ("ad_storage", "ad_user_data", "ad_personalization", "analytics_storage")


def test_missing_signals_are_not_stated():
    cm = parse_consent_mode({"analytics_storage": "denied"})
    assert cm.analytics_storage is False and cm.ad_storage is None
    assert cm.stated() == {"analytics_storage": False}
    assert parse_consent_mode({}) == ConsentMode()


@pytest.mark.parametrize(
    "obj",
    [
        {"ad_storage": "GRANTED"},
        {"ad_storage": True},
        {"ad_storage": None},
        {"ad_storage": "yes"},
        {"ad_storge": "granted"},  # misspelt: would silently drop a denial
        {"gcs": "G111"},  # URL parameters are not parsed
        ["ad_storage"],
        "granted",
    ],
)
def test_anything_else_is_an_error(obj):
    with pytest.raises(ConsentModeError):
        parse_consent_mode(obj)  # type: ignore[arg-type]
