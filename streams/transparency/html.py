"""The HTML page (``--format html``): one self-contained page a person can read.

Built from ``templates/page.html.j2`` (inline CSS, no external assets); the support
page embeds the same ``_summary.html.j2``. Jinja2 autoescaping is on: every value
(a subject id included) is escaped.
"""

from __future__ import annotations

from typing import Any

from streams.transparency import vocab
from streams.transparency.summary import ConsentChange, SubjectSummary
from streams.transparency.text import environment, render_text


def _change_text(x: dict[str, Any], lang: str) -> str:
    w = vocab.words(lang)
    if x["what"] == "purpose":
        name = vocab.word(lang, "purpose", x["name"])
        return f"{name}: {w['status'].get(x['before'], x['before'])} → {w['status'].get(x['after'], x['after'])}"
    if x["what"] == "category":
        yes, no = ("✓", "✗")
        before = "–" if x["before"] is None else (yes if x["before"] else no)
        return f"{vocab.word(lang, 'bare', x['name'])}: {before} → {yes if x['after'] else no}"
    return f"{x['name']}: {x['before']} → {x['after']}"


def _target(kind: str, name: str, lang: str) -> str:
    if kind == "purpose":
        return vocab.word(lang, "purpose", name)
    if kind == "category":
        return vocab.word(lang, "bare", name)
    return name  # an engine: its name, as in the recipients table


def _consent_rows(history: list[ConsentChange], lang: str) -> list[dict[str, Any]]:
    rows = []
    for c in history:
        narrowed = [f"{vocab.signal_name(n.signal)}: {_target(n.kind, n.target, lang)} ({n.why})" for n in c.narrowed]
        rows.append({"kind": c.kind, "date": vocab.fmt_date(c.at, lang),
                     "changes": [_change_text(x, lang) for x in c.changes], "narrowed": narrowed})
    return rows


def page_context(s: SubjectSummary, lang: str) -> dict[str, Any]:
    """What the HTML templates show (shared with the support page)."""
    w = vocab.words(lang)
    L = w["labels"]
    text = render_text(s, lang)
    paragraphs = [" ".join(p.split("\n")) for p in text.strip().split("\n\n") if p.strip()]
    recipients = []
    for u in s.engines:
        period = ""
        if u.first_ts is not None and u.last_ts is not None:
            a, b = vocab.fmt_date(u.first_ts, lang), vocab.fmt_date(u.last_ts, lang)
            period = a if a == b else f"{a} – {b}"
        recipients.append({
            "engine": u.engine, "who": vocab.engine_name(u.engine, u.party, lang),
            "party": L.get(u.party, u.party), "pseudonymized": u.pseudonymized,
            "purposes": [vocab.word(lang, "purpose", p) for p in u.purposes], "sent": u.sent,
            "categories": [{"name": c, "label": vocab.word(lang, "bare", c), "count": n}
                           for c, n in u.categories.items()],
            "period": period, "versions": [vocab.fmt_date(v, lang) for v in u.consent_versions],
            "dropped": [{"reason": r, "label": vocab.word(lang, "reason", r), "count": n}
                        for r, n in sorted(u.dropped.items())],
        })
    return {
        "lang": lang, "L": L, "subject": s.subject_id, "policy": s.policy_version,
        "generated": vocab.fmt_date(s.generated_at, lang), "paragraphs": paragraphs, "recipients": recipients,
        "consent": _consent_rows(s.consent_history, lang),
        "notices_sent": [{"kind": vocab.word(lang, "notice", n.kind), "purpose": vocab.word(lang, "purpose", n.purpose),
                          "date": vocab.fmt_date(n.sent_at, lang), "expires": vocab.fmt_date(n.expires_at, lang)}
                         for n in s.notices_sent],
        "notices_pending": [{"kind": vocab.word(lang, "notice", n.kind),
                             "purpose": vocab.word(lang, "purpose", n.purpose),
                             "date": vocab.fmt_date(n.due_at, lang), "expires": vocab.fmt_date(n.expires_at, lang)}
                            for n in s.notices_pending],
        "receipts": [{"engine": r.engine, "pseudonymized": r.pseudonymized, "date": vocab.fmt_date(r.erased_at, lang)}
                     for r in s.receipts],
        "data_key": w["data_key"][s.data_key], "dlq": dict(s.dlq),
    }


def render_html(s: SubjectSummary, lang: str = "en") -> str:
    """The standalone page of ``s`` in ``lang``."""
    return environment(True).get_template("page.html.j2").render(**page_context(s, lang))
