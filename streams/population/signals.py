"""Encoders of consent signals: a bit writer, TC strings and GPP strings (header, US sections).

Contract: pure functions of their arguments (``draw_signals`` draws only from the
``random.Random`` it is given); they encode, they never decode. The synthetic population
(``streams.population``) gives some subjects the signals a consent management platform
would record; these make them. They were the test suite's encoders
(``tests/unit/signals/encoders.py`` re-exports them: production code must not import from
tests), written from the specs, not from any decoder, so round trips check the engine's
decoders and the reference's independently. Not on any hot path: the population encodes
each distinct string once.

Specs: InteractiveAdvertisingBureau/GDPR-Transparency-and-Consent-Framework
``TCFv2/IAB Tech Lab - Consent string and vendor list formats v2.md``;
InteractiveAdvertisingBureau/Global-Privacy-Platform ``Core/Consent String
Specification.md`` and ``Sections/US-National``, ``Sections/US-States/*``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[str] = []

    def int(self, v: int, n: int) -> BitWriter:
        assert 0 <= v < (1 << n), (v, n)
        self.bits.append(format(v, f"0{n}b"))
        return self

    def bool(self, b: bool) -> BitWriter:
        return self.int(int(b), 1)

    def bitfield(self, ids: Iterable[int], n: int) -> BitWriter:
        s = ["0"] * n
        for i in ids:
            s[i - 1] = "1"
        self.bits.append("".join(s))
        return self

    def letters(self, s: str) -> BitWriter:
        for c in s:
            self.int(ord(c) - 65, 6)
        return self

    def fib(self, v: int) -> BitWriter:
        assert v >= 1
        fibs = [1, 2]
        while fibs[-1] <= v:
            fibs.append(fibs[-1] + fibs[-2])
        code = ["0"] * len(fibs)
        top = 0
        for i in range(len(fibs) - 1, -1, -1):
            if fibs[i] <= v:
                v -= fibs[i]
                code[i] = "1"
                top = max(top, i)
        self.bits.append("".join(code[: top + 1]) + "1")
        return self

    def text(self) -> str:
        return "".join(self.bits)

    def b64(self) -> str:
        """Pad to whole bytes, then to whole characters, as the IAB encoders do."""
        s = self.text()
        s += "0" * (-len(s) % 8)
        s += "0" * (-len(s) % 6)
        return "".join(B64[int(s[i : i + 6], 2)] for i in range(0, len(s), 6)) or "A"


def groups(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted ids."""
    out: list[tuple[int, int]] = []
    for i in sorted(ids):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def write_ranges(w: BitWriter, ids: Iterable[int]) -> None:
    g = groups(ids)
    w.int(len(g), 12)
    for start, end in g:
        w.bool(start != end).int(start, 16)
        if start != end:
            w.int(end, 16)


def write_vendors(w: BitWriter, ids: Sequence[int], use_range: bool, max_id: int | None = None) -> None:
    top = max(ids, default=0) if max_id is None else max_id
    w.int(top, 16).bool(use_range)
    if use_range:
        write_ranges(w, ids)
    else:
        w.bitfield(ids, top)


@dataclass
class TCModel:
    """Field values of a TC string, named like ``TCString``'s fields."""

    created_ds: int = 16_000_000_000
    last_updated_ds: int = 16_000_000_000
    cmp_id: int = 10
    cmp_version: int = 1
    consent_screen: int = 0
    consent_language: str = "EN"
    vendor_list_version: int = 100
    policy_version: int = 4
    is_service_specific: bool = True
    use_non_standard_texts: bool = False
    special_feature_optins: list[int] = field(default_factory=list)
    purpose_consents: list[int] = field(default_factory=list)
    purpose_legitimate_interests: list[int] = field(default_factory=list)
    purpose_one_treatment: bool = False
    publisher_country_code: str = "DE"
    vendor_consents: list[int] = field(default_factory=list)
    vendor_consents_range: bool = False
    vendor_legitimate_interests: list[int] = field(default_factory=list)
    vendor_li_range: bool = False
    # (purpose_id, restriction_type, vendor ids)
    publisher_restrictions: list[tuple[int, int, list[int]]] = field(default_factory=list)
    disclosed_vendors: list[int] | None = None
    disclosed_range: bool = False
    # (consents, lis, custom consents, custom lis, number of custom purposes)
    publisher_tc: tuple[list[int], list[int], list[int], list[int], int] | None = None
    segment_order: tuple[str, ...] = ("disclosed", "publisher")


