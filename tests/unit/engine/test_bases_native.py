"""The native engine decides subjects with bases, objections and signals exactly as the
Python engine does, natively (no fallback): it reads the objected and gates masks the
consent rules folded into the profile (native/src/state.rs)."""

from __future__ import annotations

import pytest

from tests.native_gate import require_native

require_native()

from streams.engine import consent as C  # noqa: E402
from streams.engine.batch import Filter  # noqa: E402
from streams.engine.native import NativeFilter  # noqa: E402
from streams.engine.policy import compile_policy  # noqa: E402

from bench.engine import plaintext_doc  # noqa: E402

from .helpers import NOW, SECRET, click, consent, purchase  # noqa: E402
from .test_bases import JSON, T, crec, erec, li_email, tc, usnat  # noqa: E402

POLICY = compile_policy(plaintext_doc(), secret=SECRET)  # the native engine does not encrypt


def _records() -> list[tuple]:
    """One subject per case of test_bases (and a few combinations)."""
    recs = {
        "plain": consent("plain"),
        "tcf-no-5-6": consent("tcf-no-5-6", tcf=tc(purposes=(1, 2, 3, 4))),
        "tcf-all": consent("tcf-all", tcf=tc()),
        "tcf-no-vendor": consent("tcf-no-vendor", tcf=tc(vendors=(1,))),
        "tcf-no-sf1": consent("tcf-no-sf1", tcf=tc(special_features=())),
        "gpp-sale": consent("gpp-sale", gpp=usnat(SaleOptOut=1)),
        "gpp-gpc": consent("gpp-gpc", gpp=usnat(gpc=True, SaleOptOut=2)),
        "sec-gpc": consent("sec-gpc", sec_gpc=True),
        "cm": consent("cm", consent_mode={"ad_personalization": "denied", "analytics_storage": "denied"}),
        "li": li_email(subject="li"),
        "li-objected": li_email(subject="li-objected", objections=["direct_marketing"]),
        "profiling": consent("profiling", objections=["profiling"]),
        "both": consent("both", objections=["profiling", "direct_marketing"], tcf=tc(vendors=())),
        "bad-basis": consent("bad-basis"),
        "bad-tcf": consent("bad-tcf", tcf="!!"),
    }
    recs["bad-basis"]["purposes"]["support"]["basis"] = "contract"
    li_only = consent("li-only", granted=())
    li_only["purposes"]["marketing_email"] = {"status": "granted", "basis": "legitimate_interest",
                                              "granted_at": NOW - 1_000, "expires_at": None}
    recs["li-only"] = li_only
    return [crec(s, r, i) for i, (s, r) in enumerate(recs.items())]


def _events(subjects: list[str]) -> list[tuple]:
    evs = []
    for s in subjects:
        evs += [click(subject=s, event_id=f"{s}-c"), click("login", subject=s, event_id=f"{s}-l"),
                purchase(subject=s, event_id=f"{s}-p")]
    return [erec(ev, i) for i, ev in enumerate(evs)]


@pytest.mark.parametrize("policy", [POLICY], ids=["default-plaintext"])
def test_native_agrees_with_python_on_bases_objections_and_signals(policy):
    clock = iter(range(NOW, NOW + 10_000))
    clock2 = iter(range(NOW, NOW + 10_000))
    py = Filter(policy, T, JSON, store={}, clock=lambda: next(clock))
    nat = NativeFilter(policy, T, JSON, store={}, clock=lambda: next(clock2), secret=SECRET)
    consents = _records()
    a, b = py.apply_consent(consents), nat.apply_consent(consents)
    assert a.records == b.records and a.dlq == b.dlq == 2
    assert py.store == nat.store
    fallbacks = []
    orig = nat._py.decide
    nat._py.decide = lambda recs: fallbacks.append(recs) or orig(recs)
    events = _events([r[3].decode() for r in consents])
    x, y = py.decide(events), nat.decide(events)
    assert x.records == y.records
    assert x == y
    assert fallbacks == []  # every one of them decided natively
    # the cases really differ: every reason the new rules give shows up
    assert {"objected", "purpose_denied", "opt_out"} <= set(x.dropped)
    assert x.emitted["email"] > 0 and x.dropped["objected"] >= 5
    # and the states do carry the new masks
    assert C.wide(py.store["both"]).objected and C.wide(py.store["both"]).gates
