"""Legal bases, objections and consent signals in the engine (issue 11 items 2, 3;
CONTRACT §3, §5 step 1a and 2, §8): the decisions they lead to under the default
policy, malformed signals, the signal cache, and the state they fold into.

Signal strings are built with the spec-written encoders of tests/unit/signals.
"""

from __future__ import annotations

import orjson
import pytest

from streams.engine import consent as C
from streams.engine.batch import Filter, TopicNames
from streams.engine.policy import PolicyError, compile_policy, load_policy
from tests.unit.signals.encoders import TCModel, encode_tc, encode_us, gpp_header, usnat_spec

from .helpers import NOW, SECRET, click, consent, default_doc, doc_copy, purchase

T = TopicNames()
JSON = {T.clickstream: "json", T.purchases: "json", T.consent: "json", "output": "json"}
POLICY = load_policy(secret=SECRET)
VENDOR = 755  # the default policy's (illustrative) GVL vendor id of partner_ads


def tc(purposes=(1, 2, 3, 4, 5, 6), vendors=(VENDOR,), special_features=(1,)) -> str:
    return encode_tc(TCModel(purpose_consents=list(purposes), vendor_consents=list(vendors),
                             special_feature_optins=list(special_features)))


def usnat(gpc: bool | None = None, **opt_outs: int) -> str:
    """A GPP string with one usnat v1 section: every field 0 (not applicable) but ``opt_outs``."""
    values: dict[str, object] = {n: (0,) * c if c else 0 for n, c in usnat_spec(1)}
    values.update(opt_outs)
    return gpp_header([7]) + "~" + encode_us(7, 1, values, gpc)


def crec(subject: str, rec: dict, offset: int) -> tuple:
    return (T.consent, 0, offset, subject.encode(), orjson.dumps(rec), None, NOW)


def erec(ev: dict, offset: int) -> tuple:
    topic = T.purchases if ev["event_type"] == "purchase" else T.clickstream
    return (topic, 0, offset, ev["subject_id"].encode(), orjson.dumps(ev), None, NOW)


def decisions_of(filt: Filter, *events: dict) -> list[dict]:
    res = filt.decide([erec(ev, 100 + i) for i, ev in enumerate(events)])
    return [orjson.loads(v) for t, _k, v, _h in res.records if t == T.decisions]


def by_engine(filt: Filter, rec: dict, event: dict | None = None) -> dict[str, str | None]:
    """{engine: drop reason or None (emitted)} for one event of a subject with this record."""
    filt.apply_consent([crec(rec["subject_id"], rec, 1)])
    [d] = decisions_of(filt, event or purchase(subject=rec["subject_id"]))
    if not d["engines"]:
        return {e.name: d["reason"] for e in filt.policy.engines}
    return {x["engine"]: x["reason"] for x in d["engines"]}


def fresh(policy=POLICY) -> Filter:
    return Filter(policy, T, JSON, clock=lambda: NOW)


# ------------------------------------------------------------------ the default policy
def test_default_policy_rules_are_contract_8():
    r = POLICY.rules
    assert r.bases["marketing_email"] == r.bases["marketing_phone"] == ("consent", "legitimate_interest")
    assert all(r.bases[p] == ("consent",) for p in ("personalization", "analytics", "third_party_sharing", "support"))
    assert r.objections["marketing_email"] == r.objections["marketing_phone"] == ("direct_marketing",)
    assert r.objections["personalization"] == ("profiling",)
    assert all(r.objections[p] == () for p in ("analytics", "third_party_sharing", "support"))
    from streams.engine.signals import DEFAULT_MAPPING
    assert r.mapping == DEFAULT_MAPPING


def test_plain_record_is_emitted_everywhere():
    assert by_engine(fresh(), consent()) == {"offers": None, "email": None, "partner_ads": None}


# ------------------------------------------------------------------ TCF
def test_tcf_without_purposes_5_and_6_drops_offers():
    got = by_engine(fresh(), consent(tcf=tc(purposes=(1, 2, 3, 4))))
    assert got == {"offers": "purpose_denied", "email": None, "partner_ads": "purpose_denied"}


