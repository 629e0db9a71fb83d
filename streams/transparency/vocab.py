"""Words a customer reads, in English and German, and dates formatted per language.

Names not listed (a purpose, category or engine a custom policy adds) fall back to
the name itself, so a summary never fails on a policy it does not know.
All dates are UTC calendar dates: a summary is about days, not hours.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"],
}

WORDS: dict[str, dict[str, Any]] = {
    "en": {
        "and": "and",
        # a category as "your ..." and as a bare noun phrase; plural ones take "were"
        "your": {"browsing": "your browsing", "purchase_history": "your purchase history",
                 "connection_data": "your connection data", "location": "your location",
                 "contact": "your contact details", "payment": "your payment data"},
        "bare": {"browsing": "browsing data", "purchase_history": "purchase history",
                 "connection_data": "connection data", "location": "location data",
                 "contact": "contact details", "payment": "payment data"},
        "plural": {"contact"},
        "bare_plural": {"contact"},
        "purpose": {"personalization": "personalization", "marketing_email": "marketing e-mails",
                    "marketing_phone": "marketing calls", "analytics": "analytics",
                    "third_party_sharing": "sharing with partners", "support": "customer support"},
        # engines, as the object of "by ..." / "to ..."
        "engine": {"offers": "our offers engine", "email": "our e-mail newsletter",
                   "partner_ads": "our advertising partner"},
        "engine_first": "our service “{name}”",
        "engine_third": "the partner “{name}”",
        "reason": {
            "purpose_denied": "you did not consent", "no_consent": "we have no consent from you",
            "objected": "you objected", "before_grant": "it happened before you consented",
            "expired": "your consent had expired",
            "opt_out": "you opted out of sale and sharing (Global Privacy Control)",
            "region_blocked": "this recipient may not receive data from your region",
            "nothing_permitted": "your consent allowed none of the data it may receive",
            "anonymous": "the events were anonymous",
        },
        "status": {"granted": "granted", "denied": "denied", "withdrawn": "withdrawn", None: "not named"},
        "notice": {"reconfirm": "reminder to re-confirm", "expired": "notice that consent expired"},
        "data_key": {"present": "kept (your encrypted fields can be read by the recipients allowed to)",
                     "shredded": "destroyed: encrypted copies of your data can no longer be read",
                     "none": "none", "unknown": "none"},
        "labels": {
            "title": "Your data and how it was used", "summary": "Summary", "recipients": "Recipients",
            "recipient": "Recipient", "party": "Party", "first": "first party (us)", "third": "third party",
            "purposes": "Purposes", "sent": "Events sent", "categories": "Data categories sent",
            "period": "Period", "consent_versions": "Consent versions", "not_sent": "Not sent (why)",
            "consent": "Your consent over time", "date": "Date", "change": "What changed",
            "signals": "Narrowed by signals", "notices": "Reminders", "notices_sent": "Sent",
            "notices_pending": "Pending", "erasure": "Erasure", "receipts": "Erasure receipts",
            "data_key": "Data key", "none": "none", "kind": "Kind", "purpose": "Purpose",
            "expires": "Consent ends", "due": "Due", "pseudonym": "received a pseudonym, not your id",
            "tombstone": "you asked to be forgotten", "malformed": "record rejected: treated as no consent",
            "generated": "Generated", "policy": "policy", "export": "Download the JSON export",
            "no_changes": "no change", "dlq": "Records set aside as unreadable",
        },
    },
    "de": {
        "and": "und",
        "your": {"browsing": "Ihr Surfverhalten", "purchase_history": "Ihre Kaufhistorie",
                 "connection_data": "Ihre Verbindungsdaten", "location": "Ihr Standort",
                 "contact": "Ihre Kontaktdaten", "payment": "Ihre Zahlungsdaten"},
        "bare": {"browsing": "Surfdaten", "purchase_history": "Kaufhistorie",
                 "connection_data": "Verbindungsdaten", "location": "Standortdaten",
                 "contact": "Kontaktdaten", "payment": "Zahlungsdaten"},
        "plural": {"connection_data", "contact", "payment"},
        "bare_plural": {"browsing", "connection_data", "location", "contact", "payment"},
        "purpose": {"personalization": "Personalisierung", "marketing_email": "Werbe-E-Mails",
                    "marketing_phone": "Werbeanrufe", "analytics": "Analysen",
                    "third_party_sharing": "die Weitergabe an Partner", "support": "den Kundenservice"},
        # engines in the dative ("von ..." / "an ...")
        "engine": {"offers": "unserer Angebots-Engine", "email": "unserem E-Mail-Newsletter",
                   "partner_ads": "unserem Werbepartner"},
        "engine_first": "unserem Dienst „{name}“",
        "engine_third": "dem Partner „{name}“",
        "reason": {
            "purpose_denied": "Sie haben nicht eingewilligt", "no_consent": "uns liegt keine Einwilligung vor",
            "objected": "Sie haben widersprochen", "before_grant": "es geschah vor Ihrer Einwilligung",
            "expired": "Ihre Einwilligung war abgelaufen",
            "opt_out": "Sie haben Verkauf und Weitergabe widersprochen (Global Privacy Control)",
            "region_blocked": "dieser Empfänger darf keine Daten aus Ihrer Region erhalten",
            "nothing_permitted": "Ihre Einwilligung erlaubte keine der Daten, die er erhalten darf",
            "anonymous": "die Ereignisse waren anonym",
        },
        "status": {"granted": "erteilt", "denied": "abgelehnt", "withdrawn": "widerrufen", None: "nicht genannt"},
        "notice": {"reconfirm": "Erinnerung zur Bestätigung", "expired": "Hinweis: Einwilligung abgelaufen"},
        "data_key": {"present": "vorhanden (berechtigte Empfänger können Ihre verschlüsselten Felder lesen)",
                     "shredded": "vernichtet: verschlüsselte Kopien Ihrer Daten sind nicht mehr lesbar",
                     "none": "keiner", "unknown": "keiner"},
        "labels": {
            "title": "Ihre Daten und ihre Verwendung", "summary": "Zusammenfassung", "recipients": "Empfänger",
            "recipient": "Empfänger", "party": "Art", "first": "wir selbst", "third": "Drittanbieter",
            "purposes": "Zwecke", "sent": "Gesendete Ereignisse", "categories": "Gesendete Datenkategorien",
            "period": "Zeitraum", "consent_versions": "Einwilligungsstände", "not_sent": "Nicht gesendet (warum)",
            "consent": "Ihre Einwilligung im Zeitverlauf", "date": "Datum", "change": "Was sich änderte",
            "signals": "Eingeschränkt durch Signale", "notices": "Erinnerungen", "notices_sent": "Gesendet",
            "notices_pending": "Ausstehend", "erasure": "Löschung", "receipts": "Löschbestätigungen",
            "data_key": "Datenschlüssel", "none": "keine", "kind": "Art", "purpose": "Zweck",
            "expires": "Einwilligung endet", "due": "Fällig", "pseudonym": "erhielt ein Pseudonym, nicht Ihre Kennung",
            "tombstone": "Sie haben die Löschung verlangt",
            "malformed": "Datensatz abgewiesen: gilt als keine Einwilligung",
            "generated": "Erstellt", "policy": "Richtlinie", "export": "JSON-Export herunterladen",
            "no_changes": "keine Änderung", "dlq": "Als unlesbar beiseitegelegte Datensätze",
        },
    },
}


def words(lang: str) -> dict[str, Any]:
    if lang not in WORDS:
        raise ValueError(f"unknown language {lang!r} (known: {', '.join(WORDS)})")
    return WORDS[lang]


def _day(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()


def fmt_date(ms: int | None, lang: str) -> str:
    """``3 March 2026`` / ``3. März 2026`` (UTC); an empty string for None."""
    if ms is None:
        return ""
    d = _day(ms)
    month = MONTHS[lang][d.month - 1]
    return f"{d.day}. {month} {d.year}" if lang == "de" else f"{d.day} {month} {d.year}"


def fmt_range(first: int, last: int, lang: str) -> str:
    """The span between two days, sharing month and year where they do:
    ``3 and 9 March 2026`` / ``dem 3. und 9. März 2026``."""
    a, b = _day(first), _day(last)
    m = MONTHS[lang]
    if lang == "de":
        if (a.year, a.month) == (b.year, b.month):
            return f"dem {a.day}. und {b.day}. {m[b.month - 1]} {b.year}"
        if a.year == b.year:
            return f"dem {a.day}. {m[a.month - 1]} und dem {b.day}. {m[b.month - 1]} {b.year}"
        return f"dem {fmt_date(first, lang)} und dem {fmt_date(last, lang)}"
    if (a.year, a.month) == (b.year, b.month):
        return f"{a.day} and {b.day} {m[b.month - 1]} {b.year}"
    if a.year == b.year:
        return f"{a.day} {m[a.month - 1]} and {b.day} {m[b.month - 1]} {b.year}"
    return f"{fmt_date(first, lang)} and {fmt_date(last, lang)}"


def same_day(a: int, b: int) -> bool:
    return _day(a) == _day(b)


def join_and(items: Sequence[str], lang: str) -> str:
    """``a, b and c`` / ``a, b und c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {words(lang)['and']} " + items[-1]


def engine_name(name: str, party: str, lang: str) -> str:
    w = words(lang)
    if name in w["engine"]:
        return w["engine"][name]
    return (w["engine_third"] if party == "third" else w["engine_first"]).format(name=name)


def word(lang: str, table: str, name: Any) -> str:
    return words(lang)[table].get(name, str(name))


def signal_name(signal: str) -> str:
    """``tcf`` -> ``TCF``, ``gpp.usnat`` -> ``GPP (usnat)``, ``consent_mode`` -> ``Consent Mode``."""
    if signal.startswith("gpp."):
        return f"GPP ({signal[4:]})"
    return {"tcf": "TCF", "gpp": "GPP", "consent_mode": "Consent Mode", "sec_gpc": "Sec-GPC"}.get(signal, signal)
