"""Compact per-subject consent state and its last-writer-wins merge.

A subject's consent state is a plain tuple (no per-subject objects beyond
two ints and one bytes)::

    (updated_at, offset, profile, times)

- ``updated_at``: the consent record's ``updated_at`` (epoch ms). For a
  BLOCKED state: the bar a valid record must reach to replace it (see below).
- ``offset``: offset of the consent record the state comes from (ties).
- ``profile``: ``(granted_mask, category_mask, jurisdiction, gpc, flags,
  vocab, n_purposes)``, *interned*: subjects with the same choices share one tuple (a
  population has a few thousand distinct profiles, not one per subject).
  ``granted_mask``: bit i set when purpose i of the policy is ``granted``;
  ``category_mask``: bit j set when category j is granted; ``jurisdiction``:
  short str; ``gpc``: bool; ``flags``: ``BLOCKED`` (bit 0): the newest consent
  record was malformed, so the subject has no consent at all (fail closed);
  ``vocab``: fingerprint of the policy vocabulary (purposes and categories in
  order) the masks refer to. A state whose fingerprint differs from the
  running policy's is treated as no consent; rebuild the store from the
  consent topic.
- ``times``: bytes, for each granted purpose in index order the big-endian
  pair (i64 ``granted_at``, i64 ``expires_at``; ``NO_EXPIRY`` for "never
  expires"); ``b""`` when nothing is granted. Packed because one int object
  per time cost more than everything else in the state together (measured:
  647 B per subject in the first, all-tuple layout). ``times_of`` and
  ``wide`` unpack them for code off the hot path.

Merge rules (``merge``):
- the record with the greatest ``updated_at`` wins whatever the arrival order,
  ties go to the later offset; a record that loses leaves the state unchanged
  (and is therefore idempotent under replay);
- a tombstone (``None``) always deletes (erasure is never second-guessed);
- a malformed record whose ``updated_at`` is readable and loses to the current
  state is harmless (a valid one would have lost too): the state is unchanged;
- any other malformed record blocks the subject: the state becomes BLOCKED with
  ``updated_at`` = the bad record's ``updated_at`` when readable, else the last
  good ``updated_at`` (``-1`` when there was none), and ``offset`` = the bad
  record's offset. The BLOCKED state then competes like any state: a valid
  record replaces it only if it is newer by the same rule, i.e. (unreadable
  case) a valid record later in the log that is not older than the last good
  one. A valid record older than the last good one never wins, whatever the
  unreadable record said, so keeping the block is right either way.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any, NamedTuple

from streams.errors import PFilterError
from streams.engine.vocab import I64_MAX, I64_MIN

# --------------------------------------------------------------- state layout
UPDATED_AT, OFFSET, PROFILE, TIMES = range(4)
#: Fields of a profile (``state[PROFILE]``).
P_GRANTED, P_CATEGORIES, P_JURISDICTION, P_GPC, P_FLAGS, P_VOCAB, P_PURPOSES = range(7)

#: ``expires_at`` of a grant without expiry (greater than every epoch ms).
NO_EXPIRY = I64_MAX
#: ``granted_at`` / ``expires_at`` of a purpose that is not granted.
NOT_GRANTED = -1
#: flag: the newest consent record was malformed; the subject has no consent.
BLOCKED = 1

#: Returned by ``merge`` for a tombstone: remove the subject from the store.
DELETED: Any = type("_Deleted", (), {"__repr__": lambda self: "DELETED", "__slots__": ()})()

_STATUSES = ("granted", "denied", "withdrawn")
MAX_JURISDICTION_BYTES = 64

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
                 n_purposes: int) -> tuple:
    p = (granted, cmask, jurisdiction, gpc, flags, vocab, n_purposes)
    q = _PROFILES.get(p)
    if q is None:
        if len(_PROFILES) < PROFILE_INTERN_MAX:
            _PROFILES[p] = p
        q = p
    return q


def make_state(updated_at: int, offset: int, granted: int, granted_at: Sequence[int], expires_at: Sequence[int],
               cmask: int, jurisdiction: str, gpc: bool, flags: int, vocab: int) -> ConsentState:
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
    return (updated_at, offset, make_profile(granted, cmask, jurisdiction, gpc, flags, vocab, len(granted_at)),
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


def wide(state: ConsentState) -> Wide:
    ga, ea = times_of(state)
    g, c, j, gpc, flags, vocab, _n = state[PROFILE]
    return Wide(state[UPDATED_AT], state[OFFSET], g, ga, ea, c, j, gpc, flags, vocab)


#: One (granted_at, expires_at) pair of ``times``; purpose i's is at ``16 * pair_index(granted, i)``.
PAIR = struct.Struct(">qq")


def pair_index(granted: int, purpose: int) -> int:
    """Position of a granted purpose's pair in ``times``."""
    return (granted & ((1 << purpose) - 1)).bit_count()


