"""Signals -> purposes, categories, gpc, engine gates; combine (signals only narrow); explain."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.signals import (
    DEFAULT_MAPPING,
    Narrowed,
    Signals,
    SignalsMapping,
    SignalsMappingError,
    combine,
    decode_gpp,
    decode_tcf,
    explain,
    normalize,
    parse_consent_mode,
)
from tests.unit.signals.encoders import TCModel, encode_tc, encode_us, gpp_header, usnat_spec
from tests.unit.signals.test_tcf import tc_models

VENDOR = 755  # DEFAULT_MAPPING's partner_ads vendor


def tcf(**kw) -> Signals:
    kw.setdefault("disclosed_vendors", [VENDOR])
    return Signals(tcf=decode_tcf(encode_tc(TCModel(**kw))))


def usnat(gpc=None, **values) -> str:
    base = {n: ((0,) * c if c else 0) for n, c in usnat_spec(2)}
    base["MspaCoveredTransaction"] = 1
    base.update(values)
    return gpp_header([7]) + "~" + encode_us(7, 2, base, gpc)


def test_default_mapping_is_contract_section_8():
    assert DEFAULT_MAPPING.to_dict() == {
        "sec_gpc": True,
        "tcf": {
            "purposes": {"personalization": [5, 6]},
            "special_features": {"location": [1]},
            "engines": {"partner_ads": {"vendor_id": VENDOR, "purposes": [1, 3, 4]}},
        },
        "gpp": {"gpc": True, "opt_outs": {"third_party_sharing": ["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"]}},
        "consent_mode": {"denies": {"third_party_sharing": ["ad_user_data", "ad_personalization"], "analytics": ["analytics_storage"]}},
    }
    assert SignalsMapping.from_dict(DEFAULT_MAPPING.to_dict()) == DEFAULT_MAPPING


def test_tcf_without_purpose_5_6_denies_personalization_even_if_the_record_grants_it():
    n = normalize(tcf(purpose_consents=[1, 5]))
    assert n.purposes["personalization"] == "denied"
    eff = combine({"personalization": True}, {}, False, n)
    assert eff.purposes["personalization"] is False


def test_tcf_with_purpose_5_6_grants_an_unnamed_purpose():
    n = normalize(tcf(purpose_consents=[5, 6]))
    assert combine({}, {}, False, n).purposes["personalization"] is True
    # and never widens a purpose the record denies
    assert combine({"personalization": False}, {}, False, n).purposes["personalization"] is False


@pytest.mark.parametrize(
    ("kw", "open_"),
    [
        ({"purpose_consents": [1, 3, 4], "vendor_consents": [VENDOR]}, True),
        ({"purpose_consents": [1, 3], "vendor_consents": [VENDOR]}, False),  # no purpose 4
        ({"purpose_consents": [1, 3, 4], "vendor_consents": [VENDOR + 1]}, False),  # no vendor consent
        ({"purpose_consents": [1, 3, 4], "vendor_consents": [VENDOR], "disclosed_vendors": [1]}, False),  # not disclosed
        ({"purpose_consents": [1, 3, 4], "vendor_consents": [VENDOR], "publisher_restrictions": [(3, 0, [VENDOR])]}, False),
        ({"purpose_consents": [1, 3, 4], "vendor_consents": [VENDOR], "publisher_restrictions": [(4, 2, [VENDOR])]}, False),
        ({"purpose_consents": [1, 3, 4], "vendor_consents": [VENDOR], "publisher_restrictions": [(3, 1, [VENDOR])]}, True),
        ({"purpose_consents": [1, 3, 4], "vendor_consents": [VENDOR], "publisher_restrictions": [(3, 0, [1])]}, True),
    ],
)
def test_engine_gate(kw, open_):
    n = normalize(tcf(**kw))
    assert n.engines == {"partner_ads": open_}
    eff = combine({"personalization": True, "third_party_sharing": True}, {}, False, n)
    assert eff.engine_allowed("partner_ads") is open_
    assert eff.engine_allowed("offers") is True  # ungated engines are not affected


def test_vendor_grants():
    assert normalize(tcf(vendor_consents=[VENDOR])).vendors == {VENDOR: True}
    assert normalize(tcf(vendor_consents=[VENDOR], disclosed_vendors=[1])).vendors == {VENDOR: False}
    assert normalize(Signals()).vendors == {}


def test_no_tcf_string_no_gate():
    assert combine({}, {}, False, normalize(Signals())).engine_allowed("partner_ads") is True


def test_special_feature_1_gates_location():
    assert normalize(tcf(special_feature_optins=[1])).categories == {"location": True}
    n = normalize(tcf(special_feature_optins=[2]))
    assert combine({}, {"location": True, "browsing": True}, False, n).categories == {"location": False, "browsing": True}


@pytest.mark.parametrize(
    ("values", "verdict"),
    [
        ({"SaleOptOut": 1}, "denied"),
        ({"SharingOptOut": 1, "SaleOptOut": 2}, "denied"),
        ({"TargetedAdvertisingOptOut": 1}, "denied"),
        ({"SaleOptOut": 2}, "granted"),  # did not opt out
        ({}, None),  # all 0: not applicable, says nothing
    ],
)
def test_gpp_opt_outs(values, verdict):
    n = normalize(Signals(gpp=decode_gpp(usnat(**values))))
    assert n.purposes.get("third_party_sharing") == verdict
    eff = combine({"third_party_sharing": True}, {}, False, n)
    assert eff.purposes["third_party_sharing"] is (verdict != "denied")


def test_state_section_without_sharing_field():
    # usva (9) has SaleOptOut and TargetedAdvertisingOptOut, no SharingOptOut
    from tests.unit.signals.encoders import US_SPEC

    vals = {n: ((0,) * c if c else 0) for n, c in US_SPEC[9][0]}
    vals["TargetedAdvertisingOptOut"] = 1
    n = normalize(Signals(gpp=decode_gpp(gpp_header([9]) + "~" + encode_us(9, 1, vals, None))))
    assert n.purposes == {"third_party_sharing": "denied"}
    assert n.findings[0].signal == "gpp.usva"


def test_gpp_gpc_subsection_and_sec_gpc_set_gpc():
    assert normalize(Signals(gpp=decode_gpp(usnat(gpc=True)))).gpc is True
    assert normalize(Signals(gpp=decode_gpp(usnat(gpc=False)))).gpc is False
    assert normalize(Signals(sec_gpc=True)).gpc is True
    assert combine({}, {}, True, normalize(Signals(gpp=decode_gpp(usnat(gpc=False))))).gpc is True  # never clears
    off = SignalsMapping.from_dict({"gpp": {"gpc": False}})
    assert normalize(Signals(gpp=decode_gpp(usnat(gpc=True)), sec_gpc=True), off).gpc is False


def test_consent_mode():
    n = normalize(Signals(consent_mode=parse_consent_mode({"ad_user_data": "granted", "ad_personalization": "denied"})))
    assert n.purposes == {"third_party_sharing": "denied"}
    n = normalize(Signals(consent_mode=parse_consent_mode({"ad_user_data": "granted", "analytics_storage": "denied"})))
    assert n.purposes == {"third_party_sharing": "granted", "analytics": "denied"}
    assert normalize(Signals(consent_mode=parse_consent_mode({"ad_storage": "denied"}))).purposes == {}


def test_undecoded_us_section_fails_closed_and_uspv1_opt_out():
    g = decode_gpp(gpp_header([24]) + "~BQAA.QA")  # usmd: kept raw
    assert normalize(Signals(gpp=g)).purposes == {"third_party_sharing": "denied"}
    assert normalize(Signals(gpp=decode_gpp("DBABTA~1YYN"))).purposes == {"third_party_sharing": "denied"}
    assert normalize(Signals(gpp=decode_gpp("DBABTA~1YNN"))).purposes == {"third_party_sharing": "granted"}
    assert normalize(Signals(gpp=decode_gpp("DBABTA~1Y-N"))).purposes == {}


def test_tcfeuv2_section_is_a_tcf_signal():
    tc = encode_tc(TCModel(purpose_consents=[5], disclosed_vendors=[1]))
    n = normalize(Signals(gpp=decode_gpp(gpp_header([2]) + "~" + tc)))
    assert n.purposes["personalization"] == "denied" and n.findings[0].signal == "gpp.tcfeuv2"


def test_every_signal_must_grant_an_unnamed_purpose():
    # TCF grants personalization; nothing else maps to it -> granted.
    # third_party_sharing: GPP grants (did not opt out), Consent Mode denies -> denied.
    s = Signals(
        tcf=decode_tcf(encode_tc(TCModel(purpose_consents=[5, 6], disclosed_vendors=[1]))),
        gpp=decode_gpp(usnat(SaleOptOut=2)),
        consent_mode=parse_consent_mode({"ad_user_data": "denied"}),
    )
    eff = combine({}, {}, False, normalize(s))
    assert eff.purposes == {"personalization": True, "third_party_sharing": False}


verdicts = st.dictionaries(st.sampled_from("abcde"), st.sampled_from(["granted", "denied"]))
explicit = st.dictionaries(st.sampled_from("abcdef"), st.booleans())


@given(explicit, verdicts, st.booleans(), st.booleans())
def test_combine_only_narrows(exp, sig, exp_gpc, sig_gpc):
    n = Narrowed(sig, {k: v == "granted" for k, v in sig.items()}, {}, sig_gpc, (), ())
    eff = combine(exp, exp, exp_gpc, n)
    for table in (eff.purposes, eff.categories):
        assert set(table) == set(exp) | set(sig)
        for k, granted in table.items():
            if k in exp:
                assert granted == (exp[k] and sig.get(k) != "denied")
            else:
                assert granted == (sig[k] == "granted")
    assert eff.gpc == (exp_gpc or sig_gpc)


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"tcf": {"purpose": {}}}, "unknown key 'purpose'"),
        ({"tcf": {"purposes": {"personalization": [0]}}}, r"signals.tcf.purposes.personalization"),
        ({"tcf": {"purposes": {"personalization": []}}}, "non-empty"),
        ({"tcf": {"special_features": {"location": [13]}}}, "1..12"),
        ({"tcf": {"engines": {"partner_ads": {"purposes": [1]}}}}, "vendor_id"),
        ({"tcf": {"engines": {"partner_ads": {"vendor_id": True, "purposes": [1]}}}}, "vendor_id"),
        ({"gpp": {"opt_outs": {"third_party_sharing": ["SaleOptOutNotice"]}}}, "unknown name 'SaleOptOutNotice'"),
        ({"gpp": {"gpc": "yes"}}, "signals.gpp.gpc"),
        ({"consent_mode": {"denies": {"analytics": ["analytics"]}}}, "unknown name 'analytics'"),
        ({"consent_mode": []}, "must be a table"),
    ],
)
def test_bad_mapping_named(table, match):
    with pytest.raises(SignalsMappingError, match=match):
        SignalsMapping.from_dict(table)


def test_check_names():
    DEFAULT_MAPPING.check_names(
        ["personalization", "third_party_sharing", "analytics"], ["location"], ["partner_ads", "offers"]
    )
    with pytest.raises(SignalsMappingError, match="unknown engine 'partner_ads'"):
        DEFAULT_MAPPING.check_names(["personalization", "third_party_sharing", "analytics"], ["location"], ["offers"])
    with pytest.raises(SignalsMappingError, match="unknown purpose 'analytics'"):
        DEFAULT_MAPPING.check_names(["personalization", "third_party_sharing"], ["location"], ["partner_ads"])


def test_describe_names_every_rule():
    text = "\n".join(DEFAULT_MAPPING.describe())
    for needle in ("TCF purposes 5, 6", "special features 1", "vendor 755", "SaleOptOut", "ad_user_data", "Sec-GPC", "GPC subsection"):
        assert needle in text


def test_explain():
    s = Signals(
        tcf=decode_tcf(encode_tc(TCModel(purpose_consents=[1, 3, 4, 5], vendor_consents=[VENDOR], disclosed_vendors=[VENDOR]))),
        gpp=decode_gpp(usnat(gpc=True, SaleOptOut=1)),
        consent_mode=parse_consent_mode({"analytics_storage": "granted"}),
    )
    lines = explain({"personalization": True, "marketing_email": True}, {"browsing": True}, False, normalize(s))
    text = "\n".join(lines)
    assert "purpose personalization: record: granted" in lines
    assert "  tcf: TCF purpose consent 5 yes, 6 no -> denies" in lines
    assert "  => denied (narrowed by tcf)" in lines
    assert "  => granted (no signal maps to it)" in lines  # marketing_email
    assert "  gpp.usnat: opted out: SaleOptOut -> denies" in lines
    assert "  consent_mode: analytics_storage granted -> grants" in lines
    assert "  => granted (every signal mapped to it grants)" in lines  # analytics
    assert "engine partner_ads: gated by TCF" in lines and "  => open" in lines
    assert "  gpp.usnat: GPC subsection Gpc=1 -> sets gpc" in lines
    assert text.endswith("  => true")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tc_models(), explicit)
def test_any_tc_string_normalizes_and_explains(m, exp):
    tc = decode_tcf(encode_tc(m), strict=False)
    n = normalize(Signals(tcf=tc))
    gate = DEFAULT_MAPPING.tcf_engines["partner_ads"]
    if n.engines["partner_ads"]:
        assert tc.vendor_consented(gate.vendor_id) and all(p in tc.purpose_consents for p in gate.purposes)
    assert n.purposes["personalization"] == ("granted" if {5, 6} <= set(tc.purpose_consents) else "denied")
    assert n.categories["location"] == (1 in tc.special_feature_optins)
    lines = explain(exp, {}, False, n)
    assert any(line.startswith("purpose personalization:") for line in lines)
