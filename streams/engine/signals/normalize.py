"""Decoded signals -> our purposes, categories, gpc and engine gates (pure functions).

The policy's ``[signals]`` table (``SignalsMapping.from_dict`` reads it as parsed
from TOML) says which signal speaks for which of our purposes and categories::

    [signals]
    sec_gpc = true                       # a record's Sec-GPC header sets gpc

    [signals.tcf.purposes]               # our purpose = TCF purposes that all need consent
    personalization = [5, 6]

    [signals.tcf.special_features]       # our category = TCF special features that all need opt-in
    location = [1]

    [signals.tcf.engines.partner_ads]    # engine gate: this GVL vendor's consent (disclosed,
    vendor_id = 755                      # not restricted by the publisher) plus consent
    purposes = [1, 3, 4]                 # to these TCF purposes

    [signals.gpp]
    gpc = true                           # a GPC subsection with Gpc=1 sets gpc

    [signals.gpp.opt_outs]               # our purpose = US-section opt-out fields (any = 1 denies)
    third_party_sharing = ["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"]

    [signals.consent_mode.denies]        # our purpose = Consent Mode signals (any denied denies)
    third_party_sharing = ["ad_user_data", "ad_personalization"]
    analytics = ["analytics_storage"]

That is CONTRACT §8's default mapping (``DEFAULT_MAPPING``; the vendor id is
illustrative, a shop puts its partner's GVL id there).

**Engine gates** are how vendor ids enter: TCF consent is given per vendor, and
our purposes are not. A gate belongs to one engine; when a TC string is present
and the gate is closed, that engine must treat every purpose it needs as
denied (drop reason ``purpose_denied``) while other engines needing the same
purposes are unaffected. Without a TC string a gate says nothing.

**What each signal says** about a target (a *finding*): ``grants`` or
``denies``, or nothing. TCF: every mapped purpose / special feature consented
grants, else denies. GPP, per US section (and ``uspv1``, read as SaleOptOut:
Y=1, N=2): a mapped opt-out field = 1 denies; else one = 2 (did not opt out)
grants; fields at 0 (not applicable) or absent from that state's section say
nothing. A US section this decoder keeps raw (usmd, usin, usky, usri) denies
every purpose in ``gpp.opt_outs`` (fail closed: an opt-out may be in it).
Consent Mode: a mapped signal denied denies, all stated ones granted grant.
The tcfeuv2 section of a GPP string is a TCF signal like the record's ``tcf``.

**Signals only ever narrow** (CONTRACT §3), ``combine``: where the record names
a purpose or category, the effective value is granted only if the record
grants it and no finding denies it; a purpose or category the record does not
name is granted only if at least one signal speaks for it and every finding
grants it (no signal mapped = not granted, as for any unnamed purpose).
``gpc`` is the record's ``gpc`` or any finding that sets it; findings never
clear it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from streams.engine.signals.consent_mode import SIGNALS as CONSENT_MODE_SIGNALS
from streams.engine.signals.consent_mode import ConsentMode
from streams.engine.signals.errors import SignalsMappingError
from streams.engine.signals.gpp import OPT_OUT_FIELDS, GPPString, RawSection, USPrivacy, USSection
from streams.engine.signals.tcf import RESTRICTION_NOT_ALLOWED, RESTRICTION_REQUIRE_LI, TCString

__all__ = [
    "DEFAULT_MAPPING",
    "EngineGate",
    "Effective",
    "Finding",
    "Narrowed",
    "Signals",
    "SignalsMapping",
    "combine",
    "explain",
    "normalize",
]

GRANTED, DENIED = "granted", "denied"
#: Raw GPP sections that are US state sections (may hold an opt-out we cannot read).
_RAW_US_SECTIONS = frozenset({24, 25, 26, 27})
_USP_SALE = {"Y": 1, "N": 2, "-": 0}


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True, slots=True)
class EngineGate:
    """A TCF gate on one engine: vendor consent plus consent to these TCF purposes."""

    vendor_id: int
    purposes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SignalsMapping:
    """The policy's ``[signals]`` table (module docstring)."""

    tcf_purposes: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: _frozen({}))
    tcf_special_features: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: _frozen({}))
    tcf_engines: Mapping[str, EngineGate] = field(default_factory=lambda: _frozen({}))
    gpp_opt_outs: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _frozen({}))
    gpp_gpc: bool = False
    sec_gpc: bool = False
    consent_mode_denies: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _frozen({}))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SignalsMapping:
        """Read the ``[signals]`` table; ``SignalsMappingError`` names the first bad entry."""
        _keys(d, {"sec_gpc", "tcf", "gpp", "consent_mode"}, "signals")
        tcf = d.get("tcf", {})
        _keys(tcf, {"purposes", "special_features", "engines"}, "signals.tcf")
        gpp = d.get("gpp", {})
        _keys(gpp, {"gpc", "opt_outs"}, "signals.gpp")
        cm = d.get("consent_mode", {})
        _keys(cm, {"denies"}, "signals.consent_mode")
        engines = {}
        for name, gate in _table(tcf.get("engines", {}), "signals.tcf.engines").items():
            where = f"signals.tcf.engines.{name}"
            _keys(gate, {"vendor_id", "purposes"}, where)
            vid = gate.get("vendor_id")
            if not isinstance(vid, int) or isinstance(vid, bool) or not 1 <= vid <= 65535:
                raise SignalsMappingError(f"{where}.vendor_id: a GVL vendor id 1..65535 is required")
            engines[name] = EngineGate(vid, _ids(gate.get("purposes", []), 24, f"{where}.purposes"))
        cm_names = frozenset(CONSENT_MODE_SIGNALS)
        return cls(
            tcf_purposes=_each(tcf, "purposes", "signals.tcf", lambda v, w: _ids(v, 24, w)),
            tcf_special_features=_each(tcf, "special_features", "signals.tcf", lambda v, w: _ids(v, 12, w)),
            tcf_engines=_frozen(engines),
            gpp_opt_outs=_each(gpp, "opt_outs", "signals.gpp", lambda v, w: _names(v, OPT_OUT_FIELDS, w)),
            gpp_gpc=_bool(gpp.get("gpc", False), "signals.gpp.gpc"),
            sec_gpc=_bool(d.get("sec_gpc", False), "signals.sec_gpc"),
            consent_mode_denies=_each(cm, "denies", "signals.consent_mode", lambda v, w: _names(v, cm_names, w)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The inverse of ``from_dict`` (TOML-shaped), e.g. to print it."""
        return {
            "sec_gpc": self.sec_gpc,
            "tcf": {
                "purposes": {k: list(v) for k, v in self.tcf_purposes.items()},
                "special_features": {k: list(v) for k, v in self.tcf_special_features.items()},
                "engines": {
                    k: {"vendor_id": g.vendor_id, "purposes": list(g.purposes)} for k, g in self.tcf_engines.items()
                },
            },
            "gpp": {"gpc": self.gpp_gpc, "opt_outs": {k: list(v) for k, v in self.gpp_opt_outs.items()}},
            "consent_mode": {"denies": {k: list(v) for k, v in self.consent_mode_denies.items()}},
        }

    def describe(self) -> list[str]:
        """One line per rule, for ``pfilter policy check``."""
        out = [f"purpose {p}: TCF purposes {_ids_text(ids)} all consented" for p, ids in self.tcf_purposes.items()]
        out += [
            f"category {c}: TCF special features {_ids_text(ids)} all opted in"
            for c, ids in self.tcf_special_features.items()
        ]
        out += [
            f"engine {e}: TCF vendor {g.vendor_id} consented and disclosed, purposes {_ids_text(g.purposes)} consented"
            for e, g in self.tcf_engines.items()
        ]
        out += [f"purpose {p}: denied by a GPP US opt-out of {', '.join(f)}" for p, f in self.gpp_opt_outs.items()]
        out += [
            f"purpose {p}: denied by Consent Mode {' or '.join(s)} denied" for p, s in self.consent_mode_denies.items()
        ]
        if self.gpp_gpc:
            out.append("gpc: set by a GPP GPC subsection with Gpc=1")
        if self.sec_gpc:
            out.append("gpc: set by Sec-GPC")
        return out

    def check_names(self, purposes: Iterable[str], categories: Iterable[str], engines: Iterable[str]) -> None:
        """Raise ``SignalsMappingError`` naming a purpose, category or engine the policy lacks."""
        known = {"purpose": set(purposes), "category": set(categories), "engine": set(engines)}
        refs = [("purpose", p, "signals.tcf.purposes") for p in self.tcf_purposes]
        refs += [("category", c, "signals.tcf.special_features") for c in self.tcf_special_features]
        refs += [("engine", e, "signals.tcf.engines") for e in self.tcf_engines]
        refs += [("purpose", p, "signals.gpp.opt_outs") for p in self.gpp_opt_outs]
        refs += [("purpose", p, "signals.consent_mode.denies") for p in self.consent_mode_denies]
        for kind, name, where in refs:
            if name not in known[kind]:
                raise SignalsMappingError(f"{where}: unknown {kind} {name!r}")


def _keys(d: Any, allowed: set[str], where: str) -> None:
    if not isinstance(d, Mapping):
        raise SignalsMappingError(f"{where}: must be a table")
    for k in d:
        if k not in allowed:
            raise SignalsMappingError(f"{where}: unknown key {k!r} (known: {', '.join(sorted(allowed))})")


def _each(parent: Mapping[str, Any], key: str, where: str, read: Any) -> Mapping[str, Any]:
    """``parent[key]`` as a table whose every entry is ``read(value, "where.key.name")``."""
    table = _table(parent.get(key, {}), f"{where}.{key}")
    return _frozen({name: read(v, f"{where}.{key}.{name}") for name, v in table.items()})


def _table(d: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise SignalsMappingError(f"{where}: must be a table")
    return d


def _ids(v: Any, top: int, where: str) -> tuple[int, ...]:
    ok = isinstance(v, list) and v and all(isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= top for i in v)
    if not ok:
        raise SignalsMappingError(f"{where}: a non-empty list of ids 1..{top} is required")
    return tuple(v)


def _names(v: Any, allowed: frozenset[str], where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not v:
        raise SignalsMappingError(f"{where}: a non-empty list is required")
    for n in v:
        if n not in allowed:
            raise SignalsMappingError(f"{where}: unknown name {n!r} (known: {', '.join(sorted(allowed))})")
    return tuple(v)


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise SignalsMappingError(f"{where}: true or false")
    return v


def _ids_text(ids: Iterable[int]) -> str:
    return ", ".join(str(i) for i in ids)


#: CONTRACT §8's mapping (vendor id 755 is illustrative).
DEFAULT_MAPPING = SignalsMapping.from_dict(
    {
        "sec_gpc": True,
        "tcf": {
            "purposes": {"personalization": [5, 6]},
            "special_features": {"location": [1]},
            "engines": {"partner_ads": {"vendor_id": 755, "purposes": [1, 3, 4]}},
        },
        "gpp": {
            "gpc": True,
            "opt_outs": {"third_party_sharing": ["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"]},
        },
        "consent_mode": {
            "denies": {
                "third_party_sharing": ["ad_user_data", "ad_personalization"],
                "analytics": ["analytics_storage"],
            }
        },
    }
)


# --------------------------------------------------------------------------- normalize
@dataclass(frozen=True, slots=True)
class Signals:
    """The decoded signals of one consent record (``None``: the record has none)."""

    tcf: TCString | None = None
    gpp: GPPString | None = None
    consent_mode: ConsentMode | None = None
    sec_gpc: bool | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """What one signal says about one target. ``kind``: purpose, category, engine or gpc;
    ``grants``: True grants (for gpc: sets it), False denies; ``why``: for ``explain``."""

    signal: str
    kind: str
    target: str
    grants: bool
    why: str


@dataclass(frozen=True, slots=True)
class Narrowed:
    """What the signals allow. ``purposes``: ``"granted"``/``"denied"`` per purpose some
    signal speaks for (absent: unmentioned); ``categories``: True/False likewise;
    ``engines``: gate open/closed per gated engine; ``gpc``: some signal set it;
    ``vendors``: per GVL vendor id the mapping names, whether every TC string present
    gives it consent (bit set and, with DisclosedVendors, disclosed)."""

    purposes: Mapping[str, str]
    categories: Mapping[str, bool]
    engines: Mapping[str, bool]
    gpc: bool
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]
    vendors: Mapping[int, bool] = field(default_factory=lambda: _frozen({}))


def _tcf_findings(label: str, tc: TCString, m: SignalsMapping, out: list[Finding]) -> None:
    def yes_no(ids: Iterable[int], s: Any) -> str:
        return ", ".join(f"{i} {'yes' if i in s else 'no'}" for i in ids)

    for p, ids in m.tcf_purposes.items():
        ok = all(i in tc.purpose_consents for i in ids)
        out.append(Finding(label, "purpose", p, ok, f"TCF purpose consent {yes_no(ids, tc.purpose_consents)}"))
    for c, ids in m.tcf_special_features.items():
        ok = all(i in tc.special_feature_optins for i in ids)
        why = f"TCF special feature opt-in {yes_no(ids, tc.special_feature_optins)}"
        out.append(Finding(label, "category", c, ok, why))
    for e, g in m.tcf_engines.items():
        vendor = tc.vendor_consented(g.vendor_id)
        purposes_ok = all(i in tc.purpose_consents for i in g.purposes)
        restricted = [
            p
            for p in g.purposes
            if any(t in (RESTRICTION_NOT_ALLOWED, RESTRICTION_REQUIRE_LI) for t in tc.restrictions_for(g.vendor_id, p))
        ]
        why = (
            f"TCF vendor {g.vendor_id} consent {'yes' if g.vendor_id in tc.vendor_consents else 'no'}"
            + (
                ""
                if tc.disclosed_vendors is None
                else f", disclosed {'yes' if g.vendor_id in tc.disclosed_vendors else 'no'}"
            )
            + f"; purpose consent {yes_no(g.purposes, tc.purpose_consents)}"
            + (f"; publisher restricts purposes {_ids_text(restricted)}" if restricted else "")
        )
        out.append(Finding(label, "engine", e, vendor and purposes_ok and not restricted, why))


def _us_findings(label: str, values: Mapping[str, int | None], m: SignalsMapping, out: list[Finding]) -> None:
    for p, names in m.gpp_opt_outs.items():
        stated = {n: values.get(n) for n in names if values.get(n) is not None}
        if any(v == 1 for v in stated.values()):
            opted = ", ".join(n for n, v in stated.items() if v == 1)
            out.append(Finding(label, "purpose", p, False, f"opted out: {opted}"))
        elif any(v == 2 for v in stated.values()):
            kept = ", ".join(n for n, v in stated.items() if v == 2)
            out.append(Finding(label, "purpose", p, True, f"did not opt out: {kept}"))


def normalize(signals: Signals, mapping: SignalsMapping = DEFAULT_MAPPING) -> Narrowed:
    """What ``signals`` allow under ``mapping`` (module docstring). Pure."""
    findings: list[Finding] = []
    notes: list[str] = []
    tcs = [signals.tcf] if signals.tcf is not None else []
    if signals.gpp is not None:
        tcs += [s for s in signals.gpp.sections.values() if isinstance(s, TCString)]
    vendors = {g.vendor_id: all(tc.vendor_consented(g.vendor_id) for tc in tcs) for g in mapping.tcf_engines.values()}
    if signals.tcf is not None:
        _tcf_findings("tcf", signals.tcf, mapping, findings)
    if signals.gpp is not None:
        for name, section in signals.gpp.sections.items():
            label = f"gpp.{name}"
            if isinstance(section, TCString):
                _tcf_findings(label, section, mapping, findings)
            elif isinstance(section, USSection):
                _us_findings(label, {f: section.value(f) for f in OPT_OUT_FIELDS}, mapping, findings)
                if mapping.gpp_gpc and section.gpc:
                    findings.append(Finding(label, "gpc", "gpc", True, "GPC subsection Gpc=1"))
            elif isinstance(section, USPrivacy):
                _us_findings(label, {"SaleOptOut": _USP_SALE[section.opt_out_sale]}, mapping, findings)
            elif isinstance(section, RawSection) and section.section_id in _RAW_US_SECTIONS:
                for p in mapping.gpp_opt_outs:
                    findings.append(Finding(label, "purpose", p, False, "section not decoded: treated as opted out"))
            else:
                notes.append(f"{label}: not used by the [signals] mapping")
    if signals.consent_mode is not None:
        cm = signals.consent_mode
        for p, names in mapping.consent_mode_denies.items():
            stated = {n: cm.get(n) for n in names if cm.get(n) is not None}
            if stated:
                why = ", ".join(f"{n} {'granted' if v else 'denied'}" for n, v in stated.items())
                findings.append(Finding("consent_mode", "purpose", p, all(stated.values()), why))
    if signals.sec_gpc and mapping.sec_gpc:
        findings.append(Finding("sec_gpc", "gpc", "gpc", True, "Sec-GPC: 1"))

    purposes: dict[str, str] = {}
    categories: dict[str, bool] = {}
    engines: dict[str, bool] = {}
    gpc = False
    for f in findings:
        if f.kind == "purpose":
            purposes[f.target] = GRANTED if f.grants and purposes.get(f.target, GRANTED) == GRANTED else DENIED
        elif f.kind == "category":
            categories[f.target] = f.grants and categories.get(f.target, True)
        elif f.kind == "engine":
            engines[f.target] = f.grants and engines.get(f.target, True)
        else:
            gpc = True
    return Narrowed(
        _frozen(purposes),
        _frozen(categories),
        _frozen(engines),
        gpc,
        tuple(findings),
        tuple(notes),
        _frozen(vendors if tcs else {}),
    )


# --------------------------------------------------------------------------- combine
@dataclass(frozen=True, slots=True)
class Effective:
    """The record's explicit fields narrowed by its signals. ``purposes``/``categories``:
    True = granted, for every name the record or a signal mentions; ``engines``: gate
    per gated engine (False: the engine's needed purposes count as denied)."""

    purposes: Mapping[str, bool]
    categories: Mapping[str, bool]
    gpc: bool
    engines: Mapping[str, bool]

    def engine_allowed(self, engine: str) -> bool:
        """False when a signal closed this engine's gate."""
        return self.engines.get(engine, True)


def _narrow(explicit: Mapping[str, bool], signal: Mapping[str, bool]) -> dict[str, bool]:
    out = {k: v and signal.get(k, True) for k, v in explicit.items()}
    for k, v in signal.items():
        out.setdefault(k, v)
    return out


def combine(
    explicit_purposes: Mapping[str, bool],
    explicit_categories: Mapping[str, bool],
    explicit_gpc: bool,
    narrowed: Narrowed,
) -> Effective:
    """The more restrictive of the record and its signals (module docstring).

    ``explicit_purposes``: purpose -> the record's status is ``granted`` (a denied or
    withdrawn purpose is False); ``explicit_categories``: the record's ``categories``.
    """
    purposes = _narrow(explicit_purposes, {p: v == GRANTED for p, v in narrowed.purposes.items()})
    categories = _narrow(explicit_categories, narrowed.categories)
    return Effective(_frozen(purposes), _frozen(categories), bool(explicit_gpc) or narrowed.gpc, narrowed.engines)


def explain(
    explicit_purposes: Mapping[str, bool],
    explicit_categories: Mapping[str, bool],
    explicit_gpc: bool,
    narrowed: Narrowed,
) -> list[str]:
    """How the record's fields and each signal combine, target by target (for
    ``pfilter consent explain``; the lines hold consent choices: print them to the
    person asking, never to a log)."""
    eff = combine(explicit_purposes, explicit_categories, explicit_gpc, narrowed)
    lines: list[str] = []

    def block(kind: str, name: str, explicit: bool | None, result: bool, yes: str, no: str) -> None:
        head = "record does not name it" if explicit is None else f"record: {yes if explicit else no}"
        lines.append(f"{kind} {name}: {head}")
        fs = [f for f in narrowed.findings if f.kind == kind and f.target == name]
        for f in fs:
            lines.append(f"  {f.signal}: {f.why} -> {'grants' if f.grants else 'denies'}")
        if not fs:
            reason = "no signal maps to it"
        elif explicit is not None and explicit and not result:
            reason = "narrowed by " + ", ".join(sorted({f.signal for f in fs if not f.grants}))
        elif explicit is None:
            reason = "every signal mapped to it grants" if result else "a signal mapped to it denies"
        else:
            reason = "the record decides" if not explicit else "no signal denies"
        lines.append(f"  => {yes if result else no} ({reason})")

    for p in list(explicit_purposes) + [p for p in narrowed.purposes if p not in explicit_purposes]:
        block("purpose", p, explicit_purposes.get(p), eff.purposes[p], GRANTED, DENIED)
    for c in list(explicit_categories) + [c for c in narrowed.categories if c not in explicit_categories]:
        block("category", c, explicit_categories.get(c), eff.categories[c], "allowed", "not allowed")
    for e, open_ in narrowed.engines.items():
        lines.append(f"engine {e}: gated by TCF")
        for f in narrowed.findings:
            if f.kind == "engine" and f.target == e:
                lines.append(f"  {f.signal}: {f.why} -> {'opens' if f.grants else 'closes'}")
        lines.append(f"  => {'open' if open_ else 'closed: every purpose it needs counts as denied'}")
    setters = [f for f in narrowed.findings if f.kind == "gpc"]
    lines.append(f"gpc: record {'true' if explicit_gpc else 'false'}")
    for f in setters:
        lines.append(f"  {f.signal}: {f.why} -> sets gpc")
    lines.append(f"  => {'true' if eff.gpc else 'false'}")
    lines.extend(f"note: {n}" for n in narrowed.notes)
    return lines
