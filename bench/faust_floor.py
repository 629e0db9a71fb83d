"""The floor of any faust-streaming worker here: an agent that takes batches of the
event topics and does nothing with them (no decoding, no table, no output).

`pfilter bench e2e` runs it on the same preloaded topics as the faust runtime,
with the same batch size and buffer, so the report can show how much of the
faust runtime's time is faust's own per-message work (fetching, the conductor,
events, acks, commits), which no filter built on faust can avoid.

    python -m bench.faust_floor BOOTSTRAP GROUP TOPIC[,TOPIC...] COUNT TIMEOUT_S BATCH

prints one JSON line: {"events": N, "window_s": S, "events_per_s": R, "stopped_by": ...}
where the window runs from the first batch to the last one taken.
"""

from __future__ import annotations

import os
import sys
import time

import faust
import orjson


def main(argv: list[str]) -> None:
    bootstrap, group, topics, count, timeout_s, batch = argv
    count_n, timeout, batch_n = int(count), float(timeout_s), int(batch)
    app = faust.App(
        group,
        broker=";".join(f"kafka://{h}" for h in bootstrap.split(",")),
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        # as streams.runtime.faust_app configures its app
        stream_buffer_maxsize=max(4 * batch_n, 8192),
        broker_commit_interval=1.0,
        datadir=f"/tmp/pfilter-faust-floor-{group}",
    )
    topic = app.topic(*topics.split(","), key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    seen = {"n": 0, "first": None, "last": None}
    started = time.monotonic()

    def done(stopped_by: str) -> None:
        first, last = seen["first"], seen["last"]
        window = (last - first) if first is not None and last is not None else 0.0
        out = {"events": seen["n"], "window_s": round(window, 3), "stopped_by": stopped_by,
               "events_per_s": round(seen["n"] / window) if window > 0 else None}
        os.write(1, orjson.dumps(out) + b"\n")  # fd 1: faust redirects sys.stdout to its log
        os._exit(0)

    @app.agent(topic)
    async def floor(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_n, within=0.1):
            now = time.monotonic()
            if seen["first"] is None:
                seen["first"] = now
            else:  # the first batch opens the window; what it holds was fetched before it
                seen["n"] += len(events)
            seen["last"] = now
            if seen["n"] >= count_n:
                done("count")
            if now - started > timeout:
                done("timeout")

    @app.timer(0.5)
    async def watch() -> None:
        now = time.monotonic()
        if seen["last"] is not None and now - seen["last"] > 2.0:
            done("drained")  # the backlog is read: no batch for two seconds
        if now - started > timeout + 30:
            done("no events" if seen["first"] is None else "timeout")

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
