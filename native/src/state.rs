//! Stage 2: the subject's compact consent state (streams/engine/consent.py layout)
//! read straight from the store's tuple, and summarized per engine the way
//! `batch._engine_summary` does it. No Python object is created.
//!
//! The summary splits in two: what depends on the state's *profile* (granted and
//! category masks, jurisdiction, GPC, flags, vocabulary: a tuple the Python side
//! interns, so a population shares a few thousand of them) is computed once per
//! profile object and cached by its identity; what depends on the subject (its grant
//! and expiry times) is read from the state's packed `times` per event: one or two
//! 16-byte pairs per engine. No per-subject cache, so no misses however large the
//! population.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::rule::{Summary, NOTHING_PERMITTED, NO_CONSENT, OBJECTED, OPT_OUT, PURPOSE_DENIED, REGION_BLOCKED};
use crate::spec::EngineSpec;

/// consent.BLOCKED
const BLOCKED: i64 = 1;
/// state.PROFILE_LEN: (granted, categories, jurisdiction, gpc, flags, vocab, n_purposes,
/// objected, gates). Another length is not a profile this code reads (Python decides).
const PROFILE_LEN: usize = 9;
/// Bound of the profile cache (entries; cleared when reached). Python interns up to
/// 65,536 profiles (consent.PROFILE_INTERN_MAX); past that, profiles are per subject
/// and a bounded cache still serves the active ones.
const PROFILE_CACHE_MAX: usize = 1 << 16;

/// One engine's part of a profile summary.
#[derive(Clone, Copy)]
struct ProfileEngine {
    /// no consent / objected / purpose denied: whatever the times
    pre: Option<u8>,
    post: Option<u8>,
    allowed: u64,
    /// `pairs[first..first + n]`: positions in `times` of the needed purposes' pairs
    first: u32,
    n: u32,
}

struct ProfileSummary {
    /// Keeps the profile object alive, so its address (the key) stays its own.
    _profile: Py<PyAny>,
    void: bool,
    engines: Vec<ProfileEngine>,
    pairs: Vec<u32>,
}

