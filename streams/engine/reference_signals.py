"""The oracle's reading of a consent record's bases, objections and signals (CONTRACT §3, §4, §8).

Part of ``streams.engine.reference`` (split out to keep each module small); like
it, it works on plain dicts (the parsed policy TOML, the raw consent record) and
shares no code with the engine: the signals are decoded by
``streams.engine.reference_decoders``, the ``[signals]`` table is read here.

What it states (the engine must match):

- **policy, per purpose**: ``purposes`` is a list of names (every purpose allows
  basis ``consent`` only and belongs to no objection class) or a table
  ``[purposes.<name>]`` with optional ``bases`` (default ``["consent"]``) and
  ``objections`` (default ``[]``);
- **record**: a purpose's ``basis`` is ``consent`` when absent or null;
  ``objections`` is a list of class names (absent or null: none);
- **signals**: the policy's ``[signals]`` table (the shape
  ``streams/engine/signals/normalize.py`` documents; without a ``[signals]``
  table, CONTRACT §8's default mapping below). Each signal says, per target,
  grants / denies / nothing:
  TCF (the record's ``tcf`` and every tcfeuv2 section of its ``gpp``): a purpose
  grants when all its TCF purposes are consented; a category when all its
  special features are opted in; an engine gate opens when the vendor's consent
  bit is set (and, with a DisclosedVendors segment, the vendor is disclosed),
  all the gate's TCF purposes are consented and no publisher restriction of type
  0 (not allowed) or 2 (legitimate interest only) names that vendor and purpose.
  GPP US sections (and uspv1, read as SaleOptOut Y=1 N=2 -=0): a mapped opt-out
  field of 1 denies, else one of 2 grants, else nothing; undecoded US sections
  (24-27) deny every mapped purpose; a GPC subsection with Gpc=1 sets ``gpc``
  when ``gpp.gpc``. Consent Mode: a purpose with mapped signals stated grants
  when all of them are granted, else denies. ``sec_gpc: true`` in the record sets
  ``gpc`` when ``sec_gpc``;
- **signals only narrow**: a purpose or category the record names is granted
  when the record grants it and no signal denies it; one it does not name is
  granted when some signal speaks for it and all grant it. Such a signal-only
  purpose grant counts as granted at the record's ``updated_at``, with no expiry
  and basis ``consent``. A closed engine gate makes every purpose that engine
  needs count as denied, for that engine only. ``gpc`` is the record's or any
  signal's;
- a signal that does not decode makes the record malformed: ``effective`` raises
  ``SignalUnreadable`` and the reference treats the subject as without consent.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from streams.engine.reference_decoders import (
    RAW_US_SECTIONS,
    SignalUnreadable,
    decode_gpp,
    decode_tc,
    read_consent_mode,
)

__all__ = ["DEFAULT_SIGNALS", "SignalUnreadable", "allowed_bases", "effective", "has_signals", "objection_classes",
           "signals_problem"]

#: CONTRACT §8's ``[signals]`` mapping, for a policy without a ``[signals]`` table
#: (vendor id 755: the default policy's illustrative partner).
DEFAULT_SIGNALS: dict[str, Any] = {
    "sec_gpc": True,
    "tcf": {
        "purposes": {"personalization": [5, 6]},
        "special_features": {"location": [1]},
        "engines": {"partner_ads": {"vendor_id": 755, "purposes": [1, 3, 4]}},
    },
    "gpp": {"gpc": True,
            "opt_outs": {"third_party_sharing": ["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"]}},
    "consent_mode": {"denies": {"third_party_sharing": ["ad_user_data", "ad_personalization"],
                                "analytics": ["analytics_storage"]}},
}
_SIGNAL_FIELDS = ("tcf", "gpp", "consent_mode")


def _purpose_rule(policy: dict, purpose: str) -> dict:
    """The policy's ``[purpose_rules.<purpose>]`` table (README "Policy format")."""
    table = policy.get("purpose_rules")
    if isinstance(table, dict):
        return table.get(purpose) or {}
    return {}


def allowed_bases(policy: dict, purpose: str) -> list[str]:
    """The legal bases the policy allows for ``purpose`` (default: consent only)."""
    return list(_purpose_rule(policy, purpose).get("bases", ["consent"]))


def objection_classes(policy: dict, purpose: str) -> list[str]:
    """The objection classes ``purpose`` belongs to (default: none)."""
    return list(_purpose_rule(policy, purpose).get("objections", []))


# decoded once per distinct string: many subjects share a CMP's strings, and verify
# asks about every event of a subject
_tc_cached = lru_cache(maxsize=4096)(decode_tc)
_gpp_cached = lru_cache(maxsize=4096)(decode_gpp)


def _tc(s: Any) -> dict[str, Any]:
    if not isinstance(s, str):  # not hashable either: the cache must not see it
        raise SignalUnreadable("tcf: not a string")
    return _tc_cached(s)


