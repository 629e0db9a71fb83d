"""Bit-level reading shared by the TCF and GPP decoders (private to the package).

Both formats are a sequence of fixed-width big-endian integers packed into
URL-safe base64 *without* padding, six bits per character; a segment's last
character may carry zero padding bits, which every reader here ignores.

A segment is turned into a ``str`` of ``'0'``/``'1'`` once (C speed: one
base64 decode and one ``format``), and fields are read with ``int(slice, 2)``.
That is faster in CPython than shifting a big integer per field, and linear in
the field width, so a 65,535-bit vendor bitfield costs one slice.

Sets of ids (vendors, purposes, special features) are ``IdSet``: one Python
int used as a bitmask (bit ``i`` set = id ``i`` in the set). A GVL-sized vendor
consent set is ~150 bytes instead of ~40 KB as a ``frozenset``, which is what
lets the decode cache hold many entries (see ``cache.py``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from streams.engine.signals.errors import SignalError

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+\Z")

#: Fibonacci numbers F(2), F(3), ...: the weight of bit i of a Fibonacci code word.
_FIB: list[int] = [1, 2]
while len(_FIB) < 64:
    _FIB.append(_FIB[-1] + _FIB[-2])
#: Longest Fibonacci code word accepted (without its terminating 1). GPP uses
#: Fibonacci integers only for section / subsection ids and their offsets, all
#: below 100; 32 bits reach 3.5 million, so anything longer is corruption, and
#: the cap keeps a crafted string from forcing huge integers.
MAX_FIB_BITS = 32


def segment_bits(segment: str, error: type[SignalError], what: str) -> str:
    """The bits of one base64url segment (six per character), or ``error``."""
    if not segment or not _BASE64URL.match(segment):
        raise error(f"{what}: empty or not URL-safe base64")
    n = len(segment)
    try:
        # 'A' is six zero bits: padding to a multiple of four characters lets the
        # C decoder do the work; the surplus bits are cut off again below.
        raw = base64.urlsafe_b64decode(segment + "A" * (-n % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - regex guards
        raise error(f"{what}: not URL-safe base64") from exc
    return format(int.from_bytes(raw, "big"), f"0{len(raw) * 8}b")[: 6 * n]


@dataclass(frozen=True, slots=True)
class IdSet:
    """An immutable set of positive integer ids stored as a bitmask.

    ``5 in s``, ``iter(s)`` (ascending), ``len(s)`` and ``set(s)`` behave as for
    a frozenset; equality compares the masks.
    """

    mask: int = 0

    @classmethod
    def of(cls, ids: Iterable[int]) -> IdSet:
        m = 0
        for i in ids:
            if i < 1:
                raise ValueError("ids are positive")
            m |= 1 << i
        return cls(m)

    def __contains__(self, i: object) -> bool:
        return isinstance(i, int) and i > 0 and (self.mask >> i) & 1 == 1

    def __iter__(self) -> Iterator[int]:
        m = self.mask
        while m:
            low = m & -m
            yield low.bit_length() - 1
            m ^= low

    def __len__(self) -> int:
        return self.mask.bit_count()

    def __bool__(self) -> bool:
        return self.mask != 0

    def __and__(self, other: IdSet) -> IdSet:
        return IdSet(self.mask & other.mask)

    def __sub__(self, other: IdSet) -> IdSet:
        return IdSet(self.mask & ~other.mask)

    def issuperset(self, ids: Iterable[int]) -> bool:
        return all(i in self for i in ids)

    def __repr__(self) -> str:
        return f"IdSet({list(self)})"


class BitReader:
    """Sequential reader over a ``'0'``/``'1'`` string; every overrun is ``error``."""

    __slots__ = ("bits", "pos", "error", "what")

    def __init__(self, bits: str, error: type[SignalError], what: str, pos: int = 0) -> None:
        self.bits = bits
        self.pos = pos
        self.error = error
        self.what = what

    def _take(self, n: int) -> str:
        end = self.pos + n
        if end > len(self.bits):
            raise self.error(f"{self.what}: truncated at bit {self.pos} (needs {n} more)")
        s = self.bits[self.pos : end]
        self.pos = end
        return s

    def int(self, n: int) -> int:
        return int(self._take(n), 2)

    def bool(self) -> bool:
        return self._take(1) == "1"

    def ints(self, width: int, count: int) -> tuple[int, ...]:
        s = self._take(width * count)
        return tuple(int(s[i : i + width], 2) for i in range(0, width * count, width))

    def letters(self, count: int) -> str:
        """``count`` 6-bit letters, 0 = 'A' ... 25 = 'Z' (TCF language and country codes)."""
        out = []
        for _ in range(count):
            v = self.int(6)
            if v > 25:
                raise self.error(f"{self.what}: letter out of range at bit {self.pos - 6}")
            out.append(chr(65 + v))
        return "".join(out)

    def bitfield(self, n: int) -> IdSet:
        """``n`` bits, the first for id 1: an IdSet of the ids whose bit is 1."""
        if n == 0:
            return IdSet(0)
        return IdSet(int(self._take(n)[::-1], 2) << 1)

    def ranges(self, width: int, max_id: int | None) -> IdSet:
        """TCF range entries: NumEntries int(12), each IsARange bool, start, [end]."""
        mask = 0
        for _ in range(self.int(12)):
            is_range = self.bool()
            start = self.int(width)
            end = self.int(width) if is_range else start
            if start < 1 or end < start or (max_id is not None and end > max_id):
                raise self.error(f"{self.what}: bad id range ending at bit {self.pos}")
            mask |= ((1 << (end - start + 1)) - 1) << start
        return IdSet(mask)

    def fibonacci(self) -> int:
        """One Fibonacci-coded positive integer (code word ends with ``11``)."""
        stop = self.bits.find("11", self.pos)
        if stop < 0 or stop + 2 > len(self.bits):
            raise self.error(f"{self.what}: unterminated Fibonacci integer at bit {self.pos}")
        code = self.bits[self.pos : stop + 1]
        if len(code) > MAX_FIB_BITS:
            raise self.error(f"{self.what}: Fibonacci integer too long at bit {self.pos}")
        self.pos = stop + 2
        return sum(_FIB[i] for i, c in enumerate(code) if c == "1")

    def fibonacci_range(self) -> tuple[int, ...]:
        """GPP Range(Fibonacci): int(12) count, then per item a group flag, the
        offset from the last id seen (0 before the first), and for a group its
        length (last id = first id + length). Ids must come out strictly ascending.
        """
        ids: list[int] = []
        last = 0
        for _ in range(self.int(12)):
            is_group = self.bool()
            start = last + self.fibonacci()
            end = start + self.fibonacci() if is_group else start
            ids.extend(range(start, end + 1))
            last = end
            if len(ids) > 4096:  # no GPP string names more sections than this
                raise self.error(f"{self.what}: too many ids in a Fibonacci range")
        return tuple(ids)
