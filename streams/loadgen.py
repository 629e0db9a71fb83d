"""Load generator: the synthetic population's consent and events into the input topics.

Used by ``pfilter loadgen`` and by the end-to-end benchmark (``bench/e2e.py``),
which preloads millions of records with it. Two modes:

* **backlog** (``count``): produce ``count`` events as fast as the producer
  and the broker allow; event times are spread over the hour before now (the
  population's default window). This is how benchmarks preload a backlog.
* **rate** (``rate`` and ``duration``): produce ``rate`` events per second for
  ``duration`` seconds, paced against the monotonic clock; event times follow
  the wall clock. This is live load (demo, latency measurement).

Before the events, the population's consent records (one per subject that
has consent) go to the consent topic, unless ``consent=False``. During the
events, ``churn_share`` consent changes per event (withdrawals, re-grants,
erasures, ... from :func:`streams.population.churn`) are interleaved.

Every record goes through one confluent-kafka producer built by
:func:`streams.kafka.clients.producer_config`, so keys are partitioned with the
Java-compatible murmur2 (``partitioner=murmur2_random``) and the three input
topics stay co-partitioned. Anonymous events (no subject) carry a null key and
are spread over partitions at random. Delivery failures are counted (never
raised mid-run) and reported: a run is only good when ``delivery_errors`` is 0.

Nothing here logs record contents (G6).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaError, Producer

from streams import population
from streams.config import Settings
from streams.errors import PFilterError
from streams.kafka.clients import producer_config

# --------------------------------------------------------------------------
# Producer tuning. Each constant says why it has the value it has.
# --------------------------------------------------------------------------

#: Backlog mode: nobody waits for an individual record, so librdkafka may
#: hold each partition's batch for up to 50 ms. With ~300k records/s from the
#: Python loop that fills most batches to BATCH_SIZE before they are sent:
#: fewer, larger produce requests, which is what a broker sharing 2 cores
#: with the producer needs most.
LINGER_MS_BACKLOG = 50
#: Rate mode: a record's CreateTime is set by produce() and the latency
#: benchmark measures from it, so time spent waiting in the client counts.
#: 5 ms bounds that wait while still batching ~10 records per partition at
#: 2,000 events/s (the same value the project's producers use by default).
LINGER_MS_RATE = 5
#: 1 MiB per partition batch: ~3,000 events of ~350 B. Larger batches gain
#: little on one local broker (requests are already few) and cost memory per
#: partition; smaller ones multiply requests in backlog mode.
BATCH_SIZE = 1_048_576
#: Local queue depth. The Python loop can produce faster than the broker
#: acknowledges (both share 2 cores); librdkafka's default of 100,000 messages
#: fills in a third of a second and produce() raises BufferError. 1,000,000
#: messages (~350 MB at most) rides out a broker pause; BufferError is still
#: handled (poll and retry) when even that fills.
QUEUE_MAX_MESSAGES = 1_000_000
#: Delivery reports only for failed records: a Python callback per acknowledged
#: record costs ~1 us, i.e. ~3 s on a 3-million-record preload, for nothing;
#: successes are counted as "produced minus failed" once flush() returned 0.
DELIVERY_REPORT_ONLY_ERROR = True
#: Serve delivery reports (failed ones only) every this many produce() calls:
#: often enough that a failing broker is noticed within a fraction of a second,
#: rarely enough that poll() stays off the profile.
POLL_EVERY = 5_000
#: How long the final flush may take before unacknowledged records are
#: counted as delivery errors: generous, the broker may be catching up on a
#: few hundred MB of backlog.
FLUSH_TIMEOUT_S = 120.0
#: Rate mode pacing granularity: the loop sleeps this long when ahead of
#: schedule (an event at 2,000/s is due every 0.5 ms; 2 ms sleeps keep CPU
#: use low and add at most 2 ms of jitter to event times).
PACE_SLEEP_S = 0.002
#: Progress callback interval.
PROGRESS_EVERY_S = 0.25


class LoadgenError(PFilterError, ValueError):
    """Bad arguments for a load run; the message says which."""


@dataclass
class LoadStats:
    """What a run produced. ``delivery_errors`` includes records never acknowledged."""

    mode: str = "backlog"
    phase: str = "consent"
    events: int = 0
    clicks: int = 0
    purchases: int = 0
    consent: int = 0
    tombstones: int = 0
    delivery_errors: int = 0
    bytes: int = 0
    consent_elapsed_s: float = 0.0
    events_elapsed_s: float = 0.0
    elapsed_s: float = 0.0
    target_events: int | None = None
    target_consent: int | None = None
    first_error: str | None = None
    #: monotonic clock when the event phase began (0 before it)
    events_t0: float = 0.0

    def events_elapsed_now(self) -> float:
        """Seconds of the event phase so far (its final length once done)."""
        if self.events_elapsed_s:
            return self.events_elapsed_s
        return time.monotonic() - self.events_t0 if self.events_t0 else 0.0

    @property
    def events_per_s(self) -> float:
        """Events over the event phase (consent preload excluded), up to the final ack."""
        return self.events / self.events_elapsed_s if self.events_elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The ``--json`` summary: the five headline figures first, then details."""
        return {
            "events": self.events,
            "consent": self.consent,
            "delivery_errors": self.delivery_errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_s": round(self.events_per_s, 1),
            "mode": self.mode,
            "clicks": self.clicks,
            "purchases": self.purchases,
            "tombstones": self.tombstones,
            "bytes": self.bytes,
            "consent_elapsed_s": round(self.consent_elapsed_s, 3),
            "events_elapsed_s": round(self.events_elapsed_s, 3),
            "first_error": self.first_error,
        }


