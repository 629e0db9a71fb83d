"""Avro values in the Confluent wire format (magic 0, 4-byte big-endian id, binary body).

Without a registry the ids come from the checked-in map ``schemas/ids.json``
and a record carrying any other id is ``unknown_schema_id``. With a registry
the codec registers its schema (on first encode) under ``subject`` and
resolves unknown writer ids through the registry once, caching them; records
written with another (compatible) schema version are resolved to the reader
schema in ``schemas/``. Our own schema is read and written by the compiled
code of ``avro_compiler``; fastavro reads other writer schemas and does it all
when a codec is built with ``compiled=False``.

Avro decoding yields ``None`` for absent nullable fields. Encoding fills absent
nullable fields with their defaults, so the JSON-shaped dicts the filter builds
(removed fields left out) encode as they are; keys unknown to the schema are
ignored.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate as _avro_validate

from streams.engine.codecs.avro_compiler import compile_reader, compile_writer, has_unbounded_array
from streams.engine.codecs.checks import json_type_name, make_check, make_generic_check
from streams.engine.codecs.errors import DecodeError, EncodeError, RegistryUnavailable, oversize
from streams.engine.codecs.schemas import check_kind, earlier_writers, load_schema, parsed_schema, schema_ids
from streams.engine.vocab import EVENT_TYPES

_MAGIC = 0
_unpack_id = struct.Struct(">I").unpack_from
#: How long a schema id the registry said it does not know stays "unknown"
#: before the registry is asked again (bounds registry traffic from garbage).
_NEGATIVE_TTL_S = 60.0
_NEGATIVE_MAX = 10_000


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
        check_kind(kind)
        self.kind = kind
        self.max_bytes = max_bytes
        self._raw = load_schema(kind)
        self._schema = parsed_schema(kind)
        self._canonical = to_parsing_canonical_form(self._schema)
        #: the kind's validation, run by ``decode`` (None: outputs, whose schema is the check)
        self.check = make_check(kind) if kind in EVENT_TYPES or kind == "consent_record" else None
        self._read = compile_reader(self._raw) if compiled else None
        self._write = compile_writer(self._raw) if compiled else None
        self._registry = registry
        self.subject = subject or f"{self._raw['namespace']}.{self._raw['name']}"
        self._lock = threading.Lock()
        self._negative: dict[int, float] = {}  # id -> monotonic time until which it is unknown
        self._rejected: dict[int, str] = {}  # id -> why its writer schema is unusable
        self._writers: dict[int, dict[str, Any]] = {}
        #: magic byte and schema id: the first 5 bytes of every value (None until registered)
        self.header: bytes | None = None
        self.schema_id: int | None = None
        if registry is None:
            sid = schema_ids()[kind] if schema_id is None else schema_id
            self._set_own_id(sid)
            # records written under an earlier checked-in id keep decoding (schema resolution)
            for old, writer in earlier_writers(kind).items():
                self._writers.setdefault(old, writer)
        elif schema_id is not None:
            self._set_own_id(schema_id)

    def _set_own_id(self, sid: int) -> None:
        if not 0 <= sid <= 0xFFFFFFFF:
            raise ValueError(f"schema id {sid} does not fit 4 bytes")
        self.schema_id = sid
        self._writers[sid] = self._schema
        self.header = bytes((_MAGIC,)) + sid.to_bytes(4, "big")

    # -- decode -------------------------------------------------------------

    def decode(self, data: bytes) -> dict[str, Any]:
        obj = self.decode_unchecked(data)
        if self.check is not None:
            self.check(obj)
        return obj

    def decode_unchecked(self, data: bytes) -> dict[str, Any]:
        """``decode`` without the kind's validation (see ``JsonCodec.decode_unchecked``)."""
        n = len(data)
        if n > self.max_bytes:
            raise oversize(n, self.max_bytes)
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
        if has_unbounded_array(parsed, named):
            return None, "has an array of zero-width items"
        return parsed, ""

    # -- encode -------------------------------------------------------------

    def _register(self) -> bytes:
        with self._lock:
            if self.header is None:
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
            return self.header  # type: ignore[return-value]

    def encode(self, obj: dict[str, Any]) -> bytes:
        header = self.header or self._register()
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
            return EncodeError("wrong_type", f"{self.kind}: value is {json_type_name(obj)}, not an object")
        try:
            make_generic_check(self.kind)(obj)
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
