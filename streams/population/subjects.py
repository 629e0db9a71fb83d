"""Per-subject attributes: random words, segment, jurisdiction, subject id.

Contract: a subject's attributes are a pure function of ``(spec.seed, i)`` (and
``spec.shares`` for the segment), the same on every machine and under any
``PYTHONHASHSEED``, and cheap to look up without materialising the population: the
consent records, the events and the churn all read a subject's words from here, so they
agree about who the subject is. Nothing here draws from the global ``random``.
"""

from __future__ import annotations

import random
import sys
from array import array
from functools import lru_cache

from streams.population.spec import PopulationSpec
from streams.population.vocabulary import JURISDICTIONS, SEGMENTS

# Each subject owns eight 32-bit random words, drawn in blocks of 1024 subjects
# from a random.Random seeded with (seed, block). Looking a subject up costs
# one cached block and an index (hashing each subject in pure Python would be
# several times slower). Layout (the W_* offsets below name them):
#   w0: [0,16) no-consent draw, [16,24) jurisdiction, [24,32) home city
#   w1: segment draw
#   w2: [0,10) consent pattern, [10,30) time jitter (ms)
#   w3, w4: device id (40 bits: w3 and w4 & 0xFF), w4 [8,14) user agent
#   w5: name [0,10), mail domain [10,12), street [12,24), postal code [24,32)
#   w6: phone number;  w7: ip address
WORDS = 8
W_PLACE = 0  #: no-consent draw, jurisdiction, home city
W_SEGMENT = 1
W_PATTERN = 2  #: consent pattern and time jitter
W_DEVICE = 3  #: low 32 bits of the device id
W_DEVICE_UA = 4  #: device id bits 32-39 and the user agent
W_BUYER = 5  #: name, mail domain, street, postal code
W_PHONE = 6
W_IP = 7
BLOCK = 1024  # event generation inlines the lookup as i >> 10, (i & 1023) << 3
BLOCK_SHIFT = 10
assert BLOCK == 1 << BLOCK_SHIFT


def block(seed: int, b: int) -> array:
    """The random words of subjects ``[b * BLOCK, (b + 1) * BLOCK)``."""
    r = random.Random(f"population-subjects-{seed}-{b}")
    words = array("I", r.randbytes(4 * WORDS * BLOCK))
    if sys.byteorder == "big":  # the same population on every machine
        words.byteswap()
    return words


#: Blocks kept for random access (1024 blocks: 32 MB, a million subjects).
BLOCK_CACHE: dict[tuple[int, int], array] = {}
_BLOCK_CACHE_MAX = 1024


def cached_block(seed: int, b: int) -> array:
    """:func:`block`, kept in :data:`BLOCK_CACHE` (cleared when full)."""
    words = BLOCK_CACHE.get((seed, b))
    if words is None:
        if len(BLOCK_CACHE) >= _BLOCK_CACHE_MAX:
            BLOCK_CACHE.clear()
        words = BLOCK_CACHE[(seed, b)] = block(seed, b)
    return words


def words(seed: int, i: int) -> array:
    """The eight random words of subject ``i``."""
    b, j = divmod(i, BLOCK)
    j *= WORDS
    return cached_block(seed, b)[j : j + WORDS]


@lru_cache(maxsize=64)
def segment_table(shares: tuple[tuple[str, float], ...]) -> tuple[tuple[int, int], ...]:
    """(exclusive upper bound of the 32-bit draw, segment index), cumulative."""
    bounds = []
    acc = 0.0
    for idx, (_name, share) in enumerate(shares):
        acc += share
        if share > 0:
            bounds.append((min(1 << 32, round(acc * (1 << 32))), idx))
    bounds[-1] = (1 << 32, bounds[-1][1])  # rounding must not leave a gap at the top
    return tuple(bounds)


def segment_index(table: tuple[tuple[int, int], ...], draw: int) -> int:
    """The segment index of a subject whose ``W_SEGMENT`` word is ``draw``."""
    for bound, idx in table:
        if draw < bound:
            return idx
    return table[-1][1]  # pragma: no cover - the last bound is 2**32


def _jurisdiction_table() -> tuple[str, ...]:
    table: list[str] = []
    for name, share in JURISDICTIONS.items():
        table.extend([name] * round(share * 256))
    while len(table) < 256:
        table.append("EU")
    return tuple(table[:256])


#: Jurisdiction by bits [16,24) of a subject's ``W_PLACE`` word.
JUR_TABLE = _jurisdiction_table()


def subject_id(i: int) -> str:
    """Stable subject id of index ``i`` (``s-000042``); also the Kafka key."""
    return f"s-{i:06d}"


def check_index(spec: PopulationSpec, i: int) -> None:
    """Refuse an index outside the population (a ``ValueError`` naming it)."""
    if not 0 <= i < spec.subjects:
        raise ValueError(f"subject index {i} is outside the population [0, {spec.subjects})")


def segment_of(spec: PopulationSpec, i: int) -> str:
    """The privacy segment of subject ``i`` (pure function of spec and ``i``)."""
    check_index(spec, i)
    table = segment_table(tuple(spec.shares.items()))
    return SEGMENTS[segment_index(table, words(spec.seed, i)[W_SEGMENT])]
