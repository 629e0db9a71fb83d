"""Where a batch's outputs go: one idempotent confluent-kafka producer.

At-least-once rests on one ordering: a batch's outputs (engine records,
decisions, erasure notices, DLQ entries) are flushed and acknowledged by the
broker *before* the batch's input offsets may be committed. ``send`` returns
only after every delivery report came back, and raises if any failed, so the
caller never acks inputs whose outputs are not durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from confluent_kafka import KafkaException, Producer

from streams.config import Settings
from streams.kafka.clients import output_producer_config

#: Upper bound for one flush. A healthy local broker acks a batch in
#: milliseconds; a minute means the cluster is unavailable and the worker
#: should crash (and be restarted) rather than ack unsent outputs.
FLUSH_TIMEOUT_S = 60.0


class DeliveryError(RuntimeError):
    """Some outputs were not acknowledged; the batch must not be committed."""


class Sink:
    def __init__(self, settings: Settings) -> None:
        self._failed = 0
        self._first_error: str | None = None
        self._producer = Producer(output_producer_config(settings, self._on_delivery))

    def _on_delivery(self, err, msg) -> None:  # noqa: ANN001
        if err is not None:
            self._failed += 1
            if self._first_error is None:
                # the error name and topic only: never the record
                self._first_error = f"{err.name()} on topic {msg.topic()}"

    def produce_all(self, records: Sequence[tuple]) -> None:
        produce = self._producer.produce
        for topic, key, value, headers in records:
            while True:
                try:
                    if headers is None:
                        produce(topic, value, key)  # positional: keyword parsing costs per record
                    else:
                        produce(topic, value, key, headers=headers)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self._producer.poll(0.05)
                except KafkaException as exc:
                    raise DeliveryError(f"could not enqueue to topic {topic}: {exc.args[0].name()}") from None

    def flush(self) -> None:
        remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            raise DeliveryError(f"{remaining} outputs not acknowledged within {FLUSH_TIMEOUT_S:.0f}s")
        if self._failed:
            n, first = self._failed, self._first_error
            self._failed, self._first_error = 0, None
            raise DeliveryError(f"{n} outputs failed ({first})")

    def send(self, records: Sequence[tuple]) -> None:
        """Produce and wait for every acknowledgement (blocking)."""
        if records:
            self.produce_all(records)
            self.flush()

    async def send_async(self, records: Sequence[tuple]) -> None:
        if records:
            await asyncio.get_running_loop().run_in_executor(None, self.send, records)

    def close(self) -> None:
        self._producer.flush(FLUSH_TIMEOUT_S)
