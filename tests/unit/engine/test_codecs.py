"""Codecs: JSON and Avro (Confluent wire format), their errors and their privacy rule."""

from __future__ import annotations

import copy
import io
import json
import struct
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine import codecs
from streams.engine.codecs import (
    ERROR_CLASSES,
    KINDS,
    SCHEMAS_DIR,
    AvroCodec,
    DecodeError,
    EncodeError,
    JsonCodec,
    RegistryUnavailable,
    decode_key,
    get_codec,
    load_schema,
    parsed_schema,
    schema_ids,
    topic_subject,
)

FORMATS = ("json", "avro")


def example(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS_DIR / "examples" / f"{name}.json").read_text())


PAGE_VIEW = example("click_event.page_view")
PURCHASE = example("purchase_event.purchase")
CONSENT = example("consent_record.all_purposes")
FILTERED = example("filtered_event.partner_ads")


def jbytes(obj: Any) -> bytes:
    return orjson.dumps(obj)


def avro_body(kind: str, obj: dict) -> bytes:
    """The Avro body as fastavro writes it (the reference)."""
    fo = io.BytesIO()
    fastavro.schemaless_writer(fo, parsed_schema(kind), obj)
    return fo.getvalue()


def header(schema_id: int) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id)


def error_of(fn, *args) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        fn(*args)
    err = info.value
    assert err.error_class in ERROR_CLASSES
    # raised outside the except block that caught the cause: nothing chained
    assert err.__cause__ is None and err.__context__ is None
    return err


# --- factory --------------------------------------------------------------------


def test_get_codec_builds_once_per_kind_and_format() -> None:
    for kind in KINDS:
        for fmt in FORMATS:
            codec = get_codec(kind, fmt)
            assert codec is get_codec(kind, fmt)
            assert codec.kind == kind and codec.fmt == fmt
    assert isinstance(get_codec("click_event", "json"), JsonCodec)
    assert isinstance(get_codec("click_event", "avro"), AvroCodec)
    assert get_codec("click_event", "json", max_bytes=10) is not get_codec("click_event", "json")


def test_get_codec_rejects_unknown_kind_and_format() -> None:
    with pytest.raises(ValueError, match="kind"):
        get_codec("clicks", "json")
    with pytest.raises(ValueError, match="format"):
        get_codec("click_event", "xml")


def test_avro_wire_format_uses_the_checked_in_id() -> None:
    ids = schema_ids()
    for kind in KINDS:
        codec = get_codec(kind, "avro")
        assert codec.schema_id == ids[kind]
    data = get_codec("click_event", "avro").encode(PAGE_VIEW)
    assert data[:5] == header(ids["click_event"])
    assert data[5:] == avro_body("click_event", PAGE_VIEW)


# --- round trips ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_anonymous_event_without_context_decodes(fmt: str) -> None:
    event = {"event_id": "e1", "anonymous_id": "a1", "event_type": "search", "ts": 5, "query": "q"}
    codec = get_codec("click_event", fmt)
    decoded = codec.decode(codec.encode(event))
    assert decoded["subject_id"] is None if fmt == "avro" else "subject_id" not in decoded
    assert decoded.get("context") is None
    assert decoded["query"] == "q"


def test_json_accepts_null_subject_and_context() -> None:
    event = {"event_id": "e", "event_type": "login", "ts": 1, "subject_id": None, "context": None}
    assert get_codec("click_event", "json").decode(jbytes(event)) == event


def test_avro_encode_fills_absent_nullable_fields() -> None:
    # what the filter emits: removed fields are left out, not null
    out = {"event_id": "e", "subject_id": "s", "event_type": "page_view", "ts": 1,
           "context": {"geo": {"country": "DE"}}, "url": "u",
           "consent_version": 2, "policy_version": "p", "purposes": ("personalization",), "engine": "x"}
    codec = get_codec("filtered_event", "avro")
    decoded = codec.decode(codec.encode(out))
    assert decoded["url"] == "u" and decoded["title"] is None and decoded["email"] is None
    assert decoded["context"]["geo"] == {"country": "DE", "region": None, "city": None, "lat": None, "lon": None}
    assert decoded["context"]["ip"] is None
    assert decoded["purposes"] == ["personalization"]


