"""Benchmark peer: the ``offers`` filter of the default policy on Quix Streams.

Runs in its own virtualenv (``bench/peers/setup-quix.sh``): quixstreams pins
confluent-kafka < 2.13 and pydantic < 2.14, the project pins newer ones.

Topology (idiomatic Quix: co-partitioned topics, per-key state)::

    consent ─┐
             ├─ concat ─ apply(offers, stateful=True) ─ filter(not None) ─ to_topic(output)
    clicks ──┘   (time-aligned consumption; state is prefixed by the message key)

The stateful function keeps one state entry per subject, ``"consent"``: the
consent record with the greatest ``updated_at`` (ties go to the later record);
a tombstone deletes it. A click event reads its subject's entry and either
returns the filtered record or ``None`` (dropped; drops are not recorded).

Why not ``join_asof``: Quix's own join is temporal. It matches each event with
the right-side record whose *Kafka timestamp* is the latest at or before the
*event's* timestamp, and its store ignores tombstones. CONTRACT §5 decides
under the consent state current at processing time ("changes at any time,
effective immediately") and §3 orders consent by ``updated_at``, whatever the
arrival order. A concat plus a stateful function is the Quix way to keep
"latest value per key" state, which is what a KTable is.

Options: ``--bootstrap``, ``--group``, ``--clickstream-topic``,
``--consent-topic``, ``--output-topic``, ``--state-dir``, ``--idle-exit-s``
(stop after that many seconds without a new message; 0 = never),
``--policy-version``; each also from the environment (``PEER_BOOTSTRAP``,
``PEER_GROUP``, ...). SIGTERM/SIGINT stop it cleanly (Quix handles them).
On exit one JSON line with counts goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time

from quixstreams import Application, message_context

PURPOSE = "personalization"
BROWSING = ("url", "title", "query", "product_id", "category", "price", "quantity")
PURCHASE_HISTORY = ("order_id", "items", "total", "currency")

COUNTS = {"events": 0, "consent": 0, "emitted": 0, "skipped_input": 0}


def offers_output(event: dict, consent: dict | None, now: int, policy_version: str) -> dict | None:
    """The filtered record for engine ``offers``, or None when the rule drops the event."""
    if consent is None:
        return None  # no_consent
    subject = event.get("subject_id")
    if subject is None:
        return None  # anonymous
    ts = event.get("ts")
    if type(ts) is not int:
        return None
    p = (consent.get("purposes") or {}).get(PURPOSE)
    if not isinstance(p, dict) or p.get("status") != "granted":
        return None  # purpose_denied
    granted_at = p.get("granted_at")
    if type(granted_at) is not int or granted_at > ts:
        return None  # before_grant
    expires_at = p.get("expires_at")
    if expires_at is not None and not (now < expires_at and ts < expires_at):
        return None  # expired
    cats = consent.get("categories") or {}
    browsing = cats.get("browsing") is True
    purchases = cats.get("purchase_history") is True
    out = {
        "event_id": event.get("event_id"),
        "subject_id": subject,
        "event_type": event.get("event_type"),
        "ts": ts,
    }
    kept = 0
    if browsing:
        for f in BROWSING:
            v = event.get(f)
            if v is not None:
                out[f] = v
                kept += 1
        ctx = event.get("context")
        ref = ctx.get("referrer") if isinstance(ctx, dict) else None
        if ref is not None:
            out["context"] = {"referrer": ref}
            kept += 1
    if purchases:
        for f in PURCHASE_HISTORY:
            v = event.get(f)
            if v is not None:
                out[f] = v
                kept += 1
    if not kept:
        return None  # nothing_permitted
    out["consent_version"] = consent["updated_at"]
    out["policy_version"] = policy_version
    out["purposes"] = [PURPOSE]
    return out


def _options(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=env("PEER_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--group", default=env("PEER_GROUP", "offers-quix-peer"))
    ap.add_argument("--clickstream-topic", default=env("PEER_CLICKSTREAM_TOPIC", "clickstream"))
    ap.add_argument("--consent-topic", default=env("PEER_CONSENT_TOPIC", "consent"))
    ap.add_argument("--output-topic", default=env("PEER_OUTPUT_TOPIC", "personalization.offers"))
    ap.add_argument("--state-dir", default=env("PEER_STATE_DIR"))
    ap.add_argument("--idle-exit-s", type=float, default=float(env("PEER_IDLE_EXIT_S", "30")))
    ap.add_argument("--policy-version", default=env("PEER_POLICY_VERSION", "default-1"))
    return ap.parse_args(argv)


def _skip_bad_input(exc: Exception, message, logger: logging.Logger) -> bool:
    """Undecodable input is skipped (the real filter sends it to the DLQ); no content is logged."""
    COUNTS["skipped_input"] += 1
    logger.warning("skipping undecodable record: %s", type(exc).__name__)
    return True


def build(opts: argparse.Namespace) -> Application:
    state_dir = opts.state_dir or os.path.join(tempfile.gettempdir(), "quix-offers-peer", opts.group)
    app = Application(
        broker_address=opts.bootstrap,
        consumer_group=opts.group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        state_dir=state_dir,
        loglevel="WARNING",
        on_consumer_error=_skip_bad_input,
    )
    consent_topic = app.topic(opts.consent_topic, key_deserializer="str", value_deserializer="json")
    click_topic = app.topic(opts.clickstream_topic, key_deserializer="str", value_deserializer="json")
    output_topic = app.topic(opts.output_topic, key_serializer="str", value_serializer="json")
    consent_name = opts.consent_topic
    policy_version = opts.policy_version

    def offers(value, key, timestamp, headers, state):
        if message_context().topic == consent_name:
            COUNTS["consent"] += 1
            if value is None:
                state.delete("consent")  # tombstone: erasure
                return None
            if not isinstance(value, dict) or type(value.get("updated_at")) is not int:
                COUNTS["skipped_input"] += 1
                return None
            current = state.get("consent")
            if current is None or value["updated_at"] >= current["updated_at"]:
                state.set("consent", value)
            return None
        out = offers_output(value, state.get("consent"), int(time.time() * 1000), policy_version)
        if out is not None:
            COUNTS["emitted"] += 1
        return out

    def has_subject(event) -> bool:
        # anonymous events (no subject) are dropped before the state step: their key is no subject
        COUNTS["events"] += 1
        return isinstance(event, dict) and event.get("subject_id") is not None

    consent = app.dataframe(consent_topic).filter(lambda v, k, ts, h: k is not None, metadata=True)
    clicks = app.dataframe(click_topic).filter(has_subject)
    sdf = consent.concat(clicks)
    sdf = sdf.apply(offers, stateful=True, metadata=True)
    sdf = sdf.filter(lambda out: out is not None)
    sdf.to_topic(output_topic)
    return app


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    app = build(opts)
    started = time.monotonic()
    app.run(timeout=opts.idle_exit_s, collect=False)
    print(json.dumps({"peer": "quix", **COUNTS, "run_s": round(time.monotonic() - started, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
