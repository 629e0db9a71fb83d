"""Test-only encoders: a bit writer and TC / GPP string encoders written from the
specs (not from the decoders), so round trips check the decoders independently.

Specs: InteractiveAdvertisingBureau/GDPR-Transparency-and-Consent-Framework
``TCFv2/IAB Tech Lab - Consent string and vendor list formats v2.md``;
InteractiveAdvertisingBureau/Global-Privacy-Platform ``Core/Consent String
Specification.md`` and ``Sections/US-National``, ``Sections/US-States/*``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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
