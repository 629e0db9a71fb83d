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

Pending notices live in a heap of ``(due, subject, code)`` (``code`` = purpose
index << 1 | kind), one entry per grant: the ``expired`` entry is pushed when the
``reconfirm`` one is sent. ``advance`` pops only what is due (O(k log n)), never
scans the state; ``load`` is one pass plus ``heapify`` (O(n)). Cancellation is
lazy: a popped entry whose grant is no longer in the state is dropped (so the heap
holds no per-subject index to keep in step with erasures).
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

    __slots__ = ("purposes", "before", "vocab", "clock", "_heap", "sent")

    def __init__(self, purposes: tuple[str, ...], notice_before_ms: int, vocab: int,
                 clock: int | None = None) -> None:
        """``clock``: the durable clock this partition was committed with (None: never)."""
        if notice_before_ms <= 0:
            raise ValueError("notice_before must be positive")
        self.purposes = purposes
        self.before = notice_before_ms
        self.vocab = vocab
        self.clock = NEVER if clock is None else clock
        self._heap: list[tuple[int, str, int]] = []
        #: notices returned so far, per kind (for metrics)
        self.sent = [0, 0]

    @property
    def pending(self) -> int:
        """Heap entries (one per grant still to notify; cancelled ones leave when due)."""
        return len(self._heap)

    # ------------------------------------------------------------------ state in
    def load(self, states: Iterable[tuple[str, ConsentState]]) -> None:
        """Schedule, from a partition's whole state, every notice due after ``clock``."""
        heap = []
        clock, before, vocab = self.clock, self.before, self.vocab
        for subject, state in states:
            for i, ea in expiring_grants(state, vocab):
                if ea - before > clock:
                    heap.append((ea - before, subject, i << 1 | _RECONFIRM))
                elif ea > clock:
                    heap.append((ea, subject, i << 1 | _EXPIRED))
        heapq.heapify(heap)
        self._heap = heap

    def changed(self, subject: str, old: ConsentState | None, new: ConsentState | None,
                now: int) -> list[Notice]:
        """A consent record (or tombstone: ``new`` None) took the subject from ``old`` to
        ``new``. Returns the new grants' notices already due; schedules their others."""
        if new is None:
            return []  # erasure: pending entries find no grant when due (cancelled)
        vocab = self.vocab
        out: list[Notice] = []
        olds = None
        for i, ea in expiring_grants(new, vocab):
            if olds is None:
                olds = set(expiring_grants(old, vocab))
            if (i, ea) in olds:
                continue  # the same grant: its notices are scheduled or sent
            self._schedule(subject, i, ea, new, now, out)
        return out

    def _schedule(self, subject: str, i: int, ea: int, state: ConsentState, now: int,
                  out: list[Notice]) -> None:
        clock = self.clock
        if ea - self.before > clock:
            heapq.heappush(self._heap, (ea - self.before, subject, i << 1 | _RECONFIRM))
            return
        out.append(self._notice(subject, i, ea, _RECONFIRM, state, now))
        if ea > clock:
            heapq.heappush(self._heap, (ea, subject, i << 1 | _EXPIRED))
        else:
            out.append(self._notice(subject, i, ea, _EXPIRED, state, now))

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
        heap = self._heap
        out: list[Notice] = []
        before, vocab = self.before, self.vocab
        last = None
        while heap and heap[0][0] <= now:
            if limit is not None and len(out) >= limit and last is not None and heap[0][0] != last[0]:
                self.clock = last[0]
                return out
            entry = heapq.heappop(heap)
            if entry == last:
                continue  # the same grant scheduled twice (equal entries pop one after the other)
            last = entry
            due, subject, code = entry
            i, kind = code >> 1, code & 1
            ea = due + before if kind == _RECONFIRM else due
            state = lookup(subject)
            if not holds(state, vocab, i, ea):
                continue  # erased, withdrawn, renewed or blocked since: cancelled
            out.append(self._notice(subject, i, ea, kind, state, now))
            if kind == _RECONFIRM:
                heapq.heappush(heap, (ea, subject, i << 1 | _EXPIRED))
        self.clock = now
        return out

    def _notice(self, subject: str, i: int, ea: int, kind: int, state: ConsentState, now: int) -> Notice:
        self.sent[kind] += 1
        return Notice(subject, self.purposes[i], ea, KINDS[kind], state[UPDATED_AT], now)
