"""What the topics hold, as small typed rows for the summary (pure adapters).

Decision records come in two forms and both are read:

- one record per input (CONTRACT §7, current): ``outcome`` ``decided`` | ``dlq`` and an
  ``engines`` list of ``{engine, outcome, reason, categories_sent}``; the list may be
  empty for ``anonymous`` / ``no_consent`` (then every engine dropped for that reason);
- one record per input and engine (the earlier form): an ``engine`` key (null for DLQ).

Both become one ``Decision`` per input, identified by its source (topic, partition,
offset), so an at-least-once redelivery counts once. Only the decision's shape is kept
(engine, outcome, reason, categories): events' field values never reach these rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class EngineDecision:
    """What happened to one input for one engine."""

    engine: str
    outcome: str  # "emitted" | "dropped"
    reason: str | None
    categories_sent: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """One input record's decision (normalized from either decision-record form)."""

    source: tuple[str, int, int]
    event_id: str | None
    outcome: str  # "decided" | "dlq"
    reason: str | None
    engines: tuple[EngineDecision, ...]
    consent_version: int | None
    ts: int | None
    decided_at: int | None


def _is_old_form(d: Mapping[str, Any]) -> bool:
    return "engines" not in d and "engine" in d


def _source(d: Mapping[str, Any]) -> tuple[str, int, int]:
    return (str(d.get("source_topic")), int(d.get("source_partition") or 0), int(d.get("source_offset") or 0))


def decisions_from(raw: Iterable[Mapping[str, Any]], engine_names: Sequence[str]) -> list[Decision]:
    """Decoded decision records (either form, in log order) -> one ``Decision`` per input.

    ``engine_names``: the policy's engines in policy order, for a new-form record whose
    ``engines`` list is left out (``anonymous`` / ``no_consent``: every engine dropped).
    """
    out: dict[tuple[str, int, int], Decision] = {}
    old: dict[tuple[str, int, int], dict[str, Any]] = {}
    for d in raw:
        src = _source(d)
        if _is_old_form(d):
            g = old.setdefault(src, {"first": d, "engines": {}})
            eng = d.get("engine")
            if eng is not None and eng not in g["engines"]:  # redelivery: first copy counts
                g["engines"][eng] = EngineDecision(
                    str(eng), str(d.get("outcome")), d.get("reason"), tuple(d.get("categories_sent") or ()))
            if d.get("outcome") == "dlq":
                g["dlq"] = d
            continue
        if src in out:
            continue
        entries = d.get("engines") or ()
        engines = tuple(
            EngineDecision(str(e.get("engine")), str(e.get("outcome")), e.get("reason"),
                           tuple(e.get("categories_sent") or ()))
            for e in entries
        )
        outcome = str(d.get("outcome"))
        if outcome != "dlq" and not engines and d.get("reason") is not None:
            engines = tuple(EngineDecision(n, "dropped", d.get("reason")) for n in engine_names)
        out[src] = Decision(src, d.get("event_id"), outcome, d.get("reason"), engines,
                            d.get("consent_version"), d.get("ts"), d.get("decided_at"))
    for src, g in old.items():
        if src in out:
            continue
        first = g["first"]
        if "dlq" in g:
            dl = g["dlq"]
            out[src] = Decision(src, dl.get("event_id"), "dlq", dl.get("reason"), (), None, dl.get("ts"),
                                dl.get("decided_at"))
            continue
        engines = tuple(g["engines"].values())
        reasons = {e.reason for e in engines}
        shared = next(iter(reasons)) if len(reasons) == 1 and not any(e.outcome == "emitted" for e in engines) \
            and reasons & {"anonymous", "no_consent"} else None
        out[src] = Decision(src, first.get("event_id"), "decided", shared, engines, first.get("consent_version"),
                            first.get("ts"), first.get("decided_at"))
    return sorted(out.values(), key=lambda x: (x.ts if x.ts is not None else -1, x.source))


@dataclass(frozen=True, slots=True)
class ConsentEntry:
    """One record of the subject on the consent topic, in log order.

    ``kind``: ``record`` (decoded), ``tombstone`` (erasure) or ``malformed`` (rejected:
    the subject then fails closed). ``record`` is the decoded consent record, read by
    the summary for choices (purposes, categories, signals), never shown whole.
    """

    offset: int
    log_ts: int | None
    kind: str
    record: Mapping[str, Any] | None = None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class NoticeRow:
    """A consent notice sent to the subject (CONTRACT §9)."""

    kind: str  # "reconfirm" | "expired"
    purpose: str
    expires_at: int | None
    sent_at: int | None
    consent_version: int | None


def notices_from(raw: Iterable[Mapping[str, Any]]) -> list[NoticeRow]:
    """Notice records -> rows, one per (kind, purpose, expires_at) (a redelivery counts once)."""
    seen: dict[tuple, NoticeRow] = {}
    for n in raw:
        row = NoticeRow(str(n.get("kind")), str(n.get("purpose")), n.get("expires_at"), n.get("sent_at"),
                        n.get("consent_version"))
        seen.setdefault((row.kind, row.purpose, row.expires_at), row)
    return sorted(seen.values(), key=lambda r: (r.sent_at or 0, r.purpose, r.kind))


@dataclass(frozen=True, slots=True)
class ErasureRow:
    """An erasure notice for one engine (the pseudonym it was keyed by is not kept)."""

    engine: str
    erased_at: int | None
    consent_version: int | None
    pseudonymized: bool


def erasures_from(raw: Iterable[Mapping[str, Any]]) -> list[ErasureRow]:
    """Erasure notices -> rows, one per (engine, erased_at)."""
    seen: dict[tuple, ErasureRow] = {}
    for e in raw:
        row = ErasureRow(str(e.get("engine")), e.get("erased_at"), e.get("consent_version"),
                         bool(e.get("pseudonymized")))
        seen.setdefault((row.engine, row.erased_at), row)
    return sorted(seen.values(), key=lambda r: (r.erased_at or 0, r.engine))


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """A record of the subject on the data-key topic: a key (``present``) or a tombstone."""

    offset: int
    log_ts: int | None
    present: bool


@dataclass(frozen=True, slots=True)
class Sources:
    """Everything read for one subject. ``None`` for a topic that does not exist (yet)."""

    decisions: list[Decision] = field(default_factory=list)
    consents: list[ConsentEntry] = field(default_factory=list)
    notices: list[NoticeRow] | None = None
    erasures: list[ErasureRow] | None = None
    keys: list[KeyEntry] | None = None
