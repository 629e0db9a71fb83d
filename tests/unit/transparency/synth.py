"""Synthetic rows for the transparency tests: one subject, both decision-record forms."""

from __future__ import annotations

import datetime as dt
from typing import Any

from streams.engine.policy import load_policy
from streams.transparency.records import ConsentEntry, ErasureRow, KeyEntry, NoticeRow, Sources, decisions_from
from streams.transparency.summary import PolicyView, SubjectSummary, build_summary, policy_view

DAY = 86_400_000
ENGINES = ("offers", "email", "partner_ads")


def ms(y: int, m: int, d: int, h: int = 12) -> int:
    return int(dt.datetime(y, m, d, h, tzinfo=dt.UTC).timestamp() * 1000)


GRANTED_AT = ms(2026, 3, 1, 9)
EXPIRES_AT = ms(2027, 3, 1, 9)
UPDATED = ms(2026, 3, 1, 10)
NOW = ms(2026, 3, 10)
#: A value that must never appear in any rendering (it is an event field value).
SECRET_URL = "https://shop.example/p/SENTINEL-FIELD-VALUE"


def view() -> PolicyView:
    return policy_view(load_policy(None, secret=b"test-secret"))


def consent_record(subject: str = "cust-1", updated_at: int = UPDATED, **extra: Any) -> dict:
    g = {"status": "granted", "granted_at": GRANTED_AT, "expires_at": EXPIRES_AT}
    return {
        "subject_id": subject, "updated_at": updated_at,
        "purposes": {"personalization": dict(g), "marketing_email": {"status": "denied", "granted_at": None,
                                                                      "expires_at": None}},
        "categories": {"browsing": True, "purchase_history": True, "connection_data": False, "location": False,
                       "contact": True, "payment": False},
        "jurisdiction": "EU", "gpc": False, **extra,
    }


def new_form(i: int, ts: int, engines: list[dict] | None, outcome: str = "decided", reason: str | None = None,
             subject: str = "cust-1") -> dict:
    return {"event_id": f"e-{i}", "subject_id": subject, "outcome": outcome, "reason": reason,
            "engines": engines if engines is not None else [], "consent_version": UPDATED,
            "policy_version": "default-1", "ts": ts, "decided_at": ts + 5, "source_topic": "clickstream",
            "source_partition": 0, "source_offset": i, "url": SECRET_URL}


def old_form(i: int, ts: int, engine: str | None, outcome: str, reason: str | None, cats: list[str]) -> dict:
    return {"event_id": f"e-{i}", "subject_id": "cust-1", "engine": engine, "outcome": outcome, "reason": reason,
            "consent_version": UPDATED, "policy_version": "default-1", "categories_sent": cats, "ts": ts,
            "decided_at": ts + 5, "source_topic": "clickstream", "source_partition": 0, "source_offset": i}


def browsing_new(i: int, ts: int) -> dict:
    return new_form(i, ts, [
        {"engine": "offers", "outcome": "emitted", "reason": None, "categories_sent": ["browsing"]},
        {"engine": "email", "outcome": "dropped", "reason": "purpose_denied", "categories_sent": []},
        {"engine": "partner_ads", "outcome": "dropped", "reason": "purpose_denied", "categories_sent": []},
    ])


def browsing_old(i: int, ts: int) -> list[dict]:
    return [old_form(i, ts, "offers", "emitted", None, ["browsing"]),
            old_form(i, ts, "email", "dropped", "purpose_denied", []),
            old_form(i, ts, "partner_ads", "dropped", "purpose_denied", [])]


def sources(raw_decisions: list[dict], consents: list[ConsentEntry] | None = None, *,
            notices: list[NoticeRow] | None = None, erasures: list[ErasureRow] | None = None,
            keys: list[KeyEntry] | None = None) -> Sources:
    if consents is None:
        consents = [ConsentEntry(0, UPDATED, "record", consent_record())]
    return Sources(decisions_from(raw_decisions, ENGINES), consents, notices, erasures, keys)


def standard_summary() -> SubjectSummary:
    """Browsing used by offers between 3 and 9 March; e-mail denied; a DLQ'd input."""
    raw = [browsing_new(1, ms(2026, 3, 3)), browsing_new(2, ms(2026, 3, 5)), browsing_new(3, ms(2026, 3, 9)),
           new_form(4, ms(2026, 3, 4), None, outcome="dlq", reason="invalid_json")]
    return build_summary(view(), "cust-1", sources(raw), NOW)
