"""The machine-readable export (``--format json``, GDPR Art. 15 access request).

Its shape is ``schemas/subject_export.schema.json`` (JSON Schema 2020-12; a test
validates exports against it). Times are epoch milliseconds (UTC), as everywhere in
the filter. The export holds the subject's choices and what was done with them,
never a field value of an event; consent signals appear as which signal narrowed
what (the TC / GPP strings themselves are not repeated), pseudonymized recipients
as ``pseudonymized: true`` without the pseudonym.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.transparency.summary import ConsentChange, SubjectSummary

#: Bumped when a field changes meaning or goes away (adding one is compatible).
EXPORT_VERSION = "pfilter.subject_export/1"


def _consent(c: ConsentChange) -> dict[str, Any]:
    return {
        "offset": c.offset, "kind": c.kind, "at": c.at,
        "purposes": {p: dict(v) for p, v in c.purposes.items()},
        "categories": dict(c.categories), "jurisdiction": c.jurisdiction, "gpc": c.gpc,
        "objections": list(c.objections), "signals": list(c.signals),
        "narrowed_by": [{"signal": n.signal, "kind": n.kind, "target": n.target, "why": n.why} for n in c.narrowed],
        "effective_purposes": dict(c.effective), "changes": [dict(x) for x in c.changes], "problem": c.problem,
    }


def export_dict(s: SubjectSummary) -> dict[str, Any]:
    """The export as plain data (what ``export_json`` serializes)."""
    return {
        "export_version": EXPORT_VERSION,
        "subject_id": s.subject_id,
        "generated_at": s.generated_at,
        "policy_version": s.policy_version,
        "recipients": [
            {
                "engine": u.engine, "party": u.party, "purposes": list(u.purposes),
                "may_receive": list(u.may_receive), "pseudonymized": u.pseudonymized, "sent": u.sent,
                "categories": dict(u.categories), "first_ts": u.first_ts, "last_ts": u.last_ts,
                "consent_versions": list(u.consent_versions), "dropped": dict(u.dropped),
            }
            for u in s.engines
        ],
        "never_shared": list(s.never_shared),
        "consent": {
            "current": None if s.current_consent is None else _consent(s.current_consent),
            "erased": s.erased,
            "history": [_consent(c) for c in s.consent_history],
        },
        "notices": {
            "available": s.notices_available,
            "sent": [{"kind": n.kind, "purpose": n.purpose, "expires_at": n.expires_at, "sent_at": n.sent_at,
                      "consent_version": n.consent_version} for n in s.notices_sent],
            "pending": [{"kind": n.kind, "purpose": n.purpose, "expires_at": n.expires_at, "due_at": n.due_at}
                        for n in s.notices_pending],
        },
        "erasure": {
            "available": s.erasures_available,
            "receipts": [{"engine": r.engine, "erased_at": r.erased_at, "pseudonymized": r.pseudonymized,
                          "consent_version": r.consent_version} for r in s.receipts],
            "data_key": s.data_key,
        },
        "unreadable_inputs": dict(s.dlq),
    }


def export_json(s: SubjectSummary) -> str:
    """The export as indented JSON text."""
    return orjson.dumps(export_dict(s), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
