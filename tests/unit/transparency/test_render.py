"""Text (en, de), JSON export against its schema, and the HTML page, from synthetic summaries."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import jsonschema
import pytest

from streams.config import PROJECT_ROOT
from streams.transparency import render_summary
from streams.transparency.export import export_dict
from streams.transparency.records import ConsentEntry, ErasureRow, KeyEntry, NoticeRow
from streams.transparency.summary import build_summary
from tests.unit.transparency import synth
from tests.unit.transparency.synth import ms

SCHEMA = json.loads((PROJECT_ROOT / "schemas" / "subject_export.schema.json").read_text())
PSEUDONYM_SECRET = b"test-secret"


def rich_summary():
    """Every part filled: signals, notices, erasure receipts, data key, a pseudonymized recipient."""
    rec = synth.consent_record(consent_mode={"ad_user_data": "denied", "analytics_storage": "granted"})
    rec["purposes"]["third_party_sharing"] = {"status": "granted", "granted_at": synth.GRANTED_AT,
                                              "expires_at": None}
    rec["objections"] = ["direct_marketing"]
    partner = synth.new_form(9, ms(2026, 3, 6), [
        {"engine": "offers", "outcome": "emitted", "reason": None, "categories_sent": ["browsing"]},
        {"engine": "email", "outcome": "dropped", "reason": "objected", "categories_sent": []},
        {"engine": "partner_ads", "outcome": "emitted", "reason": None, "categories_sent": ["browsing", "location"]},
    ])
    raw = [synth.browsing_new(1, ms(2026, 3, 3)), partner]
    src = synth.sources(
        raw, [ConsentEntry(0, None, "record", rec), ConsentEntry(1, ms(2026, 3, 9), "tombstone")],
        notices=[NoticeRow("reconfirm", "personalization", synth.EXPIRES_AT, ms(2027, 1, 30), synth.UPDATED)],
        erasures=[ErasureRow(e, ms(2026, 3, 9), synth.UPDATED, e == "partner_ads") for e in synth.ENGINES],
        keys=[KeyEntry(0, None, True), KeyEntry(1, None, False)])
    return build_summary(synth.view(), "cust-1", src, synth.NOW)


# ------------------------------------------------------------------ text
def test_text_en_reads_like_the_issue_example() -> None:
    t = render_summary(synth.standard_summary(), "text", "en")
    assert ("Between 3 and 9 March 2026 your browsing was used by our offers engine for personalization "
            "(3 events; consent given 1 March 2026, valid until 1 March 2027).") in t
    assert "Your purchase history and your contact details were not used for marketing e-mails by our " \
           "e-mail newsletter: you did not consent." in t
    assert "connection data" in t and "were never shared." in t
    assert "1 of your records could not be read" in t


def test_text_de_with_german_dates_and_grammar() -> None:
    t = render_summary(synth.standard_summary(), "text", "de")
    assert ("Zwischen dem 3. und 9. März 2026 wurde Ihr Surfverhalten von unserer Angebots-Engine für "
            "Personalisierung verwendet (3 Ereignisse; Einwilligung erteilt am 1. März 2026, gültig bis "
            "1. März 2027).") in t
    assert "wurden nicht für Werbe-E-Mails von unserem E-Mail-Newsletter verwendet: Sie haben nicht eingewilligt." in t
    assert "nie weitergegeben" in t


def test_text_names_erasure_signals_and_notices() -> None:
    en = render_summary(rich_summary(), "text", "en")
    assert "You asked us to forget you on 9 March 2026: 3 recipients were told to delete your data, " \
           "and the key to your encrypted data was destroyed." in en
    assert "It received a pseudonym instead of your customer id." in en
    assert "Reminders sent: reminder to re-confirm (personalization, 30 January 2027)" in en
    de = render_summary(rich_summary(), "text", "de")
    assert "Sie haben am 9. März 2026 verlangt, dass wir Sie vergessen" in de


def test_text_single_day_and_month_spanning_ranges() -> None:
    one = build_summary(synth.view(), "c", synth.sources([synth.browsing_new(1, ms(2026, 3, 3))]), synth.NOW)
    assert "On 3 March 2026 your browsing was used" in render_summary(one, "text", "en")
    assert "Am 3. März 2026 wurde Ihr Surfverhalten" in render_summary(one, "text", "de")
    two = build_summary(synth.view(), "c", synth.sources([synth.browsing_new(1, ms(2026, 2, 27)),
                                                          synth.browsing_new(2, ms(2026, 3, 2))]), synth.NOW)
    assert "Between 27 February and 2 March 2026" in render_summary(two, "text", "en")
    assert "Zwischen dem 27. Februar und dem 2. März 2026" in render_summary(two, "text", "de")


def test_no_records_at_all() -> None:
    s = build_summary(synth.view(), "nobody", synth.sources([], []), synth.NOW)
    t = render_summary(s, "text", "en")
    assert "We have recorded no use of your data." in t and "We have no consent record from you." in t
    assert "Reminders sent: none. Pending: none." in t


@pytest.mark.parametrize("fmt", ["text", "json", "html"])
@pytest.mark.parametrize("lang", ["en", "de"])
def test_no_event_field_value_and_no_pseudonym_in_any_rendering(fmt: str, lang: str) -> None:
    from streams.engine.policy import load_policy

    out = render_summary(rich_summary(), fmt, lang)
    assert synth.SECRET_URL not in out and "SENTINEL" not in out
    pseudonym = load_policy(None, secret=PSEUDONYM_SECRET).engine("partner_ads").pseudonym("cust-1")
    assert pseudonym not in out


def test_unknown_language_is_named() -> None:
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        render_summary(synth.standard_summary(), "text", "fr")  # type: ignore[arg-type]


# ------------------------------------------------------------------ export
@pytest.mark.parametrize("make", [synth.standard_summary, rich_summary])
def test_export_validates_against_the_schema(make) -> None:  # noqa: ANN001
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    doc = json.loads(render_summary(make(), "json"))
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert doc == json.loads(json.dumps(export_dict(make())))


def test_schema_rejects_an_export_with_a_field_it_does_not_document() -> None:
    doc = json.loads(render_summary(rich_summary(), "json"))
    doc["recipients"][2]["pseudonym"] = "abc"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_export_content() -> None:
    doc = json.loads(render_summary(rich_summary(), "json"))
    partner = doc["recipients"][2]
    assert partner["engine"] == "partner_ads" and partner["pseudonymized"] is True
    assert partner["categories"] == {"browsing": 1, "location": 1}
    assert doc["recipients"][1]["dropped"] == {"objected": 1, "purpose_denied": 1}
    assert doc["consent"]["erased"] is True and doc["consent"]["current"] is None
    narrowed = doc["consent"]["history"][0]["narrowed_by"]
    assert [(n["signal"], n["target"]) for n in narrowed] == [("consent_mode", "third_party_sharing")]
    assert doc["erasure"]["data_key"] == "shredded" and len(doc["erasure"]["receipts"]) == 3
    assert doc["notices"]["sent"][0]["kind"] == "reconfirm"


# ------------------------------------------------------------------ html
class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href") and v and re.match(r"^(https?:)?//", v):
                self.external.append(v)
        if tag == "link":
            self.external.append(dict(attrs).get("href", ""))


@pytest.mark.parametrize("lang", ["en", "de"])
def test_html_is_one_self_contained_page(lang: str) -> None:
    page = render_summary(rich_summary(), "html", lang)
    p = _Tags()
    p.feed(page)
    assert p.external == [] and "script" not in p.tags and "style" in p.tags
    assert f'<html lang="{lang}">' in page
    assert 'data-engine="partner_ads"' in page and 'data-category="location" data-count="1"' in page
    first_paragraph = render_summary(rich_summary(), "text", lang).split("\n\n")[1]
    assert first_paragraph.replace("'", "&#39;") in page


def test_html_escapes_the_subject_id() -> None:
    s = build_summary(synth.view(), "<script>alert(1)</script>", synth.sources([], []), synth.NOW)
    page = render_summary(s, "html", "en")
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
