"""The runtimes' side of consent notices (CONTRACT §9): one ``NoticeSchedule`` per owned
consent partition (``streams.engine.notices``), the records they produce, and the
durable form of each partition's notice clock.

Both runtimes feed it the same three things: the committed clock when a partition is
assigned (``assign``), each live consent change (``before`` / ``after`` around the
engine's ``apply_consent``), the whole partition state once it is restored
(``load``), and a timer (``tick``): a grant reaches its notice time whether or not
any record arrives, so the worker checks its owned state every ``NOTICE_TICK_S``.

Where the clock lives is the runtime's choice:
- fast runtime: in the metadata of the consent offset it commits
  (``clock_to_metadata``). With exactly once that commit is part of the transaction
  that carries the notices, so (state position, clock, notices) become visible
  together or not at all, across kill -9, restarts and rebalances; a zombie is
  fenced because every transaction with notices sends the consent offsets (group
  generation) with it (``dirty``).
- faust runtime: the greatest due time of the last notices in the notices topic's
  partition (the notices of consent partition p go to partition p: same count,
  murmur2 keys), read when the partition is assigned (``streams.runtime.faust_notices``).

Contract: pure CPU except ``tick``'s clock read; outputs are appended to the
caller's list as ``(topic, key, value, headers)``, never produced here. The
caller's thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streams import metrics
from streams.engine.codecs import get_codec
from streams.engine.notices import KINDS, Notice, NoticeSchedule

#: How often the owned state is checked for due notices. Notice times are days apart
#: in production; a second bounds how late a notice is and costs one heap peek per
#: partition per tick when nothing is due.
NOTICE_TICK_S = 1.0
#: Notices one tick takes from one partition's schedule. Why a bound: a first start over
#: a population whose grants expired long ago has every one of them due at once (the
#: e2e bench's 1M subjects: the worker grew from 0.7 to 5.4 GB RSS in one tick, past the
#: production overlay's 3 GiB limit, so it would be killed, restart from the same clock
#: and be killed again). 5,000 notices are ~1 MB encoded; a tick that stops there makes
#: the next one due at once, so a backlog drains at the loop's pace, one bounded list at
#: a time, inside the same transactions as the clock it moves.
NOTICE_TICK_MAX = 5_000
_META = "pfilter.notice_clock="


def clock_to_metadata(clock: int) -> str:
    """The committed offset metadata that carries a partition's notice clock."""
    return f"{_META}{clock}"


def clock_from_metadata(metadata: str | None) -> int | None:
    """The clock a committed offset's metadata carries; None when it carries none (no
    notice clock was ever committed for the partition: every due notice goes out)."""
    if not metadata or not metadata.startswith(_META):
        return None
    try:
        return int(metadata[len(_META):])
    except ValueError:
        return None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class PartitionNotices:
    """The notice schedules of the partitions a worker owns, and their records."""

    def __init__(self, policy: Any, topic: str, fmt: str, registry_url: str | None = None,
                 clock: Callable[[], int] = now_ms) -> None:
        self.policy = policy
        self.topic = topic
        self.codec = get_codec("consent_notice", fmt, registry_url=registry_url)
        self.clock = clock
        self.schedules: dict[int, NoticeSchedule] = {}
        #: partitions whose clock must go into the next commit (they produced notices)
        self.dirty: set[int] = set()
        self._last_tick = 0.0
        #: the last tick stopped at NOTICE_TICK_MAX in some partition: tick again at once
        self._behind = False

    # ------------------------------------------------------------------ ownership
    def assign(self, p: int, clock: int | None) -> None:
        pol = self.policy
        self.schedules[p] = NoticeSchedule(pol.vocab.purposes, pol.notice_before_ms, pol.vocab.fingerprint, clock)

    def forget(self, gone: Iterable[int]) -> None:
        for p in gone:
            self.schedules.pop(p, None)
            self.dirty.discard(p)
        self._gauge()

    def load(self, p: int, items: Iterable[tuple[str, Any]]) -> None:
        """Partition ``p``'s state is restored: schedule what is due after its clock."""
        s = self.schedules.get(p)
        if s is not None:
            s.load(items)
        self._gauge()

    # ------------------------------------------------------------------ consent
    @staticmethod
    def before(recs: Iterable[tuple], store: Any) -> dict[str, Any]:
        """The states of the records' subjects before they are applied (``after`` compares)."""
        old: dict[str, Any] = {}
        get = store.get
        for r in recs:
            key = r[3]
            if key is None:
                continue
            try:
                subject = key.decode("utf-8")
            except UnicodeDecodeError:
                continue  # goes to the DLQ; changes no state
            if subject not in old:
                old[subject] = get(subject)
        return old

    def after(self, p: int, old: Mapping[str, Any], store: Any, out: list, schedule: bool = True) -> None:
        """The records ``before`` saw were applied to ``store``: new grants' due notices.
        ``schedule=False`` in a restore, which ``load`` ends (``NoticeSchedule.changed``)."""
        s = self.schedules.get(p)
        if s is None:
            return
        now = self.clock()
        get = store.get
        sent = []
        for subject, was in old.items():
            sent.extend(s.changed(subject, was, get(subject), now, schedule))
        self._emit(p, sent, out)

    # ------------------------------------------------------------------ time
    @property
    def behind(self) -> bool:
        """The last tick stopped at its limit: more notices are due now."""
        return self._behind

    def due(self) -> bool:
        return self._behind or time.monotonic() - self._last_tick >= NOTICE_TICK_S

    def tick(self, stores: Mapping[int, Any], out: list, limit: int | None = NOTICE_TICK_MAX) -> int:
        """Every owned partition's notices due by now, up to about ``limit`` per partition
        (the rest at the next tick, which is then due at once); returns how many."""
        self._last_tick = time.monotonic()
        now = self.clock()
        n = 0
        behind = False
        for p, s in self.schedules.items():
            store = stores.get(p)
            if store is None:
                continue
            sent = s.advance(now, store.get, limit)
            behind = behind or s.clock < now
            n += len(sent)
            self._emit(p, sent, out)
        self._behind = behind
        self._gauge()
        return n

    def metadata(self, p: int) -> str | None:
        s = self.schedules.get(p)
        return None if s is None else clock_to_metadata(s.clock)

    def mark_committed(self) -> None:
        self.dirty.clear()

    # ------------------------------------------------------------------ records
    def _emit(self, p: int, sent: list[Notice], out: list) -> None:
        if not sent:
            return
        self.dirty.add(p)
        enc = self.codec.encode
        version = self.policy.version
        counts = [0, 0]
        for n in sent:
            counts[KINDS.index(n.kind)] += 1
            value = enc({"subject_id": n.subject_id, "purpose": n.purpose, "expires_at": n.expires_at,
                         "kind": n.kind, "consent_version": n.consent_version, "sent_at": n.sent_at,
                         "policy_version": version})
            out.append((self.topic, n.subject_id.encode("utf-8", "surrogatepass"), value, None))
        for kind, c in zip(KINDS, counts):
            if c:
                metrics.NOTICES.labels(kind).inc(c)

    def _gauge(self) -> None:
        metrics.NOTICES_PENDING.set(sum(s.pending for s in self.schedules.values()))