def _gpp(s: Any) -> list[tuple[int, str, Any]]:
    if not isinstance(s, str):
        raise SignalUnreadable("gpp: not a string")
    return _gpp_cached(s)


def _findings(record: dict, mapping: dict) -> tuple[list[tuple[str, str, bool]], bool]:
    """``[(kind, target, grants)]`` of every signal in the record, and whether one sets gpc."""
    out: list[tuple[str, str, bool]] = []
    gpc = False
    tcf, gpp, cm = mapping.get("tcf", {}), mapping.get("gpp", {}), mapping.get("consent_mode", {})
    strings = []
    if record.get("tcf") is not None:
        strings.append(_tc(record["tcf"]))
    if record.get("gpp") is not None:
        for sid, kind, data in _gpp(record["gpp"]):
            if kind == "tcf":
                strings.append(data)
            elif kind in ("us", "usp"):
                for purpose, names in gpp.get("opt_outs", {}).items():
                    stated = [data["opt_outs"][n] for n in names if n in data["opt_outs"]]
                    if 1 in stated:
                        out.append(("purpose", purpose, False))
                    elif 2 in stated:
                        out.append(("purpose", purpose, True))
                if data["gpc"] is True and gpp.get("gpc", False):
                    gpc = True
            elif sid in RAW_US_SECTIONS:
                out.extend(("purpose", purpose, False) for purpose in gpp.get("opt_outs", {}))
    for tc in strings:
        for purpose, ids in tcf.get("purposes", {}).items():
            out.append(("purpose", purpose, all(i in tc["purposes"] for i in ids)))
        for category, ids in tcf.get("special_features", {}).items():
            out.append(("category", category, all(i in tc["special_features"] for i in ids)))
        for engine, gate in tcf.get("engines", {}).items():
            vid = gate["vendor_id"]
            vendor = vid in tc["vendors"] and (tc["disclosed"] is None or vid in tc["disclosed"])
            needed = gate.get("purposes", [])
            restricted = any(p == rp and kind in (0, 2) and vid in vendors
                             for p in needed for rp, kind, vendors in tc["restrictions"])
            out.append(("engine", engine, vendor and all(i in tc["purposes"] for i in needed) and not restricted))
    if record.get("consent_mode") is not None:
        stated_cm = read_consent_mode(record["consent_mode"])
        for purpose, names in cm.get("denies", {}).items():
            said = [stated_cm[n] for n in names if n in stated_cm]
            if said:
                out.append(("purpose", purpose, all(said)))
    if record.get("sec_gpc") is True and mapping.get("sec_gpc", False):
        gpc = True
    return out, gpc


def has_signals(record: dict) -> bool:
    return any(record.get(f) is not None for f in _SIGNAL_FIELDS) or record.get("sec_gpc") is True


def effective(record: dict, policy: dict) -> dict[str, Any]:
    """The record after its signals: ``{"purposes": {name: entry}, "categories": {name: bool},
    "gpc": bool, "closed_engines": set}``; ``purposes`` holds only purposes that count as
    granted (status ``granted``), each entry as in the record (a signal-only grant:
    ``granted_at`` = ``updated_at``, no expiry). Raises ``SignalUnreadable``."""
    purposes = {p: e for p, e in (record.get("purposes") or {}).items()
                if isinstance(e, dict) and e.get("status") == "granted"}
    named_purposes = set(record.get("purposes") or {})
    categories = {c: v is True for c, v in (record.get("categories") or {}).items()}
    if not has_signals(record):
        return {"purposes": purposes, "categories": categories, "gpc": record.get("gpc") is True,
                "closed_engines": set()}
    mapping = policy["signals"] if isinstance(policy.get("signals"), dict) else DEFAULT_SIGNALS
    findings, gpc = _findings(record, mapping)
    said: dict[tuple[str, str], list[bool]] = {}
    for kind, target, grants in findings:
        said.setdefault((kind, target), []).append(grants)
    for (kind, target), verdicts in said.items():
        if kind == "purpose":
            if not all(verdicts):
                purposes.pop(target, None)
            elif target not in named_purposes:
                purposes[target] = {"status": "granted", "granted_at": record["updated_at"], "expires_at": None}
        elif kind == "category":
            categories[target] = categories.get(target, True) and all(verdicts)
    closed = {target for (kind, target), verdicts in said.items() if kind == "engine" and not all(verdicts)}
    return {"purposes": purposes, "categories": categories, "gpc": record.get("gpc") is True or gpc,
            "closed_engines": closed}


def signals_problem(record: dict) -> str | None:
    """Why the record's signals make it malformed (None: they decode), for ``pfilter verify``."""
    try:
        if record.get("tcf") is not None:
            _tc(record["tcf"])
        if record.get("gpp") is not None:
            _gpp(record["gpp"])
        if record.get("consent_mode") is not None:
            read_consent_mode(record["consent_mode"])
    except SignalUnreadable as exc:
        return str(exc)
    return None
