"""The notice scheduler (streams.engine.notices, CONTRACT §9): exactly once per grant,
renewal, erasure, late grants, and restore from (state, clock)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.engine.consent import NO_EXPIRY, Vocabulary, blocked_state, make_state
from streams.engine.notices import EXPIRED, NEVER, RECONFIRM, NoticeSchedule
from streams.engine.policy import PolicyError, load_policy, parse_notice_before

VOCAB = Vocabulary(["a", "b", "c"], ["x"])
BEFORE = 100


def state(updated_at: int, grants: dict[int, int | None]) -> tuple:
    """A state granting purpose i (index) until grants[i] (None: no expiry)."""
    n = len(VOCAB.purposes)
    ga = [-1] * n
    ea = [-1] * n
    mask = 0
    for i, e in grants.items():
        mask |= 1 << i
        ga[i] = 0
        ea[i] = NO_EXPIRY if e is None else e
    return make_state(updated_at, 0, mask, ga, ea, 1, "EU", False, 0, VOCAB.fingerprint)


#: far-bucket width of these tests: small, so that due times (0-3000) span many buckets
WIDTH = 7


def sched(clock: int | None = None, width: int = WIDTH) -> NoticeSchedule:
    return NoticeSchedule(VOCAB.purposes, BEFORE, VOCAB.fingerprint, clock, bucket_ms=width)


def keys(notices) -> list[tuple]:
    return [(n.subject_id, n.purpose, n.expires_at, n.kind) for n in notices]


def test_reconfirm_then_expired_once_each() -> None:
    s, store = sched(0), {}
    store["u"] = state(1, {0: 1000, 1: None})
    assert s.changed("u", None, store["u"], 10) == []
    assert s.advance(899, store.get) == []
    got = s.advance(900, store.get)
    assert keys(got) == [("u", "a", 1000, RECONFIRM)]
    assert got[0].consent_version == 1 and got[0].sent_at == 900
    assert s.advance(999, store.get) == []
    assert keys(s.advance(5000, store.get)) == [("u", "a", 1000, EXPIRED)]
    assert s.advance(10**9, store.get) == [] and s.pending == 0


def test_a_long_pause_sends_both_in_order() -> None:
    s, store = sched(0), {"u": state(1, {2: 1000})}
    s.changed("u", None, store["u"], 0)
    assert [n.kind for n in s.advance(10_000, store.get)] == [RECONFIRM, EXPIRED]


def test_renewal_cancels_the_old_grant_and_gets_its_own() -> None:
    s, store = sched(0), {}
    old = store["u"] = state(1, {0: 1000})
    s.changed("u", None, old, 0)
    assert keys(s.advance(950, store.get)) == [("u", "a", 1000, RECONFIRM)]
    new = store["u"] = state(2, {0: 5000})
    assert s.changed("u", old, new, 960) == []
    # the old grant's expired notice is cancelled; the new one's come at their time
    assert s.advance(4899, store.get) == []
    got = s.advance(6000, store.get)
    assert keys(got) == [("u", "a", 5000, RECONFIRM), ("u", "a", 5000, EXPIRED)]
    assert {n.consent_version for n in got} == {2}


def test_unrelated_update_keeps_the_grant_scheduled_once() -> None:
    s, store = sched(0), {}
    a = store["u"] = state(1, {0: 1000})
    s.changed("u", None, a, 0)
    b = store["u"] = state(2, {0: 1000, 1: None})  # same grant of "a", another purpose added
    assert s.changed("u", a, b, 10) == []
    got = s.advance(2000, store.get)
    assert keys(got) == [("u", "a", 1000, RECONFIRM), ("u", "a", 1000, EXPIRED)]
    assert got[0].consent_version == 2  # the state's version when sent


@pytest.mark.parametrize("gone", ["erased", "withdrawn", "blocked"])
def test_leaving_the_state_cancels_pending_notices(gone: str) -> None:
    s, store = sched(0), {}
    a = store["u"] = state(1, {0: 1000})
    s.changed("u", None, a, 0)
    if gone == "erased":
        del store["u"]
        assert s.changed("u", a, None, 5) == []
    elif gone == "withdrawn":
        store["u"] = state(2, {})
        assert s.changed("u", a, store["u"], 5) == []
    else:
        store["u"] = blocked_state(2, 1, VOCAB)
        assert s.changed("u", a, store["u"], 5) == []
    assert s.advance(10**6, store.get) == []


def test_a_late_grant_sends_what_is_already_due_at_once() -> None:
    s, store = sched(0), {}
    s.advance(950, store.get)
    store["u"] = state(1, {0: 1000, 1: 900})
    got = s.changed("u", None, store["u"], 960)
    assert sorted(keys(got)) == [("u", "a", 1000, RECONFIRM), ("u", "b", 900, EXPIRED), ("u", "b", 900, RECONFIRM)]
    assert keys(s.advance(1000, store.get)) == [("u", "a", 1000, EXPIRED)]


def test_load_schedules_only_what_is_due_after_the_committed_clock() -> None:
    store = {"u": state(1, {0: 1000}), "v": state(1, {0: 2000}), "w": state(1, {0: 500})}
    s = sched(950)  # restored: u's reconfirm (900) and all of w went out before the commit
    s.load(store.items())
    got = s.advance(10**6, store.get)
    assert sorted(keys(got)) == [("u", "a", 1000, EXPIRED), ("v", "a", 2000, EXPIRED), ("v", "a", 2000, RECONFIRM)]


def test_never_clock_sends_every_due_notice_of_a_fresh_partition() -> None:
    store = {"u": state(1, {0: 1000})}
    s = sched(None)
    assert s.clock == NEVER
    s.load(store.items())
    assert len(s.advance(2000, store.get)) == 2


def test_clock_never_steps_back() -> None:
    s, store = sched(0), {"u": state(1, {0: 1000})}
    s.changed("u", None, store["u"], 0)
    s.advance(500, store.get)
    assert s.advance(400, store.get) == [] and s.clock == 500
    assert len(s.advance(950, store.get)) == 1


def test_a_limited_advance_stops_between_due_times_and_goes_on_from_its_clock() -> None:
    # reconfirm due at 100 (u0), 200 (u1, u2), 300, 400, 500 (expires_at - BEFORE)
    exp = [200, 300, 300, 400, 500, 600]
    store = {f"u{i}": state(1, {0: e}) for i, e in enumerate(exp)}
    full = sched(None)
    full.load(store.items())
    everything = keys(full.advance(450, store.get))
    s = sched(None)
    s.load(store.items())
    got = keys(s.advance(450, store.get, limit=2))
    # past the limit at 100, but the four due at 200 go out together (a tie is never
    # split: the clock could not say which of them went out); it stops at that due time
    assert got == [("u0", "a", 200, RECONFIRM), ("u0", "a", 200, EXPIRED), ("u1", "a", 300, RECONFIRM),
                   ("u2", "a", 300, RECONFIRM)]
    assert s.clock == 200
    # a new owner restored from that clock sends exactly what the old owner would go on to
    again = sched(s.clock)
    again.load(store.items())
    rest = keys(again.advance(450, store.get))
    more = []
    while s.clock < 450:
        batch = keys(s.advance(450, store.get, limit=2))
        assert batch, "a limited advance that is behind always makes progress"
        more += batch
    assert sorted(rest) == sorted(more) and sorted(got + more) == sorted(everything)
    assert len(set(got + more)) == len(everything) == 9


# ------------------------------------------------------------------ properties
subjects = st.sampled_from(["s1", "s2", "s3"])
expiry = st.one_of(st.none(), st.integers(0, 3000))
grants = st.dictionaries(st.integers(0, 2), expiry, max_size=3)
ops = st.lists(st.one_of(
    st.tuples(st.just("set"), subjects, grants),
    st.tuples(st.just("erase"), subjects, st.none()),
    st.tuples(st.just("tick"), st.integers(0, 400), st.none()),
    st.tuples(st.just("restart"), st.none(), st.none()),
), max_size=40)


def drain(s: NoticeSchedule, now: int, lookup, limit: int | None) -> list:
    """``advance`` until the schedule's clock reached ``now`` (one call without a limit)."""
    got = s.advance(now, lookup, limit)
    while s.clock < now:
        got += s.advance(now, lookup, limit)
    return got


