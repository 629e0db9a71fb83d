"""Consent records in Avro carry every field of CONTRACT §3 (schema version 2, id 9):
bases, objections and the GPP / Consent Mode / Sec-GPC signals give the same state as in
JSON, and records written under version 1 (id 3, ``schemas/history/``) still decode
without a registry, reading the fields added since as absent."""

from __future__ import annotations

import io
import json

import fastavro

from streams.engine.batch import Filter, TopicNames
from streams.engine.codecs import get_codec
from streams.engine.codecs.schemas import HISTORY_DIR, SCHEMAS_DIR, schema_ids
from streams.engine.policy import load_policy

from .helpers import SECRET

T = TopicNames()
POLICY = load_policy(secret=SECRET)
SIGNALS = json.loads((SCHEMAS_DIR / "examples" / "consent_record.signals.json").read_text())
PLAIN = json.loads((SCHEMAS_DIR / "examples" / "consent_record.all_purposes.json").read_text())


def _states(fmt: str, values: list[bytes]) -> dict:
    """The store after applying ``values`` (consent records in ``fmt``) in order."""
    store: dict = {}
    f = Filter(POLICY, T, {T.clickstream: "json", T.purchases: "json", T.consent: fmt, "output": "json"},
               store=store)
    codec = get_codec("consent_record", fmt)
    res = f.apply_consent([(T.consent, 0, i, codec.decode(v)["subject_id"].encode(), v, None, 0)
                           for i, v in enumerate(values)])
    assert res.dlq == 0, res.records
    return store


def test_signals_bases_and_objections_give_the_same_state_in_avro_and_json() -> None:
    avro = get_codec("consent_record", "avro")
    assert avro.encode(SIGNALS)[:5] == b"\x00" + schema_ids()["consent_record"].to_bytes(4, "big")
    in_json = _states("json", [json.dumps(SIGNALS).encode()])
    in_avro = _states("avro", [avro.encode(SIGNALS)])
    assert in_avro == in_json
    # the fields mattered: without them the state differs (the test would prove nothing)
    bare = {k: v for k, v in SIGNALS.items() if k not in ("objections", "gpp", "consent_mode", "sec_gpc")}
    assert _states("avro", [avro.encode(bare)]) != in_avro


def test_a_version_1_record_still_decodes_without_a_registry() -> None:
    (old,) = [p for p in HISTORY_DIR.glob("consent_record.*.avsc")]
    old_id = int(old.name.split(".")[1])
    assert old_id != schema_ids()["consent_record"]
    fo = io.BytesIO()
    fastavro.schemaless_writer(fo, fastavro.parse_schema(json.loads(old.read_text())), PLAIN)
    value = b"\x00" + old_id.to_bytes(4, "big") + fo.getvalue()
    decoded = get_codec("consent_record", "avro").decode(value)
    assert decoded["objections"] is None and decoded["gpp"] is None and decoded["sec_gpc"] is None
    assert _states("avro", [value]) == _states("json", [json.dumps(PLAIN).encode()])
