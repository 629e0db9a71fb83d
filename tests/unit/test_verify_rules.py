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


# ------------------------------------------------------------------ issue 11: objections, bases, signals
def _judge(engine: str, rec: dict, outcome: str, reason: str | None, event: dict | None = None) -> VerifyResult:
    from tests.unit.reference_policy import policy_of_section_8

    event = event or page_view("e-1", "s-1", NOW - 1000)
    d = dict(_decision(NOW), engine=engine, outcome=outcome, reason=reason, consent_version=rec["updated_at"])
    res = VerifyResult()
    _check_decision(res, d, event, {"s-1": {rec["updated_at"]: rec}}, engine, policy_of_section_8(), SECRET, {},
                    set(), "clickstream[0]@7", [d])
    return res


def _objecting_li_subject() -> dict:
    c = consent("s-1", NOW - DAY)
    c["purposes"]["marketing_email"] = {"status": "granted", "granted_at": NOW - 9 * DAY, "expires_at": None,
                                        "basis": "legitimate_interest"}
    c["objections"] = ["direct_marketing"]
    return c


def test_an_objected_drop_is_judged_by_the_reference() -> None:
    from tests.integration.kit import purchase

    rec, buy = _objecting_li_subject(), purchase("e-1", "s-1", NOW - 1000)
    assert _judge("email", rec, "dropped", "objected", buy).ok
    wrong = _judge("email", rec, "dropped", "purpose_denied", buy)
    assert wrong.mismatches == 1 and "the rule says 'objected'" in wrong.violations[0]
    leaked = _judge("email", rec, "emitted", None, buy)
    assert not leaked.ok and "the rule says dropped (objected)" in leaked.violations[0]


def test_a_signal_narrowed_drop_is_judged_by_the_reference() -> None:
    from streams.population.signals import PARTNER_VENDOR_ID, tc_string

    rec = consent("s-1", NOW - DAY)
    rec["tcf"] = tc_string([1, 2, 3, 4, 6], [1], [PARTNER_VENDOR_ID])  # no purpose 5: personalization denied
    assert _judge("offers", rec, "dropped", "purpose_denied").ok
    leaked = _judge("offers", rec, "emitted", None)
    assert not leaked.ok and "the rule says dropped (purpose_denied)" in leaked.violations[0]
    ignored = _judge("offers", rec, "dropped", "nothing_permitted")
    assert ignored.mismatches == 1
