"""The decision rule (CONTRACT §5): every reason code in order, boundaries, projection, transforms."""

from __future__ import annotations

import pytest

from streams.engine import reference
from streams.engine.consent import blocked_state, parse_consent
from streams.engine.decide import REASONS, decide
from streams.engine.policy import compile_policy, load_policy

from streams.crypto import KeyRing, decrypt_value
from streams.engine.sealing import Sealer

from .helpers import (
    DAY, HOUR, NOW, PURPOSES, SECRET, click, consent, counter_nonces, default_doc, doc_copy, purchase, ring_keys,
    kek_for_tests,
)

POLICY = load_policy(secret=SECRET)
DOC = default_doc()
RING = KeyRing(kek_for_tests())
SEALER = Sealer(RING, binary=False, clock=lambda: NOW, nonces=counter_nonces())


def run(engine: str, event: dict, rec: dict | None, now: int = NOW, policy=POLICY, doc=DOC):
    """Engine result, checked against the reference on the way."""
    eng = policy.engine(engine)
    state = None if rec is None else parse_consent(rec, rec["subject_id"], 0, policy.vocab)
    reason, out, sent = decide(eng, event, event.get("subject_id"), state, now, SEALER.seal)
    want = reference.expected(event, rec, engine, doc, now, SECRET, ring_keys(RING))
    got = ("dropped", reason) if reason is not None else ("emitted", out)
    assert got == want
    return reason, out, sent


def test_reason_codes_are_the_contract_list():
    # codes are positions: a new reason is appended (objected, issue 11), the others keep theirs
    assert REASONS == ("anonymous", "no_consent", "purpose_denied", "before_grant", "expired", "opt_out",
                       "region_blocked", "nothing_permitted", "objected")


def test_emitted_offers_record():
    reason, out, sent = run("offers", click(), consent())
    assert reason is None
    assert out == {
        "event_id": "e-1", "subject_id": "s-1", "event_type": "page_view", "ts": NOW - HOUR,
        "url": "https://shop.example/p/1", "title": "Shoes", "context": {"referrer": "https://search.example/"},
        "consent_version": NOW - DAY, "policy_version": POLICY.version, "purposes": ["personalization"],
        "engine": "offers",
    }
    assert POLICY.engine("offers").category_names(sent) == ["browsing"]


def test_anonymous_first():
    assert run("offers", click(subject=None), None)[0] == "anonymous"
    assert run("partner_ads", click(subject=None), consent())[0] == "anonymous"


def test_no_consent_and_blocked():
    assert run("offers", click(), None)[0] == "no_consent"
    eng = POLICY.engine("offers")
    assert decide(eng, click(), "s-1", blocked_state(5, 1, POLICY.vocab), NOW)[0] == "no_consent"


def test_purpose_denied_for_any_needed_purpose():
    rec = consent(granted=("personalization",))  # partner_ads also needs third_party_sharing
    assert run("partner_ads", click(), rec)[0] == "purpose_denied"
    for status in ("denied", "withdrawn"):
        assert run("email", purchase(), consent(granted=(), denied_status=status))[0] == "purpose_denied"


def test_checks_run_over_all_purposes_before_the_next_check():
    # personalization granted after ts (before_grant), third_party_sharing denied:
    # purpose_denied wins because the 'granted' check covers every purpose first
    rec = consent(granted=("personalization",), granted_at=NOW)
    assert run("partner_ads", click(ts=NOW - HOUR), rec)[0] == "purpose_denied"
    # both granted; one expired, one granted after ts -> before_grant before expired
    rec = consent()
    rec["purposes"]["personalization"]["expires_at"] = NOW - DAY
    rec["purposes"]["third_party_sharing"]["granted_at"] = NOW
    assert run("partner_ads", click(ts=NOW - HOUR), rec)[0] == "before_grant"


def test_before_grant_boundary():
    ts = NOW - HOUR
    assert run("offers", click(ts=ts), consent(granted_at=ts + 1))[0] == "before_grant"
    assert run("offers", click(ts=ts), consent(granted_at=ts))[0] is None  # granted_at == ts: ok


@pytest.mark.parametrize("ts, now, expires_at, reason", [
    (NOW - HOUR, NOW, NOW, "expired"),          # now == expires_at
    (NOW, NOW - 1, NOW, "expired"),             # ts == expires_at (event stamped at expiry)
    (NOW - HOUR, NOW, NOW + 1, None),           # both strictly before
    (NOW - HOUR, NOW + 5, NOW + 1, "expired"),  # expired by processing time
    (NOW + 2, NOW, NOW + 1, "expired"),         # event time after expiry
    (NOW - HOUR, NOW, None, None),              # no expiry
])
def test_expiry_boundaries(ts, now, expires_at, reason):
    rec = consent(granted_at=NOW - DAY, expires_at=expires_at)
    assert run("offers", click(ts=ts), rec, now=now)[0] == reason


