"""`pfilter verify`: replay everything and check the guarantees independently.

Reads the inputs (events, consent), every engine's output, the decision log,
the erasure notices and the DLQ, and checks with ``streams.engine.reference``
(a separate, deliberately simple implementation of the rule) that:

- G1: every emitted record matches an ``emitted`` decision, and the rule,
  evaluated on the consent version the decision names at the decision's
  ``decided_at``, permits that event for that engine with exactly those
  fields (a field the rule forbids, an altered value, or an output nobody
  decided is a violation);
- the rule gives every ``dropped`` decision the same first failing reason
  (``objected``, the basis check and drops narrowed by consent signals included:
  the reference reads a record's bases, objections and TCF / GPP / Consent Mode
  signals with its own decoders, ``engine/reference_decoders.py``, never the
  engine's; a record whose signals they cannot read must be in the DLQ);
- every decision record has the form of CONTRACT §7 (``decisions.record_problems``:
  one entry per engine in policy order, or a shared reason and no entries, or a
  ``dlq`` record without entries);
- G3: every input record has exactly one decision record, holding one outcome
  per engine (or one ``dlq`` record and a DLQ entry); at-least-once duplicates
  (more than one record for an input) are counted, and are violations only
  with ``--exactly-once``. Without it,
  an ``emitted`` decision whose output is missing is accepted only when the
  same input was decided again for that engine later (the at-least-once
  workers write decisions before outputs, so a crash between the two leaves
  exactly that); the last decision of every input must be complete;
- G4: every tombstone produced an erasure notice for every engine, keyed by
  that engine's subject reference;
- encrypted fields (CONTRACT §10): with the KEK (``PFILTER_KEK``/``_FILE``),
  every key record of ``personalization.keys`` is unwrapped (tombstones do not
  hide the versions the log still holds) and each envelope is decrypted and
  compared with the value the rule permits; a key no longer in the log (compacted
  after a shred) and every envelope without the KEK get the shape check (an
  envelope, of the permitted value's length). Counted in ``encrypted``.

The report names records by topic/partition/offset and fields by path, never
by value (G6).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any


from streams.config import Settings
from streams.engine.decisions import engine_views, record_problems
from streams.engine import reference
from streams.engine.codecs import DecodeError, get_codec
from streams.engine.policy import read_policy_file
from streams.kafka.replay import replay
from streams.wiring import kek as load_kek
from streams.wiring import load_policy, pseudonym_secret

#: Violations listed in full; beyond this only counted (a broken run could list millions).
MAX_LISTED = 50


@dataclass
class VerifyResult:
    inputs: Counter = field(default_factory=Counter)          # topic -> records
    outcomes: Counter = field(default_factory=Counter)        # (engine, outcome, reason) -> n
    outputs: Counter = field(default_factory=Counter)         # engine -> records
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    mismatches: int = 0            # dropped with another reason than the rule's
    unaccounted: int = 0           # inputs with a missing outcome
    duplicates: int = 0            # inputs' decision records beyond the first (at-least-once redelivery)
    redone: int = 0                # emitted decisions whose output a crash cut off, decided again later
    unverifiable: int = 0          # consent version no longer in the (compacted) log
    erasures_expected: int = 0
    erasures_found: int = 0
    #: encrypted fields: "decrypted" (plaintext checked) / "shape_only" (no KEK, or key gone)
    encrypted: Counter = field(default_factory=Counter)
    decision_records: int = 0      # records in the decision log (one per input, CONTRACT §7)
    notices_checked: int = 0       # consent notices justified by their consent version (§9)
    notice_duplicates: int = 0     # a grant's notice of one kind seen again (violations with --exactly-once)
    notices_unverifiable: int = 0  # consent version no longer in the (compacted) log
    exactly_once: bool = False

    def violate(self, msg: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_LISTED:
            self.violations.append(msg)

    @property
    def ok(self) -> bool:
        return (self.violation_count == 0 and self.unaccounted == 0 and self.mismatches == 0
                and self.erasures_found >= self.erasures_expected
                and (not self.exactly_once or self.duplicates == 0))


def _where(topic: str, partition: int, offset: int) -> str:
    return f"{topic}[{partition}]@{offset}"


def run_verify(settings: Settings, *, exactly_once: bool = False) -> VerifyResult:
    policy = load_policy(settings)
    doc = read_policy_file(settings.policy_file)
    secret = pseudonym_secret(settings)
    bootstrap = settings  # replay() takes the settings: brokers and security settings
    res = VerifyResult(exactly_once=exactly_once)
    fmt_out = settings.format_output
    reg = settings.schema_registry_url  # Avro ids written by the worker and producers live there
    dec_codec = get_codec("decision_record", fmt_out, registry_url=reg)
    out_codec = get_codec("filtered_event", fmt_out, registry_url=reg)
    era_codec = get_codec("erasure_notice", fmt_out, registry_url=reg)
    engines = [e.name for e in policy.engines]
    topic_engine = {e.topic: e.name for e in policy.engines}
    keys = _key_lookup(settings, res, exactly_once) if policy.encrypts else None

    # ---- consent: every version of every subject, malformed ones, tombstones
    consent_codec = get_codec("consent_record", settings.format_consent, registry_url=reg)
    versions: dict[str, dict[int, dict]] = defaultdict(dict)
    tombstones: list[tuple[str, int, int]] = []
    bad_consent: set[tuple[str, int, int]] = set()
    #: subjects with a malformed consent record: it blocks them (fail closed), so their grants
    #: leave the state and a grant held again afterwards is notified again (CONTRACT §9)
    blocked: set[str] = set()
    for topic, p, off, key, value, _h, _ts in replay(bootstrap, [settings.topic_consent], read_committed=exactly_once):
        res.inputs[topic] += 1
        if value is None:
            if key is not None:
                try:
                    tombstones.append((key.decode(), p, off))
                except UnicodeDecodeError:
                    bad_consent.add((topic, p, off))
            continue
        try:
            rec = consent_codec.decode(value)
            subject = key.decode() if key is not None else None
            if rec.get("subject_id") != subject:
                raise ValueError("key mismatch")
            # decoded by the codec, but a signal the reference's own decoders cannot read
            # (or bad objections) makes it malformed too: DLQ, subject blocked (CONTRACT §3)
            if reference.consent_problem(rec) is not None:
                raise ValueError("malformed by the rule")
        except (DecodeError, ValueError, UnicodeDecodeError, AttributeError):
            bad_consent.add((topic, p, off))
            try:
                if key is not None:
                    blocked.add(key.decode())
            except UnicodeDecodeError:
                pass
            continue
        versions[rec["subject_id"]][rec["updated_at"]] = rec

    # ---- decision records (one per input, CONTRACT §7), indexed by the input they are about
    decisions: dict[tuple[str, int, int], list[dict]] = defaultdict(list)
    for *_x, value, _h, _ts in replay(bootstrap, [settings.topic_decisions], read_committed=exactly_once):
        d = dec_codec.decode(value)
        res.decision_records += 1
        decisions[(d["source_topic"], d["source_partition"], d["source_offset"])].append(d)

    # ---- DLQ entries, by source coordinates
    dlq: Counter = Counter()
    for _t, _p, _o, _k, _v, headers, _ts in replay(bootstrap, [settings.topic_dlq], read_committed=exactly_once):
        h = {k: v for k, v in (headers or [])}
        try:
            src = (h["source.topic"].decode(), int(h["source.partition"]), int(h["source.offset"]))
        except (KeyError, ValueError):
            res.violate("a DLQ record lacks its source.* headers")
            continue
        dlq[src] += 1

    # ---- outputs, by (engine, event_id)
    outputs: dict[tuple[str, str], list[tuple[dict, str]]] = defaultdict(list)
    for topic, p, off, _k, value, _h, _ts in replay(bootstrap, list(topic_engine), read_committed=exactly_once):
        engine = topic_engine[topic]
        res.outputs[engine] += 1
        try:
            rec = out_codec.decode(value)
        except DecodeError:
            res.violate(f"{_where(topic, p, off)}: output record does not decode")
            continue
        outputs[(engine, str(rec.get("event_id")))].append((rec, _where(topic, p, off)))

    # ---- events
    codecs = {
        settings.topic_clickstream: get_codec("click_event", settings.format_clickstream, registry_url=reg),
        settings.topic_purchases: get_codec("purchase_event", settings.format_purchases, registry_url=reg),
    }
    matched_outputs: set[tuple[str, str]] = set()
    for topic, p, off, key, value, _h, _ts in replay(
        bootstrap, [settings.topic_clickstream, settings.topic_purchases], read_committed=exactly_once
    ):
        res.inputs[topic] += 1
        where = _where(topic, p, off)
        ds = decisions.get((topic, p, off), [])
        try:
            event = codecs[topic].decode(value) if value is not None else None
        except DecodeError:
            event = None
        for d in ds:
            for problem in record_problems(d, engines):
                res.violate(f"{where}: decision record: {problem}")
        dl = [d for d in ds if d["outcome"] == "dlq"]
        decided = [d for d in ds if d["outcome"] != "dlq"]
        if dl:  # DLQ'd input
            res.outcomes[(None, "dlq", dl[0]["reason"])] += 1
            res.duplicates += len(dl) - 1
            if dlq[(topic, p, off)] == 0:
                res.unaccounted += 1
                res.violate(f"{where}: dlq decision but no DLQ record")
            if decided:
                res.violate(f"{where}: both a dlq decision and engine decisions")
            continue
        # exactly once: one decision record per input; at least once may decide an input again
        res.duplicates += max(0, len(decided) - 1)
        by_engine: dict[Any, list[dict]] = defaultdict(list)
        for d in decided:
            for view in engine_views(d, engines):
                by_engine[view["engine"]].append(view)
        if event is None:
            res.unaccounted += 1
            res.violate(f"{where}: input does not decode and has no dlq decision")
            continue
        for engine in engines:
            got = by_engine.get(engine)
            if not got:
                res.unaccounted += 1
                res.violate(f"{where}: no decision for engine {engine!r}")
                continue
            # at-least-once reprocessing may decide again later (under a newer consent):
            # each decision must be right on its own
            for d in got:
                _check_decision(res, d, event, versions, engine, doc, secret, outputs, matched_outputs, where, got,
                                keys)

    # ---- outputs that no emitted decision accounts for
    for (engine, event_id), recs in outputs.items():
        for rec, where in recs:
            if (engine, event_id, rec.get("consent_version")) not in matched_outputs:
                res.violate(f"{where}: output record for engine {engine!r} has no emitted decision")

    # ---- consent DLQ and erasures
    for src in bad_consent:
        ds = decisions.get(src, [])
        if not any(d["outcome"] == "dlq" for d in ds) or dlq[src] == 0:
            res.unaccounted += 1
            res.violate(f"{_where(*src)}: malformed consent record not in the DLQ")
        else:
            res.outcomes[(None, "dlq", ds[0]["reason"])] += 1
    notices: Counter = Counter()
    for *_x, value, _h, _ts in replay(bootstrap, [settings.topic_erasures], read_committed=exactly_once):
        n = era_codec.decode(value)
        notices[(n["engine"], n["subject_id"])] += 1
    for subject, p, off in tombstones:
        for e in policy.engines:
            res.erasures_expected += 1
            if notices[(e.name, e.subject_ref(subject))]:
                res.erasures_found += 1
            else:
                res.violate(f"{_where(settings.topic_consent, p, off)}: tombstone without erasure notice for {e.name!r}")
    _check_notices(res, settings, versions, {t[0] for t in tombstones} | blocked, doc, exactly_once)
    return res


def _check_notices(res: VerifyResult, settings: Settings, versions: dict, erased: set[str], doc: dict,
                   exactly_once: bool) -> None:
    """CONTRACT §9: every consent notice is justified by the consent version it names
    (``reference.notice_problem``), and no grant's notice of one kind appears twice,
    unless the grant left the subject's state in between (a consent version between
    the two that does not hold it, an erasure, or a malformed record that blocked the
    subject): then it is a new grant."""
    codec = get_codec("consent_notice", settings.format_output, registry_url=settings.schema_registry_url)
    seen: dict[tuple, int] = {}
    for topic, p, off, _k, value, _h, _ts in replay(settings, [settings.topic_notices], read_committed=exactly_once):
        where = _where(topic, p, off)
        try:
            n = codec.decode(value)
        except DecodeError:
            res.violate(f"{where}: consent notice does not decode")
            continue
        subject, version = n["subject_id"], n["consent_version"]
        rec = versions.get(subject, {}).get(version)
        if rec is None:
            res.notices_unverifiable += 1
        else:
            problem = reference.notice_problem(n, rec, doc)
            if problem is not None:
                res.violate(f"{where}: consent notice not justified: {problem}")
                continue
        res.notices_checked += 1
        key = (subject, n["purpose"], n["expires_at"], n["kind"])
        first = seen.get(key)
        seen[key] = version
        if first is None:
            continue
        lo, hi = min(first, version), max(first, version)
        left = subject in erased or any(
            lo < u <= hi and reference.notice_problem(dict(n, sent_at=n["expires_at"]), r, doc) is not None
            for u, r in versions.get(subject, {}).items())
        if not left:
            res.notice_duplicates += 1
            if exactly_once:
                res.violate(f"{where}: consent notice duplicated (kind {n['kind']!r}, the same grant)")


def _check_decision(res: VerifyResult, d: dict, event: dict, versions: dict, engine: str, doc: dict,
                    secret: bytes | None, outputs: dict, matched: set, where: str,
                    others: list[dict] = (),  # type: ignore[assignment]
                    keys: reference.KeyLookup | None = None) -> None:
    """One engine's decision about an input (a view of its decision record,
    ``decisions.engine_views``). ``others``: every such decision about the same input
    and engine (``d`` among them)."""
    outcome, reason = d["outcome"], d["reason"]
    res.outcomes[(engine, outcome, reason)] += 1
    subject = event.get("subject_id")
    consent = None
    if d["consent_version"] is not None:
        consent = versions.get(subject, {}).get(d["consent_version"])
        if consent is None:
            res.unverifiable += 1
            if outcome == "emitted":
                res.violate(f"{where}: emitted to {engine!r} under a consent version not in the consent log")
            return
    want, what = reference.expected(event, consent, engine, doc, d["decided_at"], secret)
    key = (engine, str(event["event_id"]))
    if outcome == "emitted":
        if want != "emitted":
            res.violate(f"{where}: emitted to {engine!r} but the rule says dropped ({what})")
        # at-least-once may decide an event again under a newer consent: pair outputs by version
        recs = [r for r in outputs.get(key, []) if r[0].get("consent_version") == d["consent_version"]]
        if not recs:
            if not res.exactly_once and any(o["decided_at"] > d["decided_at"] for o in others):
                # at least once: the worker stopped between writing this decision and its
                # output (decisions go first), so the input was decided again later
                res.redone += 1
                return
            res.unaccounted += 1
            res.violate(f"{where}: emitted decision for {engine!r} but no output record")
            return
        matched.add((*key, d["consent_version"]))
        for rec, out_where in recs:
            clean = _strip_none(rec)
            problems = reference.violations(clean, event, consent, engine, doc, d["decided_at"], secret, keys)
            for prob in problems:
                res.violate(f"{out_where}: {prob}")
    elif outcome == "dropped":
        if want == "emitted":
            res.mismatches += 1
            res.violate(f"{where}: dropped for {engine!r} ({reason}) but the rule says emit")
        elif what != reason:
            res.mismatches += 1
            res.violate(f"{where}: dropped for {engine!r} as {reason!r}, the rule says {what!r}")
        if any(r[0].get("consent_version") == d["consent_version"] for r in outputs.get(key, [])):
            res.violate(f"{where}: dropped for {engine!r} but an output record under the same consent exists")
    else:
        res.violate(f"{where}: unknown outcome for {engine!r}")


def _key_lookup(settings: Settings, res: VerifyResult, exactly_once: bool) -> reference.KeyLookup:
    """The reference's key lookup: every data key version in ``personalization.keys``,
    unwrapped with the KEK; without a KEK (or for a version no longer in the log) the
    shape check. Counts what it answered in ``res.encrypted``."""
    from streams.crypto import CryptoError, KeyRecordError, parse_key_record

    kek = load_kek(settings)
    raw: dict[tuple[str, int], bytes] = {}
    if kek is not None:
        for _t, p, off, key, value, _h, _ts in replay(settings, [settings.topic_keys], read_committed=exactly_once):
            if value is None or key is None:
                continue  # a shred: versions before it stay known to the auditor while the log holds them
            try:
                subject = key.decode()
                rec = parse_key_record(value)
                if rec.subject_id != subject:
                    raise KeyRecordError("subject_id differs from the key")
                raw[(subject, rec.key_version)] = kek.unwrap(subject, rec.key_version, rec.wrapped_key)
            except (UnicodeDecodeError, KeyRecordError, CryptoError) as exc:
                res.violate(f"{_where(settings.topic_keys, p, off)}: unusable key record ({type(exc).__name__})")

    def lookup(subject: str, version: int) -> bytes:
        k = raw.get((subject, version))
        if k is None:
            res.encrypted["shape_only"] += 1
            return reference.SHAPE_ONLY
        res.encrypted["decrypted"] += 1
        return k

    return lookup


def _strip_none(value: Any) -> Any:
    """Avro gives absent optional fields as None; the rule leaves them out."""
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    return value


def render_report(res: VerifyResult) -> str:
    lines = ["verify: " + ("PASS" if res.ok else "FAIL")]
    lines.append("inputs: " + ", ".join(f"{t}={n:,}" for t, n in sorted(res.inputs.items())))
    lines.append("outputs: " + ", ".join(f"{e}={n:,}" for e, n in sorted(res.outputs.items())))
    lines.append(f"decision records: {res.decision_records:,} for {sum(res.inputs.values()):,} input records "
                 f"(one per event, one per DLQ entry; valid consent records have none)")
    lines.append("outcomes (engine, outcome, reason):")
    for (engine, outcome, reason), n in sorted(res.outcomes.items(), key=lambda x: (str(x[0][0]), x[0][1], str(x[0][2]))):
        lines.append(f"  {engine or '-':12} {outcome:8} {reason or '':18} {n:>10,}")
    lines.append(f"violations: {res.violation_count}   reason mismatches: {res.mismatches}   "
                 f"inputs without an outcome: {res.unaccounted}")
    lines.append(f"duplicates (at-least-once redelivery): {res.duplicates}   "
                 f"emitted decisions cut off by a crash and decided again: {res.redone}   "
                 f"decisions under a compacted-away consent version: {res.unverifiable}")
    lines.append(f"erasure notices: {res.erasures_found}/{res.erasures_expected}")
    if res.encrypted:
        lines.append(f"encrypted fields: {res.encrypted['decrypted']:,} decrypted and checked against the rule, "
                     f"{res.encrypted['shape_only']:,} checked by shape only (no KEK, or key no longer in the log)")
    lines.append(f"consent notices: {res.notices_checked} justified, {res.notice_duplicates} duplicated, "
                 f"{res.notices_unverifiable} under a compacted-away consent version")
    for v in res.violations:
        lines.append(f"  ! {v}")
    if res.violation_count > len(res.violations):
        lines.append(f"  … and {res.violation_count - len(res.violations)} more")
    return "\n".join(lines)


def as_json(res: VerifyResult) -> dict:
    return {
        "ok": res.ok,
        "inputs": dict(res.inputs),
        "outputs": dict(res.outputs),
        "outcomes": [{"engine": e, "outcome": o, "reason": r, "count": n} for (e, o, r), n in res.outcomes.items()],
        "violations": res.violation_count,
        "violation_examples": res.violations,
        "mismatches": res.mismatches,
        "unaccounted": res.unaccounted,
        "duplicates": res.duplicates,
        "redone": res.redone,
        "unverifiable": res.unverifiable,
        "erasures_expected": res.erasures_expected,
        "erasures_found": res.erasures_found,
        "decision_records": res.decision_records,
        "encrypted": dict(res.encrypted),
        "notices_checked": res.notices_checked,
        "notice_duplicates": res.notice_duplicates,
        "notices_unverifiable": res.notices_unverifiable,
    }
