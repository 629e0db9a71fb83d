"""Synthetic customer population, consent records and event streams.

The demo, the load generator, the benchmarks and the tests all need customers
whose consent looks like real consent: people fall into a few privacy
segments (brand loyalists grant nearly everything, privacy fundamentalists
nearly nothing, control addicts grant briefly and change their minds), live
under different jurisdictions, send Global Privacy Control, let grants expire
and sometimes never gave consent at all. Every reason of the decision rule
(CONTRACT.md §5) must occur in that data, or tests and benchmarks would only
exercise the happy path.

Everything here is deterministic: the same :class:`PopulationSpec` and the
same ``now_ms`` give the same records, byte for byte, on any machine and under
any ``PYTHONHASHSEED``. All randomness comes from ``random.Random`` instances
seeded from ``spec.seed`` (never the global ``random`` module):

* per-subject attributes (segment, jurisdiction, home city, device, consent
  pattern, address) come from random words drawn per block of 1024 subjects,
  so that :func:`segment_of`, :func:`consent_of` and the events agree about
  a subject without materialising the population, and so that :func:`churn`
  can start from exactly the record :func:`consent_records` produced;
* streams (event sequences, churn) and the pools they draw from (consent
  patterns per segment, product catalogue) have their own seeded generators.

Records are plain dicts (consent) or pre-encoded JSON bytes (events) exactly
as CONTRACT.md §3 describes. Speed matters because the end-to-end benchmark
preloads millions of records: consent records are built from a pool of
pre-drawn patterns per segment, and events are spliced together from
pre-encoded JSON fragments (customers browse in sessions, so the per-subject
part of an event is encoded once per session, not once per event).

Consent as shops really record it (issue 11): some subjects carry the signals
of a consent management platform (a TCF TC string in the EU and UK, a GPP
string with usnat / usca sections and sometimes a GPC subsection in the US,
Google Consent Mode flags anywhere), some are e-mailed on legitimate interest
as existing customers (``marketing_email`` granted with ``basis``
``legitimate_interest``), and some objected to direct marketing or profiling;
the shares per segment are in ``streams.population_signals.SEGMENT_SIGNALS``.
Signals mostly agree with the explicit record; a share of them is narrower, so
that signal-narrowed drops occur. New fields appear only where they are not
the default (no ``basis`` key for consent, no empty ``objections``).

This module imports nothing from Kafka and, of the engine, only its leaf
vocabulary (``streams.engine.vocab``: the event types).
"""

from __future__ import annotations

import math
import random
import sys
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import orjson

from streams.engine.vocab import CLICK_EVENT_TYPES, PURCHASE_EVENT_TYPES
from streams.population_signals import SEGMENT_SIGNALS, draw_signals

__all__ = [
    "CATEGORIES",
    "CLICK_TYPES",
    "DEFAULT_SHARES",
    "EVENT_TYPES",
    "JURISDICTIONS",
    "PII_SENTINEL",
    "PURPOSES",
    "SEGMENTS",
    "PopulationSpec",
    "churn",
    "consent_of",
    "consent_records",
    "event_bytes",
    "events",
    "pii_rich_consent",
    "pii_rich_event",
    "segment_of",
    "subject_id",
]

# --------------------------------------------------------------------------
# Vocabulary (CONTRACT.md §3 and §8)
# --------------------------------------------------------------------------

#: The five privacy segments, in the order their shares are laid out.
SEGMENTS: tuple[str, ...] = (
    "brand_loyalist",
    "convenience_seeker",
    "control_addict",
    "flexible",
    "privacy_fundamentalist",
)

#: Default share of each segment in the population (sums to 1).
DEFAULT_SHARES: Mapping[str, float] = MappingProxyType(
    {
        "brand_loyalist": 0.20,
        "convenience_seeker": 0.30,
        "control_addict": 0.10,
        "flexible": 0.25,
        "privacy_fundamentalist": 0.15,
    }
)

#: Purposes of the default policy (CONTRACT.md §8).
PURPOSES: tuple[str, ...] = (
    "personalization",
    "marketing_email",
    "marketing_phone",
    "analytics",
    "third_party_sharing",
    "support",
)

#: Data categories of the default policy (CONTRACT.md §8).
CATEGORIES: tuple[str, ...] = (
    "browsing",
    "purchase_history",
    "connection_data",
    "location",
    "contact",
    "payment",
)

#: Click event types (CONTRACT.md §3, from the engine's vocabulary); ``purchase`` is the
#: other event kind. The order is the index order of the generator's tables.
CLICK_TYPES: tuple[str, ...] = CLICK_EVENT_TYPES
EVENT_TYPES: tuple[str, ...] = (*CLICK_TYPES, *PURCHASE_EVENT_TYPES)

#: Jurisdictions and their share of subjects. BR, IN and CN are ones the
#: default third-party engine may not receive (``region_blocked``).
JURISDICTIONS: Mapping[str, float] = MappingProxyType(
    {"EU": 0.40, "US": 0.18, "US-CA": 0.10, "UK": 0.10, "BR": 0.09, "IN": 0.08, "CN": 0.05}
)

#: Prefix of every marker in :func:`pii_rich_event` / :func:`pii_rich_consent`;
#: a log line containing it leaked a field value.
PII_SENTINEL = "PII-SENTINEL"

_MINUTE = 60_000
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_YEAR = 365 * _DAY

#: Default event-time window when no rate is given: the hour before ``now``.
_DEFAULT_WINDOW_MS = _HOUR
#: Customers browsing at the same time (sessions interleave in the stream).
_SLOTS = 512
#: Pre-drawn consent patterns per segment (a subject's random word picks one).
_TEMPLATES = 1024  # _consent_iter picks one with (w2 & 1023)


# --------------------------------------------------------------------------
# Spec
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PopulationSpec:
    """Who the synthetic customers are; everything generated derives from it.

    ``shares`` maps segment name to its share of subjects (missing segments
    count as 0); ``no_consent_share`` of subjects have no consent record at
    all, ``anonymous_share`` of sessions (hence of events) carry no subject,
    ``purchase_share`` of events are purchases.
    """

    subjects: int = 10_000
    seed: int = 7
    shares: Mapping[str, float] = field(default_factory=lambda: DEFAULT_SHARES)
    no_consent_share: float = 0.05
    anonymous_share: float = 0.05
    purchase_share: float = 0.15

    def __post_init__(self) -> None:
        if isinstance(self.subjects, bool) or not isinstance(self.subjects, int) or self.subjects < 1:
            raise ValueError(f"PopulationSpec.subjects must be a positive integer, got {self.subjects!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"PopulationSpec.seed must be an integer, got {self.seed!r}")
        unknown = sorted(set(self.shares) - set(SEGMENTS))
        if unknown:
            raise ValueError(
                f"PopulationSpec.shares names unknown segment(s) {', '.join(unknown)}; "
                f"known segments: {', '.join(SEGMENTS)}"
            )
        for name, share in self.shares.items():
            if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0.0 <= share <= 1.0:
                raise ValueError(f"PopulationSpec.shares[{name!r}] must be a number in [0, 1], got {share!r}")
        total = float(sum(self.shares.values()))
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"PopulationSpec.shares must sum to 1, but they sum to {total:.6g}")
        for name in ("no_consent_share", "anonymous_share", "purchase_share"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"PopulationSpec.{name} must be a number in [0, 1], got {value!r}")
        # A private, read-only copy: a caller mutating its dict later must not
        # change the population behind our back.
        object.__setattr__(
            self, "shares", MappingProxyType({s: float(self.shares.get(s, 0.0)) for s in SEGMENTS})
        )

    def __hash__(self) -> int:  # mappingproxy is unhashable; hash its items
        return hash(
            (
                self.subjects,
                self.seed,
                tuple(self.shares.items()),
                self.no_consent_share,
                self.anonymous_share,
                self.purchase_share,
            )
        )