def test_opt_out_then_third_party_purpose():
    assert run("partner_ads", click(), consent(gpc=True))[0] == "opt_out"
    # first-party engines ignore GPC
    assert run("offers", click(), consent(gpc=True))[0] is None
    # a third-party engine that does not itself list third_party_sharing still needs it
    doc = doc_copy(DOC)
    pa = next(e for e in doc["engines"] if e["name"] == "partner_ads")
    pa["needs"] = ["personalization"]
    policy = compile_policy(doc, secret=SECRET)
    rec = consent(granted=("personalization",))
    assert run("partner_ads", click(), rec, policy=policy, doc=doc)[0] == "purpose_denied"
    assert run("partner_ads", click(), consent(granted=("personalization",), gpc=True),
               policy=policy, doc=doc)[0] == "opt_out"
    _, out, _ = run("partner_ads", click(), consent(), policy=policy, doc=doc)
    assert out["purposes"] == ["personalization", "third_party_sharing"]


def test_region_blocked():
    assert run("partner_ads", click(), consent(jurisdiction="BR"))[0] == "region_blocked"
    assert run("partner_ads", click(), consent(jurisdiction="US-CA"))[0] is None
    assert run("offers", click(), consent(jurisdiction="BR"))[0] is None  # "any"


def test_nothing_permitted():
    # no granted category the engine may receive
    assert run("offers", click(), consent(categories=("contact", "location")))[0] == "nothing_permitted"
    # granted, but the event has no field of it
    assert run("email", click("search"), consent())[0] == "nothing_permitted"
    # fields present but None count as absent
    assert run("offers", click("search", query=None, context={"referrer": None}),
               consent(categories=("browsing",)))[0] == "nothing_permitted"
    # context fields count as beyond the envelope
    _, out, _ = run("offers", click("login"), consent())
    assert out["context"] == {"referrer": "https://search.example/"} and "method" not in out


def test_every_reason_code_is_reachable():
    seen = set()
    cases = [
        ("offers", click(subject=None), None), ("offers", click(), None),
        ("offers", click(), consent(granted=())), ("offers", click(), consent(granted_at=NOW)),
        ("offers", click(), consent(expires_at=NOW - 1)), ("partner_ads", click(), consent(gpc=True)),
        ("partner_ads", click(), consent(jurisdiction="CN")),
        ("offers", click(), consent(categories=())),
        ("offers", click(), consent(objections=["profiling"])),
    ]
    for engine, ev, rec in cases:
        seen.add(run(engine, ev, rec)[0])
    assert seen == set(REASONS)


def test_partner_ads_projection_pseudonymizes_and_coarsens():
    _, out, sent = run("partner_ads", purchase(), consent())
    pa = POLICY.engine("partner_ads")
    assert out["subject_id"] == pa.pseudonym("s-1") != "s-1"
    assert out["context"] == {"referrer": "https://search.example/", "geo": {"country": "DE"}}
    # purchase: browsing has nothing top-level in a purchase, location has shipping_address
    assert out["shipping_address"]["country"] == "DE"
    for f in ("order_id", "items", "email", "phone", "payment_method", "total"):
        assert f not in out
    assert pa.category_names(sent) == ["browsing", "location"]
    # geo without a country: the coarsened field is absent
    ev = click("search", query=None, context={"geo": {"city": "Berlin"}, "referrer": None})
    assert run("partner_ads", ev, consent())[0] == "nothing_permitted"


def test_email_gets_contact_and_history_never_payment():
    _, out, sent = run("email", purchase(), consent())
    # encrypted (CONTRACT §8): an envelope in place of the value, which decrypts to it
    assert out["email"].startswith("pfe1.") and out["phone"].startswith("pfe1.")
    assert decrypt_value(RING, "s-1", "email", out["email"]) == "jane@example.com"
    assert decrypt_value(RING, "s-1", "phone", out["phone"]) == "+49 30 123456"
    assert out["items"] == [{"product_id": "p-1", "category": "shoes", "quantity": 1, "price": 59.9}]
    assert "payment_method" not in out and "context" not in out and "shipping_address" not in out
    assert POLICY.engine("email").category_names(sent) == ["purchase_history", "contact"]


def test_category_must_be_granted_by_the_subject_too():
    _, out, _ = run("email", purchase(), consent(categories=("contact",)))
    assert "email" in out and "order_id" not in out and "items" not in out


def test_fields_outside_the_schema_are_never_copied():
    ev = purchase(secret_field="x", items=[{"product_id": "p", "price": 1, "note": "x"}, "junk", None])
    ev["context"]["geo"]["street"] = "x"
    ev["context"]["extra"] = "x"
    _, out, _ = run("offers", ev, consent())
    assert "secret_field" not in out and out["items"] == [{"product_id": "p", "price": 1}]
    assert out["context"] == {"referrer": "https://search.example/"}
    # a field of another event type is not emitted either
    _, out, _ = run("offers", click("page_view", email="x@example.com", product_id="p-9"), consent())
    assert "product_id" not in out


