"""Consent signals, legal bases and objections end to end on the real broker, on both
runtimes (issue 11 "Done when"; CONTRACT §3, §5 steps 1a and 2, §8): the worker decodes the
TCF / GPP strings of the consent records, narrows through the default policy's [signals]
mapping, and `pfilter verify` judges every decision with the reference's own decoders."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.config import Settings
from streams.population.signals import gpp_string, tc_string, us_section
from streams.verify import render_report, run_verify
from tests.integration import kit
from tests.integration.test_worker import topics  # noqa: F401  (both runtimes: the same fixture)

pytestmark = pytest.mark.kafka

ENGINES = ("offers", "email", "partner_ads")
PARTNER_VENDOR = 755  # the default policy's [signals.tcf.engines.partner_ads] vendor_id
USNAT = 7


def _reasons(ds: list[dict], event_id: str) -> dict[str, str]:
    return {d["engine"]: (d["reason"] or d["outcome"]) for d in ds if d["event_id"] == event_id}


def _wait_events(s: Settings, *event_ids: str, timeout: float = 90.0) -> list[dict]:
    """The flattened decision log once every engine has a decision for each of these events."""
    deadline = time.monotonic() + timeout
    while True:
        ds = kit.decisions(s)
        if all(len(_reasons(ds, e)) == len(ENGINES) for e in event_ids):
            return ds
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every event of {event_ids} decided after {timeout}s")
        time.sleep(0.5)


def test_signals_bases_and_objections_end_to_end(topics: Settings, tmp_path: Path) -> None:
    s = topics
    now = int(time.time() * 1000)
    every_tcf_purpose = range(1, 11)
    consents = {
        # TCF without purposes 5/6: personalization is narrowed away -> offers purpose_denied
        "s-tcf": kit.consent("s-tcf", now - kit.HOUR) | {
            "tcf": tc_string([1, 2, 3, 4, 7, 8, 9, 10], [1], [PARTNER_VENDOR])},
        # the same string with every purpose and the vendor narrows nothing
        "s-tcf-all": kit.consent("s-tcf-all", now - kit.HOUR) | {
            "tcf": tc_string(every_tcf_purpose, [1], [PARTNER_VENDOR])},
        # GPP usnat SaleOptOut=1: third_party_sharing denied -> partner_ads purpose_denied
        "s-sale": kit.consent("s-sale", now - kit.HOUR, jurisdiction="US") | {
            "gpp": gpp_string([(USNAT, us_section(USNAT, {"SaleOptOut": 1}, None))])},
        # GPP GPC subsection set: gpc -> partner_ads opt_out
        "s-gpc": kit.consent("s-gpc", now - kit.HOUR, jurisdiction="US") | {
            "gpp": gpp_string([(USNAT, us_section(USNAT, {"SaleOptOut": 2}, True))])},
    }
    li = {"status": "granted", "basis": "legitimate_interest", "granted_at": now - kit.DAY, "expires_at": None}
    denied = {"status": "denied", "granted_at": None, "expires_at": None}
    li_purposes = {"personalization": denied, "marketing_email": li, "third_party_sharing": denied}
    consents["s-li"] = kit.consent("s-li", now - kit.HOUR, purposes=li_purposes)

    w = kit.start_worker(s, tmp_path)
    try:
        p = kit.producer(s)
        for sid, rec in consents.items():
            kit.send(p, s.topic_consent, sid, rec)
        for sid in consents:
            kit.send(p, s.topic_purchases, sid, kit.purchase(f"{sid}-1", sid, now))
        ds = _wait_events(s, *(f"{sid}-1" for sid in consents))
        assert _reasons(ds, "s-tcf-1")["offers"] == "purpose_denied"
        assert _reasons(ds, "s-tcf-all-1")["offers"] == "emitted"
        assert _reasons(ds, "s-tcf-all-1")["partner_ads"] == "emitted"
        assert _reasons(ds, "s-sale-1")["partner_ads"] == "purpose_denied"
        assert _reasons(ds, "s-sale-1")["offers"] == "emitted"
        assert _reasons(ds, "s-gpc-1")["partner_ads"] == "opt_out"
        # legitimate interest: e-mail without consent, nothing else
        assert _reasons(ds, "s-li-1") == {"offers": "purpose_denied", "email": "emitted",
                                          "partner_ads": "purpose_denied"}
        # ... until the subject objects to direct marketing (Art. 21: absolute)
        kit.send(p, s.topic_consent, "s-li", kit.consent("s-li", now - kit.HOUR + 1, purposes=li_purposes)
                 | {"objections": ["direct_marketing"]})
        kit.send(p, s.topic_purchases, "s-li", kit.purchase("s-li-2", "s-li", now))
        ds = _wait_events(s, "s-li-2")
        assert _reasons(ds, "s-li-2") == {"offers": "purpose_denied", "email": "objected",
                                          "partner_ads": "purpose_denied"}
        # a signal that does not decode: the consent record is malformed (DLQ), the subject
        # fails closed
        kit.send(p, s.topic_consent, "s-tcf-all", kit.consent("s-tcf-all", now) | {"tcf": "not a TC string"})
        kit.send(p, s.topic_purchases, "s-tcf-all", kit.purchase("s-tcf-all-2", "s-tcf-all", now))
        ds = _wait_events(s, "s-tcf-all-2")
        assert set(_reasons(ds, "s-tcf-all-2").values()) <= {"no_consent", "purpose_denied"}
        assert "emitted" not in _reasons(ds, "s-tcf-all-2").values()
        result = run_verify(s, exactly_once=s.runtime == "fast")
        assert result.ok, render_report(result)
    finally:
        w.stop()