# --------------------------------------------------------------------------
# Per-subject random words
# --------------------------------------------------------------------------

# Each subject owns eight 32-bit random words, drawn in blocks of 1024 subjects
# from a random.Random seeded with (seed, block). Looking a subject up costs
# one cached block and an index (hashing each subject in pure Python would be
# several times slower). Layout:
#   w0: [0,16) no-consent draw, [16,24) jurisdiction, [24,32) home city
#   w1: segment draw
#   w2: [0,10) consent pattern, [10,30) time jitter (ms)
#   w3, w4: device id (40 bits: w3 and w4 & 0xFF), w4 [8,14) user agent
#   w5: name [0,10), mail domain [10,12), street [12,24), postal code [24,32)
#   w6: phone number;  w7: ip address
_WORDS = 8
_BLOCK = 1024  # event generation inlines the lookup as i >> 10, (i & 1023) << 3


def _block(seed: int, b: int) -> array:
    """The random words of subjects ``[b * _BLOCK, (b + 1) * _BLOCK)``."""
    r = random.Random(f"population-subjects-{seed}-{b}")
    words = array("I", r.randbytes(4 * _WORDS * _BLOCK))
    if sys.byteorder == "big":  # the same population on every machine
        words.byteswap()
    return words


#: Blocks kept for random access (1024 blocks: 32 MB, a million subjects).
_BLOCK_CACHE: dict[tuple[int, int], array] = {}
_BLOCK_CACHE_MAX = 1024


def _cached_block(seed: int, b: int) -> array:
    block = _BLOCK_CACHE.get((seed, b))
    if block is None:
        if len(_BLOCK_CACHE) >= _BLOCK_CACHE_MAX:
            _BLOCK_CACHE.clear()
        block = _BLOCK_CACHE[(seed, b)] = _block(seed, b)
    return block


def _words(seed: int, i: int) -> array:
    """The eight random words of subject ``i``."""
    b, j = divmod(i, _BLOCK)
    j *= _WORDS
    return _cached_block(seed, b)[j : j + _WORDS]


@lru_cache(maxsize=64)
def _segment_table(shares: tuple[tuple[str, float], ...]) -> tuple[tuple[int, int], ...]:
    """(exclusive upper bound of the 32-bit draw, segment index), cumulative."""
    bounds = []
    acc = 0.0
    for idx, (_name, share) in enumerate(shares):
        acc += share
        if share > 0:
            bounds.append((min(1 << 32, round(acc * (1 << 32))), idx))
    bounds[-1] = (1 << 32, bounds[-1][1])  # rounding must not leave a gap at the top
    return tuple(bounds)


def _segment_index(table: tuple[tuple[int, int], ...], draw: int) -> int:
    for bound, idx in table:
        if draw < bound:
            return idx
    return table[-1][1]  # pragma: no cover - the last bound is 2**32


def _jurisdiction_table() -> tuple[str, ...]:
    table: list[str] = []
    for name, share in JURISDICTIONS.items():
        table.extend([name] * round(share * 256))
    while len(table) < 256:
        table.append("EU")
    return tuple(table[:256])


_JUR_TABLE = _jurisdiction_table()


def subject_id(i: int) -> str:
    """Stable subject id of index ``i`` (``s-000042``); also the Kafka key."""
    return f"s-{i:06d}"


def _check_index(spec: PopulationSpec, i: int) -> None:
    if not 0 <= i < spec.subjects:
        raise ValueError(f"subject index {i} is outside the population [0, {spec.subjects})")


def segment_of(spec: PopulationSpec, i: int) -> str:
    """The privacy segment of subject ``i`` (pure function of spec and ``i``)."""
    _check_index(spec, i)
    return SEGMENTS[_segment_index(_segment_table(tuple(spec.shares.items())), _words(spec.seed, i)[1])]


# --------------------------------------------------------------------------
# Consent patterns
# --------------------------------------------------------------------------

# A pattern holds times as offsets from a per-subject base (``now_ms`` minus a
# jitter of up to ~17 minutes), so one pattern serves many subjects without
# the records being identical.
#   purposes: tuple of (purpose, status, granted_off | None, expires_off | None)
#   categories: dict category -> bool (copied per record)
#   extras: None, or (legitimate-interest e-mail, objections, signals by jurisdiction
#           group, Consent Mode map): see ``population_signals.draw_signals``
_Pattern = tuple[tuple[tuple[str, str, int | None, int | None], ...], dict[str, bool], bool, int, Any]
#: Jurisdiction -> the key of ``draw_signals``' signals that a CMP there records.
_SIGNAL_GROUP = {"EU": "EU", "UK": "EU", "US": "US", "US-CA": "US-CA"}


def _u(r: random.Random, lo: float, hi: float) -> int:
    return int(r.uniform(lo, hi))


def _lapsed(r: random.Random, age: int) -> int:
    """A validity shorter than the grant's age: the grant has expired."""
    return max(1, int(age * r.uniform(0.1, 0.95)))


def _segment_pattern(r: random.Random, segment: str) -> _Pattern:
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
        signup = _u(r, 30 * _DAY, 3 * _YEAR)

        def ttl(age: int) -> int | None:
            if r.random() < 0.6:
                return None
            if r.random() < 0.05:  # some never re-confirm
                return _lapsed(r, age)
            return age + _u(r, 30 * _DAY, 2 * _YEAR)

    elif segment == "convenience_seeker":
        grant = {"personalization": 0.95, "marketing_email": 0.3, "marketing_phone": 0.08,
                 "analytics": 0.55, "third_party_sharing": 0.12, "support": 0.8}
        cats = {"browsing": 0.95, "purchase_history": 0.95, "connection_data": 0.1,
                "location": 0.35, "contact": 0.45, "payment": 0.25}
        withdrawn_share, gpc_p, recent_p = 0.25, 0.08, 0.08
        signup = _u(r, _DAY, 400 * _DAY)

        def ttl(age: int) -> int | None:  # medium expiry, usually re-confirmed in time
            return _lapsed(r, age) if r.random() < 0.12 else age + _u(r, _DAY, 180 * _DAY)

    elif segment == "control_addict":
        grant = dict.fromkeys(PURPOSES, 0.55)
        cats = dict.fromkeys(CATEGORIES, 0.5) | {"connection_data": 0.3}
        withdrawn_share, gpc_p, recent_p = 0.45, 0.3, 0.25
        signup = _u(r, _HOUR, 30 * _DAY)
        ttl = None  # handled per purpose below (expiry relative to now)

    elif segment == "flexible":
        grant = dict.fromkeys(PURPOSES, 0.55)
        cats = dict.fromkeys(CATEGORIES, 0.5) | {"connection_data": 0.25}
        withdrawn_share, gpc_p, recent_p = 0.33, 0.12, 0.1
        signup = _u(r, _HOUR, 2 * _YEAR)

        def ttl(age: int) -> int | None:
            x = r.random()
            return None if x < 0.3 else _lapsed(r, age) if x < 0.5 else age + _u(r, _HOUR, 365 * _DAY)

    elif segment == "privacy_fundamentalist":
        grant = {"personalization": 0.08, "marketing_email": 0.02, "marketing_phone": 0.02,
                 "analytics": 0.05, "third_party_sharing": 0.02, "support": 0.35}
        cats = dict.fromkeys(CATEGORIES, 0.08) | {"purchase_history": 0.2}
        withdrawn_share, gpc_p, recent_p = 0.5, 0.75, 0.05
        signup = _u(r, _DAY, 3 * _YEAR)

        def ttl(age: int) -> int | None:  # short grants, rarely renewed
            return _lapsed(r, age) if r.random() < 0.3 else age + _u(r, _DAY, 90 * _DAY)

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
        elif p == "marketing_email" and r.random() < SEGMENT_SIGNALS[segment][3]:
            # no e-mail consent, but a customer since signup: mailed on legitimate interest
            # (UWG §7(3)), a "grant" as old as the relationship and without expiry
            li_email = True
            purposes.append((p, "granted", -signup, None))
            continue
        else:
            purposes.append((p, "denied", None, None))
            continue
        if segment == "control_addict":
            # Fine-grained, short-lived: expiring minutes to hours from now,
            # about a third already expired.
            if r.random() < 0.3:
                e_off = -_u(r, _MINUTE, 2 * _DAY)
                g_off = e_off - _u(r, 10 * _MINUTE, _DAY)
            else:
                e_off = _u(r, 2 * _MINUTE, 6 * _HOUR)
                g_off = -_u(r, _MINUTE, 2 * _DAY)
            if recent and status == "granted":
                g_off = -_u(r, _MINUTE, _HOUR)
                e_off = max(e_off, g_off + _u(r, 10 * _MINUTE, 6 * _HOUR))
        else:
            age = signup if r.random() < 0.75 else _u(r, _MINUTE, signup)
            if recent and status == "granted":
                age = _u(r, _MINUTE, _HOUR)
            g_off = -age
            life = ttl(age)
            e_off = None if life is None else g_off + life
        changes.append(g_off)
        if status == "withdrawn":
            changes.append(g_off + int((-g_off) * r.random()))
        purposes.append((p, status, g_off, e_off))
    categories = {c: r.random() < cats[c] for c in CATEGORIES}
    gpc = r.random() < gpc_p
    granted = {p for p, status, _g, _e in purposes if status == "granted"}
    objections, signals, consent_mode = draw_signals(r, segment, granted, categories, gpc)
    extras = None
    if li_email or objections or signals or consent_mode:
        extras = (li_email, objections, signals, consent_mode)
    return tuple(purposes), categories, gpc, max(changes), extras


