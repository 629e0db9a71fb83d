"""Produces records in the format the filter emits for encrypted fields (tests of the SDK and tail)."""

from __future__ import annotations

from confluent_kafka import Producer

from streams.config import Settings
from streams.crypto import Kek, KeyRing, encrypt_value
from streams.engine.codecs import get_codec
from streams.kafka.clients import producer_config
from streams.wiring import policy_for_topics

NOW = 1_767_225_600_000


def engine_topic(settings: Settings, engine: str) -> str:
    return {e.name: e.topic for e in policy_for_topics(settings).engines}[engine]


class World:
    """Produces what the filter would: keys and outputs in one transaction, notices, tombstones."""

    def __init__(self, settings: Settings, kek: Kek) -> None:
        self.s = settings
        self.topic = engine_topic(settings, "email")
        self.ring = KeyRing(kek)
        self.p = Producer(producer_config(settings, **{"linger.ms": 0,
                                                        "transactional.id": f"{settings.group_id}.tx"}))
        self.p.init_transactions(30)
        self.n = 0
        self.key_records: list = []

    def event(self, subject: str, email: str, phone: str) -> tuple[bytes, list[bytes]]:
        """An `email` engine output for ``subject`` (plus its key record if new)."""
        self.n += 1
        new = self.ring.ensure(subject, NOW)
        if new is not None:
            self.key_records.append(new)
        out = {"event_id": f"e-{self.n}", "subject_id": subject, "event_type": "purchase", "ts": NOW + self.n,
               "order_id": f"o-{self.n}", "total": 10.0, "currency": "EUR",
               "email": encrypt_value(self.ring, subject, "email", email),
               "phone": encrypt_value(self.ring, subject, "phone", phone),
               "consent_version": NOW, "policy_version": "test", "purposes": ["marketing_email"],
               "engine": "email"}
        return self._encode("filtered_event", out), ([new.to_json()] if new else [])

    def _encode(self, kind: str, obj: dict) -> bytes:
        """In the output format of the settings (the key records are JSON either way)."""
        return get_codec(kind, self.s.format_output).encode(obj)

    def commit(self, records: list[tuple[str, str, bytes | None]], *, abort: bool = False) -> None:
        self.p.begin_transaction()
        for topic, key, value in records:
            self.p.produce(topic, value, key.encode())
        if abort:
            assert self.p.flush(30) == 0  # on the broker, then aborted (not just purged locally)
            self.p.abort_transaction(30)
        else:
            self.p.commit_transaction(30)

    def outputs(self, *people: tuple[str, str, str]) -> list[tuple[str, str, bytes | None]]:
        recs: list[tuple[str, str, bytes | None]] = []
        for subject, email, phone in people:
            value, keys = self.event(subject, email, phone)
            recs += [(self.s.topic_keys, subject, k) for k in keys]  # key first, same transaction
            recs.append((self.topic, subject, value))
        return recs

    def notice(self, subject: str, engine: str) -> tuple[str, str, bytes]:
        return (self.s.topic_erasures, subject, self._encode("erasure_notice", {
            "subject_id": subject, "engine": engine, "erased_at": NOW, "consent_version": NOW,
            "policy_version": "test", "pseudonymized": False}))


