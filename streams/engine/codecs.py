"""Value codecs: JSON (orjson) and Avro (fastavro, Confluent wire format).

One codec per (record kind, format), built once and cached by :func:`get_codec`:

    codec = get_codec("click_event", "json")
    event = codec.decode(value_bytes)        # dict, or DecodeError
    value_bytes = codec.encode(event_dict)   # bytes, or EncodeError

Kinds are the schema file stems in ``schemas/``: ``click_event``,
``purchase_event``, ``consent_record``, ``filtered_event``,
``decision_record``, ``erasure_notice``.

Decoding is the boundary where untrusted bytes enter the filter, so:

* every failure is a :class:`DecodeError` whose ``error_class`` is one short
  code (:data:`ERROR_CLASSES`) the runtime puts in the DLQ headers and the
  decision record's ``reason``; nothing else escapes ``decode`` (the one
  exception is :class:`RegistryUnavailable`, raised when a configured schema
  registry cannot be reached: that is an outage, not bad input, and must not
  send good records to the DLQ);
* error messages name fields, sizes, offsets and schema ids, never a value
  from the input (CONTRACT G6). Map keys from the input (purpose and category
  names) are referred to by position, not by name. Errors are raised outside
  the ``except`` block that caught the underlying error, so no chained
  exception (whose text may quote the input) travels with them.

JSON validation is structural and deliberately cheap for events (hot path):
envelope fields only (``event_id`` str, ``ts`` 64-bit int, ``event_type`` one
of the kind's types, ``subject_id`` str/null/absent, ``context`` object/
null/absent, a purchase's ``items`` array/null/absent). Payload field types
are not checked for JSON events: a JSON input whose payload field has a type
the Avro schema rejects decodes fine and fails only if it is re-encoded as
Avro (:class:`EncodeError`). Consent records are small and rare and are
validated completely, in both formats.

Avro uses the Confluent wire format: magic byte 0, 4-byte big-endian schema
id, Avro binary body. Without a registry the ids come from the checked-in map
``schemas/ids.json`` and a record carrying any other id is
``unknown_schema_id``. With ``registry_url`` the codec registers its schema
(on first encode) under ``subject`` and resolves unknown writer ids through
the registry once, caching them; records written with another (compatible)
schema version are resolved to the reader schema in ``schemas/``. The default
subject is the record's full name (Confluent's ``RecordNameStrategy``,
e.g. ``io.pfilter.ClickEvent``), because a codec serves a kind, not a topic;
pass ``subject=topic_subject(topic)`` for the ``TopicNameStrategy``
convention ``<topic>-value``. A ``mock://`` registry URL gives confluent-kafka's
in-process mock registry (tests).

Speed: each of our schemas is compiled once into a straight-line Python
reader and writer (``compile_reader``/``compile_writer``), 2-7x faster than
fastavro's generic code, byte-for-byte identical (the tests check this against
fastavro with generated records). fastavro parses and validates the schemas,
reads records written with other writer schemas (registry), and does it all
when a codec is built with ``AvroCodec(kind, compiled=False)``.

Avro decoding yields ``None`` for absent nullable fields, JSON leaves them
out; the engine treats both as absent. Avro encoding fills absent nullable
fields with their defaults, so the JSON-shaped dicts the filter builds (removed
fields left out) encode as they are; keys unknown to the schema are ignored.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import fastavro
import orjson
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate as _avro_validate

__all__ = [
    "CONSENT_STATUSES",
    "DecodeError",
    "EncodeError",
    "ERROR_CLASSES",
    "EVENT_TYPES",
    "FORMATS",
    "KINDS",
    "SCHEMAS_DIR",
    "AvroCodec",
    "Codec",
    "JsonCodec",
    "compile_reader",
    "compile_writer",
    "RegistryUnavailable",
    "decode_key",
    "get_codec",
    "load_schema",
    "parsed_schema",
    "registry_client",
    "schema_ids",
    "topic_subject",
]

#: The checked-in schemas, ids map and examples (repository root / schemas).
SCHEMAS_DIR = Path(__file__).resolve().parent.parent.parent / "schemas"

KINDS = (
    "click_event",
    "purchase_event",
    "consent_record",
    "filtered_event",
    "decision_record",
    "erasure_notice",
)
FORMATS = ("json", "avro")

#: Known event types per input event kind.
EVENT_TYPES: dict[str, frozenset[str]] = {
    "click_event": frozenset({"page_view", "product_view", "search", "add_to_cart", "login"}),
    "purchase_event": frozenset({"purchase"}),
}
CONSENT_STATUSES = frozenset({"granted", "denied", "withdrawn"})

#: Every ``DecodeError.error_class``:
#:
#: - ``oversize``: the value is longer than ``max_bytes`` (checked before parsing);
#: - ``invalid_json``: not JSON;
#: - ``not_an_object``: JSON, but not an object;
#: - ``bad_magic``: Avro value whose first byte is not the Confluent magic byte 0;
#: - ``truncated``: Avro value shorter than its header, or whose body ends early;
#: - ``unknown_schema_id``: Avro schema id that is not this kind's (no registry)
#:   or that the registry does not know;
#: - ``schema_mismatch``: the body does not fit the schema (garbage, trailing
#:   bytes, writer schema not resolvable to ours), or a value outside the
#:   schema's vocabulary (unknown ``event_type``, consent ``status``);
#: - ``wrong_type``: a field has the wrong type;
#: - ``missing_field``: a required field is absent or null;
#: - ``invalid_utf8``: a key, JSON value or Avro string is not valid UTF-8.
ERROR_CLASSES = frozenset({
    "oversize",
    "invalid_json",
    "not_an_object",
    "bad_magic",
    "truncated",
    "unknown_schema_id",
    "schema_mismatch",
    "wrong_type",
    "missing_field",
    "invalid_utf8",
})

_MIN_LONG = -(1 << 63)
_MAX_LONG = (1 << 63) - 1
_MAGIC = 0
_unpack_id = struct.Struct(">I").unpack_from
#: How long a schema id the registry said it does not know stays "unknown"
#: before the registry is asked again (bounds registry traffic from garbage).
_NEGATIVE_TTL_S = 60.0
_NEGATIVE_MAX = 10_000


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class DecodeError(Exception):
    """A value or key that does not decode; ``error_class`` is in :data:`ERROR_CLASSES`.

    The message names fields, sizes, offsets and schema ids only, never a
    value from the input.
    """

    def __init__(self, error_class: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.field = field

    def __str__(self) -> str:
        return f"{self.error_class}: {self.args[0]}"


class EncodeError(ValueError):
    """A dict that does not fit the kind's schema (a bug upstream, or a JSON input
    whose payload types Avro rejects). Same privacy rule as :class:`DecodeError`."""

    def __init__(self, error_class: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.field = field

    def __str__(self) -> str:
        return f"{self.error_class}: {self.args[0]}"


class RegistryUnavailable(RuntimeError):
    """The configured schema registry could not answer (network, 5xx, auth).

    Not a property of the record: the runtime should stop or retry, not DLQ.
    """


# --------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------

_schema_lock = threading.Lock()
_raw_schemas: dict[str, dict[str, Any]] = {}
_parsed_schemas: dict[str, dict[str, Any]] = {}
_ids: dict[str, int] | None = None


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")


def load_schema(kind: str) -> dict[str, Any]:
    """The schema of ``kind`` as written in ``schemas/<kind>.avsc`` (a JSON dict)."""
    _check_kind(kind)
    with _schema_lock:
        raw = _raw_schemas.get(kind)
        if raw is None:
            raw = json.loads((SCHEMAS_DIR / f"{kind}.avsc").read_text(encoding="utf-8"))
            _raw_schemas[kind] = raw
        return raw


def parsed_schema(kind: str) -> dict[str, Any]:
    """``fastavro.parse_schema`` of ``kind``'s schema, parsed once."""
    parsed = _parsed_schemas.get(kind)
    if parsed is None:
        raw = load_schema(kind)
        with _schema_lock:
            parsed = _parsed_schemas.get(kind)
            if parsed is None:
                parsed = fastavro.parse_schema(raw)
                _parsed_schemas[kind] = parsed
    return parsed


