"""Fuzz: the decoders raise nothing but their named errors (``SignalError``), whatever the input."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.signals import SignalError, decode_gpp, decode_tcf, parse_consent_mode
from tests.unit.signals.encoders import B64

# valid strings to mutate: [GPP-ES-TCF] iabgpp-es modules/cmpapi/test/encoder/section/TcfEuV2.test.ts,
# [GPP-ES-MODEL] iabgpp-es modules/cmpapi/test/GppModel.test.ts ("should encode all sections")
TC = "CPTtLAAPTtLAAAKAAAENAAFgALwAAEAAAAAAAOgAgABgAAAA.IAoAAgABgAAEAQAAEAAA.d4AACEAAAAAA"
GPP = (
    "DBACOcGA~CPSG_8APSG_8ANwAAAENAAFgAAAAAAAAAAAAAAAAAAAA.IAAA.YAAAAAAAAAAA~BPSG_8APSG_8AAAAAAENAACAAAAAAAAAAAAAAAAAAA"
    ".YAAAAAAAAAA~1---~BAAAAAAAAQA.QA~BAAAAABA.QA~BAAAABA~BAAAAEA.QA~BAAAAAQA~BAAAAAEA.QA~BAAAAABA~BAAAAABA.QA~BAAAAAABAA"
    ".QA~BAAAAAQA.QA~BAAAAAABAA.QA~BAAAAAQA.QA~BAAAAAQA.QA~BAAAAABA.QA~BAAAAAAAQA.QA~BAAAAAQA.QA~BAAAAAQA.QA~BQAA.QA"
    "~BQAA.AAA~BQAA.AAA~BQAA.AAA"
)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

alphabet_text = st.text(alphabet=B64 + ".~", max_size=300)
any_text = st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))


@st.composite
def mutated(draw, base: str) -> str:
    s = list(base)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["set", "del", "ins", "cut"]))
        i = draw(st.integers(0, max(len(s) - 1, 0)))
        c = draw(st.sampled_from(B64 + ".~"))
        if op == "set" and s:
            s[i] = c
        elif op == "del" and s:
            del s[i]
        elif op == "ins":
            s.insert(i, c)
        else:
            s = s[:i]
    return "".join(s)


def only_named_errors(fn, s) -> None:
    try:
        fn(s)
    except SignalError:
        pass


@FUZZ
@given(any_text | alphabet_text | mutated(TC) | mutated(GPP))
def test_decode_tcf_raises_only_named_errors(s):
    only_named_errors(decode_tcf, s)
    only_named_errors(lambda x: decode_tcf(x, strict=False), s)


@FUZZ
@given(any_text | alphabet_text | mutated(GPP) | mutated("DBABLA~CVVVkkkkkpFY.YA") | mutated("DBABM~" + TC))
def test_decode_gpp_raises_only_named_errors(s):
    only_named_errors(decode_gpp, s)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(["ad_storage", "ad_user_data", "analytics_storage", "x"]) | st.text(max_size=8), json_values | st.sampled_from(["granted", "denied"]))
    | json_values
)
def test_parse_consent_mode_raises_only_named_errors(obj):
    only_named_errors(parse_consent_mode, obj)


@FUZZ
@given(st.binary(max_size=64) | st.integers() | st.none() | st.lists(st.text(max_size=4), max_size=3))
def test_non_strings(obj):
    only_named_errors(decode_tcf, obj)
    only_named_errors(decode_gpp, obj)