def run(ops_: list, *, restarts: bool, limit: int | None = None, width: int = WIDTH,
        notices: list | None = None) -> tuple[list, list]:
    """Apply ops; returns (notices as (run id, kind), ids of the runs held at the end). A run is a (subject, purpose, expires_at) held
    from the op that made it appear until the op that removed it."""
    store: dict[str, tuple] = {}
    s = sched(None, width)
    now, version = 0, 0
    out: list = [] if notices is None else notices
    held: dict[tuple, int] = {}   # (subject, purpose, ea) -> run id
    runs: list[tuple] = []        # run id -> (subject, purpose, ea)
    run_of: list[int] = []        # per notice: its run id
    for op, a, b in ops_:
        if op == "set":
            version += 1
            old, new = store.get(a), state(version, b)
            store[a] = new
            got = s.changed(a, old, new, now)
        elif op == "erase":
            old = store.pop(a, None)
            got = s.changed(a, old, None, now)
        elif op == "tick":
            now += a
            got = s.advance(now, store.get, limit)
        else:
            if restarts:  # a new owner: (state, clock) as committed, nothing else
                s = sched(s.clock, width)
                s.load(store.items())
            got = []
        now_held = {(subj, VOCAB.purposes[i], e) for subj, st_ in store.items()
                    for i, e in _grants(st_)}
        for g in list(held):
            if g not in now_held:
                del held[g]
        for g in now_held:
            if g not in held:
                held[g] = len(runs)
                runs.append(g)
        for n in got:
            g = (n.subject_id, n.purpose, n.expires_at)
            assert g in held, "a notice for a grant the state does not hold"
            due = n.expires_at - (BEFORE if n.kind == RECONFIRM else 0)
            assert due <= now or due <= s.clock
            run_of.append(held[g])
        out.extend(got)
    final = drain(s, now + 10**6, store.get, limit)
    for n in final:
        run_of.append(held[(n.subject_id, n.purpose, n.expires_at)])
    out.extend(final)
    return [(r, n.kind) for r, n in zip(run_of, out)], sorted(held.values())


