"""Consent patterns: what a subject of each privacy segment typically grants.

Contract: :func:`patterns` gives, per seed, ``TEMPLATES`` patterns per segment (in
``SEGMENTS`` order), drawn once from their own seeded ``random.Random`` and cached. A
subject's ``W_PATTERN`` word picks one (``& TEMPLATE_MASK``). Patterns are shared between
subjects and must never be mutated; the consent builders copy what they put in a record.

A pattern holds times as offsets from a per-subject base (``now_ms`` minus a jitter of up
to ~17 minutes), so one pattern serves many subjects without the records being identical.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import NamedTuple

from streams.population.signals import SEGMENT_SIGNALS, draw_signals
from streams.population.vocabulary import CATEGORIES, DAY, HOUR, MINUTE, PURPOSES, SEGMENTS, YEAR

#: Pre-drawn consent patterns per segment (a subject's random word picks one).
TEMPLATE_SHIFT = 10
TEMPLATES = 1 << TEMPLATE_SHIFT
TEMPLATE_MASK = TEMPLATES - 1
#: Jurisdiction -> the key of ``draw_signals``' signals that a CMP there records.
SIGNAL_GROUP = {"EU": "EU", "UK": "EU", "US": "US", "US-CA": "US-CA"}


class PurposeGrant(NamedTuple):
    """One purpose of a pattern; the offsets are ms from the subject's base time."""

    purpose: str
    status: str  # granted, denied or withdrawn
    granted_off: int | None
    expires_off: int | None


class PatternExtras(NamedTuple):
    """What a pattern adds beyond the core record (see ``signals.draw_signals``)."""

    li_email: bool  # marketing_email granted on legitimate interest
    objections: tuple[str, ...]
    signals: dict[str, dict[str, str]] | None  # by jurisdiction group (SIGNAL_GROUP)
    consent_mode: dict[str, str] | None


class ConsentPattern(NamedTuple):
    """A pre-drawn consent record, up to the subject's id, base time and jurisdiction."""

    purposes: tuple[PurposeGrant, ...]  # in PURPOSES order
    categories: dict[str, bool]  # copied per record
    gpc: bool
    updated_off: int
    extras: PatternExtras | None  # None: no basis, objection or signal


def uniform_ms(r: random.Random, lo: float, hi: float) -> int:
    """A duration drawn uniformly from ``[lo, hi)`` ms, truncated to an int."""
    return int(r.uniform(lo, hi))


_u = uniform_ms


def _lapsed(r: random.Random, age: int) -> int:
    """A validity shorter than the grant's age: the grant has expired."""
    return max(1, int(age * r.uniform(0.1, 0.95)))


