"""The codec factory (one cached codec per kind and format), registry clients, record keys."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from streams.engine.codecs.avro_codec import AvroCodec
from streams.engine.codecs.errors import DecodeError
from streams.engine.codecs.json_codec import JsonCodec
from streams.engine.codecs.schemas import FORMATS, check_kind


class Codec(Protocol):
    kind: str
    fmt: str
    max_bytes: int

    def decode(self, data: bytes) -> dict[str, Any]: ...

    def encode(self, obj: dict[str, Any]) -> bytes: ...


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
    check_kind(kind)
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
