"""The native engine core (native/, Rust) behind the batch API, and engine selection.

``NativeFilter`` has the API of ``streams.engine.batch.Filter`` (``apply_consent``,
``decide`` -> ``BatchResult``) and produces the same BatchResults, byte for byte:

- ``decide`` hands the batch to the native ``Engine``, which scans each JSON event's
  raw bytes, looks up the subject's consent state in the store, applies the rule and
  writes the engine outputs and decision records. It stops at the first record it is
  not sure about (Avro, a malformed event, anything unusual), *before* any side effect
  (the clock is not read); that one record goes through the Python ``Filter`` (the
  reference semantics, which classify it: DLQ entry, reason, message), then the native
  engine resumes with the next. Outputs come out in input order either way.
- the ``encrypt`` transform (JSON outputs): the native side marks the fields to encrypt
  and, once the record is sure and the rule lets the output through, calls the Python
  engine's ``Sealer.seal`` per field (``native/src/seal.rs``); so the data keys, nonces
  and envelopes are the Python engine's, and new key records go out as its do. Avro
  outputs (binary envelopes) with a field to encrypt go to the Python engine.
- ``apply_consent`` is the Python one (consent records are few); tombstones also
  drop what the native side cached about the subject.

``PFILTER_ENGINE`` (``streams.config``): ``python``, ``native``, or ``auto`` (native
when the extension is importable). ``native`` without the extension stops start-up
naming the problem; ``auto`` without it says so once in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import orjson

from streams.config import ConfigError
from streams.engine import batch as _batch
from streams.engine.batch import BatchResult, Filter, TopicNames
from streams.engine import fragments as _fragments
from streams.engine.codecs import EVENT_TYPES, JsonCodec
from streams.engine.fragments import avro_str
from streams.engine.decide import REASONS
from streams.engine.native_avro import avro_input, avro_output, decision_fragments
from streams.engine.policy import ENVELOPE, PATHS_BY_TYPE, PSEUDONYM_HEX_CHARS, T_PSEUDONYMIZE, CompiledPolicy, engine_key
from streams.errors import PFilterError

log = logging.getLogger("streams.engine")

ENGINES = ("auto", "native", "python")

try:  # the extension is optional: a machine without cargo runs the Python engine
    import pfilter_native as _ext
except ImportError as _exc:  # noqa: F841 - kept for the start-up message
    _ext = None
    IMPORT_ERROR: str | None = f"{type(_exc).__name__}: {_exc}"
else:
    IMPORT_ERROR = None


class NativeEngineError(ConfigError, PFilterError):
    """The native engine was asked for and cannot run (not built, or it disagrees with the policy).
    A configuration error: start-up stops with its one line."""


def available() -> bool:
    """True when the native extension is importable."""
    return _ext is not None


_said_once = False


def resolve(choice: str) -> str:
    """``python`` or ``native`` for a ``PFILTER_ENGINE`` value; raises NativeEngineError when
    ``native`` is asked for and not built. ``auto`` without the extension logs it once."""
    global _said_once
    if choice not in ENGINES:
        raise NativeEngineError(f"PFILTER_ENGINE: {choice!r} is not one of {', '.join(ENGINES)}")
    if choice == "python":
        return "python"
    if _ext is not None:
        return "native"
    if choice == "native":
        raise NativeEngineError(
            f"PFILTER_ENGINE=native, but the native engine is not built ({IMPORT_ERROR}); "
            "run `make install` on a machine with cargo, or set PFILTER_ENGINE=python")
    if not _said_once:
        _said_once = True
        log.warning("native engine not built (no Rust toolchain at install?): using the Python engine")
    return "python"


def _needs_key(eng: Any) -> bool:
    return bool(eng.pseudonymize_subject or T_PSEUDONYMIZE in eng.transforms.values())


def spec_of(policy: CompiledPolicy, topics: TopicNames, event_codecs: dict[str, Any],
            secret: bytes | None, avro_out: dict[str, Any] | None = None) -> dict[str, Any]:
    """The compact spec of a compiled policy the native ``Engine`` is built from (once).

    Constant record fragments are encoded here with orjson, so their bytes are by
    construction those of the Python engine; the native side only writes what varies.
    ``event_codecs``: topic -> codec of the input topics the native side may decode
    (JSON ones, and Avro ones in our own schema: ``native_avro``). ``secret``: the
    pseudonym secret; without it, events that need a pseudonym go through the Python engine.
    ``avro_out`` (``native_avro.avro_output``): outputs and decision records in Avro, the
    decision fragments then ``fragments.AvroFragments``' (engine outputs are written as
    JSON, then re-encoded natively)."""
    d = orjson.dumps
    top = list(dict.fromkeys([*ENVELOPE, "context", "items",
                              *(p.split(".")[0] for paths in PATHS_BY_TYPE.values() for p in paths)]))
    event_types = list(PATHS_BY_TYPE)
    topic_specs = []
    for name, codec in event_codecs.items():
        if getattr(codec, "kind", None) not in EVENT_TYPES:
            continue
        avro = None
        if type(codec) is not JsonCodec:
            avro = avro_input(codec)
            if avro is None:
                continue
        topic_specs.append({"name": name, "json": avro_str(name) if avro_out else d(name), "types": sorted(EVENT_TYPES[codec.kind]),
                            "purchase": codec.kind == "purchase_event", "max_bytes": codec.max_bytes,
                            "avro": avro})
    # decision record fragments: the Python engine's own (fragments.JsonFragments), so the
    # bytes are its bytes by construction
    jf = _fragments.JsonFragments(policy)
    af = decision_fragments(policy, avro_out["decision_header"]) if avro_out else None
    engines = []
    for i, eng in enumerate(policy.engines):
        first = i == 0
        if eng.gate_bit >> 64:  # the native gates mask is a u64
            raise NativeEngineError("the native engine reads at most 64 engines' signal gates")
        plans = {}
        for t in event_types:
            full = eng.plans.get(t)
            if full is None:  # as CompiledEngine.mask_plan: an empty plan is a plan
                full = eng.default_plan
            plans[t] = [(head, list(rest), list(parents), leaf, dotted, bit, code, shape)
                        for head, rest, parents, leaf, dotted, bit, code, shape in full]
        fr = af or jf
        empty = fr.entry(first, eng.name, _batch.EMITTED, None, [])
        # the emitted entry without its (empty) categories: the native side writes them
        cats_tail = b"\x00" if af else b'"categories_sent":' + d([]) + b"}"
        if not empty.endswith(cats_tail):
            raise NativeEngineError("the decision record's engine entry does not end with its categories")
        emitted_head = empty[: -len(cats_tail)] + (b"" if af else b'"categories_sent":')
        engines.append({
            "topic": eng.topic,
            "needs_idx": list(eng.needs_idx),
            "needs_mask": eng.needs_mask,
            "tps_bit": eng.tps_bit,
            "gate_bit": eng.gate_bit,
            "third_party": bool(eng.third_party),
            "jurisdictions": None if eng.jurisdictions is None else sorted(eng.jurisdictions),
            "categories_mask": eng.categories_mask,
            "pseudonymize_subject": bool(eng.pseudonymize_subject),
            "ts_hour": bool(eng.ts_hour),
            "key": engine_key(secret, eng.name) if secret and _needs_key(eng) else None,
            "entry_dropped": [fr.entry(first, eng.name, _batch.DROPPED, r, []) for r in REASONS],
            "entry_emitted": emitted_head,
            "trailer": (b',"policy_version":' + d(eng.policy_version) + b',"purposes":' + d(list(eng.relied_on))
                        + b',"engine":' + d(eng.name) + b"}"),
            "plans": plans,
        })
    fr = af or jf
    return {
        "head_suffix": fr._decided,
        "opening": fr.opening,
        "closing": fr.closing,
        "shared": [fr.shared.get(r, b"") for r in REASONS],
        "cvp_suffix": fr._pv,
        "avro_out": avro_out,
        "vocab_fp": policy.vocab.fingerprint,
        "top_names": top,
        "event_types": event_types,
        "topics": topic_specs,
        "decisions_topic": topics.decisions,
        "categories_json": [d(c) for c in policy.vocab.categories],
        "hex_chars": PSEUDONYM_HEX_CHARS,
        "engines": engines,
    }


class NativeFilter:
    """``Filter`` with the native hot path (see the module doc). Same constructor, plus
    ``secret`` (the pseudonym secret the policy was compiled with)."""

    def __init__(
        self,
        policy: CompiledPolicy,
        topics: TopicNames,
        formats: dict[str, str],
        store: MutableMapping[str, tuple] | None = None,
        clock: Callable[[], int] | None = None,
        *,
        secret: bytes | None = None,
        keyring: Any = None,
        nonces: Callable[[int], bytes] | None = None,
    ) -> None:
        if _ext is None:
            raise NativeEngineError(f"the native engine is not built ({IMPORT_ERROR})")
        if isinstance(secret, str):
            secret = secret.encode()
        self._py = Filter(policy, topics, formats, store=store, clock=clock, keyring=keyring, nonces=nonces)
        if len(REASONS) != _ext.REASON_COUNT:
            raise NativeEngineError("the native engine was built for another set of drop reasons; rebuild it")
        self._names = [e.name for e in policy.engines]
        #: records decided by the Python fallback since construction (bench, tests)
        self.fallbacks = 0
        self._native: Any = None
        # the encrypt transform of a JSON output: the native side marks the fields and calls
        # the Python engine's sealer once the record is sure (native/src/seal.rs), so keys,
        # nonces and envelopes are the Python engine's; binary (Avro) envelopes stay there
        sealer = self._py._sealer
        self._seal = sealer.seal if sealer is not None and sealer.binary is False else None
        avro_out = avro_output(policy, self._py._out_codec, self._py._decision_codec)
        if avro_out is not None or (type(self._py._out_codec) is JsonCodec
                                    and type(self._py._decision_codec) is JsonCodec):
            spec = spec_of(policy, topics, self._py._event_codecs, secret, avro_out)
            self._native_topics = frozenset(t["name"] for t in spec["topics"])
            self._native = _ext.Engine(spec)
            self._check_keys(policy)

    def _check_keys(self, policy: CompiledPolicy) -> None:
        """The native keys must give the policy's pseudonyms (a wrong secret would not)."""
        probe = "pfilter-key-check"
        for i, eng in enumerate(policy.engines):
            got = self._native.pseudonym(i, probe.encode())
            if got is not None and got.decode() != eng.pseudonym(probe):
                raise NativeEngineError(f"engine {eng.name!r}: the pseudonym secret given to the native engine "
                                        "is not the one the policy was compiled with")

    # the Filter's public attributes, shared with the Python fallback
    @property
    def policy(self) -> CompiledPolicy:
        return self._py.policy

    @property
    def topics(self) -> TopicNames:
        return self._py.topics

    @property
    def formats(self) -> dict[str, str]:
        return self._py.formats

    @property
    def store(self) -> MutableMapping[str, tuple]:
        return self._py.store

    @store.setter
    def store(self, value: MutableMapping[str, tuple]) -> None:
        self._py.store = value

    @property
    def keyring(self) -> Any:
        """The data keys of the Python engine, whose sealer makes every envelope, for the
        native side too (the runtimes set it per partition, as ``store``)."""
        return self._py.keyring

    @keyring.setter
    def keyring(self, value: Any) -> None:
        self._py.keyring = value

    @property
    def clock(self) -> Callable[[], int]:
        return self._py.clock

    @clock.setter
    def clock(self, value: Callable[[], int]) -> None:
        self._py.clock = value

    @property
    def native(self) -> bool:
        """True when decisions go through the native engine (JSON outputs, or Avro ones in
        our schemas with their ids known)."""
        return self._native is not None

    def apply_consent(self, records: Iterable[tuple],
                      store: MutableMapping[str, tuple] | None = None) -> BatchResult:
        """``Filter.apply_consent``; a tombstone also drops the native caches of its subject."""
        recs = records if type(records) is list else list(records)
        res = self._py.apply_consent(recs, store)
        nat = self._native
        if nat is not None:
            for rec in recs:
                if rec[4] is None and type(rec[3]) is bytes:
                    nat.forget(rec[3])
        return res

    def decide(self, records: Iterable[tuple]) -> BatchResult:
        """``Filter.decide``, natively where the native engine is sure (see the module doc)."""
        nat = self._native
        if nat is None:
            return self._py.decide(records)
        recs = records if type(records) is list else list(records)
        py = self._py
        res = BatchResult(emitted={name: 0 for name in self._names})
        out = res.records
        clock = None if py.clock is _batch._now_ms else py.clock
        n = len(recs)
        i = 0
        native_topics = self._native_topics
        seal = self._seal
        while True:
            i = nat.decide(recs, i, out, py.store, clock, seal)
            self._take_counts(res)
            if i >= n:
                if seal is not None and py._sealer.new:
                    py._add_keys(res)  # the data keys the native seals created since the last run
                if res.keys:
                    # the Python engine puts a call's new data keys after its outputs: so here
                    # (the fallbacks of this call appended theirs run by run)
                    kt = py.topics.keys
                    out[:] = [r for r in out if r[0] != kt] + [r for r in out if r[0] == kt]
                return res
            # records of topics the native side does not decode (Avro) go to Python a run
            # at a time; any other record it was not sure about, alone
            j = i + 1
            if recs[i][0] not in native_topics:
                while j < n and recs[j][0] not in native_topics:
                    j += 1
            self.fallbacks += j - i
            _merge(res, py.decide(recs[i:j]))
            i = j

    def _take_counts(self, res: BatchResult) -> None:
        decided, emitted, dropped = self._native.take_counts()
        if not decided:
            return
        res.decided += decided
        em = res.emitted
        for name, c in zip(self._names, emitted):
            em[name] += c
        dr = res.dropped
        for idx, c in dropped:
            r = REASONS[idx]
            dr[r] = dr.get(r, 0) + c


def _merge(res: BatchResult, sub: BatchResult) -> None:
    """Add one call's result to another, counters keyed in first-occurrence order."""
    res.records.extend(sub.records)
    for k, v in sub.emitted.items():
        res.emitted[k] = res.emitted.get(k, 0) + v
    for k, v in sub.dropped.items():
        res.dropped[k] = res.dropped.get(k, 0) + v
    for k, v in sub.ignored.items():
        res.ignored[k] = res.ignored.get(k, 0) + v
    res.keys.extend(sub.keys)
    res.shredded += sub.shredded
    res.dlq += sub.dlq
    res.decided += sub.decided
    res.consent += sub.consent
    res.erasures += sub.erasures


def filter_class(choice: str) -> type:
    """``Filter`` or ``NativeFilter`` for a ``PFILTER_ENGINE`` value (see ``resolve``)."""
    return NativeFilter if resolve(choice) == "native" else Filter
