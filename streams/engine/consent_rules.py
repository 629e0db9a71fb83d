"""The policy's consent rules, applied when a consent record is compiled into a state.

CONTRACT §3, §4, §5 (step 1a and the basis check of step 2), §8. Everything
here runs once per consent record (never per event) and folds into the compact
state's profile (``streams.engine.consent``) what the per-event rule then reads
as bit tests:

- **legal bases**: per purpose, the bases the policy allows (default
  ``consent`` only). A purpose the record grants with another basis is *not
  granted* (the granted mask does not have its bit), so step 2 says
  ``purpose_denied``;
- **objections** (GDPR Art. 21): per purpose, the objection classes it belongs
  to. The record's ``objections`` give the ``objected`` mask: every purpose that
  belongs to one of them. Step 1a drops an engine that needs one (``objected``),
  whatever the basis or consent;
- **signals** (TCF, GPP, Consent Mode, Sec-GPC): decoded once per distinct
  string (``signals.SignalCache``), turned into findings by the policy's
  ``[signals]`` mapping and combined with the record's explicit fields, which
  they only ever narrow (``signals.combine``). A closed TCF engine gate sets the
  engine's bit in the ``gates`` mask: that engine's purposes count as denied.

Why fold at apply time: a population has a few thousand distinct profiles and
the profile is interned, so the per-event rule stays a handful of integer
tests and the native engine reads the same two masks (``native/src/state.rs``).
The price: a state holds the *result* of these rules, so a policy whose rules
change must rebuild its states. ``ConsentRules.text`` goes into the vocabulary
fingerprint (``consent.Vocabulary``): a state compiled under other rules does
not match and counts as no consent until it is rebuilt from the consent topic.

A leaf of ``consent``: it imports the signals package and nothing of the
engine that imports it. Problems raise ``ConsentFieldError`` naming the field,
never a value (G6); ``consent`` turns them into a malformed record.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from streams.engine import signals as sig
from streams.engine.vocab import BASES, OBJECTION_CLASSES
from streams.engine.vocab import CONSENT_BASIS as CONSENT
from streams.errors import PFilterError

#: The record fields that carry signals, in the order ``explain`` shows them.
SIGNAL_FIELDS = ("tcf", "gpp", "consent_mode", "sec_gpc")
#: Entries of ``ConsentRules.fold_record``'s memo before it starts over. An entry is a key
#: tuple and a Folded (~400 B; the signal strings are interned, one copy each), so the
#: bound is ~25 MB plus the distinct strings. The bench population's 1M subjects have
#: fewer distinct keys than this, so it is never cleared there; a population with more
#: only decodes again after a clear, never decides differently.
FOLD_MEMO_MAX = 65_536
#: Tag of the state semantics the fingerprint covers (bump when what a state means changes).
_STATE_SEMANTICS = "state-2:bases,objections,signals,gates"


class ConsentFieldError(PFilterError):
    """A consent record field the rules cannot use; the message names the field only."""


class Folded(NamedTuple):
    """What the rules make of one record (masks over the vocabulary's purposes and
    categories; ``gates`` over the policy's engines, in policy order).

    ``signal_grants``: purposes granted only because every signal mapped to them
    grants them (the record does not name them): their grant time is the record's
    ``updated_at``, without expiry."""

    granted: int
    categories: int
    gpc: bool
    objected: int
    gates: int
    signal_grants: int


class ConsentRules:
    """Bases, objection classes, the signals mapping and engine gates of a policy, compiled."""

    __slots__ = ("purposes", "categories", "engines", "bases", "objections", "mapping",
                 "_basis_mask", "_class_mask", "_engine_bit", "_signal_targets", "_folds")

    def __init__(self, purposes: Sequence[str], categories: Sequence[str], engines: Sequence[str] = (),
                 bases: Mapping[str, Iterable[str]] | None = None,
                 objections: Mapping[str, Iterable[str]] | None = None,
                 mapping: sig.SignalsMapping | None = None) -> None:
        """``bases``: purpose -> allowed bases (absent: ``consent`` only); ``objections``:
        purpose -> objection classes it belongs to; ``mapping``: the ``[signals]`` table
        (None: no signal is mapped). Names are checked by the policy compiler."""
        self.purposes = tuple(purposes)
        self.categories = tuple(categories)
        self.engines = tuple(engines)
        bases = bases or {}
        objections = objections or {}
        self.bases = {p: tuple(b for b in BASES if b in set(bases.get(p, (CONSENT,)))) for p in self.purposes}
        self.objections = {p: tuple(c for c in OBJECTION_CLASSES if c in set(objections.get(p, ())))
                           for p in self.purposes}
        self.mapping = mapping if mapping is not None else sig.SignalsMapping()
        #: basis -> purposes (bitmask) that allow it
        self._basis_mask = {b: sum(1 << i for i, p in enumerate(self.purposes) if b in self.bases[p])
                            for b in BASES}
        #: objection class -> purposes (bitmask) that belong to it
        self._class_mask = {c: sum(1 << i for i, p in enumerate(self.purposes) if c in self.objections[p])
                            for c in OBJECTION_CLASSES}
        self._engine_bit = {e: 1 << i for i, e in enumerate(self.engines)}
        m = self.mapping
        self._signal_targets = bool(m.tcf_purposes or m.tcf_special_features or m.tcf_engines or m.gpp_opt_outs
                                    or m.consent_mode_denies or m.gpp_gpc or m.sec_gpc)
        #: fold_record's memo: (masks, gpc, objections, signal fields) -> Folded
        self._folds: dict[tuple, Folded] = {}

    # ------------------------------------------------------------------ describing
    def text(self) -> str:
        """Canonical text of everything a compiled state depends on beyond the purpose and
        category order (goes into the vocabulary fingerprint)."""
        return json.dumps([_STATE_SEMANTICS, self.bases, self.objections, self.mapping.to_dict(),
                           list(self.engines)], sort_keys=True, separators=(",", ":"))

    def allows(self, purpose_index: int, basis: str) -> bool:
        return bool(self._basis_mask.get(basis, 0) >> purpose_index & 1)

    def objection_mask(self, classes: Iterable[str]) -> int:
        out = 0
        for c in classes:
            out |= self._class_mask[c]
        return out

    def engine_bit(self, engine: str) -> int:
        """The engine's bit of the ``gates`` mask (0 for an engine this policy lacks)."""
        return self._engine_bit.get(engine, 0)

    def describe(self) -> list[str]:
        """Lines for ``pfilter policy check``: bases and objection classes per purpose."""
        return [f"purpose {p}: bases {', '.join(self.bases[p])}; objection classes "
                f"{', '.join(self.objections[p]) or 'none'}" for p in self.purposes]

    # ------------------------------------------------------------------ reading a record
    def basis_of(self, name: str, entry: Mapping[str, Any]) -> str:
        """The purpose entry's basis (``consent`` when absent or null)."""
        b = entry.get("basis")
        if b is None:
            return CONSENT
        if type(b) is not str or b not in BASES:
            raise ConsentFieldError(f"purposes.{name}.basis: not one of {', '.join(BASES)}")
        return b

    @staticmethod
    def objections_of(record: Mapping[str, Any]) -> tuple[str, ...]:
        """The record's objection classes (none when absent or null)."""
        obj = record.get("objections")
        if obj is None:
            return ()
        if type(obj) is not list:
            raise ConsentFieldError("objections: not a list")
        for c in obj:
            if type(c) is not str or c not in OBJECTION_CLASSES:
                raise ConsentFieldError(f"objections: an entry is not one of {', '.join(OBJECTION_CLASSES)}")
        return tuple(obj)

    @staticmethod
    def signals_of(record: Mapping[str, Any], cache: sig.SignalCache | None) -> sig.Signals | None:
        """The record's decoded signals (None when it has none). Raises
        ``ConsentFieldError`` for a signal that does not decode (CONTRACT §3: malformed)."""
        tcf, gpp, cm, sec = (record.get(f) for f in SIGNAL_FIELDS)
        if tcf is None and gpp is None and cm is None and sec is None:
            return None
        try:
            tc = None if tcf is None else (cache.tcf(tcf) if cache is not None else _strict(sig.decode_tcf, tcf))
            gp = None if gpp is None else (cache.gpp(gpp) if cache is not None else _strict(sig.decode_gpp, gpp))
        except sig.SignalError as exc:  # its message never holds the string (signals' rule)
            field = "tcf" if isinstance(exc, sig.TCFError) else "gpp"
            raise ConsentFieldError(f"{field}: does not decode ({type(exc).__name__}: {exc})") from None
        try:
            mode = None if cm is None else sig.parse_consent_mode(cm)
        except sig.SignalError as exc:
            raise ConsentFieldError(f"consent_mode: does not parse ({exc})") from None
        if sec is not None and type(sec) is not bool:
            raise ConsentFieldError("sec_gpc: not a boolean")
        return sig.Signals(tcf=tc, gpp=gp, consent_mode=mode, sec_gpc=sec)

    def fold_record(self, record: Mapping[str, Any], granted: int, named: int, categories: int,
                    named_categories: int, gpc: bool, cache: sig.SignalCache | None) -> Folded | None:
        """``fold`` of the record's own objections and signals (None when it has neither),
        remembered per distinct input. Raises ``ConsentFieldError`` like ``objections_of``
        and ``signals_of``.

        Why a memo: in a population most records carry signals, and decoding and
        normalizing them was two thirds of a consent record's parse (cProfile of
        ``apply_consent`` over the bench population: ``fold`` + ``signals_of`` 2.1 of
        4.4 s), while their combinations are few (200,000 subjects: 112,000 records
        with signals, 9,063 distinct keys here). The key holds every input ``fold`` and
        the checks read, with the types that are not str (``sec_gpc``: 1 == True), and
        only keys of records that passed the checks are stored, so a hit is a record
        that would fold the same. The signal strings in it are interned, so the memo
        holds one copy per distinct string, not per entry."""
        obj, tcf, gpp, cm, sec = (record.get("objections"), record.get("tcf"), record.get("gpp"),
                                  record.get("consent_mode"), record.get("sec_gpc"))
        if obj is None and tcf is None and gpp is None and cm is None and sec is None:
            return None
        try:
            key = (granted, named, categories, named_categories, gpc,
                   None if obj is None else (type(obj), *obj), tcf if type(tcf) is str else (type(tcf), tcf),
                   gpp if type(gpp) is str else (type(gpp), gpp),
                   None if cm is None else (type(cm), *cm.items()) if type(cm) is dict else (type(cm), cm),
                   (type(sec), sec))
            hit = self._folds.get(key)
        except TypeError:  # an unhashable part (a malformed record): no memo
            key = hit = None
        if hit is not None:
            return hit
        objections = self.objections_of(record)
        signals = self.signals_of(record, cache)
        if not objections and signals is None:
            return None
        f = self.fold(granted, named, categories, named_categories, gpc, objections, signals)
        if key is not None:
            if len(self._folds) >= FOLD_MEMO_MAX:
                self._folds.clear()
            intern = sys.intern
            self._folds[(*key[:6], intern(tcf) if type(tcf) is str else key[6],
                         intern(gpp) if type(gpp) is str else key[7], *key[8:])] = f
        return f

    def narrowed(self, signals: sig.Signals) -> sig.Narrowed:
        return sig.normalize(signals, self.mapping)

    def fold(self, granted: int, named: int, categories: int, named_categories: int, gpc: bool,
             objections: Sequence[str], signals: sig.Signals | None) -> Folded:
        """The record's masks after its objections and signals.

        ``granted``: purposes granted with an allowed basis; ``named``: purposes the record
        names (any status); ``categories`` / ``named_categories`` likewise."""
        objected = self.objection_mask(objections) if objections else 0
        if signals is None or not self._signal_targets:
            return Folded(granted, categories, gpc, objected, 0, 0)
        nar = self.narrowed(signals)
        purposes = self.purposes
        explicit_p = {p: bool(granted >> i & 1) for i, p in enumerate(purposes) if named >> i & 1}
        explicit_c = {c: bool(categories >> j & 1) for j, c in enumerate(self.categories) if named_categories >> j & 1}
        eff = sig.combine(explicit_p, explicit_c, gpc, nar)
        g = 0
        signal_grants = 0
        consent_ok = self._basis_mask[CONSENT]
        for i, p in enumerate(purposes):
            if eff.purposes.get(p, False):
                bit = 1 << i
                if named & bit:
                    g |= bit
                elif consent_ok & bit:  # a signal is consent: granted only where consent may be the basis
                    g |= bit
                    signal_grants |= bit
        c = 0
        for j, name in enumerate(self.categories):
            if eff.categories.get(name, False):
                c |= 1 << j
        gates = 0
        for e, open_ in eff.engines.items():
            if not open_:
                gates |= self._engine_bit.get(e, 0)
        return Folded(g, c, eff.gpc, objected, gates, signal_grants)


class RulesError(PFilterError, ValueError):
    """The policy's consent rules are unusable; the message names the entry (the policy
    compiler reports it as a ``PolicyError``)."""


#: The policy's per-purpose rules table and its keys.
PURPOSE_RULES_KEY = "purpose_rules"
_RULE_KEYS = ("bases", "objections")


def compile_rules(doc: Mapping[str, Any], purposes: Sequence[str], categories: Sequence[str],
                  engines: Sequence[str]) -> ConsentRules:
    """The consent rules of a parsed policy document: ``[purpose_rules.<purpose>]``
    (``bases``, ``objections``) and ``[signals]`` (``signals.SignalsMapping``), every name
    checked against the policy's purposes, categories and engines. Raises ``RulesError``."""
    table = doc.get(PURPOSE_RULES_KEY, {})
    if not isinstance(table, Mapping):
        raise RulesError(f"'{PURPOSE_RULES_KEY}' must be a table of purpose = {{bases, objections}}")
    bases: dict[str, list[str]] = {}
    objections: dict[str, list[str]] = {}
    for p, entry in table.items():
        where = f"{PURPOSE_RULES_KEY}.{p}"
        if p not in purposes:
            raise RulesError(f"{where}: unknown purpose {p!r} (purposes: {', '.join(purposes)})")
        if not isinstance(entry, Mapping):
            raise RulesError(f"{where} must be a table with 'bases' and/or 'objections'")
        for k in entry:
            if k not in _RULE_KEYS:
                raise RulesError(f"{where}: unknown key {k!r} (known: {', '.join(_RULE_KEYS)})")
        if "bases" in entry:
            bases[p] = _names_in(entry["bases"], BASES, f"{where}.bases", "basis", empty_ok=False)
        if "objections" in entry:
            objections[p] = _names_in(entry["objections"], OBJECTION_CLASSES, f"{where}.objections",
                                      "objection class", empty_ok=True)
    raw = doc.get("signals", {})
    try:
        mapping = sig.SignalsMapping.from_dict(raw)
        mapping.check_names(purposes, categories, engines)
    except sig.SignalsMappingError as exc:
        raise RulesError(str(exc)) from None
    return ConsentRules(purposes, categories, engines, bases, objections, mapping)


def _names_in(v: Any, known: Sequence[str], where: str, what: str, *, empty_ok: bool) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v) or (not v and not empty_ok):
        raise RulesError(f"{where} must be a {'' if empty_ok else 'non-empty '}list of: {', '.join(known)}")
    for x in v:
        if x not in known:
            raise RulesError(f"{where}: unknown {what} {x!r} (known: {', '.join(known)})")
        if v.count(x) > 1:
            raise RulesError(f"{where}: {x!r} is listed twice")
    return v


def _strict(decode: Any, s: Any) -> Any:
    if not isinstance(s, str):
        raise (sig.TCFDecodeError if decode is sig.decode_tcf else sig.GPPDecodeError)("not a string")
    return decode(s)


def plain_rules(purposes: Sequence[str], categories: Sequence[str]) -> ConsentRules:
    """Rules of a vocabulary without a policy (tests, tools): ``consent`` only, no
    objection classes, no signal mapped."""
    return ConsentRules(purposes, categories)
