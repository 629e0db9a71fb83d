"""Value codecs: JSON (orjson) and Avro (fastavro, Confluent wire format).

One codec per (record kind, format), built once and cached by :func:`get_codec`
(``registry``):

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

Modules, one concern each: ``errors`` (DecodeError, EncodeError,
RegistryUnavailable), ``schemas`` (the schema files and ids), ``checks``
(validation of decoded records), ``json_codec``, ``varint`` (Avro varints),
``avro_compiler`` (generated readers and writers), ``avro_codec``, ``registry``
(factory, registry clients, keys). Everything public is importable from
``streams.engine.codecs`` as before.
"""

from __future__ import annotations

from streams.engine.codecs.avro_codec import AvroCodec
from streams.engine.codecs.avro_compiler import compile_reader, compile_writer
from streams.engine.codecs.checks import CONSENT_STATUSES, check_consent
from streams.engine.codecs.errors import ERROR_CLASSES, DecodeError, EncodeError, RegistryUnavailable
from streams.engine.codecs.json_codec import JsonCodec
from streams.engine.codecs.registry import Codec, decode_key, get_codec, registry_client
from streams.engine.codecs.schemas import (
    FORMATS, KINDS, SCHEMAS_DIR, load_schema, parsed_schema, schema_ids, topic_subject,
)
from streams.engine.vocab import EVENT_TYPES

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
    "check_consent",
    "RegistryUnavailable",
    "decode_key",
    "get_codec",
    "load_schema",
    "parsed_schema",
    "registry_client",
    "schema_ids",
    "topic_subject",
]