ProgressFn = Callable[[LoadStats], None]


def loadgen_producer_config(settings: Settings, *, rate_mode: bool, **overrides: Any) -> dict[str, Any]:
    """producer_config (murmur2_random, idempotence, lz4) with the load generator's tuning."""
    cfg: dict[str, Any] = {
        "linger.ms": LINGER_MS_RATE if rate_mode else LINGER_MS_BACKLOG,
        "batch.size": BATCH_SIZE,
        "queue.buffering.max.messages": QUEUE_MAX_MESSAGES,
        "delivery.report.only.error": DELIVERY_REPORT_ONLY_ERROR,
    }
    cfg.update(overrides)
    return producer_config(settings, **cfg)


class LoadGenerator:
    """One producer, one population; ``run`` writes consent then events.

    ``now_ms`` fixes the population's clock (consent grant and expiry times
    are relative to it); by default the wall clock at construction.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        subjects: int = 10_000,
        seed: int = 7,
        churn_share: float = 0.0,
        purchase_share: float | None = None,
        now_ms: int | None = None,
        producer_overrides: dict[str, Any] | None = None,
    ) -> None:
        if subjects < 1:
            raise LoadgenError(f"subjects must be >= 1, got {subjects}")
        if not 0.0 <= churn_share <= 1.0:
            raise LoadgenError(f"churn share must be in [0, 1] (consent changes per event), got {churn_share}")
        self.settings = settings
        extra = {} if purchase_share is None else {"purchase_share": purchase_share}
        try:
            self.spec = population.PopulationSpec(subjects=subjects, seed=seed, **extra)
        except ValueError as exc:
            raise LoadgenError(str(exc)) from None
        self.churn_share = churn_share
        self.now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self.producer_overrides = dict(producer_overrides or {})
        self.stats = LoadStats()
        self._producer: Producer | None = None

    # ------------------------------------------------------------------ producer
    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.stats.delivery_errors += 1
            if self.stats.first_error is None:
                # the error name and text only: never the record (G6)
                self.stats.first_error = f"{err.name()}: {err.str()}"

    def _make_producer(self, rate_mode: bool) -> Producer:
        cfg = loadgen_producer_config(self.settings, rate_mode=rate_mode, **self.producer_overrides)
        cfg["on_delivery"] = self._on_delivery
        return Producer(cfg)

    # ------------------------------------------------------------------ run
    def run(
        self,
        *,
        count: int | None = None,
        rate: float | None = None,
        duration: float | None = None,
        consent: bool = True,
        progress: ProgressFn | None = None,
    ) -> LoadStats:
        """Produce the population's consent (unless ``consent=False``), then the events.

        Exactly one of ``count`` (backlog mode) and ``rate`` (with
        ``duration``) must be given. Returns the stats once every record was
        acknowledged or counted as a delivery error.
        """
        if (count is None) == (rate is None):
            raise LoadgenError("give either a count (backlog mode) or a rate with a duration (rate mode)")
        if count is not None and count < 0:
            raise LoadgenError(f"count must be >= 0, got {count}")
        if rate is not None:
            if not rate > 0:
                raise LoadgenError(f"rate must be > 0 events/s, got {rate}")
            if duration is None or not duration > 0:
                raise LoadgenError("rate mode needs a duration > 0 seconds")
        rate_mode = rate is not None
        st = self.stats = LoadStats(mode="rate" if rate_mode else "backlog")
        st.target_events = int(count) if count is not None else int(math.ceil(rate * duration))  # type: ignore[operator]
        producer = self._producer = self._make_producer(rate_mode)
        t0 = time.monotonic()
        if consent:
            st.phase = "consent"
            st.target_consent = self._expected_consent()
            self._produce_consent(producer, progress)
            # consent first, acknowledged, before any event: a worker that starts
            # on the preloaded topics then finds each subject's consent older
            # than (and in the log before) its events
            self._flush(producer)
        st.consent_elapsed_s = time.monotonic() - t0
        t1 = st.events_t0 = time.monotonic()
        st.phase = "events"
        if rate_mode:
            self._produce_events_at_rate(producer, float(rate), float(duration), progress)  # type: ignore[arg-type]
        else:
            self._produce_events_backlog(producer, int(count), progress)  # type: ignore[arg-type]
        self._flush(producer)
        now = time.monotonic()
        st.events_elapsed_s = now - t1
        st.elapsed_s = now - t0
        st.phase = "done"
        if progress:
            progress(st)
        return st

    def _expected_consent(self) -> int:
        # ~no_consent_share of subjects have no record; the exact number is only
        # known after generating them, so progress shows the expectation
        return int(round(self.spec.subjects * (1.0 - self.spec.no_consent_share)))

    def _flush(self, producer: Producer) -> None:
        left = producer.flush(FLUSH_TIMEOUT_S)
        if left:
            self.stats.delivery_errors += left
            if self.stats.first_error is None:
                self.stats.first_error = f"{left} records not acknowledged within {FLUSH_TIMEOUT_S:.0f}s"

    @staticmethod
    def _produce(producer: Producer, topic: str, value: bytes | None, key: str | bytes | None) -> None:
        while True:
            try:
                producer.produce(topic, value, key)
                return
            except BufferError:  # the local queue is full: let librdkafka send
                producer.poll(0.05)

    def _produce_consent(self, producer: Producer, progress: ProgressFn | None) -> None:
        st = self.stats
        topic = self.settings.topic_consent
        produce = producer.produce
        dumps = orjson.dumps
        last = time.monotonic()
        n = 0
        for rec in population.consent_records(self.spec, self.now_ms):
            value = dumps(rec)
            try:
                produce(topic, value, rec["subject_id"])
            except BufferError:
                self._produce(producer, topic, value, rec["subject_id"])
            st.bytes += len(value)
            n += 1
            if n % POLL_EVERY == 0:
                producer.poll(0)
                st.consent = n
                if progress and time.monotonic() - last >= PROGRESS_EVERY_S:
                    last = time.monotonic()
                    progress(st)
        st.consent = n
        st.target_consent = n

    def _churn(self, events: int, interval_ms: int) -> Any:
        n = int(math.ceil(events * self.churn_share)) + 1 if self.churn_share > 0 else 0
        return population.churn(self.spec, self.now_ms, n, interval_ms=max(1, interval_ms))

    def _produce_events_backlog(self, producer: Producer, count: int, progress: ProgressFn | None) -> None:
        st = self.stats
        s = self.settings
        clicks_t, purchases_t, consent_t = s.topic_clickstream, s.topic_purchases, s.topic_consent
        produce = producer.produce
        share = self.churn_share
        churn = self._churn(count, 1)
        credit = 0.0
        clicks = purchases = nbytes = 0
        last = time.monotonic()
        for n, (kind, value, key) in enumerate(population.event_bytes(self.spec, self.now_ms, count), 1):
            topic = purchases_t if kind == "purchase" else clicks_t
            try:
                produce(topic, value, key or None)
            except BufferError:
                self._produce(producer, topic, value, key or None)
            nbytes += len(value)
            if kind == "purchase":
                purchases += 1
            else:
                clicks += 1
            if share:
                credit += share
                while credit >= 1.0:
                    credit -= 1.0
                    self._produce_change(producer, consent_t, next(churn, None))
            if n % POLL_EVERY == 0:
                producer.poll(0)
                st.events, st.clicks, st.purchases = n, clicks, purchases
                if progress and time.monotonic() - last >= PROGRESS_EVERY_S:
                    last = time.monotonic()
                    st.bytes += nbytes
                    nbytes = 0
                    progress(st)
        st.events, st.clicks, st.purchases = clicks + purchases, clicks, purchases
        st.bytes += nbytes

    def _produce_change(self, producer: Producer, topic: str, change: tuple[str, Any] | None) -> None:
        if change is None:
            return
        sid, rec = change
        value = None if rec is None else orjson.dumps(rec)
        self._produce(producer, topic, value, sid)
        self.stats.consent += 1
        if rec is None:
            self.stats.tombstones += 1
        else:
            self.stats.bytes += len(value)  # type: ignore[arg-type]

    def _produce_events_at_rate(self, producer: Producer, rate: float, duration: float,
                                progress: ProgressFn | None) -> None:
        st = self.stats
        s = self.settings
        clicks_t, purchases_t, consent_t = s.topic_clickstream, s.topic_purchases, s.topic_consent
        total = int(math.ceil(rate * duration))
        start_ms = int(time.time() * 1000)
        events = population.event_bytes(self.spec, start_ms, total, start_ts=start_ms, rate_per_s=rate)
        share = self.churn_share
        # consent changes spaced like the events that carry them, so updated_at follows the wall clock
        churn = self._churn(total, int(1000.0 / (rate * share)) if share else 1)
        credit = 0.0
        produced = 0
        t0 = time.monotonic()
        last = t0
        while produced < total:
            now = time.monotonic()
            due = min(total, int((now - t0) * rate) + 1)
            if produced >= due:
                producer.poll(0)
                time.sleep(PACE_SLEEP_S)
                continue
            while produced < due:
                kind, value, key = next(events)
                topic = purchases_t if kind == "purchase" else clicks_t
                self._produce(producer, topic, value, key or None)
                produced += 1
                st.bytes += len(value)
                if kind == "purchase":
                    st.purchases += 1
                else:
                    st.clicks += 1
                if share:
                    credit += share
                    while credit >= 1.0:
                        credit -= 1.0
                        self._produce_change(producer, consent_t, next(churn, None))
            st.events = produced
            producer.poll(0)
            if progress and now - last >= PROGRESS_EVERY_S:
                last = now
                progress(st)


def run(settings: Settings, *, count: int | None = None, rate: float | None = None, duration: float | None = None,
        subjects: int = 10_000, seed: int = 7, churn_share: float = 0.0, consent: bool = True,
        purchase_share: float | None = None, now_ms: int | None = None, progress: ProgressFn | None = None,
        producer_overrides: dict[str, Any] | None = None) -> LoadStats:
    """One load run (see :class:`LoadGenerator`); topics come from ``settings``."""
    gen = LoadGenerator(settings, subjects=subjects, seed=seed, churn_share=churn_share,
                        purchase_share=purchase_share, now_ms=now_ms, producer_overrides=producer_overrides)
    return gen.run(count=count, rate=rate, duration=duration, consent=consent, progress=progress)
