"""verify's per-decision checks, without a broker: how an emitted decision whose output
is missing is judged (at-least-once workers write decisions before outputs)."""

from __future__ import annotations

from streams.engine.policy import read_policy_file
from streams.verify import VerifyResult, _check_decision
from tests.integration.kit import DAY, consent, page_view

NOW = 1_800_000_000_000
SECRET = b"unit-secret"


def _setup() -> tuple[dict, dict, dict]:
    doc = read_policy_file(None)
    c = consent("s-1", NOW - DAY)
    event = page_view("e-1", "s-1", NOW - 1000)
    return doc, c, event


def _decision(decided_at: int, outcome: str = "emitted", reason: str | None = None) -> dict:
    return {"event_id": "e-1", "subject_id": "s-1", "engine": "offers", "outcome": outcome, "reason": reason,
            "consent_version": NOW - DAY, "policy_version": "default-1", "categories_sent": ["browsing"],
            "ts": NOW - 1000, "decided_at": decided_at, "source_topic": "clickstream",
            "source_partition": 0, "source_offset": 7}


def _check(res: VerifyResult, d: dict, others: list[dict]) -> None:
    doc, c, event = _setup()
    versions = {"s-1": {c["updated_at"]: c}}
    _check_decision(res, d, event, versions, "offers", doc, SECRET, {}, set(), "clickstream[0]@7", others)


def test_missing_output_of_a_decision_decided_again_later_is_a_redo() -> None:
    first, again = _decision(NOW), _decision(NOW + 5000)
    res = VerifyResult()
    _check(res, first, [first, again])
    assert res.redone == 1 and res.violation_count == 0 and res.unaccounted == 0


def test_missing_output_of_the_last_decision_is_a_violation() -> None:
    first, again = _decision(NOW), _decision(NOW + 5000)
    res = VerifyResult()
    _check(res, again, [first, again])
    assert res.redone == 0 and res.unaccounted == 1 and res.violation_count == 1
    assert "no output record" in res.violations[0]


def test_exactly_once_accepts_no_redo() -> None:
    first, again = _decision(NOW), _decision(NOW + 5000)
    res = VerifyResult(exactly_once=True)
    _check(res, first, [first, again])
    assert res.redone == 0 and res.unaccounted == 1
