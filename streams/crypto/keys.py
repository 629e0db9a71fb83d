"""Key-encryption key (KEK), data-key wrapping, and the ``personalization.keys`` record.

The KEK
-------
One 256-bit secret from ``PFILTER_KEK`` (text) or ``PFILTER_KEK_FILE`` (a file
holding the same text, or exactly 32 raw bytes). Text is base64 (standard or
URL-safe alphabet, padding optional) or 64 hex digits. Make one with::

    python -c "import base64,secrets;print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"

A KEK is named by its ``kek_id``: the first 8 bytes of
HMAC-SHA256(KEK, "pfilter kek id v1"), base64url. The id reveals nothing of
the KEK (a keyed hash) and lets a reader tell "wrapped by another KEK" (a
configuration error: :class:`WrongKeyError` naming both ids) from "tampered
record", and lets a ring hold an old and a new KEK during a rotation.

Wrapping: AES-256-GCM, not AES-KW
----------------------------------
A data key is wrapped with AES-256-GCM under the KEK, random 96-bit nonce,
associated data = ``"pfilter dk v1" | subject id | key version``
(length-prefixed). Why GCM and not AES key wrap (RFC 3394):

* the associated data binds the wrapped key to its subject and version: a key
  record copied under another subject, or an old version replayed, fails to
  unwrap instead of decrypting someone else's fields;
* one primitive (AES-GCM, already used for the fields) and one library call;
  AES-KW in ``cryptography`` has no associated data.

The cost is the random-nonce bound of GCM: NIST SP 800-38D allows 2**32
wraps per KEK, i.e. four billion data keys (one per subject and erasure
cycle) before the KEK must be rotated. Wraps happen once per new subject, so
that is not a practical limit; rotate the KEK long before.

The key record (topic ``personalization.keys``)
-----------------------------------------------
Key: the subject id (UTF-8), co-partitioned with ``consent`` (murmur2).
Value: JSON (UTF-8), or null (a tombstone: the key is shredded)::

    {"subject_id": "c-1", "key_version": 3141592653, "alg": "A256GCM",
     "kek_id": "Qm9vbWVyYW5n", "wrapped_key": "<base64url: nonce | AES-GCM(data key) | tag>",
     "created_at": 1764650000000}

* ``key_version``: 32-bit unsigned, random and non-zero, unique among the
  subject's keys over its lifetime (an erased subject who comes back gets a
  new key with a new version, so an envelope made under the shredded key is
  reported as ``KeyMissingError``, never tried under the new key). A random
  version rather than a counter because after an erasure nobody remembers the
  old counter; a clash (2**-32 per re-creation) would only turn a
  ``KeyMissingError`` into a ``WrongKeyError``, never into plaintext.
* ``wrapped_key``: 12-byte nonce, 32-byte encrypted key, 16-byte tag (80
  base64url characters, no padding).
* ``created_at``: epoch ms when the worker created the key.

``schemas/data_key.avsc`` is the same record in Avro (``wrapped_key`` as bytes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams.crypto.errors import CryptoError, KekError, WrongKeyError

#: AES-256 everywhere: 32-byte KEK and data keys.
KEY_BYTES = 32
#: GCM's standard nonce size; any other size is hashed into one by GCM (slower, no gain).
NONCE_BYTES = 12
ALG = "A256GCM"
_KEK_ID_LABEL = b"pfilter kek id v1"
_WRAP_LABEL = b"pfilter dk v1"
_u32 = struct.Struct(">I")


def b64url(data: bytes) -> str:
    """base64url without padding (the envelope and record alphabet)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Inverse of :func:`b64url`; raises ``ValueError`` (binascii.Error) on bad input."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Kek:
    """A key-encryption key. ``repr`` shows only its id; the bytes are never printed."""

    __slots__ = ("_aead", "kek_id")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise KekError(f"the KEK must be {KEY_BYTES} bytes (AES-256), got {len(secret)}")
        self._aead = AESGCM(secret)
        self.kek_id = b64url(hmac.new(secret, _KEK_ID_LABEL, hashlib.sha256).digest()[:8])

    @classmethod
    def from_text(cls, text: str) -> Kek:
        """A KEK from base64/base64url (padding optional) or 64 hex digits."""
        t = text.strip()
        raw: bytes | None = None
        if len(t) == 2 * KEY_BYTES and all(c in "0123456789abcdefABCDEF" for c in t):
            raw = bytes.fromhex(t)
        else:
            try:
                raw = base64.b64decode(t.replace("-", "+").replace("_", "/") + "=" * (-len(t) % 4),
                                       validate=True)
            except (binascii.Error, ValueError):
                raw = None
        if raw is None:
            # the text itself is never shown: it is the secret
            raise KekError("the KEK is neither base64 nor hex (value not shown)")
        return cls(raw)

    @classmethod
    def from_file(cls, path: Path) -> Kek:
        """A KEK file: the text form, or exactly 32 raw bytes."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise KekError(f"cannot read the KEK file {str(path)!r}: {exc.strerror}") from None
        if len(data) == KEY_BYTES:
            try:
                return cls.from_text(data.decode("ascii"))
            except (UnicodeDecodeError, KekError):
                return cls(data)
        try:
            return cls.from_text(data.decode("ascii"))
        except UnicodeDecodeError:
            raise KekError(f"the KEK file {str(path)!r} is neither text nor {KEY_BYTES} raw bytes") from None

    def __repr__(self) -> str:
        return f"Kek(kek_id={self.kek_id!r})"

    # -- wrapping ---------------------------------------------------------------
    def wrap(self, subject: str, version: int, data_key: bytes) -> bytes:
        """nonce | AES-GCM(data_key) | tag, bound to (subject, version)."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, _wrap_ad(subject, version))

    def unwrap(self, subject: str, version: int, wrapped: bytes) -> bytes:
        """The data key, or :class:`WrongKeyError` (other KEK, tampered or misplaced record)."""
        try:
            key = self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_ad(subject, version))
        except (InvalidTag, ValueError):
            key = None
        if key is None or len(key) != KEY_BYTES:
            raise WrongKeyError(
                f"data key version {version} does not unwrap under KEK {self.kek_id}: "
                "wrong KEK, or a tampered or misplaced key record"
            )
        return key


