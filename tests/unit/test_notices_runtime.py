"""The runtimes' notice side (streams.runtime.notices) and the oracle's notice check
(streams.engine.reference.notice_problem), without a broker."""

from __future__ import annotations

import orjson
import pytest

from streams.engine import reference
from streams.engine.policy import load_policy, read_policy_file
from streams.runtime.notices import PartitionNotices, clock_from_metadata, clock_to_metadata

DOC = read_policy_file(None)
DAY = 86_400_000


def test_clock_metadata_round_trip() -> None:
    assert clock_from_metadata(clock_to_metadata(1_767_312_000_123)) == 1_767_312_000_123
    for other in (None, "", "something else", "pfilter.notice_clock=x"):
        assert clock_from_metadata(other) is None


def _consent(subject: str, updated_at: int, expires_at: int | None) -> dict:
    g = {"status": "granted", "granted_at": 0, "expires_at": expires_at}
    return {"subject_id": subject, "updated_at": updated_at, "purposes": {"marketing_email": g},
            "categories": {}, "jurisdiction": "EU", "gpc": False}


def test_partition_notices_encode_and_mark_dirty_partitions() -> None:
    from streams.engine.batch import Filter, TopicNames

    policy = load_policy(None, secret=b"k")
    now = [40 * DAY]
    pn = PartitionNotices(policy, "notices", "json", clock=lambda: now[0])
    pn.assign(0, 0)
    store: dict = {}
    filt = Filter(policy, TopicNames(), {"output": "json"}, store=store)
    recs = [("consent", 0, 0, b"u", orjson.dumps(_consent("u", 1, 50 * DAY)), None, 0)]
    out: list = []
    old = pn.before(recs, store)
    filt.apply_consent(recs, store)
    pn.after(0, old, store, out)
    assert out == [] and pn.dirty == set()
    now[0] = 20 * DAY  # reconfirm due at 50 days - 30 days
    pn.tick({0: store}, out)
    (topic, key, value, _h), = out
    n = orjson.loads(value)
    assert (topic, key) == ("notices", b"u")
    assert n == {"subject_id": "u", "purpose": "marketing_email", "expires_at": 50 * DAY, "kind": "reconfirm",
                 "consent_version": 1, "sent_at": now[0], "policy_version": "default-1"}
    assert pn.dirty == {0} and clock_from_metadata(pn.metadata(0)) == now[0]
    pn.mark_committed()
    assert pn.dirty == set()


def test_a_backlog_of_due_notices_goes_out_in_bounded_ticks() -> None:
    """A first start over grants that expired long ago: every tick takes at most its limit
    per partition (plus ties), the next tick is due at once, and the clock committed
    with each tick's notices covers exactly what went out."""
    from streams.engine.batch import Filter, TopicNames

    policy = load_policy(None, secret=b"k")
    pn = PartitionNotices(policy, "notices", "json", clock=lambda: 400 * DAY)
    pn.assign(0, None)
    store: dict = {}
    filt = Filter(policy, TopicNames(), {"output": "json"}, store=store)
    recs = [("consent", 0, i, f"u{i}".encode(), orjson.dumps(_consent(f"u{i}", 1, (40 + i) * DAY)), None, 0)
            for i in range(25)]
    filt.apply_consent(recs, store)
    pn.load(0, store.items())
    sizes, clocks = [], []
    while True:
        out: list = []
        pn.tick({0: store}, out, limit=10)
        sizes.append(len(out))
        clocks.append(clock_from_metadata(pn.metadata(0)))
        if not pn.due():
            break
        assert len(sizes) < 20, "the backlog never drains"
    assert sum(sizes) == 50 and max(sizes) <= 11  # 25 reconfirm + 25 expired, one due time may tie
    assert clocks == sorted(clocks) and clocks[-1] == 400 * DAY and len(sizes) >= 5
    # an unbounded tick (the faust runtime's) takes the whole backlog at once
    pn2 = PartitionNotices(policy, "notices", "json", clock=lambda: 400 * DAY)
    pn2.assign(0, None)
    pn2.load(0, store.items())
    out = []
    assert pn2.tick({0: store}, out, limit=None) == 50 and not pn2.due()


@pytest.mark.parametrize(("change", "problem"), [
    ({}, None),
    ({"kind": "expired"}, "sent before it was due"),
    ({"sent_at": 20 * DAY - 1}, "sent before it was due"),
    ({"expires_at": 51 * DAY}, "another expires_at"),
    ({"purpose": "support"}, "does not grant"),
    ({"purpose": "nope"}, "not in the policy"),
])
def test_reference_justifies_only_a_notice_the_consent_and_policy_allow(change: dict, problem: str | None) -> None:
    notice = {"subject_id": "u", "purpose": "marketing_email", "expires_at": 50 * DAY, "kind": "reconfirm",
              "consent_version": 1, "sent_at": 20 * DAY, **change}
    got = reference.notice_problem(notice, _consent("u", 1, 50 * DAY), DOC)
    assert (got is None) if problem is None else (problem in got)


def test_reference_reads_notice_before_on_its_own() -> None:
    assert reference.notice_before_ms({"notice_before": "90s"}) == 90_000
    assert reference.notice_before_ms({}) == 30 * DAY


def test_the_faust_clock_read_back_from_due_times_loses_no_notice() -> None:
    """faust reads its notice clock back from the notices topic. A late grant's notice
    goes out between ticks, with a ``sent_at`` past the clock: taken as the clock, that
    ``sent_at`` would skip a grant falling due in between; its due time does not."""
    from streams.engine.batch import Filter, TopicNames
    from streams.runtime.faust_notices import notice_due

    policy = load_policy(None, secret=b"k")
    before = policy.notice_before_ms
    now = [100 * DAY]
    pn = PartitionNotices(policy, "notices", "json", clock=lambda: now[0])
    pn.assign(0, None)
    store: dict = {}
    filt = Filter(policy, TopicNames(), {"output": "json"}, store=store)
    pn.tick({0: store}, [])  # the clock is now 100 days
    out: list = []

    def grant(subject: str, expires_at: int, offset: int) -> None:
        recs = [("consent", 0, offset, subject.encode(), orjson.dumps(_consent(subject, offset + 1, expires_at)),
                 None, 0)]
        old = pn.before(recs, store)
        filt.apply_consent(recs, store)
        pn.after(0, old, store, out)

    grant("a", 100 * DAY + before + 500, 0)  # reconfirm due 0.5 s after the clock: scheduled
    now[0] = 100 * DAY + 800
    grant("b", 100 * DAY + before - DAY, 1)  # came late: its reconfirm goes out at once
    (_t, _k, value, _h), = out
    sent = orjson.loads(value)
    assert sent["subject_id"] == "b" and sent["sent_at"] == now[0]
    # the worker dies before its next tick; a new owner restores its clock from the topic
    for clock, a_notified in ((sent["sent_at"], False), (notice_due(sent, before), True)):
        again = PartitionNotices(policy, "notices", "json", clock=lambda: 100 * DAY + 2_000)
        again.assign(0, clock)
        again.load(0, store.items())
        got: list = []
        again.tick({0: store}, got)
        assert any(orjson.loads(v)["subject_id"] == "a" for _t, _k, v, _h in got) is a_notified
    assert notice_due(dict(sent, kind="expired"), before) == min(sent["expires_at"], sent["sent_at"])