@lru_cache(maxsize=16)
def _patterns(seed: int) -> tuple[tuple[_Pattern, ...], ...]:
    """``_TEMPLATES`` consent patterns per segment, drawn once per seed."""
    out = []
    for segment in SEGMENTS:
        r = random.Random(f"population-patterns-{seed}-{segment}")
        out.append(tuple(_segment_pattern(r, segment) for _ in range(_TEMPLATES)))
    return tuple(out)


assert PURPOSES == ("personalization", "marketing_email", "marketing_phone", "analytics",
                    "third_party_sharing", "support"), "_consent_iter is unrolled over PURPOSES"


def consent_of(spec: PopulationSpec, i: int, now_ms: int) -> dict[str, Any] | None:
    """The consent record subject ``i`` holds at ``now_ms``, or None if it never gave one.

    Equal to the record :func:`consent_records` yields for ``i``; exposed so
    a demo or test can look one subject up without generating all of them.
    """
    _check_index(spec, i)
    return next(_consent_iter(spec, now_ms, i, i + 1), None)


def consent_records(spec: PopulationSpec, now_ms: int) -> Iterator[dict[str, Any]]:
    """One consent record per subject that has consent, in subject order.

    Every ``updated_at`` and ``granted_at`` is at or before ``now_ms``; some
    grants fall in the hour before it (events before them are
    ``before_grant``), some ``expires_at`` are before it (``expired``) or a
    few minutes after it (expiring during a run).
    """
    return _consent_iter(spec, now_ms, 0, spec.subjects)


@lru_cache(maxsize=16)
def _flat_patterns(seed: int) -> tuple[tuple[Any, ...], ...]:
    """Patterns flattened for the hot loop: segment-major, 22 fields each."""
    return tuple(
        (*(x for _p, s, g, e in purposes for x in (s, g, e)), categories, gpc, u_off, extras)
        for per_segment in _patterns(seed)
        for purposes, categories, gpc, u_off, extras in per_segment
    )


def _add_extras(rec: dict[str, Any], extras: tuple[bool, tuple[str, ...], Any, Any]) -> dict[str, Any]:
    """The pattern's bases, objections and signals onto a fresh record (copies: records
    must not share mutable parts)."""
    li_email, objections, signals, consent_mode = extras
    if li_email:
        rec["purposes"]["marketing_email"]["basis"] = "legitimate_interest"
    if objections:
        rec["objections"] = list(objections)
    if signals is not None:
        group = _SIGNAL_GROUP.get(rec["jurisdiction"])
        if group is not None:
            rec.update(signals[group])
    if consent_mode is not None:
        rec["consent_mode"] = dict(consent_mode)
    return rec


def _consent_iter(spec: PopulationSpec, now_ms: int, lo: int, hi: int) -> Iterator[dict[str, Any]]:
    seed = spec.seed
    seg_table = _segment_table(tuple(spec.shares.items()))
    flat = _flat_patterns(seed)
    jur_table = _JUR_TABLE
    nc = round(spec.no_consent_share * 65536)
    i = lo
    while i < hi:
        b, j = divmod(i, _BLOCK)
        block = _block(seed, b) if hi - lo > _BLOCK else _cached_block(seed, b)
        m = min(_BLOCK - j, hi - i)
        it = iter(block[j * _WORDS : (j + m) * _WORDS])
        for w0, w1, w2, _w3, _w4, _w5, _w6, _w7 in zip(it, it, it, it, it, it, it, it):
            if (w0 & 0xFFFF) >= nc:
                for bound, seg in seg_table:
                    if w1 < bound:
                        break
                (s0, g0, e0, s1, g1, e1, s2, g2, e2, s3, g3, e3, s4, g4, e4, s5, g5, e5,
                 categories, gpc, u_off, extras) = flat[(seg << 10) | (w2 & 1023)]
                base = now_ms - ((w2 >> 10) & 0xFFFFF)
                # Unrolled and inlined: this loop makes a million records in a
                # few seconds.
                rec = {
                    "subject_id": "s-%06d" % i,
                    "updated_at": base + u_off,
                    "purposes": {
                        "personalization": {"status": s0, "granted_at": None if g0 is None else base + g0,
                                            "expires_at": None if e0 is None else base + e0},
                        "marketing_email": {"status": s1, "granted_at": None if g1 is None else base + g1,
                                            "expires_at": None if e1 is None else base + e1},
                        "marketing_phone": {"status": s2, "granted_at": None if g2 is None else base + g2,
                                            "expires_at": None if e2 is None else base + e2},
                        "analytics": {"status": s3, "granted_at": None if g3 is None else base + g3,
                                      "expires_at": None if e3 is None else base + e3},
                        "third_party_sharing": {"status": s4, "granted_at": None if g4 is None else base + g4,
                                                "expires_at": None if e4 is None else base + e4},
                        "support": {"status": s5, "granted_at": None if g5 is None else base + g5,
                                    "expires_at": None if e5 is None else base + e5},
                    },
                    "categories": categories.copy(),
                    "jurisdiction": jur_table[(w0 >> 16) & 0xFF],
                    "gpc": gpc,
                    "tcf": None,
                }
                yield rec if extras is None else _add_extras(rec, extras)
            i += 1


# --------------------------------------------------------------------------
# Event vocabulary: places, devices, catalogue
# --------------------------------------------------------------------------

