"""The compact per-subject consent state: its layout, interning and binary form.

A subject's consent state is a plain tuple (no per-subject objects beyond
two ints and one bytes)::

    (updated_at, offset, profile, times)

- ``updated_at``: the consent record's ``updated_at`` (epoch ms). For a
  BLOCKED state: the bar a valid record must reach to replace it
  (``streams.engine.consent``, merge rules).
- ``offset``: offset of the consent record the state comes from (ties).
- ``profile``: ``(granted_mask, category_mask, jurisdiction, gpc, flags,
  vocab, n_purposes, objected_mask, gates_mask)``, *interned*: subjects with the
  same choices share one tuple (a population has a few thousand distinct
  profiles, not one per subject). ``granted_mask``: bit i set when purpose i of
  the policy is granted *with a basis the policy allows for it* and no signal
  narrows it away; ``category_mask``: bit j set when category j is granted
  (after signals); ``jurisdiction``: short str; ``gpc``: bool (the record's or
  a signal's); ``flags``: ``BLOCKED`` (bit 0): the newest consent record was
  malformed, so the subject has no consent at all (fail closed); ``vocab``:
  fingerprint of the policy vocabulary (purposes and categories in order) and
  of the consent rules the masks were compiled under (``consent_rules``). A
  state whose fingerprint differs from the running policy's is treated as no
  consent; rebuild the store from the consent topic. ``objected_mask``: bit i
  set when purpose i belongs to an objection class the record lists (rule step
  1a); ``gates_mask``: bit k set when a signal closed engine k's gate (policy
  engine order: its needed purposes count as denied).
- ``times``: bytes, for each granted purpose in index order the big-endian
  pair (i64 ``granted_at``, i64 ``expires_at``; ``NO_EXPIRY`` for "never
  expires"); ``b""`` when nothing is granted. Packed because one int object
  per time cost more than everything else in the state together (measured:
  647 B per subject in the first, all-tuple layout). ``times_of`` and
  ``wide`` unpack them for code off the hot path.

A leaf of the engine (imports ``consent_rules`` and ``vocab`` only):
``streams.engine.consent`` parses records into these states and re-exports
every name here.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from streams.engine.consent_rules import ConsentRules, plain_rules
from streams.engine.vocab import I64_MAX

# --------------------------------------------------------------- state layout
UPDATED_AT, OFFSET, PROFILE, TIMES = range(4)
#: Fields of a profile (``state[PROFILE]``).
P_GRANTED, P_CATEGORIES, P_JURISDICTION, P_GPC, P_FLAGS, P_VOCAB, P_PURPOSES, P_OBJECTED, P_GATES = range(9)
#: Length of a profile tuple (the native engine checks it: another length is not a state it reads).
PROFILE_LEN = 9

#: ``expires_at`` of a grant without expiry (greater than every epoch ms).
NO_EXPIRY = I64_MAX
#: ``granted_at`` / ``expires_at`` of a purpose that is not granted.
NOT_GRANTED = -1
#: flag: the newest consent record was malformed; the subject has no consent.
BLOCKED = 1

#: Returned by ``merge`` for a tombstone: remove the subject from the store.
DELETED: Any = type("_Deleted", (), {"__repr__": lambda self: "DELETED", "__slots__": ()})()

ConsentState = tuple

#: Interned profiles (see the module doc). Bounded: past this many distinct
#: profiles, new ones are simply not shared (correct, only larger).
PROFILE_INTERN_MAX = 1 << 16
_PROFILES: dict[tuple, tuple] = {}
#: number of pairs -> Struct of that many (granted_at, expires_at) pairs
_TIMES: dict[int, struct.Struct] = {}


def _times_struct(k: int) -> struct.Struct:
    st = _TIMES.get(k)
    if st is None:
        st = _TIMES[k] = struct.Struct(">" + "qq" * k)
    return st


def make_profile(granted: int, cmask: int, jurisdiction: str, gpc: bool, flags: int, vocab: int,
                 n_purposes: int, objected: int = 0, gates: int = 0) -> tuple:
    p = (granted, cmask, jurisdiction, gpc, flags, vocab, n_purposes, objected, gates)
    q = _PROFILES.get(p)
    if q is None:
        if len(_PROFILES) < PROFILE_INTERN_MAX:
            _PROFILES[p] = p
        q = p
    return q


def make_state(updated_at: int, offset: int, granted: int, granted_at: Sequence[int], expires_at: Sequence[int],
               cmask: int, jurisdiction: str, gpc: bool, flags: int, vocab: int, objected: int = 0,
               gates: int = 0) -> ConsentState:
    """A state from its fields (``granted_at``/``expires_at`` indexed like the
    vocabulary's purposes; only granted purposes' entries are kept)."""
    vals = []
    g, i = granted, 0
    while g:
        if g & 1:
            vals.append(granted_at[i])
            vals.append(expires_at[i])
        g >>= 1
        i += 1
    times = _times_struct(len(vals) // 2).pack(*vals) if vals else b""
    return (updated_at, offset, make_profile(granted, cmask, jurisdiction, gpc, flags, vocab, len(granted_at), objected,
                                                gates),
            times)


def times_of(state: ConsentState) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(granted_at, expires_at), each indexed like the vocabulary's purposes, ``NOT_GRANTED``
    for a purpose that is not granted. Off the hot path (tests, tools)."""
    times = state[TIMES]
    granted = state[PROFILE][P_GRANTED]
    vals = _times_struct(len(times) // 16).unpack(times)
    n = state[PROFILE][P_PURPOSES]
    ga = [NOT_GRANTED] * n
    ea = [NOT_GRANTED] * n
    k = 0
    for i in range(n):
        if granted >> i & 1:
            ga[i], ea[i] = vals[2 * k], vals[2 * k + 1]
            k += 1
    return tuple(ga), tuple(ea)


class Wide(NamedTuple):
    """Every field of a state, unpacked (``wide``): for tests and tools, not the hot path."""

    updated_at: int
    offset: int
    granted: int
    granted_at: tuple[int, ...]
    expires_at: tuple[int, ...]
    categories: int
    jurisdiction: str
    gpc: bool
    flags: int
    vocab: int
    objected: int = 0
    gates: int = 0


def wide(state: ConsentState) -> Wide:
    ga, ea = times_of(state)
    g, c, j, gpc, flags, vocab, _n, objected, gates = state[PROFILE]
    return Wide(state[UPDATED_AT], state[OFFSET], g, ga, ea, c, j, gpc, flags, vocab, objected, gates)


#: One (granted_at, expires_at) pair of ``times``; purpose i's is at ``16 * pair_index(granted, i)``.
PAIR = struct.Struct(">qq")


def pair_index(granted: int, purpose: int) -> int:
    """Position of a granted purpose's pair in ``times``."""
    return (granted & ((1 << purpose) - 1)).bit_count()


class Vocabulary:
    """Purposes and categories of a policy, in order: bit i = item i; and the consent
    rules (``consent_rules.ConsentRules``) records are compiled under.

    ``fingerprint`` covers both: a state compiled under another order or other rules
    (bases, objection classes, signals mapping, gated engines) does not match."""

    __slots__ = ("purposes", "categories", "purpose_index", "category_index", "fingerprint", "rules")

    def __init__(self, purposes: Iterable[str], categories: Iterable[str], rules: ConsentRules | None = None) -> None:
        self.purposes = tuple(purposes)
        self.categories = tuple(categories)
        if len(self.purposes) > 64 or len(self.categories) > 64:
            raise ValueError("at most 64 purposes and 64 categories")
        self.purpose_index = {p: i for i, p in enumerate(self.purposes)}
        self.category_index = {c: i for i, c in enumerate(self.categories)}
        if rules is None:
            rules = plain_rules(self.purposes, self.categories)
        elif rules.purposes != self.purposes or rules.categories != self.categories:
            raise ValueError("consent rules of another vocabulary")
        self.rules = rules
        text = "\x1f".join(self.purposes) + "\x1e" + "\x1f".join(self.categories) + "\x1d" + rules.text()
        self.fingerprint = zlib.crc32(text.encode())

    def __repr__(self) -> str:
        return f"Vocabulary(purposes={self.purposes!r}, categories={self.categories!r})"


def blocked_state(updated_at: int, offset: int, vocab: Vocabulary) -> ConsentState:
    """A state that grants nothing; ``updated_at`` is the bar a valid record must reach."""
    return (updated_at, offset, make_profile(0, 0, "", True, BLOCKED, vocab.fingerprint, len(vocab.purposes)), b"")


def is_blocked(state: ConsentState | None) -> bool:
    return state is not None and bool(state[PROFILE][P_FLAGS] & BLOCKED)

# --------------------------------------------------------------- binary form
#: version, flags, gpc, n_purposes, vocab, updated_at, offset, granted_mask, category_mask
_HEAD_V1 = struct.Struct(">BBBBIqqQQ")
#: version 2 adds: objected_mask, gates_mask
_HEAD = struct.Struct(">BBBBIqqQQQQ")
_FORMAT_VERSION = 2


def state_to_bytes(state: ConsentState) -> bytes:
    """Stable compact binary form (for stores and changelogs).

    Layout (big-endian): u8 format version (2), u8 flags, u8 gpc, u8 number of
    purposes n, u32 vocabulary fingerprint, i64 updated_at, i64 offset, u64
    granted mask, u64 category mask, u64 objected mask, u64 gates mask, then
    (i64 granted_at, i64 expires_at) for each granted purpose in index order (the
    state's ``times`` as they are), then u8 length + UTF-8 jurisdiction.
    """
    updated_at, offset, (granted, cmask, jur, gpc, flags, vocab, n, objected, gates), times = state
    j = jur.encode("utf-8", "surrogatepass")
    return b"".join((_HEAD.pack(_FORMAT_VERSION, flags, 1 if gpc else 0, n, vocab, updated_at, offset, granted, cmask,
                                objected, gates), times, bytes((len(j),)), j))


def state_from_bytes(data: bytes) -> ConsentState:
    """Inverse of ``state_to_bytes``. Raises ValueError on bytes it did not write.

    Version 1 (written before bases, objections and signals existed) is read, so a
    store written by an older worker does not stop this one, but such a state is
    never trusted: its fingerprint is of the old formula, which matches no
    vocabulary now (its masks ignored the record's signals, bases and objections),
    so it counts as no consent until the subject's records are applied again
    (rebuild the store from the consent topic)."""
    try:
        ver = data[0]
        if ver == _FORMAT_VERSION:
            head = _HEAD
            _v, flags, gpc, n, vocab, updated_at, offset, granted, cmask, objected, gates = head.unpack_from(data, 0)
        elif ver == 1:
            head = _HEAD_V1
            _v, flags, gpc, n, vocab, updated_at, offset, granted, cmask = head.unpack_from(data, 0)
            objected = gates = 0
        else:
            raise ValueError(f"unknown consent state format version {ver}")
        if granted >> n:
            raise ValueError("granted mask names a purpose beyond the count")
        if objected >> n:
            raise ValueError("objected mask names a purpose beyond the count")
        pos = head.size + 16 * granted.bit_count()
        ln = data[pos]
        if pos + 1 + ln != len(data):
            raise ValueError("consent state has trailing or missing bytes")
        jur = bytes(data[pos + 1: pos + 1 + ln]).decode("utf-8", "surrogatepass")
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a consent state: {exc.__class__.__name__}") from None
    return (updated_at, offset, make_profile(granted, cmask, jur, bool(gpc), flags, vocab, n, objected, gates),
            bytes(data[head.size:pos]))
