"""Policy loading: the default compiles to CONTRACT §8; bad policies name the offender."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.engine import reference
from streams.engine.policy import (
    DEFAULT_POLICY_PATH, PolicyError, compile_policy, engine_key, load_policy,
)

from .helpers import SECRET, default_doc, doc_copy


def _engine(doc, name):
    return next(e for e in doc["engines"] if e["name"] == name)


def test_default_policy_is_contract_section_8():
    cp = load_policy(secret=SECRET)
    assert cp.version
    assert cp.purposes == ("personalization", "marketing_email", "marketing_phone", "analytics",
                           "third_party_sharing", "support")
    assert cp.category_fields == {
        "browsing": ("url", "title", "query", "product_id", "category", "price", "quantity", "context.referrer"),
        "purchase_history": ("order_id", "items", "total", "currency"),
        "connection_data": ("context.ip", "context.user_agent", "context.device_id", "context.session_id", "method"),
        "location": ("context.geo", "shipping_address"),
        "contact": ("email", "phone"),
        "payment": ("payment_method",),
    }
    got = {e.name: (e.topic, e.party, e.needs, e.categories, e.jurisdictions, e.pseudonymize_subject)
           for e in cp.engines}
    assert got == {
        "offers": ("personalization.offers", "first", ("personalization",), ("browsing", "purchase_history"),
                   None, False),
        "email": ("personalization.email", "first", ("marketing_email",), ("purchase_history", "contact"),
                  None, False),
        "partner_ads": ("personalization.partner_ads", "third", ("personalization", "third_party_sharing"),
                        ("browsing", "location"), frozenset({"EU", "UK", "US", "US-CA"}), True),
    }
    pa = cp.engine("partner_ads")
    assert {p: c for p, c in pa.transforms.items()} == {"context.geo": 3}  # coarsen:country
    assert cp.engine("offers").transforms == {}
    # §8: the email engine receives email and phone encrypted (§10)
    assert cp.engine("email").transforms == {"email": 5, "phone": 5}  # encrypt
    assert cp.engine("email").encrypted == {"email", "phone"} and cp.encrypts


def test_masks_and_plans_are_precomputed():
    cp = load_policy(secret=SECRET)
    offers = cp.engine("offers")
    assert offers.needs_mask == 1 << cp.vocab.purpose_index["personalization"]
    assert offers.categories_mask == (1 << cp.vocab.category_index["browsing"]) | (
        1 << cp.vocab.category_index["purchase_history"])
    # per event type whitelist: a page view plan holds browsing fields of a page view only
    assert [e[4] for e in offers.plans["page_view"]] == ["url", "title", "context.referrer"]
    assert [e[4] for e in offers.plans["purchase"]] == ["context.referrer", "order_id", "items", "total", "currency"]
    # payment_method is in no plan of any engine
    for e in cp.engines:
        for plan in [*e.plans.values(), e.default_plan]:
            assert all(entry[4] != "payment_method" for entry in plan)


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: _engine(d, "offers")["may_receive"].append("browsingg"), "unknown category 'browsingg'"),
    (lambda d: d["categories"]["browsing"].append("context.ipp"), "unknown field 'context.ipp'"),
    (lambda d: d["categories"]["browsing"].append("items.price"), "unknown field 'items.price'"),
    (lambda d: _engine(d, "email")["needs"].append("marketing_emial"), "unknown purpose 'marketing_emial'"),
    (lambda d: _engine(d, "partner_ads")["transforms"].update({"context.geo": "blur"}), "unknown transform 'blur'"),
    (lambda d: d["engines"].append(dict(_engine(d, "offers"), topic="x")), "engine name 'offers' is duplicated"),
    (lambda d: _engine(d, "offers")["may_receive"].append("payment"), "may_receive 'payment'"),
    (lambda d: d["categories"]["browsing"].append("payment_method"), "field 'payment_method' is payment data"),
    (lambda d: (d["categories"]["payment"].clear(), d["categories"]["browsing"].append("payment_method")),
     "field 'payment_method' is payment data"),
    (lambda d: d["categories"]["contact"].append("url"), "field 'url' is listed in both 'browsing' and 'contact'"),
    (lambda d: d["categories"]["contact"].append("context.geo.city"), "'context.geo.city' overlaps 'context.geo'"),
    (lambda d: d["categories"]["contact"].append("ts"), "field 'ts' is part of the envelope"),
    (lambda d: d["categories"]["contact"].append("anonymous_id"), "field 'anonymous_id' is part of the envelope"),
    (lambda d: d.update(purposes=[p for p in d["purposes"] if p != "third_party_sharing"]),
     "unknown purpose 'third_party_sharing'"),
    (lambda d: _engine(d, "partner_ads")["needs"].remove("third_party_sharing") or d.update(
        purposes=[p for p in d["purposes"] if p != "third_party_sharing"]),
     "needs purpose 'third_party_sharing'"),
    (lambda d: _engine(d, "offers").update(party="second"), "'party' must be"),
    (lambda d: _engine(d, "offers").update(jurisdictions=[]), "'jurisdictions' is empty"),
    (lambda d: _engine(d, "offers").update(jurisdictions="EU"), "'jurisdictions' must be"),
    (lambda d: _engine(d, "offers").update(needs=[]), "'needs' is empty"),
    (lambda d: _engine(d, "offers").update(need=["x"]), "unknown key 'need'"),
    (lambda d: d.update(engine=[]), "unknown key 'engine'"),
    (lambda d: d.pop("version"), "'version'"),
    (lambda d: _engine(d, "offers").update(transforms={"email": "drop"}), "which the engine may not receive"),
    (lambda d: _engine(d, "offers").update(transforms={"anonymous_id": "keep"}), "part of the envelope"),
    (lambda d: _engine(d, "offers").update(transforms={"ts": "drop"}), "only 'keep' and 'coarsen:hour'"),
    (lambda d: _engine(d, "offers").update(transforms={"url": "coarsen:hour"}), "'coarsen:hour' applies to"),
    (lambda d: _engine(d, "offers").update(transforms={"url": "coarsen:country"}), "'coarsen:country' applies to"),
    (lambda d: _engine(d, "offers").update(transforms={"nope": "keep"}), "unknown field 'nope'"),
    (lambda d: _engine(d, "offers").update(transforms={"items": "pseudonymize"}),
     "'pseudonymize' applies to text fields, not to 'items'"),
    (lambda d: _engine(d, "offers").update(transforms={"price": "pseudonymize"}),
     "'pseudonymize' applies to text fields, not to 'price'"),
    (lambda d: _engine(d, "offers").update(subject="hash"), "'subject' must be"),
    (lambda d: _engine(d, "email").update(topic="personalization.offers"), "already the topic of engine 'offers'"),
])
def test_policy_errors_name_the_offender(mutate, needle):
    doc = doc_copy(default_doc())
    mutate(doc)
    with pytest.raises(PolicyError) as ei:
        compile_policy(doc, secret=SECRET)
    assert needle in str(ei.value)


def test_missing_secret_says_which_setting():
    with pytest.raises(PolicyError) as ei:
        load_policy(secret=None)
    msg = str(ei.value)
    assert "partner_ads" in msg and "PFILTER_PSEUDONYM_KEY" in msg and "PFILTER_PSEUDONYM_KEY_FILE" in msg
    # field pseudonymization needs it too
    doc = doc_copy(default_doc())
    _engine(doc, "partner_ads").pop("subject")
    _engine(doc, "offers")["transforms"] = {"url": "pseudonymize"}
    with pytest.raises(PolicyError, match="engine 'offers' pseudonymizes fields"):
        compile_policy(doc, secret=b"")
    # a policy that never pseudonymizes needs no secret
    _engine(doc, "offers")["transforms"] = {}
    compile_policy(doc, secret=None)


def test_toml_errors_and_missing_file(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "x"\n[categories\n')
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(bad, secret=SECRET)
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "none.toml", secret=SECRET)
    dup = tmp_path / "dup.toml"
    dup.write_text(DEFAULT_POLICY_PATH.read_text().replace('name = "email"', 'name = "offers"'))
    with pytest.raises(PolicyError, match=f"{dup}.*engine name 'offers' is duplicated"):
        load_policy(dup, secret=SECRET)


def test_topic_defaults_to_prefix_plus_name():
    doc = doc_copy(default_doc())
    _engine(doc, "offers").pop("topic")
    cp = compile_policy(doc, secret=SECRET, topic_prefix="out.")
    assert cp.engine("offers").topic == "out.offers"


def test_pseudonym_stable_keyed_and_per_engine():
    cp = load_policy(secret=SECRET)
    cp2 = load_policy(secret=SECRET)
    other = load_policy(secret=b"another secret")
    pa = cp.engine("partner_ads")
    p = pa.pseudonym("s-1")
    assert len(p) == 32 and int(p, 16) >= 0
    assert p == cp2.engine("partner_ads").pseudonym("s-1")            # stable
    assert p != other.engine("partner_ads").pseudonym("s-1")          # keyed
    assert p != pa.pseudonym("s-2")
    assert p != cp.engine("offers").pseudonym("s-1")                  # per engine
    assert p == reference.pseudonym(SECRET, "partner_ads", "s-1")     # documented scheme
    assert engine_key(SECRET, "partner_ads") != engine_key(SECRET, "offers")
    assert pa.subject_ref("s-1") == p and cp.engine("offers").subject_ref("s-1") == "s-1"


def test_secret_never_in_repr():
    secret = b"super-secret-value-123"
    cp = load_policy(secret=secret)
    text = repr(cp) + "".join(repr(e) for e in cp.engines) + repr(cp.vocab)
    assert "super-secret" not in text
    assert secret.hex() not in text


def test_policy_check_command(tmp_path: Path, monkeypatch):
    from streams.commands.policy import policy

    monkeypatch.delenv("PFILTER_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("PFILTER_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.delenv("PFILTER_POLICY_FILE", raising=False)
    runner = CliRunner()
    ok = runner.invoke(policy, ["check"])
    assert ok.exit_code == 0, ok.output
    assert "partner_ads" in ok.output and "policy OK" in ok.output
    assert "PFILTER_PSEUDONYM_KEY" in ok.output  # the note about the run-time secret

    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_POLICY_PATH.read_text().replace('"browsing", "purchase_history"]',
                                                           '"browsing", "payment"]', 1))
    res = runner.invoke(policy, ["check", str(bad)])
    assert res.exit_code == 1
    assert "may_receive 'payment'" in res.output
