"""The compiled engine agrees with the reference; nothing forbidden is ever emitted (G1).

Random policies (from the default vocabulary: purposes and categories shuffled,
fields moved between categories or left out, random engines and transforms),
random consent records and random events, times clustered on the boundaries.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from streams.engine import reference
from streams.engine.consent import parse_consent
from streams.engine.decide import REASONS, decide
from streams.engine.policy import compile_policy, load_policy
from streams.crypto import KeyRing
from streams.engine.sealing import Sealer
from tests.unit.engine.helpers import SECRET, counter_nonces, default_doc, kek_for_tests, ring_keys

from .strategies import policies, scenarios

#: encrypted fields (CONTRACT §10): the reference decrypts them with the ring's keys
RING = KeyRing(kek_for_tests())
SEAL = Sealer(RING, binary=False, clock=lambda: 0, nonces=counter_nonces()).seal
KEYS = ring_keys(RING)

EXAMPLES = 1000


def _leaf_paths(d, prefix=""):
    for k, v in d.items():
        p = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            yield from _leaf_paths(v, p)
        else:
            yield p


def _check(doc, cp, ev, rec, now):
    state = None if rec is None else parse_consent(rec, rec["subject_id"], 0, cp.vocab)
    for eng in cp.engines:
        reason, out, sent = decide(eng, ev, ev.get("subject_id"), state, now, SEAL)
        want = reference.expected(ev, rec, eng.name, doc, now, SECRET, KEYS)
        if reason is None:
            assert want == ("emitted", out), (eng.name, want)
            # G1, stated without the reference's projection: every emitted path lies in a
            # category the engine may receive and the subject granted, or is envelope/trailer
            assert reference.violations(out, ev, rec, eng.name, doc, now, SECRET, KEYS) == []
            granted = {c for c, v in rec["categories"].items() if v is True}
            allowed_cats = set(eng.categories) & granted
            for path in _leaf_paths(out):
                if path in ("event_id", "subject_id", "event_type", "ts", "consent_version", "policy_version",
                            "purposes", "engine"):
                    continue
                cats = [c for c, fields in doc["categories"].items()
                        if any(path == f or path.startswith(f + ".") for f in fields)]
                assert cats and cats[0] in allowed_cats and cats[0] != "payment", path
            assert "payment_method" not in out
            assert set(eng.category_names(sent)) <= allowed_cats
        else:
            assert reason in REASONS
            assert want == ("dropped", reason), (eng.name, want, reason)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=policies(), scenario=scenarios())
def test_random_policy_consent_event(doc, scenario):
    ev, rec, now = scenario
    cp = compile_policy(doc, secret=SECRET)
    _check(doc, cp, ev, rec, now)


_DEFAULT_DOC = default_doc()
_DEFAULT = load_policy(secret=SECRET)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_default_policy_consent_event(scenario):
    ev, rec, now = scenario
    _check(_DEFAULT_DOC, _DEFAULT, ev, rec, now)


def test_population_sample_matches_reference():
    """Engine == reference over a synthetic population (consent of every segment, real event mix)."""
    population = __import__("pytest").importorskip("streams.population")
    now = 1_700_000_000_000
    spec = population.PopulationSpec(subjects=400, seed=11)
    consent = {rec["subject_id"]: rec for rec in population.consent_records(spec, now)}
    states = {s: parse_consent(r, s, 0, _DEFAULT.vocab) for s, r in consent.items()}
    seen: dict[str, int] = {}
    n = 0
    for ev in population.events(spec, now, 4000):
        subject = ev.get("subject_id")
        rec = consent.get(subject) if subject is not None else None
        state = states.get(subject) if subject is not None else None
        for eng in _DEFAULT.engines:
            reason, out, _ = decide(eng, ev, subject, state, now, SEAL)
            want = reference.expected(ev, rec, eng.name, _DEFAULT_DOC, now, SECRET, KEYS)
            got = ("dropped", reason) if reason else ("emitted", out)
            assert got == want
            seen[reason or "emitted"] = seen.get(reason or "emitted", 0) + 1
            n += 1
    assert n == 4000 * len(_DEFAULT.engines)
    # the population exercises the rule, not just the happy path
    assert {"emitted", "anonymous", "no_consent", "purpose_denied", "region_blocked"} <= set(seen), seen
