//! Stage 4b: the `encrypt` transform (CONTRACT §10) in a JSON output.
//!
//! The data keys, nonces and AES-GCM stay in Python (`streams.engine.sealing.Sealer`):
//! one call per field, the same function the Python engine calls, so the envelope is its
//! envelope byte for byte. The projection (phase 1, no side effects) only marks where
//! each envelope goes; the seals run in phase 2, once the record is sure and the rule
//! let the output through (a seal creates a data key and draws a nonce: a record that
//! went to the Python engine after a seal would have drawn them twice).
//!
//! A mark is the two bytes `0x00, slot`: a JSON text written here never holds a raw
//! 0x00 (the scanner refuses control characters in strings; everything else is ASCII
//! punctuation, digits and escaped strings), so a mark cannot be confused with data.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::json_scan::{Res, Unsure};
use crate::json_write::write_json_str;
use crate::spec::Entry;

const MARK: u8 = 0;
/// Slots per record: one byte names a slot. More fields to encrypt in one record than
/// this is no policy we know of; such a record goes to the Python engine.
const MAX_SLOTS: usize = 255;

/// The fields to encrypt in one record's outputs: (plan entry, value text range).
#[derive(Default)]
pub struct Sealed {
    slots: Vec<(u32, u32, u32)>,
    texts: Vec<u8>,
}

impl Sealed {
    pub fn clear(&mut self) {
        self.slots.clear();
        self.texts.clear();
    }

    /// The number of slots so far (an output's slots are a range of them).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Entry `k`'s field, whose value is the string `text` (UTF-8, unescaped), gets a slot;
    /// its mark goes into `blob`, where the field's JSON value would be.
    pub fn mark(&mut self, k: u32, text: &[u8], blob: &mut Vec<u8>) -> Res<()> {
        let slot = self.slots.len();
        if slot >= MAX_SLOTS || std::str::from_utf8(text).is_err() {
            return Err(Unsure);
        }
        let a = self.texts.len() as u32;
        self.texts.extend_from_slice(text);
        self.slots.push((k, a, self.texts.len() as u32));
        blob.push(MARK);
        blob.push(slot as u8);
        Ok(())
    }

    /// The output `src` (it holds the marks of slots `s0..s1`, those of its engine) with
    /// each mark replaced by the JSON string of `seal(subject, path, value)`, the seals
    /// called in slot order (the order of the Python engine's projection).
    #[allow(clippy::too_many_arguments)]
    pub fn splice(&self, py: Python<'_>, seal: &Bound<'_, PyAny>, subject: &Bound<'_, PyString>, plan: &[Entry],
                  src: &[u8], s0: usize, s1: usize) -> PyResult<Vec<u8>> {
        let mut envelopes: Vec<Bound<'_, PyString>> = Vec::with_capacity(s1 - s0);
        for &(k, a, b) in &self.slots[s0..s1] {
            let path = PyString::new(py, std::str::from_utf8(&plan[k as usize].dotted).unwrap_or_default());
            let value = PyString::new(py, std::str::from_utf8(&self.texts[a as usize..b as usize]).unwrap_or_default());
            let env = seal.call1((subject, path, value))?;
            let env = env.cast_into::<PyString>()
                .map_err(|_| PyTypeError::new_err("native engine: seal must return the text envelope (str)"))?;
            envelopes.push(env);
        }
        let mut out = Vec::with_capacity(src.len() + 96 * envelopes.len());
        let mut rest = src;
        while let Some(i) = rest.iter().position(|&c| c == MARK) {
            out.extend_from_slice(&rest[..i]);
            let slot = rest[i + 1] as usize;
            write_json_str(envelopes[slot - s0].to_str()?.as_bytes(), &mut out);
            rest = &rest[i + 2..];
        }
        out.extend_from_slice(rest);
        Ok(out)
    }
}