def encode_tc(m: TCModel, version: int = 2) -> str:
    w = BitWriter().int(version, 6).int(m.created_ds, 36).int(m.last_updated_ds, 36)
    w.int(m.cmp_id, 12).int(m.cmp_version, 12).int(m.consent_screen, 6).letters(m.consent_language)
    w.int(m.vendor_list_version, 12).int(m.policy_version, 6)
    w.bool(m.is_service_specific).bool(m.use_non_standard_texts)
    w.bitfield(m.special_feature_optins, 12).bitfield(m.purpose_consents, 24)
    w.bitfield(m.purpose_legitimate_interests, 24).bool(m.purpose_one_treatment)
    w.letters(m.publisher_country_code)
    write_vendors(w, m.vendor_consents, m.vendor_consents_range)
    write_vendors(w, m.vendor_legitimate_interests, m.vendor_li_range)
    w.int(len(m.publisher_restrictions), 12)
    for purpose, kind, vendors in m.publisher_restrictions:
        w.int(purpose, 6).int(kind, 2)
        write_ranges(w, vendors)
    segments = [w.b64()]
    for name in m.segment_order:
        if name == "disclosed" and m.disclosed_vendors is not None:
            s = BitWriter().int(1, 3)
            write_vendors(s, m.disclosed_vendors, m.disclosed_range)
            segments.append(s.b64())
        elif name == "publisher" and m.publisher_tc is not None:
            consents, lis, cc, cli, n = m.publisher_tc
            s = BitWriter().int(3, 3).bitfield(consents, 24).bitfield(lis, 24).int(n, 6)
            s.bitfield(cc, n).bitfield(cli, n)
            segments.append(s.b64())
    return ".".join(segments)


# ----------------------------------------------------------------------------- GPP
def gpp_header(ids: Sequence[int]) -> str:
    """Header per the spec: Type 3, Version 1, Range(Fibonacci) of the section ids."""
    w = BitWriter().int(3, 6).int(1, 6)
    g = groups(ids)
    w.int(len(g), 12)
    last = 0
    for start, end in g:
        w.bool(start != end).fib(start - last)
        if start != end:
            w.fib(end - start)
        last = end
    return w.b64()


# The core fields after Version of each US section, transcribed from the section
# specs (Global-Privacy-Platform Sections/...): (name, count); count 0 = Int(2),
# n = N-Bitfield(2, n); and whether the section has a GPC subsection.
_M = [("MspaCoveredTransaction", 0), ("MspaOptOutOptionMode", 0), ("MspaServiceProviderMode", 0)]
_N = lambda *names: [(n, 0) for n in names]  # noqa: E731
US_SPEC: dict[int, tuple[list[tuple[str, int]], bool]] = {
    8: (_N("SaleOptOutNotice", "SharingOptOutNotice", "SensitiveDataLimitUseNotice", "SaleOptOut", "SharingOptOut")
        + [("SensitiveDataProcessing", 9), ("KnownChildSensitiveDataConsents", 2), ("PersonalDataConsents", 0)] + _M, True),
    9: (_N("SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut")
        + [("SensitiveDataProcessing", 8), ("KnownChildSensitiveDataConsents", 0)] + _M, False),
    10: (_N("SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut")
         + [("SensitiveDataProcessing", 7), ("KnownChildSensitiveDataConsents", 0)] + _M, True),
    11: (_N("SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SensitiveDataProcessingOptOutNotice",
            "SaleOptOut", "TargetedAdvertisingOptOut")
         + [("SensitiveDataProcessing", 8), ("KnownChildSensitiveDataConsents", 0)] + _M, False),
    12: (_N("SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut")
         + [("SensitiveDataProcessing", 8), ("KnownChildSensitiveDataConsents", 3)] + _M, True),
}
_P = ("ProcessingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut")
for _sid, _notice, _sdp, _child, _adpc, _gpc in [
    (13, "ProcessingNotice", 8, 3, True, False),
    (14, "SharingNotice", 8, 3, True, True),
    (15, "ProcessingNotice", 11, 3, True, True),
    (16, "ProcessingNotice", 8, 0, True, True),
    (17, "ProcessingNotice", 9, 5, True, True),
    (19, "ProcessingNotice", 8, 0, True, True),
    (20, "ProcessingNotice", 8, 3, True, True),
    (21, "ProcessingNotice", 10, 5, True, True),
    (22, "ProcessingNotice", 8, 0, True, True),
    (23, "ProcessingNotice", 8, 0, True, True),
]:
    US_SPEC[_sid] = (
        _N(_notice, *_P[1:]) + [("SensitiveDataProcessing", _sdp), ("KnownChildSensitiveDataConsents", _child)]
        + ([("AdditionalDataProcessingConsent", 0)] if _adpc else []) + _M,
        _gpc,
    )
US_SPEC[18] = (
    _N("ProcessingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SensitiveDataOptOutNotice", "SaleOptOut",
       "TargetedAdvertisingOptOut") + [("SensitiveDataProcessing", 8), ("KnownChildSensitiveDataConsents", 0)] + _M,
    True,
)


