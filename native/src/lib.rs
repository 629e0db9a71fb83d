//! pfilter_native: the consent engine's hot path over raw bytes (issue 10).
//!
//! One module per stage, in the order an event goes through them:
//! `json_scan` (+ `json_number`; bytes -> tape) or `avro_scan`, `state` (the subject's
//! consent state -> per-engine summaries), `rule` (CONTRACT §5), `project` (+ `geo`,
//! `pseudonym`: the permitted fields spliced into the engine output; `seal`: encrypted
//! fields, through the Python sealer; `json_write`, `avro_write`: values written back),
//! `encode` (decision records). `record` drives one record through them; `spec` holds
//! the compiled policy, exported once from Python. This file: the Python class.
//!
//! The contract with the Python side (streams/engine/native.py): `Engine.decide`
//! handles a record only when it is sure to produce exactly the records the Python
//! `Filter.decide` produces for it; at the first record it is not sure about, it
//! stops *before any side effect* (the clock is not read, nothing is appended) and
//! returns that record's index; Python decides that record and calls again.

#![forbid(unsafe_code)]

pub mod avro_scan;
pub mod avro_write;
pub mod encode;
pub mod geo;
pub mod json_number;
pub mod json_scan;
pub mod json_write;
pub mod project;
pub mod pseudonym;
mod record;
pub mod rule;
pub mod seal;
pub mod spec;
pub mod state;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::encode::DecisionParts;
use crate::json_scan::Tape;
use crate::project::Scratch;
use crate::record::Pending;
use crate::rule::{Summary, N_REASONS};
use crate::spec::Spec;

#[pyclass(module = "pfilter_native")]
pub struct Engine {
    spec: Spec,
    tape: Tape,
    slots: Vec<u32>,
    profiles: state::Profiles,
    sc: Scratch,
    outs: Vec<u8>,
    okeys: Vec<u8>,
    subj: Vec<u8>,
    pend: Vec<Pending>,
    parts: DecisionParts,
    rec: Vec<u8>,
    summ_buf: Vec<Summary>,
    // counters since the last take_counts
    decided: u64,
    emitted: Vec<u64>,
    dropped: [u64; N_REASONS],
    drop_order: Vec<u8>,
    /// Avro inputs: the names blob then the value (`avro_scan`), reused.
    abuf: Vec<u8>,
    /// Avro outputs: an engine output's JSON text, its tape and a string buffer (`avro_write`).
    jbuf: Vec<u8>,
    otape: Tape,
    atmp: Vec<u8>,
}


#[pymethods]
impl Engine {
    #[new]
    fn new(spec: &Bound<'_, PyDict>) -> PyResult<Self> {
        let spec = Spec::from_py(spec)?;
        if spec.engines.len() > 64 {
            return Err(PyValueError::new_err("native engine: at most 64 engines"));
        }
        let n = spec.engines.len();
        Ok(Engine {
            spec,
            tape: Tape::new(),
            slots: Vec::new(),
            profiles: state::Profiles::default(),
            sc: Scratch::default(),
            outs: Vec::with_capacity(4096),
            okeys: Vec::new(),
            subj: Vec::new(),
            pend: Vec::new(),
            parts: DecisionParts::new(),
            rec: Vec::with_capacity(512),
            summ_buf: Vec::new(),
            decided: 0,
            emitted: vec![0; n],
            dropped: [0; N_REASONS],
            drop_order: Vec::new(),
            abuf: Vec::with_capacity(1024),
            jbuf: Vec::with_capacity(1024),
            otape: Tape::new(),
            atmp: Vec::new(),
        })
    }

