"""Decision records and engine outputs assembled from precomputed byte fragments.

The fast path of ``Filter.decide`` writes each decision record (one per input,
``streams.engine.decisions``) and each JSON engine output as a concatenation of
fragments: what the output codec writes for that part of the record, computed
once per policy, engine, reason or category set. Only the parts that vary per
event (ids, times, source coordinates, the consent version) are encoded per
event. The codecs are the reference: tests/unit/engine/test_fast_path.py checks
that the bytes are identical to the codec's encoding of the dicts the codec
path builds (same keys, same order), in JSON and Avro.

A decided record with entries is ``head + opening + entries + closing + rest``;
one with a shared reason (``anonymous``, ``no_consent``) is ``head +
shared[reason] + rest``. Entries come per engine from :class:`FastEngine`.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.engine.codecs.varint import LEN1, write_long
from streams.engine.policy import CompiledEngine, CompiledPolicy
from streams.engine.vocab import DECIDED, DROPPED, EMITTED, REASONS, SHARED_REASONS

#: Bound of the per-fragments cache of source topic bytes (a worker reads 2 topics).
_TOPIC_CACHE_MAX = 1024


def avro_str(s: str) -> bytes:
    """An Avro string: zigzag length, then the UTF-8 bytes."""
    b = s.encode()
    return bytes(write_long(len(b))) + b


def avro_long(n: int) -> bytes:
    return bytes(write_long(n))


class JsonFragments:
    """Decision records and engine outputs as JSON, byte-identical to ``JsonCodec.encode``
    of the dicts the codec path builds (``decisions.record``, ``decide.decide``)."""

    def __init__(self, policy: CompiledPolicy) -> None:
        d = orjson.dumps
        #: after ``head`` when there are entries: no record-level reason, the array opens
        self.opening = b'null,"engines":['
        #: after the last entry
        self.closing = b'],"consent_version":'
        #: after ``head`` when every engine dropped for one step-1 reason: no entries
        self.shared = {r: d(r) + b',"engines":[],"consent_version":' for r in SHARED_REASONS}
        self._pv = b',"policy_version":' + d(policy.version)
        self._decided = b',"outcome":' + d(DECIDED) + b',"reason":'
        self.topics: dict[str, bytes] = {}
        self.trailers = {
            eng.name: (b',"consent_version":',
                       b',"policy_version":' + d(eng.policy_version) + b',"purposes":' + d(list(eng.relied_on))
                       + b',"engine":' + d(eng.name) + b'}')
            for eng in policy.engines
        }

    def entry(self, first: bool, engine: str, outcome: str, reason: str | None, names: list[str]) -> bytes:
        """One engine's entry (with the separator before it unless it is the first)."""
        d = orjson.dumps
        return (b"" if first else b",") + (b'{"engine":' + d(engine) + b',"outcome":' + d(outcome) + b',"reason":'
                                          + d(reason) + b',"categories_sent":' + d(names) + b"}")

    def event(self, event_id: str, subject: str | None, cv: int | None, ts: int, now: int, topic: str,
              partition: int, offset: int) -> tuple[bytes, bytes]:
        """(head, rest) of an input's decision record: what precedes and follows the entries."""
        d = orjson.dumps
        head = b'{"event_id":' + d(event_id) + b',"subject_id":' + d(subject) + self._decided
        t = self.topics.get(topic)
        if t is None:
            t = self._topic(topic)
        rest = b'%b%b,"ts":%d,"decided_at":%d,"source_topic":%b,"source_partition":%d,"source_offset":%d}' % (
            b"null" if cv is None else b"%d" % cv, self._pv, ts, now, t, partition, offset)
        return head, rest

    def _topic(self, topic: str) -> bytes:
        t = orjson.dumps(topic)
        if len(self.topics) < _TOPIC_CACHE_MAX:
            self.topics[topic] = t
        return t

    def output(self, out: dict, engine: str, cv: int) -> bytes:
        """An engine output: ``out`` (envelope and fields) then the engine's trailer.
        Raises (orjson) when ``out`` is not serializable: the caller falls back to the codec."""
        a, b = self.trailers[engine]
        return orjson.dumps(out)[:-1] + a + b"%d" % cv + b


