"""Phases with other programs on the same data: the faust floor and the peers (bench/peers)."""

from __future__ import annotations

import sys
from typing import Any

from streams.config import PROJECT_ROOT

from bench.e2e_common import *  # noqa: F403 - the phases share the constants and helpers


class PeerPhases:
    """Run the faust floor and the peers; mixed into :class:`bench.e2e.E2E`."""

    def faust_floor(self, timeout_s: float) -> dict[str, Any]:
        """bench/faust_floor.py over the preloaded event topics (see its docstring)."""
        import subprocess

        import orjson

        s = self.settings("preload")
        busy = self.quiet()
        self.say(f"faust floor: a bare take_events agent over the same topics, up to {timeout_s:.0f}s…")
        cmd = [sys.executable, "-m", "bench.faust_floor", s.bootstrap, f"e2e-{self.run_id}-faust-floor",
               f"{s.topic_clickstream},{s.topic_purchases}", str(self.opts.events), str(timeout_s),
               str(self.base.batch_size)]
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=timeout_s + 90, cwd=PROJECT_ROOT)
            res = orjson.loads(p.stdout.strip().splitlines()[-1])
        except Exception as exc:  # noqa: BLE001 - the floor is context, not a figure we must have
            return {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "machine_busy_before": busy}
        res["machine_busy_before"] = busy
        self.say(f"  faust floor: {res.get('events_per_s') or 0:,} events/s over {res.get('window_s')}s")
        return res

    # -------------------------------------------------------------- phase 4
    def peer(self, name: str, timeout_s: float) -> dict[str, Any]:
        from bench.peers import run as peers_run

        s = self.settings("preload")
        topics = {"clickstream": s.topic_clickstream, "consent": s.topic_consent,
                  "output": f"{self.pre}peer-{name}.offers"}
        busy = self.quiet()
        self.say(f"peer {name}: up to {timeout_s:.0f}s…")
        # run_peer stops a peer after IDLE_S without new output. A peer that is
        # restoring a large consent topic pauses its outputs for longer than
        # that (Kafka Streams interleaves consent and events by timestamp), so
        # here only the time budget (or the peer's own exit) ends a run.
        saved_idle = peers_run.IDLE_S
        peers_run.IDLE_S = timeout_s
        try:
            peers_run.ensure_built(name)
            res = peers_run.run_peer(name, s.bootstrap, topics, f"e2e-{self.run_id}-peer-{name}", None, timeout_s)
        except Exception as exc:  # noqa: BLE001 - one peer failing must not lose the other figures
            msg = f"{type(exc).__name__}: {exc}"
            self.say(f"  {name}: failed: {msg.splitlines()[0]}")
            return {"peer": name, "error": msg[:2000], "machine_busy_before": busy}
        finally:
            peers_run.IDLE_S = saved_idle
        res["machine_busy_before"] = busy
        res["timeout_s"] = round(timeout_s, 1)
        share = res.get("peer_cpu_share")
        res["events_per_cpu_s"] = round(res["events_per_s"] / share) if share and res.get("events_per_s") else None
        rep = res.pop("peer_report", None) or {}
        res["peer_consent_records"] = rep.get("consent")
        res["peer_emitted"] = rep.get("emitted")
        self.say(f"  {name}: {res.get('events_per_s') or 0:,.0f} events/s over {res.get('elapsed_s')}s "
                 f"({res.get('events'):,} events, {res.get('stopped_by')}; CPU {res.get('peer_cpu_share')} cores, {res.get('events_per_cpu_s') or 0:,} events per CPU-s)")
        return res

    def quiet(self) -> float:
        """Wait until the machine is mostly idle (at most QUIET_WAIT_S); the busy share seen."""
        from bench.peers.measure import wait_for_quiet

        return round(wait_for_quiet(QUIET_BUSY, QUIET_WAIT_S), 2)