def _segment_pattern(r: random.Random, segment: str) -> ConsentPattern:
    """Draw one consent pattern for a subject of ``segment``.

    The probabilities encode what each segment typically does in consent
    studies; the exact numbers matter less than every situation occurring.
    """
    if segment == "brand_loyalist":
        grant = {"personalization": 0.97, "marketing_email": 0.85, "marketing_phone": 0.6,
                 "analytics": 0.9, "third_party_sharing": 0.75, "support": 0.95}
        cats = {"browsing": 0.97, "purchase_history": 0.97, "connection_data": 0.55,
                "location": 0.8, "contact": 0.9, "payment": 0.5}
        withdrawn_share, gpc_p, recent_p = 0.3, 0.02, 0.05
        signup = _u(r, 30 * DAY, 3 * YEAR)

        def ttl(age: int) -> int | None:
            if r.random() < 0.6:
                return None
            if r.random() < 0.05:  # some never re-confirm
                return _lapsed(r, age)
            return age + _u(r, 30 * DAY, 2 * YEAR)

    elif segment == "convenience_seeker":
        grant = {"personalization": 0.95, "marketing_email": 0.3, "marketing_phone": 0.08,
                 "analytics": 0.55, "third_party_sharing": 0.12, "support": 0.8}
        cats = {"browsing": 0.95, "purchase_history": 0.95, "connection_data": 0.1,
                "location": 0.35, "contact": 0.45, "payment": 0.25}
        withdrawn_share, gpc_p, recent_p = 0.25, 0.08, 0.08
        signup = _u(r, DAY, 400 * DAY)

        def ttl(age: int) -> int | None:  # medium expiry, usually re-confirmed in time
            return _lapsed(r, age) if r.random() < 0.12 else age + _u(r, DAY, 180 * DAY)

    elif segment == "control_addict":
        grant = dict.fromkeys(PURPOSES, 0.55)
        cats = dict.fromkeys(CATEGORIES, 0.5) | {"connection_data": 0.3}
        withdrawn_share, gpc_p, recent_p = 0.45, 0.3, 0.25
        signup = _u(r, HOUR, 30 * DAY)
        ttl = None  # handled per purpose below (expiry relative to now)

    elif segment == "flexible":
        grant = dict.fromkeys(PURPOSES, 0.55)
        cats = dict.fromkeys(CATEGORIES, 0.5) | {"connection_data": 0.25}
        withdrawn_share, gpc_p, recent_p = 0.33, 0.12, 0.1
        signup = _u(r, HOUR, 2 * YEAR)

        def ttl(age: int) -> int | None:
            x = r.random()
            return None if x < 0.3 else _lapsed(r, age) if x < 0.5 else age + _u(r, HOUR, 365 * DAY)

    elif segment == "privacy_fundamentalist":
        grant = {"personalization": 0.08, "marketing_email": 0.02, "marketing_phone": 0.02,
                 "analytics": 0.05, "third_party_sharing": 0.02, "support": 0.35}
        cats = dict.fromkeys(CATEGORIES, 0.08) | {"purchase_history": 0.2}
        withdrawn_share, gpc_p, recent_p = 0.5, 0.75, 0.05
        signup = _u(r, DAY, 3 * YEAR)

        def ttl(age: int) -> int | None:  # short grants, rarely renewed
            return _lapsed(r, age) if r.random() < 0.3 else age + _u(r, DAY, 90 * DAY)

    else:  # pragma: no cover - SEGMENTS is closed
        raise ValueError(f"unknown segment {segment!r}")

    recent = r.random() < recent_p  # granted within the last hour: before_grant
    changes = [-signup]
    purposes = []
    li_email = False
    for p in PURPOSES:
        if r.random() < grant[p]:
            status = "granted"
        elif r.random() < withdrawn_share:
            status = "withdrawn"
        elif p == "marketing_email" and r.random() < SEGMENT_SIGNALS[segment].li_email:
            # no e-mail consent, but a customer since signup: mailed on legitimate interest
            # (UWG §7(3)), a "grant" as old as the relationship and without expiry
            li_email = True
            purposes.append(PurposeGrant(p, "granted", -signup, None))
            continue
        else:
            purposes.append(PurposeGrant(p, "denied", None, None))
            continue
        if segment == "control_addict":
            # Fine-grained, short-lived: expiring minutes to hours from now,
            # about a third already expired.
            if r.random() < 0.3:
                e_off = -_u(r, MINUTE, 2 * DAY)
                g_off = e_off - _u(r, 10 * MINUTE, DAY)
            else:
                e_off = _u(r, 2 * MINUTE, 6 * HOUR)
                g_off = -_u(r, MINUTE, 2 * DAY)
            if recent and status == "granted":
                g_off = -_u(r, MINUTE, HOUR)
                e_off = max(e_off, g_off + _u(r, 10 * MINUTE, 6 * HOUR))
        else:
            age = signup if r.random() < 0.75 else _u(r, MINUTE, signup)
            if recent and status == "granted":
                age = _u(r, MINUTE, HOUR)
            g_off = -age
            life = ttl(age)
            e_off = None if life is None else g_off + life
        changes.append(g_off)
        if status == "withdrawn":
            changes.append(g_off + int((-g_off) * r.random()))
        purposes.append(PurposeGrant(p, status, g_off, e_off))
    categories = {c: r.random() < cats[c] for c in CATEGORIES}
    gpc = r.random() < gpc_p
    granted = {g.purpose for g in purposes if g.status == "granted"}
    objections, signals, consent_mode = draw_signals(r, segment, granted, categories, gpc)
    extras = None
    if li_email or objections or signals or consent_mode:
        extras = PatternExtras(li_email, objections, signals, consent_mode)
    return ConsentPattern(tuple(purposes), categories, gpc, max(changes), extras)


@lru_cache(maxsize=16)
def patterns(seed: int) -> tuple[tuple[ConsentPattern, ...], ...]:
    """``TEMPLATES`` consent patterns per segment (in ``SEGMENTS`` order), drawn once per seed."""
    out = []
    for segment in SEGMENTS:
        r = random.Random(f"population-patterns-{seed}-{segment}")
        out.append(tuple(_segment_pattern(r, segment) for _ in range(TEMPLATES)))
    return tuple(out)