# (jurisdiction, country, region, city, lat, lon, phone prefix)
_CITIES: tuple[tuple[str, str, str, str, float, float, str], ...] = (
    ("EU", "DE", "BE", "Berlin", 52.52, 13.4, "+49"),
    ("EU", "DE", "BY", "Munich", 48.14, 11.58, "+49"),
    ("EU", "DE", "HH", "Hamburg", 53.55, 9.99, "+49"),
    ("EU", "FR", "IDF", "Paris", 48.86, 2.35, "+33"),
    ("EU", "FR", "ARA", "Lyon", 45.76, 4.84, "+33"),
    ("EU", "ES", "MD", "Madrid", 40.42, -3.7, "+34"),
    ("EU", "ES", "CT", "Barcelona", 41.39, 2.17, "+34"),
    ("EU", "IT", "LAZ", "Rome", 41.9, 12.5, "+39"),
    ("EU", "IT", "LOM", "Milan", 45.46, 9.19, "+39"),
    ("EU", "NL", "NH", "Amsterdam", 52.37, 4.9, "+31"),
    ("EU", "PL", "MZ", "Warsaw", 52.23, 21.01, "+48"),
    ("EU", "SE", "AB", "Stockholm", 59.33, 18.07, "+46"),
    ("EU", "IE", "D", "Dublin", 53.35, -6.26, "+353"),
    ("EU", "AT", "W", "Vienna", 48.21, 16.37, "+43"),
    ("UK", "GB", "ENG", "London", 51.51, -0.13, "+44"),
    ("UK", "GB", "ENG", "Manchester", 53.48, -2.24, "+44"),
    ("UK", "GB", "SCT", "Edinburgh", 55.95, -3.19, "+44"),
    ("US", "US", "NY", "New York", 40.71, -74.01, "+1"),
    ("US", "US", "TX", "Austin", 30.27, -97.74, "+1"),
    ("US", "US", "IL", "Chicago", 41.88, -87.63, "+1"),
    ("US", "US", "WA", "Seattle", 47.61, -122.33, "+1"),
    ("US", "US", "FL", "Miami", 25.76, -80.19, "+1"),
    ("US", "US", "MA", "Boston", 42.36, -71.06, "+1"),
    ("US-CA", "US", "CA", "San Francisco", 37.77, -122.42, "+1"),
    ("US-CA", "US", "CA", "Los Angeles", 34.05, -118.24, "+1"),
    ("US-CA", "US", "CA", "San Diego", 32.72, -117.16, "+1"),
    ("US-CA", "US", "CA", "Sacramento", 38.58, -121.49, "+1"),
    ("BR", "BR", "SP", "São Paulo", -23.55, -46.63, "+55"),
    ("BR", "BR", "RJ", "Rio de Janeiro", -22.91, -43.17, "+55"),
    ("IN", "IN", "MH", "Mumbai", 19.08, 72.88, "+91"),
    ("IN", "IN", "KA", "Bengaluru", 12.97, 77.59, "+91"),
    ("IN", "IN", "DL", "Delhi", 28.7, 77.1, "+91"),
    ("CN", "CN", "SH", "Shanghai", 31.23, 121.47, "+86"),
    ("CN", "CN", "BJ", "Beijing", 39.9, 116.41, "+86"),
    ("CN", "CN", "GD", "Shenzhen", 22.54, 114.06, "+86"),
)
_CITIES_BY_JUR: dict[str, tuple[int, ...]] = {
    j: tuple(k for k, c in enumerate(_CITIES) if c[0] == j) for j in JURISDICTIONS
}
_CURRENCY = {"EU": "EUR", "UK": "GBP", "US": "USD", "US-CA": "USD", "BR": "BRL", "IN": "INR", "CN": "CNY"}
# First octets of the (synthetic) address space each jurisdiction's IPs use.
_IP_OCTETS = {
    "EU": (31, 37, 46, 77, 78, 80, 81, 82, 85, 88, 91, 92, 93, 94, 95, 176, 185, 188, 212, 213),
    "UK": (2, 5, 25, 51, 62, 81, 86, 109, 151, 194),
    "US": (23, 24, 50, 63, 64, 66, 67, 68, 70, 71, 72, 73, 74, 75, 76, 96, 98, 99, 104, 108),
    "US-CA": (23, 24, 50, 64, 67, 71, 73, 76, 98, 107),
    "BR": (177, 179, 186, 187, 189, 191, 200, 201),
    "IN": (14, 27, 49, 59, 103, 106, 115, 117, 122, 157),
    "CN": (36, 39, 58, 60, 101, 112, 114, 116, 120, 183),
}
# Shop apps dominate mobile commerce traffic; browsers bring the long UAs.
_USER_AGENTS: tuple[str, ...] = (
    "ShopApp/5.12.0 (iPhone15,3; iOS 17.4.1)",
    "ShopApp/5.12.0 (iPhone14,5; iOS 17.3)",
    "ShopApp/5.11.2 (iPhone13,2; iOS 16.7.5)",
    "ShopApp/5.12.0 (iPad13,18; iPadOS 17.4)",
    "ShopApp/5.12.0 (Android 14; Pixel 8)",
    "ShopApp/5.12.0 (Android 14; SM-S918B)",
    "ShopApp/5.11.2 (Android 13; SM-A536B)",
    "ShopApp/5.10.4 (Android 12; M2101K6G)",
    "ShopApp/5.12.0 (Android 14; CPH2451)",
    "ShopApp/5.11.2 (Android 13; moto g84 5G)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 10; K) Chrome/124.0 Mobile",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64) Chrome/123.0.0.0",
)
#: The first _N_APP_UA user agents are the shop's app.
_N_APP_UA = 10
# Apps send no Referer unless opened from a link; browsers arrive from search,
# social, mail or typed URLs.
_APP_REFERRERS: tuple[str | None, ...] = (
    None, None, None, None, None, None, None, None,
    "https://mail.example.net/", "https://www.instagram.com/",
)
_WEB_REFERRERS: tuple[str | None, ...] = (
    None, None, None,
    "https://www.google.com/", "https://www.google.com/", "https://www.google.com/",
    "https://www.bing.com/", "https://duckduckgo.com/", "https://www.instagram.com/",
    "https://t.co/", "https://mail.example.net/", "https://news.example.org/deals",
)
_FIRST = ("anna", "ben", "chloe", "david", "emma", "felix", "grace", "hugo", "ines", "jonas",
          "kai", "lea", "mateo", "nora", "omar", "priya", "quinn", "rosa", "sam", "tara",
          "umar", "vera", "wei", "ximena", "yusuf", "zoe", "li", "ana", "arjun", "lucas")
_LAST = ("mueller", "martin", "garcia", "rossi", "jansen", "nowak", "smith", "jones", "johnson",
         "silva", "santos", "sharma", "patel", "wang", "zhang", "kelly", "bauer", "moreau",
         "lopez", "ricci", "berg", "novak", "brown", "lee", "costa", "kumar", "chen", "murphy")
_MAIL = ("example.com", "example.net", "example.org", "mail.example.com")
_STREETS = ("Main Street", "High Street", "Station Road", "Park Avenue", "Church Lane",
            "Market Square", "River Road", "Mill Lane", "Oak Avenue", "Garden Street",
            "Lindenstrasse", "Rue de la Paix", "Calle Mayor", "Via Roma", "Kerkstraat")
_PAYMENT = ("card", "card", "card", "paypal", "apple_pay", "google_pay", "klarna", "bank_transfer")
_LOGIN = ("password", "password", "password", "passkey", "google", "apple", "magic_link")

