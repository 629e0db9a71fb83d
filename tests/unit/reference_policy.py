"""The default policy document as the reference reads it, with CONTRACT §8's legal bases
and objection classes (``[purposes.<name>] bases / objections``) added when the shipped
file does not state them yet; a no-op once it does."""

from __future__ import annotations

from typing import Any

from streams.engine.policy import read_policy_file


def policy_of_section_8() -> dict[str, Any]:
    doc = read_policy_file(None)
    if isinstance(doc["purposes"], list):
        rules: dict[str, Any] = {p: {} for p in doc["purposes"]}
        for p in ("marketing_email", "marketing_phone"):
            rules[p] = {"bases": ["consent", "legitimate_interest"], "objections": ["direct_marketing"]}
        rules["personalization"] = {"objections": ["profiling"]}
        doc = dict(doc, purposes=rules)
    return doc
