"""Consent records -> compact per-subject states, and their last-writer-wins merge.

The state layout, its interning and binary form are in ``streams.engine.state``
(every name of it is importable from here too). Parsing applies the policy's
consent rules (``streams.engine.consent_rules``, held by the ``Vocabulary``):
a purpose granted with a basis the policy does not allow for it is not granted;
the record's objections give the ``objected`` mask; its signals (TCF, GPP,
Consent Mode, Sec-GPC), decoded through the caller's ``SignalCache``, narrow the
purposes, categories and gpc and may close engine gates. A basis, objection
class or signal that is not understood makes the record malformed, like any
other malformed field (CONTRACT §3).

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

from collections.abc import MutableMapping
from typing import Any

from streams.engine import signals as sig
from streams.engine.consent_rules import ConsentFieldError, Folded
from streams.engine.state import (  # noqa: F401 - the state's names, re-exported
    BLOCKED, DELETED, NO_EXPIRY, NOT_GRANTED, OFFSET, P_CATEGORIES, P_FLAGS, P_GATES, P_GPC, P_GRANTED,
    P_JURISDICTION, P_OBJECTED, P_PURPOSES, P_VOCAB, PAIR, PROFILE, PROFILE_INTERN_MAX, PROFILE_LEN, TIMES,
    UPDATED_AT, ConsentState, Vocabulary, Wide, blocked_state, is_blocked, make_profile, make_state, pair_index,
    state_from_bytes, state_to_bytes, times_of, wide,
)
from streams.engine.vocab import BASES, I64_MAX, I64_MIN
from streams.errors import PFilterError

_STATUSES = ("granted", "denied", "withdrawn")
MAX_JURISDICTION_BYTES = 64

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


def _grant_by_signals(signal_grants: int, updated_at: int, granted_at: list[int], expires_at: list[int]) -> None:
    """Purposes granted by signals alone: granted since the record's change, with no expiry
    (a signal carries no expiry of its own)."""
    i = 0
    while signal_grants:
        if signal_grants & 1:
            granted_at[i] = updated_at
            expires_at[i] = NO_EXPIRY
        signal_grants >>= 1
        i += 1


def _state(vocab: Vocabulary, f: Folded | None, updated_at: int, offset: int, granted: int, granted_at: list[int],
           expires_at: list[int], cmask: int, jur: str, gpc: bool) -> ConsentState:
    """The state of a parsed record, after the consent rules' fold ``f`` (None: no rule
    field changed anything)."""
    objected = gates = 0
    if f is not None:
        granted, cmask, gpc, objected, gates = f.granted, f.categories, f.gpc, f.objected, f.gates
        if f.signal_grants:
            _grant_by_signals(f.signal_grants, updated_at, granted_at, expires_at)
    return make_state(updated_at, offset, granted, granted_at, expires_at, cmask, jur, gpc, 0, vocab.fingerprint,
                      objected, gates)


def _count(counts: MutableMapping[str, int] | None, unknown_p: int, unknown_c: int, not_allowed: int) -> None:
    """What a parse ignored: unknown purposes and categories, grants with a basis not allowed."""
    if counts is None:
        return
    for name, k in (("unknown_purpose", unknown_p), ("unknown_category", unknown_c),
                    ("basis_not_allowed", not_allowed)):
        if k:
            counts[name] = counts.get(name, 0) + k


def parse_consent(
    record: Any,
    key_subject: str,
    offset: int,
    vocab: Vocabulary,
    counts: MutableMapping[str, int] | None = None,
    cache: sig.SignalCache | None = None,
) -> ConsentState:
    """A decoded consent record -> state. Raises ``MalformedConsent``.

    Unknown purposes and categories are ignored and counted in ``counts``
    (keys ``unknown_purpose`` / ``unknown_category``; ``basis_not_allowed``: a
    purpose granted with a basis the policy does not allow for it, which is
    then not granted). A purpose is granted only when its status is
    ``granted``; a granted purpose needs an integer ``granted_at``;
    ``expires_at`` null or absent means no expiry. Then the consent rules
    (module doc) apply; ``cache`` decodes the signal strings (None: decoded
    here, uncached: tests and tools).
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
    named = 0
    unknown_p = 0
    not_allowed = 0
    pidx = vocab.purpose_index
    rules = vocab.rules
    for name, entry in purposes.items():
        i = pidx.get(name)
        if i is None:  # not in the policy: ignored (whatever it holds), counted
            unknown_p += 1
            continue
        if type(entry) is not dict:
            raise _bad(f"purposes.{name}: not an object", updated_at)
        named |= 1 << i
        try:
            basis = rules.basis_of(name, entry)
        except ConsentFieldError as exc:
            raise _bad(str(exc), updated_at) from None
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
            if not rules.allows(i, basis):  # CONTRACT §3: granted only with an allowed basis
                not_allowed += 1
                continue
            granted |= 1 << i
            granted_at[i] = ga
            expires_at[i] = NO_EXPIRY if ea is None else ea

    categories = record.get("categories")
    if categories is None:
        categories = {}
    if type(categories) is not dict:
        raise _bad("categories: not a map", updated_at)
    cmask = 0
    named_c = 0
    unknown_c = 0
    cidx = vocab.category_index
    for name, value in categories.items():
        j = cidx.get(name)
        if j is None:  # not in the policy: ignored, counted
            unknown_c += 1
            continue
        if type(value) is not bool:
            raise _bad(f"categories.{name}: not a boolean", updated_at)
        named_c |= 1 << j
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
    gpp = record.get("gpp")
    if gpp is not None and type(gpp) is not str:
        raise _bad("gpp: not a string", updated_at)
    cm = record.get("consent_mode")
    if cm is not None and type(cm) is not dict:
        raise _bad("consent_mode: not an object", updated_at)
    if not _is_int(offset):
        raise ValueError("offset must be an int")
    try:
        f = rules.fold_record(record, granted, named, cmask, named_c, gpc, cache)
    except ConsentFieldError as exc:
        raise _bad(str(exc), updated_at) from None
    _count(counts, unknown_p, unknown_c, not_allowed)
    return _state(vocab, f, updated_at, offset, granted, granted_at, expires_at, cmask, jur, gpc)


