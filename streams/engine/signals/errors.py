"""Named errors of the signal decoders and of the ``[signals]`` mapping.

Every error the decoders raise on purpose derives from ``SignalError`` (and so
from ``streams.errors.PFilterError``): a caller turns any of them into "this
consent record is malformed" (DLQ, subject fails closed, CONTRACT §3).

Messages name the rule or the bit position that failed, never the string
itself nor a decoded value: consent strings are consent record field values,
which must never reach a log (G6).
"""

from __future__ import annotations

from streams.errors import PFilterError


class SignalError(PFilterError):
    """A consent signal (TCF, GPP, Consent Mode) does not decode or is invalid."""


# ------------------------------------------------------------------ TCF
class TCFError(SignalError):
    """A TC string is unusable."""


class TCFDecodeError(TCFError):
    """Not a well-formed TC string: bad characters, truncated, bad segment layout."""


class TCFVersionError(TCFError):
    """A TC string of a version other than 2 (v1 strings are invalid since 2020)."""


class TCFInvalidError(TCFError):
    """Well-formed, but invalid under the TCF policies (e.g. IsServiceSpecific=0)."""


class TCFMissingDisclosedVendorsError(TCFInvalidError):
    """A TCF 2.3 string without the (mandatory in 2.3) DisclosedVendors segment."""


# ------------------------------------------------------------------ GPP
class GPPError(SignalError):
    """A GPP string is unusable."""


class GPPDecodeError(GPPError):
    """Not a well-formed GPP string or section."""


class GPPVersionError(GPPError):
    """A GPP header or section of a type/version this decoder does not know."""


# ------------------------------------------------------------------ Consent Mode
class ConsentModeError(SignalError):
    """A ``consent_mode`` object with an unknown signal or a value other than granted/denied."""


# ------------------------------------------------------------------ mapping
class SignalsMappingError(PFilterError):
    """The policy's ``[signals]`` section is invalid (stops start-up, one line naming it)."""
