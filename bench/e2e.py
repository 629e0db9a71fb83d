"""End-to-end benchmark (`pfilter bench e2e`): real broker, real worker processes.

Everything runs on one machine: the local broker (started with
:class:`~streams.kafka.broker.LocalBroker` unless ``KAFKA_BOOTSTRAP_SERVERS``
is set), this driver, and one worker process (or peer) at a time. Every run
uses its own topics (``e2e.<run>.*``, via the topic settings and
``topic_output_prefix`` as ``pfilter demo`` does) and its own consumer groups.

Phases, in order (the run as a whole is limited to ``max_total_s``, 19
minutes by default, counted from the command's start including peer builds
and the broker start; each drain's budget is cut if the phases after it would
not fit, and the peers, last, share what is left equally):

1. **preload** (``streams.loadgen``, backlog mode): consent for ``subjects``
   subjects (~95% of them have a record), then ``events`` click/purchase
   events (15% purchases) spread over the past hour, murmur2-partitioned.
2. **consent restore and memory, fast runtime** (``PFILTER_STORE`` does not
   apply: the fast runtime keeps a dict per partition). Three worker starts on
   *idle* event topics (a few hundred events, so each run commits and its
   numbers are not polluted by event fetch buffers):
   a baseline on an *empty* consent topic, a restore of the preloaded consent
   topic, and a restart of the same group (state from its local checkpoint,
   written on the clean stop). Time to ready is ``WorkerProcess.wait_ready``
   (process start, imports, group join, and the consent catch-up up to the
   high watermark that ``/readyz`` waits for). The **restore rate** is
   ``consent records / (restore ready - baseline ready)``: the baseline's time
   to ready is the fixed start-up cost that an empty consent topic also pays,
   so the difference is the time spent reading and applying consent. The
   gross rate (records / restore ready) is reported beside it.
   **Memory per subject**: worker RSS (psutil) after the restore, minus the
   baseline worker's RSS, divided by the consent records in state. It counts
   everything the restore left in the process: the dicts and state tuples,
   and heap the consent fetches and JSON decoding grew that the allocator
   kept. The same figure after the checkpoint restart (no fetches, no
   decoding) is reported beside it.
3. **drain** per runtime (``RUNTIMES`` in bench/e2e_common.py:
   ``fast-eos-native`` / ``fast-eos-python``: fast runtime, exactly_once, the
   full default policy, ``PFILTER_ENGINE`` native / python, each once;
   ``fast-eos-offers``: the like-for-like row, exactly_once, native, the
   default policy cut to its ``offers`` engine and fed clicks only (purchases
   from an empty topic), as the peers are, with the decision log on;
   ``fast-eos``: the configured engine; ``fast-alo``: fast, at_least_once;
   ``faust``: faust runtime, RocksDB store), each in its own consumer group
   over the whole preloaded backlog (the clicks, for the offers row).
   The worker's ``/metrics`` counter ``pfilter_events_in_total`` (summed over
   both event topics; the fast runtime increments it after a batch's outputs
   and offsets were committed, faust after the batch was decided) is sampled
   every ``SAMPLE_S``. **events/s = events decided between the first sample
   that shows decisions and the first sample that shows the final count (or
   the end of the budget) / the time between those samples.** Start-up and
   consent restore are outside that window; the window is capped at
   ``budget_s`` after the first decision, so a runtime that cannot drain the
   backlog in the budget is measured over the budget. Why the metric, not the
   decision topic: reading back millions of decision records would take as
   long as the run and compete with it for the two cores; sampling costs one
   small HTTP request per quarter second, and taking both ends of the window
   at sample instants makes the count and the time exact over that window
   (error: one sampling interval on the end of a drained run, <1% of a
   30-second window). The worker's CPU use over the window (psutil: user +
   system of all threads, of its reaped children and of its live children)
   is reported too, as cores used and as **events per CPU-second** (events
   in the window / CPU seconds in it): on a shared machine a worker may not
   get a core, and per CPU-second is the figure that does not depend on it.
   The worker's ``pfilter_stage_seconds_total{stage}`` counters, read at
   both ends of the window, give the share of the window's wall time each
   stage of its loop took (consume, barrier, decide, produce, commit; faust:
   barrier, decide, send, consent): the profile that says where a runtime's
   time goes, measured on the run itself at the cost of a clock read per
   stage per batch.
3b. **faust floor** (when the faust runtime is measured): ``bench/faust_floor.py``,
   a faust agent that only takes batches of the same preloaded event topics
   (same batch size and buffer), for at most ``FAUST_FLOOR_S``: the rate no
   faust-based filter can exceed on this machine.
4. **faust memory** (RocksDB): baseline and restore runs like phase 2 with
   the faust runtime; the restore run lasts until its consent agent applied
   every consent record or ``FAUST_MEMORY_S``. Reported: RSS growth per
   subject held (RocksDB or the barrier's read-ahead overlay) and the on-disk
   size of the worker's state dir (``<state>/faust``) per subject in RocksDB.
5. **latency** at a fixed rate (``latency_rate`` events/s for
   ``latency_duration_s``, ``latency_churn`` consent changes per event)
   through the fast runtime (both guarantees by default), produced live by
   ``streams.loadgen`` into fresh input topics while the worker runs (the
   restore phase's group, so its checkpoint makes the start quick). Per
   decision record: **latency = the decision record's broker timestamp - the
   input record's CreateTime.** The input's CreateTime is set by the load
   generator's producer when it calls produce() (so producer batching, linger
   5 ms, is included). The input topics keep the default ``CreateTime``
   (LogAppendTime is not set on them); the decision topic of this phase is
   created by the benchmark with ``message.timestamp.type=LogAppendTime`` so
   that its timestamp is the broker's clock when it appended the decision
   (otherwise it would be the worker producer's CreateTime, taken before the
   worker's own batching and the broker round trip). Producer, broker and
   worker share one clock (one machine), so there is no skew. In exactly-once
   mode a decision becomes visible to read_committed consumers at the
   transaction commit shortly after its append; that commit time is not in
   the figure. Also reported: the worker-side part (``decided_at`` - input
   CreateTime).
6. **peers** (``bench/peers/run.py``'s ``run_peer``): Kafka Streams, Quix
   Streams and naive faust run only the ``offers`` filter over the *same*
   preloaded clickstream and consent topics (clicks only: the peers do not
   read purchases). Their rate is events consumed / time between first and
   last output (broker append time), as run_peer's docstring defines. Each
   peer gets ``budget_s + PEER_START_ALLOWANCE_S`` in total (start, consent
   restore, events) or its share of the time left; run_peer stops it then and
   measures over the window it had (run_peer's stop after 5 s without output
   is lifted for this: a peer restoring a large consent topic pauses its
   outputs for longer). Our ratio to a peer is our events/s / its events/s:
   Peers' events per CPU-second: events/s / the peer's CPU share (its
   process and children, the JVM for Kafka Streams), and our ratios to each
   peer in both figures (``ratios``, ``ratios_per_cpu``).
   Note that our full-policy runtimes decide three engines (offers, email, partner_ads)
   and write one decision record per event (an entry per engine), and also decide purchases (larger
   events), while the peers decide one engine and write only the emitted
   events.

``--before-json`` takes the ``--json`` output of an earlier run (e.g. on
main, before a change) and the report shows its stage table and rates beside
this run's.

Module layout: this file runs the phases in order within the time limit;
bench/e2e_setup.py (settings, topics, broker, preload), bench/e2e_worker.py
(our workers: restore, drain, faust memory, latency), bench/e2e_peers.py
(faust floor, peers), bench/e2e_results.py (dataclasses, ratios, targets),
bench/report.py (markdown and chart), bench/e2e_common.py (constants, helpers).

Targets (reported as met or missed, with the margin): fast runtime >= 150,000
events/s per worker process and ahead of Kafka Streams; issue 10: fast runtime
exactly once, full default policy (native engine) >= 1.5x the Kafka Streams
peer's events/s and >= 2x its events per CPU-second; faust >= 30,000
events/s; consent restore >= 500,000 records/s; memory mode <= 100 bytes of
RSS per subject.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.config import Settings

from bench.e2e_common import *  # noqa: F403 - re-exported: the CLI and tests read the constants here
from bench.e2e_common import E2EError, E2EOptions, machine_info  # noqa: F401 - E2EError: the CLI catches it here
from bench.e2e_peers import PeerPhases
from bench.e2e_results import before_summary, ratios, ratios_per_cpu, targets
from bench.e2e_setup import SetupPhases
from bench.e2e_worker import WorkerPhases
from bench.report import render_markdown, write_chart


# ---------------------------------------------------------------------- the run
class E2E(SetupPhases, WorkerPhases, PeerPhases):
    """One run: the phases (mixed in from bench/e2e_*.py) in order, within the time limit."""

    def __init__(self, base: Settings, opts: E2EOptions, say: Callable[[str], None] = print) -> None:
        self.base = base
        self.opts = opts
        self.say = say
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.stamp = stamp
        self.run_id = f"{stamp[9:]}-{uuid.uuid4().hex[:4]}"
        self.pre = f"e2e.{self.run_id}."
        self.work = Path(base.state_dir) / "e2e" / self.run_id
        self.work.mkdir(parents=True, exist_ok=True)
        self.secret = base.pseudonym_key or (None if base.pseudonym_key_file else f"e2e-only-secret-{self.run_id}")
        # the default policy encrypts email's fields, so the worker needs a KEK; a throwaway one
        # per run unless the operator gives theirs (the bench's outputs are never read back)
        self.kek = base.kek or (None if base.kek_file else secrets.token_hex(32))
        self.results: dict[str, Any] = {"run": self.run_id}
        self.idle_events = 0
        self.n_consent = 0
        self.phase_times: dict[str, float] = {}


    # -------------------------------------------------------------- all
    def _timed(self, label: str, fn: Callable[[], Any]) -> Any:
        t = time.monotonic()
        try:
            return fn()
        finally:
            self.phase_times[label] = round(time.monotonic() - t, 1)

    def remaining(self) -> float:
        return self.t0 + self.opts.max_total_s - time.monotonic()

    def run(self) -> dict[str, Any]:
        t0 = self.t0 = time.monotonic()
        o = self.opts
        self.results["started_at"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
        self.results["machine"] = machine_info()
        self.results["options"] = {
            "events": o.events, "subjects": o.subjects, "budget_s": o.budget_s, "runtimes": list(o.runtimes),
            "peers": list(o.peers), "latency_runtimes": list(o.latency_runtimes), "latency_rate": o.latency_rate,
            "latency_duration_s": o.latency_duration_s, "latency_churn": o.latency_churn, "seed": o.seed,
            "max_total_s": o.max_total_s, **o.extra,
        }
        b = self.base
        self.results["settings"] = {
            "partitions": b.partitions, "batch_size": b.batch_size, "batch_timeout_ms": b.batch_timeout_ms,
            "checkpoint_interval_s": b.checkpoint_interval_s, "faust_store": b.store,
            "rocksdb_block_cache_mb": b.rocksdb_block_cache_mb, "rocksdb_write_buffer_mb": b.rocksdb_write_buffer_mb,
            "format": b.format_clickstream, "kafka_heap": b.kafka_heap,
        }
        if o.peers:
            from bench.peers.run import PeerError, ensure_built

            self.say("building peers (idempotent)…")
            for name in o.peers:
                try:
                    self._timed(f"build {name}", lambda n=name: ensure_built(n))
                except PeerError as exc:
                    self.say(f"  {name}: build failed: {str(exc).splitlines()[0]}")
        self._timed("broker", self.ensure_broker)
        self._timed("preload", self.preload)
        if o.memory:
            self._timed("restore fast", self.restore_fast)
        self.results["drain"] = {}
        for i, key in enumerate(o.runtimes):
            # keep time for what follows: faust memory, latency, and a minimum per peer
            after = ((FAUST_MEMORY_S + 25 if o.faust_memory else 0) + 45 * len(o.latency_runtimes)
                     + (FAUST_FLOOR_S + 20 if "faust" in o.runtimes else 0)
                     + (PEER_MIN_S + 15) * len(o.peers) + 110 * (len(o.runtimes) - i - 1))
            budget = max(10.0, min(o.budget_s, self.remaining() - after - 60))
            self.results["drain"][key] = self._timed(f"drain {key}", lambda k=key, b=budget: self.drain(k, b)).to_json()
        if "faust" in o.runtimes:
            self.results["faust_floor"] = self._timed(
                "faust floor", lambda: self.faust_floor(min(FAUST_FLOOR_S, max(10.0, self.remaining() / 20))))
        if o.faust_memory:
            self._timed("memory faust", self.memory_faust)
        self.results["latency"] = {}
        for key in o.latency_runtimes:
            self.results["latency"][key] = self._timed(f"latency {key}", lambda k=key: self.latency(k))
        self.results["peers"] = {}
        for i, name in enumerate(o.peers):
            share = (self.remaining() - REPORT_RESERVE_S) / (len(o.peers) - i)
            timeout = max(PEER_MIN_S, min(o.budget_s + PEER_START_ALLOWANCE_S, share - 10))
            self.results["peers"][name] = self._timed(f"peer {name}", lambda n=name, t=timeout: self.peer(n, t))
        self.results["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        self.results["phase_s"] = self.phase_times
        self.results["total_wall_s"] = round(time.monotonic() - t0, 1)
        if o.before_json:
            self.results["before"] = before_summary(o.before_json)
        self.results["ratios"] = ratios(self.results)
        self.results["ratios_per_cpu"] = ratios_per_cpu(self.results)
        self.results["targets"] = targets(self.results)
        if o.write_files:
            o.results_dir.mkdir(parents=True, exist_ok=True)
            md = o.results_dir / f"e2e-{self.stamp}.md"
            png = o.results_dir / f"e2e-{self.stamp}.png"
            try:
                write_chart(self.results, png)
                self.results["chart_png"] = str(png)
            except Exception as exc:  # noqa: BLE001 - the figures matter more than the picture
                self.results["chart_error"] = f"{type(exc).__name__}: {exc}"
            self.results["report_md"] = str(md)
            md.write_text(render_markdown(self.results))
        return self.results


def run(base: Settings, opts: E2EOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    return E2E(base, opts, say).run()


if __name__ == "__main__":  # pragma: no cover
    from streams.config import load_settings

    print(run(load_settings(), E2EOptions(events=int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_EVENTS)))
