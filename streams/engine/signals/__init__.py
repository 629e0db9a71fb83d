"""Consent signals: IAB TCF v2.2/v2.3, IAB GPP, Google Consent Mode v2 (issue 11).

Pure engine-layer code: no I/O, no Kafka, no logging. Everything raised on
purpose is a ``SignalError`` (root ``streams.errors.PFilterError``); a consent
parser turns any of them into "malformed consent record" (DLQ, subject fails
closed, CONTRACT §3). Error messages never contain the signal string or a
decoded value (G6).

Public API::

    from streams.engine import signals as sig

    # decoders (strict: what the hot path uses)
    tc  = sig.decode_tcf("CQ...")          # -> TCString; TCFDecodeError, TCFVersionError,
                                           #    TCFInvalidError, TCFMissingDisclosedVendorsError
    gpp = sig.decode_gpp("DBABLA~CAAA...")  # -> GPPString; GPPDecodeError, GPPVersionError
    cm  = sig.parse_consent_mode({"ad_storage": "granted", ...})  # -> ConsentMode; ConsentModeError

    # decode once per distinct string (bounded LRU, one per worker process)
    cache = sig.SignalCache()
    tc, gpp = cache.tcf(s), cache.gpp(s)

    # the policy's [signals] table -> mapping (SignalsMappingError on a bad table)
    mapping = sig.SignalsMapping.from_dict(policy_toml.get("signals", {}))  # or DEFAULT_MAPPING
    mapping.check_names(policy_purposes, policy_categories, policy_engines)
    mapping.describe()                     # lines for `pfilter policy check`

    # what the signals allow, then the record's explicit fields narrowed by it
    narrowed = sig.normalize(sig.Signals(tcf=tc, gpp=gpp, consent_mode=cm, sec_gpc=None), mapping)
    narrowed.purposes, narrowed.categories  # "granted"/"denied" | True/False; absent = unmentioned
    narrowed.engines, narrowed.vendors, narrowed.gpc  # engine gates, GVL vendor grants, gpc set
    eff = sig.combine(explicit_purposes, explicit_categories, explicit_gpc, narrowed)
    eff.purposes["personalization"]        # True = granted (after narrowing)
    eff.engine_allowed("partner_ads")      # False: that engine's purposes count as denied
    sig.explain(explicit_purposes, explicit_categories, explicit_gpc, narrowed)  # lines for
                                           #    `pfilter consent explain`

``explicit_purposes`` maps each purpose the record names to whether its status
is ``granted``; ``explicit_categories`` is the record's ``categories``. The
mapping's TOML shape and the narrowing rules are in ``normalize``'s docstring;
the validity rules of TC strings (DisclosedVendors mandatory in TCF 2.3 and
how a 2.3 string is recognised) in ``tcf``'s; the GPP sections decoded and
those kept raw in ``gpp``'s.
"""

from streams.engine.signals._bits import IdSet
from streams.engine.signals.cache import DEFAULT_MAXSIZE, SignalCache
from streams.engine.signals.consent_mode import ConsentMode, parse_consent_mode
from streams.engine.signals.errors import (
    ConsentModeError,
    GPPDecodeError,
    GPPError,
    GPPVersionError,
    SignalError,
    SignalsMappingError,
    TCFDecodeError,
    TCFError,
    TCFInvalidError,
    TCFMissingDisclosedVendorsError,
    TCFVersionError,
)
from streams.engine.signals.gpp import GPPString, RawSection, USPrivacy, USSection, decode_gpp
from streams.engine.signals.normalize import (
    DEFAULT_MAPPING,
    Effective,
    EngineGate,
    Finding,
    Narrowed,
    Signals,
    SignalsMapping,
    combine,
    explain,
    normalize,
)
from streams.engine.signals.tcf import PublisherRestriction, PublisherTC, TCString, decode_tcf

__all__ = [
    "DEFAULT_MAPPING",
    "DEFAULT_MAXSIZE",
    "ConsentMode",
    "ConsentModeError",
    "Effective",
    "EngineGate",
    "Finding",
    "GPPDecodeError",
    "GPPError",
    "GPPString",
    "GPPVersionError",
    "IdSet",
    "Narrowed",
    "PublisherRestriction",
    "PublisherTC",
    "RawSection",
    "SignalCache",
    "SignalError",
    "Signals",
    "SignalsMapping",
    "SignalsMappingError",
    "TCFDecodeError",
    "TCFError",
    "TCFInvalidError",
    "TCFMissingDisclosedVendorsError",
    "TCFVersionError",
    "TCString",
    "USPrivacy",
    "USSection",
    "combine",
    "decode_gpp",
    "decode_tcf",
    "explain",
    "normalize",
    "parse_consent_mode",
]