# category -> (median price in currency units, spread, product nouns)
_CATALOG_CATEGORIES: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "shoes": (70, 0.5, ("running shoes", "sneakers", "boots", "sandals", "loafers")),
    "apparel": (35, 0.6, ("t-shirt", "hoodie", "jeans", "jacket", "dress", "socks")),
    "electronics": (120, 0.9, ("headphones", "charger", "speaker", "smartwatch", "keyboard")),
    "home": (40, 0.8, ("lamp", "cushion", "mug set", "towel", "frying pan")),
    "beauty": (18, 0.6, ("moisturizer", "shampoo", "lipstick", "perfume", "sunscreen")),
    "books": (15, 0.4, ("novel", "cookbook", "travel guide", "comic", "biography")),
    "toys": (25, 0.6, ("puzzle", "board game", "building set", "plush bear", "rc car")),
    "sports": (45, 0.8, ("yoga mat", "dumbbells", "water bottle", "tent", "bike light")),
    "grocery": (8, 0.5, ("coffee beans", "olive oil", "green tea", "dark chocolate", "granola")),
    "garden": (30, 0.7, ("watering can", "seed kit", "planter", "pruning shears", "hose")),
}
_ADJECTIVES = ("red", "black", "white", "blue", "organic", "wireless", "waterproof", "classic",
               "vegan", "kids", "large", "mini", "premium", "eco", "retro")
_N_PRODUCTS = 4096
_SITE = "https://shop.example"


def _dump(value: Any) -> bytes:
    return orjson.dumps(value)


class _Catalog:
    """Pre-encoded JSON fragments, drawn once per seed.

    Each payload fragment starts with ``,`` and closes the event object, so
    an event is a handful of ``bytes`` joined together.
    """

    def __init__(self, seed: int) -> None:
        r = random.Random(f"population-catalog-{seed}")
        cats = list(_CATALOG_CATEGORIES)
        self.products: list[tuple[str, str, int, str]] = []  # id, category, price cents, name
        for k in range(_N_PRODUCTS):
            cat = cats[k % len(cats)] if k < len(cats) else r.choice(cats)
            median, spread, nouns = _CATALOG_CATEGORIES[cat]
            units = max(1, int(median * math.exp(r.gauss(0, spread))))
            cents = units * 100 + r.choice((99, 99, 99, 95, 49, 0))
            name = f"{r.choice(_ADJECTIVES)} {r.choice(nouns)}"
            self.products.append((f"p-{k:05d}", cat, cents, name))
        self.price_cents = [p[2] for p in self.products]
        self.product_view = [
            b',"product_id":' + _dump(pid) + b',"category":' + _dump(cat) + b',"price":'
            + _money(cents) + b"}"
            for pid, cat, cents, _ in self.products
        ]
        self.add_to_cart = [
            [b',"product_id":' + _dump(pid) + b',"quantity":' + b"%d}" % q for q in (1, 1, 1, 2, 2, 3, 1, 4)]
            for pid, _, _, _ in self.products
        ]
        self.items = [
            [
                b'{"product_id":' + _dump(pid) + b',"category":' + _dump(cat)
                + b',"quantity":%d,"price":' % q + _money(cents) + b"}"
                for q in range(5)
            ]
            for pid, cat, cents, _ in self.products
        ]
        pages: list[bytes] = []
        fixed = [("/", "Home"), ("/cart", "Your cart"), ("/account", "Your account"),
                 ("/deals", "Today's deals"), ("/help", "Help centre"), ("/wishlist", "Wishlist")]
        for path, title in fixed:
            pages.append(b',"url":' + _dump(_SITE + path) + b',"title":' + _dump(title) + b"}")
        for cat in cats:
            frag = b',"url":' + _dump(f"{_SITE}/c/{cat}") + b',"title":' + _dump(cat.capitalize()) + b"}"
            pages.extend([frag] * 3)
        for pid, _cat, _c, name in self.products[:256]:
            pages.append(b',"url":' + _dump(f"{_SITE}/p/{pid}") + b',"title":' + _dump(name.title()) + b"}")
        self.page_view = pages
        queries = set()
        while len(queries) < 400:
            _cat, (_m, _s, nouns) = r.choice(list(_CATALOG_CATEGORIES.items()))
            q = r.choice(nouns) if r.random() < 0.4 else f"{r.choice(_ADJECTIVES)} {r.choice(nouns)}"
            if r.random() < 0.15:
                q += r.choice((" sale", " size 42", " gift", " cheap", " set"))
            queries.add(q)
        self.search = [b',"query":' + _dump(q) + b"}" for q in sorted(queries)]
        self.login = [b',"method":' + _dump(m) + b"}" for m in _LOGIN]
        self.app_referrer = [b"null" if ref is None else _dump(ref) for ref in _APP_REFERRERS]
        self.web_referrer = [b"null" if ref is None else _dump(ref) for ref in _WEB_REFERRERS]
        self.geo = [
            _dump({"country": c[1], "region": c[2], "city": c[3], "lat": c[4], "lon": c[5]})
            for c in _CITIES
        ]
        self.ua = [_dump(ua) for ua in _USER_AGENTS]
        # IPs: 256 "a.b." heads per jurisdiction (its usual first octets) and
        # 4096 "c.d" tails, ~1M addresses per jurisdiction without formatting
        # one per session.
        self.ip_head = {
            j: [b"%d.%d." % (r.choice(octets), r.randrange(256)) for _ in range(256)]
            for j, octets in _IP_OCTETS.items()
        }
        self.ip_tail = [b"%d.%d" % (r.randrange(256), r.randrange(1, 255)) for _ in range(4096)]


def _money(cents: int) -> bytes:
    return b"%d.%02d" % divmod(cents, 100)


@lru_cache(maxsize=8)
def _catalog(seed: int) -> _Catalog:
    return _Catalog(seed)


def _postal(country: str, n: int) -> str:
    if country in ("DE", "FR", "ES", "IT", "US"):
        return f"{n % 90000 + 10000:05d}"
    if country == "NL":
        return f"{n % 9000 + 1000} {chr(65 + n % 26)}{chr(65 + (n >> 5) % 26)}"
    if country == "PL":
        return f"{n % 100:02d}-{(n >> 7) % 1000:03d}"
    if country == "SE":
        return f"{n % 900 + 100} {(n >> 10) % 100:02d}"
    if country == "IE":
        return f"D{n % 24 + 1:02d} {chr(65 + n % 26)}{(n >> 5) % 900 + 100}"
    if country == "AT":
        return f"{n % 9000 + 1000}"
    if country == "GB":
        area = ("SW", "M", "EH", "N", "E")[n % 5]
        return f"{area}{n % 20 + 1} {n % 9 + 1}{chr(65 + (n >> 3) % 26)}{chr(65 + (n >> 8) % 26)}"
    if country == "BR":
        return f"{n % 90000 + 10000:05d}-{(n >> 9) % 1000:03d}"
    return f"{n % 900000 + 100000:06d}"  # IN, CN


def _context(cat: _Catalog, city: int, ip_bits: int, ua: int, device: int, session: int, ref: bytes) -> bytes:
    """The whole ``,"context":{...}`` member of a session's events."""
    return b"".join((
        b',"context":{"ip":"',
        cat.ip_head[_CITIES[city][0]][ip_bits & 0xFF],
        cat.ip_tail[(ip_bits >> 8) & 0xFFF],
        b'","user_agent":', cat.ua[ua],
        b',"device_id":"d-%010x","geo":' % device, cat.geo[city],
        b',"session_id":"%012x","referrer":' % session, ref, b"}",
    ))


