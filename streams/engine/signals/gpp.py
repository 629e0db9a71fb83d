"""IAB GPP string decoder (pure; no I/O).

Spec: InteractiveAdvertisingBureau/Global-Privacy-Platform, ``Core/Consent
String Specification.md`` and ``Sections/``. A GPP string is
``header~section~section...``. The header (base64url, 6 bits per character)
is Type int(6) = 3, Version int(6) = 1 and the section ids as a
Range(Fibonacci); the sections follow in the same order, one per id.

Decoded sections (``GPPString.sections``, keyed by the section's API prefix):

- ``tcfeuv2`` (id 2): a TC string, decoded by ``tcf.decode_tcf`` with the
  same validity rules;
- ``uspv1`` (id 6): the four-character US Privacy string (``USPrivacy``);
- ``usnat`` (7, versions 1 and 2), ``usca`` (8) and the US state sections 9-23
  (usva, usco, usut, usct, usfl, usmt, usor, ustx, usde, usia, usne, usnh,
  usnj, ustn, usmn): a core subsection of 2-bit fields (``USSection``) and,
  where the state's spec has one, the optional GPC subsection
  (SubsectionType int(2) = 1, Gpc bool). The field lists below follow each
  state's technical specification in ``Sections/US-States/*`` (checked field by
  field, with the N-Bitfield lengths, against the spec text and against
  IABTechLab/iabgpp-es ``modules/cmpapi/src/encoder/segment/Us*CoreSegment.ts``).

usnat v1 has 12 sensitive-data categories and 2 known-child consents; v2
(MSPA US National spec "Version 2.0") has 16 and 3. Older encoders wrote
version-2 strings in the v1 layout (the reference implementation decodes them
by length, see iabgpp-es ``UsNatCoreSegment.decodeSegment``); a version-2
core shorter than the v2 layout is therefore read in the v1 layout.

Kept undecoded as ``RawSection`` (the normalizer decides what that means):
``tcfcav1`` (5, Canada), unknown ids, and usmd, usin, usky, usri (24-27): their
specs in Sections/US-States/{MD,IN,KY,RI} describe a section header (SectionID,
Version, Fibonacci subsection range) before the core fields, while the
reference implementation encodes no such header; with two incompatible
readings and no published example string, decoding them would be a guess.

2-bit values: opt-out fields 0 not applicable, 1 opted out, 2 did not opt out;
consent fields 0 not applicable, 1 no consent, 2 consent; notices 0 n/a,
1 provided, 2 not provided; MspaCoveredTransaction 1 yes, 2 no. The value 3
is defined nowhere and makes the section corrupt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Union

from streams.engine.signals._bits import BitReader, segment_bits
from streams.engine.signals.errors import GPPDecodeError, GPPVersionError
from streams.engine.signals.tcf import TCString, decode_tcf

__all__ = [
    "GPPString",
    "RawSection",
    "USPrivacy",
    "USSection",
    "decode_gpp",
    "SECTION_NAMES",
    "OPT_OUT_FIELDS",
]

#: A GPP string longer than this is refused before any work (a GPP string
#: with every section and a full TC string stays under ~10 KB).
MAX_GPP_STRING_CHARS = 65536

#: Section id -> API prefix (Sections/Section Information.md).
SECTION_NAMES: Mapping[int, str] = MappingProxyType(
    {
        2: "tcfeuv2", 5: "tcfcav1", 6: "uspv1", 7: "usnat", 8: "usca", 9: "usva", 10: "usco",
        11: "usut", 12: "usct", 13: "usfl", 14: "usmt", 15: "usor", 16: "ustx", 17: "usde",
        18: "usia", 19: "usne", 20: "usnh", 21: "usnj", 22: "ustn", 23: "usmn", 24: "usmd",
        25: "usin", 26: "usky", 27: "usri",
    }
)  # fmt: skip

# One core field: (name, count); count 0 = a single int(2), n = an N-Bitfield(2, n).
_Field = tuple[str, int]
_MSPA: tuple[_Field, ...] = (
    ("MspaCoveredTransaction", 0),
    ("MspaOptOutOptionMode", 0),
    ("MspaServiceProviderMode", 0),
)


def _state(notice: str, extra_notice: str | None, sdp: int, child: int, adpc: bool) -> tuple[_Field, ...]:
    """The field list shared by the state sections 9-23 (they differ in the names and lengths noted)."""
    fields: list[_Field] = [(notice, 0), ("SaleOptOutNotice", 0), ("TargetedAdvertisingOptOutNotice", 0)]
    if extra_notice:
        fields.append((extra_notice, 0))
    fields += [("SaleOptOut", 0), ("TargetedAdvertisingOptOut", 0)]
    fields += [("SensitiveDataProcessing", sdp), ("KnownChildSensitiveDataConsents", child)]
    if adpc:
        fields.append(("AdditionalDataProcessingConsent", 0))
    return tuple(fields) + _MSPA


def _usnat(sdp: int, child: int) -> tuple[_Field, ...]:
    return (
        ("SharingNotice", 0), ("SaleOptOutNotice", 0), ("SharingOptOutNotice", 0),
        ("TargetedAdvertisingOptOutNotice", 0), ("SensitiveDataProcessingOptOutNotice", 0),
        ("SensitiveDataLimitUseNotice", 0), ("SaleOptOut", 0), ("SharingOptOut", 0),
        ("TargetedAdvertisingOptOut", 0), ("SensitiveDataProcessing", sdp),
        ("KnownChildSensitiveDataConsents", child), ("PersonalDataConsents", 0),
    ) + _MSPA  # fmt: skip


_USNAT_V1 = _usnat(12, 2)
_USNAT_V2 = _usnat(16, 3)

#: Section id -> (core fields after Version, has a GPC subsection).
_US_LAYOUTS: Mapping[int, tuple[tuple[_Field, ...], bool]] = MappingProxyType(
    {
        8: (
            (
                ("SaleOptOutNotice", 0), ("SharingOptOutNotice", 0), ("SensitiveDataLimitUseNotice", 0),
                ("SaleOptOut", 0), ("SharingOptOut", 0), ("SensitiveDataProcessing", 9),
                ("KnownChildSensitiveDataConsents", 2), ("PersonalDataConsents", 0),
            ) + _MSPA,
            True,
        ),
        9: (_state("SharingNotice", None, 8, 0, False), False),
        10: (_state("SharingNotice", None, 7, 0, False), True),
        11: (_state("SharingNotice", "SensitiveDataProcessingOptOutNotice", 8, 0, False), False),
        12: (_state("SharingNotice", None, 8, 3, False), True),
        13: (_state("ProcessingNotice", None, 8, 3, True), False),
        14: (_state("SharingNotice", None, 8, 3, True), True),
        15: (_state("ProcessingNotice", None, 11, 3, True), True),
        16: (_state("ProcessingNotice", None, 8, 0, True), True),
        17: (_state("ProcessingNotice", None, 9, 5, True), True),
        18: (_state("ProcessingNotice", "SensitiveDataOptOutNotice", 8, 0, False), True),
        19: (_state("ProcessingNotice", None, 8, 0, True), True),
        20: (_state("ProcessingNotice", None, 8, 3, True), True),
        21: (_state("ProcessingNotice", None, 10, 5, True), True),
        22: (_state("ProcessingNotice", None, 8, 0, True), True),
        23: (_state("ProcessingNotice", None, 8, 0, True), True),
    }
)  # fmt: skip

#: Opt-out fields (value 1 = opted out) a US section may carry.
OPT_OUT_FIELDS = frozenset({"SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"})


@dataclass(frozen=True, slots=True)
class USSection:
    """A decoded US section. ``fields`` maps the spec's UpperCamelCase field
    names to an int (0-2) or, for N-Bitfields, a tuple of them; ``gpc`` is the
    GPC subsection's bit, ``None`` when the subsection is absent."""

    section_id: int
    name: str
    version: int
    fields: Mapping[str, int | tuple[int, ...]]
    gpc: bool | None

    def value(self, field: str) -> int | None:
        """A single-valued field, ``None`` when this section has no such field."""
        v = self.fields.get(field)
        return v if isinstance(v, int) else None


