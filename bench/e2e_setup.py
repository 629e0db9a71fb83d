"""Phase 1 of the e2e run: its settings and topics, the broker, the preload of the backlog."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streams.config import Settings
from streams.kafka.clients import admin_config

from bench.e2e_common import *  # noqa: F403 - the phases share the constants and helpers
from bench.e2e_common import E2EError, E2EOptions


class SetupPhases:
    """Settings per phase, topics, broker and preload; mixed into :class:`bench.e2e.E2E`."""

    base: Settings
    opts: E2EOptions
    secret: str | None
    kek: str | None
    say: Callable[[str], None]
    results: dict[str, Any]

    # -------------------------------------------------------------- settings / topics
    def settings(self, name: str, *, inputs: str = "main", consent: str = "main", **changes: Any) -> Settings:
        """Settings for one phase: its input topics, its own outputs, group and state dir."""
        pre = self.pre
        upd: dict[str, Any] = {
            "topic_clickstream": f"{pre}{inputs}.clickstream",
            "topic_purchases": f"{pre}{inputs}.purchases",
            "topic_consent": f"{pre}{consent}.consent",
            "topic_output_prefix": f"{pre}{name}.personalization.",
            "topic_decisions": f"{pre}{name}.decisions",
            "topic_erasures": f"{pre}{name}.erasures",
            "topic_dlq": f"{pre}{name}.dlq",
            # keys and notices are the worker's own state too (data keys restored on assignment,
            # notice schedule): per phase, so no phase restores another's, and created with the
            # rest by create_topics; a shared, missing keys topic stalled the worker's restore
            "topic_keys": f"{pre}{name}.keys",
            "topic_notices": f"{pre}{name}.notices",
            "group_id": f"e2e-{self.run_id}-{name}",
            "state_dir": self.work / name,
            "web_port": free_port(),
            "pseudonym_key": self.secret,
            "kek": self.kek,
        }
        upd.update(changes)
        return self.base.model_copy(update=upd)

    @staticmethod
    def engine_topics(s: Settings) -> list[str]:
        from streams.wiring import policy_for_topics

        return [e.topic for e in policy_for_topics(s).engines]

    def create(self, s: Settings) -> None:
        from streams.kafka.admin import create_topics

        create_topics(s, self.engine_topics(s))

    # -------------------------------------------------------------- broker
    def ensure_broker(self) -> None:
        from streams.kafka.broker import BrokerError, LocalBroker

        if self.base.kafka_bootstrap_servers:
            self.results["broker"] = {"bootstrap": self.base.bootstrap, "managed": False}
            return
        t = time.monotonic()
        try:
            st = LocalBroker(self.base).up()
        except BrokerError as exc:
            raise E2EError(str(exc)) from None
        self.results["broker"] = {"bootstrap": st.bootstrap, "managed": True, "pid": st.pid,
                                  "up_s": round(time.monotonic() - t, 1), "heap": self.base.kafka_heap,
                                  "kafka_version": self.base.kafka_version}
        self.say(f"broker at {st.bootstrap} (pid {st.pid}); stop it with `pfilter kafka down --port {self.base.kafka_port}`")
        self._drop_old_topics()

    def _drop_old_topics(self) -> None:
        """Earlier e2e runs' topics, on our own local broker only (disk)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(admin_config(self.base))
        old = [t for t in admin.list_topics(timeout=30).topics if t.startswith("e2e.")]
        if old:
            for fut in admin.delete_topics(old, operation_timeout=60).values():
                try:
                    fut.result()
                except Exception:  # noqa: BLE001 - best-effort housekeeping
                    pass
            self.say(f"dropped {len(old)} topics of earlier e2e runs")

    # -------------------------------------------------------------- workers
    def start_worker(self, s: Settings, name: str, runtime: str) -> Any:
        from streams.runtime.process import WorkerProcess

        return WorkerProcess(s, self.work / f"{name}.log", runtime=runtime).start()

    def wait_events(self, worker: Any, n: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        v = 0.0
        while time.monotonic() < deadline:
            v = metric(worker, "pfilter_events_in_total") or 0.0
            if v >= n:
                return v
            if worker.proc.poll() is not None:
                break
            time.sleep(SAMPLE_S)
        return v

    # -------------------------------------------------------------- phase 1
    def preload(self) -> None:
        from streams import loadgen

        s = self.settings("preload")
        self.create(s)
        t = time.monotonic()
        self.say(f"preloading consent of {self.opts.subjects:,} subjects and {self.opts.events:,} events…")
        st = loadgen.run(s, count=self.opts.events, subjects=self.opts.subjects, seed=self.opts.seed)
        if st.delivery_errors:
            raise E2EError(f"preload: {st.delivery_errors} records failed delivery ({st.first_error})")
        self.n_consent = st.consent
        self.results["preload"] = {**st.summary(), "wall_s": round(time.monotonic() - t, 1),
                                   "consent_per_s": round(st.consent / max(st.consent_elapsed_s, 1e-9))}
        self.say(f"preloaded {st.consent:,} consent records ({st.consent_elapsed_s:.1f}s) and {st.events:,} events "
                 f"({st.clicks:,} clicks, {st.purchases:,} purchases) at {st.events_per_s:,.0f}/s")
        if self.opts.memory or self.opts.faust_memory:
            si = self.settings("idle-setup", inputs="idle", consent="empty")
            self.create(si)
            st2 = loadgen.run(si, count=IDLE_EVENTS, subjects=self.opts.subjects, seed=self.opts.seed + 1,
                              consent=False)
            self.idle_events = st2.events

