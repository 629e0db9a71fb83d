"""The decision rule reduced to one summary per (consent state, engine).

``decide.decide`` for any event of a subject reduces to a handful of integer
comparisons against numbers that depend only on the subject's consent state
and the engine. ``engine_summary`` computes them once per state; the fast path
of ``Filter.decide`` caches them per subject while the store holds the same
state object, so a subject's later events pay no bit tests or unpacking.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from streams.engine.consent import (
    BLOCKED, P_CATEGORIES, P_FLAGS, P_GATES, P_GPC, P_GRANTED, P_JURISDICTION, P_OBJECTED, P_VOCAB, PAIR, PROFILE,
    TIMES, pair_index,
)
from streams.engine.policy import CompiledEngine
from streams.engine.vocab import NO_CONSENT, NOTHING_PERMITTED, OBJECTED, OPT_OUT, PURPOSE_DENIED, REGION_BLOCKED

#: ``max_granted_at`` / ``min_expires_at`` placeholders that never fail a check.
NEVER_AFTER = -(1 << 64)
NEVER_EXPIRES = 1 << 200


class EngineSummary(NamedTuple):
    """What ``decide.decide`` needs of one state for one engine, for every event.

    The rule for an event at ``ts`` and processing time ``now``: ``pre`` if set;
    else ``before_grant`` when ``max_granted_at > ts``; else ``expired`` unless
    ``now < min_expires_at and ts < min_expires_at``; else ``post`` if set; else
    the projection over the categories in ``allowed`` (``plans``:
    ``eng.type_plans(allowed)``). A NamedTuple: the hot loop unpacks it like a
    plain tuple, at the same speed."""

    pre: str | None
    max_granted_at: int
    min_expires_at: int
    post: str | None
    allowed: int
    plans: dict[str, tuple] | None


class CachedSummaries(NamedTuple):
    """A cache entry: the summaries of ``state`` (valid while the store holds that object)."""

    state: tuple
    summaries: tuple[EngineSummary, ...]


#: Summaries that hold no per-subject time, shared by every subject they apply to.
NO_CONSENT_SUMMARY = EngineSummary(NO_CONSENT, NEVER_AFTER, NEVER_EXPIRES, None, 0, None)
PURPOSE_DENIED_SUMMARY = EngineSummary(PURPOSE_DENIED, NEVER_AFTER, NEVER_EXPIRES, None, 0, None)
OBJECTED_SUMMARY = EngineSummary(OBJECTED, NEVER_AFTER, NEVER_EXPIRES, None, 0, None)


def engine_summary(eng: CompiledEngine, state: tuple) -> EngineSummary:
    """The summary of one engine for one consent state (see :class:`EngineSummary`)."""
    prof = state[PROFILE]
    if prof[P_FLAGS] & BLOCKED or prof[P_VOCAB] != eng.vocab_fp:
        return NO_CONSENT_SUMMARY
    needs = eng.needs_mask
    if prof[P_OBJECTED] & needs:
        return OBJECTED_SUMMARY
    granted = prof[P_GRANTED]
    if granted & needs != needs or prof[P_GATES] & eng.gate_bit:
        return PURPOSE_DENIED_SUMMARY
    times = state[TIMES]
    max_ga = NEVER_AFTER
    min_ea = NEVER_EXPIRES
    for i in eng.needs_idx:
        ga, ea = PAIR.unpack_from(times, 16 * pair_index(granted, i))
        if ga > max_ga:
            max_ga = ga
        if ea < min_ea:
            min_ea = ea
    post = None
    allowed = 0
    jur = eng.jurisdictions
    if eng.third_party and prof[P_GPC]:
        post = OPT_OUT
    elif eng.third_party and not granted & eng.tps_bit:
        post = PURPOSE_DENIED
    elif jur is not None and prof[P_JURISDICTION] not in jur:
        post = REGION_BLOCKED
    else:
        allowed = eng.categories_mask & prof[P_CATEGORIES]
        if not allowed:
            post = NOTHING_PERMITTED
    plans: Any = eng.type_plans(allowed) if allowed else None
    return EngineSummary(None, max_ga, min_ea, post, allowed, plans)