def _wrap_ad(subject: str, version: int) -> bytes:
    s = subject.encode("utf-8")
    return _WRAP_LABEL + _u32.pack(len(s)) + s + _u32.pack(version)


def new_kek_text() -> str:
    """A fresh random KEK in the text form ``PFILTER_KEK`` takes."""
    return b64url(os.urandom(KEY_BYTES))


def load_kek(kek: str | None, kek_file: Path | None) -> Kek | None:
    """The KEK from the two settings (``Settings.kek``/``kek_file``); None when neither is set.

    Both set is a configuration error: which one wins would be a guess."""
    if kek and kek_file:
        raise KekError("set PFILTER_KEK or PFILTER_KEK_FILE, not both")
    if kek:
        return Kek.from_text(kek)
    if kek_file:
        return Kek.from_file(kek_file)
    return None


# ---------------------------------------------------------------- the key record


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One value of ``personalization.keys``: a subject's wrapped data key."""

    subject_id: str
    key_version: int
    kek_id: str
    wrapped_key: bytes
    created_at: int
    alg: str = ALG

    def __repr__(self) -> str:  # the wrapped key is not secret, but there is no reason to print it
        return (f"KeyRecord(subject_id=<{len(self.subject_id)} chars>, key_version={self.key_version}, "
                f"kek_id={self.kek_id!r}, created_at={self.created_at})")

    def to_json(self) -> bytes:
        return orjson.dumps({
            "subject_id": self.subject_id,
            "key_version": self.key_version,
            "alg": self.alg,
            "kek_id": self.kek_id,
            "wrapped_key": b64url(self.wrapped_key),
            "created_at": self.created_at,
        })

    def to_avro_dict(self) -> dict[str, Any]:
        """The record as ``schemas/data_key.avsc`` holds it (``wrapped_key`` raw bytes)."""
        return {"subject_id": self.subject_id, "key_version": self.key_version, "alg": self.alg,
                "kek_id": self.kek_id, "wrapped_key": self.wrapped_key, "created_at": self.created_at}


class KeyRecordError(CryptoError, ValueError):
    """A ``personalization.keys`` value that is not a key record (names the field, not values)."""


def parse_key_record(value: bytes | dict[str, Any]) -> KeyRecord:
    """A key record from its JSON bytes (or an already decoded dict, e.g. from Avro)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise KeyRecordError("key record is not JSON") from None
    else:
        obj = value
    if not isinstance(obj, dict):
        raise KeyRecordError("key record is not an object")

    def need(name: str, typ: type | tuple[type, ...]) -> Any:
        v = obj.get(name)
        if not isinstance(v, typ) or isinstance(v, bool):
            raise KeyRecordError(f"key record field {name!r} is missing or has the wrong type")
        return v

    subject = need("subject_id", str)
    version = need("key_version", int)
    if not 0 < version < 2**32:
        raise KeyRecordError("key record field 'key_version' is out of range")
    alg = obj.get("alg", ALG)
    if alg != ALG:
        raise KeyRecordError(f"key record alg is not {ALG}")
    wrapped = obj.get("wrapped_key")
    if isinstance(wrapped, str):
        try:
            wrapped = unb64url(wrapped)
        except (binascii.Error, ValueError):
            raise KeyRecordError("key record field 'wrapped_key' is not base64url") from None
    if not isinstance(wrapped, (bytes, bytearray)) or len(wrapped) != NONCE_BYTES + KEY_BYTES + 16:
        raise KeyRecordError("key record field 'wrapped_key' has the wrong type or length")
    return KeyRecord(subject, version, need("kek_id", str), bytes(wrapped), need("created_at", int), alg)