def test_avro_decision_record_defaults() -> None:
    codec = get_codec("decision_record", "avro")
    record = example("decision_record.dlq")
    del record["engines"]
    assert codec.decode(codec.encode(record))["engines"] == []
    record = example("decision_record.decided")
    del record["engines"][1]["categories_sent"]
    del record["engines"][1]["reason"]
    entry = codec.decode(codec.encode(record))["engines"][1]
    assert entry["categories_sent"] == [] and entry["reason"] is None


def test_avro_ignores_unknown_keys_on_encode() -> None:
    codec = get_codec("erasure_notice", "avro")
    notice = example("erasure_notice.partner_ads")
    assert codec.decode(codec.encode({**notice, "extra": object()})) == notice


@pytest.mark.parametrize("compiled", [True, False])
def test_compiled_and_fastavro_paths_agree_on_examples(compiled: bool) -> None:
    for path in sorted((SCHEMAS_DIR / "examples").glob("*.json")):
        kind = path.name.split(".")[0]
        record = json.loads(path.read_text())
        codec = AvroCodec(kind, compiled=compiled)
        data = codec.encode(record)
        assert data[5:] == avro_body(kind, record)
        assert codec.decode(data) == fastavro.schemaless_reader(io.BytesIO(data[5:]), parsed_schema(kind), None)


# --- every error class --------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_oversize_is_checked_before_parsing(fmt: str) -> None:
    codec = get_codec("click_event", fmt, max_bytes=64)
    err = error_of(codec.decode, b"\x00" * 65)
    assert err.error_class == "oversize"
    assert "65" in str(err) and "64" in str(err)
    assert codec.decode(get_codec("click_event", fmt).encode(
        {"event_id": "e", "event_type": "login", "ts": 1}))["event_id"] == "e"


@pytest.mark.parametrize("data", [b"", b"{", b'{"event_id": "e",', b"nope", b'{"a":1}x', b"\xef\xbb\xbf{}"])
def test_invalid_json(data: bytes) -> None:
    assert error_of(get_codec("click_event", "json").decode, data).error_class == "invalid_json"


def test_invalid_utf8_inside_json() -> None:
    data = b'{"event_id": "\xff\xfe", "event_type": "login", "ts": 1}'
    assert error_of(get_codec("click_event", "json").decode, data).error_class == "invalid_utf8"


@pytest.mark.parametrize("data", [b"[1, 2]", b'"text"', b"null", b"42", b"true"])
@pytest.mark.parametrize("kind", KINDS)
def test_not_an_object(kind: str, data: bytes) -> None:
    assert error_of(get_codec(kind, "json").decode, data).error_class == "not_an_object"


@pytest.mark.parametrize("data", [b"\x01\x00\x00\x00\x01\x02", b"{}", b"\x7f", b'{"event_id": "e"}'])
def test_bad_magic(data: bytes) -> None:
    assert error_of(get_codec("click_event", "avro").decode, data).error_class == "bad_magic"


def test_truncated_header() -> None:
    for data in (b"", b"\x00", b"\x00\x00\x00\x00"):
        assert error_of(get_codec("click_event", "avro").decode, data).error_class == "truncated"


@pytest.mark.parametrize("kind,record", [("click_event", PAGE_VIEW), ("purchase_event", PURCHASE),
                                         ("consent_record", CONSENT), ("filtered_event", FILTERED)])
def test_every_prefix_of_a_record_is_truncated(kind: str, record: dict) -> None:
    codec = AvroCodec(kind)
    data = codec.encode(record)
    for cut in range(len(data)):
        assert error_of(codec.decode, data[:cut]).error_class == "truncated", cut
    # the fastavro path reports a cut body as truncated or as not fitting, never anything else
    slow = AvroCodec(kind, compiled=False)
    for cut in range(5, len(data)):
        assert error_of(slow.decode, data[:cut]).error_class in {"truncated", "schema_mismatch"}


def test_unknown_schema_id() -> None:
    codec = get_codec("click_event", "avro")
    body = codec.encode(PAGE_VIEW)[5:]
    err = error_of(codec.decode, header(999) + body)
    assert err.error_class == "unknown_schema_id" and "999" in str(err)
    purchase = get_codec("purchase_event", "avro").encode(PURCHASE)
    assert error_of(codec.decode, purchase).error_class == "unknown_schema_id"