@dataclass(frozen=True, slots=True)
class USPrivacy:
    """uspv1 / CCPA string: version digit then ``Y``/``N``/``-`` for notice,
    opt-out of sale, LSPA covered."""

    version: int
    notice: str
    opt_out_sale: str
    lspa_covered: str


@dataclass(frozen=True, slots=True)
class RawSection:
    """A section this decoder does not decode (see the module docstring)."""

    section_id: int
    name: str
    raw: str


Section = Union[TCString, USPrivacy, USSection, RawSection]


@dataclass(frozen=True, slots=True)
class GPPString:
    """A decoded GPP string: header fields and the sections by API prefix."""

    version: int
    section_ids: tuple[int, ...]
    sections: Mapping[str, Section]


def _us_section(section_id: int, name: str, text: str) -> USSection:
    parts = text.split(".")
    what = f"GPP section {name}"
    bits = segment_bits(parts[0], GPPDecodeError, what)
    r = BitReader(bits, GPPDecodeError, what)
    version = r.int(6)
    if section_id == 7:
        if version == 1:
            layout = _USNAT_V1
        elif version == 2:
            # v2 layout is 70 bits; the legacy v2-in-v1-layout strings are 60 (66 padded)
            layout = _USNAT_V2 if len(bits) >= 70 else _USNAT_V1
        else:
            raise GPPVersionError(f"{what}: version {version}, supported 1 and 2")
        has_gpc = True
    else:
        if version != 1:
            raise GPPVersionError(f"{what}: version {version}, supported 1")
        layout, has_gpc = _US_LAYOUTS[section_id]
    fields: dict[str, int | tuple[int, ...]] = {}
    for field, count in layout:
        v = r.ints(2, count) if count else r.int(2)
        if (v == 3) if count == 0 else (3 in v):  # type: ignore[operator]
            raise GPPDecodeError(f"{what}: {field} has the undefined value 3")
        fields[field] = v
    gpc: bool | None = None
    if len(parts) > 2 or (len(parts) == 2 and not has_gpc):
        raise GPPDecodeError(f"{what}: unexpected subsection")
    if len(parts) == 2:
        sub = BitReader(segment_bits(parts[1], GPPDecodeError, what + " GPC"), GPPDecodeError, what + " GPC")
        if sub.int(2) != 1:
            raise GPPDecodeError(f"{what}: subsection type is not GPC (1)")
        gpc = sub.bool()
    return USSection(section_id, name, version, MappingProxyType(fields), gpc)