class Vocabulary:
    """Purposes and categories of a policy, in order: bit i = item i."""

    __slots__ = ("purposes", "categories", "purpose_index", "category_index", "fingerprint")

    def __init__(self, purposes: Iterable[str], categories: Iterable[str]) -> None:
        self.purposes = tuple(purposes)
        self.categories = tuple(categories)
        if len(self.purposes) > 64 or len(self.categories) > 64:
            raise ValueError("at most 64 purposes and 64 categories")
        self.purpose_index = {p: i for i, p in enumerate(self.purposes)}
        self.category_index = {c: i for i, c in enumerate(self.categories)}
        text = "\x1f".join(self.purposes) + "\x1e" + "\x1f".join(self.categories)
        self.fingerprint = zlib.crc32(text.encode())

    def __repr__(self) -> str:
        return f"Vocabulary(purposes={self.purposes!r}, categories={self.categories!r})"


class MalformedConsent(PFilterError):
    """A consent record the filter cannot trust.

    ``message`` names the offending field, never a value (CONTRACT G6).
    ``updated_at`` is the record's ``updated_at`` when it could be read, else None.
    """

    def __init__(self, error_class: str, message: str, updated_at: int | None = None) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message
        self.updated_at = updated_at


def _is_int(v: Any) -> bool:
    return type(v) is int and I64_MIN <= v <= I64_MAX


def _bad(msg: str, updated_at: int | None, error_class: str = "invalid_consent") -> MalformedConsent:
    return MalformedConsent(error_class, msg, updated_at)


def parse_consent(
    record: Any,
    key_subject: str,
    offset: int,
    vocab: Vocabulary,
    counts: MutableMapping[str, int] | None = None,
) -> ConsentState:
    """A decoded consent record -> state. Raises ``MalformedConsent``.

    Unknown purposes and categories are ignored and counted in ``counts``
    (keys ``unknown_purpose`` / ``unknown_category``). A purpose is granted only
    when its status is ``granted``; a granted purpose needs an integer
    ``granted_at``; ``expires_at`` null or absent means no expiry.
    """
    if type(record) is not dict:
        raise _bad("consent record is not an object", None)
    u = record.get("updated_at")
    updated_at = u if _is_int(u) else None
    if updated_at is None:
        raise _bad("updated_at: missing or not an integer", None)
    subject = record.get("subject_id")
    if type(subject) is not str:
        raise _bad("subject_id: missing or not a string", updated_at)
    if subject != key_subject:
        raise _bad("subject_id differs from the record key", updated_at, "key_mismatch")

    purposes = record.get("purposes")
    if purposes is None:
        purposes = {}
    if type(purposes) is not dict:
        raise _bad("purposes: not a map", updated_at)
    n = len(vocab.purposes)
    granted_at = [NOT_GRANTED] * n
    expires_at = [NOT_GRANTED] * n
    granted = 0
    unknown_p = 0
    pidx = vocab.purpose_index
    for name, entry in purposes.items():
        i = pidx.get(name)
        if i is None:  # not in the policy: ignored (whatever it holds), counted
            unknown_p += 1
            continue
        if type(entry) is not dict:
            raise _bad(f"purposes.{name}: not an object", updated_at)
        status = entry.get("status")
        if status not in _STATUSES or type(status) is not str:
            raise _bad(f"purposes.{name}.status: not one of granted, denied, withdrawn", updated_at)
        ga = entry.get("granted_at")
        ea = entry.get("expires_at")
        if ga is not None and not _is_int(ga):
            raise _bad(f"purposes.{name}.granted_at: not an integer", updated_at)
        if ea is not None and not _is_int(ea):
            raise _bad(f"purposes.{name}.expires_at: not an integer", updated_at)
        if status == "granted":
            if ga is None:
                raise _bad(f"purposes.{name}: granted without granted_at", updated_at)
            if ea is not None and ea <= ga:  # a grant that ends before it begins: impossible
                raise _bad(f"purposes.{name}: expires_at is not after granted_at", updated_at)
            granted |= 1 << i
            granted_at[i] = ga
            expires_at[i] = NO_EXPIRY if ea is None else ea

    categories = record.get("categories")
    if categories is None:
        categories = {}
    if type(categories) is not dict:
        raise _bad("categories: not a map", updated_at)
    cmask = 0
    unknown_c = 0
    cidx = vocab.category_index
    for name, value in categories.items():
        j = cidx.get(name)
        if j is None:  # not in the policy: ignored, counted
            unknown_c += 1
            continue
        if type(value) is not bool:
            raise _bad(f"categories.{name}: not a boolean", updated_at)
        if value:
            cmask |= 1 << j

    jur = record.get("jurisdiction")
    if type(jur) is not str:
        raise _bad("jurisdiction: missing or not a string", updated_at)
    if len(jur.encode("utf-8", "surrogatepass")) > MAX_JURISDICTION_BYTES:
        raise _bad(f"jurisdiction: longer than {MAX_JURISDICTION_BYTES} bytes", updated_at)
    gpc = record.get("gpc")
    if type(gpc) is not bool:
        raise _bad("gpc: missing or not a boolean", updated_at)
    tcf = record.get("tcf")
    if tcf is not None and type(tcf) is not str:
        raise _bad("tcf: not a string", updated_at)
    if not _is_int(offset):
        raise ValueError("offset must be an int")

    if counts is not None:
        if unknown_p:
            counts["unknown_purpose"] = counts.get("unknown_purpose", 0) + unknown_p
        if unknown_c:
            counts["unknown_category"] = counts.get("unknown_category", 0) + unknown_c
    return make_state(updated_at, offset, granted, granted_at, expires_at, cmask, jur, gpc, 0, vocab.fingerprint)