def schema_ids() -> dict[str, int]:
    """The checked-in Confluent schema ids (``schemas/ids.json``), kind -> id."""
    global _ids
    if _ids is None:
        ids = json.loads((SCHEMAS_DIR / "ids.json").read_text(encoding="utf-8"))
        if set(ids) != set(KINDS) or len(set(ids.values())) != len(ids):
            raise ValueError(f"{SCHEMAS_DIR / 'ids.json'}: needs one distinct id per kind ({', '.join(KINDS)})")
        _ids = {k: int(v) for k, v in ids.items()}
    return _ids


def topic_subject(topic: str) -> str:
    """Confluent ``TopicNameStrategy`` subject of a topic's values: ``<topic>-value``."""
    return f"{topic}-value"


# --------------------------------------------------------------------------
# Validation helpers (shared by both formats). They raise DecodeError.
# --------------------------------------------------------------------------


def _json_type_name(value: Any) -> str:
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
        "wrong_type", f"field {path!r} must be {expected}, got {_json_type_name(value)}", path
    )


def _is_long(value: Any) -> bool:
    return type(value) is int and _MIN_LONG <= value <= _MAX_LONG


def _make_event_check(kind: str) -> Callable[[dict], None]:
    """Envelope checks of an input event: a handful of lookups (hot path)."""
    types = EVENT_TYPES[kind]
    purchase = kind == "purchase_event"
    lo, hi = _MIN_LONG, _MAX_LONG

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


def _check_consent(obj: dict) -> None:
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
            raise DecodeError("wrong_type", f"{where} must be an object, got {_json_type_name(p)}", "purposes")
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
                    f"{where}.{name} must be a 64-bit integer or null, got {_json_type_name(t)}",
                    f"purposes.{name}",
                )
    categories = obj.get("categories")
    if type(categories) is not dict:
        raise _field_error(obj, "categories", "an object")
    for i, c in enumerate(categories.values()):
        if type(c) is not bool:
            raise DecodeError(
                "wrong_type", f"categories[{i}] must be a boolean, got {_json_type_name(c)}", "categories"
            )
    if type(obj.get("jurisdiction")) is not str:
        raise _field_error(obj, "jurisdiction", "a string")
    if type(obj.get("gpc")) is not bool:
        raise _field_error(obj, "gpc", "a boolean")
    tcf = obj.get("tcf")
    if tcf is not None and type(tcf) is not str:
        raise _field_error(obj, "tcf", "a string or null")


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