@pytest.mark.parametrize("compiled", [True, False])
def test_schema_mismatch_in_avro_body(compiled: bool) -> None:
    codec = AvroCodec("click_event", compiled=compiled)
    good = codec.encode(PAGE_VIEW)
    assert error_of(codec.decode, good + b"\x00").error_class == "schema_mismatch"  # trailing bytes
    # subject_id union index 5 does not exist
    event_id = PAGE_VIEW["event_id"].encode()
    garbage = header(codec.schema_id) + bytes([len(event_id) * 2]) + event_id + b"\x0a"
    assert error_of(codec.decode, garbage).error_class == "schema_mismatch"
    # a negative string length
    assert error_of(codec.decode, header(codec.schema_id) + b"\x03").error_class in {"schema_mismatch", "truncated"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_event_type_is_schema_mismatch(fmt: str) -> None:
    event = {**PAGE_VIEW, "event_type": "purchase"}
    data = get_codec("click_event", fmt).encode(event)
    err = error_of(get_codec("click_event", fmt).decode, data)
    assert err.error_class == "schema_mismatch" and err.field == "event_type"
    data = get_codec("purchase_event", fmt).encode({**PURCHASE, "event_type": "page_view"})
    assert error_of(get_codec("purchase_event", fmt).decode, data).error_class == "schema_mismatch"


@pytest.mark.parametrize("fmt", FORMATS)
def test_invalid_consent_status_is_schema_mismatch(fmt: str) -> None:
    record = copy.deepcopy(CONSENT)
    record["purposes"]["support"]["status"] = "maybe"
    codec = get_codec("consent_record", fmt)
    assert error_of(codec.decode, codec.encode(record)).error_class == "schema_mismatch"


@pytest.mark.parametrize("kind,field,value", [
    ("click_event", "ts", "1767225600000"),
    ("click_event", "ts", True),
    ("click_event", "ts", 1.5),
    ("click_event", "ts", 2**63),
    ("click_event", "event_id", 17),
    ("click_event", "event_type", ["page_view"]),
    ("click_event", "event_type", {"x": 1}),
    ("click_event", "subject_id", 42),
    ("click_event", "context", "203.0.113.17"),
    ("click_event", "context", []),
    ("purchase_event", "items", {"product_id": "x"}),
    ("consent_record", "subject_id", 1),
    ("consent_record", "updated_at", "yesterday"),
    ("consent_record", "updated_at", False),
    ("consent_record", "purposes", ["personalization"]),
    ("consent_record", "categories", ["browsing"]),
    ("consent_record", "jurisdiction", 49),
    ("consent_record", "gpc", "no"),
    ("consent_record", "gpc", 0),
    ("consent_record", "tcf", 5),
    ("filtered_event", "consent_version", "v1"),
    ("filtered_event", "purposes", "personalization"),
    ("decision_record", "source_partition", "3"),
    ("erasure_notice", "erased_at", 1.0),
])
def test_wrong_type(kind: str, field: str, value: Any) -> None:
    base = {"click_event": PAGE_VIEW, "purchase_event": PURCHASE, "consent_record": CONSENT,
            "filtered_event": FILTERED, "decision_record": example("decision_record.decided"),
            "erasure_notice": example("erasure_notice.partner_ads")}[kind]
    err = error_of(get_codec(kind, "json").decode, jbytes({**base, field: value}))
    assert err.error_class == "wrong_type" and err.field == field


@pytest.mark.parametrize("purposes,categories", [
    ({"support": "granted"}, {}),
    ({"support": {"status": 1}}, {}),
    ({"support": {"status": "granted", "granted_at": "now"}}, {}),
    ({"support": {"status": "granted", "expires_at": 1.5}}, {}),
    ({"support": {"status": "granted", "expires_at": True}}, {}),
    ({}, {"browsing": 1}),
    ({}, {"browsing": "yes"}),
    ({}, {"browsing": None}),
])
def test_consent_is_validated_in_depth(purposes: dict, categories: dict) -> None:
    record = {**CONSENT, "purposes": purposes, "categories": categories}
    assert error_of(get_codec("consent_record", "json").decode, jbytes(record)).error_class == "wrong_type"


@pytest.mark.parametrize("kind,field", [
    ("click_event", "event_id"), ("click_event", "ts"), ("click_event", "event_type"),
    ("purchase_event", "event_id"),
    ("consent_record", "subject_id"), ("consent_record", "updated_at"), ("consent_record", "purposes"),
    ("consent_record", "categories"), ("consent_record", "jurisdiction"), ("consent_record", "gpc"),
    ("filtered_event", "engine"), ("decision_record", "outcome"), ("erasure_notice", "subject_id"),
])
@pytest.mark.parametrize("how", ["absent", "null"])
def test_missing_field(kind: str, field: str, how: str) -> None:
    base = {"click_event": PAGE_VIEW, "purchase_event": PURCHASE, "consent_record": CONSENT,
            "filtered_event": FILTERED, "decision_record": example("decision_record.decided"),
            "erasure_notice": example("erasure_notice.partner_ads")}[kind]
    record = dict(base)
    if how == "absent":
        del record[field]
    else:
        record[field] = None
    err = error_of(get_codec(kind, "json").decode, jbytes(record))
    assert err.error_class == "missing_field" and err.field == field


def test_missing_purpose_status() -> None:
    record = {**CONSENT, "purposes": {"support": {"granted_at": 1}}}
    assert error_of(get_codec("consent_record", "json").decode, jbytes(record)).error_class == "missing_field"


@pytest.mark.parametrize("compiled", [True, False])
def test_invalid_utf8_in_avro_string(compiled: bool) -> None:
    codec = AvroCodec("erasure_notice", compiled=compiled)
    notice = example("erasure_notice.partner_ads")
    subject = notice["subject_id"].encode()
    body = avro_body("erasure_notice", notice)
    assert body[:1 + len(subject)] == bytes([2 * len(subject)]) + subject
    data = header(codec.schema_id) + b"\x04\xff\xfe" + body[1 + len(subject):]
    assert error_of(codec.decode, data).error_class == "invalid_utf8"
    # the same body with a valid 2-byte subject decodes
    assert codec.decode(header(codec.schema_id) + b"\x04ok" + body[1 + len(subject):])["subject_id"] == "ok"


def test_decode_key() -> None:
    assert decode_key(None) is None
    assert decode_key(b"cust-000042") == "cust-000042"
    assert decode_key("kundin-ä".encode()) == "kundin-ä"
    err = error_of(decode_key, b"cust-\xff\xfe")
    assert err.error_class == "invalid_utf8" and "offset 5" in str(err)


def test_the_error_classes_are_the_documented_ones() -> None:
    # the codes the DLQ headers carry; a new class needs a test above
    assert ERROR_CLASSES == {"oversize", "invalid_json", "not_an_object", "bad_magic", "truncated",
                             "unknown_schema_id", "schema_mismatch", "wrong_type", "missing_field",
                             "invalid_utf8"}


# --- encode errors ------------------------------------------------------------------


def test_avro_encode_errors_name_the_field_not_the_value() -> None:
    codec = get_codec("filtered_event", "avro")
    bad = {**FILTERED}
    del bad["engine"]
    with pytest.raises(EncodeError) as info:
        codec.encode(bad)
    assert info.value.error_class == "missing_field" and info.value.field == "engine"
    with pytest.raises(EncodeError) as info:
        codec.encode({**FILTERED, "price": "erika.mustermann@example.com"})
    assert info.value.error_class == "wrong_type" and info.value.field == "price"
    assert "erika" not in str(info.value)
    with pytest.raises(EncodeError) as info:
        codec.encode({**FILTERED, "context": {"geo": {"lat": "52.52 Musterstrasse"}}})
    assert "context" in str(info.value) and "Muster" not in str(info.value)
    assert info.value.__context__ is None
    with pytest.raises(EncodeError):
        codec.encode(None)  # type: ignore[arg-type]


def test_json_encode_error() -> None:
    with pytest.raises(EncodeError) as info:
        get_codec("filtered_event", "json").encode({**FILTERED, "x": object()})
    assert info.value.__context__ is None


# --- privacy: no personal data in errors (CONTRACT G6) --------------------------------

PII = [
    "Erika Mustermann", "erika.mustermann@example.com", "+49 30 1234567", "203.0.113.17",
    "Musterstrasse 1", "cust-000042", "Mozilla/5.0 SECRET-UA", "4111111111111111",
]


def pii_inputs() -> list[tuple[str, str, bytes]]:
    """(kind, fmt, bytes) of bad records stuffed with recognisable personal data."""
    name, email, phone, ip, street, subject, ua, card = PII
    j = []
    click = {"event_id": email, "subject_id": subject, "event_type": "page_view", "ts": 1,
             "context": {"ip": ip, "user_agent": ua}, "url": f"https://x/?email={email}"}
    j += [("click_event", {**click, "ts": phone}), ("click_event", {**click, "ts": None}),
          ("click_event", {**click, "event_id": [email, phone]}),
          ("click_event", {**click, "event_type": f"{name} {email}"}),
          ("click_event", {**click, "subject_id": {"name": name}}),
          ("click_event", {**click, "context": f"{ip} {ua}"}),
          ("click_event", {k: v for k, v in click.items() if k != "event_id"}),
          ("purchase_event", {**click, "event_type": "purchase", "items": {street: card}}),
          ("consent_record", {"subject_id": subject, "updated_at": 1, "jurisdiction": "EU", "gpc": False,
                              "purposes": {email: {"status": phone}}, "categories": {}}),
          ("consent_record", {"subject_id": subject, "updated_at": 1, "jurisdiction": "EU", "gpc": False,
                              "purposes": {email: {"status": "granted", "expires_at": card}},
                              "categories": {}}),
          ("consent_record", {"subject_id": subject, "updated_at": 1, "jurisdiction": "EU", "gpc": False,
                              "purposes": {}, "categories": {name: street}}),
          ("consent_record", {"subject_id": subject, "updated_at": 1, "jurisdiction": ip, "gpc": email,
                              "purposes": {}, "categories": {}}),
          ("consent_record", {"subject_id": [name], "updated_at": 1}),
          ("decision_record", {"event_id": email, "outcome": name})]
    out = [(kind, "json", jbytes(obj)) for kind, obj in j]
    out += [("click_event", "json", f'{{"event_id": "{email}", "ts": {phone}}}'.encode()),
            ("click_event", "json", f'{{"event_id": "{name}\xff {card}"}}'.encode("latin-1")),
            ("click_event", "json", f"[\"{email}\"]".encode()),
            ("click_event", "json", f"{name} {email} {card}".encode()),
            ("click_event", "json", f'{{"event_id": "{email}", "ts": 1, '.encode())]
    avro = get_codec("click_event", "avro")
    good = avro.encode({**click, "phone": phone, "title": f"{name} {card}"})
    out += [("click_event", "avro", good[:-3]), ("click_event", "avro", good + street.encode()),
            ("click_event", "avro", header(777) + good[5:]),
            ("click_event", "avro", b"\x01" + good[1:]),
            ("click_event", "avro", avro.encode({**click, "event_type": f"{name} {email}"})),
            ("click_event", "avro", good.replace(b"Erika", b"\xffrika"))]
    consent = avro_body("consent_record", {**CONSENT, "subject_id": subject, "jurisdiction": f"{name} {street}"})
    out += [("consent_record", "avro", header(schema_ids()["consent_record"]) + consent + email.encode())]
    return out


@pytest.mark.parametrize("case", range(len(pii_inputs())))
def test_decode_errors_never_contain_personal_data(case: int) -> None:
    kind, fmt, data = pii_inputs()[case]
    for codec in (get_codec(kind, fmt),) + ((AvroCodec(kind, compiled=False),) if fmt == "avro" else ()):
        err = error_of(codec.decode, data)
        text = " ".join([str(err), repr(err), str(err.args), str(err.field), err.error_class])
        for value in PII + ["Erika", "Muster", "example.com", "1234567", "SECRET"]:
            assert value not in text, (err.error_class, text)


def test_key_errors_never_contain_personal_data() -> None:
    err = error_of(decode_key, "erika.mustermann@example.com".encode() + b"\xff")
    assert "erika" not in str(err) and "example" not in repr(err)


def test_encode_errors_never_contain_personal_data() -> None:
    record = {**FILTERED, "email": 12, "subject_id": "erika.mustermann@example.com",
              "context": {"ip": ["203.0.113.17"]}, "phone": {"n": "+49 30 1234567"}}
    for codec in (get_codec("filtered_event", "avro"), AvroCodec("filtered_event", compiled=False)):
        with pytest.raises(EncodeError) as info:
            codec.encode(record)
        text = f"{info.value} {info.value!r} {info.value.args} {info.value.field}"
        for value in ("erika", "example.com", "203.0.113", "1234567"):
            assert value not in text


# --- fuzzing: only DecodeError ever escapes decode --------------------------------------

ALL_CODECS = [(kind, fmt) for kind in KINDS for fmt in FORMATS]


def decode_or_error(codec, data: bytes) -> dict | None:
    try:
        out = codec.decode(data)
    except DecodeError as err:
        assert err.error_class in ERROR_CLASSES
        return None
    assert isinstance(out, dict)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_CODECS), st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(kind_fmt: tuple[str, str], data: bytes) -> None:
    decode_or_error(get_codec(*kind_fmt), data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS), st.binary(max_size=300))