def parse_wellformed(
    record: dict,
    key_subject: str,
    offset: int,
    vocab: Vocabulary,
    counts: MutableMapping[str, int] | None = None,
    cache: sig.SignalCache | None = None,
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
    if (type(purposes) is not dict or type(categories) is not dict or type(jur) is not str
            or type(gpc) is not bool):
        return None
    # the consent rules' fields: only the codec check's types here; what they mean is
    # ConsentRules.fold_record's (memoized), below
    tcf, gpp, cm, sec, obj = get("tcf"), get("gpp"), get("consent_mode"), get("sec_gpc"), get("objections")
    rule_fields = tcf is not None or gpp is not None or cm is not None or sec is not None or obj is not None
    if rule_fields and ((tcf is not None and type(tcf) is not str) or (gpp is not None and type(gpp) is not str)
                        or (cm is not None and type(cm) is not dict) or (sec is not None and type(sec) is not bool)
                        or (obj is not None and type(obj) is not list)):
        return None
    if len(jur) > MAX_JURISDICTION_BYTES // 4 and len(jur.encode("utf-8", "surrogatepass")) > MAX_JURISDICTION_BYTES:
        return None
    n = len(vocab.purposes)
    granted_at = [NOT_GRANTED] * n
    expires_at = [NOT_GRANTED] * n
    granted = 0
    named = 0
    unknown_p = 0
    pidx = vocab.purpose_index
    lo, hi = I64_MIN, I64_MAX
    rules = vocab.rules
    not_allowed = 0
    for name, entry in purposes.items():
        if type(entry) is not dict:
            return None
        basis = entry.get("basis")
        if basis is not None and (type(basis) is not str or basis not in BASES):
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
        if i is not None:
            named |= 1 << i
        if status == "granted":
            if i is None:
                unknown_p += 1
                continue
            if ga is None:
                return None
            if basis is not None and not rules.allows(i, basis):
                not_allowed += 1  # CONTRACT §3: granted only with an allowed basis
                continue
            granted |= 1 << i
            granted_at[i] = ga
            expires_at[i] = NO_EXPIRY if ea is None else ea
        elif status == "denied" or status == "withdrawn":
            if i is None:
                unknown_p += 1
        else:
            return None
    cmask = 0
    named_c = 0
    unknown_c = 0
    cidx = vocab.category_index
    for name, value in categories.items():
        if type(value) is not bool:
            return None
        j = cidx.get(name)
        if j is None:
            unknown_c += 1
        else:
            named_c |= 1 << j
            if value:
                cmask |= 1 << j
    f = None
    if rule_fields:
        try:
            f = rules.fold_record(record, granted, named, cmask, named_c, gpc, cache)
        except ConsentFieldError:
            return None  # parse_consent says what is wrong
    _count(counts, unknown_p, unknown_c, not_allowed)
    return _state(vocab, f, updated_at, offset, granted, granted_at, expires_at, cmask, jur, gpc)


def merge_state(current: ConsentState | None, new: ConsentState, vocab: Vocabulary) -> ConsentState:
    """``merge`` of a record already parsed into ``new`` (see ``parse_wellformed``)."""
    if current is None or current[PROFILE][P_VOCAB] != vocab.fingerprint:
        return new
    cu = current[UPDATED_AT]
    u = new[UPDATED_AT]
    if u > cu or (u == cu and new[OFFSET] > current[OFFSET]):
        return new
    return current


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
    cache: sig.SignalCache | None = None,
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
    new = parse_consent(record, key_subject, offset, vocab, counts, cache)
    if current is None or _newer(new[UPDATED_AT], offset, current):
        return new
    return current

