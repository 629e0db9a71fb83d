"""The default policy document as the reference reads it: the shipped file states CONTRACT
§8's legal bases and objection classes (``[purpose_rules.<name>] bases / objections``)."""

from __future__ import annotations

from typing import Any

from streams.engine.policy import read_policy_file


def policy_of_section_8() -> dict[str, Any]:
    doc = read_policy_file(None)
    assert doc["purpose_rules"]["marketing_email"]["bases"] == ["consent", "legitimate_interest"]
    return doc