def test_random_avro_bodies_raise_only_decode_error(kind: str, body: bytes) -> None:
    data = header(schema_ids()[kind]) + body
    fast = decode_or_error(get_codec(kind, "avro"), data)
    slow = decode_or_error(AvroCodec(kind, compiled=False), data) if fast is not None else None
    if fast is not None:  # what the compiled reader accepts, fastavro reads the same way
        assert slow == fast


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS), st.data())
def test_mutated_avro_records_raise_only_decode_error(kind: str, data: st.DataObject) -> None:
    record = json.loads(next((SCHEMAS_DIR / "examples").glob(f"{kind}.*.json")).read_text())
    good = bytearray(get_codec(kind, "avro").encode(record))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(5, len(good) - 1))
        good[i] = data.draw(st.integers(0, 255))
    decode_or_error(get_codec(kind, "avro"), bytes(good))
    decode_or_error(AvroCodec(kind, compiled=False), bytes(good))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def field_names(kind: str) -> list[str]:
    names = [f["name"] for f in load_schema(kind)["fields"]]
    return names + ["status", "granted_at", "expires_at", "personalization"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS), st.data())
def test_random_json_objects_raise_only_decode_error(kind: str, data: st.DataObject) -> None:
    keys = st.sampled_from(field_names(kind)) | st.text(max_size=5)
    obj = data.draw(st.dictionaries(keys, json_values, max_size=8))
    try:
        raw = orjson.dumps(obj)
    except orjson.JSONEncodeError:  # integers beyond 64 bits
        raw = json.dumps(obj).encode()
    decode_or_error(get_codec(kind, "json"), raw)


