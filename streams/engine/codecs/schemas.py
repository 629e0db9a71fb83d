"""The checked-in schemas (``schemas/*.avsc``), their Confluent ids and names.

Kinds are the schema file stems: ``click_event``, ``purchase_event``,
``consent_record``, ``filtered_event``, ``decision_record``, ``erasure_notice``, ``consent_notice``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import fastavro

#: The checked-in schemas, ids map and examples (repository root / schemas).
SCHEMAS_DIR = Path(__file__).resolve().parents[3] / "schemas"

KINDS = (
    "click_event",
    "purchase_event",
    "consent_record",
    "filtered_event",
    "decision_record",
    "erasure_notice",
    "consent_notice",
)
FORMATS = ("json", "avro")

_schema_lock = threading.Lock()
_raw_schemas: dict[str, dict[str, Any]] = {}
_parsed_schemas: dict[str, dict[str, Any]] = {}
_ids: dict[str, int] | None = None


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")


def load_schema(kind: str) -> dict[str, Any]:
    """The schema of ``kind`` as written in ``schemas/<kind>.avsc`` (a JSON dict)."""
    check_kind(kind)
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


#: Earlier versions of our schemas that records on topics may still carry, without a
#: registry to look their ids up: ``schemas/history/<kind>.<id>.avsc``. The current
#: schema reads them by Avro schema resolution (fields added since have defaults).
HISTORY_DIR = SCHEMAS_DIR / "history"
_history: dict[str, dict[int, dict[str, Any]]] = {}


def earlier_writers(kind: str) -> dict[int, dict[str, Any]]:
    """Parsed earlier writer schemas of ``kind`` by their checked-in id (may be empty).

    Their ids never collide with a current id: an id names one schema for good."""
    check_kind(kind)
    with _schema_lock:
        got = _history.get(kind)
        if got is not None:
            return got
    current = set(schema_ids().values())
    got = {}
    for f in sorted(HISTORY_DIR.glob(f"{kind}.*.avsc")):
        sid = int(f.name[len(kind) + 1:-len(".avsc")])
        if sid in current:
            raise ValueError(f"{f}: id {sid} is a current id in ids.json; an id names one schema for good")
        got[sid] = fastavro.parse_schema(json.loads(f.read_text(encoding="utf-8")))
    with _schema_lock:
        _history[kind] = got
    return got


def topic_subject(topic: str) -> str:
    """Confluent ``TopicNameStrategy`` subject of a topic's values: ``<topic>-value``."""
    return f"{topic}-value"