def _usp(text: str) -> USPrivacy:
    if len(text) != 4 or text[0] != "1" or any(c not in "YN-" for c in text[1:]):
        raise GPPDecodeError("GPP section uspv1: not a version-1 US Privacy string")
    return USPrivacy(1, text[1], text[2], text[3])


def decode_gpp(s: str) -> GPPString:
    """Decode a GPP string; raise a ``GPPError`` (or, in tcfeuv2, ``TCFError``) subclass."""
    if not isinstance(s, str):
        raise GPPDecodeError("GPP string: not a string")
    if len(s) > MAX_GPP_STRING_CHARS:
        raise GPPDecodeError(f"GPP string: longer than {MAX_GPP_STRING_CHARS} characters")
    parts = s.split("~")
    r = BitReader(segment_bits(parts[0], GPPDecodeError, "GPP header"), GPPDecodeError, "GPP header")
    kind, version = r.int(6), r.int(6)
    if kind != 3:
        raise GPPDecodeError(f"GPP header: type {kind}, expected 3")
    if version != 1:
        raise GPPVersionError(f"GPP header: version {version}, supported 1")
    ids = r.fibonacci_range()
    if len(ids) != len(parts) - 1:
        raise GPPDecodeError(f"GPP string: header names {len(ids)} sections, string has {len(parts) - 1}")
    sections: dict[str, Section] = {}
    for sid, text in zip(ids, parts[1:]):
        name = SECTION_NAMES.get(sid, f"section{sid}")
        if sid == 2:
            sections[name] = decode_tcf(text)
        elif sid == 6:
            sections[name] = _usp(text)
        elif sid == 7 or sid in _US_LAYOUTS:
            sections[name] = _us_section(sid, name, text)
        else:
            if not text or "~" in text:
                raise GPPDecodeError(f"GPP section {name}: empty")
            sections[name] = RawSection(sid, name, text)
    return GPPString(version, ids, MappingProxyType(sections))

