"""JSON values (UTF-8) via orjson, with the kind's structural validation (``checks``).

Payload field types are not checked for JSON events: a JSON input whose payload
field has a type the Avro schema rejects decodes fine and fails only if it is
re-encoded as Avro (:class:`EncodeError`). JSON leaves absent nullable fields
out; the engine treats that like Avro's None.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.engine.codecs.checks import json_type_name, make_check
from streams.engine.codecs.errors import DecodeError, EncodeError, oversize
from streams.engine.codecs.schemas import check_kind

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
        check_kind(kind)
        self.kind = kind
        self.max_bytes = max_bytes
        #: the kind's validation, run by ``decode`` after parsing
        self.check = make_check(kind)

    def decode(self, data: bytes) -> dict[str, Any]:
        # One call more than inlining decode_unchecked: ~0.05 µs against the ~10 µs a
        # Python-engine event costs (bench engine), not worth two copies of the parse.
        obj = self.decode_unchecked(data)
        self.check(obj)
        return obj

    def decode_unchecked(self, data: bytes) -> dict[str, Any]:
        """``decode`` without the kind's validation (the caller runs ``check`` or an
        equivalent, e.g. the consent fast path of ``Filter.apply_consent``)."""
        if len(data) > self.max_bytes:
            raise oversize(len(data), self.max_bytes)
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
            raise DecodeError("not_an_object", f"JSON value is {json_type_name(obj)}, not an object")
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
