"""The faust-streaming runtime: a thin shell around the engine's batch API.

- consent agent: batches (``take_events``) merged per partition into a Table
  of compact states (RocksDB via rocksdict, or memory); tombstones delete the
  key and emit erasure notices. The batch's changes are written through in
  bulk, changelog first (``streams.runtime.stores``), because faust's
  per-key table write capped the agent at ~700 records/s;
- event agent: batches (``take_events``) from clickstream and purchases,
  grouped by partition; the revocation barrier (G2) yields, per partition, a
  consent store that is current up to the consent end offset read after the
  batch was fetched (one request for all the batch's partitions); the engine
  decides; outputs go out through one idempotent producer, decisions before
  the engine outputs they account for, and are acknowledged before the batch
  is acked, so offsets never commit ahead of outputs (at-least-once, G3);
- an agent that fails ends the process without committing (``_fail_stop``);
- web: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz`` (ready once the
  table has recovered and no rebalance is in progress).

Exactly-once is not offered by this runtime (see README): the outputs go
through a producer outside faust's transaction manager. The fast runtime
offers it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from streams import metrics, wiring
from streams.config import Settings, load_settings
from streams.kafka import clients
from streams.kafka.admin import require_copartitioned
from streams.logs import kv
from streams.runtime import records
from streams.runtime.barrier import ConsentSideReader, RevocationBarrier
from streams.runtime.continuity import OffsetContinuity, order_batch
from streams.runtime.faust_notices import last_clock, partition_states
from streams.runtime.faust_offsets import mark_decided
from streams.runtime.keys import PartitionKeys
from streams.runtime.notices import NOTICE_TICK_S, PartitionNotices
from streams.runtime.stall import StallWatch, start_watchdog
from streams.runtime.sink import DeliveryError, Sink
from streams.runtime.stores import PendingWrites, TablePartitionView, apply_to_store, changelog_topic

log = logging.getLogger("streams.runtime.faust")


#: Exit status of a worker whose agent failed (EX_SOFTWARE).
AGENT_FAILED_EXIT = 70
#: How often owned input partitions are checked for lag without progress: a stall
#: is reported within a second of crossing PFILTER_STALL_TIMEOUT_S, at the cost of
#: one pass over the assignment (no broker request).
STALL_CHECK_S = 1.0


def _fail_stop(name: str) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., Awaitable[None]]]:
    """An agent that fails ends the process at once, without committing.

    faust would restart the agent, and its ``take_events`` generator acks the
    batch it was handling when it is closed: offsets of inputs whose outputs
    were never acknowledged (a DeliveryError) could then be committed, losing
    them (G3). Exiting here, while the failed generator is still referenced by
    the traceback and before any await, leaves the offsets where the last
    acknowledged batch put them; a restart redoes the rest, as after SIGKILL."""
    def wrap(agent: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        @functools.wraps(agent)
        async def run(stream: Any) -> None:
            try:
                await agent(stream)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - any failure stops the worker
                # the class, and our own delivery errors' text (topic and error names only):
                # other exceptions may carry a key or value, so their text is not logged (G6)
                fields = {"agent": name, "error": type(exc).__name__}
                if isinstance(exc, DeliveryError):
                    fields["detail"] = str(exc)
                log.critical("agent failed, stopping the worker without committing %s", kv(**fields))
                logging.shutdown()
                os._exit(AGENT_FAILED_EXIT)
        return run
    return wrap


def stage(name: str, seconds: float) -> None:
    metrics.STAGE_SECONDS.labels(name).inc(seconds)


def _broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip())


def create_app(settings: Settings | None = None) -> faust.App:
    """Build the app; refuses to (naming the problem) on bad config, policy or topics."""
    settings = settings or load_settings()
    filt_factory = wiring.filter_factory(settings)  # a bad policy or secret stops us before any I/O
    partitions = require_copartitioned(settings, wiring.state_topics(settings, wiring.policy_for_topics(settings)))
    topics = wiring.topic_names(settings)

    # one store per app (group id): two apps sharing a state dir must never share consent state
    datadir = Path(settings.state_dir) / "faust" / settings.group_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.group_id,
        broker=_broker_url(settings.bootstrap),
        broker_credentials=clients.faust_credentials(settings),  # TLS/SASL, as every client (None: PLAINTEXT)
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(datadir),
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=settings.table_standby_replicas,
        topic_partitions=partitions,
        web_enabled=True,
        web_bind=settings.web_bind,
        web_port=settings.web_port,
        # commit every second: bounds re-processing after a crash to ~1 s of input
        broker_commit_interval=1.0,
        # a crashed worker's partitions move after PFILTER_SESSION_TIMEOUT_MS (10 s)
        # instead of faust's default 60 s; heartbeats at a third of it
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_ms / 3000),
        # deep enough that a full batch plus the next fetch fit; the barrier never
        # waits on the consent agent for long, so a full buffer cannot deadlock it
        stream_buffer_maxsize=max(4 * settings.batch_size, 8192),
        producer_acks=-1,
        # the table stores engine-encoded bytes as they are
        key_serializer="raw",
        value_serializer="raw",
    )
    app.conf.pfilter_settings = settings  # type: ignore[attr-defined]

    table = app.Table(
        "consent",
        default=None,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        options={
            # explicit sizes: the defaults of rocksdict are tuned for a desktop
            "write_buffer_size": settings.rocksdb_write_buffer_mb * 1024 * 1024,
            "max_write_buffer_number": 2,
            "block_cache_size": settings.rocksdb_block_cache_mb * 1024 * 1024,
            "block_cache_compressed_size": 0,
            "bloom_filter_size": 10,
        },
    )

    consent_topic = app.topic(settings.topic_consent, key_type=bytes, value_type=bytes,
                              key_serializer="raw", value_serializer="raw")
    event_topic = app.topic(settings.topic_clickstream, settings.topic_purchases, key_type=bytes,
                            value_type=bytes, key_serializer="raw", value_serializer="raw")

    sink = Sink(settings)
    writer = filt_factory(None)  # the consent agent's engine: its store is given per batch
    reader = ConsentSideReader(settings)

    def apply_ahead(recs: list[tuple], store: Any) -> None:
        # Read-ahead for the barrier: state only. Erasure notices and DLQ entries
        # are the consent agent's to send when it applies the same records.
        filt_factory(store).apply_consent(recs)

    barrier = RevocationBarrier(reader, lambda p: TablePartitionView(table, p), apply_ahead)
    # consent notices (CONTRACT §9), at least once: streams.runtime.faust_notices
    notices = PartitionNotices(writer.policy, settings.topic_notices, settings.format_output,
                               settings.schema_registry_url)

    # Encrypted fields (CONTRACT §10): a KeyRing per owned partition, restored from the keys
    # topic on first use after an assignment, shared by both agents (the consent agent's
    # erasures shred in it). At least once: key records are in the engine's outputs and go
    # out with the audit trail, acknowledged before the engine outputs that use them.
    keys = None
    restoring: dict[int, asyncio.Future] = {}
    if writer.policy.encrypts:
        from confluent_kafka import Consumer

        keys = PartitionKeys(
            lambda: Consumer(clients.plain_consumer_config(settings, f"{settings.group_id}.keys-reader", **{
                "isolation.level": "read_committed", "enable.partition.eof": True})),
            settings.topic_keys, lambda: wiring.new_keyring(settings, writer.policy))

    async def ring_for(p: int) -> Any:
        """Partition ``p``'s ring, restored once (both agents may ask at the same time)."""
        assert keys is not None
        ring = keys.rings.get(p)
        if ring is not None:
            return ring
        fut = restoring.get(p)
        if fut is None:
            fut = restoring[p] = asyncio.ensure_future(loop_run(keys.restore, [p]))
        try:
            await fut
        finally:
            restoring.pop(p, None)
        return keys.rings[p]

    continuity = OffsetContinuity()
    stalls = StallWatch(settings.stall_timeout_s)
    input_topics = (settings.topic_clickstream, settings.topic_purchases)

    async def ensure_started(tps: list[tuple[str, int]]) -> None:
        """Start positions (committed offsets) of partitions seen first since an assignment."""
        unknown = [tp for tp in tps if not continuity.known(tp)]
        if unknown:
            for tp, off in (await loop_run(reader.starts, unknown)).items():
                if not continuity.known(tp):  # the agent or the timer may have got there first
                    continuity.start(tp, off)

    async def loop_run(fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def fill_holes(by_tp: dict[tuple[str, int], list[tuple]]) -> tuple[dict[int, list[tuple]], list]:
        """Per partition, the batch's records in offset order with any hole the transport left
        read from the broker first (streams.runtime.continuity.order_batch)."""
        await ensure_started(list(by_tp))
        found = [h for tp, recs in by_tp.items() for h in continuity.peek(tp, [r[2] for r in recs])]
        got = {}
        for hole in found:
            got[hole] = await loop_run(reader.read, hole.partition, hole.start, hole.end, hole.topic)
            metrics.HOLES_FILLED.labels(hole.topic).inc(len(got[hole]))
            log.warning("input records the transport skipped, read from the broker %s", kv(
                topic=hole.topic, partition=hole.partition, start=hole.start, end=hole.end, records=len(got[hole])))
        return order_batch(continuity, by_tp, got.__getitem__)

    @app.agent(consent_topic, name="consent")
    @_fail_stop("consent")
    async def consent_agent(stream: faust.StreamT) -> None:
        # Batches: per record, faust's own machinery (and a table write per key through
        # aiokafka) dominated. Apply per partition; then every partition's changelog
        # records, acknowledged; then the stores; then the erasure notices and DLQ entries.
        loop = asyncio.get_running_loop()
        changelog = changelog_topic(table)
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_timeout_ms / 1000):
            t0 = time.perf_counter()
            # the same continuity as the events': after a rebalance faust can leave a range of
            # consent records undelivered (seen: 111 records of a partition, its commits stuck
            # below them). Applied past, they would be missing from the table while the barrier
            # takes the table as current (G1), and their erasure notices never sent.
            by_partition, holes = await fill_holes(records.group_by_topic_partition(map(records.from_faust, batch)))
            if not by_partition:
                continue  # only stale redeliveries: applied before
            applied = []
            # every partition's, not only those with a schedule now: the notice timer may take a
            # partition on (assign + load from the table) during an await below, and a grant
            # applied then would be in neither its load nor a `changed` (missed for good: the
            # faust notice test after the key-ring restore added an await here)
            olds = {p: notices.before(recs, TablePartitionView(table, p)) for p, recs in by_partition.items()}
            for p, recs in by_partition.items():
                pending = PendingWrites(TablePartitionView(table, p))
                if keys is not None:
                    writer.keyring = await ring_for(p)
                applied.append((p, recs, pending, writer.apply_consent(recs, pending)))
            changes = {p: list(pending.changes.items()) for p, _r, pending, _res in applied if pending.changes}
            if changes:
                offsets = await loop.run_in_executor(None, sink.send_to_partitions, changelog, changes)
            out: list[tuple] = []
            for p, recs, pending, result in applied:
                if pending.changes:
                    apply_to_store(table, p, pending.changes, offsets[p])
                out.extend(result.records)
                if olds.get(p):
                    notices.after(p, olds[p], TablePartitionView(table, p), out)
                metrics.record_consent(result, recs[0][0], applied=len(recs))
            if out:
                await sink.send_async(out)
            for p, recs, _pending, _result in applied:
                barrier.consent_applied(p, recs[-1][2])
            for hole in holes:  # applied and acknowledged: faust may commit past the hole now
                mark_decided(app.consumer, hole.topic, hole.partition, hole.start, hole.end)
            stage("consent", time.perf_counter() - t0)

    deciders: dict[int, Any] = {}
    deliveries = frozenset(e.topic for e in writer.policy.engines)  # written after the audit trail

    @app.agent(event_topic, name="events")
    @_fail_stop("events")
    async def event_agent(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_timeout_ms / 1000):
            t0 = time.perf_counter()
            by_tp = records.group_by_topic_partition(map(records.from_faust, batch))
            by_partition, holes = await fill_holes(by_tp)
            read = records.positions(by_partition)
            out: list[tuple] = []
            t1 = time.perf_counter()
            if not by_partition:
                continue  # only stale redeliveries: decided before
            stores = await barrier.stores_for(list(by_partition))
            t2 = time.perf_counter()
            for p, recs in by_partition.items():
                store = stores[p]
                decider = deciders.get(p)
                if decider is None:
                    decider = deciders[p] = filt_factory(store)
                decider.store = store  # the barrier's store of this batch (an overlay or the table view)
                if keys is not None:
                    decider.keyring = await ring_for(p)
                result = decider.decide(recs)
                out.extend(result.records)
                metrics.record_decided(result, recs[0][0])
            for topic, n in read.counts.items():
                metrics.EVENTS_IN.labels(topic).inc(n)
            for (topic, p), nxt in read.next_offsets.items():
                # the high watermark of the last fetch response: no request
                metrics.record_lag(topic, p, app.consumer.highwater(TP(topic, p)), nxt)
            t3 = time.perf_counter()
            await sink.send_async(out, deliveries)
            for hole in holes:
                # decided and acknowledged: faust may commit past the hole now (without this
                # its commits for the partition stall; streams.runtime.faust_offsets)
                mark_decided(app.consumer, hole.topic, hole.partition, hole.start, hole.end)
            t4 = time.perf_counter()
            metrics.DECISION_LATENCY.observe(t4 - t0)
            stage("barrier", t2 - t1)
            stage("decide", t3 - t2)
            stage("send", t4 - t3)

    @app.timer(interval=STALL_CHECK_S)
    async def watch_stalls() -> None:
        """Lag without progress per owned input partition (the agent may get nothing at all
        for a stalled one, so this runs on a timer, not in the agent)."""
        if app.rebalancing:
            return
        tps = [(tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in input_topics]
        await ensure_started(tps)
        for t, p in tps:
            hw = app.consumer.highwater(TP(t, p))  # cached from the last fetch response
            pos = continuity.position((t, p))
            if hw is not None and hw >= 0 and pos is not None:
                stalls.observe((t, p), pos, hw)

    @app.task
    async def arm_watchdog() -> None:
        """The same fail-stop as the fast runtime: once the table has recovered, a partition
        stalled past PFILTER_STALL_TIMEOUT_S ends the process (exit 70) for its supervisor to
        restart; its partitions move to the other members meanwhile. Why: faust has more
        than one way to stop delivering a partition after a rebalance (the continuity
        module covers the ones understood); a restarted member starts from the commit."""
        start_watchdog(stalls, lambda: app.tables.recovery.completed.is_set() and not app.rebalancing)

    @app.timer(interval=NOTICE_TICK_S)
    async def send_notices() -> None:
        """Due notices of the owned consent partitions, whether or not any record arrives."""
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            return
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == settings.topic_consent}
        for p in sorted(owned - set(notices.schedules)):
            notices.assign(p, await loop_run(last_clock, settings, p, writer.policy.notice_before_ms))
            notices.load(p, partition_states(table, p, partitions))
        notices.forget(set(notices.schedules) - owned)
        out: list[tuple] = []
        # bounded like the fast runtime's: faust_notices.last_clock reads the clock back
        # from the due times, which a tick stopped at its limit leaves exact
        notices.tick({p: TablePartitionView(table, p) for p in notices.schedules}, out)
        if out:
            await sink.send_async(out)

    @app.on_partitions_revoked.connect
    async def on_revoked(app_: faust.App, revoked: set, **kw: Any) -> None:  # noqa: ARG001
        metrics.READY.set(0)
        barrier.forget({tp.partition for tp in revoked if tp.topic == settings.topic_consent})
        gone = [(tp.topic, tp.partition) for tp in revoked]
        continuity.forget(gone)
        stalls.forget([tp for tp in gone if tp[0] in input_topics])
        deciders.clear()
        if keys is not None:
            for tp in revoked:
                if tp.topic == settings.topic_consent:
                    keys.rings.pop(tp.partition, None)  # restored from the keys topic when assigned again
        notices.forget({tp.partition for tp in revoked if tp.topic == settings.topic_consent})
        log.info("partitions revoked %s", kv(count=len(revoked)))

    @app.on_rebalance_complete.connect
    async def on_rebalanced(app_: faust.App, **kw: Any) -> None:  # noqa: ARG001
        log.info("rebalance complete")

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        stalled = stalls.stalled()
        ready = app.tables.recovery.completed.is_set() and not app.rebalancing and not stalled
        metrics.READY.set(1 if ready else 0)
        body: dict[str, Any] = {"ready": ready}
        if stalled:
            body["stalled_partitions"] = [f"{t}/{p}" for t, p in sorted(stalled)]
        return web.json(body, status=200 if ready else 503)

    @app.on_before_shutdown.connect
    async def on_shutdown(app_: faust.App, **kw: Any) -> None:  # noqa: ARG001
        sink.close()

    log.info("faust runtime configured %s", kv(
        app=settings.group_id, partitions=partitions, store=settings.store,
        policy_version=writer.policy.version,
    ))
    return app