class AvroFragments:
    """Decision records in the Confluent wire format, byte-identical to ``AvroCodec.encode``.

    ``header`` is the codec's magic byte and schema id (``AvroCodec.header``)."""

    def __init__(self, policy: CompiledPolicy, header: bytes) -> None:
        self.header = header
        # reason null, then one array block holding every engine (a policy has at least one:
        # compile_policy refuses an empty engines list), then the array's end
        self.opening = b"\x00" + avro_long(len(policy.engines))
        self.closing = b"\x00"
        self.shared = {r: b"\x02" + avro_str(r) + b"\x00" for r in SHARED_REASONS}
        self._decided = avro_str(DECIDED)
        self._pv = avro_str(policy.version)
        self.topics: dict[str, bytes] = {}
        self._now: Any = None
        self._now_bytes = b""

    def entry(self, first: bool, engine: str, outcome: str, reason: str | None, names: list[str]) -> bytes:
        """One engine's entry (Avro array items need no separator)."""
        cats = (avro_long(len(names)) + b"".join(avro_str(n) for n in names) + b"\x00") if names else b"\x00"
        return (avro_str(engine) + avro_str(outcome) + (b"\x00" if reason is None else b"\x02" + avro_str(reason))
                + cats)

    def event(self, event_id: str, subject: str | None, cv: int | None, ts: int, now: int, topic: str,
              partition: int, offset: int) -> tuple[bytes, bytes]:
        """(head, rest) of an input's decision record: what precedes and follows the entries."""
        e = event_id.encode()
        n = len(e)
        head = self.header + b"\x02" + (LEN1[n] if n < 64 else write_long(n)) + e
        if subject is None:
            head += b"\x00" + self._decided
        else:
            s = subject.encode()
            n = len(s)
            head += b"\x02" + (LEN1[n] if n < 64 else write_long(n)) + s + self._decided
        t = self.topics.get(topic)
        if t is None:
            t = self._topic(topic)
        if now != self._now:
            self._now = now
            self._now_bytes = bytes(write_long(now))
        rest = b"".join((b"\x00" if cv is None else b"\x02" + write_long(cv), self._pv, b"\x02", write_long(ts),
                         self._now_bytes, t, write_long(partition), write_long(offset)))
        return head, rest

    def _topic(self, topic: str) -> bytes:
        t = avro_str(topic)
        if len(self.topics) < _TOPIC_CACHE_MAX:
            self.topics[topic] = t
        return t

    output = None  # engine outputs go through the codec (dicts)


class FastEngine:
    """Per-engine constants of the fast path: its entries of the decision record."""

    __slots__ = ("eng", "name", "topic", "first", "dropped", "cats", "pseudonymize", "pseudonyms", "_frags")

    def __init__(self, eng: CompiledEngine, first: bool, frags: JsonFragments | AvroFragments) -> None:
        self.eng = eng
        self.name = eng.name
        self.topic = eng.topic
        self.first = first
        self._frags = frags
        #: reason -> the entry of a drop for it
        self.dropped = {r: frags.entry(first, eng.name, DROPPED, r, []) for r in REASONS}
        #: categories mask -> the entry of an emit that sent them (filled by ``emitted``)
        self.cats: dict[int, bytes] = {}
        self.pseudonymize = eng.pseudonymize_subject
        #: subject -> pseudonym (bounded; an erased subject's entry is dropped)
        self.pseudonyms: dict[str, str] = {}

    def emitted(self, sent: int) -> bytes:
        """The entry of an emit that sent the categories in ``sent`` (cached per mask)."""
        c = self.cats.get(sent)
        if c is None:
            c = self.cats[sent] = self._frags.entry(self.first, self.name, EMITTED, None,
                                                    self.eng.category_names(sent))
        return c
