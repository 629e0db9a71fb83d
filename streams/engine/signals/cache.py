"""Decoded signals cached per distinct string (bounded LRU; pure, in-process).

Many subjects carry the same TC or GPP string: a CMP writes one string per
combination of choices, vendor list version and (day-granular) Created /
LastUpdated date, so a shop's population has thousands of distinct strings,
not millions. Decoding each distinct string once makes the decode cost per
consent record a dict lookup (measured: ``python -m bench.signals``).

Failures are cached too (as the error class and message, re-raised as a fresh
exception each time): a flood of one malformed string costs one decode.

Why the bound (``DEFAULT_MAXSIZE`` = 16,384 entries per kind): the cache must
not grow with the number of subjects (a worker holds millions), only with the
distinct strings in the recent window, and LRU keeps the strings of active
subjects. An entry is the key string plus the decoded value, with vendor sets
stored as int bitmasks (``_bits.IdSet``). Measured with ``python -m
bench.signals`` (tracemalloc): 1.0-1.2 KB for small TC strings, 1.9 KB for a
typical TCF 2.3 string (900 disclosed vendors), 3.0 KB for a GPP string with
that TC string and usnat. So the bound caps the two caches at ~30 MB + ~50 MB
even when every string is that large, well below the consent store itself,
while 16k distinct strings is more than a shop's recent traffic carries. A
smaller bound only costs re-decodes (~30-100 µs each), never correctness.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from streams.engine.signals.errors import GPPDecodeError, SignalError, TCFDecodeError
from streams.engine.signals.gpp import GPPString, decode_gpp
from streams.engine.signals.tcf import TCString, decode_tcf

__all__ = ["SignalCache", "DEFAULT_MAXSIZE", "CacheStats"]

#: Entries per kind (TCF, GPP); see the module docstring for why.
DEFAULT_MAXSIZE = 16384


class _Failure(NamedTuple):
    cls: type[SignalError]
    message: str


class CacheStats(NamedTuple):
    hits: int
    misses: int
    size: int
    maxsize: int


def _tcf_outcome(s: str) -> TCString | _Failure:
    try:
        return decode_tcf(s)
    except SignalError as exc:
        return _Failure(type(exc), str(exc))


def _gpp_outcome(s: str) -> GPPString | _Failure:
    try:
        return decode_gpp(s)
    except SignalError as exc:
        return _Failure(type(exc), str(exc))


class SignalCache:
    """``tcf(s)`` / ``gpp(s)``: like ``decode_tcf`` / ``decode_gpp`` (strict), decoded once per string.

    Thread-safe as ``functools.lru_cache`` is. One instance per worker process.
    """

    __slots__ = ("_tcf", "_gpp")

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be positive")
        self._tcf = functools.lru_cache(maxsize=maxsize)(_tcf_outcome)
        self._gpp = functools.lru_cache(maxsize=maxsize)(_gpp_outcome)

    def tcf(self, s: str) -> TCString:
        if not isinstance(s, str):
            raise TCFDecodeError("TC string: not a string")
        out = self._tcf(s)
        if isinstance(out, _Failure):
            raise out.cls(out.message)
        return out

    def gpp(self, s: str) -> GPPString:
        if not isinstance(s, str):
            raise GPPDecodeError("GPP string: not a string")
        out = self._gpp(s)
        if isinstance(out, _Failure):
            raise out.cls(out.message)
        return out

    def stats(self) -> dict[str, CacheStats]:
        """Hits, misses and size per kind (for metrics)."""
        out = {}
        for kind, fn in (("tcf", self._tcf), ("gpp", self._gpp)):
            i = fn.cache_info()
            out[kind] = CacheStats(i.hits, i.misses, i.currsize, i.maxsize or 0)
        return out

    def clear(self) -> None:
        self._tcf.cache_clear()
        self._gpp.cache_clear()
