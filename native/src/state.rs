//! Stage 2: the subject's compact consent state (streams/engine/consent.py layout)
//! read straight from the store's tuple, and summarized per engine the way
//! `batch._engine_summary` does it. Only ints, one str and one bytes are read; no
//! Python object is created.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::rule::{Summary, NOTHING_PERMITTED, NO_CONSENT, OPT_OUT, PURPOSE_DENIED, REGION_BLOCKED};
use crate::spec::EngineSpec;

/// consent.BLOCKED
const BLOCKED: i64 = 1;

/// The fields of a state the rule reads. `None` from `read` means "not a state this
/// code understands": the caller falls back to the Python engine, which says why.
pub struct StateView<'py> {
    pub updated_at: i64,
    pub granted: u64,
    pub cmask: u64,
    pub jurisdiction: Bound<'py, PyString>,
    pub gpc: bool,
    pub flags: i64,
    pub vocab: i64,
    pub times: Bound<'py, PyBytes>,
}

pub fn read<'py>(state: &Bound<'py, PyAny>) -> Option<StateView<'py>> {
    let t = state.cast::<PyTuple>().ok()?;
    if t.len() != 4 {
        return None;
    }
    let updated_at: i64 = t.get_item(0).ok()?.extract().ok()?;
    let prof_any = t.get_item(2).ok()?;
    let prof = prof_any.cast::<PyTuple>().ok()?;
    if prof.len() != 7 {
        return None;
    }
    let granted: u64 = prof.get_item(0).ok()?.extract().ok()?;
    let cmask: u64 = prof.get_item(1).ok()?.extract().ok()?;
    let jurisdiction = prof.get_item(2).ok()?.cast_into::<PyString>().ok()?;
    let gpc = prof.get_item(3).ok()?.is_truthy().ok()?;
    let flags: i64 = prof.get_item(4).ok()?.extract().ok()?;
    let vocab: i64 = prof.get_item(5).ok()?.extract().ok()?;
    let times = t.get_item(3).ok()?.cast_into::<PyBytes>().ok()?;
    Some(StateView { updated_at, granted, cmask, jurisdiction, gpc, flags, vocab, times })
}

impl StateView<'_> {
    /// Blocked, or of another vocabulary: no consent at all.
    pub fn void(&self, vocab_fp: i64) -> bool {
        self.flags & BLOCKED != 0 || self.vocab != vocab_fp
    }
}

fn pair(times: &[u8], k: usize) -> Option<(i64, i64)> {
    let b = times.get(16 * k..16 * k + 16)?;
    let ga = i64::from_be_bytes(b[..8].try_into().ok()?);
    let ea = i64::from_be_bytes(b[8..].try_into().ok()?);
    Some((ga, ea))
}

/// `_engine_summary(eng, state)`; None when the state's bytes do not hold the pairs its
/// mask says (a state this code does not understand: fall back).
pub fn summarize(e: &EngineSpec, s: &StateView<'_>) -> Option<Summary> {
    if s.void(e.vocab_fp) {
        return Some(Summary::fixed(NO_CONSENT));
    }
    let granted = s.granted;
    if granted & e.needs_mask != e.needs_mask {
        return Some(Summary::fixed(PURPOSE_DENIED));
    }
    let times = s.times.as_bytes();
    let mut max_ga = i64::MIN;
    let mut min_ea = i64::MAX;
    let mut first = true;
    for &i in &e.needs_idx {
        let below = if i == 0 { 0 } else { granted & ((1u64 << i) - 1) };
        let (ga, ea) = pair(times, below.count_ones() as usize)?;
        if first || ga > max_ga {
            max_ga = ga;
        }
        if first || ea < min_ea {
            min_ea = ea;
        }
        first = false;
    }
    let mut post = None;
    let mut allowed = 0;
    if e.third_party && s.gpc {
        post = Some(OPT_OUT);
    } else if e.third_party && granted & e.tps_bit == 0 {
        post = Some(PURPOSE_DENIED);
    } else if e.jurisdictions.as_ref().is_some_and(|j| {
        let jur = s.jurisdiction.to_str().map(str::as_bytes).unwrap_or(b"\xff");
        !j.iter().any(|x| x.as_slice() == jur)
    }) {
        post = Some(REGION_BLOCKED);
    } else {
        allowed = e.categories_mask & s.cmask;
        if allowed == 0 {
            post = Some(NOTHING_PERMITTED);
        }
    }
    Some(Summary { pre: None, max_ga, min_ea, post, allowed })
}
