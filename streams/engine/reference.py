"""A slow, deliberately simple statement of the rule (CONTRACT §5) and projection.

This is the oracle the property tests and ``pfilter verify`` compare the
engine against. It works on plain dicts: the parsed policy TOML (not the
compiled policy), the raw consent record, the decoded event. It shares no code
with ``decide.py``, ``policy.py``, ``consent.py`` or the engine's signal decoders
(``engine/signals/``; it has its own in ``reference_decoders``): the event vocabulary
(CONTRACT §3) and the pseudonym scheme are written out again here on purpose.

Conventions it states (and the engine must match):
- ``consent`` is the subject's current *valid* consent record, or None when
  there is none (never given, erased, or the newest one was malformed: fail
  closed). ``current_consent`` computes it from a subject's consent log;
- a purpose is granted only when its status is ``"granted"``, with a basis
  (``consent`` when absent) the policy allows for it; ``expires_at`` None means
  no expiry; a category is granted only when its value is ``true``; the record's
  consent signals (``tcf``, ``gpp``, ``consent_mode``, ``sec_gpc``) then narrow
  purposes, categories and ``gpc``, and a record whose signals do not decode
  counts as no consent (``reference_signals`` states how, with the oracle's own
  decoders in ``reference_decoders``);
- step 1a: a purpose the engine needs that belongs to an objection class the
  record's ``objections`` names drops the event as ``objected``;
- an event's fields are those of its event type (§3), and the context fields;
  an event of an unknown type may carry any field of any type; fields are
  read only where the §3 shape has them; None counts as absent, and so does a
  record (dict) left empty;
- payment fields are never emitted;
- pseudonyms are the first 32 hex chars of HMAC-SHA256 with the engine key
  HMAC-SHA256(secret, "pfilter/" + engine name); subject ids are hashed as
  their UTF-8 bytes, field values as ``"field:" + path + "\\0" + value`` where
  value is the UTF-8 string or else its canonical (sorted-key) JSON;
- an ``encrypt`` transform's expected value is a :class:`Sealed`: equal to an
  envelope (text ``pfe1.<version>.<base64url>`` or binary ``0x01 | u32 version
  | ...``) of AES-256-GCM over the value's compact JSON, associated data
  ``"pfe1" | u32 len(subject) | subject | path``, nonce 12 bytes, tag 16. Given
  the subjects' raw data keys (``keys(subject, version) -> bytes | None``) it
  decrypts and compares the plaintext; without them it checks the shape and
  that the ciphertext is exactly as long as the plaintext (CONTRACT §10).

Size (a little over 500 lines): the oracle is deliberately one readable transcription of
CONTRACT §5-§10, used by verify and the tests, never by the engine; its decoders and signal rules are
already in ``reference_decoders`` and ``reference_signals``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams.engine.reference_signals import (
    SignalUnreadable, allowed_bases, effective, objection_classes, signals_problem,
)

HOUR = 60 * 60 * 1000

GEO = {"country": None, "region": None, "city": None, "lat": None, "lon": None}
CONTEXT = {"ip": None, "user_agent": None, "device_id": None, "session_id": None, "referrer": None, "geo": GEO}
ITEM = {"product_id": None, "category": None, "quantity": None, "price": None}
ADDRESS = {"street": None, "city": None, "postal_code": None, "country": None}
PAYLOADS = {
    "page_view": {"url": None, "title": None},
    "product_view": {"product_id": None, "category": None, "price": None},
    "search": {"query": None},
    "add_to_cart": {"product_id": None, "quantity": None},
    "login": {"method": None},
    "purchase": {"order_id": None, "items": [ITEM], "total": None, "currency": None,
                 "payment_method": None, "shipping_address": ADDRESS, "email": None, "phone": None},
}
NEVER_EMITTED = {"payment_method"}


def _shape_of(event_type: Any, path: str) -> tuple[bool, Any]:
    """(does this event type have the path, its shape)."""
    if event_type in PAYLOADS:
        tree = {"context": CONTEXT, **PAYLOADS[event_type]}
    else:
        tree = {"context": CONTEXT}
        for payload in PAYLOADS.values():
            tree.update(payload)
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _clean(value: Any, shape: Any) -> Any:
    """Only what the shape knows; None when nothing is left (empty lists stay)."""
    if value is None:
        return None
    if shape is None:
        return value
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return None
        result = {}
        for k in shape:
            v = _clean(value.get(k), shape[k])
            if v is not None:
                result[k] = v
        return result if result else None
    if not isinstance(value, list):
        return None
    cleaned = [_clean(el, shape[0]) for el in value]
    return [c for c in cleaned if c is not None]


def _get(event: dict, path: str) -> Any:
    node: Any = event
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _put(out: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _engine_key(secret: bytes, engine_name: str) -> bytes:
    return hmac.new(secret, ("pfilter/" + engine_name).encode(), hashlib.sha256).digest()


def pseudonym(secret: bytes, engine_name: str, subject: str) -> str:
    return hmac.new(_engine_key(secret, engine_name), subject.encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()[:32]


def _pseudonymize_field(secret: bytes, engine_name: str, path: str, value: Any) -> str:
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
    else:
        raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    msg = b"field:" + path.encode() + b"\0" + raw
    return hmac.new(_engine_key(secret, engine_name), msg, hashlib.sha256).hexdigest()[:32]


#: ``keys(subject, version) -> raw 32-byte data key, or None`` (shredded / unknown)
KeyLookup = Callable[[str, int], "bytes | None"]
#: what a ``KeyLookup`` returns for a key it knows to be gone: check the shape only
SHAPE_ONLY = b""
_TEXT_ENVELOPE = re.compile(r"pfe1\.([1-9][0-9]{0,9})\.([A-Za-z0-9_-]+)\Z")


def _envelope_parts(envelope: Any) -> tuple[int, bytes, bytes] | None:
    """(key version, nonce, ciphertext | tag) of an envelope, or None if it is not one."""
    if isinstance(envelope, str):
        m = _TEXT_ENVELOPE.match(envelope)
        if m is None:
            return None
        try:
            body = base64.urlsafe_b64decode(m.group(2) + "=" * (-len(m.group(2)) % 4))
        except (binascii.Error, ValueError):
            return None
        version = int(m.group(1))
    elif isinstance(envelope, (bytes, bytearray)):
        if len(envelope) < 5 or envelope[0] != 1:
            return None
        version = struct.unpack(">I", bytes(envelope[1:5]))[0]
        body = bytes(envelope[5:])
    else:
        return None
    if not 0 < version < 2**32 or len(body) < 12 + 16:
        return None
    return version, body[:12], body[12:]


class Sealed:
    """The expected value of an encrypted field: compares equal to an envelope of ``value``
    (see the module doc). Its ``repr`` names the path only, never the value (G6)."""

    __slots__ = ("value", "subject", "path", "keys", "problem")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: Any, subject: str, path: str, keys: KeyLookup | None) -> None:
        self.value = value
        self.subject = subject
        self.path = path
        self.keys = keys
        #: why the last comparison failed (no values): for ``violations``
        self.problem = ""

    def __repr__(self) -> str:
        return f"Sealed({self.path!r})"

    def __eq__(self, other: object) -> bool:
        parts = _envelope_parts(other)
        if parts is None:
            self.problem = "is not an encrypted-field envelope"
            return False
        version, nonce, sealed = parts
        plain = orjson.dumps(self.value)
        if len(sealed) != len(plain) + 16:
            self.problem = "envelope length does not match the permitted value"
            return False
        if self.keys is None:
            return True
        key = self.keys(self.subject, version)
        if key == SHAPE_ONLY:
            return True  # the caller knows the key is gone (compacted, shredded): shape checked
        if key is None:
            self.problem = "its data key is unknown (shredded?): plaintext not checked"
            return False
        s = self.subject.encode("utf-8")
        ad = b"pfe1" + struct.pack(">I", len(s)) + s + self.path.encode("utf-8")
        try:
            got = AESGCM(key).decrypt(nonce, sealed, ad)
        except InvalidTag:
            self.problem = "envelope does not decrypt under the subject's data key"
            return False
        if orjson.loads(got) != self.value:
            self.problem = "decrypts to a value other than the permitted one"
            return False
        return True


def _engine(policy: dict, engine_name: str) -> dict:
    for e in policy["engines"]:
        if e["name"] == engine_name:
            return e
    raise KeyError(engine_name)


def expected(
    event: dict, consent: dict | None, engine_name: str, policy: dict, now_ms: int, secret: bytes | None,
    keys: KeyLookup | None = None,
) -> tuple[str, Any]:
    """``("emitted", output_dict)`` or ``("dropped", reason)`` for one event and engine.
    Encrypted fields are :class:`Sealed` (checked with ``keys`` when given)."""
    outcome, what, _categories = _expected(event, consent, engine_name, policy, now_ms, secret, keys)
    return outcome, what


def expected_decision(
    event: dict, consent: dict | None, policy: dict, now_ms: int, secret: bytes | None,
) -> dict[str, Any]:
    """The decision part of the input's one decision record (CONTRACT §7):
    ``{"outcome": "decided", "reason": ..., "engines": [...]}``.

    When step 1 of the rule fails (no subject: ``anonymous``; no consent:
    ``no_consent``) no engine is tried: ``reason`` says which and ``engines`` is
    empty. Otherwise ``reason`` is None and ``engines`` holds, for every engine in
    the policy's order, ``{"engine", "outcome", "reason", "categories_sent"}``:
    the categories (in the policy's order) whose fields the output carries."""
    if event.get("subject_id") is None:
        return {"outcome": "decided", "reason": "anonymous", "engines": []}
    if _usable(consent, policy) is None:
        return {"outcome": "decided", "reason": "no_consent", "engines": []}
    entries = []
    for engine in policy["engines"]:
        outcome, what, categories = _expected(event, consent, engine["name"], policy, now_ms, secret)
        entries.append({"engine": engine["name"], "outcome": outcome,
                        "reason": None if outcome == "emitted" else what, "categories_sent": categories})
    return {"outcome": "decided", "reason": None, "engines": entries}


def _expected(
    event: dict, consent: dict | None, engine_name: str, policy: dict, now_ms: int, secret: bytes | None,
    keys: KeyLookup | None = None,
) -> tuple[str, Any, list[str]]:
    """``expected`` plus the categories sent (empty for a drop)."""
    engine = _engine(policy, engine_name)
    ts = event["ts"]

    # 1. subject and consent
    subject = event.get("subject_id")
    if subject is None:
        return ("dropped", "anonymous", [])
    if consent is None:
        return ("dropped", "no_consent", [])

    eff = _usable(consent, policy)
    if eff is None:  # its signals do not decode: malformed, the subject fails closed
        return ("dropped", "no_consent", [])
    needs = engine["needs"]

    # 1a. an objection (GDPR Art. 21) to a class a needed purpose belongs to: absolute
    objections = set(consent.get("objections") or [])
    for p in needs:
        if objections & set(objection_classes(policy, p)):
            return ("dropped", "objected", [])

    # 2. purposes: granted with an allowed basis, then granted at or before ts, then not expired
    granted = {p: e for p, e in eff["purposes"].items() if (e.get("basis") or "consent") in allowed_bases(policy, p)}
    purposes = {} if engine_name in eff["closed_engines"] else granted
    for p in needs:
        if p not in purposes:
            return ("dropped", "purpose_denied", [])
    for p in needs:
        if not purposes[p]["granted_at"] <= ts:
            return ("dropped", "before_grant", [])
    for p in needs:
        expires_at = purposes[p].get("expires_at")
        if expires_at is not None and not (now_ms < expires_at and ts < expires_at):
            return ("dropped", "expired", [])

    # 3. third parties: opt-out signal, then the sharing purpose
    if engine["party"] == "third":
        if eff["gpc"]:
            return ("dropped", "opt_out", [])
        if "third_party_sharing" not in granted:
            return ("dropped", "purpose_denied", [])

    # 4. jurisdiction
    if engine["jurisdictions"] != "any" and consent["jurisdiction"] not in engine["jurisdictions"]:
        return ("dropped", "region_blocked", [])

    # 5. projection
    transforms = engine.get("transforms", {})
    granted_categories = [c for c, v in eff["categories"].items() if v is True]
    out: dict[str, Any] = {}
    something = False
    sent: list[str] = []
    for category, fields in policy["categories"].items():
        if category == "payment":
            continue
        if category not in engine["may_receive"] or category not in granted_categories:
            continue
        for path in fields:
            if path in NEVER_EMITTED:
                continue
            has, shape = _shape_of(event.get("event_type"), path)
            if not has:
                continue
            transform = transforms.get(path, "keep")
            if transform == "drop":
                continue
            value = _clean(_get(event, path), shape)
            if value is None:
                continue
            if transform == "pseudonymize":
                value = _pseudonymize_field(secret, engine_name, path, value)
            elif transform == "coarsen:country":
                if not isinstance(value, dict) or value.get("country") is None:
                    continue
                value = {"country": value["country"]}
            elif transform == "encrypt":
                value = Sealed(value, subject, path, keys)
            _put(out, path, value)
            something = True
            if category not in sent:
                sent.append(category)
    if not something:
        return ("dropped", "nothing_permitted", [])

    if engine.get("subject", "keep") == "pseudonymize":
        subject_out = pseudonym(secret, engine_name, subject)
    else:
        subject_out = subject
    ts_out = ts - ts % HOUR if transforms.get("ts") == "coarsen:hour" else ts
    relied = list(needs)
    if engine["party"] == "third" and "third_party_sharing" not in relied:
        relied.append("third_party_sharing")
    result = {"event_id": event["event_id"], "subject_id": subject_out, "event_type": event["event_type"],
              "ts": ts_out}
    result.update(out)
    result["consent_version"] = consent["updated_at"]
    result["policy_version"] = policy["version"]
    result["purposes"] = relied
    result["engine"] = engine_name
    return ("emitted", result, sent)


#: CONTRACT §3: the values a record may give (anything else makes it malformed; fails closed)
LEGAL_BASES = (None, "consent", "legitimate_interest")
OBJECTION_CLASSES = ("direct_marketing", "profiling")


def consent_problem(record: dict) -> str | None:
    """Why a consent record that passed its codec is still malformed by the rule (None: it
    is not): a consent signal that does not decode, or ``objections`` that is not a list
    of class names. ``pfilter verify`` expects such a record in the DLQ and its subject
    blocked; the message names the rule, never a value (G6)."""
    objections = record.get("objections")
    if objections is not None and not (isinstance(objections, list)
                                       and all(o in OBJECTION_CLASSES for o in objections)):
        return "objections is not a list of known class names"
    purposes = record.get("purposes")
    if isinstance(purposes, dict):
        for entry in purposes.values():
            if isinstance(entry, dict) and entry.get("basis") not in LEGAL_BASES:
                return "a purpose's basis is not a known legal basis"
    return signals_problem(record)


def _usable(consent: dict | None, policy: dict) -> dict[str, Any] | None:
    """``reference_signals.effective`` of the record, or None: no record, or one whose
    signals or objections make it malformed (fails closed like any malformed record)."""
    if consent is None:
        return None
    if consent_problem(consent) is not None:
        return None
    try:
        return effective(consent, policy)
    except SignalUnreadable:
        return None


def _leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        found: dict[str, Any] = {}
        for k, v in d.items():
            found.update(_leaves(v, f"{prefix}.{k}" if prefix else k))
        return found
    return {prefix: d}


def violations(
    emitted_record: dict, event: dict, consent: dict | None, engine_name: str, policy: dict,
    now_ms: int, secret: bytes | None, keys: KeyLookup | None = None,
) -> list[str]:
    """What in an emitted record the rule forbids (field names only, never values).

    Empty when the record is one the rule allows: the event may go to the
    engine and every field in it is one the rule emits, with the value the rule
    gives it (transforms included). A field the rule would emit but the record
    lacks is not a safety violation and is not listed.
    """
    outcome, what = expected(event, consent, engine_name, policy, now_ms, secret, keys)
    if outcome == "dropped":
        return [f"event must not reach engine {engine_name!r}: {what}"]
    problems = []
    allowed = _leaves(what)
    for path, value in _leaves(emitted_record).items():
        if path not in allowed:
            problems.append(f"field {path!r} is not permitted")
        elif allowed[path] != value:
            want = allowed[path]
            why = f": {want.problem}" if isinstance(want, Sealed) else ""
            problems.append(f"field {path!r} differs from what the rule permits{why}")
    return problems


def current_consent(log: list[tuple[int, Any]]) -> dict | None:
    """A subject's current valid consent record from its consent log.

    ``log``: ``(offset, record)`` in arrival order; record is a valid consent
    dict, None (tombstone), or ``("malformed", updated_at or None)``.
    Greatest ``(updated_at, offset)`` wins; a tombstone forgets everything
    before it; a malformed record that would win (or whose ``updated_at`` is
    unknown) leaves no consent until a valid record beats it, where an unknown
    ``updated_at`` counts as the last good one.
    """
    best: tuple[int, int] | None = None   # (updated_at, offset) to beat
    record: dict | None = None            # None while blocked or empty
    for offset, rec in log:
        if rec is None:
            best, record = None, None
        elif isinstance(rec, tuple):
            u = rec[1]
            if u is not None and best is not None and (u, offset) <= best:
                continue
            if u is None:
                u = best[0] if best is not None else -1
            best, record = (u, offset), None
        else:
            key = (rec["updated_at"], offset)
            if best is None or key > best:
                best, record = key, rec
    return record


# ------------------------------------------------------------------ consent notices (§9)
_NOTICE_UNITS = {"ms": 1, "s": 1000, "m": 60 * 1000, "h": 60 * 60 * 1000, "d": 24 * 60 * 60 * 1000}


def notice_before_ms(policy: dict) -> int:
    """The policy document's ``notice_before`` in ms (30 days when it names none), read here
    on its own, not through the engine's policy compiler."""
    text = str(policy.get("notice_before", "30d")).strip()
    for unit in ("ms", "s", "m", "h", "d"):  # "ms" before "s" and "m"
        if text.endswith(unit) and text[: -len(unit)].strip().isdigit():
            return int(text[: -len(unit)]) * _NOTICE_UNITS[unit]
    raise ValueError("notice_before is not a duration")


def notice_problem(notice: dict, record: dict, policy: dict) -> str | None:
    """Why ``notice`` is not justified by the consent ``record`` its ``consent_version``
    names under ``policy`` (None: it is): the record grants the purpose with that
    ``expires_at``, and the notice went out no earlier than its due time."""
    purpose, kind = notice.get("purpose"), notice.get("kind")
    if purpose not in policy.get("purposes", []):
        return "purpose not in the policy"
    entry = (record.get("purposes") or {}).get(purpose)
    if not isinstance(entry, dict) or entry.get("status") != "granted":
        return "the consent version does not grant the purpose"
    if entry.get("expires_at") is None or entry.get("expires_at") != notice.get("expires_at"):
        return "the consent version's grant has another expires_at"
    if kind == "reconfirm":
        due = entry["expires_at"] - notice_before_ms(policy)
    elif kind == "expired":
        due = entry["expires_at"]
    else:
        return "unknown kind"
    if not isinstance(notice.get("sent_at"), int) or notice["sent_at"] < due:
        return "sent before it was due"
    return None
