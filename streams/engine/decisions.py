"""The decision record (CONTRACT §7, ``schemas/decision_record.avsc``): one per input record.

A decided input's record holds one entry per engine of the policy, in policy
order, ``{engine, outcome: emitted | dropped, reason, categories_sent}``. When
the rule stops before any engine is tried (step 1: ``anonymous``,
``no_consent``) every engine drops for that one reason: the record says it once
in its own ``reason`` and has no entries. An input that went to the DLQ has
``outcome: dlq``, its error class as ``reason`` and no entries.

Builders here give the dicts in the schema's field order, which is the byte
order of the JSON the codec writes (the fast path's fragments reproduce those
bytes; tests/unit/engine/test_fast_path.py checks it). Readers (``pfilter
verify``, ``pfilter report``, the tests) use :func:`engine_views` to see a record
as one decision per engine, as the audit question "what went where" asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.engine.vocab import DECIDED, DLQ, DROPPED, EMITTED, SHARED_REASONS

#: Fields every view of :func:`engine_views` copies from its record.
SHARED_FIELDS = ("event_id", "subject_id", "consent_version", "policy_version", "ts", "decided_at",
                 "source_topic", "source_partition", "source_offset")


def entry(engine: str, outcome: str, reason: str | None, categories_sent: list[str]) -> dict[str, Any]:
    """One engine's entry of a decided record (schema field order)."""
    return {"engine": engine, "outcome": outcome, "reason": reason, "categories_sent": categories_sent}


def record(event_id: str | None, subject_id: str | None, outcome: str, reason: str | None,
           engines: list[dict[str, Any]], consent_version: int | None, policy_version: str, ts: int | None,
           decided_at: int, source_topic: str, source_partition: int, source_offset: int) -> dict[str, Any]:
    """A decision record (schema field order)."""
    return {
        "event_id": event_id,
        "subject_id": subject_id,
        "outcome": outcome,
        "reason": reason,
        "engines": engines,
        "consent_version": consent_version,
        "policy_version": policy_version,
        "ts": ts,
        "decided_at": decided_at,
        "source_topic": source_topic,
        "source_partition": source_partition,
        "source_offset": source_offset,
    }


def engine_views(rec: dict[str, Any], engine_names: Sequence[str]) -> list[dict[str, Any]]:
    """The record as one flat decision per engine: the shared fields plus ``engine``,
    ``outcome`` (emitted | dropped | dlq), ``reason`` and ``categories_sent``.

    A DLQ record gives one view with ``engine`` None. A decided record without
    entries (shared reason) gives one ``dropped`` view per engine of
    ``engine_names`` (the policy's, in order)."""
    shared = {k: rec.get(k) for k in SHARED_FIELDS}
    if rec.get("outcome") == DLQ:
        return [{**shared, "engine": None, "outcome": DLQ, "reason": rec.get("reason"), "categories_sent": []}]
    entries = rec.get("engines") or []
    if not entries and rec.get("reason") is not None:
        return [{**shared, "engine": e, "outcome": DROPPED, "reason": rec["reason"], "categories_sent": []}
                for e in engine_names]
    return [{**shared, "engine": x.get("engine"), "outcome": x.get("outcome"), "reason": x.get("reason"),
             "categories_sent": list(x.get("categories_sent") or [])} for x in entries]


def record_problems(rec: dict[str, Any], engine_names: Sequence[str]) -> list[str]:
    """What is wrong with a record's form (CONTRACT §7); empty when it is well formed.

    Names fields and engines only, never a value of the input (G6)."""
    outcome, reason, entries = rec.get("outcome"), rec.get("reason"), rec.get("engines") or []
    if outcome == DLQ:
        problems = [] if reason else ["dlq record without an error class"]
        return problems + (["dlq record with engine entries"] if entries else [])
    if outcome != DECIDED:
        return ["outcome is neither decided nor dlq"]
    if not entries:
        return [] if reason in SHARED_REASONS else ["decided record with no entries and no shared reason"]
    problems = []
    if reason is not None:
        problems.append("decided record with entries and a record-level reason")
    names = [x.get("engine") for x in entries]
    if names != list(engine_names):
        problems.append(f"entries are for {names!r}, not the policy's engines in order {list(engine_names)!r}")
    for x in entries:
        o, r = x.get("outcome"), x.get("reason")
        if o == EMITTED and r is not None:
            problems.append(f"emitted entry for {x.get('engine')!r} has a reason")
        elif o == DROPPED and (r is None or x.get("categories_sent")):
            problems.append(f"dropped entry for {x.get('engine')!r} without a reason or with categories")
        elif o not in (EMITTED, DROPPED):
            problems.append(f"entry for {x.get('engine')!r} has outcome neither emitted nor dropped")
    return problems
