"""The short plain-language summary (``--format text``), in English or German.

``sentences`` turns a ``SubjectSummary`` into what the templates say, one item per
sentence, already in the reader's words (``vocab``); the Jinja2 templates
``summary.<lang>.txt.j2`` put them into sentences. The HTML page shows the same
sentences, so the page and the text never disagree.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from streams.transparency import vocab
from streams.transparency.summary import EngineUse, SubjectSummary

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=2)
def environment(autoescape: bool) -> jinja2.Environment:
    """One environment per escaping mode: text templates are not HTML-escaped."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
    )
    env.filters["cap"] = lambda s: s[:1].upper() + s[1:]
    return env


def _cats(names: list[str], lang: str, table: str = "your") -> tuple[str, bool]:
    """The categories as one phrase, and whether it takes a plural verb."""
    w = vocab.words(lang)
    plural_set = w["plural"] if table == "your" else w["bare_plural"]
    phrase = vocab.join_and([vocab.word(lang, table, c) for c in names], lang)
    return phrase, len(names) > 1 or (len(names) == 1 and names[0] in plural_set)


def _consent_terms(s: SubjectSummary, u: EngineUse, lang: str) -> dict[str, str] | None:
    """When the consent the engine relies on was given, and until when it holds."""
    cur = s.current_consent
    if cur is None or cur.kind != "record":
        return None
    entries = [cur.purposes.get(p) for p in u.purposes]
    if not entries or any(e is None or e.get("status") != "granted" for e in entries):
        return None
    given = max(e["granted_at"] for e in entries if isinstance(e.get("granted_at"), int)) \
        if any(isinstance(e.get("granted_at"), int) for e in entries) else None
    ends = [e["expires_at"] for e in entries if isinstance(e.get("expires_at"), int)]
    return {"given": vocab.fmt_date(given, lang), "until": vocab.fmt_date(min(ends), lang) if ends else ""}


def sentences(s: SubjectSummary, lang: str) -> dict[str, Any]:
    """Everything the summary templates say about ``s``, in ``lang``."""
    used, unused = [], []
    for u in s.engines:
        who = vocab.engine_name(u.engine, u.party, lang)
        purposes = vocab.join_and([vocab.word(lang, "purpose", p) for p in u.purposes], lang)
        if u.sent:
            cats, plural = _cats(list(u.categories), lang)
            first, last = u.first_ts, u.last_ts
            when = None
            if first is not None and last is not None:
                when = ("on", vocab.fmt_date(first, lang)) if vocab.same_day(first, last) \
                    else ("between", vocab.fmt_range(first, last, lang))
            used.append({"who": who, "purposes": purposes, "cats": cats, "plural": plural, "when": when,
                         "count": u.sent, "terms": _consent_terms(s, u, lang), "third": u.party == "third",
                         "pseudonymized": u.pseudonymized})
        elif u.dropped:
            cats, plural = _cats(u.may_receive, lang)
            unused.append({"who": who, "purposes": purposes, "cats": cats, "plural": plural,
                           "why": vocab.word(lang, "reason", u.main_reason)})
    never, never_plural = _cats(s.never_shared, lang, "bare")
    cur = s.current_consent
    narrowed = []
    if cur is not None and cur.kind == "record":
        for n in cur.narrowed:
            table = {"purpose": "purpose", "category": "bare"}.get(n.kind)
            target = vocab.word(lang, table, n.target) if table else vocab.engine_name(n.target, "third", lang)
            item = {"signal": vocab.signal_name(n.signal), "target": target}
            if item not in narrowed:
                narrowed.append(item)
    erased_at = next((c.at for c in reversed(s.consent_history) if c.kind == "tombstone"), None)
    return {
        "subject": s.subject_id, "policy": s.policy_version, "today": vocab.fmt_date(s.generated_at, lang),
        "used": used, "unused": unused, "never": never, "never_plural": never_plural,
        "nothing_recorded": not any(u.sent or u.dropped for u in s.engines),
        "changes": sum(1 for c in s.consent_history if c.kind == "record"),
        "last_change": vocab.fmt_date(next((c.at for c in reversed(s.consent_history) if c.at is not None), None),
                                      lang),
        "blocked": cur is not None and cur.kind == "malformed",
        "narrowed": narrowed, "erased": s.erased, "erased_at": vocab.fmt_date(erased_at, lang),
        "receipts": len(s.receipts), "key_shredded": s.data_key == "shredded",
        "notices_sent": [{"kind": vocab.word(lang, "notice", n.kind), "purpose": vocab.word(lang, "purpose", n.purpose),
                          "date": vocab.fmt_date(n.sent_at, lang)} for n in s.notices_sent],
        "notices_pending": [{"kind": vocab.word(lang, "notice", n.kind),
                             "purpose": vocab.word(lang, "purpose", n.purpose),
                             "date": vocab.fmt_date(n.due_at, lang)} for n in s.notices_pending],
        "dlq": sum(s.dlq.values()),
    }


def render_text(s: SubjectSummary, lang: str = "en") -> str:
    """The plain-language summary of ``s`` in ``lang`` (``en`` or ``de``)."""
    vocab.words(lang)  # names the language when it is unknown
    out = environment(False).get_template(f"summary.{lang}.txt.j2").render(**sentences(s, lang))
    # one paragraph per line of the template: a blank line between them reads best in a terminal
    return "\n\n".join(line.strip() for line in out.splitlines() if line.strip()) + "\n"