def usnat_spec(version: int) -> list[tuple[str, int]]:
    """US National (Sections/US-National): v1 12 sensitive categories and 2 child consents, v2 16 and 3."""
    sdp, child = (12, 2) if version == 1 else (16, 3)
    return (
        _N("SharingNotice", "SaleOptOutNotice", "SharingOptOutNotice", "TargetedAdvertisingOptOutNotice",
           "SensitiveDataProcessingOptOutNotice", "SensitiveDataLimitUseNotice", "SaleOptOut", "SharingOptOut",
           "TargetedAdvertisingOptOut")
        + [("SensitiveDataProcessing", sdp), ("KnownChildSensitiveDataConsents", child), ("PersonalDataConsents", 0)] + _M
    )  # fmt: skip


def encode_us(section_id: int, version: int, values: dict[str, object], gpc: bool | None) -> str:
    spec = usnat_spec(version) if section_id == 7 else US_SPEC[section_id][0]
    w = BitWriter().int(version, 6)
    for name, count in spec:
        v = values[name]
        if count:
            assert isinstance(v, tuple) and len(v) == count
            for x in v:
                w.int(x, 2)
        else:
            w.int(v, 2)  # type: ignore[arg-type]
    out = w.b64()
    if gpc is not None:
        out += "." + BitWriter().int(1, 2).bool(gpc).b64()
    return out


# ----------------------------------------------------------------------------- population
#: The default policy's ``[signals.tcf.engines.partner_ads] vendor_id`` (CONTRACT §8; the
#: policy's example partner): the vendor whose consent opens the partner_ads gate.
PARTNER_VENDOR_ID = 755
#: 2025-06-01T00:00Z in deciseconds: every population TC string's Created/LastUpdated.
#: Fixed (not now-relative) so a pattern's string is one constant; with TcfPolicyVersion 5
#: (TCF 2.3) and a DisclosedVendors segment it is valid whatever the clock says.
_TC_CREATED_DS = 17_487_360_000
#: Vendors every population CMP discloses besides the partner (a few big GVL ids).
_DISCLOSED = (1, 2, 10, 28, 32, 50, 91, 128)


def tc_string(purposes: Iterable[int], special_features: Iterable[int], vendors: Iterable[int],
              *, use_range: bool = False) -> str:
    """A valid TCF 2.3 TC string (policy version 5, DisclosedVendors present) consenting
    to these TCF purposes, special features and vendors; ``use_range`` range-encodes them."""
    vendor_ids = sorted(set(vendors))
    m = TCModel(
        created_ds=_TC_CREATED_DS, last_updated_ds=_TC_CREATED_DS, cmp_id=31, cmp_version=5,
        vendor_list_version=120, policy_version=5, consent_language="EN",
        special_feature_optins=sorted(set(special_features)), purpose_consents=sorted(set(purposes)),
        vendor_consents=vendor_ids, vendor_consents_range=use_range,
        disclosed_vendors=sorted(set(vendor_ids) | set(_DISCLOSED) | {PARTNER_VENDOR_ID}),
        disclosed_range=use_range,
    )
    return encode_tc(m)


def gpp_string(sections: Sequence[tuple[int, str]]) -> str:
    """A GPP string of these ``(section id, encoded section)`` in ascending id order."""
    return gpp_header([sid for sid, _ in sections]) + "".join("~" + body for _, body in sections)


def us_section(section_id: int, opt_outs: dict[str, int], gpc: bool | None, version: int = 1) -> str:
    """A US section (usnat 7, usca 8, states 9-23) with notices given, these opt-out values
    (1 opted out, 2 did not; fields the section lacks are skipped), no sensitive-data
    consents, an MSPA-covered transaction, and the GPC subsection when ``gpc`` is not None."""
    spec = usnat_spec(version) if section_id == 7 else US_SPEC[section_id][0]
    values: dict[str, object] = {}
    for name, count in spec:
        if count:
            values[name] = (0,) * count
        elif name in opt_outs:
            values[name] = opt_outs[name]
        elif name.endswith("Notice"):
            values[name] = 1
        elif name == "MspaCoveredTransaction":
            values[name] = 1
        else:
            values[name] = 0
    return encode_us(section_id, version, values, gpc)


class SegmentSignals(NamedTuple):
    """What the consent signals of one privacy segment look like (shares of its subjects)."""

    cmp: float  #: whose CMP recorded a signal where their jurisdiction has one (TCF in EU/UK, GPP in the US)
    consent_mode: float  #: with Google Consent Mode flags
    narrow: float  #: whose signals are narrower than their explicit record
    li_email: float  #: of those without e-mail consent, mailed on legitimate interest as existing customers
    direct_marketing: float  #: objecting to direct marketing
    profiling: float  #: objecting to profiling