def _grants(st_: tuple):
    from streams.engine.notices import expiring_grants
    return expiring_grants(st_, VOCAB.fingerprint)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_exactly_once_per_grant_and_restarts_change_nothing(ops_: list) -> None:
    sent, _live = run(ops_, restarts=False)
    counts = Counter(sent)
    assert max(counts.values(), default=1) == 1, "two notices of one kind for one grant"
    sent_r, _ = run(ops_, restarts=True)
    assert Counter(sent_r) == counts


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(1, 3))
def test_a_tick_limit_keeps_exactly_once_and_loses_no_held_grant(ops_: list, limit: int) -> None:
    # later, never twice: a limited tick delays notices (a grant withdrawn meanwhile gets
    # none), so only exactly once and the grants held to the end are compared
    for restarts in (False, True):
        sent, live = run(ops_, restarts=restarts, limit=limit)
        counts = Counter(sent)
        assert max(counts.values(), default=1) == 1, "two notices of one kind for one grant"
        for r in live:
            assert counts[(r, RECONFIRM)] == 1 and counts[(r, EXPIRED)] == 1, "a held grant lost a notice"


@settings(max_examples=300, deadline=None)
@given(ops, st.sampled_from([None, 1, 2]), st.booleans())
def test_the_bucket_width_changes_no_notice(ops_: list, limit: int | None, restarts: bool) -> None:
    # the far buckets only say when to look at a subject: whatever their width (one due
    # time each, a few, or one bucket for everything, which is a plain heap), the same
    # notices go out in the same order at the same ticks
    outputs = []
    for width in (1, 3, WIDTH, 64, 10**12):
        got: list = []
        run(ops_, restarts=restarts, limit=limit, width=width, notices=got)
        outputs.append(got)
    assert all(o == outputs[-1] for o in outputs)


