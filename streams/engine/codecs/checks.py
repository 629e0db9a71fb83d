"""Validation of decoded records, shared by both formats. Checks raise DecodeError.

JSON validation is structural and deliberately cheap for events (hot path):
envelope fields only (``event_id`` str, ``ts`` 64-bit int, ``event_type`` one
of the kind's types, ``subject_id`` str/null/absent, ``context`` object/
null/absent, a purchase's ``items`` array/null/absent). Consent records are
small and rare and are validated completely (:func:`check_consent`). The
filter's own outputs get a top-level shape check derived from their schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.engine.codecs.errors import DecodeError
from streams.engine.codecs.schemas import load_schema
from streams.engine.vocab import BASES, EVENT_TYPES, I64_MAX, I64_MIN, OBJECTION_CLASSES

CONSENT_STATUSES = frozenset({"granted", "denied", "withdrawn"})


def json_type_name(value: Any) -> str:
    # The *type* of a value, never the value: safe for messages.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _field_error(obj: dict, name: str, expected: str, path: str | None = None) -> DecodeError:
    path = path or name
    value = obj.get(name)
    if value is None:
        return DecodeError("missing_field", f"required field {path!r} is absent or null", path)
    return DecodeError(
        "wrong_type", f"field {path!r} must be {expected}, got {json_type_name(value)}", path
    )


def _is_long(value: Any) -> bool:
    return type(value) is int and I64_MIN <= value <= I64_MAX


def _make_event_check(kind: str) -> Callable[[dict], None]:
    """Envelope checks of an input event: a handful of lookups (hot path)."""
    types = EVENT_TYPES[kind]
    purchase = kind == "purchase_event"
    lo, hi = I64_MIN, I64_MAX

    def check(obj: dict) -> None:
        get = obj.get
        v = get("event_id")
        if type(v) is not str:
            raise _field_error(obj, "event_id", "a string")
        v = get("ts")
        if type(v) is not int or not lo <= v <= hi:
            if type(v) is int:
                raise DecodeError("wrong_type", "field 'ts' is out of the 64-bit range", "ts")
            raise _field_error(obj, "ts", "an integer (epoch ms)")
        v = get("event_type")
        if type(v) is not str or v not in types:
            if type(v) is str:
                raise DecodeError(
                    "schema_mismatch", f"field 'event_type' is not a known {kind} type", "event_type"
                )
            raise _field_error(obj, "event_type", "a string")
        v = get("subject_id")
        if v is not None and type(v) is not str:
            raise _field_error(obj, "subject_id", "a string or null")
        v = get("context")
        if v is not None and type(v) is not dict:
            raise _field_error(obj, "context", "an object or null")
        if purchase:
            v = get("items")
            if v is not None and type(v) is not list:
                raise _field_error(obj, "items", "an array or null")

    return check


def check_consent(obj: dict) -> None:
    """Complete validation of a consent record (small and rare)."""
    if type(obj.get("subject_id")) is not str:
        raise _field_error(obj, "subject_id", "a string")
    if not _is_long(obj.get("updated_at")):
        raise _field_error(obj, "updated_at", "a 64-bit integer (epoch ms)")
    purposes = obj.get("purposes")
    if type(purposes) is not dict:
        raise _field_error(obj, "purposes", "an object")
    for i, p in enumerate(purposes.values()):
        where = f"purposes[{i}]"  # by position: map keys come from the input
        if type(p) is not dict:
            raise DecodeError("wrong_type", f"{where} must be an object, got {json_type_name(p)}", "purposes")
        status = p.get("status")
        if type(status) is not str:
            raise _field_error(p, "status", "a string", f"{where}.status")
        if status not in CONSENT_STATUSES:
            raise DecodeError(
                "schema_mismatch",
                f"{where}.status is not one of {', '.join(sorted(CONSENT_STATUSES))}",
                "purposes.status",
            )
        for name in ("granted_at", "expires_at"):
            t = p.get(name)
            if t is not None and not _is_long(t):
                raise DecodeError(
                    "wrong_type",
                    f"{where}.{name} must be a 64-bit integer or null, got {json_type_name(t)}",
                    f"purposes.{name}",
                )
        ga, ea = p.get("granted_at"), p.get("expires_at")
        if status == "granted" and ga is not None and ea is not None and ea <= ga:
            raise DecodeError("schema_mismatch", f"{where}: expires_at is not after granted_at", "purposes.expires_at")
        basis = p.get("basis")
        if basis is not None and (type(basis) is not str or basis not in BASES):
            raise DecodeError("schema_mismatch", f"{where}.basis is not one of {', '.join(BASES)}", "purposes.basis")
    categories = obj.get("categories")
    if type(categories) is not dict:
        raise _field_error(obj, "categories", "an object")
    for i, c in enumerate(categories.values()):
        if type(c) is not bool:
            raise DecodeError(
                "wrong_type", f"categories[{i}] must be a boolean, got {json_type_name(c)}", "categories"
            )
    if type(obj.get("jurisdiction")) is not str:
        raise _field_error(obj, "jurisdiction", "a string")
    if type(obj.get("gpc")) is not bool:
        raise _field_error(obj, "gpc", "a boolean")
    for name in ("tcf", "gpp"):
        v = obj.get(name)
        if v is not None and type(v) is not str:
            raise _field_error(obj, name, "a string or null")
    cm = obj.get("consent_mode")
    if cm is not None and type(cm) is not dict:
        raise _field_error(obj, "consent_mode", "an object or null")
    sec = obj.get("sec_gpc")
    if sec is not None and type(sec) is not bool:
        raise _field_error(obj, "sec_gpc", "a boolean or null")
    objections = obj.get("objections")
    if objections is not None:
        if type(objections) is not list:
            raise _field_error(obj, "objections", "an array or null")
        for i, c in enumerate(objections):
            if type(c) is not str or c not in OBJECTION_CLASSES:
                raise DecodeError("schema_mismatch", f"objections[{i}] is not one of {', '.join(OBJECTION_CLASSES)}",
                                  "objections")


_AVRO_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "long": (int,),
    "int": (int,),
    "double": (int, float),
    "float": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "map": (dict,),
    "record": (dict,),
}
_AVRO_TYPE_WORDS = {
    "string": "a string", "long": "an integer", "int": "an integer", "double": "a number",
    "float": "a number", "boolean": "a boolean", "array": "an array", "map": "an object",
    "record": "an object",
}


def _avro_type_name(t: Any) -> str:
    if isinstance(t, dict):
        return t["type"]
    return t


def _top_level_plan(raw: dict) -> list[tuple[str, tuple[type, ...], bool, str]]:
    """(name, python types, nullable, words) of every top-level field."""
    plan = []
    for f in raw["fields"]:
        t = f["type"]
        nullable = False
        if isinstance(t, list):
            branches = [b for b in t if b != "null"]
            nullable = len(branches) < len(t)
            t = branches[0]
        name = _avro_type_name(t)
        # a field with a default may be absent (records written before it existed)
        optional = nullable or "default" in f
        plan.append((f["name"], _AVRO_PY_TYPES[name], optional, _AVRO_TYPE_WORDS[name]))
    return plan


def make_generic_check(kind: str) -> Callable[[dict], None]:
    """Top-level shape check derived from the schema (the filter's own outputs)."""
    plan = _top_level_plan(load_schema(kind))

    def check(obj: dict) -> None:
        get = obj.get
        for name, types, nullable, words in plan:
            v = get(name)
            if v is None:
                if nullable:
                    continue
                raise DecodeError("missing_field", f"required field {name!r} is absent or null", name)
            if type(v) not in types:
                raise DecodeError(
                    "wrong_type", f"field {name!r} must be {words}, got {json_type_name(v)}", name
                )

    return check


def make_check(kind: str) -> Callable[[dict], None]:
    if kind in EVENT_TYPES:
        return _make_event_check(kind)
    if kind == "consent_record":
        return check_consent
    return make_generic_check(kind)