def _make_generic_check(kind: str) -> Callable[[dict], None]:
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
                    "wrong_type", f"field {name!r} must be {words}, got {_json_type_name(v)}", name
                )

    return check


def _make_check(kind: str) -> Callable[[dict], None]:
    if kind in EVENT_TYPES:
        return _make_event_check(kind)
    if kind == "consent_record":
        return _check_consent
    return _make_generic_check(kind)


# --------------------------------------------------------------------------
# Codecs
# --------------------------------------------------------------------------


class Codec(Protocol):
    kind: str
    fmt: str
    max_bytes: int

    def decode(self, data: bytes) -> dict[str, Any]: ...

    def encode(self, obj: dict[str, Any]) -> bytes: ...


def _oversize(n: int, max_bytes: int) -> DecodeError:
    return DecodeError("oversize", f"value of {n} bytes exceeds the limit of {max_bytes} bytes")


_FAILED = object()


def _json_error(data: bytes, pos: int | None) -> DecodeError:
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
    else:
        start = None
    if start is not None:
        return DecodeError("invalid_utf8", f"value is not valid UTF-8 (byte offset {start})")
    where = f" at char offset {pos}" if pos is not None else ""
    return DecodeError("invalid_json", f"value is not valid JSON{where} ({len(data)} bytes)")


class JsonCodec:
    """JSON (UTF-8) values via orjson, with per-kind structural validation."""

    fmt = "json"

    def __init__(self, kind: str, *, max_bytes: int = 1_048_576) -> None:
        _check_kind(kind)
        self.kind = kind
        self.max_bytes = max_bytes
        self._check = _make_check(kind)

    def decode(self, data: bytes) -> dict[str, Any]:
        # _decode_raw inlined (hot path), then the kind's validation
        if len(data) > self.max_bytes:
            raise _oversize(len(data), self.max_bytes)
        pos = None
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            obj = _FAILED
            pos = exc.pos
        except TypeError:  # not bytes-like at all (a runtime bug, but keep the boundary tight)
            obj = _FAILED
        if obj is _FAILED:  # raised here, outside the except block: no chained error
            raise _json_error(data, pos)
        if type(obj) is not dict:
            raise DecodeError("not_an_object", f"JSON value is {_json_type_name(obj)}, not an object")
        self._check(obj)
        return obj

    def _decode_raw(self, data: bytes) -> dict[str, Any]:
        """``decode`` without the kind's validation (the caller runs ``_check`` or an
        equivalent, e.g. the consent fast path of ``Filter.apply_consent``)."""
        if len(data) > self.max_bytes:
            raise _oversize(len(data), self.max_bytes)
        pos = None
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            obj = _FAILED
            pos = exc.pos
        except TypeError:  # not bytes-like at all (a runtime bug, but keep the boundary tight)
            obj = _FAILED
        if obj is _FAILED:  # raised here, outside the except block: no chained error
            raise _json_error(data, pos)
        if type(obj) is not dict:
            raise DecodeError("not_an_object", f"JSON value is {_json_type_name(obj)}, not an object")
        return obj

    def encode(self, obj: dict[str, Any]) -> bytes:
        try:
            return orjson.dumps(obj)
        except (orjson.JSONEncodeError, TypeError):
            pass
        # orjson's message names the offending type only, but keep one rule for all errors
        raise EncodeError("wrong_type", f"{self.kind}: value is not JSON-serializable")

    def __repr__(self) -> str:
        return f"JsonCodec({self.kind!r}, max_bytes={self.max_bytes})"


def _zero_width(t: Any, named: dict[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """Whether a value of Avro type ``t`` can be encoded in zero bytes."""
    if isinstance(t, str):
        if t == "null":
            return True
        if t in named and t not in seen:
            return _zero_width(named[t], named, seen | {t})
        return False
    if isinstance(t, list):
        return False  # a union index takes at least one byte
    kind = t.get("type")
    if kind == "record":
        return all(_zero_width(f["type"], named, seen) for f in t.get("fields", ()))
    if kind == "fixed":
        return t.get("size") == 0
    if kind == "enum":
        return False
    if isinstance(kind, (str, list, dict)) and kind not in ("array", "map"):
        return _zero_width(kind, named, seen)
    return False


def _has_unbounded_array(t: Any, named: dict[str, Any], seen: set[str] | None = None) -> bool:
    """Arrays of zero-width items let a few bytes claim 2**63 items: refuse such writers."""
    seen = set() if seen is None else seen
    if isinstance(t, str):
        if t in named and t not in seen:
            seen.add(t)
            return _has_unbounded_array(named[t], named, seen)
        return False
    if isinstance(t, list):
        return any(_has_unbounded_array(b, named, seen) for b in t)
    kind = t.get("type")
    if kind == "array":
        return _zero_width(t["items"], named) or _has_unbounded_array(t["items"], named, seen)
    if kind == "map":
        return _has_unbounded_array(t["values"], named, seen)
    if kind == "record":
        return any(_has_unbounded_array(f["type"], named, seen) for f in t.get("fields", ()))
    if isinstance(kind, (list, dict)):
        return _has_unbounded_array(kind, named, seen)
    return False


# --------------------------------------------------------------------------
# Schema compiler: a Python encoder/decoder generated once per schema.
#
# fastavro resolves every union on write by validating the value against each
# branch (a nested record is validated recursively) and dispatches every field
# through generic code on read, which costs ~1 us per nullable field. The
# schemas here use a small subset of Avro (records, arrays, maps, unions with
# null, string, long, int, double, boolean), so each schema is compiled into
# straight-line Python once. fastavro stays the reference: it parses and
# checks the schemas, reads records written with other (registry) schema
# versions, and the tests assert byte-identical output and identical decoding.
# Anything the compiler does not support raises _Unsupported and that kind
# falls back to fastavro.
# --------------------------------------------------------------------------


class _Unsupported(Exception):
    pass


class _Bad(ValueError):
    """Body bytes that no value of the schema encodes to."""


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "double", "string"})
_unpack_double = struct.Struct("<d").unpack_from
_pack_double = struct.Struct("<d").pack
_BYTE = [bytes((i,)) for i in range(128)]
_LEN1 = [bytes((i << 1,)) for i in range(64)]  # varint of zigzag(n) for 0 <= n < 64
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1


