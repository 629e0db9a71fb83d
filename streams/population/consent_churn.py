"""Consent churn: the changes subjects make to their consent during a run.

Contract: :func:`churn` yields ``(subject_id, record or None)`` (None: an erasure
tombstone); each record is the subject's complete new state, starting from what
:func:`~streams.population.consent.consent_records` gave it, and a subject's
``updated_at`` strictly increases. Deterministic (its own seeded ``random.Random``);
yielded records are fresh copies the caller may mutate.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from streams.population.consent import consent_of
from streams.population.segments import TEMPLATE_MASK, patterns, uniform_ms
from streams.population.spec import PopulationSpec
from streams.population.subjects import JUR_TABLE, W_SEGMENT, segment_index, segment_table, subject_id, words
from streams.population.vocabulary import CATEGORIES, DAY, HOUR, JURISDICTIONS, MINUTE, PURPOSES, SEGMENTS, YEAR

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
_u = uniform_ms


def _ttl(r: random.Random, segment: str) -> int | None:
    """How long a fresh grant of ``segment`` lasts (None = no expiry)."""
    if segment == "control_addict":
        return _u(r, 2 * MINUTE, 4 * HOUR)
    if segment == "brand_loyalist":
        return None if r.random() < 0.6 else _u(r, YEAR, 2 * YEAR)
    if segment == "convenience_seeker":
        return _u(r, 30 * DAY, 365 * DAY)
    if segment == "flexible":
        return None if r.random() < 0.3 else _u(r, DAY, 365 * DAY)
    return _u(r, DAY, 90 * DAY)


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
    w_place, w_segment, w_pattern, *_ = words(spec.seed, i)
    seg = segment_index(segment_table(tuple(spec.shares.items())), w_segment)
    pattern = patterns(spec.seed)[seg][w_pattern & TEMPLATE_MASK]
    purposes = {}
    for g in pattern.purposes:
        if g.status == "granted":
            assert g.granted_off is not None
            expires = None if g.expires_off is None else t + (g.expires_off - g.granted_off)
            purposes[g.purpose] = {"status": "granted", "granted_at": t, "expires_at": expires}
        else:  # history went with the erasure: never granted in this record
            purposes[g.purpose] = {"status": "denied", "granted_at": None, "expires_at": None}
    return {
        "subject_id": subject_id(i),
        "updated_at": t,
        "purposes": purposes,
        "categories": dict(pattern.categories),
        "jurisdiction": JUR_TABLE[(w_place >> 16) & 0xFF],
        "gpc": pattern.gpc,
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
    seg_table = segment_table(tuple(spec.shares.items()))
    state: dict[int, dict[str, Any] | None] = {}
    jurisdictions = list(JURISDICTIONS)
    jur_weights = list(JURISDICTIONS.values())
    for k in range(count):
        t = now_ms + (k + 1) * interval_ms
        while True:
            i = r.randrange(spec.subjects)
            segment = SEGMENTS[segment_index(seg_table, words(spec.seed, i)[W_SEGMENT])]
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
                soon = t + _u(r, MINUTE, 30 * MINUTE)
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
