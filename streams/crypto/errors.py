"""Errors of field encryption. Messages name subjects' key versions, field paths and
KEK ids, never a key, a plaintext or a ciphertext (CONTRACT G6)."""

from __future__ import annotations

from streams.errors import PFilterError


class CryptoError(PFilterError):
    """Something about field encryption failed; the subclasses say what."""


class KekError(CryptoError):
    """The key-encryption key is missing or malformed (a start-up configuration problem)."""


class WrongKeyError(CryptoError):
    """A key or ciphertext does not authenticate under the key we hold.

    Raised for a wrapped data key that another KEK wrapped (or that was tampered
    with), and for a field whose ciphertext fails AES-GCM authentication. Never
    silently garbage: AES-GCM's tag makes a wrong key detectable."""


class KeyMissingError(CryptoError):
    """The subject's data key (of that version) is not known: shredded by a tombstone
    on ``personalization.keys``, never created, or not read yet."""


class EnvelopeError(CryptoError):
    """A value that should be an encrypted-field envelope is not one (bad shape)."""