#: Per privacy segment. Loyalists rarely object, fundamentalists often do.
SEGMENT_SIGNALS: dict[str, SegmentSignals] = {
    "brand_loyalist": SegmentSignals(0.40, 0.30, 0.08, 0.50, 0.01, 0.005),
    "convenience_seeker": SegmentSignals(0.50, 0.30, 0.15, 0.35, 0.03, 0.02),
    "control_addict": SegmentSignals(0.60, 0.20, 0.25, 0.10, 0.10, 0.08),
    "flexible": SegmentSignals(0.50, 0.25, 0.20, 0.25, 0.05, 0.04),
    "privacy_fundamentalist": SegmentSignals(0.60, 0.15, 0.10, 0.03, 0.25, 0.12),
}
_OPT_OUTS = ("SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut")


def draw_signals(r: Any, segment: str, granted: set[str], categories: dict[str, bool], gpc: bool
                 ) -> tuple[tuple[str, ...], dict[str, Any] | None, dict[str, str] | None]:
    """(objections, signals per jurisdiction group ``{"EU": {...}, "US": {...}, "US-CA": {...}}``
    or None, Consent Mode map or None) of one consent pattern; ``r`` a ``random.Random``.

    Signals mostly agree with the explicit record (a CMP and the shop's form record the
    same choices); in the segment's narrowing share one target is narrower, so the
    signal decides the drop (TCF without purpose 5 or 6, a closed vendor gate, a US
    opt-out of sale/sharing/targeted ads, a Consent Mode denial)."""
    shares = SEGMENT_SIGNALS[segment]
    cmp_p, cm_p, narrow_p, dm_p, prof_p = (
        shares.cmp, shares.consent_mode, shares.narrow, shares.direct_marketing, shares.profiling)
    objections = tuple(c for c, p in (("direct_marketing", dm_p), ("profiling", prof_p)) if r.random() < p)
    narrow = r.choice(("personalization", "partner", "location", "consent_mode")) if r.random() < narrow_p else None
    signals = None
    if r.random() < cmp_p:
        tcf_p = {1} if r.random() < 0.9 else set()
        tcf_p |= {p for p in (2, 7, 8, 9, 10) if r.random() < 0.6}
        if "personalization" in granted:
            tcf_p |= {5, 6} - ({r.choice((5, 6))} if narrow == "personalization" else set())
        elif r.random() < 0.2:
            tcf_p.add(5)
        vendors = set(r.sample(_DISCLOSED, r.randint(0, len(_DISCLOSED))))
        if "third_party_sharing" in granted:
            tcf_p |= {3, 4}
            if narrow == "partner":
                tcf_p.discard(r.choice((1, 4)))
            else:
                tcf_p.add(1)
            if narrow != "partner" or r.random() < 0.5:
                vendors.add(PARTNER_VENDOR_ID)
        elif r.random() < 0.3:
            vendors.add(PARTNER_VENDOR_ID)
        features = {1} if categories.get("location") and narrow != "location" else set()
        if r.random() < 0.2:
            vendors |= set(range(100, 100 + r.randint(20, 200)))  # many vendors: range encoding pays
        tc = tc_string(tcf_p, features, vendors, use_range=len(vendors) > 30)
        # US opt-outs: none when sharing is granted (one when narrowed), most when it is not
        if "third_party_sharing" in granted:
            outs = {n: 2 for n in _OPT_OUTS}
            if narrow == "partner":
                outs[r.choice(_OPT_OUTS)] = 1
        else:
            outs = {n: 1 if r.random() < 0.7 else 2 for n in _OPT_OUTS}
        sub = r.random()
        # the GPC subsection, when the CMP writes one: set for most who also told the shop,
        # and for a few who did not (the browser sends it; the shop's form never asked)
        gpc_bit = None if sub < 0.4 else (r.random() < (0.6 if gpc else 0.3 if segment == "privacy_fundamentalist"
                                                          else 0.12))
        usnat = us_section(7, outs, gpc_bit, version=2 if r.random() < 0.8 else 1)
        usca = us_section(8, outs, gpc_bit)
        signals = {
            # a tenth of EU/UK CMPs send GPP with the TCF string as its tcfeuv2 section
            "EU": {"gpp": gpp_string([(2, tc)])} if r.random() < 0.1 else {"tcf": tc},
            "US": {"gpp": gpp_string([(7, usnat)])},
            "US-CA": {"gpp": gpp_string([(7, usnat), (8, usca)] if r.random() < 0.3 else [(8, usca)])},
        }
    cm = None
    if r.random() < cm_p:
        def state(ok: bool) -> str:
            return "granted" if ok else "denied"
        share = "third_party_sharing" in granted
        cm = {"ad_storage": state("personalization" in granted),
              "ad_user_data": state(share and narrow != "consent_mode"),
              "ad_personalization": state(share),
              "analytics_storage": state("analytics" in granted)}
    return objections, signals, cm
