"""The ``encrypt`` transform on the hot path: a :class:`Sealer` per Filter (CONTRACT §10).

A field whose transform is ``encrypt`` keeps its path; its value becomes the
envelope of ``orjson.dumps(value)`` under the subject's data key
(``streams.crypto.fields``): the text form ``pfe1.<version>.<base64url>`` in
JSON outputs, the binary form ``0x01 | version | nonce | ciphertext | tag`` in
Avro outputs (the ``bytes`` branch of ``schemas/filtered_event.avsc``).

Keys: the subject's key is created on first use (:meth:`KeyRing.ensure`); the
new :class:`~streams.crypto.KeyRecord` waits in :attr:`Sealer.new` until the
Filter hands it to the runtime in the ``BatchResult`` of the batch whose
output first used it, so that under EOS it is committed in the same
transaction as that output (``Filter.decide`` appends it to ``records``). A
runtime that aborts a transaction must drop the ring (or the partitions'
rings) and restore it from ``personalization.keys``: a key created in an
aborted transaction does not exist for anyone else.

Speed: the ring caches one ``AESGCM`` per (subject, version); here a field
costs one nonce draw, one ``encrypt`` call, the associated data and (JSON) a
base64 encoding. ``nonces`` is injectable for tests only (byte-for-byte
comparisons); production draws ``os.urandom(12)`` per field.
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Callable
from typing import Any

import orjson

from streams.crypto import Kek, KeyRecord, KeyRing, associated_data
from streams.crypto.fields import BINARY_TAG, ENVELOPE_PREFIX
from streams.crypto.keys import NONCE_BYTES

_u32 = struct.Struct(">I")
_b64e = base64.urlsafe_b64encode


def avro_bytes_paths() -> frozenset[str]:
    """Dotted paths of ``filtered_event.avsc`` whose type has a ``bytes`` branch (the binary envelope)."""
    from streams.engine.codecs.schemas import load_schema

    found: set[str] = set()

    def walk(t: Any, prefix: str) -> None:
        if isinstance(t, list):
            if "bytes" in t:
                found.add(prefix)
            for b in t:
                walk(b, prefix)
        elif isinstance(t, dict) and t.get("type") == "record":
            for f in t["fields"]:
                walk(f["type"], f"{prefix}.{f['name']}" if prefix else f["name"])

    walk(load_schema("filtered_event"), "")
    return frozenset(found)


def ephemeral_ring() -> KeyRing:
    """A ring under a random KEK nobody else holds: for a Filter built without one (tests,
    benchmarks). Its envelopes can never be decrypted elsewhere: fail-safe, never plaintext.
    Runtimes always pass the ring of ``PFILTER_KEK`` (``streams.wiring``)."""
    return KeyRing(Kek(os.urandom(32)))


class Sealer:
    """Encrypts field values for one Filter; collects the data keys it created."""

    __slots__ = ("ring", "binary", "new", "_nonce", "_clock")

    def __init__(self, ring: KeyRing, *, binary: bool | frozenset[str], clock: Callable[[], int],
                 nonces: Callable[[int], bytes] = os.urandom) -> None:
        """``binary``: the field paths whose output type has a ``bytes`` branch (Avro:
        ``avro_bytes_paths()``), True for all, False for none (JSON). Other paths get the
        text envelope, which fits their ``string`` type."""
        self.ring = ring
        self.binary = binary
        #: key records created since the last :meth:`drain`, to produce with the outputs
        self.new: list[KeyRecord] = []
        self._nonce = nonces
        self._clock = clock

    def seal(self, subject: str, path: str, value: Any) -> str | bytes:
        """The envelope of ``value`` (any JSON value) for field ``path`` of ``subject``."""
        ring = self.ring
        if subject not in ring:
            rec = ring.ensure(subject, self._clock())
            if rec is not None:
                self.new.append(rec)
        version, aead = ring.aead(subject)
        nonce = self._nonce(NONCE_BYTES)
        ct = aead.encrypt(nonce, orjson.dumps(value), associated_data(subject, path))
        b = self.binary
        if b is True or (b and path in b):
            return bytes((BINARY_TAG,)) + _u32.pack(version) + nonce + ct
        return f"{ENVELOPE_PREFIX}{version}.{_b64e(nonce + ct).rstrip(b'=').decode('ascii')}"

    def drain(self) -> list[KeyRecord]:
        """The key records created since the last call (and forget them here)."""
        new, self.new = self.new, []
        return new

    def forget(self, subject: str) -> bool:
        """Erasure: drop the subject's keys from the ring (a pending new one too)."""
        if self.new:
            self.new = [r for r in self.new if r.subject_id != subject]
        return self.ring.forget(subject)