def parse_wellformed(
    record: dict,
    key_subject: str,
    offset: int,
    vocab: Vocabulary,
    counts: MutableMapping[str, int] | None = None,
) -> ConsentState | None:
    """``parse_consent`` of a record that also passes the codecs' consent check, in one pass.

    Returns the state only for a record that the codec's complete validation accepts
    and ``parse_consent`` turns into that same state (counting unknown purposes and
    categories the same way); returns None, counting nothing, for anything else (the
    caller then runs the codec check and ``merge``, which say what is wrong)."""
    if type(record) is not dict or type(offset) is not int or not I64_MIN <= offset <= I64_MAX:
        return None
    get = record.get
    updated_at = get("updated_at")
    if type(updated_at) is not int or not I64_MIN <= updated_at <= I64_MAX:
        return None
    subject = get("subject_id")
    if type(subject) is not str or subject != key_subject:
        return None
    purposes = get("purposes")
    categories = get("categories")
    jur = get("jurisdiction")
    gpc = get("gpc")
    tcf = get("tcf")
    if (type(purposes) is not dict or type(categories) is not dict or type(jur) is not str
            or type(gpc) is not bool or (tcf is not None and type(tcf) is not str)):
        return None
    if len(jur) > MAX_JURISDICTION_BYTES // 4 and len(jur.encode("utf-8", "surrogatepass")) > MAX_JURISDICTION_BYTES:
        return None
    n = len(vocab.purposes)
    granted_at = [NOT_GRANTED] * n
    expires_at = [NOT_GRANTED] * n
    granted = 0
    unknown_p = 0
    pidx = vocab.purpose_index
    lo, hi = I64_MIN, I64_MAX
    for name, entry in purposes.items():
        if type(entry) is not dict:
            return None
        status = entry.get("status")
        ga = entry.get("granted_at")
        ea = entry.get("expires_at")
        if ga is not None and (type(ga) is not int or not lo <= ga <= hi):
            return None
        if ea is not None and (type(ea) is not int or not lo <= ea <= hi):
            return None
        if type(status) is not str:
            return None
        if status == "granted" and ga is not None and ea is not None and ea <= ga:
            return None  # ends before it begins: the codec check rejects it (any purpose, known or not)
        i = pidx.get(name)
        if status == "granted":
            if i is None:
                unknown_p += 1
                continue
            if ga is None:
                return None
            granted |= 1 << i
            granted_at[i] = ga
            expires_at[i] = NO_EXPIRY if ea is None else ea
        elif status == "denied" or status == "withdrawn":
            if i is None:
                unknown_p += 1
        else:
            return None
    cmask = 0
    unknown_c = 0
    cidx = vocab.category_index
    for name, value in categories.items():
        if type(value) is not bool:
            return None
        j = cidx.get(name)
        if j is None:
            unknown_c += 1
        elif value:
            cmask |= 1 << j
    if counts is not None:
        if unknown_p:
            counts["unknown_purpose"] = counts.get("unknown_purpose", 0) + unknown_p
        if unknown_c:
            counts["unknown_category"] = counts.get("unknown_category", 0) + unknown_c
    return make_state(updated_at, offset, granted, granted_at, expires_at, cmask, jur, gpc, 0, vocab.fingerprint)


