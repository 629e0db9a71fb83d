"""The oracle's own decoders of consent signals: TCF TC strings, GPP strings, Consent Mode.

``streams.engine.reference`` (the slow, obviously-correct statement of the rule)
uses these instead of ``streams.engine.signals`` so that a decoding mistake in the
engine cannot hide in the check of it (issue 11 item 5). They share no code with
the engine's decoders and are written for clarity, not speed: a segment becomes a
``'0'``/``'1'`` string one character at a time and fields are read off it in order.
The cross-check library ``iab-tcf-bitarray`` is a test-only dependency, so it is
not used here (the unit tests compare against it).

What they return is plain data (ints, frozensets, dicts), only what the
``[signals]`` mapping can look at. Anything unusable raises
:class:`SignalUnreadable`; its message names the rule, never the string (G6).

Specs: IAB TCF ``Consent string and vendor list formats v2`` (2.3), IAB GPP
``Core/Consent String Specification`` and ``Sections/US-National``,
``Sections/US-States/*``. Validity rules the filter states on top of the specs
(CONTRACT §3: a signal that does not decode makes the record malformed):

- TCF: version 2 only; ``IsServiceSpecific`` must be 1; ``TcfPolicyVersion`` < 4
  in a string created on or after 2023-10-01 is invalid; DisclosedVendors is
  mandatory in 2.3, read as: policy version >= 5 or created on or after
  2026-03-01; a vendor range outside 1..MaxVendorId, a repeated or unknown
  segment type, a language/country letter beyond Z are corrupt;
- GPP: header type 3 version 1; one section per header id; tcfeuv2 by the TCF
  rules; uspv1 is ``1`` plus three of ``Y``/``N``/``-``; usnat versions 1 and 2
  (a version-2 core shorter than the v2 layout is the legacy v1 layout), the
  other US sections version 1; a 2-bit field of value 3 is corrupt; only sections
  with a GPC subsection may have one subsection, of type 1; sections 5 and 24+
  are kept undecoded (a non-empty body);
- any string over 65,536 characters is refused.
"""

from __future__ import annotations

from typing import Any

from streams.errors import PFilterError

MAX_CHARS = 65536
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE_OF = {c: i for i, c in enumerate(_ALPHABET)}

_DAY_MS = 24 * 60 * 60 * 1000
#: 2023-10-01T00:00Z: from here on a TC string needs TcfPolicyVersion >= 4
POLICY_4_FROM_MS = 19631 * _DAY_MS
#: 2026-03-01T00:00Z: from here on a TC string needs its DisclosedVendors segment
DISCLOSED_FROM_MS = 20513 * _DAY_MS


class SignalUnreadable(PFilterError):
    """A consent signal the oracle cannot use: the consent record holding it is malformed."""


def _bits(segment: str) -> str:
    """Six bits per base64url character, most significant first; trailing padding bits stay."""
    if not segment:
        raise SignalUnreadable("empty segment")
    out = []
    for c in segment:
        v = _VALUE_OF.get(c)
        if v is None:
            raise SignalUnreadable("segment is not URL-safe base64")
        out.append(format(v, "06b"))
    return "".join(out)


class _Reader:
    def __init__(self, bits: str) -> None:
        self.bits = bits
        self.pos = 0

    def int(self, width: int) -> int:
        if self.pos + width > len(self.bits):
            raise SignalUnreadable("truncated")
        value = int(self.bits[self.pos:self.pos + width], 2) if width else 0
        self.pos += width
        return value

    def flag(self) -> bool:
        return self.int(1) == 1

    def letter(self) -> str:
        v = self.int(6)
        if v > 25:
            raise SignalUnreadable("letter beyond Z")
        return chr(ord("A") + v)

    def id_bits(self, n: int) -> frozenset[int]:
        """n bits, the first for id 1."""
        return frozenset(i + 1 for i in range(n) if self.flag())

    def id_ranges(self, max_id: int | None) -> frozenset[int]:
        """NumEntries int(12); each IsARange, StartOrOnlyId int(16) [, EndId int(16)]."""
        ids: set[int] = set()
        for _ in range(self.int(12)):
            is_range = self.flag()
            start = self.int(16)
            end = self.int(16) if is_range else start
            if start < 1 or end < start or (max_id is not None and end > max_id):
                raise SignalUnreadable("vendor range out of bounds")
            ids.update(range(start, end + 1))
        return frozenset(ids)

    def vendors(self) -> frozenset[int]:
        """MaxVendorId int(16), IsRangeEncoding, then a bitfield or range entries."""
        max_id = self.int(16)
        if self.flag():
            return self.id_ranges(max_id)
        return self.id_bits(max_id)

    def fibonacci(self) -> int:
        """A Fibonacci code word: bit i weighs F(i+2) (1, 2, 3, 5, ...); ``11`` ends it."""
        weights = [1, 2]
        value, previous, length = 0, False, 0
        while True:
            bit = self.flag()
            if bit and previous:
                return value
            if bit:
                while len(weights) <= length:
                    weights.append(weights[-1] + weights[-2])
                value += weights[length]
            length += 1
            if length > 32:  # ids and offsets of GPP are small: a longer word is corruption
                raise SignalUnreadable("Fibonacci integer too long")
            previous = bit


