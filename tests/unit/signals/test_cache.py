"""The decode cache: one decode per distinct string, bounded, failures cached."""

from __future__ import annotations

import pytest

from streams.engine.signals import SignalCache, TCFDecodeError, TCFVersionError, decode_gpp, decode_tcf
from streams.engine.signals import cache as cache_mod

# [GPP-ES-TCF] IABTechLab/iabgpp-es modules/cmpapi/test/encoder/section/TcfEuV2.test.ts
TC = "CPTtLAAPTtLAAAKAAAENAAFgALwAAEAAAAAAAOgAgABgAAAA.IAoAAgABgAAEAQAAEAAA.d4AACEAAAAAA"
# [GPP-ES-USNAT] IABTechLab/iabgpp-es modules/cmpapi/test/encoder/section/UsNat.test.ts
GPP = "DBABLA~CVVVkkkkkpFY.YA"


def test_decodes_each_string_once(monkeypatch):
    calls = []
    real = cache_mod.decode_tcf
    monkeypatch.setattr(cache_mod, "decode_tcf", lambda s: calls.append(s) or real(s))
    c = SignalCache()
    first = c.tcf(TC)
    assert c.tcf(TC) is first and first == decode_tcf(TC)
    assert calls == [TC]
    assert c.stats()["tcf"].hits == 1 and c.stats()["tcf"].misses == 1
    assert c.gpp(GPP) == decode_gpp(GPP) and c.gpp(GPP) is c.gpp(GPP)


def test_failures_cached_and_reraised_fresh(monkeypatch):
    calls = []
    real = cache_mod.decode_tcf
    monkeypatch.setattr(cache_mod, "decode_tcf", lambda s: calls.append(s) or real(s))
    c = SignalCache()
    errors = []
    for _ in range(3):
        with pytest.raises(TCFVersionError) as e:
            c.tcf("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA")
        errors.append(e.value)
    assert len(calls) == 1
    assert len({id(e) for e in errors}) == 3  # a fresh exception each time (no growing traceback)
    with pytest.raises(TCFDecodeError):
        c.tcf(None)  # type: ignore[arg-type]


def test_bounded():
    c = SignalCache(maxsize=2)
    from tests.unit.signals.encoders import TCModel, encode_tc

    strings = [encode_tc(TCModel(cmp_id=i)) for i in range(5)]
    for s in strings:
        c.tcf(s)
    assert c.stats()["tcf"].size == 2
    c.tcf(strings[-1])
    assert c.stats()["tcf"].hits == 1  # the most recent stayed
    c.tcf(strings[0])
    assert c.stats()["tcf"].misses == 6  # the oldest was evicted
    with pytest.raises(ValueError):
        SignalCache(maxsize=0)
