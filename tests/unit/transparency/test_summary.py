"""SubjectSummary from synthetic rows: both decision-record forms, consent history, notices, erasure."""

from __future__ import annotations

from streams.transparency.records import ConsentEntry, ErasureRow, KeyEntry, NoticeRow, decisions_from
from streams.transparency.summary import build_summary
from tests.unit.transparency import synth
from tests.unit.transparency.synth import ms


def test_per_engine_counts_categories_times_and_versions() -> None:
    s = synth.standard_summary()
    offers, email, partner = s.engines
    assert (offers.engine, offers.sent, offers.categories) == ("offers", 3, {"browsing": 3})
    assert (offers.first_ts, offers.last_ts) == (ms(2026, 3, 3), ms(2026, 3, 9))
    assert offers.consent_versions == [synth.UPDATED]
    assert email.sent == 0 and email.dropped == {"purpose_denied": 3}
    assert partner.pseudonymized and partner.party == "third" and partner.dropped == {"purpose_denied": 3}
    assert s.dlq == {"invalid_json": 1}
    assert s.never_shared == ["purchase_history", "connection_data", "location", "contact", "payment"]


def test_old_and_new_decision_forms_give_the_same_summary() -> None:
    days = [ms(2026, 3, 3), ms(2026, 3, 5), ms(2026, 3, 9)]
    new = [synth.browsing_new(i, t) for i, t in enumerate(days)]
    old = [r for i, t in enumerate(days) for r in synth.browsing_old(i, t)]
    a = build_summary(synth.view(), "cust-1", synth.sources(new), synth.NOW)
    b = build_summary(synth.view(), "cust-1", synth.sources(old), synth.NOW)
    assert a.engines == b.engines and a.engines[0].sent == 3


def test_redelivered_decisions_count_once() -> None:
    raw = [synth.browsing_new(1, ms(2026, 3, 3))] * 3 + synth.browsing_old(2, ms(2026, 3, 4)) * 2
    s = build_summary(synth.view(), "cust-1", synth.sources(raw), synth.NOW)
    assert s.engines[0].sent == 2


def test_shared_drop_without_engine_list_counts_for_every_engine() -> None:
    raw = [synth.new_form(1, ms(2026, 3, 3), None, reason="no_consent")]
    ds = decisions_from(raw, synth.ENGINES)
    assert [(e.engine, e.reason) for e in ds[0].engines] == [(n, "no_consent") for n in synth.ENGINES]
    s = build_summary(synth.view(), "cust-1", synth.sources(raw), synth.NOW)
    assert all(u.dropped == {"no_consent": 1} for u in s.engines)


def test_consent_history_changes_and_current_state() -> None:
    first = synth.consent_record()
    second = synth.consent_record(updated_at=synth.UPDATED + synth.DAY)
    second["purposes"]["personalization"] = {"status": "withdrawn", "granted_at": None, "expires_at": None}
    older = synth.consent_record(updated_at=synth.UPDATED - synth.DAY)  # arrives late: loses
    entries = [ConsentEntry(0, None, "record", first), ConsentEntry(1, None, "record", second),
               ConsentEntry(2, None, "record", older)]
    s = build_summary(synth.view(), "cust-1", synth.sources([], entries), synth.NOW)
    assert s.current_consent is not None and s.current_consent.offset == 1
    assert {"what": "purpose", "name": "personalization", "before": "granted", "after": "withdrawn"} \
        in s.consent_history[1].changes
    assert s.notices_pending == []  # nothing granted with an end in force


def test_tombstone_erases_and_receipts_and_shredded_key() -> None:
    entries = [ConsentEntry(0, None, "record", synth.consent_record()), ConsentEntry(1, ms(2026, 3, 9), "tombstone")]
    receipts = [ErasureRow("offers", ms(2026, 3, 9), synth.UPDATED, False),
                ErasureRow("partner_ads", ms(2026, 3, 9), synth.UPDATED, True)]
    keys = [KeyEntry(0, None, True), KeyEntry(1, None, False)]
    s = build_summary(synth.view(), "cust-1", synth.sources([], entries, erasures=receipts, keys=keys), synth.NOW)
    assert s.erased and s.current_consent is None
    assert [(r.engine, r.pseudonymized) for r in s.receipts] == [("offers", False), ("partner_ads", True)]
    assert s.data_key == "shredded"


def test_missing_topics_read_as_none() -> None:
    s = synth.standard_summary()
    assert not s.notices_available and not s.erasures_available and s.data_key == "unknown"
    assert s.receipts == [] and s.notices_sent == []


def test_sent_notices_are_not_pending() -> None:
    sent = [NoticeRow("reconfirm", "personalization", synth.EXPIRES_AT, ms(2027, 1, 30), synth.UPDATED)]
    s = build_summary(synth.view(), "cust-1", synth.sources([], notices=sent), synth.NOW)
    assert [(n.kind, n.purpose) for n in s.notices_pending] == [("expired", "personalization")]
    assert s.notices_pending[0].due_at == synth.EXPIRES_AT
    assert len(s.notices_sent) == 1


def test_consent_mode_signal_narrowing_is_named() -> None:
    rec = synth.consent_record(consent_mode={"ad_storage": "granted", "ad_user_data": "denied",
                                             "ad_personalization": "granted", "analytics_storage": "granted"})
    rec["purposes"]["third_party_sharing"] = {"status": "granted", "granted_at": synth.GRANTED_AT,
                                              "expires_at": None}
    s = build_summary(synth.view(), "cust-1", synth.sources([], [ConsentEntry(0, None, "record", rec)]), synth.NOW)
    cur = s.current_consent
    assert cur is not None and cur.signals == ["consent_mode"]
    assert [(n.signal, n.target) for n in cur.narrowed] == [("consent_mode", "third_party_sharing")]
    assert cur.effective["third_party_sharing"] is False and cur.effective["personalization"] is True


def test_undecodable_signal_makes_the_record_malformed() -> None:
    rec = synth.consent_record(tcf="not-a-tc-string")
    s = build_summary(synth.view(), "cust-1", synth.sources([], [ConsentEntry(0, None, "record", rec)]), synth.NOW)
    assert s.current_consent is not None and s.current_consent.kind == "malformed"
    assert "not-a-tc-string" not in (s.current_consent.problem or "")
