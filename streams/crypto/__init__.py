"""Field-level encryption and crypto-shredding (CONTRACT §10, G4). Pure: no Kafka here.

* :mod:`streams.crypto.keys`: the KEK (``PFILTER_KEK``/``PFILTER_KEK_FILE``),
  AES-GCM key wrapping, the ``personalization.keys`` record format;
* :mod:`streams.crypto.fields`: the :class:`KeyRing` (per-subject data keys and
  cached ciphers) and the field envelope (``pfe1.<version>.<base64url>``);
* :mod:`streams.crypto.errors`: :class:`WrongKeyError`, :class:`KeyMissingError`, ...,
  all under ``streams.errors.PFilterError``.

Worker (the lead wires this into the runtimes)::

    from streams.crypto import KeyRing, load_kek, encrypt_value
    ring = KeyRing(load_kek(settings.kek, settings.kek_file))
    # restore: for every record of personalization.keys in the owned partitions
    ring.add_record(key.decode(), value)          # value None = tombstone
    # hot path, per encrypted field of an emitted record
    new = ring.ensure(subject, now_ms)            # not None: produce new.to_json() keyed by subject,
                                                  # in the same transaction as this output
    out["email"] = encrypt_value(ring, subject, "email", out["email"])
    # erasure: produce a tombstone to personalization.keys, then
    ring.forget(subject)
"""

from streams.crypto.errors import CryptoError, EnvelopeError, KekError, KeyMissingError, WrongKeyError
from streams.crypto.fields import (
    KeyRing,
    associated_data,
    decrypt_field,
    decrypt_value,
    encrypt_field,
    encrypt_field_binary,
    encrypt_value,
    envelope_version,
    is_envelope,
    to_binary,
    to_text,
)
from streams.crypto.keys import Kek, KeyRecord, KeyRecordError, load_kek, new_kek_text, parse_key_record

#: wrap/unwrap as functions (the brief's names): ``Kek.wrap``/``Kek.unwrap``.
def wrap_key(kek: Kek, subject: str, version: int, data_key: bytes) -> bytes:
    """nonce | AES-GCM(data_key) | tag under ``kek``, bound to (subject, version)."""
    return kek.wrap(subject, version, data_key)


def unwrap_key(kek: Kek, subject: str, version: int, wrapped: bytes) -> bytes:
    """The data key, or :class:`WrongKeyError`."""
    return kek.unwrap(subject, version, wrapped)


__all__ = [
    "CryptoError", "EnvelopeError", "KekError", "KeyMissingError", "WrongKeyError",
    "KeyRing", "associated_data", "decrypt_field", "decrypt_value", "encrypt_field",
    "encrypt_field_binary", "encrypt_value", "envelope_version", "is_envelope", "to_binary", "to_text",
    "Kek", "KeyRecord", "KeyRecordError", "load_kek", "new_kek_text", "parse_key_record",
    "wrap_key", "unwrap_key",
]
