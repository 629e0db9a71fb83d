//! Stage 3: the decision rule (CONTRACT §5), as `decide.decide` and the Python fast
//! path apply it: per engine, a summary of the subject's consent state (state.rs)
//! reduces the rule for any event to a few comparisons.

/// Drop reason codes: positions in `vocab.REASONS` (the Python side passes their names
/// in this order and checks the count). New reasons are appended; the rule's order is
/// `vocab.RULE_ORDER` (objected, step 1a, comes before purpose_denied).
pub const ANONYMOUS: u8 = 0;
pub const NO_CONSENT: u8 = 1;
pub const PURPOSE_DENIED: u8 = 2;
pub const BEFORE_GRANT: u8 = 3;
pub const EXPIRED: u8 = 4;
pub const OPT_OUT: u8 = 5;
pub const REGION_BLOCKED: u8 = 6;
pub const NOTHING_PERMITTED: u8 = 7;
pub const OBJECTED: u8 = 8;
pub const N_REASONS: usize = 9;

/// One engine's view of one consent state (`batch._engine_summary`).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// A reason that holds whatever the event (anonymous, no consent, objected, purpose denied).
    pub pre: Option<u8>,
    /// Greatest `granted_at` and least `expires_at` over the purposes the engine needs.
    pub max_ga: i64,
    pub min_ea: i64,
    /// A reason that holds once the time checks pass (opt out, region, nothing permitted).
    pub post: Option<u8>,
    /// Categories both allowed for the engine and granted (non-zero when `post` is None).
    pub allowed: u64,
}

impl Summary {
    pub const fn fixed(reason: u8) -> Self {
        Summary { pre: Some(reason), max_ga: i64::MIN, min_ea: i64::MAX, post: None, allowed: 0 }
    }
}

/// What the rule says before the clock is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// Dropped for this reason, whatever `now`.
    Drop(u8),
    /// `expired` unless `now < min_ea`; then `post` if set, else the projection decides.
    Timed { min_ea: i64, post: Option<u8> },
}

/// The checks that do not depend on `now`, in the rule's order.
#[inline]
pub fn before_now(s: &Summary, ts: i64) -> Before {
    if let Some(r) = s.pre {
        return Before::Drop(r);
    }
    if s.max_ga > ts {
        return Before::Drop(BEFORE_GRANT);
    }
    if ts >= s.min_ea {
        // `not (now < x and ts < x)` holds whatever now
        return Before::Drop(EXPIRED);
    }
    Before::Timed { min_ea: s.min_ea, post: s.post }
}

/// The expiry check once `now` is known (`ts < min_ea` already holds).
#[inline]
pub fn expired(min_ea: i64, now: i64) -> bool {
    now >= min_ea
}