def test_a_far_bucket_entry_costs_a_list_slot_not_a_tuple() -> None:
    # the reason for the far tier: until its bucket opens, a grant is its subject's
    # reference in a list; only an opened bucket holds (due, subject, code) tuples
    store = {f"u{i}": state(1, {0: 10_000 + 10 * i, 1: 50_000 + 10 * i}) for i in range(100)}
    s = sched(0, width=1000)
    s.load(store.items())
    assert s.pending == 200 and s._near == []
    got = s.advance(9_990, store.get)  # the reconfirms of u0-u9 (9,900-9,990), bucket 9 opened
    assert [n.subject_id for n in got] == [f"u{i}" for i in range(10)] and {n.kind for n in got} == {RECONFIRM}
    # their expired notices (10,000-10,090) wait in bucket 10 as subjects, like every other grant
    assert s._near == [] and s.pending == 200


@settings(max_examples=200, deadline=None)
@given(ops)
def test_every_grant_still_held_gets_both_notices(ops_: list) -> None:
    store: dict[str, tuple] = {}
    s = sched(None)
    seen: Counter = Counter()
    version, now = 0, 0
    for op, a, b in ops_:
        if op == "set":
            version += 1
            old = store.get(a)
            store[a] = state(version, b)
            got = s.changed(a, old, store[a], now)
        elif op == "erase":
            got = s.changed(a, store.pop(a, None), None, now)
        elif op == "tick":
            now += a
            got = s.advance(now, store.get)
        else:
            s = sched(s.clock)
            s.load(store.items())
            got = []
        seen.update((n.subject_id, n.purpose, n.expires_at, n.kind) for n in got)
    seen.update((n.subject_id, n.purpose, n.expires_at, n.kind) for n in s.advance(now + 10**6, store.get))
    for subj, st_ in store.items():
        for i, e in _grants(st_):
            for kind in (RECONFIRM, EXPIRED):
                assert seen[(subj, VOCAB.purposes[i], e, kind)] >= 1


# ------------------------------------------------------------------ policy
@pytest.mark.parametrize(("text", "ms"), [("30d", 30 * 86_400_000), ("12h", 43_200_000), ("90s", 90_000),
                                          ("500ms", 500), ("2m", 120_000)])
def test_notice_before_durations(text: str, ms: int) -> None:
    assert parse_notice_before(text) == ms


@pytest.mark.parametrize("bad", ["", "30", "30 days", "-1d", "0s", 30, None, "99999d"])
def test_bad_notice_before_is_rejected_naming_it(bad: object) -> None:
    with pytest.raises(PolicyError, match="notice_before"):
        parse_notice_before(bad)


def test_default_policy_notices_30_days_before() -> None:
    assert load_policy(None, secret=b"k").notice_before_ms == 30 * 86_400_000


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(subjects, grants), max_size=12), st.one_of(st.none(), st.integers(0, 3000)),
       st.integers(0, 4000))
def test_a_restore_that_only_sends_what_is_due_then_loads_equals_scheduling_each_record(recs, clock, now):
    # a restore (consent_reader.restore) replays records with schedule=False and then
    # loads the whole state: the same notices as scheduling every record, then and later
    def replay(schedule: bool) -> tuple[list, list]:
        s, store, version = sched(clock), {}, 0
        got = []
        for subject, g in recs:
            version += 1
            old, store[subject] = store.get(subject), state(version, g)
            got += s.changed(subject, old, store[subject], now, schedule=schedule)
        s.load(store.items())
        return keys(got), keys(drain(s, 10**6, store.get, None))

    assert replay(False) == replay(True)
