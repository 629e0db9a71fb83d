"""The Avro schemas, the id map and the examples in ``schemas/`` (CONTRACT §3, §7, §8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate

from streams.engine.codecs import KINDS, SCHEMAS_DIR, get_codec, load_schema, parsed_schema, schema_ids

#: Schemas in schemas/ that no codec kind serves: the key record is JSON, written and
#: parsed by streams/crypto/keys.py; data_key.avsc is its Avro form for registries
#: (its example is schemas/examples/keys/, checked by tests/unit/test_crypto.py).
NON_CODEC_KINDS = ("data_key",)
EXAMPLES = sorted((SCHEMAS_DIR / "examples").glob("*.json"))
NULLABLE_STRING = ["null", "string"]


def example_kind(path: Path) -> str:
    return path.name.split(".", 1)[0]


def without_nulls(value: Any) -> Any:
    """Absent and null are the same thing (Avro gives None where JSON leaves a field out)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def fields(kind: str) -> dict[str, dict]:
    return {f["name"]: f for f in load_schema(kind)["fields"]}


def walk_records(schema: Any):
    if isinstance(schema, list):
        for branch in schema:
            yield from walk_records(branch)
    elif isinstance(schema, dict):
        t = schema.get("type")
        if t == "record":
            yield schema
            for f in schema["fields"]:
                yield from walk_records(f["type"])
        elif t == "array":
            yield from walk_records(schema["items"])
        elif t == "map":
            yield from walk_records(schema["values"])


def record_of(field_type: Any) -> dict:
    """The record inside a (nullable) field type."""
    if isinstance(field_type, list):
        (field_type,) = [b for b in field_type if b != "null"]
    return field_type


# --- the schema files ---------------------------------------------------------


def test_one_schema_file_per_kind() -> None:
    assert sorted(p.stem for p in SCHEMAS_DIR.glob("*.avsc")) == sorted(KINDS + NON_CODEC_KINDS)


@pytest.mark.parametrize("kind", KINDS + NON_CODEC_KINDS)
def test_schema_is_a_named_namespaced_documented_record(kind: str) -> None:
    raw = json.loads((SCHEMAS_DIR / f"{kind}.avsc").read_text())
    assert raw["type"] == "record"
    assert raw["namespace"] == "io.pfilter"
    assert raw["name"] and raw["doc"]
    fastavro.parse_schema(raw)  # valid Avro
    for record in walk_records(raw):
        assert record.get("doc"), f"{kind}: record {record['name']} has no doc"
        for f in record["fields"]:
            assert f.get("doc"), f"{kind}: field {record['name']}.{f['name']} has no doc"
            t = f["type"]
            if isinstance(t, list) and t[0] == "null":
                assert "default" in f and f["default"] is None, f"{kind}: {f['name']} needs default null"


def test_ids_map_has_one_distinct_id_per_kind() -> None:
    raw = json.loads((SCHEMAS_DIR / "ids.json").read_text())
    assert sorted(raw) == sorted(KINDS)
    assert all(isinstance(v, int) and 0 < v < 2**31 for v in raw.values())
    assert len(set(raw.values())) == len(raw)
    assert schema_ids() == raw


@pytest.mark.parametrize("kind", ["click_event", "purchase_event"])
def test_event_envelope(kind: str) -> None:
    f = fields(kind)
    assert f["event_id"]["type"] == "string"
    assert f["subject_id"]["type"] == NULLABLE_STRING and f["subject_id"]["default"] is None
    assert f["anonymous_id"]["type"] == NULLABLE_STRING
    assert f["event_type"]["type"] == "string"
    assert f["ts"]["type"] == "long"
    context = record_of(f["context"]["type"])
    cf = {x["name"]: x for x in context["fields"]}
    for name in ("ip", "user_agent", "device_id", "session_id", "referrer"):
        assert cf[name]["type"] == NULLABLE_STRING and cf[name]["default"] is None
    geo = {x["name"]: x["type"] for x in record_of(cf["geo"]["type"])["fields"]}
    assert geo == {"country": NULLABLE_STRING, "region": NULLABLE_STRING, "city": NULLABLE_STRING,
                   "lat": ["null", "double"], "lon": ["null", "double"]}


CLICK_PAYLOAD = {"url": "string", "title": "string", "query": "string", "product_id": "string",
                 "category": "string", "price": "double", "quantity": "int", "method": "string"}


def test_click_payload_fields_are_top_level_and_nullable() -> None:
    f = fields("click_event")
    for name, t in CLICK_PAYLOAD.items():
        assert f[name]["type"] == ["null", t] and f[name]["default"] is None, name


def test_purchase_fields() -> None:
    f = fields("purchase_event")
    assert f["order_id"]["type"] == "string"
    assert f["total"]["type"] == "double"
    assert f["currency"]["type"] == "string"
    item = f["items"]["type"]["items"]
    assert {x["name"]: x["type"] for x in item["fields"]} == {
        "product_id": NULLABLE_STRING, "category": NULLABLE_STRING,
        "quantity": ["null", "int"], "price": ["null", "double"]}
    for name in ("payment_method", "email", "phone"):
        assert f[name]["type"] == NULLABLE_STRING
    address = record_of(f["shipping_address"]["type"])
    assert [x["name"] for x in address["fields"]] == ["street", "city", "postal_code", "country"]