    /// Decide `records[start:]` into `out` until the first record the native side does not
    /// handle; returns its index (`len(records)` when all were handled). `clock`: None
    /// reads the system clock (epoch ms), else a callable returning epoch ms.
    /// `seal`: `Sealer.seal` of the Python engine (JSON outputs of an encrypting policy), which
    /// the records with fields to encrypt call; None: such records go to the Python engine.
    #[pyo3(signature = (records, start, out, store, clock=None, seal=None))]
    #[allow(clippy::too_many_arguments)]
    fn decide(&mut self, py: Python<'_>, records: &Bound<'_, PyList>, start: usize, out: &Bound<'_, PyList>,
              store: &Bound<'_, PyAny>, clock: Option<&Bound<'_, PyAny>>, seal: Option<&Bound<'_, PyAny>>)
              -> PyResult<usize> {
        let n = records.len();
        let mut i = start;
        while i < n {
            let rec = records.get_item(i)?;
            if !self.one(py, &rec, out, store, clock, seal)? {
                return Ok(i);
            }
            i += 1;
        }
        Ok(n)
    }

    /// (decided, emitted per engine, [(reason index, count)] in first-occurrence order)
    /// since the last call; resets them.
    fn take_counts(&mut self) -> (u64, Vec<u64>, Vec<(u8, u64)>) {
        let d = std::mem::take(&mut self.decided);
        let e = self.emitted.iter_mut().map(std::mem::take).collect();
        let order = std::mem::take(&mut self.drop_order);
        let r = order.iter().map(|&i| (i, std::mem::take(&mut self.dropped[i as usize]))).collect();
        (d, e, r)
    }

    /// Drop what is cached about a subject (its consent was erased). Nothing is kept per
    /// subject (summaries are per consent profile), so there is nothing to drop; kept so
    /// the Python side need not know.
    fn forget(&mut self, _subject: &[u8]) {}

    /// Drop every cached profile summary.
    fn clear_cache(&mut self) {
        self.profiles.clear();
    }

    /// Engine `i`'s pseudonym of a subject id (None: no key).
    fn pseudonym<'py>(&self, py: Python<'py>, i: usize, subject: &[u8]) -> Option<Bound<'py, PyBytes>> {
        let k = self.spec.engines.get(i)?.key.as_ref()?;
        let mut out = Vec::new();
        k.subject(subject, &mut out);
        Some(PyBytes::new(py, &out))
    }

    /// Engine `i`'s pseudonym of a field value (`pseudonymize_value(path, value)`).
    fn pseudonymize_value<'py>(&self, py: Python<'py>, i: usize, path: &[u8], value: &[u8]) -> Option<Bound<'py, PyBytes>> {
        let k = self.spec.engines.get(i)?.key.as_ref()?;
        let mut out = Vec::new();
        k.field(path, value, &mut out);
        Some(PyBytes::new(py, &out))
    }
}

/// `orjson.dumps(orjson.loads(data))` when the scanner is sure of it, else None (tests, fuzzing).
#[pyfunction]
fn canonical<'py>(py: Python<'py>, data: &[u8]) -> Option<Bound<'py, PyBytes>> {
    let mut t = Tape::new();
    let root = t.scan(data).ok()?;
    let mut out = Vec::new();
    t.write_value(data, root, &mut out).ok()?;
    Some(PyBytes::new(py, &out))
}

/// The scanner's verdict alone: True when it accepts `data` (tests, fuzzing).
#[pyfunction]
fn scans(data: &[u8]) -> bool {
    Tape::new().scan(data).is_ok()
}

/// `coarsen:country` of a JSON record: `{"country": c}` bytes, b"" when left out, None when unsure.
#[pyfunction]
fn coarsen_country<'py>(py: Python<'py>, data: &[u8]) -> Option<Bound<'py, PyBytes>> {
    let mut t = Tape::new();
    let root = t.scan(data).ok()?;
    let mut out = Vec::new();
    geo::coarsen_country(&t, data, root, &mut out).ok()?;
    Some(PyBytes::new(py, &out))
}

/// Hex HMAC-SHA256(key, msg) truncated to `hex_chars` (tests).
#[pyfunction]
fn hmac_hex(key: &[u8], msg: &[u8], hex_chars: usize) -> String {
    let mut out = Vec::new();
    pseudonym::Keyed::new(key, hex_chars).hex(&[msg], &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[pymodule]
fn pfilter_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(canonical, m)?)?;
    m.add_function(wrap_pyfunction!(scans, m)?)?;
    m.add_function(wrap_pyfunction!(coarsen_country, m)?)?;
    m.add_function(wrap_pyfunction!(hmac_hex, m)?)?;
    m.add("REASON_COUNT", N_REASONS)?;
    m.add("FORMAT", 1)?;
    Ok(())
}
