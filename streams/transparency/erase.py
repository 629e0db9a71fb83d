"""The support page's erase: the same cascade as ``pfilter erase`` (streams.erase), not a
second implementation of it.

An earlier version produced only the consent tombstone, so an erasure from the support
page left the subject's data key alive and every retained encrypted copy readable (G4).
The page now gets the full receipt: both tombstones, the engines' erasure notices and
whether the worker passed the tombstone within the bound.
"""

from __future__ import annotations

from typing import Any

from streams.config import Settings
from streams.erase import run_erase

#: How long the support page waits for the worker to pass the tombstone. Shorter than the
#: CLI's default: a person is waiting on the page, and an unconfirmed receipt says so
#: (the worker still acts on the tombstone; the customer's page shows it later).
SUPPORT_ERASE_TIMEOUT_S = 20.0


def erase_subject(settings: Settings, subject: str) -> dict[str, Any]:
    """Erase ``subject``; returns the receipt as ``pfilter erase --json`` prints it."""
    return run_erase(settings, subject, timeout_s=SUPPORT_ERASE_TIMEOUT_S).to_json()
