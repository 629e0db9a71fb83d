"""The shared vocabulary of the engine: a leaf module that imports nothing of ours.

Every module that needs one of these names imports it from here, so each is
defined once (they used to be written out again in the codecs, the consent
state, the batch API and the population generator) and ``decide`` and
``policy`` need not import each other for them.

- the event envelope (CONTRACT §3, §5) and the event types per input kind;
- the transform codes of a compiled policy;
- the outcomes and drop reasons a decision record holds (CONTRACT §5, §7);
- the legal bases and objection classes of a consent record (CONTRACT §3);
- the bounds of Avro ``int`` and ``long`` (every integer we write must fit them).

``streams.engine.reference`` (the oracle) deliberately does not import this:
it writes the vocabulary out again so that a mistake here cannot hide there.
"""

from __future__ import annotations

# ------------------------------------------------------------- events (CONTRACT §3)
#: Always emitted (event_id, subject_id, event_type, ts) or never (anonymous_id);
#: none of them may be put into a category.
ENVELOPE = ("event_id", "subject_id", "anonymous_id", "event_type", "ts")

#: Click event types, in the order the population generator indexes them.
CLICK_EVENT_TYPES: tuple[str, ...] = ("page_view", "product_view", "search", "add_to_cart", "login")
PURCHASE_EVENT_TYPES: tuple[str, ...] = ("purchase",)
#: Known event types per input event kind (schema stem).
EVENT_TYPES: dict[str, frozenset[str]] = {
    "click_event": frozenset(CLICK_EVENT_TYPES),
    "purchase_event": frozenset(PURCHASE_EVENT_TYPES),
}

# ------------------------------------------------------------- transforms (CONTRACT §4)
T_KEEP, T_DROP, T_PSEUDONYMIZE, T_COUNTRY, T_HOUR, T_ENCRYPT = range(6)
TRANSFORMS = {
    "keep": T_KEEP, "drop": T_DROP, "pseudonymize": T_PSEUDONYMIZE,
    "coarsen:country": T_COUNTRY, "coarsen:hour": T_HOUR,
    # AES-GCM under the subject's data key; the value becomes an envelope (CONTRACT §10)
    "encrypt": T_ENCRYPT,
}

# ------------------------------------------------------------- decisions (CONTRACT §5, §7)
#: Outcome of a decision record: the input was decided (per engine entries say
#: what), or it went to the DLQ.
DECIDED, DLQ = "decided", "dlq"
#: Outcome of one engine entry of a decided record.
EMITTED, DROPPED = "emitted", "dropped"

ANONYMOUS = "anonymous"
NO_CONSENT = "no_consent"
PURPOSE_DENIED = "purpose_denied"
BEFORE_GRANT = "before_grant"
EXPIRED = "expired"
OPT_OUT = "opt_out"
REGION_BLOCKED = "region_blocked"
NOTHING_PERMITTED = "nothing_permitted"
OBJECTED = "objected"
#: Every drop reason. Its position is the reason's code (the native engine's
#: ``rule.rs`` constants, per-reason fragments): new reasons are appended, so existing
#: codes keep their numbers. The rule checks them in this order: anonymous, no_consent,
#: objected (step 1a), purpose_denied, before_grant, expired, opt_out, region_blocked,
#: nothing_permitted (``RULE_ORDER``).
REASONS = (ANONYMOUS, NO_CONSENT, PURPOSE_DENIED, BEFORE_GRANT, EXPIRED, OPT_OUT, REGION_BLOCKED,
           NOTHING_PERMITTED, OBJECTED)
#: The drop reasons in the order the rule checks them (CONTRACT §5).
RULE_ORDER = (ANONYMOUS, NO_CONSENT, OBJECTED, PURPOSE_DENIED, BEFORE_GRANT, EXPIRED, OPT_OUT, REGION_BLOCKED,
              NOTHING_PERMITTED)
#: Drop reasons of step 1 of the rule, decided before any engine is tried: every engine
#: drops for the same one, so the decision record states it once and has no entries.
SHARED_REASONS = frozenset({ANONYMOUS, NO_CONSENT})

# ------------------------------------------------------------- consent records (CONTRACT §3)
#: Legal bases a consent record may give a purpose; ``consent`` is the default.
CONSENT_BASIS, LEGITIMATE_INTEREST = "consent", "legitimate_interest"
BASES = (CONSENT_BASIS, LEGITIMATE_INTEREST)
#: Objection classes (GDPR Art. 21) a consent record may list in ``objections``.
DIRECT_MARKETING, PROFILING = "direct_marketing", "profiling"
OBJECTION_CLASSES = (DIRECT_MARKETING, PROFILING)

# ------------------------------------------------------------- integer bounds (Avro int / long)
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
