"""Phases with our own worker processes: consent restore and memory, drain, faust memory, latency."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import psutil

from streams.config import Settings
from streams.kafka.clients import admin_config

from bench.e2e_common import *  # noqa: F403 - the phases share the constants and helpers
from bench.e2e_common import offers_only_policy
from bench.e2e_results import DrainResult, Sample, Window


class WorkerPhases:
    """Start our runtimes and measure them; mixed into :class:`bench.e2e.E2E`."""

    # -------------------------------------------------------------- phase 2
    def _ready_run(self, s: Settings, name: str, runtime: str, *, idle_events: bool = True) -> dict[str, Any]:
        """Start, time to ready, wait for the idle events, settle, RSS; the worker keeps running.

        ``idle_events=False`` for a restart of a group that already committed them.
        """
        w = self.start_worker(s, name, runtime)
        ready_s = w.wait_ready(timeout=STARTUP_CAP_S)
        consent_at_ready = metric(w, "pfilter_consent_records_total")
        if idle_events:
            self.wait_events(w, self.idle_events, timeout=60)
        time.sleep(SETTLE_S)
        return {"worker": w, "ready_s": round(ready_s, 3), "rss": rss(w.proc.pid),
                "consent_at_ready": consent_at_ready}

    def restore_fast(self) -> None:
        self.say("fast runtime: baseline (empty consent), restore, restart from checkpoint…")
        out: dict[str, Any] = {}
        s_base = self.settings("fast-baseline", inputs="idle", consent="empty", runtime="fast")
        self.create(s_base)  # the worker refuses to start without its state topics
        r = self._ready_run(s_base, "fast-baseline", "fast")
        r.pop("worker").stop()
        out["baseline"] = r
        s_rest = self.settings("fast-restore", inputs="idle", runtime="fast")
        self.create(s_rest)
        r = self._ready_run(s_rest, "fast-restore", "fast")
        w = r.pop("worker")
        r["consent_records"] = metric(w, "pfilter_consent_records_total")
        w.stop()
        out["restore"] = r
        s_again = s_rest.model_copy(update={"web_port": free_port()})
        r = self._ready_run(s_again, "fast-restart", "fast", idle_events=False)
        w = r.pop("worker")
        r["consent_records"] = metric(w, "pfilter_consent_records_total")
        w.stop()
        out["restart_from_checkpoint"] = r
        n = out["restore"]["consent_records"] or self.n_consent
        net = out["restore"]["ready_s"] - out["baseline"]["ready_s"]
        out["consent_records"] = int(n)
        out["restore_net_s"] = round(net, 3)
        out["restore_records_per_s"] = round(n / net) if net > 0 else None
        out["restore_records_per_s_gross"] = round(n / out["restore"]["ready_s"])
        ck = out["restart_from_checkpoint"]
        ck_net = ck["ready_s"] - out["baseline"]["ready_s"]
        out["restart_net_s"] = round(ck_net, 3)
        out["restart_records_per_s"] = round(n / ck_net) if ck_net > 0 else None
        out["restart_read_from_log"] = ck.get("consent_records")
        growth = out["restore"]["rss"] - out["baseline"]["rss"]
        out["rss_growth_bytes"] = growth
        out["bytes_per_subject"] = round(growth / n, 1) if n else None
        # the same state loaded from the checkpoint: no consent fetches or JSON
        # decoding happened in this process, so what the allocator kept from
        # them is absent; closer to the size of the state itself
        ck_growth = ck["rss"] - out["baseline"]["rss"]
        out["rss_growth_bytes_checkpoint"] = ck_growth
        out["bytes_per_subject_checkpoint"] = round(ck_growth / n, 1) if n else None
        self.results["restore_fast"] = out
        self.say(f"  restore {n:,.0f} records: ready in {out['restore']['ready_s']:.2f}s "
                 f"(baseline {out['baseline']['ready_s']:.2f}s) -> {out['restore_records_per_s'] or 0:,} records/s; "
                 f"restart from checkpoint ready in {ck['ready_s']:.2f}s; "
                 f"RSS +{growth / 2**20:.0f} MiB = {out['bytes_per_subject']} B/subject "
                 f"(after the checkpoint restart: {out['bytes_per_subject_checkpoint']} B/subject)")

    # -------------------------------------------------------------- phase 3
    def drain(self, key: str, budget: float) -> DrainResult:
        spec = RUNTIMES[key]
        name = f"drain-{key}"
        changes: dict[str, Any] = {"runtime": spec.runtime, "processing_guarantee": spec.guarantee}
        if spec.engine:
            changes["engine"] = spec.engine
        total = self.opts.events
        if spec.policy == "offers":
            changes["policy_file"] = offers_only_policy(self.work / "offers-only.toml")
            # clicks only, like the peers: purchases come from an empty topic
            changes["topic_purchases"] = f"{self.pre}empty.purchases"
            total = int((self.results.get("preload") or {}).get("clicks") or total)
        s = self.settings(name, **changes)
        self.create(s)
        self.say(f"drain {key}: {total:,} events, budget {budget:.0f}s after the first decision…")
        res = DrainResult(runtime=spec.runtime, processing_guarantee=spec.guarantee,
                          engine=spec.engine or str(self.base.engine), policy=spec.policy,
                          budget_s=round(budget, 1), machine_busy_before=self.quiet(),
                          load_avg_before=round(os.getloadavg()[0], 2))
        w = self.start_worker(s, name, spec.runtime)
        t0 = time.monotonic()
        try:
            try:
                res.ready_s = round(w.wait_ready(timeout=STARTUP_CAP_S), 3)
            except (TimeoutError, RuntimeError) as exc:
                res.error = str(exc).splitlines()[0]
                return res
            window = self._sample_drain(w, total, budget, t0, res)
            res.rss_end = rss(w.proc.pid) if w.proc.poll() is None else None
            res.consent_records = metric(w, "pfilter_consent_records_total")
            res.load_avg_end = round(os.getloadavg()[0], 2)
            if window is not None:
                res.set_window(*window)
        finally:
            res.exit_code = w.stop()
            res.log = str(w.log_file)
        self.say(f"  {key}: {res.events_per_s or 0:,} events/s over {res.window_s or 0}s "
                 f"({res.events_in_window or 0:,} events, {res.stopped_by}; worker CPU {res.cpu_share} cores, "
                 f"{res.events_per_cpu_s or 0:,} events per CPU-s)")
        return res

    def _sample_drain(self, w: Any, total: int, budget: float, t0: float, res: DrainResult) -> Window | None:
        """Sample the worker's counters until drained, budget spent, or it stops; the window measured."""
        proc = psutil.Process(w.proc.pid)
        first: Sample | None = None
        last: Sample | None = None
        res.stopped_by = "budget"
        prev_v = -1.0
        while True:
            v = metric(w, "pfilter_events_in_total")
            t = time.monotonic()
            if v is not None:
                if first is None and v > 0:
                    first = Sample(t, v, cpu_s(proc), stages(w))
                    res.first_decision_s = round(t - t0, 2)
                if first is not None and v != prev_v:
                    last = Sample(t, v, cpu_s(proc), stages(w))
                prev_v = v
                if v >= total:
                    res.stopped_by = "drained"
                    break
            if first is not None and t - first.t >= budget:
                assert last is not None
                last = Sample(t, v if v is not None else last.count, cpu_s(proc), stages(w) or last.stages)
                break
            if first is None and t - t0 > STARTUP_CAP_S:
                res.stopped_by = "no decision within the start-up cap"
                break
            if w.proc.poll() is not None:
                res.stopped_by = f"worker exited ({w.proc.returncode})"
                break
            time.sleep(SAMPLE_S)
        if first is None or last is None or last.t <= first.t:
            return None
        return first, last

    # -------------------------------------------------------------- phase 5
    def memory_faust(self) -> None:
        self.say("faust runtime (RocksDB): baseline (empty consent) and consent restore…")
        out: dict[str, Any] = {"store": self.base.store}
        s_base = self.settings("faust-baseline", inputs="idle", consent="empty", runtime="faust")
        self.create(s_base)
        r = self._ready_run(s_base, "faust-baseline", "faust")
        r.pop("worker").stop()
        r["state_dir_bytes"] = du(Path(s_base.state_dir) / "faust")
        out["baseline"] = r
        s = self.settings("faust-restore", inputs="idle", runtime="faust")
        self.create(s)
        w = self.start_worker(s, "faust-restore", "faust")
        try:
            ready_s = w.wait_ready(timeout=STARTUP_CAP_S)
            t0 = time.monotonic()
            applied = 0.0
            first: tuple[float, float] | None = None
            stop = "budget"
            limit = min(self.opts.budget_s, FAUST_MEMORY_S)
            while time.monotonic() - t0 < limit:
                v = metric(w, "pfilter_consent_records_total")
                if v is not None:
                    applied = v
                    if first is None and v > 0:
                        first = (time.monotonic(), v)
                    if v >= self.n_consent:
                        stop = "all applied"
                        break
                if w.proc.poll() is not None:
                    stop = "worker exited"
                    break
                time.sleep(SAMPLE_S)
            t_end = time.monotonic()
            self.wait_events(w, self.idle_events, timeout=30)
            time.sleep(SETTLE_S)
            rss = rss(w.proc.pid) if w.proc.poll() is None else None
            ahead = metric(w, "pfilter_barrier_catchup_records_total")
            applied = metric(w, "pfilter_consent_records_total") or applied
        finally:
            w.stop()
        state_bytes = du(Path(s.state_dir) / "faust")
        n = int(applied)
        out["restore"] = {"ready_s": round(ready_s, 3), "consent_applied": n, "stopped_by": stop, "rss": rss,
                          "state_dir_bytes": state_bytes, "barrier_read_ahead": int(ahead or 0)}
        if first is not None and t_end > first[0]:
            out["consent_apply_per_s"] = round((applied - first[1]) / (t_end - first[0]))
        # The worker holds a subject's state in RocksDB once its consent agent
        # applied the record, and before that in the barrier's read-ahead overlay
        # (a dict in memory) once an event of the partition made the barrier
        # read ahead: RSS is divided by all subjects held either way, disk by
        # those in RocksDB.
        held = max(n, min(self.n_consent, int(ahead or 0)))
        out["subjects_held"] = held
        if rss is not None and held:
            out["rss_growth_bytes"] = rss - out["baseline"]["rss"]
            out["bytes_per_subject"] = round(out["rss_growth_bytes"] / held, 1)
        if n:
            out["disk_bytes_per_subject"] = round((state_bytes - out["baseline"]["state_dir_bytes"]) / n, 1)
        self.results["memory_faust"] = out
        self.say(f"  faust: consent agent applied {n:,} records ({stop}, {out.get('consent_apply_per_s', 0):,}/s), "
                 f"barrier read {int(ahead or 0):,} ahead; RSS +{out.get('rss_growth_bytes', 0) / 2**20:.0f} MiB = "
                 f"{out.get('bytes_per_subject')} B/subject held; state dir {state_bytes / 2**20:.0f} MiB "
                 f"({out.get('disk_bytes_per_subject')} B/subject in RocksDB)")

    # -------------------------------------------------------------- phase 6
    def latency(self, key: str) -> dict[str, Any]:
        from confluent_kafka.admin import AdminClient, NewTopic

        from streams import loadgen
        from streams.kafka.replay import replay

        runtime, guarantee = RUNTIMES[key].runtime, RUNTIMES[key].guarantee
        name = f"lat-{key}"
        changes: dict[str, Any] = {"runtime": runtime, "processing_guarantee": guarantee}
        if self.opts.memory and runtime == "fast":
            # the restore phase's group and state dir: its checkpoint makes the start quick
            changes |= {"group_id": f"e2e-{self.run_id}-fast-restore", "state_dir": self.work / "fast-restore"}
        s = self.settings(name, inputs=name, **changes)
        admin = AdminClient(admin_config(s))
        fut = admin.create_topics([NewTopic(s.topic_decisions, s.partitions, s.replication_factor,
                                            config={"message.timestamp.type": "LogAppendTime"})])
        fut[s.topic_decisions].result(30)
        self.create(s)
        rate, duration = self.opts.latency_rate, self.opts.latency_duration_s
        self.say(f"latency {key}: {rate:,.0f} events/s for {duration:.0f}s…")
        w = self.start_worker(s, name, runtime)
        res: dict[str, Any] = {"runtime": runtime, "processing_guarantee": guarantee, "rate": rate,
                               "duration_s": duration, "churn_share": self.opts.latency_churn}
        try:
            res["ready_s"] = round(w.wait_ready(timeout=STARTUP_CAP_S), 3)
            st = loadgen.run(s, rate=rate, duration=duration, subjects=self.opts.subjects, seed=self.opts.seed + 2,
                             churn_share=self.opts.latency_churn, consent=False)
            res["produced"] = st.events
            res["produced_per_s"] = round(st.events_per_s, 1)
            res["consent_changes"] = st.consent
            res["delivery_errors"] = st.delivery_errors
            res["decided"] = int(self.wait_events(w, st.events, timeout=60))
            res["load_avg_end"] = round(os.getloadavg()[0], 2)
        finally:
            res["exit_code"] = w.stop()
        inputs = {s.topic_clickstream, s.topic_purchases}
        created: dict[tuple[str, int, int], int] = {}
        for t, p, o, _k, _v, _h, ts in replay(s, sorted(inputs)):
            created[(t, p, o)] = ts
        import orjson

        e2e_ms: list[float] = []
        worker_ms: list[float] = []
        events_seen: set[tuple[str, int, int]] = set()
        for _t, _p, _o, _k, v, _h, ts in replay(s, [s.topic_decisions], read_committed=True):
            d = orjson.loads(v)
            src = (d.get("source_topic"), d.get("source_partition"), d.get("source_offset"))
            c = created.get(src)  # type: ignore[arg-type]
            if c is None:
                continue
            events_seen.add(src)  # type: ignore[arg-type]
            e2e_ms.append(ts - c)
            if d.get("decided_at") is not None:
                worker_ms.append(d["decided_at"] - c)
        res["decision_records"] = len(e2e_ms)
        res["events_with_decisions"] = len(events_seen)
        if e2e_ms:
            res.update({
                "p50_ms": pct(e2e_ms, 50), "p90_ms": pct(e2e_ms, 90), "p99_ms": pct(e2e_ms, 99),
                "max_ms": max(e2e_ms), "mean_ms": round(statistics.fmean(e2e_ms), 1),
                "decide_p50_ms": pct(worker_ms, 50), "decide_p99_ms": pct(worker_ms, 99),
            })
        self.say(f"  {key}: p50 {res.get('p50_ms')} ms, p99 {res.get('p99_ms')} ms, max {res.get('max_ms')} ms "
                 f"over {len(e2e_ms):,} decisions of {len(events_seen):,} events")
        return res

