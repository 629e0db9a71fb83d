"""The reference rule (streams/engine/reference.py) on issue 11's records: step 1a
``objected``, the legal-basis check of step 2, and consent signals that only narrow.
The signal strings are made with the spec-written encoders (streams/population/signals)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from streams.engine import reference
from streams.engine.reference_signals import DEFAULT_SIGNALS
from streams.population.signals import PARTNER_VENDOR_ID, TCModel, encode_tc, gpp_string, tc_string, us_section
from tests.integration.kit import DAY, consent, page_view, purchase
from tests.unit.reference_policy import policy_of_section_8

NOW = 1_800_000_000_000
SECRET = b"unit-secret"
POLICY = policy_of_section_8()
ALL_TCF = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def decide(event: dict, record: dict | None, engine: str, policy: dict | None = None) -> str:
    outcome, what = reference.expected(event, record, engine, policy or POLICY, NOW, SECRET)
    return "emitted" if outcome == "emitted" else what


def click() -> dict:
    return page_view("e-1", "s-1", NOW - 1000)


def record(**extra: Any) -> dict:
    rec = consent("s-1", NOW - DAY)
    rec.update(extra)
    return rec


def all_engines(event: dict, rec: dict, policy: dict | None = None) -> dict[str, str]:
    return {e: decide(event, rec, e, policy) for e in ("offers", "email", "partner_ads")}


# ------------------------------------------------------------------ TCF
def test_everything_granted_everywhere_without_signals():
    assert all_engines(click(), record()) == {"offers": "emitted", "email": "nothing_permitted",
                                              "partner_ads": "emitted"}
    assert decide(purchase("e-2", "s-1", NOW - 1000), record(), "email") == "emitted"


def test_tcf_without_purpose_5_or_6_denies_personalization():
    full = tc_string(ALL_TCF, [1], [PARTNER_VENDOR_ID])
    assert all_engines(click(), record(tcf=full))["offers"] == "emitted"
    for missing in (5, 6):
        tc = tc_string([p for p in ALL_TCF if p != missing], [1], [PARTNER_VENDOR_ID])
        got = all_engines(click(), record(tcf=tc))
        assert got["offers"] == "purpose_denied" and got["partner_ads"] == "purpose_denied"


def test_tcf_vendor_gate_closes_partner_ads_only():
    for tc in (tc_string(ALL_TCF, [1], []),                          # no consent for the vendor
               tc_string([p for p in ALL_TCF if p != 4], [1], [PARTNER_VENDOR_ID])):  # no purpose 4
        got = all_engines(click(), record(tcf=tc))
        assert got == {"offers": "emitted", "email": "nothing_permitted", "partner_ads": "purpose_denied"}


def test_tcf_vendor_not_disclosed_or_restricted_closes_the_gate():
    ds = 17_487_360_000
    base = dict(created_ds=ds, last_updated_ds=ds, policy_version=5, purpose_consents=ALL_TCF,
                special_feature_optins=[1], vendor_consents=[PARTNER_VENDOR_ID])
    ok = encode_tc(TCModel(**base, disclosed_vendors=[PARTNER_VENDOR_ID]))
    hidden = encode_tc(TCModel(**base, disclosed_vendors=[1, 2]))
    not_allowed = encode_tc(TCModel(**base, disclosed_vendors=[PARTNER_VENDOR_ID],
                                    publisher_restrictions=[(3, 0, [PARTNER_VENDOR_ID])]))
    li_only = encode_tc(TCModel(**base, disclosed_vendors=[PARTNER_VENDOR_ID],
                                publisher_restrictions=[(1, 2, [PARTNER_VENDOR_ID])]))
    consent_only = encode_tc(TCModel(**base, disclosed_vendors=[PARTNER_VENDOR_ID],
                                     publisher_restrictions=[(1, 1, [PARTNER_VENDOR_ID])]))
    other_vendor = encode_tc(TCModel(**base, disclosed_vendors=[PARTNER_VENDOR_ID],
                                     publisher_restrictions=[(1, 0, [PARTNER_VENDOR_ID + 1])]))
    assert decide(click(), record(tcf=ok), "partner_ads") == "emitted"
    assert decide(click(), record(tcf=consent_only), "partner_ads") == "emitted"
    assert decide(click(), record(tcf=other_vendor), "partner_ads") == "emitted"
    for tc in (hidden, not_allowed, li_only):
        assert decide(click(), record(tcf=tc), "partner_ads") == "purpose_denied"


def test_tcf_special_feature_1_gates_location():
    with_geo = reference.expected(click(), record(tcf=tc_string(ALL_TCF, [1], [PARTNER_VENDOR_ID])),
                                  "partner_ads", POLICY, NOW, SECRET)
    without = reference.expected(click(), record(tcf=tc_string(ALL_TCF, [], [PARTNER_VENDOR_ID])),
                                 "partner_ads", POLICY, NOW, SECRET)
    assert with_geo[1]["context"]["geo"] == {"country": "DE"}
    assert "geo" not in without[1]["context"] and without[1]["context"]["referrer"]  # browsing stays


def test_tcf_inside_gpp_counts_like_the_tcf_field():
    tc = tc_string([p for p in ALL_TCF if p != 5], [1], [PARTNER_VENDOR_ID])
    assert decide(click(), record(gpp=gpp_string([(2, tc)])), "offers") == "purpose_denied"


def test_signals_never_grant_what_the_record_denies():
    rec = record(tcf=tc_string(ALL_TCF, [1], [PARTNER_VENDOR_ID]))
    rec["purposes"]["personalization"]["status"] = "withdrawn"
    rec["categories"]["location"] = False
    assert decide(click(), rec, "offers") == "purpose_denied"
    rec["purposes"]["personalization"]["status"] = "granted"
    out = reference.expected(click(), rec, "partner_ads", POLICY, NOW, SECRET)[1]
    assert "geo" not in out["context"]  # special feature 1 opted in, but the record says no to location


def test_a_purpose_the_record_does_not_name_is_granted_only_by_every_signal():
    rec = record(tcf=tc_string(ALL_TCF, [1], [PARTNER_VENDOR_ID]))
    del rec["purposes"]["personalization"]
    # TCF grants it (as of the record's updated_at, no expiry)
    assert decide(page_view("e-1", "s-1", NOW - 1000), rec, "offers") == "emitted"
    assert decide(page_view("e-1", "s-1", NOW - 2 * DAY), rec, "offers") == "before_grant"
    rec["tcf"] = tc_string([1, 2, 3, 4, 6], [1], [PARTNER_VENDOR_ID])
    assert decide(click(), rec, "offers") == "purpose_denied"
    del rec["tcf"]  # no signal speaks for it: not granted
    assert decide(click(), rec, "offers") == "purpose_denied"


# ------------------------------------------------------------------ GPP
def usnat(sale: int = 2, sharing: int = 2, targeted: int = 2, gpc: bool | None = None, version: int = 2) -> str:
    outs = {"SaleOptOut": sale, "SharingOptOut": sharing, "TargetedAdvertisingOptOut": targeted}
    return gpp_string([(7, us_section(7, outs, gpc, version=version))])


@pytest.mark.parametrize("version", [1, 2])
def test_gpp_usnat_sale_opt_out_denies_partner_ads(version):
    assert decide(click(), record(jurisdiction="US", gpp=usnat(version=version)), "partner_ads") == "emitted"
    got = all_engines(click(), record(jurisdiction="US", gpp=usnat(sale=1, version=version)))
    assert got == {"offers": "emitted", "email": "nothing_permitted", "partner_ads": "purpose_denied"}
    for kw in ({"sharing": 1}, {"targeted": 1}):
        assert decide(click(), record(jurisdiction="US", gpp=usnat(**kw)), "partner_ads") == "purpose_denied"


def test_gpp_gpc_subsection_is_an_opt_out():
    assert decide(click(), record(jurisdiction="US", gpp=usnat(gpc=False)), "partner_ads") == "emitted"
    got = all_engines(click(), record(jurisdiction="US", gpp=usnat(gpc=True)))
    assert got == {"offers": "emitted", "email": "nothing_permitted", "partner_ads": "opt_out"}


def test_sec_gpc_is_an_opt_out():
    assert decide(click(), record(jurisdiction="US", sec_gpc=True), "partner_ads") == "opt_out"
    assert decide(click(), record(jurisdiction="US", sec_gpc=False), "partner_ads") == "emitted"


def test_gpp_usca_uspv1_and_undecoded_state_sections():
    ca = gpp_string([(8, us_section(8, {"SaleOptOut": 2, "SharingOptOut": 1}, None))])
    assert decide(click(), record(jurisdiction="US-CA", gpp=ca), "partner_ads") == "purpose_denied"
    assert decide(click(), record(jurisdiction="US-CA", gpp="DBABTA~1YYN"), "partner_ads") == "purpose_denied"
    assert decide(click(), record(jurisdiction="US-CA", gpp="DBABTA~1YNN"), "partner_ads") == "emitted"
    from streams.population.signals import gpp_header

    raw_md = gpp_header([24]) + "~BAAAAA"  # usmd is kept undecoded: may hold an opt-out
    assert decide(click(), record(jurisdiction="US", gpp=raw_md), "partner_ads") == "purpose_denied"


# ------------------------------------------------------------------ Consent Mode
def test_consent_mode():
    granted = {s: "granted" for s in ("ad_storage", "ad_user_data", "ad_personalization", "analytics_storage")}
    assert decide(click(), record(consent_mode=granted), "partner_ads") == "emitted"
    for signal in ("ad_user_data", "ad_personalization"):
        got = all_engines(click(), record(consent_mode=dict(granted, **{signal: "denied"})))
        assert got["partner_ads"] == "purpose_denied" and got["offers"] == "emitted"
    # analytics_storage denied denies analytics, which no default engine needs
    assert decide(click(), record(consent_mode=dict(granted, analytics_storage="denied")), "partner_ads") == "emitted"


# ------------------------------------------------------------------ bases and objections
def li_email_record(**extra: Any) -> dict:
    rec = record(**extra)
    rec["purposes"]["marketing_email"] = {"status": "granted", "granted_at": NOW - 400 * DAY, "expires_at": None,
                                          "basis": "legitimate_interest"}
    return rec


def test_legitimate_interest_email_subject_gets_email_until_they_object():
    buy = purchase("e-2", "s-1", NOW - 1000)
    assert decide(buy, li_email_record(), "email") == "emitted"
    assert decide(buy, li_email_record(objections=["direct_marketing"]), "email") == "objected"
    # objected comes before every step-2 check: also when the purpose is not granted at all
    rec = li_email_record(objections=["direct_marketing"])
    rec["purposes"]["marketing_email"]["status"] = "denied"
    assert decide(buy, rec, "email") == "objected"


def test_a_basis_the_policy_does_not_allow_is_no_grant():
    buy = purchase("e-2", "s-1", NOW - 1000)
    rec = li_email_record()
    rec["purposes"]["personalization"]["basis"] = "legitimate_interest"  # consent only
    got = all_engines(buy, rec)
    assert got == {"offers": "purpose_denied", "email": "emitted", "partner_ads": "purpose_denied"}
    rec["purposes"]["personalization"]["basis"] = "consent"
    assert decide(buy, rec, "offers") == "emitted"
    # a policy that states no bases allows consent only
    plain = copy.deepcopy(POLICY)
    plain.pop("purpose_rules", None)
    assert decide(buy, li_email_record(), "email", plain) == "purpose_denied"
    assert decide(buy, li_email_record(objections=["direct_marketing"]), "email", plain) == "purpose_denied"


def test_profiling_objection_drops_the_engines_needing_personalization():
    buy = purchase("e-2", "s-1", NOW - 1000)
    got = all_engines(buy, record(objections=["profiling"]))
    assert got == {"offers": "objected", "email": "emitted", "partner_ads": "objected"}
    got = all_engines(buy, record(objections=["profiling", "direct_marketing"]))
    assert set(got.values()) == {"objected"}
    assert all_engines(buy, record(objections=[])) == all_engines(buy, record())


def test_objected_comes_before_the_signals_and_purposes():
    rec = record(objections=["profiling"], tcf=tc_string([1], [], []))
    rec["purposes"]["personalization"]["status"] = "denied"
    assert decide(click(), rec, "offers") == "objected"


def test_decision_record_form():
    d = reference.expected_decision(click(), record(objections=["profiling"]), POLICY, NOW, SECRET)
    assert [(e["engine"], e["reason"]) for e in d["engines"]] == [
        ("offers", "objected"), ("email", "nothing_permitted"), ("partner_ads", "objected")]


# ------------------------------------------------------------------ malformed signals, policy mapping
@pytest.mark.parametrize("extra", [
    {"tcf": "not a tc string"}, {"tcf": 42}, {"gpp": "DBABLA~C____________.QA"}, {"gpp": ["x"]},
    {"consent_mode": {"ad_storage": "yes"}}, {"objections": "direct_marketing"}, {"objections": [1]},
])  # fmt: skip
def test_an_unreadable_signal_makes_the_record_malformed(extra):
    rec = record(**extra)
    assert reference.consent_problem(rec) is not None
    assert set(all_engines(click(), rec).values()) == {"no_consent"}
    assert reference.expected_decision(click(), rec, POLICY, NOW, SECRET)["reason"] == "no_consent"
    assert reference.consent_problem(record()) is None


def test_the_policy_signals_table_is_used_when_present():
    tc = tc_string(ALL_TCF, [1], [PARTNER_VENDOR_ID])
    other = copy.deepcopy(POLICY)
    other["signals"] = copy.deepcopy(DEFAULT_SIGNALS)
    assert decide(click(), record(tcf=tc), "partner_ads", other) == "emitted"
    other["signals"]["tcf"]["engines"]["partner_ads"]["vendor_id"] = 999  # another partner
    assert decide(click(), record(tcf=tc), "partner_ads", other) == "purpose_denied"
    other["signals"] = {}  # a policy that maps no signal: they narrow nothing
    tc_no_5 = tc_string([1, 2, 3, 4, 6], [], [])
    assert decide(click(), record(tcf=tc_no_5), "offers", other) == "emitted"
    assert decide(click(), record(tcf=tc_no_5), "offers") == "purpose_denied"


def test_an_unknown_basis_or_objection_class_makes_the_record_malformed():
    """As the engine: a value outside CONTRACT §3's sets fails closed (DLQ, subject blocked)."""
    from streams.engine.reference import consent_problem

    ok = {"subject_id": "s", "purposes": {"marketing_email": {"status": "granted", "basis": "legitimate_interest"}},
          "objections": ["profiling"]}
    assert consent_problem(ok) is None
    assert consent_problem({**ok, "purposes": {"marketing_email": {"status": "granted", "basis": "contract"}}})
    assert consent_problem({**ok, "objections": ["spam"]})