def merge_state(current: ConsentState | None, new: ConsentState, vocab: Vocabulary) -> ConsentState:
    """``merge`` of a record already parsed into ``new`` (see ``parse_wellformed``)."""
    if current is None or current[PROFILE][P_VOCAB] != vocab.fingerprint:
        return new
    cu = current[UPDATED_AT]
    u = new[UPDATED_AT]
    if u > cu or (u == cu and new[OFFSET] > current[OFFSET]):
        return new
    return current


def blocked_state(updated_at: int, offset: int, vocab: Vocabulary) -> ConsentState:
    """A state that grants nothing; ``updated_at`` is the bar a valid record must reach."""
    return (updated_at, offset, make_profile(0, 0, "", True, BLOCKED, vocab.fingerprint, len(vocab.purposes)), b"")


def is_blocked(state: ConsentState | None) -> bool:
    return state is not None and bool(state[PROFILE][P_FLAGS] & BLOCKED)


def _newer(u: int, offset: int, current: ConsentState) -> bool:
    cu = current[UPDATED_AT]
    return u > cu or (u == cu and offset > current[OFFSET])


def merge(
    current: ConsentState | None,
    key_subject: str,
    record: dict | MalformedConsent | None,
    offset: int,
    vocab: Vocabulary,
    counts: MutableMapping[str, int] | None = None,
) -> ConsentState | Any:
    """The subject's state after one consent record (see the module doc).

    ``record``: the decoded record, ``None`` for a tombstone, or a
    ``MalformedConsent`` (from the codec's DecodeError or from a previous
    ``merge`` call) for a record that failed to decode or validate.
    Returns the new state (``current`` itself when the record loses) or
    ``DELETED``. Raises ``MalformedConsent`` when ``record`` is a dict that does
    not validate: call again with the exception to get the BLOCKED state.
    """
    if record is None:
        return DELETED
    if current is not None and current[PROFILE][P_VOCAB] != vocab.fingerprint:
        current = None  # a state of another vocabulary is meaningless here
    if isinstance(record, MalformedConsent):
        u = record.updated_at
        if u is not None and current is not None and not _newer(u, offset, current):
            return current  # would have lost even if valid
        if u is None:
            if current is None:
                bar = -1
            else:
                bar = current[UPDATED_AT]  # last good (or the previous bar, if already blocked)
        else:
            bar = u
        return blocked_state(bar, offset, vocab)
    new = parse_consent(record, key_subject, offset, vocab, counts)
    if current is None or _newer(new[UPDATED_AT], offset, current):
        return new
    return current


# --------------------------------------------------------------- binary form
#: version, flags, gpc, n_purposes, vocab, updated_at, offset, granted_mask, category_mask
_HEAD = struct.Struct(">BBBBIqqQQ")
_FORMAT_VERSION = 1


def state_to_bytes(state: ConsentState) -> bytes:
    """Stable compact binary form (for stores and changelogs).

    Layout (big-endian): u8 format version (1), u8 flags, u8 gpc, u8 number of
    purposes n, u32 vocabulary fingerprint, i64 updated_at, i64 offset, u64
    granted mask, u64 category mask, then (i64 granted_at, i64 expires_at) for
    each granted purpose in index order (the state's ``times`` as they are),
    then u8 length + UTF-8 jurisdiction.
    """
    updated_at, offset, (granted, cmask, jur, gpc, flags, vocab, n), times = state
    j = jur.encode("utf-8", "surrogatepass")
    return b"".join((_HEAD.pack(_FORMAT_VERSION, flags, 1 if gpc else 0, n, vocab, updated_at, offset, granted, cmask),
                     times, bytes((len(j),)), j))


def state_from_bytes(data: bytes) -> ConsentState:
    """Inverse of ``state_to_bytes``. Raises ValueError on bytes it did not write."""
    try:
        ver, flags, gpc, n, vocab, updated_at, offset, granted, cmask = _HEAD.unpack_from(data, 0)
        if ver != _FORMAT_VERSION:
            raise ValueError(f"unknown consent state format version {ver}")
        if granted >> n:
            raise ValueError("granted mask names a purpose beyond the count")
        pos = _HEAD.size + 16 * granted.bit_count()
        ln = data[pos]
        if pos + 1 + ln != len(data):
            raise ValueError("consent state has trailing or missing bytes")
        jur = bytes(data[pos + 1: pos + 1 + ln]).decode("utf-8", "surrogatepass")
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a consent state: {exc.__class__.__name__}") from None
    return (updated_at, offset, make_profile(granted, cmask, jur, bool(gpc), flags, vocab, n),
            bytes(data[_HEAD.size:pos]))