# --------------------------------------------------------------------------- TCF
def decode_tc(s: Any) -> dict[str, Any]:
    """A TC string's purpose consents, special feature opt-ins, vendor consents, publisher
    restrictions and disclosed vendors (None without that segment)."""
    if not isinstance(s, str) or len(s) > MAX_CHARS:
        raise SignalUnreadable("TC string: not a string of at most 65536 characters")
    segments = s.split(".")
    r = _Reader(_bits(segments[0]))
    if r.int(6) != 2:
        raise SignalUnreadable("TC string: not version 2")
    created_ms = r.int(36) * 100
    r.int(36)                        # LastUpdated
    r.int(12), r.int(12), r.int(6)   # CmpId, CmpVersion, ConsentScreen
    r.letter(), r.letter()           # ConsentLanguage
    r.int(12)                        # VendorListVersion
    policy_version = r.int(6)
    service_specific = r.flag()
    r.flag()                         # UseNonStandardTexts
    special_features = r.id_bits(12)
    purposes = r.id_bits(24)
    r.id_bits(24)                    # PurposesLITransparency
    r.flag()                         # PurposeOneTreatment
    r.letter(), r.letter()           # PublisherCC
    vendor_consents = r.vendors()
    r.vendors()                      # vendor legitimate interests
    restrictions = []
    for _ in range(r.int(12)):
        purpose, kind = r.int(6), r.int(2)
        restrictions.append((purpose, kind, r.id_ranges(None)))
    disclosed = None
    seen: set[int] = set()
    for segment in segments[1:]:
        sr = _Reader(_bits(segment))
        kind = sr.int(3)
        if kind in seen or kind not in (1, 2, 3):
            raise SignalUnreadable("TC string: segment type repeated or unknown")
        seen.add(kind)
        if kind == 1:
            disclosed = sr.vendors()
        elif kind == 2:
            sr.vendors()             # AllowedVendors (TCF 2.0, out of band)
        else:                        # PublisherTC
            sr.id_bits(24), sr.id_bits(24)
            n = sr.int(6)
            sr.id_bits(n), sr.id_bits(n)
    if not service_specific:
        raise SignalUnreadable("TC string: IsServiceSpecific is 0")
    if policy_version < 4 and created_ms >= POLICY_4_FROM_MS:
        raise SignalUnreadable("TC string: policy version below 4 after 2023-09-30")
    if disclosed is None and (policy_version >= 5 or created_ms >= DISCLOSED_FROM_MS):
        raise SignalUnreadable("TC string: DisclosedVendors missing (TCF 2.3)")
    return {"purposes": purposes, "special_features": special_features, "vendors": vendor_consents,
            "restrictions": tuple(restrictions), "disclosed": disclosed}


# --------------------------------------------------------------------------- GPP
_SALE, _SHARING, _TARGETED = "SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"
#: US section id -> (notice fields before the opt-outs, the opt-out fields in order,
#: SensitiveDataProcessing entries, KnownChildSensitiveDataConsents entries (0: a single
#: field), single fields after those before the three MSPA fields, has a GPC subsection).
#: usnat (7) is picked per version in ``_us_layout``.
_US: dict[int, tuple[int, tuple[str, ...], int, int, int, bool]] = {
    8: (3, (_SALE, _SHARING), 9, 2, 1, True),       # usca; PersonalDataConsents after
    9: (3, (_SALE, _TARGETED), 8, 0, 0, False),     # usva
    10: (3, (_SALE, _TARGETED), 7, 0, 0, True),     # usco
    11: (4, (_SALE, _TARGETED), 8, 0, 0, False),    # usut (SensitiveDataProcessingOptOutNotice)
    12: (3, (_SALE, _TARGETED), 8, 3, 0, True),     # usct
    13: (3, (_SALE, _TARGETED), 8, 3, 1, False),    # usfl; AdditionalDataProcessingConsent after
    14: (3, (_SALE, _TARGETED), 8, 3, 1, True),     # usmt
    15: (3, (_SALE, _TARGETED), 11, 3, 1, True),    # usor
    16: (3, (_SALE, _TARGETED), 8, 0, 1, True),     # ustx
    17: (3, (_SALE, _TARGETED), 9, 5, 1, True),     # usde
    18: (4, (_SALE, _TARGETED), 8, 0, 0, True),     # usia (SensitiveDataOptOutNotice)
    19: (3, (_SALE, _TARGETED), 8, 0, 1, True),     # usne
    20: (3, (_SALE, _TARGETED), 8, 3, 1, True),     # usnh
    21: (3, (_SALE, _TARGETED), 10, 5, 1, True),    # usnj
    22: (3, (_SALE, _TARGETED), 8, 0, 1, True),     # ustn
    23: (3, (_SALE, _TARGETED), 8, 0, 1, True),     # usmn
}
_USNAT_V1 = (6, (_SALE, _SHARING, _TARGETED), 12, 2, 1, True)
_USNAT_V2 = (6, (_SALE, _SHARING, _TARGETED), 16, 3, 1, True)
#: Sections kept undecoded whose id makes them US state sections (an opt-out may be in them).
RAW_US_SECTIONS = frozenset({24, 25, 26, 27})


