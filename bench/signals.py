"""Decode cost of consent signals per string (µs), cold and cached: ``python -m bench.signals``.

No Kafka, one core. Times are CPU µs per call (median of runs). "cold" calls the decoder itself (what a cache miss costs);
"cached" calls ``SignalCache`` with a string already in it (what every other
consent record with the same string costs); "miss" goes through the cache with
a distinct string each call (decode plus cache insert and eviction). The
cache's memory per entry is measured with ``tracemalloc`` over distinct strings.

Strings:
- ``tcf-small``: IABTechLab/iabgpp-es ``modules/cmpapi/test/encoder/section/TcfEuV2.test.ts``
  (3 vendor consents, 6 disclosed vendors, publisher TC);
- ``tcf-cmp-2020``: same file, "decode 4": a real CMP string, 434 disclosed vendors;
- ``tcf-typical-2.3``: a TCF 2.3 string shaped like today's (900 GVL vendors disclosed,
  ~630 consents and ~360 legitimate interests as bitfields, one publisher restriction,
  publisher TC), made with the test encoder ``tests/unit/signals/encoders.py``;
- ``gpp-usnat``: iabgpp-es ``UsNat.test.ts`` "should encode to CVVVkkkkkpFY.YA";
- ``gpp-tcf+usnat``: header [2, 7], the typical TC string, a usnat v2 section with GPC.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable

from streams.engine.signals import SignalCache, decode_gpp, decode_tcf
from streams.engine.signals._bits import IdSet  # noqa: F401  (import cost outside timing)

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

TCF_SMALL = "CPTtLAAPTtLAAAKAAAENAAFgALwAAEAAAAAAAOgAgABgAAAA.IAoAAgABgAAEAQAAEAAA.d4AACEAAAAAA"
TCF_CMP_2020 = (
    "COv_eg6Ov_eg6AOADBENAaCgAP_AAH_AACiQAVEUQQoAIQAqIoghAAQgAA.YAAAAAAAAAAAAAAAAAA.IGLtV_T9fb2vj-_Z99_tkeYwf95y3p-"
    "wzhheMs-8NyZeH_B4Wv2MyvBX4JiQKGRgksjLBAQdtHGlcTQgBwIlViTLMYk2MjzNKJrJEilsbO2dYGD9Pn8HT3ZCY70-vv__7v3ff_3g"
)
TCF_TYPICAL = (
    'CQqlWkAQqlWkAEsAMCDECMFoAP_gAEPgAAYgK7tCL-8VSOHnTcKKiPiSLgDHtxY6SKVJgZYEc8gNQM8h18K66xqjyJhkWPts'
    '_koSuBkKJsUctkRUgSJ-RhD4udU6-megFBACpMEaNUZgGCgEqaU4pc_r7WJ_iNM3NWEW6QDRUEjAVOkiDiwhuxQiGUipHdJd'
    'Fgjg7Un5bFzJlxbuDPYmA3WfhBhgfz7VFUeNnEVf5tF2LS8zviC1iyhQIOnRMuAu3smJnDwBeRdCfMNYK7EAaIYQEoGAjaIq'
    'GBACDCkokCFCAIgOAICAMkEhAIA5DZCwQB-BYgRAWIgMJkgTLBAKAgMQlsJIgWI0SlBIMNDAwiIo1AIASQACF0pAAQgEYkQg'
    'INAgiiICkEBoJWsCAYJDEBCSMM0AAAAEgAARWAqBEJIADBBgAIkQDDEgsIQbQDJsEwCkgAko9Vr1FRGKKQUUp5JfIBwhLDry'
    'AihgNJRQAAAhSBqowKgIIBdSbYQQAQkAGABQAGA.IK7tSb-8VWu3nzeaunPySbmvvtz97Sb1fidaWf-09UO873_L--z-_6r5'
    'kWPtu_koTvRsPLsccv8ddiWP-XlT4udX6-n_q3jIG7eEaN85gmTgF6-14pd_r72P_vNN_PXu-7YLTWFjTdv2qDjwlu5Q_eXq'
    'pPfL9Phzx_dn97n3p95__TPbum3W_hllv__73HV_PvVVf_9t_bb87v3r3i65yNv3RMuC__tur3LwJ_ZdT_ddYA.dgAACEAAA'
    'AA'
)
GPP_USNAT = "DBABLA~CVVVkkkkkpFY.YA"
GPP_TCF_USNAT = (
    'DBACMMA~CQqlWkAQqlWkAEsAMCDECMFoAP_gAEPgAAYgK7tCL-8VSOHnTcKKiPiSLgDHtxY6SKVJgZYEc8gNQM8h18K66xqj'
    'yJhkWPts_koSuBkKJsUctkRUgSJ-RhD4udU6-megFBACpMEaNUZgGCgEqaU4pc_r7WJ_iNM3NWEW6QDRUEjAVOkiDiwhuxQi'
    'GUipHdJdFgjg7Un5bFzJlxbuDPYmA3WfhBhgfz7VFUeNnEVf5tF2LS8zviC1iyhQIOnRMuAu3smJnDwBeRdCfMNYK7EAaIYQ'
    'EoGAjaIqGBACDCkokCFCAIgOAICAMkEhAIA5DZCwQB-BYgRAWIgMJkgTLBAKAgMQlsJIgWI0SlBIMNDAwiIo1AIASQACF0pA'
    'AQgEYkQgINAgiiICkEBoJWsCAYJDEBCSMM0AAAAEgAARWAqBEJIADBBgAIkQDDEgsIQbQDJsEwCkgAko9Vr1FRGKKQUUp5Jf'
    'IBwhLDryAihgNJRQAAAhSBqowKgIIBdSbYQQAQkAGABQAGA.IK7tSb-8VWu3nzeaunPySbmvvtz97Sb1fidaWf-09UO873_L'
    '--z-_6r5kWPtu_koTvRsPLsccv8ddiWP-XlT4udX6-n_q3jIG7eEaN85gmTgF6-14pd_r72P_vNN_PXu-7YLTWFjTdv2qDjw'
    'lu5Q_eXqpPfL9Phzx_dn97n3p95__TPbum3W_hllv__73HV_PvVVf_9t_bb87v3r3i65yNv3RMuC__tur3LwJ_ZdT_ddYA.d'
    'gAACEAAAAA~CVQpAAAAAABg.QA'
)

CASES: dict[str, tuple[str, str]] = {
    "tcf-small": ("tcf", TCF_SMALL),
    "tcf-cmp-2020": ("tcf", TCF_CMP_2020),
    "tcf-typical-2.3": ("tcf", TCF_TYPICAL),
    "gpp-usnat": ("gpp", GPP_USNAT),
    "gpp-tcf+usnat": ("gpp", GPP_TCF_USNAT),
}


#: Characters whose three 2-bit groups are all 0-2 (valid GPP US-section values).
_TRITS = [B64[v] for v in range(64) if all((v >> sh) & 3 != 3 for sh in (0, 2, 4))]


def variant(kind: str, s: str, i: int) -> str:
    """The i-th distinct valid string like ``s``. With a TC string: rewrite three characters
    inside its DisclosedVendors bitfield (any bits are valid there). usnat alone: rewrite
    characters 4-7 of the core, which hold SensitiveDataProcessing (bits 24-56), with
    values 0-2 only."""
    if kind == "gpp" and "~C" in s and ".I" not in s:
        at = s.index("~") + 1 + 4
        n = len(_TRITS)
        code = "".join(_TRITS[(i // n**k) % n] for k in range(4))
        return s[:at] + code + s[at + 4 :]
    tc_start = s.index("~") + 1 if kind == "gpp" else 0
    dv = s.index(".I", tc_start) + 2 + 4  # skip "." + the segment's first 24 bits (type, MaxVendorId, flag)
    code = B64[i % 64] + B64[(i // 64) % 64] + B64[(i // 4096) % 64]
    return s[:dv] + code + s[dv + 3 :]


def per_call_us(fn: Callable[[str], object], args: list[str], repeats: int) -> float:
    """Median over ``repeats`` runs of the mean CPU time per call, in µs.

    CPU time of this process (``process_time``), not wall time: the machines this
    runs on are shared, and other load would otherwise inflate the figure.
    """
    runs = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        t0 = time.process_time_ns()
        for a in args:
            fn(a)
        runs.append((time.process_time_ns() - t0) / len(args) / 1000)
        gc.enable()
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls per timed run")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per case (median reported)")
    args = ap.parse_args(argv)
    print(f"{'case':<16} {'chars':>5} {'cold µs':>9} {'miss µs':>9} {'cached µs':>10} {'entry KB':>9}")
    for name, (kind, s) in CASES.items():
        decode = decode_tcf if kind == "tcf" else decode_gpp
        decode(s)  # validity check and warm-up
        cold = per_call_us(decode, [s] * args.calls, args.repeats)
        variants = [variant(kind, s, i) for i in range(args.calls)]
        assert len(set(variants)) == args.calls
        for v in variants[:50]:
            decode(v)

        def miss(v: str, _c: list[SignalCache] = [SignalCache(maxsize=256)]) -> object:
            return _c[0].tcf(v) if kind == "tcf" else _c[0].gpp(v)

        miss_us = per_call_us(miss, variants, args.repeats)
        cache = SignalCache(maxsize=len(variants) + 1)
        get = cache.tcf if kind == "tcf" else cache.gpp
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for v in variants:
            get(v)
        entry_kb = (tracemalloc.get_traced_memory()[0] - base) / len(variants) / 1024
        tracemalloc.stop()
        cache = SignalCache()
        get = cache.tcf if kind == "tcf" else cache.gpp
        get(s)
        cached = per_call_us(get, [s] * (args.calls * 10), args.repeats)
        print(f"{name:<16} {len(s):>5} {cold:>9.1f} {miss_us:>9.1f} {cached:>10.3f} {entry_kb:>9.2f}")


if __name__ == "__main__":
    main()