def test_consent_record_fields() -> None:
    f = fields("consent_record")
    assert f["subject_id"]["type"] == "string"
    assert f["updated_at"]["type"] == "long"
    purpose = f["purposes"]["type"]["values"]
    assert {x["name"]: x["type"] for x in purpose["fields"]} == {
        "status": "string", "granted_at": ["null", "long"], "expires_at": ["null", "long"],
        "basis": NULLABLE_STRING}
    assert f["categories"]["type"] == {"type": "map", "values": "boolean"}
    assert f["jurisdiction"]["type"] == "string"
    assert f["gpc"]["type"] == "boolean"
    # CONTRACT §3's optional fields: every one defaults, so older records keep their meaning
    assert f["tcf"]["type"] == NULLABLE_STRING and f["tcf"]["default"] is None
    assert f["gpp"]["type"] == NULLABLE_STRING and f["gpp"]["default"] is None
    assert f["objections"]["type"] == ["null", {"type": "array", "items": "string"}]
    assert f["consent_mode"]["type"] == ["null", {"type": "map", "values": "string"}]
    assert f["sec_gpc"]["type"] == ["null", "boolean"]
    assert all(f[n]["default"] is None for n in ("objections", "gpp", "consent_mode", "sec_gpc"))


def test_filtered_event_carries_every_payload_field_nullable() -> None:
    f = fields("filtered_event")
    for name in ("event_id", "subject_id", "event_type", "policy_version", "engine"):
        assert f[name]["type"] == "string", name
    assert f["ts"]["type"] == "long"
    assert f["consent_version"]["type"] == "long"
    assert f["purposes"]["type"] == {"type": "array", "items": "string"}
    assert f["context"]["type"][0] == "null"
    payload = (set(fields("click_event")) | set(fields("purchase_event"))) - {
        "event_id", "subject_id", "anonymous_id", "event_type", "ts", "context"}
    for name in payload:
        assert f[name]["type"][0] == "null" and f[name]["default"] is None, name
    assert "anonymous_id" not in f  # anonymous traffic is never emitted


def test_decision_record_fields() -> None:
    f = fields("decision_record")
    # one record per input (CONTRACT §7): the per-engine outcomes are entries of `engines`
    assert list(f) == ["event_id", "subject_id", "outcome", "reason", "engines", "consent_version",
                       "policy_version", "ts", "decided_at", "source_topic", "source_partition", "source_offset"]
    expected = {
        "event_id": NULLABLE_STRING, "subject_id": NULLABLE_STRING,
        "outcome": "string", "reason": NULLABLE_STRING, "consent_version": ["null", "long"],
        "policy_version": "string", "ts": ["null", "long"], "decided_at": "long",
        "source_topic": "string", "source_partition": "int", "source_offset": "long",
    }
    engines = f.pop("engines")
    assert {k: v["type"] for k, v in f.items()} == expected
    assert engines["default"] == [] and engines["type"]["type"] == "array"
    entry = engines["type"]["items"]
    assert {x["name"]: x["type"] for x in entry["fields"]} == {
        "engine": "string", "outcome": "string", "reason": NULLABLE_STRING,
        "categories_sent": {"type": "array", "items": "string"}}


def test_erasure_notice_fields() -> None:
    f = fields("erasure_notice")
    assert {k: v["type"] for k, v in f.items()} == {
        "subject_id": "string", "engine": "string", "erased_at": "long",
        "consent_version": ["null", "long"], "policy_version": "string",
        "pseudonymized": "boolean", "source_topic": ["null", "string"],
        "source_partition": ["null", "int"], "source_offset": ["null", "long"]}


# --- the examples -------------------------------------------------------------


def test_examples_cover_every_kind_and_event_type() -> None:
    kinds = {example_kind(p) for p in EXAMPLES}
    assert kinds == set(KINDS)
    click_types = {json.loads(p.read_text())["event_type"] for p in EXAMPLES if example_kind(p) == "click_event"}
    assert click_types == {"page_view", "product_view", "search", "add_to_cart", "login"}
    purchases = [json.loads(p.read_text()) for p in EXAMPLES if example_kind(p) == "purchase_event"]
    assert purchases and all(e["event_type"] == "purchase" for e in purchases)


def test_a_consent_example_uses_the_default_vocabulary() -> None:
    purposes = {"personalization", "marketing_email", "marketing_phone", "analytics",
                "third_party_sharing", "support"}
    categories = {"browsing", "purchase_history", "connection_data", "location", "contact", "payment"}
    records = [json.loads(p.read_text()) for p in EXAMPLES if example_kind(p) == "consent_record"]
    assert any(set(r["purposes"]) == purposes and set(r["categories"]) == categories for r in records)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_its_schema(path: Path) -> None:
    record = json.loads(path.read_text())
    assert validate(record, parsed_schema(example_kind(path)), raise_errors=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_round_trips_with_json_avro_parity(path: Path) -> None:
    kind = example_kind(path)
    record = json.loads(path.read_text())
    via_json = get_codec(kind, "json").decode(get_codec(kind, "json").encode(record))
    via_avro = get_codec(kind, "avro").decode(get_codec(kind, "avro").encode(record))
    assert via_json == record
    assert without_nulls(via_avro) == without_nulls(via_json)
    # the bytes as they are on disk decode too
    assert get_codec(kind, "json").decode(path.read_bytes()) == record
