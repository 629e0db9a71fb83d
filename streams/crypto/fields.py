"""Encrypted fields: per-subject data keys, the :class:`KeyRing`, and the field envelope.

A field whose policy transform is ``encrypt`` (CONTRACT §10) keeps its JSON
path; its value becomes an *envelope*: AES-256-GCM ciphertext of the field's
JSON encoding under the subject's data key, random 96-bit nonce, associated
data = subject id and field path (so a ciphertext moved to another subject
or another field does not decrypt).

Envelope, JSON (a string)::

    pfe1.<key version, decimal>.<base64url(nonce | ciphertext | tag), no padding>
    e.g. "pfe1.3141592653.q2H0...Zw"

Envelope, Avro (``bytes``, see the note in ``schemas/filtered_event.avsc``)::

    0x01 | key version (4 bytes, big endian) | nonce (12) | ciphertext | tag (16)

The plaintext is ``orjson.dumps(value)`` (:func:`encrypt_value`), so a
string, a number or a nested object round-trips with its type. An
``email`` of 20 characters becomes a 72-character JSON envelope.

Associated data: ``"pfe1" | len(subject) (4 bytes) | subject | path``, the
subject being the id the key belongs to (the key of ``personalization.keys``).

The hot path (worker side)::

    ring = KeyRing(kek)                       # one per worker
    ring.add_record(subject, value)           # restore: every keys-topic record
    rec = ring.ensure(subject, now_ms)        # first use: a new key (produce rec!)
    env = encrypt_value(ring, subject, "email", "a@b.example")

The reader side (engine SDK)::

    ring.add_record(subject, value_or_None)   # a None value (tombstone) shreds
    value = decrypt_value(ring, subject, "email", env)   # or KeyMissingError / WrongKeyError

Speed: the ring caches one ``AESGCM`` object per (subject, version), so a
field costs one nonce draw, one AES-GCM call and a base64 encoding
(``python -m bench.crypto`` measures it). A ring is not thread-safe: one per
thread (each worker and each SDK consumer has one).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import struct
from collections.abc import Iterable
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams.crypto.errors import EnvelopeError, KekError, KeyMissingError, WrongKeyError
from streams.crypto.keys import KEY_BYTES, NONCE_BYTES, Kek, KeyRecord, KeyRecordError, parse_key_record

ENVELOPE_PREFIX = "pfe1."
#: First byte of the Avro (binary) envelope: format version 1.
BINARY_TAG = 0x01
_TAG_BYTES = 16
#: "pfe1.<1-10 digits>.<base64url of at least nonce + tag>"
_ENVELOPE_RE = re.compile(r"pfe1\.([1-9][0-9]{0,9})\.([A-Za-z0-9_-]{38,})\Z")
_u32 = struct.Struct(">I")
_AD_LABEL = b"pfe1"
#: Unwrapped keys kept per ring before the oldest are dropped (re-unwrapped on
#: next use, ~2 µs). 1 M subjects x ~200 B of AESGCM object and dict slots is
#: ~200 MB; far more subjects than one worker or engine sees in a cache period.
DEFAULT_MAX_CACHED = 1_000_000

_urandom = os.urandom
_b64e = base64.urlsafe_b64encode
_b64d = base64.urlsafe_b64decode


def associated_data(subject: str, path: str) -> bytes:
    """The AES-GCM associated data of field ``path`` of ``subject``."""
    s = subject.encode("utf-8")
    return _AD_LABEL + _u32.pack(len(s)) + s + path.encode("utf-8")


def is_envelope(value: Any) -> bool:
    """True for a JSON envelope string or an Avro envelope byte string (shape only)."""
    if isinstance(value, str):
        return value.startswith(ENVELOPE_PREFIX) and _ENVELOPE_RE.match(value) is not None
    if isinstance(value, (bytes, bytearray)):
        return len(value) >= 5 + NONCE_BYTES + _TAG_BYTES and value[0] == BINARY_TAG
    return False


def envelope_version(envelope: str | bytes) -> int:
    """The key version an envelope was made under (:class:`EnvelopeError` if not an envelope)."""
    return _split(envelope)[0]


def _split(envelope: str | bytes) -> tuple[int, bytes]:
    """(key version, nonce | ciphertext | tag)."""
    if isinstance(envelope, str):
        m = _ENVELOPE_RE.match(envelope)
        if m is None:
            raise EnvelopeError("value is not an encrypted-field envelope")
        version = int(m.group(1))
        try:
            body = _b64d(m.group(2) + "=" * (-len(m.group(2)) % 4))
        except (binascii.Error, ValueError):
            raise EnvelopeError("envelope body is not base64url") from None
    elif isinstance(envelope, (bytes, bytearray)) and is_envelope(envelope):
        version = _u32.unpack_from(envelope, 1)[0]
        body = bytes(envelope[5:])
    else:
        raise EnvelopeError("value is not an encrypted-field envelope")
    if version == 0 or version >= 2**32 or len(body) < NONCE_BYTES + _TAG_BYTES:
        raise EnvelopeError("envelope has a bad key version or is too short")
    return version, body


def to_binary(envelope: str) -> bytes:
    """JSON envelope -> Avro envelope (same key version, nonce and ciphertext)."""
    version, body = _split(envelope)
    return bytes((BINARY_TAG,)) + _u32.pack(version) + body


def to_text(envelope: bytes) -> str:
    """Avro envelope -> JSON envelope."""
    version, body = _split(envelope)
    return f"{ENVELOPE_PREFIX}{version}.{_b64e(body).rstrip(b'=').decode('ascii')}"


# ---------------------------------------------------------------- the ring


class _Entry:
    """One data key of a subject: its record (wrapped) and, once used, its cipher."""

    __slots__ = ("record", "aead")

    def __init__(self, record: KeyRecord, aead: AESGCM | None) -> None:
        self.record = record
        self.aead = aead


class KeyRing:
    """The data keys this process knows, per subject, and their cached ciphers.

    ``keks``: the KEK that wraps new keys first, then any older ones still
    accepted for unwrapping (rotation). A ring without a KEK still tracks
    which keys exist (``personalization.keys`` is readable without it) but can
    neither create nor unwrap one.
    """

    def __init__(self, keks: Kek | Iterable[Kek] | None = None, *, max_cached: int = DEFAULT_MAX_CACHED) -> None:
        if keks is None:
            kek_list: list[Kek] = []
        elif isinstance(keks, Kek):
            kek_list = [keks]
        else:
            kek_list = list(keks)
        self._wrapping = kek_list[0] if kek_list else None
        self._keks = {k.kek_id: k for k in kek_list}
        # subject -> {version: _Entry}; the newest version is the current key
        self._keys: dict[str, dict[int, _Entry]] = {}
        self._current: dict[str, int] = {}
        self._cached: dict[tuple[str, int], None] = {}  # insertion-ordered: FIFO eviction
        self._max_cached = max_cached
        self.unwraps = 0  # unwrap operations (cache misses), for the bench and tests

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, subject: object) -> bool:
        return subject in self._keys

    def __repr__(self) -> str:
        return f"KeyRing(subjects={len(self._keys)}, keks={list(self._keks)})"

    @property
    def can_unwrap(self) -> bool:
        return bool(self._keks)

    # -- keys-topic records -----------------------------------------------------
    def add_record(self, subject: str, value: bytes | dict[str, Any] | KeyRecord | None) -> KeyRecord | None:
        """Apply one ``personalization.keys`` record; ``None`` (a tombstone) forgets the subject.

        A record whose ``subject_id`` is not its Kafka key is refused
        (:class:`KeyRecordError`): a misplaced key must not serve another subject."""
        if value is None:
            self.forget(subject)
            return None
        rec = value if isinstance(value, KeyRecord) else parse_key_record(value)
        if rec.subject_id != subject:
            raise KeyRecordError("key record's subject_id differs from its Kafka key")
        versions = self._keys.setdefault(subject, {})
        old = versions.get(rec.key_version)
        if old is None or old.record != rec:
            versions[rec.key_version] = _Entry(rec, None)
            self._cached.pop((subject, rec.key_version), None)
        cur = self._current.get(subject)
        if cur is None or versions[cur].record.created_at <= rec.created_at:
            self._current[subject] = rec.key_version
        return rec

    def forget(self, subject: str) -> bool:
        """Drop every key of ``subject`` (shredding, from this process's point of view)."""
        versions = self._keys.pop(subject, None)
        self._current.pop(subject, None)
        if versions:
            for v in versions:
                self._cached.pop((subject, v), None)
        return versions is not None

    def record(self, subject: str, version: int) -> KeyRecord | None:
        """The key record of ``subject``'s key ``version`` (wrapped), or None."""
        entry = self._keys.get(subject, {}).get(version)
        return entry.record if entry is not None else None

    def current_version(self, subject: str) -> int | None:
        return self._current.get(subject)

    def versions(self, subject: str) -> list[int]:
        return sorted(self._keys.get(subject, ()))

    def ensure(self, subject: str, now_ms: int) -> KeyRecord | None:
        """The subject's key exists after this; returns the new record to produce, or None.

        A new key has a random 256-bit value and a random non-zero 32-bit
        version different from any the ring knows for the subject."""
        if subject in self._current:
            return None
        if self._wrapping is None:
            raise KekError("no KEK configured: cannot create a data key")
        key = secrets.token_bytes(KEY_BYTES)
        known = self._keys.get(subject, {})
        version = 0
        while version == 0 or version in known:
            version = secrets.randbits(32)
        rec = KeyRecord(subject, version, self._wrapping.kek_id,
                        self._wrapping.wrap(subject, version, key), now_ms)
        self._keys.setdefault(subject, {})[version] = _Entry(rec, self._cache(subject, version, key))
        self._current[subject] = version
        return rec

    # -- ciphers ------------------------------------------------------------------
    def _cache(self, subject: str, version: int, key: bytes) -> AESGCM:
        aead = AESGCM(key)
        cached = self._cached
        cached[(subject, version)] = None
        if len(cached) > self._max_cached:
            old_subject, old_version = next(iter(cached))
            del cached[(old_subject, old_version)]
            entry = self._keys.get(old_subject, {}).get(old_version)
            if entry is not None:
                entry.aead = None
        return aead

    def aead(self, subject: str, version: int | None = None) -> tuple[int, AESGCM]:
        """(version, cipher) of the subject's key ``version`` (default: current).

        :class:`KeyMissingError` when the ring has no such key (shredded, or
        never seen); :class:`WrongKeyError` when it was wrapped by a KEK the ring
        does not hold or does not unwrap."""
        versions = self._keys.get(subject)
        if version is None:
            version = self._current.get(subject)
        entry = versions.get(version) if versions is not None and version is not None else None
        if entry is None:
            raise KeyMissingError(
                f"no data key version {version} for this subject: shredded or never created"
            )
        aead = entry.aead
        if aead is None:
            aead = entry.aead = self._unwrap(subject, entry.record)
        return version, aead

    def _unwrap(self, subject: str, rec: KeyRecord) -> AESGCM:
        if not self._keks:
            raise KekError("no KEK configured: cannot unwrap data keys")
        kek = self._keks.get(rec.kek_id)
        if kek is None:
            raise WrongKeyError(
                f"data key version {rec.key_version} was wrapped by KEK {rec.kek_id}; "
                f"this process has KEK {', '.join(self._keks)}"
            )
        self.unwraps += 1
        return self._cache(subject, rec.key_version, kek.unwrap(subject, rec.key_version, rec.wrapped_key))


# ---------------------------------------------------------------- fields


def encrypt_field(ring: KeyRing, subject: str, path: str, value_bytes: bytes) -> str:
    """The JSON envelope of ``value_bytes`` under the subject's current key.

    The key must exist (:meth:`KeyRing.ensure` first): :class:`KeyMissingError` otherwise."""
    version, aead = ring.aead(subject)
    nonce = _urandom(NONCE_BYTES)
    body = nonce + aead.encrypt(nonce, value_bytes, associated_data(subject, path))
    return f"{ENVELOPE_PREFIX}{version}.{_b64e(body).rstrip(b'=').decode('ascii')}"


def encrypt_field_binary(ring: KeyRing, subject: str, path: str, value_bytes: bytes) -> bytes:
    """As :func:`encrypt_field`, in the Avro (bytes) envelope form."""
    version, aead = ring.aead(subject)
    nonce = _urandom(NONCE_BYTES)
    return (bytes((BINARY_TAG,)) + _u32.pack(version) + nonce
            + aead.encrypt(nonce, value_bytes, associated_data(subject, path)))


def decrypt_field(ring: KeyRing, subject: str, path: str, envelope: str | bytes) -> bytes:
    """The plaintext bytes of an envelope (either form).

    :class:`EnvelopeError` (not an envelope), :class:`KeyMissingError` (key
    shredded or unknown), :class:`WrongKeyError` (the key does not authenticate
    this ciphertext for this subject and path). Never returns garbage."""
    version, body = _split(envelope)
    _, aead = ring.aead(subject, version)
    try:
        return aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], associated_data(subject, path))
    except InvalidTag:
        raise WrongKeyError(
            f"field {path!r} does not authenticate under data key version {version}: "
            "wrong key, another subject's or field's ciphertext, or tampered"
        ) from None


def encrypt_value(ring: KeyRing, subject: str, path: str, value: Any, *, binary: bool = False) -> str | bytes:
    """Encrypt a field value (any JSON value): its ``orjson`` encoding is the plaintext."""
    plain = orjson.dumps(value)
    if binary:
        return encrypt_field_binary(ring, subject, path, plain)
    return encrypt_field(ring, subject, path, plain)


def decrypt_value(ring: KeyRing, subject: str, path: str, envelope: str | bytes) -> Any:
    """Inverse of :func:`encrypt_value`."""
    plain = decrypt_field(ring, subject, path, envelope)
    try:
        return orjson.loads(plain)
    except orjson.JSONDecodeError:
        raise EnvelopeError(f"field {path!r} decrypted to bytes that are not JSON") from None