def _read_varint(b: bytes, p: int) -> tuple[int, int]:
    """Zigzag varint at ``p`` (its first byte has the continuation bit)."""
    # unrolled up to 6 bytes (epoch-ms timestamps take 6), then the general loop
    x = b[p + 1]
    n = (b[p] & 0x7F) | (x & 0x7F) << 7
    if x < 0x80:
        return (n >> 1) ^ -(n & 1), p + 2
    x = b[p + 2]
    n |= (x & 0x7F) << 14
    if x < 0x80:
        return (n >> 1) ^ -(n & 1), p + 3
    x = b[p + 3]
    n |= (x & 0x7F) << 21
    if x < 0x80:
        return (n >> 1) ^ -(n & 1), p + 4
    x = b[p + 4]
    n |= (x & 0x7F) << 28
    if x < 0x80:
        return (n >> 1) ^ -(n & 1), p + 5
    x = b[p + 5]
    n |= (x & 0x7F) << 35
    if x < 0x80:
        return (n >> 1) ^ -(n & 1), p + 6
    return _read_varint_long(b, p)


def _read_varint_long(b: bytes, p: int) -> tuple[int, int]:
    n = 0
    shift = 0
    while True:
        x = b[p]
        p += 1
        n |= (x & 0x7F) << shift
        if x < 0x80:
            break
        shift += 7
        if shift > 63:
            raise _Bad("varint longer than 10 bytes")
    if n >> 64:
        raise _Bad("varint beyond 64 bits")
    return (n >> 1) ^ -(n & 1), p


def _write_long(n: int) -> bytes | bytearray:
    n = (n << 1) ^ (n >> 63)
    if n < 128:
        return _BYTE[n]
    # unrolled up to 6 bytes (epoch-ms timestamps take 6), then the general loop
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0x200000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
    if n < 0x10000000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21))
    if n < 0x800000000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21 & 0x7F | 0x80,
                      n >> 28))
    if n < 0x40000000000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21 & 0x7F | 0x80,
                      n >> 28 & 0x7F | 0x80, n >> 35))
    out = bytearray()
    while n > 127:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return out


def _zigzag_bytes(n: int) -> bytes:
    return bytes(_write_long(n))