def test_tcf_with_every_purpose_and_the_vendor_narrows_nothing():
    assert by_engine(fresh(), consent(tcf=tc())) == {"offers": None, "email": None, "partner_ads": None}


def test_tcf_vendor_gate_closes_partner_ads_only():
    got = by_engine(fresh(), consent(tcf=tc(vendors=(1, 2))))
    assert got == {"offers": None, "email": None, "partner_ads": "purpose_denied"}
    state = fresh_state(consent(tcf=tc(vendors=(1, 2))))
    assert C.wide(state).gates == POLICY.engine("partner_ads").gate_bit
    assert C.wide(state).granted & 1  # personalization itself stays granted: offers uses it


def test_tcf_special_feature_1_gates_location():
    f = fresh()
    f.apply_consent([crec("s-1", consent(tcf=tc(special_features=())), 1)])
    [d] = decisions_of(f, click("page_view"))
    pa = next(x for x in d["engines"] if x["engine"] == "partner_ads")
    assert pa["outcome"] == "emitted" and pa["categories_sent"] == ["browsing"]  # not location


def test_signals_never_grant_what_the_record_denies():
    rec = consent(granted=("marketing_email",), tcf=tc())
    assert by_engine(fresh(), rec) == {"offers": "purpose_denied", "email": None, "partner_ads": "purpose_denied"}


def test_a_purpose_only_signals_grant_counts_from_the_record_on():
    """A purpose the record does not name is granted when every signal mapped to it grants it."""
    rec = consent(tcf=tc())
    del rec["purposes"]["personalization"]
    state = fresh_state(rec)
    ga, ea = C.times_of(state)
    assert C.wide(state).granted & 1 and ga[0] == rec["updated_at"] and ea[0] == C.NO_EXPIRY
    f = fresh()
    f.apply_consent([crec("s-1", rec, 1)])
    [d] = decisions_of(f, click(ts=rec["updated_at"] - 1))
    assert next(x for x in d["engines"] if x["engine"] == "offers")["reason"] == "before_grant"


# ------------------------------------------------------------------ GPP
def test_gpp_usnat_sale_opt_out_drops_partner_ads():
    got = by_engine(fresh(), consent(gpp=usnat(SaleOptOut=1)))
    assert got == {"offers": None, "email": None, "partner_ads": "purpose_denied"}


def test_gpp_usnat_without_opt_out_keeps_partner_ads():
    assert by_engine(fresh(), consent(gpp=usnat(SaleOptOut=2)))["partner_ads"] is None


def test_gpc_from_a_gpp_subsection_is_opt_out():
    got = by_engine(fresh(), consent(gpp=usnat(gpc=True, SaleOptOut=2)))
    assert got == {"offers": None, "email": None, "partner_ads": "opt_out"}
    assert by_engine(fresh(), consent(gpp=usnat(gpc=False, SaleOptOut=2)))["partner_ads"] is None


def test_sec_gpc_is_opt_out():
    assert by_engine(fresh(), consent(sec_gpc=True))["partner_ads"] == "opt_out"
    assert by_engine(fresh(), consent(sec_gpc=False))["partner_ads"] is None


def test_consent_mode_denials():
    got = by_engine(fresh(), consent(consent_mode={"ad_user_data": "denied", "ad_storage": "granted"}))
    assert got == {"offers": None, "email": None, "partner_ads": "purpose_denied"}
    state = fresh_state(consent(consent_mode={"analytics_storage": "denied"}))
    assert not C.wide(state).granted >> POLICY.vocab.purpose_index["analytics"] & 1


# ------------------------------------------------------------------ bases and objections
def li_email(**over) -> dict:
    """Everything consented but marketing_email, which rests on legitimate interest only."""
    rec = consent(**over)
    rec["purposes"]["marketing_email"] = {"status": "granted", "basis": "legitimate_interest",
                                          "granted_at": NOW - 10 * 24 * 3_600_000, "expires_at": None}
    return rec


