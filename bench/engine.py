"""In-process engine benchmark (`pfilter bench engine`): no Kafka, one core.

Both engines (the Python reference and the native core, when built) run in the same
process on the same events, their timed passes interleaved, beside the floor.

Workload: the default policy's three engines, the synthetic population's
consent mix, ~300-byte click/purchase events. The engine's rate is reported
beside the *floor* measured in the same process on the same events: the cost
of decoding each event and encoding one record per engine plus one decision
per engine (the minimum any filter over these formats must pay), so the ratio
says how much the decision itself adds, whatever the machine's speed.

Events are pre-generated and consent is applied before timing starts; the
timed region is `Filter.decide` over batches, like the runtimes call it.

Encrypted fields (CONTRACT §10): the default policy encrypts the `email`
engine's `email` and `phone`. ``encrypt_us_per_field`` is the engine's
``Sealer.seal`` (nonce, AES-GCM under the cached cipher, associated data,
base64 or binary envelope) timed over exactly the (subject, field, value)
triples the run encrypts, keys existing (steady state; a key is created once
per subject, ``key_create_us``). It is measured directly because the
difference of two whole runs (``python`` vs ``python-plain``, the same policy
without `encrypt`, also reported) is within the noise of a shared machine:
~3,000 fields x ~5 µs is ~15 ms of a ~700 ms run. The native engine
has no encrypt transform yet: it runs the plaintext policy (see README).
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import orjson

from streams import population
from streams.engine.batch import Filter, TopicNames
from streams.engine.codecs import get_codec
from streams.engine.policy import compile_policy, load_policy, read_policy_file

#: Batch size handed to decide(), as the runtimes do (PFILTER_BATCH_SIZE default).
BATCH = 2000
BENCH_SECRET = b"bench-secret"


def plaintext_doc() -> dict[str, Any]:
    """The default policy document without its ``encrypt`` transforms: the engines' figures
    without the cost of sealing (``native-sealed`` and ``python`` include it)."""
    doc = read_policy_file(None)
    for e in doc["engines"]:
        tr = {f: t for f, t in e.get("transforms", {}).items() if t != "encrypt"}
        if tr:
            e["transforms"] = tr
        else:
            e.pop("transforms", None)
    return doc


def plaintext_policy(secret: bytes = BENCH_SECRET) -> Any:
    """``plaintext_doc`` compiled."""
    return compile_policy(plaintext_doc(), secret=secret)


def _seal_cost(filt: Any, records: list[tuple], repeat: int) -> dict[str, Any]:
    """µs per encrypted field: ``Sealer.seal`` over the triples ``records`` make the engine
    encrypt (collected in an untimed pass), best of ``repeat``; and per new key."""
    sealer = filt._sealer
    triples: list[tuple] = []
    seal = sealer.seal

    class Recording:  # the Filter's view of a sealer: seal, new, drain
        def seal(self, subject: str, path: str, value: Any) -> Any:
            triples.append((subject, path, value))
            return seal(subject, path, value)

        new = property(lambda self: sealer.new)
        drain = staticmethod(sealer.drain)

    filt._sealer = Recording()
    for i in range(0, len(records), BATCH):
        filt.decide(records[i:i + BATCH])
    filt._sealer = sealer
    best = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        for t in triples:
            seal(*t)
        best = min(best, time.process_time() - c0)
    ring = sealer.ring
    c0 = time.process_time()
    for i in range(1000):
        ring.ensure(f"bench-new-{i}", 0)
    key_us = (time.process_time() - c0) / 1000 * 1e6
    for i in range(1000):
        ring.forget(f"bench-new-{i}")
    return {"encrypted_fields_per_run": len(triples),
            "encrypt_us_per_field": round(best / len(triples) * 1e6, 2) if triples else None,
            "key_create_us": round(key_us, 1)}


def _records(fmt: str, n: int, subjects: int, seed: int, now: int, topics: TopicNames) -> list[tuple]:
    spec = population.PopulationSpec(subjects=subjects, seed=seed)
    out = []
    click = get_codec("click_event", fmt)
    purchase = get_codec("purchase_event", fmt)
    for i, (kind, value, key) in enumerate(population.event_bytes(spec, now, n)):
        topic = topics.purchases if kind == "purchase" else topics.clickstream
        if fmt == "avro":
            value = (purchase if kind == "purchase" else click).encode(orjson.loads(value))
        out.append((topic, i % 6, i, key.encode() if key else None, value, None, now))
    return out


def _consent(fmt: str, subjects: int, seed: int, now: int, topics: TopicNames) -> list[tuple]:
    spec = population.PopulationSpec(subjects=subjects, seed=seed)
    codec = get_codec("consent_record", fmt)
    return [
        (topics.consent, 0, i, rec["subject_id"].encode(), codec.encode(rec), None, now)
        for i, rec in enumerate(population.consent_records(spec, now))
    ]


def _floor(fmt: str, records: list[tuple], engines: int) -> tuple[float, float]:
    """(wall s, CPU s) for decode + engines outputs + one decision record (engines entries) per event."""
    click = get_codec("click_event", fmt)
    purchase = get_codec("purchase_event", fmt)
    out = get_codec("filtered_event", fmt)
    dec = get_codec("decision_record", fmt)
    sample_out = None
    sample_dec = {
        "event_id": "e", "subject_id": "s", "outcome": "decided", "reason": None,
        "engines": [{"engine": "offers", "outcome": "emitted", "reason": None, "categories_sent": ["browsing"]}
                    for _ in range(engines)],
        "consent_version": 1, "policy_version": "p", "ts": 1,
        "decided_at": 1, "source_topic": "t", "source_partition": 0, "source_offset": 0,
    }
    c0 = time.process_time()
    t0 = time.perf_counter()
    for topic, _p, _o, _k, value, _h, _t in records:
        ev = (purchase if topic == "purchases" else click).decode(value)
        sample_out = {"event_id": ev["event_id"], "subject_id": ev.get("subject_id") or "", "event_type": ev["event_type"],
                      "ts": ev["ts"], "url": ev.get("url"), "consent_version": 1, "policy_version": "p",
                      "purposes": ["personalization"], "engine": "offers"}
        for _ in range(engines):
            out.encode(sample_out)
        dec.encode(sample_dec)
    return time.perf_counter() - t0, time.process_time() - c0


def _time_decide(filt: Any, records: list[tuple]) -> tuple[float, float, dict[str, int]]:
    """(wall s, CPU s, outcomes) of one pass of ``filt.decide`` over ``records`` in batches."""
    if hasattr(filt, "fallbacks"):
        filt.fallbacks = 0
    emitted = dropped = dlq = produced = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(0, len(records), BATCH):
        res = filt.decide(records[i:i + BATCH])
        emitted += sum(res.emitted.values())
        dropped += sum(res.dropped.values())
        dlq += res.dlq
        produced += len(res.records)
    wall = time.perf_counter() - t0
    return wall, time.process_time() - c0, {"emitted": emitted, "dropped": dropped, "dlq": dlq, "records": produced}


def run(events: int = 200_000, subjects: int = 100_000, fmt: str = "json", seed: int = 7,
        repeat: int = 3, engines: tuple[str, ...] = ("python", "python-plain", "native", "native-sealed")
        ) -> dict[str, Any]:
    """Best of ``repeat`` runs (the least disturbed by the other core's load) of each engine,
    the runs of the engines interleaved so that a change of load hits them alike.

    The top-level ``events_per_s``/``ratio`` are the Python engine's (as before); each
    engine's figures are under ``engines``; ``native_vs_python`` and
    ``native_vs_floor`` are the ratios of the native engine's rate to the others'.
    ``native`` and ``python-plain`` run the policy without ``encrypt``; ``python`` and
    ``native-sealed`` the default policy (the native side seals JSON outputs through the
    Python sealer; Avro outputs with a field to encrypt go to the Python engine):
    ``native_sealed_vs_python`` compares the two on the same policy."""
    from streams.engine import native as native_mod

    if not native_mod.available():
        engines = tuple(e for e in engines if not e.startswith("native"))
    topics = TopicNames()
    policy = load_policy(None, secret=BENCH_SECRET)
    now = int(time.time() * 1000)
    formats = {topics.clickstream: fmt, topics.purchases: fmt, topics.consent: fmt, "output": fmt}
    filters: dict[str, Any] = {}
    consent_s = 0.0
    consent = _consent(fmt, subjects, seed, now, topics)
    plain = plaintext_policy() if policy.encrypts else policy
    for name in engines:
        if name == "native":
            filt = native_mod.NativeFilter(plain, topics, formats, store={}, clock=lambda: now, secret=BENCH_SECRET)
        elif name == "native-sealed":
            filt = native_mod.NativeFilter(policy, topics, formats, store={}, clock=lambda: now, secret=BENCH_SECRET)
        elif name == "python-plain":
            filt = Filter(plain, topics, formats, store={}, clock=lambda: now)
        else:
            filt = Filter(policy, topics, formats, store={}, clock=lambda: now)
        t0 = time.perf_counter()
        filt.apply_consent(consent)
        if name == "python":
            consent_s = time.perf_counter() - t0
        filters[name] = filt
    records = _records(fmt, events, subjects, seed, now, topics)
    sizes = sum(len(r[4]) for r in records) / len(records)
    seal_cost: dict[str, Any] = {}
    if "python" in filters and policy.encrypts:
        # on a Filter of its own: the timed ones create their keys in their first timed run
        sealing = Filter(policy, topics, formats, store={}, clock=lambda: now)
        sealing.apply_consent(consent)
        seal_cost = _seal_cost(sealing, records, repeat)
        del sealing
    gc.collect()
    gc.freeze()  # the pre-generated inputs are not garbage; keep the collector off them
    best = {name: (float("inf"), 0.0) for name in engines}
    outcomes: dict[str, Any] = {}
    for _ in range(repeat):
        for name in engines:
            wall, cpu, outcomes[name] = _time_decide(filters[name], records)
            bw, bc = best[name]
            best[name] = (min(bw, wall), cpu if not bc else min(bc, cpu))
    floors = [_floor(fmt, records, len(policy.engines)) for _ in range(repeat)]
    gc.unfreeze()
    floor = min(w for w, _c in floors)
    floor_cpu = min(c for _w, c in floors)
    feps = len(records) / floor
    fcps = len(records) / floor_cpu if floor_cpu else None
    per_engine = {
        name: {"events_per_s": round(len(records) / wall), "events_per_cpu_s": round(len(records) / cpu) if cpu else None,
               "ratio_to_floor": round(len(records) / wall / feps, 3),
               # per CPU-second: what a loaded machine (other processes on the cores) distorts least
               "cpu_ratio_to_floor": round(len(records) / cpu / fcps, 3) if cpu and fcps else None,
               "outcomes_per_run": outcomes[name],
               **({"native_core": filters[name].native, "python_fallbacks": filters[name].fallbacks}
                  if name.startswith("native") else {})}
        for name, (wall, cpu) in best.items()
    }
    py = per_engine.get("python") or next(iter(per_engine.values()))
    out: dict[str, Any] = {
        "format": fmt,
        "events": len(records),
        "subjects": subjects,
        "mean_event_bytes": round(sizes, 1),
        "engines": len(policy.engines),
        "events_per_s": py["events_per_s"],
        "floor_events_per_s": round(feps),
        "floor_events_per_cpu_s": round(fcps) if fcps else None,
        "ratio": py["ratio_to_floor"],
        "records_per_event": round(py["outcomes_per_run"]["records"] / len(records), 3),
        "outcomes_per_run": py["outcomes_per_run"],
        "consent_apply_per_s": round(len(consent) / consent_s) if consent_s else None,
        "by_engine": per_engine,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    if "native" in per_engine and "python" in per_engine:
        nat = per_engine["native"]
        out["native_events_per_s"] = nat["events_per_s"]
        out["native_vs_python"] = round(nat["events_per_s"] / py["events_per_s"], 2)
        out["native_vs_floor"] = nat["ratio_to_floor"]
        if nat["events_per_cpu_s"] and py["events_per_cpu_s"]:
            out["native_vs_python_cpu"] = round(nat["events_per_cpu_s"] / py["events_per_cpu_s"], 2)
            out["native_vs_floor_cpu"] = nat["cpu_ratio_to_floor"]
        out["same_outcomes"] = nat["outcomes_per_run"] == py["outcomes_per_run"]
    if "native-sealed" in per_engine and "python" in per_engine:
        ns = per_engine["native-sealed"]
        out["native_sealed_events_per_s"] = ns["events_per_s"]
        out["native_sealed_vs_python"] = round(ns["events_per_s"] / py["events_per_s"], 2)
        out["native_sealed_same_outcomes"] = ns["outcomes_per_run"] == py["outcomes_per_run"]
    out.update(seal_cost)
    return out
