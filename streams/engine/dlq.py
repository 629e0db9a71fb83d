"""What makes an input record bad, and how its DLQ entry looks (CONTRACT §3, G3, G6).

A bad input goes to the DLQ unchanged (key and bytes) with headers saying why
and whence; its decision record (``decisions.record`` with outcome ``dlq``)
carries the same error class. Messages name fields, never values (G6).
"""

from __future__ import annotations

from typing import Any

from streams.engine.vocab import I64_MAX, I64_MIN

#: DLQ error classes raised by the batch API (the codecs add theirs: invalid_json, invalid_utf8,
#: schema_mismatch, wrong_type, missing_field, ...; a key that is not UTF-8 is invalid_utf8).
MISSING_KEY = "missing_key"        # a consent record without a key
KEY_MISMATCH = "key_mismatch"      # subject_id differs from the record key
NULL_VALUE = "null_value"          # an event with a null value
INVALID_EVENT = "invalid_event"    # decoded, but unusable (empty event_id or subject_id)
INVALID_CONSENT = "invalid_consent"  # decoded, but unusable (e.g. granted without granted_at)


def dlq_headers(error_class: str, message: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The headers of a DLQ entry: why (class, message without values) and whence."""
    return [
        ("error.class", error_class.encode()),
        ("error.message", message.encode()),
        ("source.topic", topic.encode()),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
    ]


def error_message(exc: Exception) -> str:
    """The message of a codec error without its class prefix (it never holds a value)."""
    return str(exc.args[0]) if exc.args else exc.__class__.__name__


def event_problem(event: Any) -> str | None:
    """What makes a decoded event unusable (field names only, never values)."""
    if type(event) is not dict:
        return "event is not an object"
    if type(event.get("event_id")) is not str or not event["event_id"]:
        return "event_id: missing or not a non-empty string"
    if type(event.get("event_type")) is not str:
        return "event_type: missing or not a string"
    ts = event.get("ts")
    if type(ts) is not int:
        return "ts: missing or not an integer"
    if not I64_MIN <= ts < I64_MAX:
        return "ts: out of range"
    s = event.get("subject_id")
    if s is not None and (type(s) is not str or not s):
        return "subject_id: not a non-empty string"
    ctx = event.get("context")
    if ctx is not None and type(ctx) is not dict:
        return "context: not an object"
    return None