def test_legitimate_interest_email_then_objection():
    assert by_engine(fresh(), li_email())["email"] is None
    got = by_engine(fresh(), li_email(objections=["direct_marketing"]))
    assert got == {"offers": None, "email": "objected", "partner_ads": None}


def test_legitimate_interest_is_not_consent_where_the_policy_does_not_allow_it():
    rec = consent()
    rec["purposes"]["personalization"]["basis"] = "legitimate_interest"
    f = fresh()
    res = f.apply_consent([crec("s-1", rec, 1)])
    assert res.ignored.get("basis_not_allowed") == 1 and res.dlq == 0
    [d] = decisions_of(f, purchase())
    got = {x["engine"]: x["reason"] for x in d["engines"]}
    assert got == {"offers": "purpose_denied", "email": None, "partner_ads": "purpose_denied"}
    # and a policy that allows only consent for e-mail turns the LI grant down too
    doc = doc_copy(default_doc())
    doc["purpose_rules"]["marketing_email"]["bases"] = ["consent"]
    assert by_engine(fresh(compile_policy(doc, secret=SECRET)), li_email())["email"] == "purpose_denied"


def test_profiling_objection_drops_offers_and_partner_ads():
    got = by_engine(fresh(), consent(objections=["profiling"]))
    assert got == {"offers": "objected", "email": None, "partner_ads": "objected"}


def test_objected_comes_before_purpose_denied_and_every_other_check():
    rec = consent(granted=(), objections=["profiling", "direct_marketing"], gpc=True, jurisdiction="CN")
    assert by_engine(fresh(), rec) == {"offers": "objected", "email": "objected", "partner_ads": "objected"}


def test_objection_is_absolute_whatever_the_signals_grant():
    assert by_engine(fresh(), consent(tcf=tc(), objections=["profiling"]))["offers"] == "objected"


# ------------------------------------------------------------------ malformed
@pytest.mark.parametrize("over", [
    {"tcf": "not-a-tc-string!"},
    {"tcf": "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA"},  # TCF v1: rejected
    {"gpp": "DBABM~garbage"},
    {"consent_mode": {"ad_storage": "maybe"}},
    {"consent_mode": {"ads": "granted"}},
    {"objections": ["spam"]},
    {"objections": "profiling"},
    {"sec_gpc": "yes"},
])
def test_undecodable_signal_or_unknown_class_is_malformed(over):
    f = fresh()
    f.apply_consent([crec("s-1", consent(), 1)])
    res = f.apply_consent([crec("s-1", consent(updated_at=NOW, **over), 2)])
    assert res.dlq == 1 and res.consent == 0
    dlq = [r for r in res.records if r[0] == T.dlq]
    assert len(dlq) == 1
    headers = dict(dlq[0][3])
    assert headers["error.class"] in (b"invalid_consent", b"schema_mismatch", b"wrong_type")
    for v in over.values():  # G6: the value is never in the message
        if isinstance(v, str) and len(v) > 5:
            assert v.encode() not in headers["error.message"]
    [d] = decisions_of(f, purchase())
    assert d["reason"] == "no_consent"  # fails closed


def test_unknown_basis_is_malformed():
    rec = consent()
    rec["purposes"]["marketing_email"]["basis"] = "contract"
    f = fresh()
    assert f.apply_consent([crec("s-1", rec, 1)]).dlq == 1
    assert decisions_of(f, purchase())[0]["reason"] == "no_consent"


def test_undecodable_tcf_through_parse_consent_names_the_field():
    with pytest.raises(C.MalformedConsent, match=r"^invalid_consent: tcf: does not decode"):
        C.parse_consent(consent(tcf="%%%"), "s-1", 1, POLICY.vocab)