def _policy_with(engine: str, transforms: dict, subject: str | None = None):
    doc = doc_copy(DOC)
    e = next(x for x in doc["engines"] if x["name"] == engine)
    e["transforms"] = transforms
    if subject:
        e["subject"] = subject
    return doc, compile_policy(doc, secret=SECRET)


def test_transform_drop_and_keep():
    doc, policy = _policy_with("email", {"email": "drop", "phone": "keep"})
    _, out, _ = run("email", purchase(), consent(), policy=policy, doc=doc)
    assert "email" not in out and out["phone"] == "+49 30 123456"
    # dropping the only permitted field leaves nothing
    doc, policy = _policy_with("offers", {"query": "drop", "context.referrer": "drop"})
    assert run("offers", click("search"), consent(), policy=policy, doc=doc)[0] == "nothing_permitted"


def test_transform_pseudonymize_field():
    doc, policy = _policy_with("email", {"email": "pseudonymize", "order_id": "pseudonymize"})
    _, out, _ = run("email", purchase(), consent(), policy=policy, doc=doc)
    assert len(out["email"]) == 32 and out["email"] != "jane@example.com"
    assert len(out["order_id"]) == 32 and out["order_id"] != out["email"]
    assert out["phone"] == "+49 30 123456"
    _, again, _ = run("email", purchase(event_id="e-2"), consent(), policy=policy, doc=doc)
    assert again["email"] == out["email"]  # stable


def test_transform_coarsen_country_on_address():
    doc, policy = _policy_with("partner_ads", {"shipping_address": "coarsen:country"})
    _, out, _ = run("partner_ads", purchase(), consent(), policy=policy, doc=doc)
    assert out["shipping_address"] == {"country": "DE"}
    assert out["context"]["geo"] == {"country": "DE", "region": "BE", "city": "Berlin", "lat": 52.5, "lon": 13.4}


def test_transform_coarsen_hour():
    doc, policy = _policy_with("offers", {"ts": "coarsen:hour"})
    ts = NOW - HOUR + 1234
    _, out, _ = run("offers", click(ts=ts), consent(), policy=policy, doc=doc)
    assert out["ts"] == ts - ts % HOUR and out["ts"] % HOUR == 0


def test_subject_keep_vs_pseudonymize():
    doc, policy = _policy_with("offers", {}, subject="pseudonymize")
    _, out, _ = run("offers", click(), consent(), policy=policy, doc=doc)
    assert out["subject_id"] == policy.engine("offers").pseudonym("s-1")
    assert out["subject_id"] != POLICY.engine("partner_ads").pseudonym("s-1")


def test_unknown_event_type_uses_all_known_fields():
    ev = click("page_view", product_id="p-1")
    ev["event_type"] = "wishlist"
    _, out, _ = run("offers", ev, consent())
    assert out["product_id"] == "p-1" and out["url"]


def test_output_is_a_fresh_dict_and_input_untouched():
    ev = purchase()
    before = doc_copy(ev)
    for name in ("offers", "email", "partner_ads"):
        run(name, ev, consent())
    assert ev == before


def test_purposes_relied_on_in_policy_order_of_needs():
    _, out, _ = run("partner_ads", click(), consent())
    assert out["purposes"] == ["personalization", "third_party_sharing"]
    assert set(PURPOSES) >= set(out["purposes"])


def test_encrypt_is_checked_by_the_reference():
    """The oracle catches a wrong envelope: another field's, another subject's, a tampered
    one, or plaintext; without keys it still checks the shape and the length."""
    ev = purchase()
    _, out, _ = run("email", ev, consent())
    keys = ring_keys(RING)
    ok = reference.violations(out, ev, consent(), "email", DOC, NOW, SECRET, keys)
    assert ok == []
    assert reference.violations(out, ev, consent(), "email", DOC, NOW, SECRET) == []  # shape only
    swapped = dict(out, email=out["phone"])
    assert any("'email'" in p for p in reference.violations(swapped, ev, consent(), "email", DOC, NOW, SECRET, keys))
    plain = dict(out, email="jane@example.com")
    for k in (keys, None):
        assert any("not an encrypted-field envelope" in p
                   for p in reference.violations(plain, ev, consent(), "email", DOC, NOW, SECRET, k))
    tampered = dict(out, email=out["email"][:-2] + ("AA" if out["email"][-2:] != "AA" else "BB"))
    assert any("does not decrypt" in p for p in reference.violations(tampered, ev, consent(), "email", DOC, NOW,
                                                                      SECRET, keys))
    # a shredded key: the plaintext cannot be checked, and the oracle says so
    assert any("unknown" in p for p in reference.violations(out, ev, consent(), "email", DOC, NOW, SECRET,
                                                             lambda s, v: None))


def test_encrypt_is_refused_on_a_pseudonymizing_engine():
    with pytest.raises(Exception, match="encrypted fields need subject"):
        _policy_with("partner_ads", {"url": "encrypt"}, subject="pseudonymize")
