"""Where a batch's outputs go: one idempotent confluent-kafka producer (and one
for table changelogs).

At-least-once rests on two orderings:
- a batch's outputs (engine records, decisions, erasure notices, DLQ entries)
  are flushed and acknowledged by the broker *before* the batch's input
  offsets may be committed. ``send`` returns only after every delivery report
  came back, and raises if any failed, so the caller never acks inputs whose
  outputs are not durable;
- within a batch, the audit trail (decisions, DLQ entries) is acknowledged
  before the engine outputs it accounts for are produced, so that a crash
  mid-batch never leaves an output that no decision accounts for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Producer

from streams.config import Settings
from streams.errors import PFilterError
from streams.kafka.clients import output_producer_config, producer_config

#: Upper bound for one flush. A healthy local broker acks a batch in
#: milliseconds; a minute means the cluster is unavailable and the worker
#: should crash (and be restarted) rather than ack unsent outputs.
FLUSH_TIMEOUT_S = 60.0


def split_audit_first(records: Sequence[tuple], deliveries: frozenset[str]) -> tuple[list, list]:
    """(records to no topic in ``deliveries``, records to one): the order an
    at-least-once worker writes them in (``Sink.send``)."""
    if not deliveries:
        return list(records), []
    audit, delivered = [], []
    for r in records:
        (delivered if r[0] in deliveries else audit).append(r)
    return audit, delivered


#: A DLQ entry carries the original bytes, but a poison record can be larger than a
#: producer may send (librdkafka's message.max.bytes, 1,000,000 by default): such an
#: entry keeps its first bytes up to this bound, below that default with room for the
#: headers, and says so in a header; the source coordinates in its headers point at
#: the whole record in its topic. Without this, one oversize input stopped the worker.
DLQ_VALUE_MAX_BYTES = 900_000


def _is_dlq_entry(headers: list | None) -> bool:
    return bool(headers) and headers[0][0] == "error.class"


def _truncated(value: bytes, headers: list) -> tuple[bytes, list]:
    return value[:DLQ_VALUE_MAX_BYTES], [*headers, ("value.truncated_from", str(len(value)).encode())]


def produce_records(producer: Producer, records: Sequence[tuple]) -> None:
    """Hand ``(topic, key, value, headers)`` records to the producer; when its local queue
    is full, let deliveries drain and retry. A DLQ entry too large to send is truncated
    (:data:`DLQ_VALUE_MAX_BYTES`). Any other refusal is a DeliveryError."""
    produce = producer.produce
    for topic, key, value, headers in records:
        while True:
            try:
                if headers is None:
                    produce(topic, value, key)  # positional: keyword parsing costs per record
                else:
                    produce(topic, value, key, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
            except KafkaException as exc:
                err = exc.args[0]
                if (err.code() == KafkaError.MSG_SIZE_TOO_LARGE and _is_dlq_entry(headers)
                        and value is not None and len(value) > DLQ_VALUE_MAX_BYTES):
                    value, headers = _truncated(value, headers)
                    continue
                raise DeliveryError(f"could not enqueue to topic {topic}: {err.name()}") from None


class DeliveryError(PFilterError, RuntimeError):
    """Some outputs were not acknowledged; the batch must not be committed."""


class Sink:
    def __init__(self, settings: Settings) -> None:
        self._failed = 0
        self._first_error: str | None = None
        self._producer = Producer(output_producer_config(settings, self._on_delivery))
        # Table changelogs need the offset of their last record (faust recovers from it),
        # and the output producer reports failures only: a producer of their own.
        self._changelog = Producer(producer_config(settings))

    def _on_delivery(self, err, msg) -> None:  # noqa: ANN001
        if err is not None:
            self._failed += 1
            if self._first_error is None:
                # the error name and topic only: never the record
                self._first_error = f"{err.name()} on topic {msg.topic()}"

    def produce_all(self, records: Sequence[tuple]) -> None:
        produce_records(self._producer, records)

    def flush(self) -> None:
        remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            raise DeliveryError(f"{remaining} outputs not acknowledged within {FLUSH_TIMEOUT_S:.0f}s")
        if self._failed:
            n, first = self._failed, self._first_error
            self._failed, self._first_error = 0, None
            raise DeliveryError(f"{n} outputs failed ({first})")

    def send_to_partitions(self, topic: str, items: dict[int, Sequence[tuple[bytes, bytes | None]]]) -> dict[int, int]:
        """Produce (key, value) pairs to the given partitions, wait for every
        acknowledgement, and return each partition's greatest offset (blocking). For
        table changelogs, whose partition is the source partition's, not the key's hash."""
        got: dict[int, int] = {}
        failed: list[str] = []

        def on_delivery(err, msg) -> None:  # noqa: ANN001
            if err is not None:
                failed.append(err.name())  # the error's name only: never the record
            else:
                p, o = msg.partition(), msg.offset()
                if o is not None and o > got.get(p, -1):
                    got[p] = o

        producer = self._changelog
        for partition, pairs in items.items():
            for key, value in pairs:
                while True:
                    try:
                        producer.produce(topic, value, key, partition, on_delivery=on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.05)
                    except KafkaException as exc:
                        raise DeliveryError(f"could not enqueue to topic {topic}: {exc.args[0].name()}") from None
        remaining = producer.flush(FLUSH_TIMEOUT_S)
        if remaining or failed or set(got) != {p for p, pairs in items.items() if pairs}:
            raise DeliveryError(f"changelog records to topic {topic} not acknowledged "
                                f"({remaining} pending, {failed[0] if failed else 'no report'})")
        return got

    def send(self, records: Sequence[tuple], deliveries: frozenset[str] = frozenset()) -> None:
        """Produce and wait for every acknowledgement (blocking).

        Records to a topic in ``deliveries`` (the engines' output topics) are produced
        only once every other record (decisions, DLQ entries) is acknowledged: the
        audit trail is written before what it accounts for, so a crash between the
        two can leave a decision whose output never went out (and whose input is
        decided again, its offset not being committed), never an output that no
        decision accounts for. See ``split_audit_first``."""
        audit, delivered = split_audit_first(records, deliveries)
        for part in (audit, delivered):
            if part:
                self.produce_all(part)
                self.flush()

    async def send_async(self, records: Sequence[tuple], deliveries: frozenset[str] = frozenset()) -> None:
        if records:
            await asyncio.get_running_loop().run_in_executor(None, self.send, records, deliveries)

    def close(self) -> None:
        self._producer.flush(FLUSH_TIMEOUT_S)
        self._changelog.flush(FLUSH_TIMEOUT_S)