# Pre-encoded pieces of the purchase tail (see _purchase_tail).
_TAIL_HEAD = [
    b',"currency":"%s","payment_method":"' % _CURRENCY[c[0]].encode() for c in _CITIES
]
_TAIL_CITY = [
    b',"city":' + _dump(c[3]) + b',"country":' + _dump(c[1]) + b'},"email":"' for c in _CITIES
]
_TAIL_PHONE = [b'","phone":"%s ' % c[6].encode() for c in _CITIES]
_PAYMENT_B = [p.encode() for p in _PAYMENT]
_STREETS_B = [b'","shipping_address":{"street":"%d ' % (k % 180 + 1) + _dump(s)[1:-1]
              for k in range(180 * len(_STREETS)) for s in (_STREETS[k // 180],)]
# 256 postal codes per city: delivery areas repeat, formatting per buyer is slow.
_POSTAL_B = [
    [b'","postal_code":' + _dump(_postal(c[1], (k * 2654435761) >> 7)) for k in range(256)] for c in _CITIES
]
_FIRST_B = [s.encode() for s in _FIRST]
_LAST_B = [b"." + s.encode() for s in _LAST]
_MAIL_B = [b"@" + s.encode() for s in _MAIL]


_D3 = [b"%03d" % k for k in range(1000)]


def _purchase_tail(city: int, w5: int, w6: int, tag: bytes, pay: int) -> bytes:
    """Currency, payment, shipping address and contact of a buyer (closes the event).

    ``w5`` and ``w6`` are the buyer's random words: name, mail domain, street,
    postal code (w5) and phone number (w6).
    """
    return b"".join((
        _TAIL_HEAD[city], _PAYMENT_B[pay % len(_PAYMENT_B)],
        _STREETS_B[(w5 >> 12) % len(_STREETS_B)], _POSTAL_B[city][w5 >> 24], _TAIL_CITY[city],
        _FIRST_B[w5 % len(_FIRST_B)], _LAST_B[(w5 >> 5) % len(_LAST_B)], tag, _MAIL_B[(w5 >> 10) & 3],
        _TAIL_PHONE[city], _D3[w6 % 1000], b" ", _D3[(w6 >> 10) % 1000], _D3[(w6 >> 20) % 1000], b'"}',
    ))


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------


def _kind_table(purchase_share: float) -> tuple[int, ...]:
    """8192 entries: index into EVENT_TYPES, purchases first, then clicks by weight."""
    size = 8192
    purchases = round(purchase_share * size)
    # click mix: page_view 41%, product_view 30%, search 12%, add_to_cart 12%, login 5%
    weights = (0.41, 0.30, 0.12, 0.12, 0.05)
    table = [5] * purchases
    rest = size - purchases
    acc = 0.0
    for t, w in enumerate(weights):
        acc += w
        table.extend([t] * (round(acc * rest) - (len(table) - purchases)))
    table.extend([0] * (size - len(table)))  # float rounding: never short
    return tuple(table[:size])


_TYPE_PIECES = tuple(b',"event_type":"%s","ts":' % t.encode() for t in EVENT_TYPES)
# Session lengths (events per session), a rough geometric shape, mean ~10.
_SESSION_LENGTHS = (1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 8, 8, 9, 10, 11, 12, 13, 15, 17, 20, 24, 30, 40)
#: Events per block of random words: fixed, so which events come first does not
#: depend on how many were asked for (only their ts do, in window mode).
_EVENT_BLOCK = 4096


def event_bytes(
    spec: PopulationSpec,
    now_ms: int,
    count: int,
    *,
    start_ts: int | None = None,
    rate_per_s: float | None = None,
    first: int = 0,
) -> Iterator[tuple[str, bytes, str]]:
    """``count`` events as ``(kind, JSON bytes, key)``; kind is ``click`` or ``purchase``.

    The fast path for producers and benchmarks: events are spliced from
    pre-encoded fragments, never built as dicts. ``key`` is the subject id
    (the Kafka key) or ``""`` for anonymous events.

    Customers browse in sessions (about 10 events each, up to 512
    interleaved) with one session id, device and entry referrer; purchases
    carry the buyer's address and contact. Event ``n`` (counting from
    ``first``) has id ``e-<seed>-<n>`` and purchases order id
    ``o-<seed>-<n>``: ids never repeat within a seed as long as a caller
    that generates in several calls advances ``first``.

    Event time: with ``rate_per_s``, that many events per second from
    ``start_ts`` (default ``now_ms``), for live load; otherwise ``count``
    events spread evenly over ``[start_ts, now_ms)`` (default the hour before
    ``now_ms``), the hour in which some subjects granted consent (their
    earlier events are ``before_grant``). Each ts gets up to a second of
    jitter (client clocks, batching): the stream is nearly, not strictly,
    ordered.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if first < 0:
        raise ValueError(f"first must be >= 0, got {first}")
    if rate_per_s is not None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        t0 = float(now_ms if start_ts is None else start_ts)
        step = 1000.0 / rate_per_s
    else:
        start = now_ms - _DEFAULT_WINDOW_MS if start_ts is None else start_ts
        if start >= now_ms:
            raise ValueError("start_ts must be before now_ms unless rate_per_s is given")
        t0 = float(start)
        step = (now_ms - start) / max(count, 1)
    return _event_iter(spec, count, t0, step, first)


def _event_iter(
    spec: PopulationSpec, count: int, t0: float, step: float, first: int
) -> Iterator[tuple[str, bytes, str]]:
    seed = spec.seed
    cat = _catalog(seed)
    rng = random.Random(f"population-events-{seed}-{first}")
    bits = rng.getrandbits
    n_subjects = spec.subjects
    anon_cut = round(spec.anonymous_share * 65536)
    kind_table = _kind_table(spec.purchase_share)
    eid_head = b'{"event_id":"e-%d-' % seed
    order_head = b',"order_id":"o-%d-' % seed
    page_view, product_view, add_to_cart = cat.page_view, cat.product_view, cat.add_to_cart
    search, login, items_t, price_cents = cat.search, cat.login, cat.items, cat.price_cents
    n_pages, n_search, n_login = len(page_view), len(search), len(login)
    app_refs, web_refs = cat.app_referrer, cat.web_referrer
    type_pieces = _TYPE_PIECES
    purchase_piece = type_pieces[5]
    lengths = _SESSION_LENGTHS
    n_ua_app = _N_APP_UA
    join = b"".join
    money = _money

    n_cities, n_ua = len(_CITIES), len(cat.ua)
    jur_table, cities_by_jur = _JUR_TABLE, _CITIES_BY_JUR
    blocks, load_block = _BLOCK_CACHE, _cached_block
    context = _context

    # A session: [events left, key, subject piece, context piece, product in
    #             view, city, buyer word 1, buyer word 2, mail tag, purchase
    #             tail (made at the first purchase) or None]
    def new_session() -> list[Any]:
        r = bits(64)
        length = lengths[(r >> 48) % len(lengths)]
        product = (r >> 52) % _N_PRODUCTS
        if ((r >> 32) & 0xFFFF) < anon_cut:
            a = bits(64)
            city = (a >> 56) % n_cities
            ua = ((a >> 50) & 0x3F) % n_ua
            refs = app_refs if ua < n_ua_app else web_refs
            device = (a >> 8) & 0xFFFFFFFFFF
            ctx = context(cat, city, a, ua, device, r & 0xFFFFFFFFFFFF, refs[(r >> 40) % len(refs)])
            subj = b'","subject_id":null,"anonymous_id":"a-%012x"' % (a >> 16)
            return [length, "", subj, ctx, product, city, bits(32), bits(32), b"%x" % (a & 0xFFFFF), None]
        i = (bits(40) * n_subjects) >> 40
        block = blocks.get((seed, i >> 10)) or load_block(seed, i >> 10)
        j = (i & 1023) << 3
        w0 = block[j]
        w3 = block[j + 3]
        w4 = block[j + 4]
        ip_bits = block[j + 7]
        cities = cities_by_jur[jur_table[(w0 >> 16) & 0xFF]]
        city = cities[(w0 >> 24) % len(cities)]
        device = w3 | ((w4 & 0xFF) << 32)
        ua = (w4 >> 8) & 0x3F
        if (r >> 62) == 0:  # a quarter of sessions: the customer's other device
            device ^= 0x5A5A5A5A5A
            ua += 7
            ip_bits ^= 0xAAAAA
        ua %= n_ua
        refs = app_refs if ua < n_ua_app else web_refs
        ctx = context(cat, city, ip_bits, ua, device, r & 0xFFFFFFFFFFFF, refs[(r >> 40) % len(refs)])
        key = "s-%06d" % i
        subj = b'","subject_id":"%s"' % key.encode()
        return [length, key, subj, ctx, product, city, block[j + 5], block[j + 6], b"%d" % i, None]

    # [0] is a session with no events left: a slot starts one on first use.
    slots: list[list[Any]] = [[0]] * _SLOTS
    t = t0
    pos = first
    end = first + count
    while pos < end:
        block = array("I", rng.randbytes(8 * _EVENT_BLOCK))
        if sys.byteorder == "big":
            block.byteswap()
        it = iter(block)
        m = min(_EVENT_BLOCK, end - pos)
        for n, w1, w2 in zip(range(pos, pos + m), it, it):
            s = slots[w1 & 511]
            if s[0] <= 0:
                s = slots[w1 & 511] = new_session()
            s[0] -= 1
            tsb = b"%d" % (int(t) + ((w1 >> 9) & 1023))
            t += step
            nb = b"%d" % n
            kind = kind_table[w1 >> 19]
            if kind == 5:
                # 1-3 lines; the first is the product in view
                p1 = s[4]
                q1 = 1 + (w2 & 1)
                lines = (w2 >> 1) & 3
                if lines < 2:
                    items = items_t[p1][q1]
                    total = price_cents[p1] * q1
                else:
                    p2 = (w2 >> 3) % _N_PRODUCTS
                    q2 = 1 + ((w2 >> 15) & 1)
                    if lines == 2:
                        items = items_t[p1][q1] + b"," + items_t[p2][q2]
                        total = price_cents[p1] * q1 + price_cents[p2] * q2
                    else:
                        p3 = (w2 >> 16) % _N_PRODUCTS
                        items = join((items_t[p1][q1], b",", items_t[p2][q2], b",", items_t[p3][1]))
                        total = price_cents[p1] * q1 + price_cents[p2] * q2 + price_cents[p3]
                tail = s[9]
                if tail is None:
                    tail = s[9] = _purchase_tail(s[5], s[6], s[7], s[8], w2 >> 28)
                yield "purchase", join((
                    eid_head, nb, s[2], purchase_piece, tsb, s[3], order_head, nb,
                    b'","items":[', items, b'],"total":', money(total), tail,
                )), s[1]
            else:
                if kind == 0:
                    payload = page_view[w2 % n_pages]
                elif kind == 1:
                    # mostly browsing around the product in view, sometimes elsewhere
                    if w2 & 3:
                        p = s[4] = (s[4] + 1 + (w2 >> 4) % 64) % _N_PRODUCTS
                    else:
                        p = s[4] = (w2 >> 4) % _N_PRODUCTS
                    payload = product_view[p]
                elif kind == 2:
                    payload = search[w2 % n_search]
                elif kind == 3:
                    payload = add_to_cart[s[4]][w2 & 7]
                else:
                    payload = login[w2 % n_login]
                yield "click", join((eid_head, nb, s[2], type_pieces[kind], tsb, s[3], payload)), s[1]
        pos += m


def events(
    spec: PopulationSpec,
    now_ms: int,
    count: int,
    *,
    start_ts: int | None = None,
    rate_per_s: float | None = None,
    first: int = 0,
) -> Iterator[dict[str, Any]]:
    """The events of :func:`event_bytes` (same arguments), decoded into fresh dicts.

    One generator, two views: whatever a test asserts about these dicts
    holds for the bytes a producer sends.
    """
    stream = event_bytes(spec, now_ms, count, start_ts=start_ts, rate_per_s=rate_per_s, first=first)
    loads = orjson.loads
    return (loads(raw) for _kind, raw, _key in stream)


# --------------------------------------------------------------------------
# Consent churn
# --------------------------------------------------------------------------

#: How much more often than a brand loyalist each segment changes its consent.
_CHURN_WEIGHT = {
    "brand_loyalist": 0.1,
    "convenience_seeker": 0.15,
    "control_addict": 1.0,
    "flexible": 0.35,
    "privacy_fundamentalist": 0.25,
}
_CHANGES = (("withdraw", 28), ("regrant", 24), ("short_expiry", 14), ("category", 12),
            ("gpc", 10), ("move", 6), ("erase", 6), ("object", 5))
_CHANGE_TABLE = tuple(name for name, w in _CHANGES for _ in range(w))


def _ttl(r: random.Random, segment: str) -> int | None:
    """How long a fresh grant of ``segment`` lasts (None = no expiry)."""
    if segment == "control_addict":
        return _u(r, 2 * _MINUTE, 4 * _HOUR)
    if segment == "brand_loyalist":
        return None if r.random() < 0.6 else _u(r, _YEAR, 2 * _YEAR)
    if segment == "convenience_seeker":
        return _u(r, 30 * _DAY, 365 * _DAY)
    if segment == "flexible":
        return None if r.random() < 0.3 else _u(r, _DAY, 365 * _DAY)
    return _u(r, _DAY, 90 * _DAY)


def _copy_record(rec: dict[str, Any]) -> dict[str, Any]:
    out = dict(rec)
    out["purposes"] = {p: dict(v) for p, v in rec["purposes"].items()}
    out["categories"] = dict(rec["categories"])
    if "objections" in rec:
        out["objections"] = list(rec["objections"])
    if "consent_mode" in rec:
        out["consent_mode"] = dict(rec["consent_mode"])
    return out


def _signup(spec: PopulationSpec, i: int, t: int) -> dict[str, Any]:
    """A fresh record made at ``t`` (first consent, or consent after erasure)."""
    w0, w1, w2, *_ = _words(spec.seed, i)
    seg = _segment_index(_segment_table(tuple(spec.shares.items())), w1)
    purposes_t, categories, gpc, _u_off, _extras = _patterns(spec.seed)[seg][w2 & 1023]
    purposes = {}
    for p, status, g, e in purposes_t:
        if status == "granted":
            expires = None if e is None else t + (e - g)
            purposes[p] = {"status": "granted", "granted_at": t, "expires_at": expires}
        else:  # history went with the erasure: never granted in this record
            purposes[p] = {"status": "denied", "granted_at": None, "expires_at": None}
    return {
        "subject_id": subject_id(i),
        "updated_at": t,
        "purposes": purposes,
        "categories": dict(categories),
        "jurisdiction": _JUR_TABLE[(w0 >> 16) & 0xFF],
        "gpc": gpc,
        "tcf": None,
    }


def churn(
    spec: PopulationSpec, now_ms: int, count: int, *, interval_ms: int = 1
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """``count`` consent changes during a run, as ``(subject_id, record or None)``.

    None is a tombstone (erasure). Changes are withdrawals, re-grants, short
    expiries, category toggles, GPC opt-outs, jurisdiction moves, erasures,
    objections (GDPR Art. 21: direct marketing or profiling), and first
    consents by subjects that had none; control addicts change
    most often. Each record is the subject's complete new state, starting
    from what :func:`consent_records` gave it at a ``now_ms`` no later than
    this one. Change ``k`` has ``updated_at = now_ms + (k + 1) * interval_ms``,
    so every subject's ``updated_at`` strictly increases.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if interval_ms < 1:
        raise ValueError(f"interval_ms must be >= 1, got {interval_ms}")
    return _churn_iter(spec, now_ms, count, interval_ms)


def _churn_iter(
    spec: PopulationSpec, now_ms: int, count: int, interval_ms: int
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    r = random.Random(f"population-churn-{spec.seed}")
    seg_table = _segment_table(tuple(spec.shares.items()))
    state: dict[int, dict[str, Any] | None] = {}
    jurisdictions = list(JURISDICTIONS)
    jur_weights = list(JURISDICTIONS.values())
    for k in range(count):
        t = now_ms + (k + 1) * interval_ms
        while True:
            i = r.randrange(spec.subjects)
            segment = SEGMENTS[_segment_index(seg_table, _words(spec.seed, i)[1])]
            if r.random() < _CHURN_WEIGHT[segment]:
                break
        rec = state[i] if i in state else consent_of(spec, i, now_ms)
        sid = subject_id(i)
        change = r.choice(_CHANGE_TABLE)
        if change == "erase":
            state[i] = None
            yield sid, None
            continue
        if rec is None:  # first consent, or back after an erasure
            rec = _signup(spec, i, t)
            state[i] = rec
            yield sid, _copy_record(rec)
            continue
        rec = _copy_record(rec)
        purposes = rec["purposes"]
        granted = [p for p in PURPOSES if purposes[p]["status"] == "granted"]
        live = [p for p in granted if purposes[p]["expires_at"] is None or purposes[p]["expires_at"] > t]
        if change == "withdraw" and not granted:
            change = "regrant"
        if change == "short_expiry" and not live:
            change = "regrant"
        if change == "withdraw":
            purposes[r.choice(granted)]["status"] = "withdrawn"
        elif change == "regrant":
            open_ = [
                p for p in PURPOSES
                if purposes[p]["status"] != "granted"
                or (purposes[p]["expires_at"] is not None and purposes[p]["expires_at"] <= t)
            ] or list(PURPOSES)
            p = r.choice(open_)
            life = _ttl(r, segment)
            expires = None if life is None else t + life
            purposes[p] = {"status": "granted", "granted_at": t, "expires_at": expires}
        elif change == "short_expiry":
            # "only for the next few minutes": live grants now lapse soon
            for p in r.sample(live, r.randint(1, len(live))):
                soon = t + _u(r, _MINUTE, 30 * _MINUTE)
                old = purposes[p]["expires_at"]
                purposes[p]["expires_at"] = soon if old is None else min(old, soon)
        elif change == "category":
            c = r.choice(CATEGORIES)
            rec["categories"][c] = not rec["categories"][c]
        elif change == "gpc":
            if not rec["gpc"]:
                rec["gpc"] = True
            elif purposes["third_party_sharing"]["status"] == "granted":
                purposes["third_party_sharing"]["status"] = "withdrawn"
            else:
                rec["gpc"] = False  # switched the browser setting off again
        elif change == "object":
            # a GDPR Art. 21 objection, often by someone mailed on legitimate interest
            cls = r.choice(("direct_marketing", "direct_marketing", "profiling"))
            if cls not in rec.get("objections", ()):
                rec["objections"] = [*rec.get("objections", ()), cls]
        elif change == "move":
            others = [(j, w) for j, w in zip(jurisdictions, jur_weights) if j != rec["jurisdiction"]]
            rec["jurisdiction"] = r.choices([j for j, _ in others], [w for _, w in others])[0]
        rec["updated_at"] = t
        state[i] = rec
        yield sid, _copy_record(rec)


# --------------------------------------------------------------------------
# Records for log-leak tests
# --------------------------------------------------------------------------

#: ts and grant times of the PII-rich records: grants long before the events,
#: no expiry, so the records pass every check and reach every engine.
_PII_EVENT_TS = 1_700_000_000_000
_PII_GRANTED_AT = 1_600_000_000_000


def pii_rich_event(i: int) -> dict[str, Any]:
    """An event whose every free-text value is ``PII-SENTINEL-<field>-<i>``.

    The type cycles with ``i`` over :data:`EVENT_TYPES` (``i % 6``), so
    ``pii_rich_event(0..5)`` covers every payload field. ``event_type`` stays
    a real type (otherwise the record would only reach the DLQ); numbers
    stay numbers. Its subject is the one of :func:`pii_rich_consent` ``(i)``,
    which grants everything, so the values travel through every code path.
    """

    def m(f: str) -> str:
        return f"{PII_SENTINEL}-{f}-{i}"

    event_type = EVENT_TYPES[i % len(EVENT_TYPES)]
    event: dict[str, Any] = {
        "event_id": m("event_id"),
        "subject_id": m("subject_id"),
        "event_type": event_type,
        "ts": _PII_EVENT_TS + i,
        "context": {
            "ip": m("context.ip"),
            "user_agent": m("context.user_agent"),
            "device_id": m("context.device_id"),
            "session_id": m("context.session_id"),
            "referrer": m("context.referrer"),
            "geo": {
                "country": m("context.geo.country"),
                "region": m("context.geo.region"),
                "city": m("context.geo.city"),
                "lat": 12.3456,
                "lon": 65.4321,
            },
        },
    }
    if event_type == "page_view":
        event |= {"url": m("url"), "title": m("title")}
    elif event_type == "product_view":
        event |= {"product_id": m("product_id"), "category": m("category"), "price": 19.99}
    elif event_type == "search":
        event |= {"query": m("query")}
    elif event_type == "add_to_cart":
        event |= {"product_id": m("product_id"), "quantity": 2}
    elif event_type == "login":
        event |= {"method": m("method")}
    else:
        event |= {
            "order_id": m("order_id"),
            "items": [
                {"product_id": m("items.0.product_id"), "category": m("items.0.category"),
                 "quantity": 1, "price": 19.99},
                {"product_id": m("items.1.product_id"), "category": m("items.1.category"),
                 "quantity": 2, "price": 5.5},
            ],
            "total": 30.99,
            "currency": m("currency"),
            "payment_method": m("payment_method"),
            "shipping_address": {
                "street": m("shipping_address.street"),
                "city": m("shipping_address.city"),
                "postal_code": m("shipping_address.postal_code"),
                "country": m("shipping_address.country"),
            },
            "email": m("email"),
            "phone": m("phone"),
        }
    return event


def pii_rich_consent(i: int) -> dict[str, Any]:
    """The consent record of :func:`pii_rich_event` ``(i)``'s subject: grants everything.

    ``subject_id`` carries the marker; status values and the jurisdiction
    stay valid (they decide the outcome and are not personal values), so
    the subject's events are emitted to every engine of the default policy.
    """
    return {
        "subject_id": f"{PII_SENTINEL}-subject_id-{i}",
        "updated_at": _PII_GRANTED_AT + i,
        "purposes": {
            p: {"status": "granted", "granted_at": _PII_GRANTED_AT, "expires_at": None} for p in PURPOSES
        },
        "categories": dict.fromkeys(CATEGORIES, True),
        "jurisdiction": "EU",
        "gpc": False,
        "tcf": None,
    }
