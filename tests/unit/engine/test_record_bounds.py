"""Input records that no Kafka broker delivers (a partition beyond int32) are refused at
the batch API with one clear error, by both engines and for both formats, instead of an
EncodeError from deep inside the Avro audit record (found by the native Avro parity test)."""

from __future__ import annotations

import time

import pytest

from bench.engine import BENCH_SECRET, _consent, _records, plaintext_policy
from streams.engine.batch import Filter, TopicNames
from streams.engine.native import NativeFilter

T = TopicNames()
NOW = int(time.time() * 1000)


def _filter(engine: str, fmt: str):
    formats = {T.clickstream: fmt, T.purchases: fmt, T.consent: fmt, "output": fmt}
    if engine == "native":
        return NativeFilter(plaintext_policy(), T, formats, store={}, clock=lambda: NOW, secret=BENCH_SECRET)
    return Filter(plaintext_policy(), T, formats, store={}, clock=lambda: NOW)


def _at(records: list, partition: int) -> list:
    return [(r[0], partition, *r[2:]) for r in records]


@pytest.mark.parametrize("fmt", ["json", "avro"])
@pytest.mark.parametrize("engine", ["python", "native"])
def test_a_partition_beyond_int32_is_refused_and_the_largest_one_is_decided(engine: str, fmt: str) -> None:
    filt = _filter(engine, fmt)
    consent = _consent(fmt, 20, 7, NOW, T)
    events = _records(fmt, 5, 20, 7, NOW, T)
    for bad in (2**31, -(2**31) - 1):
        with pytest.raises(ValueError, match="partition is not a 32-bit integer"):
            filt.decide(_at(events, bad))
        with pytest.raises(ValueError, match="partition is not a 32-bit integer"):
            filt.apply_consent(_at(consent, bad))
    filt.apply_consent(_at(consent, 2**31 - 1))
    res = filt.decide(_at(events, 2**31 - 1))
    assert res.decided == 5 and res.dlq == 0