# ------------------------------------------------------------------ cache, state
def test_each_distinct_string_is_decoded_once():
    f = fresh()
    s = tc(purposes=(1, 2, 3, 4))
    g = usnat(SaleOptOut=1)
    rules = f.policy.vocab.rules
    rules._folds.clear()  # the rules' fold memo is shared by every Filter of this policy
    f.apply_consent([crec(f"s-{i}", consent(f"s-{i}", tcf=s, gpp=g), i) for i in range(50)])
    stats = f.signal_cache.stats()
    # decoded on the first record; the other 49 (same choices) are answered by the fold
    # memo (ConsentRules.fold_record) before the signal cache is asked
    assert stats["tcf"].misses == 1 and stats["tcf"].hits == 0
    assert stats["gpp"].misses == 1 and stats["gpp"].hits == 0
    assert len(rules._folds) == 1
    # a record with other choices but the same strings misses the memo, hits the cache
    other = consent("s-x", tcf=s, gpp=g)
    other["gpc"] = not other["gpc"]
    f.apply_consent([crec("s-x", other, 50)])
    stats = f.signal_cache.stats()
    assert stats["tcf"] == (1, 1, 1, stats["tcf"].maxsize) and len(rules._folds) == 2


def fresh_state(rec: dict) -> tuple:
    return C.parse_consent(rec, rec["subject_id"], 1, POLICY.vocab)


def test_profiles_with_signals_are_interned_and_round_trip():
    a = fresh_state(consent("a", tcf=tc(vendors=()), objections=["profiling"]))
    b = fresh_state(consent("b", tcf=tc(vendors=()), objections=["profiling"]))
    assert a[C.PROFILE] is b[C.PROFILE]
    assert C.wide(a).objected == 1 << POLICY.vocab.purpose_index["personalization"]
    assert C.state_from_bytes(C.state_to_bytes(a)) == a


def test_the_rules_are_in_the_fingerprint():
    doc = doc_copy(default_doc())
    doc["purpose_rules"]["marketing_email"]["bases"] = ["consent"]
    other = compile_policy(doc, secret=SECRET)
    assert other.vocab.purposes == POLICY.vocab.purposes and other.vocab.categories == POLICY.vocab.categories
    assert other.vocab.fingerprint != POLICY.vocab.fingerprint
    # a state compiled under the old rules is no consent under the new ones
    f = fresh(other)
    f.store["s-1"] = fresh_state(li_email())
    assert decisions_of(f, purchase())[0]["reason"] == "no_consent"


# ------------------------------------------------------------------ the policy
@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["purpose_rules"].update(nope={"bases": ["consent"]}), "unknown purpose 'nope'"),
    (lambda d: d["purpose_rules"]["marketing_email"].update(bases=["contract"]), "unknown basis 'contract'"),
    (lambda d: d["purpose_rules"]["marketing_email"].update(bases=[]), "non-empty list"),
    (lambda d: d["purpose_rules"]["personalization"].update(objections=["spam"]), "unknown objection class 'spam'"),
    (lambda d: d["purpose_rules"]["personalization"].update(basis=["consent"]), "unknown key 'basis'"),
    (lambda d: d["signals"]["tcf"]["purposes"].update(nope=[1]), "unknown purpose 'nope'"),
    (lambda d: d["signals"]["tcf"]["special_features"].update(gps=[1]), "unknown category 'gps'"),
    (lambda d: d["signals"]["tcf"]["engines"].update(ads={"vendor_id": 1, "purposes": [1]}), "unknown engine 'ads'"),
    (lambda d: d["signals"]["tcf"]["engines"]["partner_ads"].update(vendor_id=0), "vendor_id"),
    (lambda d: d["signals"].update(tcf_v1={}), "unknown key 'tcf_v1'"),
])
def test_bad_rules_stop_the_policy_naming_the_problem(edit, message):
    doc = doc_copy(default_doc())
    edit(doc)
    with pytest.raises(PolicyError, match=message):
        compile_policy(doc, secret=SECRET)


def test_a_policy_without_rules_has_consent_only_and_no_signals():
    doc = doc_copy(default_doc())
    del doc["purpose_rules"], doc["signals"]
    p = compile_policy(doc, secret=SECRET)
    assert all(b == ("consent",) for b in p.rules.bases.values())
    assert by_engine(fresh(p), li_email())["email"] == "purpose_denied"
    assert by_engine(fresh(p), consent(tcf=tc(purposes=())))["offers"] is None  # nothing mapped