/// Hash of an object address (the profile cache's key). Addresses are not chosen by the
/// input, so a multiply-xorshift mix is enough (SipHash's DoS resistance buys nothing here
/// and showed in the profile).
#[derive(Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    #[inline]
    fn write_usize(&mut self, x: usize) {
        let h = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Profile summaries, by profile object identity.
#[derive(Default)]
pub struct Profiles {
    map: HashMap<usize, ProfileSummary, BuildHasherDefault<AddrHasher>>,
}

fn pair(times: &[u8], k: usize) -> Option<(i64, i64)> {
    let b = times.get(16 * k..16 * k + 16)?;
    let ga = i64::from_be_bytes(b[..8].try_into().ok()?);
    let ea = i64::from_be_bytes(b[8..].try_into().ok()?);
    Some((ga, ea))
}

fn profile_summary(engines: &[EngineSpec], vocab_fp: i64, prof: &Bound<'_, PyAny>) -> Option<ProfileSummary> {
    let p = prof.cast::<PyTuple>().ok()?;
    if p.len() != PROFILE_LEN {
        return None;
    }
    let granted: u64 = p.get_borrowed_item(0).ok()?.extract().ok()?;
    let cmask: u64 = p.get_borrowed_item(1).ok()?.extract().ok()?;
    let jur_obj = p.get_borrowed_item(2).ok()?;
    let jur = jur_obj.cast::<PyString>().ok()?;
    // a jurisdiction that is not UTF-8 (surrogates) is in no engine's list
    let jur: &[u8] = jur.to_str().map(str::as_bytes).unwrap_or(b"\xff");
    let gpc = p.get_borrowed_item(3).ok()?.is_truthy().ok()?;
    let flags: i64 = p.get_borrowed_item(4).ok()?.extract().ok()?;
    let vocab: i64 = p.get_borrowed_item(5).ok()?.extract().ok()?;
    // step 1a and the gates of step 2, folded in when the consent record was applied
    let objected: u64 = p.get_borrowed_item(7).ok()?.extract().ok()?;
    let gates: u64 = p.get_borrowed_item(8).ok()?.extract().ok()?;
    let void = flags & BLOCKED != 0 || vocab != vocab_fp;
    let mut out = Vec::with_capacity(engines.len());
    let mut pairs = Vec::new();
    for e in engines {
        let mut pe = ProfileEngine { pre: None, post: None, allowed: 0, first: pairs.len() as u32, n: 0 };
        if void {
            pe.pre = Some(NO_CONSENT);
        } else if objected & e.needs_mask != 0 {
            pe.pre = Some(OBJECTED);
        } else if granted & e.needs_mask != e.needs_mask || gates & e.gate_bit != 0 {
            pe.pre = Some(PURPOSE_DENIED);
        } else {
            for &i in &e.needs_idx {
                let below = if i == 0 { 0 } else { granted & ((1u64 << i) - 1) };
                pairs.push(below.count_ones());
            }
            pe.n = e.needs_idx.len() as u32;
            if e.third_party && gpc {
                pe.post = Some(OPT_OUT);
            } else if e.third_party && granted & e.tps_bit == 0 {
                pe.post = Some(PURPOSE_DENIED);
            } else if e.jurisdictions.as_ref().is_some_and(|j| !j.iter().any(|x| x.as_slice() == jur)) {
                pe.post = Some(REGION_BLOCKED);
            } else {
                pe.allowed = e.categories_mask & cmask;
                if pe.allowed == 0 {
                    pe.post = Some(NOTHING_PERMITTED);
                }
            }
        }
        out.push(pe);
    }
    Some(ProfileSummary { _profile: prof.clone().unbind(), void, engines: out, pairs })
}

/// The summaries of a state of profile `ps` with these packed times (see `summarize`).
fn fill(ps: &ProfileSummary, times: &[u8], updated_at: i64, out: &mut Vec<Summary>) -> Option<Option<i64>> {
    for pe in &ps.engines {
        if let Some(r) = pe.pre {
            out.push(Summary::fixed(r));
            continue;
        }
        let mut max_ga = i64::MIN;
        let mut min_ea = i64::MAX;
        for (j, &k) in ps.pairs[pe.first as usize..(pe.first + pe.n) as usize].iter().enumerate() {
            let (ga, ea) = pair(times, k as usize)?;
            if j == 0 || ga > max_ga {
                max_ga = ga;
            }
            if j == 0 || ea < min_ea {
                min_ea = ea;
            }
        }
        out.push(Summary { pre: None, max_ga, min_ea, post: pe.post, allowed: pe.allowed });
    }
    Some(if ps.void { None } else { Some(updated_at) })
}

impl Profiles {
    /// The per-engine summaries of a state into `out` and its consent version (None when
    /// the state is blocked or of another vocabulary); None when the state is not one this
    /// code understands (the caller falls back to the Python engine, which says why).
    pub fn summarize(&mut self, engines: &[EngineSpec], vocab_fp: i64, state: &Bound<'_, PyAny>,
                     out: &mut Vec<Summary>) -> Option<Option<i64>> {
        let t = state.cast::<PyTuple>().ok()?;
        if t.len() != 4 {
            return None;
        }
        let updated_at: i64 = t.get_borrowed_item(0).ok()?.extract().ok()?;
        let prof = t.get_borrowed_item(2).ok()?;
        let key = prof.as_ptr() as usize;
        let times_obj = t.get_borrowed_item(3).ok()?;
        let times_b = times_obj.cast::<PyBytes>().ok()?;
        let times = times_b.as_bytes();
        if let Some(ps) = self.map.get(&key) {
            return fill(ps, times, updated_at, out);
        }
        let ps = profile_summary(engines, vocab_fp, &prof)?;
        if self.map.len() >= PROFILE_CACHE_MAX {
            self.map.clear();
        }
        let r = fill(&ps, times, updated_at, out);
        self.map.insert(key, ps);
        r
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}
