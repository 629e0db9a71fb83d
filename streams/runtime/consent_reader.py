"""The fast runtime's consent side: per-partition consent state, how far it is read, the
G2 barrier's catch-up, and the local checkpoint files that make a restart fast.

- A consent consumer, manually assigned the consent partitions that match
  the owned event partitions (the join is per partition), reads
  read_committed. State lives in a dict per partition; it is rebuilt from a
  local checkpoint file plus the compacted consent topic.
- G2: before a batch is decided, each of its partitions' consent is read up to
  the consent end offset asked of the broker *after* the batch was fetched
  (``catch_up(ends(parts))``).
- Consent records below the last committed consent offset (``emit_from``) had
  their outputs committed before: they are re-applied to state only, so their
  erasure notices and DLQ entries are not produced twice.

Contracts: ``ends`` is one broker request (bounded by ``ENDS_TIMEOUT_S``).
``catch_up`` blocks until the targets are reached: inside a batch at most
``catch_up_bound_s`` (then ``ConsentCatchUpTimeout``: an open transaction
would be aborted under us), while restoring as long as the topic needs.
``poll`` blocks at most ``timeout``. Outputs (erasure notices, DLQ entries)
are appended to the caller's list, never produced here. The loop's thread
only (rebalance callbacks included).
"""

from __future__ import annotations

import logging
import marshal
import os
import time
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition

from streams import metrics
from streams.errors import PFilterError
from streams.logs import kv
from streams.runtime import records
from streams.runtime.decider import PartitionDecider

log = logging.getLogger("streams.runtime.fast")

#: Consent records applied per consume() call while catching up.
CONSENT_CHUNK = 10_000
#: A long restore says how far it got this often (counts only).
RESTORE_REPORT_S = 5.0
#: One ListOffsets request: a healthy broker answers in milliseconds.
ENDS_TIMEOUT_S = 10
#: 2: compact states (consent.py: updated_at, offset, interned profile, packed times);
#: 3: profiles with the objected and gates masks (issue 11): a version 2 file is ignored
#: and the partition rebuilt from the consent topic
_CKPT_VERSION = 3


class ConsentCatchUpTimeout(PFilterError, TimeoutError):
    """Consent could not be read up to the barrier within the bound of one batch."""


class ConsentRestoreStalled(PFilterError, TimeoutError):
    """The restore read nothing for ``stall_s`` while partitions were still behind their end:
    the consent reader stopped fetching (seen after a broker restart). Ending the worker lets
    its supervisor restart it with fresh clients; waiting would hang it, never ready."""


class ConsentFiles:
    """Local checkpoint files of consent state, one per partition, written only right after
    a commit (their positions are then the committed consent offsets)."""

    def __init__(self, directory: Path, vocab_fingerprint: Any) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fingerprint = vocab_fingerprint
        self.last_write = time.monotonic()
        #: partition -> consent offset of the file this process read or wrote: a state is a
        #: function of the log up to its offset (under one vocabulary), so a partition whose
        #: position has not moved needs no new file. Why: rewriting an unchanged 1M-subject
        #: state every checkpoint interval took 4.4% of the fast runtime's main thread in a
        #: drain without any consent change (py-spy, e2e fast-eos-native).
        self._on_disk: dict[int, int] = {}

    def path(self, p: int) -> Path:
        return self.dir / f"consent-{p}.ckpt"

    def load(self, p: int) -> tuple[dict[str, tuple], int]:
        """(states, next consent offset) of partition ``p``; empty at 0 when there is no
        usable file (none, unreadable, or written under another policy vocabulary)."""
        try:
            data = marshal.loads(self.path(p).read_bytes())
            version, fp, offset, states = data
            if version == _CKPT_VERSION and fp == self.fingerprint:
                self._on_disk[p] = offset
                return states, offset
            log.info("checkpoint ignored (policy vocabulary or checkpoint format changed) %s", kv(partition=p))
        except FileNotFoundError:
            pass
        except (ValueError, EOFError, TypeError) as exc:
            log.warning("checkpoint unreadable, rebuilding from the log %s", kv(partition=p, error=type(exc).__name__))
        return {}, 0

    def write(self, states: dict[int, dict[str, tuple]], positions: dict[int, int]) -> None:
        """Atomically replace each partition's file (write, then rename) whose position moved."""
        on_disk = self._on_disk
        for p, st in states.items():
            if on_disk.get(p) == positions[p]:
                continue
            tmp = self.path(p).with_suffix(".tmp")
            tmp.write_bytes(marshal.dumps((_CKPT_VERSION, self.fingerprint, positions[p], st)))
            os.replace(tmp, self.path(p))
            on_disk[p] = positions[p]
        self.last_write = time.monotonic()


