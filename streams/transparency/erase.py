"""The support page's erase: a consent tombstone for the subject, acknowledged by the broker.

A tombstone on the consent topic is erasure (CONTRACT §2, G4): the worker deletes the
subject's state, tombstones its data key, cancels its notices and tells every engine.
Kept in this one function so a fuller ``pfilter erase`` (receipt of what was removed
where, §10) can replace it without touching the page.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

from streams.config import Settings
from streams.errors import PFilterError
from streams.kafka.clients import producer_config

#: How long the broker may take to acknowledge the tombstone before erase reports failure.
_ACK_TIMEOUT_S = 30


class EraseError(PFilterError):
    """The tombstone was not acknowledged (names the topic, never the subject)."""


def erase_subject(settings: Settings, subject: str) -> dict[str, Any]:
    """Produce the subject's consent tombstone and wait for the broker's acknowledgement.

    Returns where it landed: ``{"topic", "partition", "offset"}``."""
    p = Producer(producer_config(settings, **{"linger.ms": 0}))
    got: dict[str, Any] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            got["error"] = err.name()
        else:
            got.update(topic=msg.topic(), partition=msg.partition(), offset=msg.offset())

    p.produce(settings.topic_consent, None, subject.encode("utf-8", "surrogatepass"), on_delivery=on_delivery)
    left = p.flush(_ACK_TIMEOUT_S)
    if left or "error" in got or "offset" not in got:
        raise EraseError(f"erase: the tombstone on {settings.topic_consent!r} was not acknowledged "
                         f"({got.get('error', 'timed out')})")
    return got
