"""A subject's ``SubjectSummary``: what was used, for which purpose, sent to whom, under
which consent (CONTRACT §1 "transparency"). Pure: rows in (``records``), summary out.

Per engine: the purposes it relies on, events sent, the categories they carried with
counts, first and last event time, the consent versions relied on, and drops by reason.
The consent history lists each record of the subject in log order with what changed
and which signals (TCF, GPP, Consent Mode) narrowed it (``streams.engine.signals``).
Notices: sent ones, and the ones still due for the current grants. Erasure: the
receipts (one erasure notice per engine) and whether the data key was shredded.

Nothing here holds a field value of an event (the decision rows carry none); a
pseudonymized engine is named with ``pseudonymized=True`` and never its pseudonym.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.transparency.records import ConsentEntry, Sources

DAY_MS = 86_400_000
#: CONTRACT §8: re-confirmation notices go out 30 days before a grant expires; used
#: when the policy file does not say otherwise (``notice_before``).
DEFAULT_NOTICE_BEFORE_MS = 30 * DAY_MS


@dataclass(frozen=True, slots=True)
class EngineInfo:
    name: str
    party: str
    purposes: tuple[str, ...]
    may_receive: tuple[str, ...]
    pseudonymized: bool


@dataclass(frozen=True, slots=True)
class PolicyView:
    """The parts of a policy a summary needs (built from a ``CompiledPolicy`` by ``policy_view``)."""

    version: str
    purposes: tuple[str, ...]
    categories: tuple[str, ...]
    engines: tuple[EngineInfo, ...]
    notice_before_ms: int = DEFAULT_NOTICE_BEFORE_MS
    signals: Mapping[str, Any] | None = None  # the [signals] table, None: CONTRACT §8's mapping


def _duration_ms(v: Any) -> int | None:
    """``notice_before`` as days (int) or "<n>d" / "<n>h"; None when unreadable."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v * DAY_MS
    if isinstance(v, str) and v[:-1].isdigit() and v[-1:] in ("d", "h"):
        return int(v[:-1]) * (DAY_MS if v[-1] == "d" else DAY_MS // 24)
    return None


def policy_view(policy: Any) -> PolicyView:
    """A ``PolicyView`` of a compiled policy (``streams.engine.policy.CompiledPolicy``)."""
    doc = getattr(policy, "document", None) or {}
    nb = _duration_ms(doc.get("notice_before")) or _duration_ms((doc.get("notices") or {}).get("notice_before"))
    engines = tuple(
        EngineInfo(e.name, e.party, tuple(e.relied_on), tuple(e.categories), bool(e.pseudonymize_subject))
        for e in policy.engines
    )
    return PolicyView(str(policy.version), tuple(policy.purposes), tuple(policy.categories), engines,
                      nb or DEFAULT_NOTICE_BEFORE_MS, doc.get("signals", {}))  # absent: none mapped, as the engine


# ------------------------------------------------------------------ the summary
@dataclass
class EngineUse:
    """One engine (a recipient) and what it received of the subject."""

    engine: str
    party: str
    purposes: list[str]
    may_receive: list[str]
    pseudonymized: bool
    sent: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    first_ts: int | None = None
    last_ts: int | None = None
    consent_versions: list[int] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def main_reason(self) -> str | None:
        """The most frequent reason it got nothing (ties: alphabetical), None if none."""
        if not self.dropped:
            return None
        return sorted(self.dropped.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


@dataclass
class Narrowing:
    """A signal that denied a purpose, category or engine (``why``: the signal's own terms)."""

    signal: str
    kind: str
    target: str
    why: str


@dataclass
class ConsentChange:
    """One consent record of the subject as the filter read it."""

    offset: int
    kind: str  # record | tombstone | malformed
    at: int | None  # updated_at of a record; the log time of a tombstone
    purposes: dict[str, dict[str, Any]] = field(default_factory=dict)
    categories: dict[str, bool] = field(default_factory=dict)
    jurisdiction: str | None = None
    gpc: bool | None = None
    objections: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    narrowed: list[Narrowing] = field(default_factory=list)
    effective: dict[str, bool] = field(default_factory=dict)  # purpose -> granted after signals
    changes: list[dict[str, Any]] = field(default_factory=list)  # {what, name, before, after}
    problem: str | None = None


@dataclass
class PendingNotice:
    kind: str
    purpose: str
    expires_at: int
    due_at: int


@dataclass
class Receipt:
    engine: str
    erased_at: int | None
    pseudonymized: bool
    consent_version: int | None


@dataclass
class SubjectSummary:
    subject_id: str
    policy_version: str
    generated_at: int
    engines: list[EngineUse]
    never_shared: list[str]
    consent_history: list[ConsentChange]
    current_consent: ConsentChange | None
    erased: bool
    notices_available: bool
    notices_sent: list[Any]
    notices_pending: list[PendingNotice]
    erasures_available: bool
    receipts: list[Receipt]
    data_key: str  # present | shredded | none | unknown (topic absent)
    dlq: dict[str, int]
    categories: list[str]
    purposes: list[str]


# ------------------------------------------------------------------ consent
def _signals_of(record: Mapping[str, Any], view: PolicyView) -> tuple[list[str], list[Narrowing], dict[str, bool],
                                                                       str | None]:
    """Which signals the record carries, which of them narrowed it, the purposes after
    narrowing, and a problem when a signal does not decode (the record then fails closed)."""
    from streams.engine import signals as sig

    present = [n for n in ("tcf", "gpp", "consent_mode", "sec_gpc") if record.get(n) is not None]
    purposes = record.get("purposes") or {}
    explicit = {p: (isinstance(e, Mapping) and e.get("status") == "granted") for p, e in purposes.items()}
    cats = {c: bool(v) for c, v in (record.get("categories") or {}).items()}
    if not present:
        return present, [], explicit, None
    try:
        mapping = sig.SignalsMapping.from_dict(view.signals) if view.signals is not None else sig.DEFAULT_MAPPING
        tc = sig.decode_tcf(record["tcf"]) if record.get("tcf") is not None else None
        gpp = sig.decode_gpp(record["gpp"]) if record.get("gpp") is not None else None
        cm = sig.parse_consent_mode(record["consent_mode"]) if record.get("consent_mode") is not None else None
    except sig.SignalError as exc:  # the message never holds the signal string (signals' rule)
        return present, [], {p: False for p in explicit}, f"a consent signal did not decode ({type(exc).__name__})"
    narrowed = sig.normalize(sig.Signals(tcf=tc, gpp=gpp, consent_mode=cm,
                                         sec_gpc=record.get("sec_gpc") is True), mapping)
    eff = sig.combine(explicit, cats, bool(record.get("gpc")), narrowed)
    found = [Narrowing(f.signal, f.kind, f.target, f.why) for f in narrowed.findings
             if not f.grants and f.kind in ("purpose", "category", "engine")]
    return present, found, dict(eff.purposes), None


def _change_of(e: ConsentEntry, view: PolicyView) -> ConsentChange:
    if e.kind != "record" or e.record is None:
        return ConsentChange(e.offset, e.kind, e.log_ts, problem=e.problem)
    r = e.record
    purposes = {
        p: {"status": v.get("status"), "granted_at": v.get("granted_at"), "expires_at": v.get("expires_at"),
            "basis": v.get("basis") or "consent"}
        for p, v in (r.get("purposes") or {}).items() if isinstance(v, Mapping)
    }
    signals, narrowed, effective, problem = _signals_of(r, view)
    return ConsentChange(
        e.offset, "malformed" if problem else "record", r.get("updated_at"), purposes,
        {c: bool(v) for c, v in (r.get("categories") or {}).items()}, r.get("jurisdiction"), r.get("gpc"),
        [str(o) for o in (r.get("objections") or [])], signals, narrowed, effective, [], problem)


def _diff(prev: ConsentChange | None, cur: ConsentChange) -> list[dict[str, Any]]:
    if cur.kind != "record":
        return []
    out: list[dict[str, Any]] = []
    before_p = {} if prev is None or prev.kind != "record" else prev.purposes
    before_c = {} if prev is None or prev.kind != "record" else prev.categories
    for p, v in cur.purposes.items():
        b = before_p.get(p, {}).get("status")
        if b != v["status"] or (prev is not None and before_p.get(p, {}).get("expires_at") != v["expires_at"]):
            out.append({"what": "purpose", "name": p, "before": b, "after": v["status"]})
    for p in before_p:
        if p not in cur.purposes:
            out.append({"what": "purpose", "name": p, "before": before_p[p]["status"], "after": None})
    for c, v in cur.categories.items():
        if before_c.get(c) != v:
            out.append({"what": "category", "name": c, "before": before_c.get(c), "after": v})
    if prev is not None and prev.kind == "record":
        for attr in ("gpc", "jurisdiction"):
            if getattr(prev, attr) != getattr(cur, attr):
                out.append({"what": attr, "name": attr, "before": getattr(prev, attr), "after": getattr(cur, attr)})
        if sorted(prev.objections) != sorted(cur.objections):
            out.append({"what": "objections", "name": "objections", "before": prev.objections,
                        "after": cur.objections})
    return out


def _history(entries: Sequence[ConsentEntry], view: PolicyView) -> tuple[list[ConsentChange], ConsentChange | None,
                                                                          bool]:
    """Each entry with what changed, and the state in force: the greatest ``updated_at``
    wins, a tombstone always deletes, a malformed record blocks (CONTRACT §3)."""
    history: list[ConsentChange] = []
    current: ConsentChange | None = None
    erased = False
    prev_valid: ConsentChange | None = None
    for e in sorted(entries, key=lambda x: x.offset):
        ch = _change_of(e, view)
        ch.changes = _diff(prev_valid, ch)
        history.append(ch)
        if ch.kind == "tombstone":
            current, erased, prev_valid = None, True, None
        elif ch.kind == "record":
            if current is None or current.at is None or (ch.at is not None and ch.at >= current.at):
                current, erased = ch, False
            prev_valid = ch
        else:  # malformed: blocks unless it is readable and older than the state in force
            if not (current is not None and ch.at is not None and current.at is not None and ch.at < current.at):
                current, erased = ch, False
    return history, current, erased


def _pending(current: ConsentChange | None, sent: Sequence[Any], view: PolicyView, now: int) -> list[PendingNotice]:
    """Notices still due for the grants in force (CONTRACT §9), not yet on the notice topic."""
    if current is None or current.kind != "record":
        return []
    done = {(n.kind, n.purpose, n.expires_at) for n in sent}
    out = []
    for p, v in current.purposes.items():
        exp = v.get("expires_at")
        if v.get("status") != "granted" or not isinstance(exp, int):
            continue
        for kind, due in (("reconfirm", exp - view.notice_before_ms), ("expired", exp)):
            if (kind, p, exp) not in done:
                out.append(PendingNotice(kind, p, exp, due))
    return sorted(out, key=lambda n: (n.due_at, n.purpose))


# ------------------------------------------------------------------ build
def build_summary(view: PolicyView, subject: str, src: Sources, now: int) -> SubjectSummary:
    """Fold one subject's rows into its summary (``now``: epoch ms, for what is pending)."""
    uses = {e.name: EngineUse(e.name, e.party, list(e.purposes), list(e.may_receive), e.pseudonymized)
            for e in view.engines}
    versions: dict[str, set[int]] = {n: set() for n in uses}
    dlq: Counter = Counter()
    for d in src.decisions:
        if d.outcome == "dlq":
            dlq[d.reason or "unknown"] += 1
            continue
        for ed in d.engines:
            u = uses.get(ed.engine)
            if u is None:  # an engine the policy no longer has: still a recipient to name
                u = uses[ed.engine] = EngineUse(ed.engine, "?", [], [], False)
                versions[ed.engine] = set()
            if ed.outcome == "emitted":
                u.sent += 1
                for c in ed.categories_sent:
                    u.categories[c] = u.categories.get(c, 0) + 1
                if d.ts is not None:
                    u.first_ts = d.ts if u.first_ts is None else min(u.first_ts, d.ts)
                    u.last_ts = d.ts if u.last_ts is None else max(u.last_ts, d.ts)
                if d.consent_version is not None:
                    versions[ed.engine].add(d.consent_version)
            else:
                r = ed.reason or "unknown"
                u.dropped[r] = u.dropped.get(r, 0) + 1
    for n, u in uses.items():
        u.consent_versions = sorted(versions[n])
        u.categories = {c: u.categories[c] for c in sorted(u.categories, key=_order(view.categories))}
    shared = {c for u in uses.values() for c in u.categories}
    history, current, erased = _history(src.consents, view)
    sent = list(src.notices or [])
    receipts = [Receipt(r.engine, r.erased_at, r.pseudonymized, r.consent_version) for r in (src.erasures or [])]
    if src.keys is None:
        data_key = "unknown"
    elif not src.keys:
        data_key = "none"
    else:
        data_key = "present" if sorted(src.keys, key=lambda k: k.offset)[-1].present else "shredded"
    return SubjectSummary(
        subject_id=subject, policy_version=view.version, generated_at=now, engines=list(uses.values()),
        never_shared=[c for c in view.categories if c not in shared], consent_history=history,
        current_consent=current, erased=erased, notices_available=src.notices is not None, notices_sent=sent,
        notices_pending=_pending(current, sent, view, now), erasures_available=src.erasures is not None,
        receipts=receipts, data_key=data_key, dlq=dict(dlq), categories=list(view.categories),
        purposes=list(view.purposes),
    )


def _order(names: Sequence[str]):  # noqa: ANN202
    idx = {n: i for i, n in enumerate(names)}
    return lambda c: (idx.get(c, len(idx)), c)