class ConsentReader:
    """Consent state of the owned partitions and how far it has been read and committed."""

    def __init__(self, consumer: Any, offsets_client: Any, topic: str, filt: Any, files: ConsentFiles,
                 catch_up_bound_s: float, stall_s: float = 60.0, heartbeat: Any = None) -> None:
        """``consumer``: assigned here, never subscribes, never commits. ``offsets_client``:
        asks end offsets on a connection of its own (see ``ends``). ``filt``: the engine
        Filter (shared with the loop's decisions through ``decider``)."""
        self.consumer = consumer
        self.offsets_client = offsets_client
        self.topic = topic
        self.files = files
        self.catch_up_bound_s = catch_up_bound_s
        #: the restore gives up after reading nothing for this long (PFILTER_STALL_TIMEOUT_S)
        self.stall_s = stall_s
        self.heartbeat = heartbeat  # streams.runtime.stall.Heartbeat: beaten per poll
        self.states: dict[int, dict[str, tuple]] = {}
        self.decider = PartitionDecider(filt, self.states)
        self.pos: dict[int, int] = {}        # next consent offset to apply
        self.emit_from: dict[int, int] = {}  # records below were already output
        self.high: dict[int, int] = {}       # last known end offset
        self.committed: dict[int, int] = {}  # consent offset of the last commit
        #: every owned partition's consent restored up to its end (set by ``restore``)
        self.ready = False
        #: consent notices of the owned partitions (streams.runtime.notices), if the worker sends them
        self.notices: Any = None

    # ------------------------------------------------------------------ ownership
    def assign(self, committed: dict[int, int], clocks: dict[int, int | None] | None = None) -> None:
        """Take on partitions: ``committed`` maps each new one to its committed consent
        offset (the group's; 0 if none). State comes from its checkpoint file when that is
        not ahead of the commit (a checkpoint can never be ahead of the commit it followed)."""
        for p, emit_from in committed.items():
            states, offset = self.files.load(p)
            if offset > emit_from:
                states, offset = {}, 0
            self.states[p] = states
            self.pos[p] = offset
            self.emit_from[p] = emit_from
            self.committed[p] = emit_from
            if self.notices is not None:  # the notice clock committed with that offset
                self.notices.assign(p, (clocks or {}).get(p))
        self._reassign()
        self.ready = False

    def forget(self, gone: set[int]) -> None:
        for p in gone:
            self.states.pop(p, None)
            self.pos.pop(p, None)
            self.emit_from.pop(p, None)
            self.high.pop(p, None)
            self.committed.pop(p, None)
        if self.notices is not None:
            self.notices.forget(gone)
        self._reassign()

    def _reassign(self) -> None:
        tps = [TopicPartition(self.topic, p, self.pos[p] or OFFSET_BEGINNING) for p in sorted(self.states)]
        self.consumer.assign(tps)

    # ------------------------------------------------------------------ reading
    def restore(self, out: list) -> int:
        """Catch up every owned partition to its end offset now; then ``ready``."""
        n = self.catch_up(self.ends(set(self.states)), out, restoring=True)
        log.info("consent restored %s", kv(records=n, partitions=len(self.states)))
        if self.notices is not None:
            for p, st in self.states.items():
                self.notices.load(p, st.items())
        self.ready = True
        return n

    def catch_up(self, targets: dict[int, int], out: list, *, restoring: bool = False) -> int:
        """Apply consent until every partition in ``targets`` reached its offset (exclusive).

        Within a batch (the barrier) this is bounded by ``catch_up_bound_s`` (half the
        transaction timeout: longer and an open transaction would be aborted under us).
        The restore before the worker is ready holds no transaction and takes as long
        as the topic needs (at ~130,000 records/s), reporting its progress."""
        pending = {p for p, hw in targets.items() if self.pos.get(p, 0) < hw}
        applied = 0
        start = time.monotonic()
        deadline = None if restoring else start + self.catch_up_bound_s
        next_report = start + RESTORE_REPORT_S
        progress_at, seen = start, [self.pos.get(p, 0) for p in sorted(targets)]
        while pending:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise ConsentCatchUpTimeout("consent catch-up exceeded half the transaction timeout")
            if restoring and now > next_report:
                log.info("restoring consent %s", kv(records=applied, partitions_left=len(pending),
                                                     seconds=round(now - start)))
                next_report = now + RESTORE_REPORT_S
            if self.heartbeat is not None:
                self.heartbeat.beat()
            # a restore ends with the notices' load of the whole state: no scheduling before it
            applied += self.poll(out, timeout=0.1, schedule=not restoring)
            pending = {p for p in pending if self.pos.get(p, 0) < targets[p]}
            if restoring:
                at = [self.pos.get(p, 0) for p in sorted(targets)]
                if at != seen:
                    progress_at, seen = time.monotonic(), at
                elif pending and time.monotonic() - progress_at > self.stall_s:
                    raise ConsentRestoreStalled(
                        f"the consent restore read nothing for {self.stall_s:g} s with {len(pending)} "
                        f"partitions of {self.topic!r} behind their end (PFILTER_STALL_TIMEOUT_S)")
        return applied

    def poll(self, out: list, timeout: float, schedule: bool = True) -> int:
        """Apply what one consume() returns (up to ``CONSENT_CHUNK`` records); outputs of
        records not output before go to ``out``. Returns the records applied.
        ``schedule=False``: notices already due go out, the rest is left to ``restore``'s
        load of the whole state (``NoticeSchedule.changed``)."""
        msgs = self.consumer.consume(CONSENT_CHUNK, timeout=timeout)
        if not msgs:
            return 0
        by_p: dict[int, list[tuple]] = {}
        for m in msgs:
            p = m.partition()
            if m.error() is not None and records.is_partition_eof(m):
                if p in self.pos:
                    self.pos[p] = max(self.pos[p], m.offset())
                continue
            if p not in self.states:
                continue  # revoked meanwhile
            by_p.setdefault(p, []).append(records.from_message(m))
        n = 0
        decider = self.decider
        for p, recs in by_p.items():
            emit_from = self.emit_from[p]
            replay = [r for r in recs if r[2] < emit_from]
            live = [r for r in recs if r[2] >= emit_from]
            if replay:
                decider.apply_consent(p, replay, replay=True)  # state only: outputs were committed before
            res = None
            if live:
                notices = self.notices
                old = notices.before(live, self.states[p]) if notices is not None else None
                res = decider.apply_consent(p, live)
                out.extend(res.records)
                if old:
                    notices.after(p, old, self.states[p], out, schedule)
            metrics.record_consent(res, self.topic)
            self.pos[p] = recs[-1][2] + 1
            n += len(recs)
        metrics.record_consent(None, self.topic, applied=n)
        return n

    def ends(self, parts: set[int] | list[int]) -> dict[int, int]:
        """End offset of each consent partition, asked of the broker now (one request).

        The consent consumer reads read_committed, so this is the last stable
        offset: every consent record the broker acknowledged (and, if written in
        a transaction, committed) before this call lies below it. Asked on a
        connection of its own: the broker answers a connection's requests in
        order, so on the consent consumer's connection the request would wait
        behind that consumer's fetch long-poll (measured: ~5 ms per batch
        instead of ~0.2 ms)."""
        tps = [TopicPartition(self.topic, p, OFFSET_END) for p in sorted(parts)]
        ends = {}
        for tp in self.offsets_client.offsets_for_times(tps, timeout=ENDS_TIMEOUT_S):
            if tp.error is not None:
                raise KafkaException(tp.error)
            ends[tp.partition] = tp.offset
            self.high[tp.partition] = tp.offset
            metrics.record_consent_lag(tp.partition, tp.offset, self.pos.get(tp.partition, 0))
        return ends

    # ------------------------------------------------------------------ committing
    def uncommitted(self) -> list[TopicPartition]:
        """Consent offsets applied since the last commit: the next commit includes them."""
        notices = self.notices
        if notices is None:
            return [TopicPartition(self.topic, p, o) for p, o in self.pos.items() if o > self.committed.get(p, 0)]
        # with notices: each partition's clock rides on its consent offset, in the same
        # transaction as the notices it covers; a partition that produced notices is
        # always included (its clock moved, and its offsets fence a zombie's transaction)
        return [TopicPartition(self.topic, p, o, metadata=notices.metadata(p)) for p, o in self.pos.items()
                if o > self.committed.get(p, 0) or p in notices.dirty]

    def mark_committed(self) -> None:
        """The commit succeeded: what was applied is committed, and its outputs are out."""
        for p, o in self.pos.items():
            self.emit_from[p] = max(self.emit_from[p], o)
            self.committed[p] = o
        if self.notices is not None:
            self.notices.mark_committed()

    def write_files(self) -> None:
        """Only right after a commit: positions equal the committed consent offsets."""
        self.files.write(self.states, self.pos)

    def close(self) -> None:
        self.consumer.close()
        self.offsets_client.close()
