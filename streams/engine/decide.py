"""The decision rule (CONTRACT §5) and the projection, over a compiled policy.

``decide(engine, event, subject, state, now)`` returns
``(reason, output, sent_mask)``: ``reason`` is None when the event goes to the
engine, then ``output`` is the filtered event (a new dict) and ``sent_mask`` the
categories it carries; otherwise ``reason`` is the first failing check, in
this order:

1. ``anonymous`` (no subject), ``no_consent`` (no state, or a BLOCKED state, or
   a state of another policy vocabulary);
1a. ``objected`` (a needed purpose belongs to an objection class the subject's
   record lists: the state's ``objected`` mask);
2. ``purpose_denied`` (a needed purpose is not granted, with an allowed basis:
   the granted mask holds only those; or a signal closed the engine's gate), then ``before_grant``
   (a needed purpose was granted after ``e.ts``), then ``expired`` (for a needed
   purpose, not ``now < expires_at and e.ts < expires_at``); each check over all
   needed purposes before the next one;
3. third-party engines: ``opt_out`` (GPC set), then ``purpose_denied``
   (``third_party_sharing`` not granted);
4. ``region_blocked`` (jurisdiction not one the engine may receive from);
5. ``nothing_permitted`` (no field of a category both allowed for the engine
   and granted by the subject is present, after transforms).

Only bit tests and the engine's precomputed field plan; no objects beyond the
output dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from streams.engine.consent import (
    BLOCKED, P_CATEGORIES, P_FLAGS, P_GATES, P_GPC, P_GRANTED, P_JURISDICTION, P_OBJECTED, P_VOCAB, PAIR, PROFILE,
    TIMES, UPDATED_AT, pair_index,
)
from streams.engine.policy import CompiledEngine, PlanEntry
from streams.engine.shapes import compile_shape, shape_copy
from streams.engine.vocab import (
    ANONYMOUS, BEFORE_GRANT, EXPIRED, NO_CONSENT, NOTHING_PERMITTED, OBJECTED, OPT_OUT, PURPOSE_DENIED, REASONS,
    REGION_BLOCKED, T_COUNTRY, T_ENCRYPT, T_PSEUDONYMIZE,
)

__all__ = [
    "ANONYMOUS", "BEFORE_GRANT", "EXPIRED", "HOUR_MS", "NO_CONSENT", "NOTHING_PERMITTED", "OBJECTED", "OPT_OUT",
    "PURPOSE_DENIED", "REASONS", "REGION_BLOCKED", "compile_shape", "decide", "project", "project_plan",
    "pseudonym_input", "shape_copy",
]

HOUR_MS = 3_600_000

#: ``seal(subject, path, value) -> envelope``: the ``encrypt`` transform (``sealing.Sealer.seal``).
Seal = Callable[[str, str, Any], "str | bytes"]


def pseudonym_input(value: Any) -> bytes:
    """Bytes a field value is pseudonymized from: UTF-8 for strings, else canonical JSON."""
    if type(value) is str:
        return value.encode("utf-8", "surrogatepass")
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def decide(
    eng: CompiledEngine, event: dict, subject: str | None, state: tuple | None, now: int,
    seal: Seal | None = None,
) -> tuple[str | None, dict | None, int]:
    """Apply the rule to one (validated) event for one engine; see the module doc.

    ``seal(subject, path, value) -> envelope`` performs the ``encrypt`` transform
    (``streams.engine.sealing.Sealer.seal``); required when the engine encrypts."""
    if subject is None:
        return ANONYMOUS, None, 0
    if state is None:
        return NO_CONSENT, None, 0
    prof = state[PROFILE]
    if prof[P_FLAGS] & BLOCKED or prof[P_VOCAB] != eng.vocab_fp:
        return NO_CONSENT, None, 0
    needs = eng.needs_mask
    if prof[P_OBJECTED] & needs:
        return OBJECTED, None, 0
    granted = prof[P_GRANTED]
    if granted & needs != needs or prof[P_GATES] & eng.gate_bit:
        return PURPOSE_DENIED, None, 0
    ts = event["ts"]
    times = state[TIMES]
    pairs = [PAIR.unpack_from(times, 16 * pair_index(granted, i)) for i in eng.needs_idx]
    for ga, _ea in pairs:
        if ga > ts:
            return BEFORE_GRANT, None, 0
    for _ga, x in pairs:
        if not (now < x and ts < x):
            return EXPIRED, None, 0
    if eng.third_party:
        if prof[P_GPC]:
            return OPT_OUT, None, 0
        if not granted & eng.tps_bit:
            return PURPOSE_DENIED, None, 0
    jur = eng.jurisdictions
    if jur is not None and prof[P_JURISDICTION] not in jur:
        return REGION_BLOCKED, None, 0
    allowed = eng.categories_mask & prof[P_CATEGORIES]
    if not allowed:
        return NOTHING_PERMITTED, None, 0

    out, sent = project(eng, event, subject, allowed, ts, seal)
    if out is None:
        return NOTHING_PERMITTED, None, 0
    if eng.pseudonymize_subject:
        out["subject_id"] = eng.pseudonym(subject)
    out["consent_version"] = state[UPDATED_AT]
    out["policy_version"] = eng.policy_version
    out["purposes"] = list(eng.relied_on)
    out["engine"] = eng.name
    return None, out, sent


def project(eng: CompiledEngine, event: dict, subject: str, allowed: int, ts: int,
            seal: Seal | None = None) -> tuple[dict | None, int]:
    """Whitelist projection of a (validated) event for an engine, over the categories in
    ``allowed`` (non-zero): ``(output, sent_mask)``, output holding the envelope and the
    permitted fields after transforms (the subject not yet pseudonymized, no trailer);
    ``(None, 0)`` when no permitted field is present. Output is built from the plan's
    paths only (G1): nothing is copied and then deleted."""
    return project_plan(eng, event, subject, eng.mask_plan(event.get("event_type"), allowed), ts, seal)


def _no_seal(subject: str, path: str, value: Any) -> str:
    raise ValueError(f"field {path!r} is to be encrypted but no sealer was given (a bug: fail closed)")


def project_plan(eng: CompiledEngine, event: dict, subject: str, plan: tuple[PlanEntry, ...], ts: int,
                 seal: Seal | None = None) -> tuple[dict | None, int]:
    """``project`` over a plan from ``eng.mask_plan``."""
    if not plan:
        return None, 0
    out = {
        "event_id": event["event_id"],
        "subject_id": subject,
        "event_type": event["event_type"],
        "ts": ts - ts % HOUR_MS if eng.ts_hour else ts,
    }
    sent = 0
    get = event.get
    for head, rest, parents, leaf, dotted, bit, code, copy in plan:
        v = get(head)
        if v is None:
            continue
        for k in rest:
            v = v.get(k) if type(v) is dict else None
            if v is None:
                break
        if v is None:
            continue
        if copy is not None:
            v = copy(v)
            if v is None:
                continue
        if code:
            if code == T_PSEUDONYMIZE:
                v = eng.pseudonymize_value(dotted, pseudonym_input(v))
            elif code == T_COUNTRY:
                c = v.get("country") if type(v) is dict else None
                if c is None:
                    continue
                v = {"country": c}
            elif code == T_ENCRYPT:
                # the real subject id (pseudonymization comes later): the key is the subject's
                v = (seal or _no_seal)(subject, dotted, v)
        if parents:
            d = out
            for k in parents:
                nd = d.get(k)
                if nd is None:
                    nd = d[k] = {}
                d = nd
            d[leaf] = v
        else:
            out[leaf] = v
        sent |= bit
    if not sent:
        return None, 0
    return out, sent
