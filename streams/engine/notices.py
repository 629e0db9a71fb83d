"""Re-confirmation notices (CONTRACT §9): which are due, from the owned consent state and time.

Pure and transport-free: a runtime feeds it consent changes and processing time and
produces what it returns. One ``NoticeSchedule`` per consent partition.

A *grant* is (subject, purpose, ``expires_at``) while the subject's state holds that
purpose granted with that ``expires_at`` (grants without expiry get no notices). It
gets one ``reconfirm`` notice once processing time reaches ``expires_at -
notice_before`` and one ``expired`` notice once it reaches ``expires_at``. A grant
that leaves the state (erasure, withdrawal, a renewal with a new ``expires_at``, a
malformed record blocking the subject) has its pending notices cancelled; a renewal
is a new grant with notices of its own. A grant that leaves and comes back with the
same ``expires_at`` is a new grant too (its notices go out again).

How "sent exactly once" is kept without a mark per grant: the schedule has a
``clock``, the processing time up to which every due notice of the partition's
state went out. Invariant: for every grant in the state and each kind, its notice
has gone out iff its due time is ``<= clock``. ``advance(now)`` keeps it by sending
everything due up to ``now`` and then setting ``clock = now``; ``changed`` keeps it
by sending a new grant's notices that are already due (``<= clock``: the grant came
late, e.g. a record that expires soon) at once and scheduling the rest. So a
runtime that makes (consent state, ``clock``) durable together with the notices
sent up to that clock (one Kafka transaction: the fast runtime commits the clock as
the consent offset's metadata) restores exactly: ``load`` schedules every grant's
notices due after the committed clock, and none before.

Pending notices live in two tiers, one entry per grant (the ``expired`` entry is
scheduled when the ``reconfirm`` one is sent):

- far: buckets of ``bucket_ms`` of due time, each a plain list of subjects (the
  subject strings are the store's own keys, so an entry costs one 8-byte list slot);
- near: a heap of ``(due, subject, code)`` (``code`` = purpose index << 1 | kind) for
  the buckets already *opened*.

A bucket is opened when the next due time to send reaches its start: each distinct
subject in it is looked up once and every notice of its current state due inside
the bucket (and not sent yet) goes onto the heap. So what a bucket holds is only
"look at this subject then"; the state says what is due. ``advance`` opens and pops
only what is due, never scans the state; ``load`` is one pass. Cancellation is lazy:
a popped entry (or a bucket's subject) whose grant is no longer in the state is
dropped, so no per-subject index has to be kept in step with erasures.

Why two tiers (measured, 190k bench subjects, ``tracemalloc``): one heap tuple per
grant cost 191 B per subject (1.83 grants with expiry per subject: a 3-tuple and
its due int each), more than half of the consent state itself; a list slot is 8.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from streams.engine.consent import (
    BLOCKED, NO_EXPIRY, P_FLAGS, P_GRANTED, P_VOCAB, PAIR, PROFILE, TIMES, UPDATED_AT, ConsentState,
)
from streams.engine.vocab import I64_MIN

RECONFIRM = "reconfirm"
EXPIRED = "expired"
#: kind index -> name (the low bit of a heap entry's code)
KINDS = (RECONFIRM, EXPIRED)
_RECONFIRM, _EXPIRED = 0, 1

#: ``clock`` of a partition for which no notice ever went out.
NEVER = I64_MIN

#: Width of a far bucket. Why an hour: a bucket costs ~200 B whatever it holds (its list,
#: its dict slot and its key on the bucket heap), so a two-year horizon is ~17.5k buckets,
#: ~3.5 MB per worker; opening one materializes one hour of notices (at 1M bench subjects,
#: ~200 heap entries), which bounds the near heap far below the tick limit.
BUCKET_MS = 3_600_000


class Notice(NamedTuple):
    """One consent notice (``schemas/consent_notice.avsc`` without the policy version)."""

    subject_id: str
    purpose: str
    expires_at: int
    kind: str
    consent_version: int
    sent_at: int


def expiring_grants(state: ConsentState | None, vocab: int) -> Iterator[tuple[int, int]]:
    """(purpose index, ``expires_at``) of every granted purpose of ``state`` that expires.

    Nothing for an absent, BLOCKED or other-vocabulary state: it grants nothing."""
    if state is None:
        return
    profile = state[PROFILE]
    if profile[P_FLAGS] & BLOCKED or profile[P_VOCAB] != vocab:
        return
    times = state[TIMES]
    g, i, k = profile[P_GRANTED], 0, 0
    while g:
        if g & 1:
            ea = PAIR.unpack_from(times, 16 * k)[1]
            if ea != NO_EXPIRY:
                yield i, ea
            k += 1
        g >>= 1
        i += 1


def holds(state: ConsentState | None, vocab: int, purpose: int, expires_at: int) -> bool:
    """Whether ``state`` grants purpose ``purpose`` with exactly this ``expires_at``."""
    if state is None:
        return False
    profile = state[PROFILE]
    g = profile[P_GRANTED]
    if not g >> purpose & 1 or profile[P_FLAGS] & BLOCKED or profile[P_VOCAB] != vocab:
        return False
    k = (g & ((1 << purpose) - 1)).bit_count()
    return PAIR.unpack_from(state[TIMES], 16 * k)[1] == expires_at


class NoticeSchedule:
    """The pending notices of one consent partition and its ``clock`` (see the module doc)."""

    __slots__ = ("purposes", "before", "vocab", "clock", "width", "_near", "_far", "_buckets", "_open",
                 "_far_n", "sent")

    def __init__(self, purposes: tuple[str, ...], notice_before_ms: int, vocab: int,
                 clock: int | None = None, bucket_ms: int = BUCKET_MS) -> None:
        """``clock``: the durable clock this partition was committed with (None: never).
        ``bucket_ms``: width of a far bucket (tests use small ones; it changes no output)."""
        if notice_before_ms <= 0:
            raise ValueError("notice_before must be positive")
        if bucket_ms <= 0:
            raise ValueError("bucket_ms must be positive")
        self.purposes = purposes
        self.before = notice_before_ms
        self.vocab = vocab
        self.clock = NEVER if clock is None else clock
        self.width = bucket_ms
        self._near: list[tuple[int, str, int]] = []
        #: bucket index (due // width) -> subjects to look at when it opens
        self._far: dict[int, list[str]] = {}
        #: heap of the keys of ``_far``
        self._buckets: list[int] = []
        #: buckets up to this index are open: what is due in them goes onto ``_near``
        self._open: int | None = None
        self._far_n = 0
        #: notices returned so far, per kind (for metrics)
        self.sent = [0, 0]

    @property
    def pending(self) -> int:
        """Entries held (one per grant still to notify; cancelled ones leave when due)."""
        return len(self._near) + self._far_n

    # ------------------------------------------------------------------ state in
    def load(self, states: Iterable[tuple[str, ConsentState]]) -> None:
        """Schedule, from a partition's whole state, every notice due after ``clock``."""
        self._near, self._far, self._buckets, self._open, self._far_n = [], {}, [], None, 0
        far: dict[int, list[str]] = {}
        clock, before, vocab, width = self.clock, self.before, self.vocab, self.width
        n = 0
        for subject, state in states:
            for _i, ea in expiring_grants(state, vocab):
                if ea - before > clock:
                    b = (ea - before) // width
                elif ea > clock:
                    b = ea // width
                else:
                    continue
                lst = far.get(b)
                if lst is None:
                    far[b] = [subject]
                elif lst[-1] is not subject:  # two grants of one subject in one bucket: one look
                    lst.append(subject)
                else:
                    continue
                n += 1
        self._far, self._far_n = far, n
        self._buckets = list(far)
        heapq.heapify(self._buckets)

    def changed(self, subject: str, old: ConsentState | None, new: ConsentState | None,
                now: int, schedule: bool = True) -> list[Notice]:
        """A consent record (or tombstone: ``new`` None) took the subject from ``old`` to
        ``new``. Returns the new grants' notices already due; schedules their others.

        ``schedule=False``: only the notices already due (a restore, which ends with
        ``load`` of the whole state: that schedules exactly the rest, so scheduling them
        here too would be thrown away)."""
        if new is None:
            return []  # erasure: pending entries find no grant when due (cancelled)
        vocab = self.vocab
        out: list[Notice] = []
        olds = None
        late = self.clock + self.before  # a grant expiring after this has nothing due yet
        for i, ea in expiring_grants(new, vocab):
            if not schedule and ea > late:
                continue
            if olds is None:
                olds = set(expiring_grants(old, vocab))
            if (i, ea) in olds:
                continue  # the same grant: its notices are scheduled or sent
            self._schedule(subject, i, ea, new, now, out, schedule)
        return out

    def _schedule(self, subject: str, i: int, ea: int, state: ConsentState, now: int,
                  out: list[Notice], schedule: bool = True) -> None:
        clock = self.clock
        if ea - self.before > clock:
            if schedule:
                self._push(ea - self.before, subject, i << 1 | _RECONFIRM)
            return
        out.append(self._notice(subject, i, ea, _RECONFIRM, state, now))
        if ea > clock:
            if schedule:
                self._push(ea, subject, i << 1 | _EXPIRED)
        else:
            out.append(self._notice(subject, i, ea, _EXPIRED, state, now))

    def _push(self, due: int, subject: str, code: int) -> None:
        b = due // self.width
        if self._open is not None and b <= self._open:
            heapq.heappush(self._near, (due, subject, code))
            return
        lst = self._far.get(b)
        if lst is None:
            self._far[b] = [subject]
            heapq.heappush(self._buckets, b)
        else:
            lst.append(subject)
        self._far_n += 1

    def _open_next(self, sent_to: int, lookup: Callable[[str], ConsentState | None]) -> None:
        """Open the first far bucket: onto the heap goes every notice of its subjects'
        current states that is due inside it and after ``sent_to`` (everything due up to
        ``sent_to`` went out; nothing due inside an unopened bucket has)."""
        b = heapq.heappop(self._buckets)
        subjects = self._far.pop(b)
        self._far_n -= len(subjects)
        self._open = b
        near, before, vocab, width = self._near, self.before, self.vocab, self.width
        for subject in dict.fromkeys(subjects):
            for i, ea in expiring_grants(lookup(subject), vocab):
                r = ea - before
                if r > sent_to:
                    if r // width == b:
                        heapq.heappush(near, (r, subject, i << 1 | _RECONFIRM))
                    # else: the reconfirm is in a later bucket (or pending), and schedules
                    # the expired notice when it goes out
                elif ea > sent_to and ea // width == b:
                    heapq.heappush(near, (ea, subject, i << 1 | _EXPIRED))

    # ------------------------------------------------------------------ time
    def advance(self, now: int, lookup: Callable[[str], ConsentState | None],
                limit: int | None = None) -> list[Notice]:
        """Every notice due at or before ``now`` whose grant ``lookup(subject)`` still
        holds; then ``clock = now`` (never backwards: a clock that steps back sends
        nothing until it passes the old one again).

        ``limit``: return about that many at most (a first start over a population whose
        grants expired long ago has millions due at once; held in one list they cost GBs).
        A call that stops early stops only between two due times, so every entry due at
        or before the last one it sent went out, and sets ``clock`` to that due time:
        the invariant holds, and the next call goes on from there (``clock < now``
        after the call says it stopped early). Entries
        sharing one due time all go out together, so ``limit`` can be exceeded by them.
        """
        if now <= self.clock:
            return []
        heap, buckets, width = self._near, self._buckets, self.width
        out: list[Notice] = []
        before, vocab = self.before, self.vocab
        last = None
        sent_to = self.clock  # every entry due up to here went out (entries pop in due order)
        while True:
            # a bucket opens before any entry due at or after its start pops
            while buckets and buckets[0] * width <= now and (not heap or buckets[0] * width <= heap[0][0]):
                self._open_next(sent_to, lookup)
            if not heap or heap[0][0] > now:
                break
            if limit is not None and len(out) >= limit and last is not None and heap[0][0] != last[0]:
                self.clock = last[0]
                return out
            entry = heapq.heappop(heap)
            if entry == last:
                continue  # the same grant scheduled twice (equal entries pop one after the other)
            last = entry
            due, subject, code = entry
            sent_to = due
            i, kind = code >> 1, code & 1
            ea = due + before if kind == _RECONFIRM else due
            state = lookup(subject)
            if not holds(state, vocab, i, ea):
                continue  # erased, withdrawn, renewed or blocked since: cancelled
            out.append(self._notice(subject, i, ea, kind, state, now))
            if kind == _RECONFIRM:
                self._push(ea, subject, i << 1 | _EXPIRED)
        self.clock = now
        return out

    def _notice(self, subject: str, i: int, ea: int, kind: int, state: ConsentState, now: int) -> Notice:
        self.sent[kind] += 1
        return Notice(subject, self.purposes[i], ea, KINDS[kind], state[UPDATED_AT], now)