class _Gen:
    """Source emitter with unique local names."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.lines: list[str] = []
        self.n = 0
        self.named: dict[str, Any] = {}
        self.consts: dict[str, Any] = {}
        self.namespace = raw.get("namespace", "")
        self.expanding: set[str] = set()

    def var(self, stem: str = "v") -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def const(self, value: Any) -> str:
        name = f"_K{len(self.consts)}"
        self.consts[name] = value
        return name

    def emit(self, ind: int, line: str) -> None:
        self.lines.append("    " * ind + line)

    def resolve(self, t: Any, namespace: str) -> tuple[Any, str]:
        """(type with named references and {"type": primitive} unwrapped, namespace)."""
        while True:
            if isinstance(t, str):
                if t in _PRIMITIVES:
                    return t, namespace
                full = t if "." in t else f"{namespace}.{t}" if namespace else t
                found = self.named.get(full, self.named.get(t))
                if found is None:
                    raise _Unsupported(f"type {t}")
                if full in self.expanding:
                    raise _Unsupported("recursive type")
                t = found
                continue
            if isinstance(t, dict):
                kind = t.get("type")
                if isinstance(kind, str) and kind in _PRIMITIVES:
                    if t.get("logicalType"):
                        raise _Unsupported("logical type")
                    return kind, namespace
                if kind == "record":
                    name = t["name"]
                    ns = t.get("namespace", namespace if "." not in name else "")
                    full = name if "." in name else f"{ns}.{name}" if ns else name
                    self.named.setdefault(full, t)
                    return t, (full.rsplit(".", 1)[0] if "." in full else "")
                if kind in ("array", "map"):
                    return t, namespace
                raise _Unsupported(f"type {kind}")
            if isinstance(t, list):
                return t, namespace
            raise _Unsupported("type form")

    # -- reader -------------------------------------------------------------

    def read_long(self, ind: int, target: str) -> None:
        self.emit(ind, f"{target} = b[p]")
        self.emit(ind, f"if {target} < 128:")
        self.emit(ind + 1, "p += 1")
        self.emit(ind + 1, f"{target} = ({target} >> 1) ^ -({target} & 1)")
        self.emit(ind, "else:")
        # inline, unrolled to 6 bytes (epoch-ms timestamps take 6); longer: the general loop
        self.emit(ind + 1, "_x = b[p + 1]")
        self.emit(ind + 1, f"{target} = ({target} & 127) | (_x & 127) << 7")
        for k in range(2, 7):
            i = ind + k - 1
            self.emit(i, "if _x < 128:")
            self.emit(i + 1, f"p += {k}")
            self.emit(i + 1, f"{target} = ({target} >> 1) ^ -({target} & 1)")
            self.emit(i, "else:")
            if k < 6:
                self.emit(i + 1, f"_x = b[p + {k}]")
                self.emit(i + 1, f"{target} |= (_x & 127) << {7 * k}")
            else:
                self.emit(i + 1, f"{target}, p = _rvl(b, p)")

    def read(self, t: Any, ns: str, target: str, ind: int) -> None:
        t, ns = self.resolve(t, ns)
        if t == "null":
            self.emit(ind, f"{target} = None")
        elif t == "boolean":
            self.emit(ind, f"{target} = b[p]")
            self.emit(ind, "p += 1")
            self.emit(ind, f"if {target} > 1: raise _Bad('boolean byte')")
            self.emit(ind, f"{target} = {target} == 1")
        elif t in ("long", "int"):
            self.read_long(ind, target)
        elif t == "double":
            self.emit(ind, f"{target} = _ud(b, p)[0]")
            self.emit(ind, "p += 8")
        elif t == "string":
            n, e = self.var("n"), self.var("e")
            self.read_long(ind, n)
            self.emit(ind, f"if {n} < 0: raise _Bad('negative length')")
            self.emit(ind, f"{e} = p + {n}")
            self.emit(ind, f"if {e} > L: raise EOFError")
            self.emit(ind, f"{target} = b[p:{e}].decode()")
            self.emit(ind, f"p = {e}")
        elif isinstance(t, list) and len(t) == 2:
            # a two-branch union's index is one byte, 0x00 or 0x02 (canonical encoding;
            # writers never emit another, and any other byte is rejected as garbage)
            idx = self.var("u")
            self.emit(ind, f"{idx} = b[p]")
            self.emit(ind, "p += 1")
            self.emit(ind, f"if {idx} == 0:")
            self.read(t[0], ns, target, ind + 1)
            self.emit(ind, f"elif {idx} == 2:")
            self.read(t[1], ns, target, ind + 1)
            self.emit(ind, "else:")
            self.emit(ind + 1, "raise _Bad('union index')")
        elif isinstance(t, list):
            if not t:
                raise _Unsupported("empty union")
            idx = self.var("u")
            self.read_long(ind, idx)
            for i, branch in enumerate(t):
                self.emit(ind, f"{'if' if i == 0 else 'elif'} {idx} == {i}:")
                self.read(branch, ns, target, ind + 1)
            self.emit(ind, "else:")
            self.emit(ind + 1, "raise _Bad('union index')")
        elif t["type"] == "record":
            names = []
            for f in t["fields"]:
                v = self.var("f")
                self.read(f["type"], ns, v, ind)
                names.append(f"{f['name']!r}: {v}")
            self.emit(ind, f"{target} = {{{', '.join(names)}}}")
        elif t["type"] in ("array", "map"):
            is_map = t["type"] == "map"
            inner = t["values"] if is_map else t["items"]
            if _zero_width(self.resolve(inner, ns)[0], self.named):
                raise _Unsupported("zero-width items")
            cnt, item = self.var("c"), self.var("i")
            self.emit(ind, f"{target} = {{}}" if is_map else f"{target} = []")
            self.emit(ind, "while True:")
            self.read_long(ind + 1, cnt)
            self.emit(ind + 1, f"if {cnt} == 0: break")
            self.emit(ind + 1, f"if {cnt} < 0:")
            self.emit(ind + 2, f"{cnt} = -{cnt}")
            skip = self.var("s")
            self.read_long(ind + 2, skip)
            self.emit(ind + 1, f"if {cnt} > L - p: raise EOFError")  # every item takes >= 1 byte
            self.emit(ind + 1, f"for _ in range({cnt}):")
            if is_map:
                key = self.var("k")
                self.read("string", ns, key, ind + 2)
                self.read(inner, ns, item, ind + 2)
                self.emit(ind + 2, f"{target}[{key}] = {item}")
            else:
                self.read(inner, ns, item, ind + 2)
                self.emit(ind + 2, f"{target}.append({item})")
        else:
            raise _Unsupported("type")

    # -- writer -------------------------------------------------------------

    def write(self, t: Any, ns: str, v: str, ind: int) -> None:
        t, ns = self.resolve(t, ns)
        if t == "null":
            self.emit(ind, f"if {v} is not None: raise _Bad")
        elif t == "boolean":
            self.emit(ind, f"if {v} is True: out += b'\\x01'")
            self.emit(ind, f"elif {v} is False: out += b'\\x00'")
            self.emit(ind, "else: raise _Bad")
        elif t in ("long", "int"):
            lo, hi = (_MIN_LONG, _MAX_LONG) if t == "long" else (_INT_MIN, _INT_MAX)
            self.emit(ind, f"if type({v}) is not int or not {lo} <= {v} <= {hi}: raise _Bad")
            self.emit(ind, f"out += _wl({v})")
        elif t == "double":
            self.emit(ind, f"if type({v}) is not float and type({v}) is not int: raise _Bad")
            self.emit(ind, f"out += _pd({v})")
        elif t == "string":
            e, n = self.var("e"), self.var("n")
            self.emit(ind, f"{e} = {v}.encode()")  # AttributeError for non-strings
            self.emit(ind, f"{n} = len({e})")
            self.emit(ind, f"out += _L1[{n}] if {n} < 64 else _wl({n})")
            self.emit(ind, f"out += {e}")
        elif isinstance(t, list):
            resolved = [self.resolve(b, ns)[0] for b in t]
            others = [i for i, b in enumerate(resolved) if b != "null"]
            nulls = [i for i, b in enumerate(resolved) if b == "null"]
            if len(others) != 1 or len(nulls) > 1:
                raise _Unsupported("union other than [null, T]")
            i = others[0]
            if nulls:
                self.emit(ind, f"if {v} is None: out += {_zigzag_bytes(nulls[0])!r}")
                self.emit(ind, "else:")
                ind += 1
            self.emit(ind, f"out += {_zigzag_bytes(i)!r}")
            self.write(t[i], ns, v, ind)
        elif t["type"] == "record":
            self.emit(ind, f"if type({v}) is not dict: raise _Bad")
            for f in t["fields"]:
                fv = self.var("f")
                if "default" not in f:
                    self.emit(ind, f"{fv} = {v}[{f['name']!r}]")
                elif f["default"] is None:
                    self.emit(ind, f"{fv} = {v}.get({f['name']!r})")
                else:
                    default = f["default"]
                    if isinstance(default, (list, dict)):
                        default = tuple(default) if isinstance(default, list) else default
                    self.emit(ind, f"{fv} = {v}.get({f['name']!r}, {self.const(default)})")
                self.write(f["type"], ns, fv, ind)
        elif t["type"] == "array":
            item = self.var("i")
            self.emit(ind, f"if type({v}) is not list and type({v}) is not tuple: raise _Bad")
            self.emit(ind, f"if {v}:")
            self.emit(ind + 1, f"out += _wl(len({v}))")
            self.emit(ind + 1, f"for {item} in {v}:")
            self.write(t["items"], ns, item, ind + 2)
            self.emit(ind, "out += b'\\x00'")
        elif t["type"] == "map":
            key, item = self.var("k"), self.var("i")
            self.emit(ind, f"if type({v}) is not dict: raise _Bad")
            self.emit(ind, f"if {v}:")
            self.emit(ind + 1, f"out += _wl(len({v}))")
            self.emit(ind + 1, f"for {key}, {item} in {v}.items():")
            self.emit(ind + 2, f"if type({key}) is not str: raise _Bad")
            self.write("string", ns, key, ind + 2)
            self.write(t["values"], ns, item, ind + 2)
            self.emit(ind, "out += b'\\x00'")
        else:
            raise _Unsupported("type")


def _compile(raw: dict[str, Any], what: str) -> Callable:
    gen = _Gen(raw)
    if what == "reader":
        gen.emit(0, "def read(b, p, L):")
        gen.read(raw, "", "r", 1)
        gen.emit(1, "return r, p")
    else:
        gen.emit(0, "def write(out, o):")
        gen.write(raw, "", "o", 1)
        gen.emit(1, "return out")
    namespace: dict[str, Any] = {
        "_rv": _read_varint, "_rvl": _read_varint_long, "_ud": _unpack_double, "_Bad": _Bad, "_wl": _write_long,
        "_pd": _pack_double, "_L1": _LEN1, **gen.consts,
    }
    code = compile("\n".join(gen.lines) + "\n", f"<avro {what} {raw.get('name')}>", "exec")
    exec(code, namespace)  # noqa: S102 - source generated from our own schema files
    return namespace["read" if what == "reader" else "write"]


def compile_reader(raw: dict[str, Any]) -> Callable[[bytes, int, int], tuple[Any, int]] | None:
    """``read(b, p, L) -> (value, end)`` for schema ``raw``, or None if unsupported.

    Raises IndexError/EOFError (body ends early), UnicodeDecodeError, _Bad (garbage)."""
    try:
        return _compile(raw, "reader")
    except _Unsupported:
        return None


def compile_writer(raw: dict[str, Any]) -> Callable[[bytearray, Any], bytearray] | None:
    """``write(out, value) -> out`` for schema ``raw``, or None if unsupported.

    Raises (_Bad, KeyError, AttributeError, ...) when the value does not fit."""
    try:
        return _compile(raw, "writer")
    except _Unsupported:
        return None


class AvroCodec:
    """Avro values in the Confluent wire format (magic 0, 4-byte id, binary body)."""

    fmt = "avro"

    def __init__(
        self,
        kind: str,
        *,
        max_bytes: int = 1_048_576,
        schema_id: int | None = None,
        registry: Any = None,
        subject: str | None = None,
        compiled: bool = True,
    ) -> None:
        """Without ``registry``: ``schema_id`` (default: ``schemas/ids.json``) is the only
        id written and accepted. With ``registry`` (a confluent-kafka
        ``SchemaRegistryClient``, or anything with its ``register_schema`` and
        ``get_schema``): the id is registered on first encode under ``subject``
        (default: the record's full name) and unknown ids are fetched on decode.
        ``compiled=False`` uses fastavro for everything instead of the compiled
        reader and writer (which fastavro backs up for other writer schemas)."""
        _check_kind(kind)
        self.kind = kind
        self.max_bytes = max_bytes
        self._raw = load_schema(kind)
        self._schema = parsed_schema(kind)
        self._canonical = to_parsing_canonical_form(self._schema)
        self._check = _make_check(kind) if kind in EVENT_TYPES or kind == "consent_record" else None
        self._read = compile_reader(self._raw) if compiled else None
        self._write = compile_writer(self._raw) if compiled else None
        self._registry = registry
        self.subject = subject or f"{self._raw['namespace']}.{self._raw['name']}"
        self._lock = threading.Lock()
        self._negative: dict[int, float] = {}  # id -> monotonic time until which it is unknown
        self._rejected: dict[int, str] = {}  # id -> why its writer schema is unusable
        self._writers: dict[int, dict[str, Any]] = {}
        self._header: bytes | None = None
        self.schema_id: int | None = None
        if registry is None:
            sid = schema_ids()[kind] if schema_id is None else schema_id
            self._set_own_id(sid)
        elif schema_id is not None:
            self._set_own_id(schema_id)

    def _set_own_id(self, sid: int) -> None:
        if not 0 <= sid <= 0xFFFFFFFF:
            raise ValueError(f"schema id {sid} does not fit 4 bytes")
        self.schema_id = sid
        self._writers[sid] = self._schema
        self._header = bytes((_MAGIC,)) + sid.to_bytes(4, "big")

    # -- decode -------------------------------------------------------------

    def decode(self, data: bytes) -> dict[str, Any]:
        obj = self._decode_raw(data)
        if self._check is not None:
            self._check(obj)
        return obj

    def _decode_raw(self, data: bytes) -> dict[str, Any]:
        """``decode`` without the kind's validation (see ``JsonCodec._decode_raw``)."""
        n = len(data)
        if n > self.max_bytes:
            raise _oversize(n, self.max_bytes)
        if n < 5:
            if n and data[0] != _MAGIC:
                raise DecodeError("bad_magic", f"first byte is {data[0]}, not the magic byte 0")
            raise DecodeError("truncated", f"value of {n} bytes is shorter than the 5-byte header")
        if data[0] != _MAGIC:
            raise DecodeError("bad_magic", f"first byte is {data[0]}, not the magic byte 0")
        sid = _unpack_id(data, 1)[0]
        writer = self._writers.get(sid)
        if writer is None:
            writer = self._writer_for(sid)
        error = None
        read = self._read
        if read is not None and writer is self._schema:
            if type(data) is not bytes:
                data = bytes(data)
            try:
                obj, end = read(data, 5, n)
            except (IndexError, EOFError, struct.error):
                error = ("truncated", "body ends early")
            except UnicodeDecodeError as exc:
                error = ("invalid_utf8", f"a string is not valid UTF-8 ({exc.reason})")
            except Exception as exc:  # noqa: BLE001 - _Bad, and anything else garbage provokes
                error = ("schema_mismatch", f"body does not fit the schema ({type(exc).__name__})")
        else:
            fo = io.BytesIO(data)
            fo.seek(5)
            try:
                if writer is self._schema:
                    obj = fastavro.schemaless_reader(fo, writer, None)
                else:
                    obj = fastavro.schemaless_reader(fo, writer, self._schema)
                end = fo.tell()
            except EOFError:
                error = ("truncated", "body ends early")
            except UnicodeDecodeError as exc:
                error = ("invalid_utf8", f"a string is not valid UTF-8 ({exc.reason})")
            except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds on garbage
                error = ("schema_mismatch", f"body does not fit the schema ({type(exc).__name__})")
        if error is not None:  # raised here, outside the except block: no chained error
            raise DecodeError(error[0], f"{error[1]}; schema id {sid}, {n} bytes")
        if end != n:
            raise DecodeError(
                "schema_mismatch", f"{n - end} trailing bytes after the body; schema id {sid}, {n} bytes"
            )
        if type(obj) is not dict:  # only a writer schema from the registry could do this
            raise DecodeError("schema_mismatch", f"schema id {sid} does not describe a record")
        return obj

    def _writer_for(self, sid: int) -> dict[str, Any]:
        if self._registry is None:
            raise DecodeError(
                "unknown_schema_id", f"schema id {sid} is not the {self.kind} id {self.schema_id}"
            )
        with self._lock:
            writer = self._writers.get(sid)
            if writer is not None:
                return writer
            rejected = self._rejected.get(sid)
            if rejected is not None:  # schemas under an id never change: rejected for good
                raise DecodeError("schema_mismatch", rejected)
            now = time.monotonic()
            until = self._negative.get(sid)
            if until is not None and now < until:
                raise DecodeError("unknown_schema_id", f"schema id {sid} is not in the registry")
            from confluent_kafka.schema_registry.error import SchemaRegistryError

            status = None
            failure = None
            try:
                schema = self._registry.get_schema(sid)
            except SchemaRegistryError as exc:
                status = exc.http_status_code
                failure = type(exc).__name__
            except Exception as exc:  # noqa: BLE001 - network errors of httpx and friends
                failure = type(exc).__name__
            if failure is not None:
                if status == 404:
                    if len(self._negative) >= _NEGATIVE_MAX:
                        self._negative.clear()
                    self._negative[sid] = now + _NEGATIVE_TTL_S
                    raise DecodeError("unknown_schema_id", f"schema id {sid} is not in the registry")
                raise RegistryUnavailable(
                    f"schema registry failed fetching id {sid}: {failure} (status {status})"
                )
            writer, problem = self._parse_writer(schema)
            if writer is None:
                message = f"writer schema id {sid} {problem}"
                if len(self._rejected) < _NEGATIVE_MAX:
                    self._rejected[sid] = message
                raise DecodeError("schema_mismatch", message)
            self._writers[sid] = writer
            return writer

    def _parse_writer(self, schema: Any) -> tuple[dict[str, Any] | None, str]:
        """(parsed writer schema, "") or (None, what is wrong with it)."""
        stype = getattr(schema, "schema_type", None) or "AVRO"
        if stype != "AVRO":
            return None, f"is a {stype} schema, not Avro"
        named: dict[str, Any] = {}
        try:
            parsed = fastavro.parse_schema(json.loads(schema.schema_str), named_schemas=named)
        except Exception as exc:  # noqa: BLE001
            return None, f"does not parse ({type(exc).__name__})"
        if to_parsing_canonical_form(parsed) == self._canonical:
            return self._schema, ""  # our schema under another id: no resolution needed
        if _has_unbounded_array(parsed, named):
            return None, "has an array of zero-width items"
        return parsed, ""

    # -- encode -------------------------------------------------------------

    def _register(self) -> bytes:
        with self._lock:
            if self._header is None:
                from confluent_kafka.schema_registry import Schema

                failure = None
                try:
                    sid = self._registry.register_schema(
                        self.subject, Schema(json.dumps(self._raw), "AVRO")
                    )
                except Exception as exc:  # noqa: BLE001
                    failure = type(exc).__name__
                if failure is not None:
                    raise RegistryUnavailable(
                        f"schema registry failed registering subject {self.subject!r}: {failure}"
                    )
                self._set_own_id(int(sid))
            return self._header  # type: ignore[return-value]

    def encode(self, obj: dict[str, Any]) -> bytes:
        header = self._header or self._register()
        failed = False
        write = self._write
        if write is not None:
            try:
                return bytes(write(bytearray(header), obj))
            except Exception:  # noqa: BLE001 - KeyError, AttributeError, _Bad, OverflowError...
                failed = True
        else:
            fo = io.BytesIO()
            fo.write(header)
            try:
                fastavro.schemaless_writer(fo, self._schema, obj)
                return fo.getvalue()
            except Exception:  # noqa: BLE001
                failed = True
        # raised here, outside the except block: fastavro's messages quote values
        raise self._encode_error(obj)

    def _encode_error(self, obj: Any) -> EncodeError:
        if not isinstance(obj, dict):
            return EncodeError("wrong_type", f"{self.kind}: value is {_json_type_name(obj)}, not an object")
        try:
            _make_generic_check(self.kind)(obj)
        except DecodeError as exc:
            return EncodeError(exc.error_class, f"{self.kind}: {exc.args[0]}", exc.field)
        fields: list[str] = []
        try:
            _avro_validate(obj, self._schema, raise_errors=True)
        except Exception as exc:  # noqa: BLE001
            prefix = f"{self._raw['namespace']}.{self._raw['name']}."
            for e in getattr(exc, "errors", ()):
                name = str(getattr(e, "field", "") or "")
                fields.append(name[len(prefix):] if name.startswith(prefix) else name)
        where = f" (fields: {', '.join(sorted(set(fields)))})" if fields else ""
        return EncodeError("wrong_type", f"{self.kind}: a nested value does not fit the schema{where}")

    def __repr__(self) -> str:
        return f"AvroCodec({self.kind!r}, schema_id={self.schema_id}, subject={self.subject!r})"


# --------------------------------------------------------------------------
# Factory, registry clients, keys
# --------------------------------------------------------------------------

_codecs: dict[tuple, Codec] = {}
_registries: dict[str, Any] = {}
_factory_lock = threading.Lock()


def registry_client(url: str) -> Any:
    """One confluent-kafka ``SchemaRegistryClient`` per URL (``mock://...``: the in-process mock)."""
    with _factory_lock:
        client = _registries.get(url)
        if client is None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            client = SchemaRegistryClient.new_client({"url": url})
            _registries[url] = client
        return client


def get_codec(
    kind: str,
    fmt: str,
    *,
    registry_url: str | None = None,
    max_bytes: int = 1_048_576,
    subject: str | None = None,
) -> Codec:
    """The (cached) codec of ``kind`` in format ``fmt`` (``json`` or ``avro``).

    ``registry_url`` and ``subject`` only matter for Avro; see the module doc.
    """
    _check_kind(kind)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected json or avro")
    if fmt == "json":
        key: tuple = (kind, fmt, max_bytes)
    else:
        key = (kind, fmt, max_bytes, registry_url, subject)
    codec = _codecs.get(key)
    if codec is not None:
        return codec
    if fmt == "json":
        new: Codec = JsonCodec(kind, max_bytes=max_bytes)
    else:
        registry = registry_client(registry_url) if registry_url else None
        new = AvroCodec(kind, max_bytes=max_bytes, registry=registry, subject=subject)
    with _factory_lock:
        return _codecs.setdefault(key, new)


def decode_key(key: bytes | None) -> str | None:
    """A record key as text (subject id); ``None`` stays ``None``."""
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError as exc:
        start, n = exc.start, len(key)
    except AttributeError:
        start, n = None, -1
    if start is None:
        raise DecodeError("invalid_utf8", "key is not bytes")
    raise DecodeError("invalid_utf8", f"key is not valid UTF-8 (byte offset {start} of {n})")