# --- the compiled Avro reader/writer against fastavro (the reference) ------------------


def strategy_for(t: Any, named: dict[str, Any]) -> st.SearchStrategy:
    if isinstance(t, str):
        if t in named:
            return strategy_for(named[t], named)
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "double": st.floats(allow_nan=False) | st.integers(-(2**53), 2**53),
            "string": st.text(max_size=20),
            "bytes": st.binary(max_size=40),
        }[t]
    if isinstance(t, list):
        return st.one_of([strategy_for(b, named) for b in t])
    kind = t["type"]
    if kind == "record":
        named[f"io.pfilter.{t['name']}"] = t
        named[t["name"]] = t
        required = {f["name"]: strategy_for(f["type"], named) for f in t["fields"] if "default" not in f}
        optional = {f["name"]: strategy_for(f["type"], named) for f in t["fields"] if "default" in f}
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "array":
        return st.lists(strategy_for(t["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), strategy_for(t["values"], named), max_size=3)
    raise AssertionError(kind)


RECORDS = {kind: strategy_for(load_schema(kind), {}) for kind in KINDS}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_compiled_avro_matches_fastavro(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(KINDS))
    record = data.draw(RECORDS[kind])
    body = avro_body(kind, record)
    fast, slow = AvroCodec(kind, compiled=True), AvroCodec(kind, compiled=False)
    encoded = fast.encode(record)
    assert encoded == slow.encode(record)
    assert encoded[5:] == body
    reference = fastavro.schemaless_reader(io.BytesIO(body), parsed_schema(kind), None)
    if kind in ("click_event", "purchase_event", "consent_record"):
        # the generated values do not respect the vocabulary checks: compare the raw readers
        reader = codecs.compile_reader(load_schema(kind))
        assert reader(encoded, 5, len(encoded)) == (reference, len(encoded))
    else:
        assert fast.decode(encoded) == reference == slow.decode(encoded)


# --- schema registry (confluent-kafka's in-process mock; no network) ------------------


def test_topic_subject() -> None:
    assert topic_subject("clickstream") == "clickstream-value"


def test_registry_registers_and_round_trips() -> None:
    url = "mock://pfilter-test-roundtrip"
    codec = get_codec("click_event", "avro", registry_url=url)
    assert codec is get_codec("click_event", "avro", registry_url=url)
    assert codec.subject == "io.pfilter.ClickEvent"  # RecordNameStrategy by default
    data = codec.encode(PAGE_VIEW)
    client = codecs.registry_client(url)
    assert int.from_bytes(data[1:5], "big") == codec.schema_id
    assert "io.pfilter.ClickEvent" in client.get_subjects()
    assert codec.decode(data)["url"] == PAGE_VIEW["url"]
    # a second codec with the same registry resolves the id from the registry
    other = AvroCodec("click_event", registry=client, subject="clickstream-value")
    assert other.decode(data)["title"] == PAGE_VIEW["title"]
    other_data = other.encode(PAGE_VIEW)
    assert "clickstream-value" in client.get_subjects()
    assert codec.decode(other_data) == other.decode(other_data) == codec.decode(data)


def test_registry_resolves_other_writer_versions() -> None:
    from confluent_kafka.schema_registry import Schema

    client = codecs.registry_client("mock://pfilter-test-evolution")
    codec = AvroCodec("click_event", registry=client)
    evolved = copy.deepcopy(load_schema("click_event"))
    evolved["fields"].append({"name": "campaign", "type": ["null", "string"], "default": None, "doc": "new"})
    new_id = client.register_schema("io.pfilter.ClickEvent", Schema(json.dumps(evolved), "AVRO"))
    fo = io.BytesIO()
    fastavro.schemaless_writer(fo, fastavro.parse_schema(evolved), {**PAGE_VIEW, "campaign": "spring"})
    decoded = codec.decode(header(new_id) + fo.getvalue())
    assert "campaign" not in decoded and decoded["url"] == PAGE_VIEW["url"]
    # unknown ids and incompatible writers are decode errors
    assert error_of(codec.decode, header(4242) + fo.getvalue()).error_class == "unknown_schema_id"
    other_id = client.register_schema("other", Schema(json.dumps(
        {"type": "record", "name": "Other", "fields": [{"name": "event_id", "type": "long"}]}), "AVRO"))
    assert error_of(codec.decode, header(other_id) + b"\x02").error_class == "schema_mismatch"
    zero = client.register_schema("zero", Schema(json.dumps(
        {"type": "record", "name": "Zero", "fields": [{"name": "a", "type": {"type": "array", "items": "null"}}]}),
        "AVRO"))
    assert error_of(codec.decode, header(zero) + b"\xfe\xff\xff\xff\x0f\x00").error_class == "schema_mismatch"


class FakeRegistry:
    """A registry that answers every fetch with one fixed failure."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure
        self.calls = 0

    def get_schema(self, schema_id: int):
        self.calls += 1
        raise self.failure

    def register_schema(self, subject: str, schema) -> int:
        raise self.failure


def test_registry_not_found_is_cached() -> None:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    registry = FakeRegistry(SchemaRegistryError(404, 40403, "Schema not found"))
    codec = AvroCodec("click_event", registry=registry, schema_id=1)
    data = header(9) + b"\x00"
    assert error_of(codec.decode, data).error_class == "unknown_schema_id"
    assert error_of(codec.decode, data).error_class == "unknown_schema_id"
    assert registry.calls == 1
    assert codec.decode(get_codec("click_event", "avro").encode(PAGE_VIEW))["url"] == PAGE_VIEW["url"]


def test_registry_outage_is_not_a_decode_error() -> None:
    codec = AvroCodec("click_event", registry=FakeRegistry(ConnectionError("refused")))
    with pytest.raises(RegistryUnavailable):
        codec.decode(header(9) + b"\x00")
    with pytest.raises(RegistryUnavailable):
        codec.encode(PAGE_VIEW)
