"""``pfilter consent explain``: how one consent record becomes the state the rule reads.

For a person debugging "why was this dropped": the record's explicit fields,
the legal basis of each purpose and whether the policy allows it, each signal's
findings and how they narrow the record (``signals.explain``), the objections
and the purposes they cover, then the effective state purpose by purpose and,
per engine, what steps 1a and 2 of the rule say about it before any event time
is looked at.

The lines hold the record's consent choices: they are printed to the person
asking, never logged (G6). A record that is malformed raises the same
``MalformedConsent`` (or codec ``DecodeError``) the worker would DLQ it with.
"""

from __future__ import annotations

from typing import Any

from streams.engine import signals as sig
from streams.engine.codecs import check_consent
from streams.engine.consent import NO_EXPIRY, MalformedConsent, parse_consent, times_of, wide
from streams.engine.policy import CompiledPolicy

__all__ = ["explain_record"]


def explain_record(record: Any, policy: CompiledPolicy) -> list[str]:
    """Lines explaining ``record`` under ``policy`` (module doc). Raises ``PFilterError``
    subclasses for a malformed record."""
    if type(record) is not dict:
        raise MalformedConsent("invalid_consent", "consent record is not an object")
    check_consent(record)  # what the worker's codec checks first
    subject = record["subject_id"]
    state = parse_consent(record, subject, 0, policy.vocab)
    rules = policy.rules
    vocab = policy.vocab
    w = wide(state)
    ga, ea = times_of(state)
    lines = [f"consent record of {subject}: updated_at {record['updated_at']}, "
             f"jurisdiction {record['jurisdiction']}, gpc {'true' if record['gpc'] else 'false'}"]

    lines.append("legal bases:")
    explicit: dict[str, bool] = {}
    for name, entry in record["purposes"].items():
        i = vocab.purpose_index.get(name)
        if i is None:
            lines.append(f"  purpose {name}: not in the policy, ignored")
            continue
        basis = rules.basis_of(name, entry)
        granted = entry.get("status") == "granted"
        ok = granted and rules.allows(i, basis)
        explicit[name] = ok
        if granted:
            verdict = "allowed" if ok else f"not allowed (policy: {', '.join(rules.bases[name])}): not granted"
            lines.append(f"  purpose {name}: granted on basis {basis}, {verdict}")
        else:
            lines.append(f"  purpose {name}: {entry.get('status')}")
    categories = {c: v for c, v in record["categories"].items() if c in vocab.category_index}

    signals = rules.signals_of(record, None)
    if signals is None:
        lines.append("signals: none")
    else:
        present = [f for f in ("tcf", "gpp", "consent_mode", "sec_gpc") if record.get(f) is not None]
        lines.append(f"signals: {', '.join(present)} (narrowing under the policy's [signals] mapping):")
        narrowed = rules.narrowed(signals)
        lines += ["  " + x for x in sig.explain(explicit, categories, bool(record["gpc"]), narrowed)]

    objections = rules.objections_of(record)
    if objections:
        lines.append("objections (GDPR Art. 21, absolute):")
        for c in dict.fromkeys(objections):
            covered = [p for p in vocab.purposes if c in rules.objections[p]]
            lines.append(f"  {c}: purposes {', '.join(covered) or 'none in this policy'}")
    else:
        lines.append("objections: none")

    lines.append("effective state (what the rule reads):")
    for i, p in enumerate(vocab.purposes):
        if w.objected >> i & 1:
            held = "granted" if w.granted >> i & 1 else "not granted"
            lines.append(f"  purpose {p}: objected ({held}; an objection wins whatever the basis or consent)")
        elif w.granted >> i & 1:
            until = "no expiry" if ea[i] == NO_EXPIRY else f"expires_at {ea[i]}"
            lines.append(f"  purpose {p}: granted (granted_at {ga[i]}, {until})")
        else:
            lines.append(f"  purpose {p}: not granted")
    cats = [c for j, c in enumerate(vocab.categories) if w.categories >> j & 1]
    lines.append(f"  categories: {', '.join(cats) or 'none'}")
    lines.append(f"  gpc: {'true' if w.gpc else 'false'}")
    for e in policy.engines:
        if w.objected & e.needs_mask:
            verdict = "objected (step 1a)"
        elif w.gates & e.gate_bit:
            verdict = "purpose_denied (a signal closed its gate)"
        elif w.granted & e.needs_mask != e.needs_mask:
            missing = [p for p, i in zip(e.needs, e.needs_idx) if not w.granted >> i & 1]
            verdict = f"purpose_denied ({', '.join(missing)} not granted)"
        else:
            verdict = "passes steps 1a and 2 (times, gpc, region and categories are checked per event)"
        lines.append(f"  engine {e.name}: {verdict}")
    return lines
