"""Builders shared by the engine's unit and property tests."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

from streams.engine.policy import DEFAULT_POLICY_PATH

SECRET = b"test-secret-not-for-production"
NOW = 1_700_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR

PURPOSES = ("personalization", "marketing_email", "marketing_phone", "analytics", "third_party_sharing", "support")
CATEGORIES = ("browsing", "purchase_history", "connection_data", "location", "contact", "payment")


def default_doc() -> dict[str, Any]:
    with DEFAULT_POLICY_PATH.open("rb") as f:
        return tomllib.load(f)


def doc_copy(doc: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(doc)


def consent(
    subject: str = "s-1",
    updated_at: int = NOW - DAY,
    granted: tuple[str, ...] = PURPOSES,
    categories: tuple[str, ...] = CATEGORIES,
    jurisdiction: str = "EU",
    gpc: bool = False,
    granted_at: int = NOW - 30 * DAY,
    expires_at: int | None = None,
    denied_status: str = "denied",
    **overrides: Any,
) -> dict[str, Any]:
    """A valid consent record; every purpose not in ``granted`` has ``denied_status``."""
    rec = {
        "subject_id": subject,
        "updated_at": updated_at,
        "purposes": {
            p: ({"status": "granted", "granted_at": granted_at, "expires_at": expires_at} if p in granted
                else {"status": denied_status, "granted_at": None, "expires_at": None})
            for p in PURPOSES
        },
        "categories": {c: c in categories for c in CATEGORIES},
        "jurisdiction": jurisdiction,
        "gpc": gpc,
    }
    rec.update(overrides)
    return rec


def context(**over: Any) -> dict[str, Any]:
    ctx = {
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0",
        "device_id": "d-1",
        "session_id": "sess-1",
        "referrer": "https://search.example/",
        "geo": {"country": "DE", "region": "BE", "city": "Berlin", "lat": 52.5, "lon": 13.4},
    }
    ctx.update(over)
    return ctx


def click(event_type: str = "page_view", subject: str | None = "s-1", ts: int = NOW - HOUR,
          event_id: str = "e-1", **payload: Any) -> dict[str, Any]:
    defaults = {
        "page_view": {"url": "https://shop.example/p/1", "title": "Shoes"},
        "product_view": {"product_id": "p-1", "category": "shoes", "price": 59.9},
        "search": {"query": "red shoes"},
        "add_to_cart": {"product_id": "p-1", "quantity": 2},
        "login": {"method": "password"},
    }[event_type]
    ev = {"event_id": event_id, "subject_id": subject, "event_type": event_type, "ts": ts, "context": context()}
    if subject is None:
        ev["anonymous_id"] = "a-1"
    ev.update(defaults)
    ev.update(payload)
    return ev


def purchase(subject: str | None = "s-1", ts: int = NOW - HOUR, event_id: str = "e-p1", **over: Any) -> dict[str, Any]:
    ev = {
        "event_id": event_id, "subject_id": subject, "event_type": "purchase", "ts": ts, "context": context(),
        "order_id": "o-1",
        "items": [{"product_id": "p-1", "category": "shoes", "quantity": 1, "price": 59.9}],
        "total": 59.9, "currency": "EUR", "payment_method": "card",
        "shipping_address": {"street": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        "email": "jane@example.com", "phone": "+49 30 123456",
    }
    if subject is None:
        ev["anonymous_id"] = "a-1"
    ev.update(over)
    return ev


# --- encrypted fields (CONTRACT §10) -------------------------------------------------------
def kek_for_tests():  # noqa: ANN201 - a Kek
    """The tests' KEK of schemas/examples/keys (bytes 0..31): never a production key."""
    from streams.crypto import Kek

    return Kek(bytes(range(32)))


def counter_nonces():  # noqa: ANN201
    """A deterministic nonce source (tests only): 12-byte big-endian counter."""
    n = iter(range(1, 1 << 62))
    return lambda size: next(n).to_bytes(size, "big")


def ring_keys(ring, kek=None):  # noqa: ANN001, ANN201
    """``keys(subject, version) -> raw data key`` for the reference (``reference.Sealed``),
    unwrapping the ring's key records with the KEK."""
    kek = kek or kek_for_tests()

    def keys(subject: str, version: int):  # noqa: ANN202
        rec = ring.record(subject, version)
        return None if rec is None else kek.unwrap(subject, version, rec.wrapped_key)

    return keys


def opened(records, ring, fmt: str = "json"):  # noqa: ANN001, ANN201
    """``records`` with every engine output's envelopes decrypted (under ``ring``) and every
    key record's value replaced by its subject and version: what two runs with different
    random keys and nonces must agree on ("compare after decryption")."""
    import orjson

    from streams.crypto import decrypt_value, is_envelope, parse_key_record
    from streams.engine.codecs import get_codec

    codec = get_codec("filtered_event", fmt)
    out = []
    for topic, key, value, headers in records:
        if topic.endswith(".keys"):
            rec = None if value is None else parse_key_record(value)
            out.append((topic, key, None if rec is None else ("key", rec.subject_id), headers))
            continue
        if value is not None and (b"pfe1." in value or (fmt == "avro" and topic.endswith(".email"))):
            obj = codec.decode(value)
            for k, v in list(obj.items()):
                if v is not None and is_envelope(v):
                    obj[k] = ("decrypted", decrypt_value(ring, obj["subject_id"], k, v))
            value = orjson.dumps(obj, default=repr)
        out.append((topic, key, value, headers))
    return out


class Deterministic:
    """Data keys, key versions and wrap nonces from a seeded generator, so that two filters
    fed the same stream create byte-identical keys (production draws them from the OS)."""

    def __init__(self) -> None:
        import random

        self._r = random.Random(7)

    def token_bytes(self, n: int) -> bytes:
        return self._r.randbytes(n)

    def randbits(self, k: int) -> int:
        return self._r.getrandbits(k)

    def urandom(self, n: int) -> bytes:
        return self._r.randbytes(n)