def _fields(layout: tuple[int, tuple[str, ...], int, int, int, bool]) -> int:
    notices, opt_outs, sdp, child, after, _gpc = layout
    return notices + len(opt_outs) + sdp + max(child, 1) + after + 3


def _us_layout(section_id: int, version: int, core_bits: int) -> tuple[int, tuple[str, ...], int, int, int, bool]:
    if section_id == 7:
        if version == 1:
            return _USNAT_V1
        if version == 2:  # the legacy encoders wrote version 2 in the v1 layout
            return _USNAT_V2 if core_bits >= 6 + 2 * _fields(_USNAT_V2) else _USNAT_V1
        raise SignalUnreadable("GPP usnat: version other than 1 and 2")
    if version != 1:
        raise SignalUnreadable("GPP US section: version other than 1")
    return _US[section_id]


def _us_section(section_id: int, text: str) -> dict[str, Any]:
    """{"opt_outs": {field: 0..2}, "gpc": bool | None} of a US section."""
    parts = text.split(".")
    bits = _bits(parts[0])
    r = _Reader(bits)
    layout = _us_layout(section_id, r.int(6), len(bits))
    notices, opt_outs, _sdp, _child, _after, has_gpc = layout
    values = [r.int(2) for _ in range(_fields(layout))]
    if 3 in values:
        raise SignalUnreadable("GPP US section: a field has the undefined value 3")
    gpc = None
    if len(parts) > 2 or (len(parts) == 2 and not has_gpc):
        raise SignalUnreadable("GPP US section: unexpected subsection")
    if len(parts) == 2:
        sub = _Reader(_bits(parts[1]))
        if sub.int(2) != 1:
            raise SignalUnreadable("GPP US section: subsection is not GPC")
        gpc = sub.flag()
    return {"opt_outs": {name: values[notices + k] for k, name in enumerate(opt_outs)}, "gpc": gpc}


def decode_gpp(s: Any) -> list[tuple[int, str, Any]]:
    """A GPP string's sections in order: ``(section id, kind, data)`` with kind ``tcf``
    (data as ``decode_tc``), ``us`` (as ``_us_section``), ``usp`` (``{"opt_outs":
    {"SaleOptOut": 0..2}, "gpc": None}``) or ``raw`` (data None)."""
    if not isinstance(s, str) or len(s) > MAX_CHARS:
        raise SignalUnreadable("GPP string: not a string of at most 65536 characters")
    parts = s.split("~")
    r = _Reader(_bits(parts[0]))
    if r.int(6) != 3 or r.int(6) != 1:
        raise SignalUnreadable("GPP header: not type 3 version 1")
    ids: list[int] = []
    last = 0
    for _ in range(r.int(12)):           # Range(Fibonacci)
        is_group = r.flag()
        first = last + r.fibonacci()
        last = first + r.fibonacci() if is_group else first
        ids.extend(range(first, last + 1))
        if len(ids) > 4096:
            raise SignalUnreadable("GPP header: too many sections")
    if len(ids) != len(parts) - 1:
        raise SignalUnreadable("GPP string: header and sections disagree")
    out: list[tuple[int, str, Any]] = []
    for sid, text in zip(ids, parts[1:]):
        if sid == 2:
            out.append((sid, "tcf", decode_tc(text)))
        elif sid == 6:
            if len(text) != 4 or text[0] != "1" or any(c not in "YN-" for c in text[1:]):
                raise SignalUnreadable("GPP uspv1: not a US Privacy string")
            out.append((sid, "usp", {"opt_outs": {_SALE: {"Y": 1, "N": 2, "-": 0}[text[2]]}, "gpc": None}))
        elif sid == 7 or sid in _US:
            out.append((sid, "us", _us_section(sid, text)))
        else:
            if not text:
                raise SignalUnreadable("GPP string: empty section")
            out.append((sid, "raw", None))
    return out


# --------------------------------------------------------------------------- Consent Mode
CONSENT_MODE_SIGNALS = ("ad_storage", "ad_user_data", "ad_personalization", "analytics_storage",
                        "functionality_storage", "personalization_storage", "security_storage")


def read_consent_mode(obj: Any) -> dict[str, bool]:
    """Signal -> granted, for the signals the record states; an unknown signal or a value
    other than ``granted``/``denied`` is unreadable (a misspelt denial must not vanish)."""
    if not isinstance(obj, dict):
        raise SignalUnreadable("consent_mode: not an object")
    out = {}
    for name, value in obj.items():
        if name not in CONSENT_MODE_SIGNALS or value not in ("granted", "denied"):
            raise SignalUnreadable("consent_mode: unknown signal or value")
        out[name] = value == "granted"
    return out
