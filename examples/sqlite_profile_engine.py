"""Example downstream engine: a per-subject profile in SQLite, built with the engine SDK.

Run it next to the filter (the KEK lets it read the `email` engine's encrypted
fields; without it, the profile keeps no contact data)::

    PFILTER_KEK=... python examples/sqlite_profile_engine.py --engine email \\
        --bootstrap 127.0.0.1:9092 --group email-profiles --db profiles.sqlite

What it shows:

* one row per subject (the id, or the pseudonym for engines that receive
  pseudonyms: the engine never needs the real id);
* decrypted fields (``email``, ``phone``) used only if the SDK could decrypt
  them: a field whose key was shredded is simply absent from the event;
* an erasure notice deletes the subject's row; the SQLite transaction commits
  before the Kafka offsets do, so a crash replays records rather than losing
  an erasure (at least once; applying a record twice is harmless here, the
  profile is overwritten, counts aside).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
from pathlib import Path
from typing import Any

from streams.sdk import EngineConsumer

SCHEMA = """
CREATE TABLE IF NOT EXISTS profile (
    subject     TEXT PRIMARY KEY,
    email       TEXT,
    phone       TEXT,
    orders      INTEGER NOT NULL DEFAULT 0,
    spent       REAL NOT NULL DEFAULT 0,
    last_event  TEXT,
    last_ts     INTEGER
)
"""


class ProfileEngine:
    """The engine's state: apply events, forget subjects."""

    def __init__(self, db: Path | str) -> None:
        self.db = sqlite3.connect(str(db))
        self.db.execute(SCHEMA)
        self.db.commit()

    def apply(self, event: dict[str, Any]) -> None:
        subject = event["subject_id"]
        is_order = event.get("event_type") == "purchase"
        self.db.execute(
            """INSERT INTO profile (subject, email, phone, orders, spent, last_event, last_ts)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(subject) DO UPDATE SET
                 email = COALESCE(excluded.email, profile.email),
                 phone = COALESCE(excluded.phone, profile.phone),
                 orders = profile.orders + excluded.orders,
                 spent = profile.spent + excluded.spent,
                 last_event = excluded.last_event, last_ts = excluded.last_ts""",
            (subject, event.get("email"), event.get("phone"), 1 if is_order else 0,
             float(event.get("total") or 0) if is_order else 0.0, event.get("event_type"), event.get("ts")),
        )

    def forget(self, subject: str) -> None:
        """The erasure hook: the subject (or pseudonym) leaves no row behind."""
        self.db.execute("DELETE FROM profile WHERE subject = ?", (subject,))
        self.db.commit()

    def profile(self, subject: str) -> dict[str, Any] | None:
        cur = self.db.execute("SELECT * FROM profile WHERE subject = ?", (subject,))
        row = cur.fetchone()
        return None if row is None else dict(zip([c[0] for c in cur.description], row))

    def run(self, consumer: EngineConsumer, *, max_records: int | None = None, timeout: float = 1.0) -> int:
        """Apply events until ``max_records`` or ``timeout`` without one; commit SQLite, then Kafka."""
        n = 0
        for event in consumer.iter(max_records=max_records, timeout=timeout):
            self.apply(event)
            n += 1
        self.db.commit()
        consumer.commit()
        return n

    def close(self) -> None:
        self.db.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="per-subject profiles in SQLite from one engine topic")
    ap.add_argument("--engine", default="email")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--group", default="sqlite-profiles")
    ap.add_argument("--db", default="profiles.sqlite")
    ap.add_argument("--timeout", type=float, default=5.0, help="stop after this long without records")
    args = ap.parse_args(argv)
    engine = ProfileEngine(args.db)
    with EngineConsumer(engine=args.engine, bootstrap=args.bootstrap, group=args.group,
                        kek=os.environ.get("PFILTER_KEK") or None, on_erasure=engine.forget) as consumer:
        while True:
            n = engine.run(consumer, max_records=1000, timeout=args.timeout)
            if n == 0:
                break
        print(f"applied {consumer.stats['events']} events, {consumer.stats['erasures']} erasures, "
              f"{consumer.stats['unreadable']} unreadable fields; lag {consumer.lag()}")
    engine.close()


if __name__ == "__main__":
    main()
