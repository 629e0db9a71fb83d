"""The decision record's form (CONTRACT §7): engine views and the form check verify runs."""

from __future__ import annotations

import json

from streams.engine import decisions as D
from streams.engine.codecs import SCHEMAS_DIR

ENGINES = ["offers", "email", "partner_ads"]


def example(name: str) -> dict:
    return json.loads((SCHEMAS_DIR / "examples" / f"decision_record.{name}.json").read_text())


def test_examples_are_well_formed() -> None:
    for name in ("decided", "no_consent", "dlq"):
        assert D.record_problems(example(name), ENGINES) == [], name


def test_engine_views() -> None:
    dec = example("decided")
    views = D.engine_views(dec, ENGINES)
    assert [(v["engine"], v["outcome"], v["reason"]) for v in views] == [
        ("offers", "emitted", None), ("email", "dropped", "nothing_permitted"),
        ("partner_ads", "dropped", "region_blocked")]
    assert all(v["source_offset"] == dec["source_offset"] and v["event_id"] == dec["event_id"] for v in views)
    assert views[0]["categories_sent"] == ["browsing"]
    shared = D.engine_views(example("no_consent"), ENGINES)
    assert [(v["engine"], v["outcome"], v["reason"]) for v in shared] == [(e, "dropped", "no_consent") for e in ENGINES]
    (dlq,) = D.engine_views(example("dlq"), ENGINES)
    assert (dlq["engine"], dlq["outcome"], dlq["reason"]) == (None, "dlq", "invalid_json")


def test_record_problems_name_what_is_wrong() -> None:
    dec = example("decided")
    cases = {
        "not the policy's engines in order": {**dec, "engines": dec["engines"][::-1]},
        "not the policy's engines": {**dec, "engines": dec["engines"][:2]},
        "record-level reason": {**dec, "reason": "no_consent"},
        "emitted entry for 'offers' has a reason": {
            **dec, "engines": [{**dec["engines"][0], "reason": "expired"}, *dec["engines"][1:]]},
        "without a reason": {**dec, "engines": [dec["engines"][0], {**dec["engines"][1], "reason": None},
                                                dec["engines"][2]]},
        "no entries and no shared reason": {**dec, "engines": []},
        "dlq record with engine entries": {**example("dlq"), "engines": dec["engines"]},
        "neither decided nor dlq": {**dec, "outcome": "emitted"},
    }
    for needle, rec in cases.items():
        problems = D.record_problems(rec, ENGINES)
        assert any(needle in p for p in problems), (needle, problems)
    assert D.record_problems({**example("no_consent"), "reason": "expired"}, ENGINES)  # not a step-1 reason
