"""Preload a benchmark data set and measure the peers on it, one after the other.

    .venv/bin/python -m bench.peers.measure --bootstrap 127.0.0.1:39292 \
        [--events 200000] [--consents 20000] [--partitions 6] [--peers kstreams,quix,faust]

Data: the project's synthetic population (``streams.population``, clicks only:
``purchase_share=0``): ``--consents`` consent records (one per subject, about
5% of subjects have none) and ``--events`` click events over the hour before
now, produced with confluent-kafka (``partitioner=murmur2_random``) to fresh
topics with ``--partitions`` partitions, consent first. Every peer then reads
the same preloaded topics with its own new consumer group and writes its own
output topic; ``run_peer`` measures it (see its docstring). The expected
number of outputs comes from a reference implementation of the rule evaluated
just before each run (a few grants of the population expire within minutes
of "now", so it can differ by a handful between runs; run_peer then stops on
idle instead).

Before each run it waits (``--quiet``, ``--quiet-wait-s``) until the machine
is mostly idle: on a shared 2-core machine, other processes steal the peer's
core and the broker's. Prints one JSON object per peer and a summary table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.peers.run import PEERS, ensure_built, run_peer

BROWSING = ("url", "title", "query", "product_id", "category", "price", "quantity")
PURCHASE = ("order_id", "items", "total", "currency")


def emits(event: dict, consent: dict | None, now: int) -> bool:
    """Whether engine `offers` emits ``event`` under ``consent`` (CONTRACT §5, §8)."""
    if event.get("subject_id") is None or consent is None:
        return False
    p = (consent.get("purposes") or {}).get("personalization")
    if not p or p.get("status") != "granted" or p.get("granted_at") is None or p["granted_at"] > event["ts"]:
        return False
    x = p.get("expires_at")
    if x is not None and not (now < x and event["ts"] < x):
        return False
    cats = consent.get("categories") or {}
    if cats.get("browsing") is True:
        if any(event.get(f) is not None for f in BROWSING):
            return True
        if (event.get("context") or {}).get("referrer") is not None:
            return True
    if cats.get("purchase_history") is True and any(event.get(f) is not None for f in PURCHASE):
        return True
    return False


def preload(bootstrap: str, *, events: int, consents: int, partitions: int, prefix: str,
            compression: str = "none") -> dict:
    from streams.population import PopulationSpec, consent_records, event_bytes

    topics = {"clickstream": f"{prefix}.clickstream", "consent": f"{prefix}.consent"}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futs = admin.create_topics([
        NewTopic(topics["clickstream"], partitions, 1),
        NewTopic(topics["consent"], partitions, 1, config={"cleanup.policy": "compact"}),
    ])
    for f in futs.values():
        f.result(30)
    now = int(time.time() * 1000)
    # ~5% of subjects never gave consent (no_consent_share): size the population for `consents` records
    spec = PopulationSpec(subjects=int(consents / 0.95) + 10, purchase_share=0.0)
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 20,
                  "batch.size": 1_048_576, "enable.idempotence": True, "compression.type": compression,
                  "queue.buffering.max.messages": 500_000})
    by_subject: dict[str, dict] = {}
    n_consent = 0
    for rec in consent_records(spec, now):
        if n_consent == consents:
            break
        sid = rec["subject_id"]
        by_subject[sid] = rec
        p.produce(topics["consent"], key=sid.encode(), value=orjson.dumps(rec))
        n_consent += 1
        if n_consent % 50_000 == 0:
            p.poll(0)
    p.flush(60)
    decoded: list[dict] = []
    for i, (_kind, raw, key) in enumerate(event_bytes(spec, now, events)):
        p.produce(topics["clickstream"], key=key.encode() if key else None, value=raw)
        decoded.append(orjson.loads(raw))
        if i % 50_000 == 0:
            p.poll(0)
    assert p.flush(120) == 0
    return {"topics": topics, "consents": n_consent, "events": events, "data_now_ms": now,
            "decoded": decoded, "by_subject": by_subject}


def expected_outputs(data: dict) -> int:
    now = int(time.time() * 1000)
    by = data["by_subject"]
    return sum(1 for e in data["decoded"] if emits(e, by.get(e.get("subject_id")), now))


def cpu_busy(sample_s: float = 2.0) -> float:
    """Fraction of all cores busy over ``sample_s`` (Linux /proc/stat)."""
    def read() -> tuple[int, int]:
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        idle = f[3] + f[4]
        return sum(f), idle
    t1, i1 = read()
    time.sleep(sample_s)
    t2, i2 = read()
    return 1.0 - (i2 - i1) / max(t2 - t1, 1)


def wait_for_quiet(threshold: float, max_wait_s: float) -> float:
    """Wait (up to ``max_wait_s``) until less than ``threshold`` of the machine is busy; return the last sample."""
    deadline = time.monotonic() + max_wait_s
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy()
    return busy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--consents", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--compression", default="none", choices=("none", "lz4", "zstd", "snappy", "gzip"),
                    help="of the preloaded topics (faust's aiokafka decodes lz4/zstd/snappy through cramjam)")
    ap.add_argument("--timeout-s", type=float, default=900)
    ap.add_argument("--quiet", type=float, default=0.3,
                    help="before each run, wait until less than this fraction of all cores is busy "
                         "(other processes on a shared machine; the idle broker is ~5%%)")
    ap.add_argument("--quiet-wait-s", type=float, default=300, help="give up waiting for quiet after this long")
    a = ap.parse_args(argv)
    peers = [x.strip() for x in a.peers.split(",") if x.strip()]
    for name in peers:
        ensure_built(name)
    prefix = f"peersbench-{uuid.uuid4().hex[:8]}"
    t = time.monotonic()
    data = preload(a.bootstrap, events=a.events, consents=a.consents, partitions=a.partitions, prefix=prefix,
                   compression=a.compression)
    print(f"preloaded {data['consents']} consent records and {data['events']} click events "
          f"into {prefix}.* ({a.partitions} partitions) in {time.monotonic() - t:.1f} s", file=sys.stderr)
    results = []
    for name in peers:
        topics = {**data["topics"], "output": f"{prefix}.offers.{name}"}
        busy = wait_for_quiet(a.quiet, a.quiet_wait_s)
        exp = expected_outputs(data)
        res = run_peer(name, a.bootstrap, topics, f"{prefix}-{name}", exp, a.timeout_s)
        res["machine_busy_before"] = round(busy, 2)
        print(json.dumps(res), flush=True)
        results.append(res)
    print(f"\n{'peer':10} {'events/s':>10} {'elapsed_s':>10} {'events':>8} {'outputs':>8} {'expected':>8} "
          f"{'cpu_share':>9} {'busy_before':>11}", file=sys.stderr)
    for r in results:
        print(f"{r['peer']:10} {r['events_per_s'] or 0:>10.0f} {r['elapsed_s'] or 0:>10.2f} {r['events']:>8} "
              f"{r['outputs']:>8} {r['expected_outputs']:>8} {r['peer_cpu_share'] or 0:>9.2f} "
              f"{r['machine_busy_before']:>11.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
