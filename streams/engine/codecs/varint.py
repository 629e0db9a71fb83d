"""Avro zigzag varints: the one encoding every Avro int, long and length uses.

Public because the fast decision path (``streams.engine.fragments``) writes the
Avro bytes of decision records from fragments with these, and the compiled
readers and writers (``avro_compiler``) call them from generated code.
"""

from __future__ import annotations


class BadBody(ValueError):
    """Body bytes that no value of the schema encodes to."""


_BYTE = [bytes((i,)) for i in range(128)]
#: ``LEN1[n]`` is ``write_long(n)`` for 0 <= n < 64 (string lengths, inlined on hot paths).
LEN1 = [bytes((i << 1,)) for i in range(64)]


def read_varint(b: bytes, p: int) -> tuple[int, int]:
    """Zigzag varint at ``p`` (its first byte has the continuation bit)."""
    # unrolled up to 6 bytes (epoch-ms timestamps take 6), then the general loop
    x = b[p + 1]
    n = (b[p] & 0x7F) | (x & 0x7F) << 7
    if x < 0x80:
        return (n >> 1) ^ -(n & 1), p + 2
    x = b[p + 2]
    n |= (x & 0x7F) << 14
    if x < 0x80:
        return (n >> 1) ^ -(n & 1), p + 3
    x = b[p + 3]
    n |= (x & 0x7F) << 21
    if x < 0x80:
        return (n >> 1) ^ -(n & 1), p + 4
    x = b[p + 4]
    n |= (x & 0x7F) << 28
    if x < 0x80:
        return (n >> 1) ^ -(n & 1), p + 5
    x = b[p + 5]
    n |= (x & 0x7F) << 35
    if x < 0x80:
        return (n >> 1) ^ -(n & 1), p + 6
    return read_varint_long(b, p)


def read_varint_long(b: bytes, p: int) -> tuple[int, int]:
    n = 0
    shift = 0
    while True:
        x = b[p]
        p += 1
        n |= (x & 0x7F) << shift
        if x < 0x80:
            break
        shift += 7
        if shift > 63:
            raise BadBody("varint longer than 10 bytes")
    if n >> 64:
        raise BadBody("varint beyond 64 bits")
    return (n >> 1) ^ -(n & 1), p


def write_long(n: int) -> bytes | bytearray:
    n = (n << 1) ^ (n >> 63)
    if n < 128:
        return _BYTE[n]
    # unrolled up to 6 bytes (epoch-ms timestamps take 6), then the general loop
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0x200000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
    if n < 0x10000000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21))
    if n < 0x800000000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21 & 0x7F | 0x80,
                      n >> 28))
    if n < 0x40000000000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21 & 0x7F | 0x80,
                      n >> 28 & 0x7F | 0x80, n >> 35))
    out = bytearray()
    while n > 127:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return out


def zigzag_bytes(n: int) -> bytes:
    return bytes(write_long(n))

