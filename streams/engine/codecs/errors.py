"""Errors of the codecs: the one boundary where untrusted bytes enter the filter.

Every decode failure is a :class:`DecodeError` whose ``error_class`` is one short
code (:data:`ERROR_CLASSES`) that the runtime puts in the DLQ headers and the
decision record's ``reason``. Messages name fields, sizes, offsets and schema
ids, never a value from the input (CONTRACT G6).
"""

from __future__ import annotations

from streams.errors import PFilterError

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


class _ClassedError(PFilterError):
    """An error with an ``error_class`` (the DLQ reason) and the field it concerns."""

    def __init__(self, error_class: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.field = field

    def __str__(self) -> str:
        return f"{self.error_class}: {self.args[0]}"


class DecodeError(_ClassedError):
    """A value or key that does not decode; ``error_class`` is in :data:`ERROR_CLASSES`.

    The message names fields, sizes, offsets and schema ids only, never a
    value from the input.
    """


class EncodeError(_ClassedError, ValueError):
    """A dict that does not fit the kind's schema (a bug upstream, or a JSON input
    whose payload types Avro rejects). Same privacy rule as :class:`DecodeError`."""


class RegistryUnavailable(PFilterError, RuntimeError):
    """The configured schema registry could not answer (network, 5xx, auth).

    Not a property of the record: the runtime should stop or retry, not DLQ.
    """


def oversize(n: int, max_bytes: int) -> DecodeError:
    """The error of a value longer than the codec's limit (checked before parsing)."""
    return DecodeError("oversize", f"value of {n} bytes exceeds the limit of {max_bytes} bytes")
