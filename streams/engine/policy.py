"""Policy file (TOML) -> CompiledPolicy: bitmasks and per-event-type field plans.

The file is validated completely before anything runs; every problem raises
``PolicyError`` naming the offender (the unknown category, field, purpose or
transform, the duplicated engine, the engine allowed ``payment``, the missing
pseudonym secret and the setting that provides it). The format is documented in
README.md ("Policy file").

Compiled form (built once, read on every event):
- per engine: purpose bitmask and purpose indices it needs, category bitmask it
  may receive, jurisdiction frozenset (None = any), third-party flag, a keyed
  HMAC for pseudonyms;
- per (engine, event_type): a field plan, the whitelist of
  ``(path, category bit, transform, shape)`` the projection walks. Output is
  built from these paths only; a field in no category is never emitted, and
  the fields of the ``payment`` category never are.

Size (a little over 500 lines): parsing and compiling are kept together on purpose, so
that every check that stops a bad policy at start-up sits next to the compiled form it
protects; the consent rules and signals mapping are already in ``consent_rules``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from streams.errors import PFilterError
from streams.engine.consent import Vocabulary
from streams.engine.consent_rules import PURPOSE_RULES_KEY, ConsentRules, RulesError, compile_rules
from streams.engine.shapes import (  # noqa: F401 - CONTEXT_SHAPE, EVENT_PAYLOADS: re-exported
    CONTEXT_SHAPE, EVENT_PAYLOADS, KNOWN_FIELDS, PATHS_BY_TYPE, TEXT_FIELDS, compile_shape,
)
from streams.engine.vocab import (
    ENVELOPE, T_COUNTRY, T_DROP, T_ENCRYPT, T_HOUR, T_KEEP, T_PSEUDONYMIZE, TRANSFORMS,
)

#: The shipped default policy (CONTRACT §8).
DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "policy" / "default.toml"

# ------------------------------------------------------------- event vocabulary (CONTRACT §3)
# ENVELOPE, the transform codes and TRANSFORMS live in streams.engine.vocab, the field shapes
# and paths in streams.engine.shapes (all importable from here too).

#: Fields that are payment data whatever category a policy puts them in.
PAYMENT_FIELDS = frozenset({"payment_method"})
PAYMENT_CATEGORY = "payment"
THIRD_PARTY_PURPOSE = "third_party_sharing"

#: Where the coarsening transforms make sense: records with a ``country``.
_COUNTRY_FIELDS = frozenset({"context.geo", "shipping_address"})
_HOUR_FIELDS = frozenset({"ts"})

#: Pseudonyms: hex digest of HMAC-SHA256, truncated to this many hex chars (128 bits).
PSEUDONYM_HEX_CHARS = 32


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_TOP_KEYS = {"version", "description", "purposes", "categories", "engines", "notice_before", PURPOSE_RULES_KEY,
             "signals"}
_ENGINE_KEYS = {"name", "description", "topic", "party", "needs", "may_receive", "jurisdictions",
                "subject", "transforms"}


class PolicyError(PFilterError, ValueError):
    """The policy cannot be used; the message names what is wrong."""


_copiers: dict[int, Any] = {}


def _copier(shape: Any) -> Any:
    """The compiled copier of a shape (shapes.compile_shape), one per shape object."""
    if shape is None:
        return None
    c = _copiers.get(id(shape))
    if c is None or c[0] is not shape:
        c = _copiers[id(shape)] = (shape, compile_shape(shape))
    return c[1]


# ------------------------------------------------------------- compiled objects
class PlanEntry(NamedTuple):
    """One field of an engine's field plan (``CompiledEngine.plans``, ``mask_plan``).

    ``head``/``rest``: the keys to read the value from the event; ``parents``/``leaf``:
    where to put it in the output (the same path: input nesting is kept). In ``plans``
    ``copy`` is the field's shape; in a ``mask_plan`` it is the shape's compiled copier
    (None for a scalar). A NamedTuple so the projection can unpack it as fast as a tuple."""

    head: str
    rest: tuple[str, ...]
    parents: tuple[str, ...]
    leaf: str
    dotted: str
    bit: int
    code: int
    copy: Any


class CompiledEngine:
    """One engine of a compiled policy. Read-only after compilation."""

    __slots__ = (
        "name", "topic", "party", "third_party", "needs", "needs_mask", "needs_idx", "relied_on",
        "categories", "categories_mask", "jurisdictions", "pseudonymize_subject", "transforms",
        "plans", "default_plan", "ts_hour", "tps_bit", "policy_version", "_mac", "_sent_names",
        "_category_names", "field_categories", "vocab_fp", "_mask_plans", "_type_plans", "encrypted",
        "gate_bit",
    )

    def __repr__(self) -> str:  # never shows the key
        return f"CompiledEngine({self.name!r}, topic={self.topic!r}, party={self.party!r})"

    def pseudonym(self, subject: str) -> str:
        """Keyed pseudonym of a subject id: HMAC-SHA256(engine key, UTF-8 id), 32 hex chars."""
        h = self._mac.copy()
        h.update(subject.encode("utf-8", "surrogatepass"))
        return h.hexdigest()[:PSEUDONYM_HEX_CHARS]

    def pseudonymize_value(self, path: str, value: bytes) -> str:
        """Keyed pseudonym of a field value: HMAC(engine key, b"field:" + path + b"\\0" + value)."""
        h = self._mac.copy()
        h.update(b"field:" + path.encode() + b"\0" + value)
        return h.hexdigest()[:PSEUDONYM_HEX_CHARS]

    def subject_ref(self, subject: str) -> str:
        """What this engine knows the subject as: the id, or its pseudonym."""
        return self.pseudonym(subject) if self.pseudonymize_subject else subject

    def mask_plan(self, event_type: Any, allowed: int) -> tuple:
        """The field plan of an event type restricted to the categories in ``allowed``
        (entries in plan order; cached per (event type, mask))."""
        k = (event_type, allowed)
        plan = self._mask_plans.get(k)
        if plan is None:
            full = self.plans.get(event_type) if type(event_type) is str else None
            if full is None:
                full = self.default_plan
            # entries as in ``plans``, the shape replaced by its compiled copier
            plan = tuple(entry._replace(copy=_copier(entry.copy)) for entry in full if allowed & entry.bit)
            if len(self._mask_plans) < 4096:  # event types come from validated input: few
                self._mask_plans[k] = plan
        return plan

    def type_plans(self, allowed: int) -> dict[str, tuple]:
        """``{event_type: mask_plan(event_type, allowed)}`` for every known event type
        (cached per mask; one shared dict)."""
        plans = self._type_plans.get(allowed)
        if plans is None:
            plans = {t: self.mask_plan(t, allowed) for t in self.plans}
            if len(self._type_plans) < 4096:
                self._type_plans[allowed] = plans
        return plans

    def category_names(self, mask: int) -> list[str]:
        """Names of the categories in a bitmask, in policy order (cached per mask)."""
        names = self._sent_names.get(mask)
        if names is None:
            names = tuple(c for i, c in enumerate(self._category_names) if mask >> i & 1)
            self._sent_names[mask] = names
        return list(names)


class CompiledPolicy:
    __slots__ = ("version", "purposes", "categories", "vocab", "engines", "by_name", "source", "document",
                 "category_fields", "notice_before_ms")

    @property
    def rules(self) -> ConsentRules:
        """Legal bases, objection classes, the signals mapping and engine gates (CONTRACT §4)."""
        return self.vocab.rules

    def __repr__(self) -> str:
        return f"CompiledPolicy(version={self.version!r}, engines={[e.name for e in self.engines]!r})"

    def engine(self, name: str) -> CompiledEngine:
        return self.by_name[name]

    @property
    def pseudonymizes(self) -> bool:
        return any(e.pseudonymize_subject or T_PSEUDONYMIZE in e.transforms.values() for e in self.engines)

    @property
    def encrypts(self) -> bool:
        """True when some engine has an ``encrypt`` transform: the worker needs a KEK and
        produces data keys to ``personalization.keys`` (CONTRACT §10)."""
        return any(e.encrypted for e in self.engines)


# ------------------------------------------------------------- loading
def read_policy_file(path: str | Path | None = None) -> dict[str, Any]:
    """The parsed TOML document (no validation). None: the shipped default."""
    p = Path(path) if path is not None else DEFAULT_POLICY_PATH
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise PolicyError(f"policy file {p} does not exist") from None
    except OSError as exc:
        raise PolicyError(f"policy file {p}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {p} is not valid TOML: {exc}") from None


def load_policy(
    path: str | Path | None = None,
    *,
    secret: bytes | None,
    topic_prefix: str = "personalization.",
) -> CompiledPolicy:
    """Read, validate and compile a policy file (None: the shipped default).

    ``secret`` is the pseudonym secret (PFILTER_PSEUDONYM_KEY /
    PFILTER_PSEUDONYM_KEY_FILE); required when the policy pseudonymizes.
    ``topic_prefix`` names the output topic of engines that give no ``topic``.
    """
    p = Path(path) if path is not None else DEFAULT_POLICY_PATH
    doc = read_policy_file(p)
    try:
        return compile_policy(doc, secret=secret, topic_prefix=topic_prefix, source=str(p))
    except PolicyError as exc:
        raise PolicyError(f"policy file {p}: {exc}") from None


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where} must be a list of non-empty strings")
    return value


def _no_dupes(items: list[str], where: str) -> None:
    seen: set[str] = set()
    for it in items:
        if it in seen:
            raise PolicyError(f"{where}: {it!r} is listed twice")
        seen.add(it)


def _unknown_keys(table: Mapping[str, Any], known: set[str], where: str) -> None:
    for k in table:
        if k not in known:
            raise PolicyError(f"{where}: unknown key {k!r} (known: {', '.join(sorted(known))})")


def engine_key(secret: bytes, engine: str) -> bytes:
    """Per-engine pseudonym key: HMAC-SHA256(secret, b"pfilter/" + engine name)."""
    return hmac.new(secret, b"pfilter/" + engine.encode(), hashlib.sha256).digest()


def compile_policy(
    doc: Mapping[str, Any],
    *,
    secret: bytes | None,
    topic_prefix: str = "personalization.",
    source: str | None = None,
) -> CompiledPolicy:
    """Validate and compile a parsed policy document (see ``load_policy``)."""
    if not isinstance(doc, Mapping):
        raise PolicyError("the policy must be a table")
    if isinstance(secret, str):
        secret = secret.encode()
    _unknown_keys(doc, _TOP_KEYS, "policy")

    version = doc.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PolicyError("'version' must be a non-empty string")

    # purposes
    if "purposes" not in doc:
        raise PolicyError("'purposes' is missing")
    purposes = _str_list(doc["purposes"], "'purposes'")
    _no_dupes(purposes, "'purposes'")
    if not purposes:
        raise PolicyError("'purposes' is empty")
    if len(purposes) > 64:
        raise PolicyError(f"at most 64 purposes are supported, the policy has {len(purposes)}")

    # categories
    cats = doc.get("categories")
    if not isinstance(cats, Mapping) or not cats:
        raise PolicyError("'categories' must be a table of category = [field paths]")
    if len(cats) > 64:
        raise PolicyError(f"at most 64 categories are supported, the policy has {len(cats)}")
    category_names = list(cats)
    field_category: dict[str, str] = {}
    for cname, fields in cats.items():
        if not _NAME.match(cname):
            raise PolicyError(f"category name {cname!r} is not a plain name")
        fields = _str_list(fields, f"category {cname!r}")
        for f in fields:
            if f in ENVELOPE:
                raise PolicyError(
                    f"category {cname!r}: field {f!r} is part of the envelope and cannot be in a category "
                    "(event_id, subject_id, event_type and ts are always sent; anonymous_id never is)")
            if f not in KNOWN_FIELDS:
                raise PolicyError(f"category {cname!r}: unknown field {f!r} (known fields: "
                                  f"{', '.join(sorted(KNOWN_FIELDS))})")
            if f in field_category:
                other = field_category[f]
                where = "twice" if other == cname else f"in both {other!r} and {cname!r}"
                raise PolicyError(f"field {f!r} is listed {where}")
            for g, gc in field_category.items():
                if f.startswith(g + ".") or g.startswith(f + "."):
                    raise PolicyError(f"category {cname!r}: field {f!r} overlaps {g!r} of category {gc!r}; "
                                      "a field and its parts must be in one category, listed once")
            if f in PAYMENT_FIELDS and cname != PAYMENT_CATEGORY:
                raise PolicyError(f"category {cname!r}: field {f!r} is payment data; it may only be in "
                                  f"category {PAYMENT_CATEGORY!r}, which is never emitted")
            field_category[f] = cname

    vocab = Vocabulary(purposes, category_names)
    cbit = {c: 1 << i for i, c in enumerate(category_names)}

    # engines
    engines_doc = doc.get("engines")
    if not isinstance(engines_doc, list) or not engines_doc:
        raise PolicyError("'engines' must be a non-empty array of tables ([[engines]])")
    engines: list[CompiledEngine] = []
    by_name: dict[str, CompiledEngine] = {}
    topics: dict[str, str] = {}
    for n, ed in enumerate(engines_doc, 1):
        if not isinstance(ed, Mapping):
            raise PolicyError(f"engine #{n} is not a table")
        name = ed.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise PolicyError(f"engine #{n}: 'name' must be a plain name (letters, digits, _ . -)")
        where = f"engine {name!r}"
        if name in by_name:
            raise PolicyError(f"engine name {name!r} is duplicated")
        _unknown_keys(ed, _ENGINE_KEYS, where)
        e = _compile_engine(ed, name, where, version, vocab, cbit, field_category, secret, topic_prefix)
        if e.topic in topics:
            raise PolicyError(f"{where}: topic {e.topic!r} is already the topic of engine {topics[e.topic]!r}")
        topics[e.topic] = name
        engines.append(e)
        by_name[name] = e

    # consent rules (bases, objections, [signals]): they shape the compiled states, so they
    # are part of the vocabulary and its fingerprint (consent_rules module doc)
    try:
        rules = compile_rules(doc, purposes, category_names, [e.name for e in engines])
    except RulesError as exc:
        raise PolicyError(str(exc)) from None
    vocab = Vocabulary(purposes, category_names, rules)
    for e in engines:
        e.vocab_fp = vocab.fingerprint
        e.gate_bit = rules.engine_bit(e.name)

    cp = CompiledPolicy()
    cp.version = version
    cp.purposes = tuple(purposes)
    cp.categories = tuple(category_names)
    cp.vocab = vocab
    cp.engines = tuple(engines)
    cp.by_name = by_name
    cp.source = source
    cp.document = doc
    cp.category_fields = {c: tuple(cats[c]) for c in category_names}
    cp.notice_before_ms = parse_notice_before(doc.get("notice_before", DEFAULT_NOTICE_BEFORE))
    return cp


#: ``notice_before`` of a policy that names none (CONTRACT §8: 30 days before a grant expires).
DEFAULT_NOTICE_BEFORE = "30d"
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_notice_before(value: Any) -> int:
    """``notice_before`` (e.g. ``"30d"``, ``"12h"``, ``"90s"``, ``"500ms"``) in ms.

    How long before a grant's ``expires_at`` its re-confirmation notice goes out (CONTRACT §9).
    Positive: a notice at or after the expiry itself would be the ``expired`` one."""
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise PolicyError(f"'notice_before' must be a duration such as \"30d\", \"12h\", \"90s\" or \"500ms\" "
                          f"(units ms, s, m, h, d), not {value!r}")
    ms = int(m.group(1)) * _UNIT_MS[m.group(2)]
    if ms <= 0:
        raise PolicyError("'notice_before' must be longer than 0")
    if ms > 3650 * 86_400_000:
        raise PolicyError("'notice_before' is longer than ten years")
    return ms


def _compile_engine(
    ed: Mapping[str, Any], name: str, where: str, version: str, vocab: Vocabulary,
    cbit: dict[str, int], field_category: dict[str, str], secret: bytes | None, topic_prefix: str,
) -> CompiledEngine:
    e = CompiledEngine()
    e.name = name
    e.policy_version = version
    e.vocab_fp = vocab.fingerprint
    topic = ed.get("topic", topic_prefix + name)
    if not isinstance(topic, str) or not topic or not _NAME.match(topic):
        raise PolicyError(f"{where}: 'topic' must be a topic name")
    e.topic = topic

    party = ed.get("party")
    if party not in ("first", "third"):
        raise PolicyError(f"{where}: 'party' must be \"first\" or \"third\"")
    e.party = party
    e.third_party = party == "third"

    if "needs" not in ed:
        raise PolicyError(f"{where}: 'needs' is missing (the purposes it needs, all required)")
    needs = _str_list(ed["needs"], f"{where}: 'needs'")
    if not needs:
        raise PolicyError(f"{where}: 'needs' is empty; an engine needs at least one purpose")
    _no_dupes(needs, f"{where}: 'needs'")
    for p in needs:
        if p not in vocab.purpose_index:
            raise PolicyError(f"{where}: unknown purpose {p!r} in 'needs' (purposes: {', '.join(vocab.purposes)})")
    e.needs = tuple(needs)
    e.needs_idx = tuple(vocab.purpose_index[p] for p in needs)
    e.needs_mask = sum(1 << i for i in e.needs_idx)
    if e.third_party:
        if THIRD_PARTY_PURPOSE not in vocab.purpose_index:
            raise PolicyError(f"{where} is third party, which needs purpose {THIRD_PARTY_PURPOSE!r}, "
                              "but the policy's 'purposes' do not list it")
        e.tps_bit = 1 << vocab.purpose_index[THIRD_PARTY_PURPOSE]
        e.relied_on = e.needs if THIRD_PARTY_PURPOSE in e.needs else e.needs + (THIRD_PARTY_PURPOSE,)
    else:
        e.tps_bit = 0
        e.relied_on = e.needs

    if "may_receive" not in ed:
        raise PolicyError(f"{where}: 'may_receive' is missing (the categories it may receive)")
    receive = _str_list(ed["may_receive"], f"{where}: 'may_receive'")
    _no_dupes(receive, f"{where}: 'may_receive'")
    for c in receive:
        if c not in cbit:
            raise PolicyError(f"{where}: unknown category {c!r} in 'may_receive' "
                              f"(categories: {', '.join(cbit)})")
        if c == PAYMENT_CATEGORY:
            raise PolicyError(f"{where}: may_receive {PAYMENT_CATEGORY!r}, but payment data is never emitted")
    e.categories = tuple(receive)
    e.categories_mask = sum(cbit[c] for c in receive)

    jur = ed.get("jurisdictions")
    if jur == "any":
        e.jurisdictions = None
    elif isinstance(jur, list):
        _str_list(jur, f"{where}: 'jurisdictions'")
        if not jur:
            raise PolicyError(f"{where}: 'jurisdictions' is empty (use \"any\" or list them)")
        _no_dupes(jur, f"{where}: 'jurisdictions'")
        e.jurisdictions = frozenset(jur)
    else:
        raise PolicyError(f"{where}: 'jurisdictions' must be \"any\" or a list of jurisdictions")

    subject = ed.get("subject", "keep")
    if subject not in ("keep", "pseudonymize"):
        raise PolicyError(f"{where}: 'subject' must be \"keep\" or \"pseudonymize\"")
    e.pseudonymize_subject = subject == "pseudonymize"

    tdoc = ed.get("transforms", {})
    if not isinstance(tdoc, Mapping):
        raise PolicyError(f"{where}: 'transforms' must be a table of field path = transform")
    transforms: dict[str, int] = {}
    for path, t in tdoc.items():
        if not isinstance(t, str) or t not in TRANSFORMS:
            shown = t if isinstance(t, str) else type(t).__name__
            raise PolicyError(f"{where}: unknown transform {shown!r} for field {path!r} "
                              f"(transforms: {', '.join(TRANSFORMS)})")
        code = TRANSFORMS[t]
        if path == "ts":
            if code not in (T_KEEP, T_HOUR):
                raise PolicyError(f"{where}: field 'ts' is part of the envelope; only 'keep' and "
                                  "'coarsen:hour' apply to it")
        elif path in ENVELOPE:
            raise PolicyError(f"{where}: field {path!r} is part of the envelope; transforms apply to the "
                              "field paths listed in 'categories' and to 'ts'")
        elif path not in KNOWN_FIELDS:
            raise PolicyError(f"{where}: transform for unknown field {path!r}")
        elif path not in field_category:
            raise PolicyError(f"{where}: transform for field {path!r}, which is in no category; transforms "
                              "apply to the field paths listed in 'categories' (and to 'ts')")
        elif field_category[path] not in e.categories:
            raise PolicyError(f"{where}: transform for field {path!r} of category {field_category[path]!r}, "
                              "which the engine may not receive")
        if code == T_COUNTRY and path not in _COUNTRY_FIELDS:
            raise PolicyError(f"{where}: transform 'coarsen:country' applies to {', '.join(sorted(_COUNTRY_FIELDS))}, "
                              f"not to {path!r}")
        if code == T_PSEUDONYMIZE and path not in TEXT_FIELDS:
            raise PolicyError(f"{where}: transform 'pseudonymize' applies to text fields, not to {path!r} "
                              "(a pseudonym is text; drop or keep it, or categorize its text parts)")
        if code == T_ENCRYPT and path not in TEXT_FIELDS:
            # an envelope is text (JSON) or bytes (Avro): only a text field keeps its schema type
            raise PolicyError(f"{where}: transform 'encrypt' applies to text fields, not to {path!r}")
        if code == T_ENCRYPT and e.pseudonymize_subject:
            # the data key and the associated data belong to the subject id; an engine that
            # knows only a pseudonym could not name the key to decrypt with
            raise PolicyError(f"{where}: transform 'encrypt' for field {path!r}, but the engine pseudonymizes "
                              "subject ids; encrypted fields need subject = \"keep\"")
        if code == T_HOUR and path not in _HOUR_FIELDS:
            raise PolicyError(f"{where}: transform 'coarsen:hour' applies to timestamps ('ts'), not to {path!r}")
        transforms[path] = code
    e.transforms = transforms
    e.encrypted = frozenset(p for p, c in transforms.items() if c == T_ENCRYPT)
    e.ts_hour = transforms.get("ts") == T_HOUR

    needs_secret = e.pseudonymize_subject or T_PSEUDONYMIZE in transforms.values()
    if needs_secret and not secret:
        what = "subject ids" if e.pseudonymize_subject else "fields"
        raise PolicyError(f"{where} pseudonymizes {what} but no pseudonym secret is configured: "
                          "set PFILTER_PSEUDONYM_KEY or PFILTER_PSEUDONYM_KEY_FILE")
    # An engine that never pseudonymizes still gets a key object (never used);
    # a random one, so that nothing can be derived from a missing secret.
    key = engine_key(secret, name) if secret else hashlib.sha256(b"unused/" + name.encode()).digest()
    e._mac = hmac.new(key, digestmod=hashlib.sha256)

    # field plans: PlanEntry(head, rest, parents, leaf, dotted path, category bit, transform, shape)
    def plan_for(paths: Mapping[str, Any]) -> tuple:
        entries = []
        for cname in e.categories:  # policy's may_receive order, then the category's field order
            if cname == PAYMENT_CATEGORY:
                continue
            for f, fc in field_category.items():
                if fc != cname or f not in paths or f in PAYMENT_FIELDS:
                    continue
                code = transforms.get(f, T_KEEP)
                if code == T_DROP:
                    continue
                parts = tuple(f.split("."))
                entries.append(PlanEntry(parts[0], parts[1:], parts[:-1], parts[-1], f, cbit[cname], code, paths[f]))
        return tuple(entries)

    e.plans = {t: plan_for(paths) for t, paths in PATHS_BY_TYPE.items()}
    e.default_plan = plan_for(KNOWN_FIELDS)
    e.field_categories = {f: c for f, c in field_category.items() if c in e.categories and c != PAYMENT_CATEGORY}
    e._category_names = vocab.categories
    e._sent_names = {}
    e._mask_plans = {}
    e._type_plans = {}
    return e
