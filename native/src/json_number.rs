//! Numbers of the JSON scanner (`json_scan`): accepted only where the value
//! `orjson.loads` makes of the text is sure, and flagged with how it can be written
//! back (`NUM_INT`, `NUM_FLOAT`, `NUM_FLOAT_TEXT`).

use crate::json_scan::{Parser, Res, Unsure, NUM_FLOAT, NUM_FLOAT_TEXT, NUM_INT};

/// Integer digits beyond this: `Unsure` (orjson turns huge integers into floats,
/// which overflow to an error somewhere past 308 digits; we never need to know where).
const MAX_NUM_DIGITS: usize = 300;

impl Parser<'_> {
    /// A number: (start, end, flag, int value when NUM_INT).
    pub(crate) fn number(&mut self) -> Res<(usize, usize, u8, i64)> {
        let s = self.s;
        let a = self.i;
        let neg = s[a] == b'-';
        if neg {
            self.i += 1;
        }
        let ia = self.i;
        // the magnitude, accumulated while scanning (None past u64)
        let mut mag: Option<u64> = Some(0);
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    mag = mag.and_then(|m| m.checked_mul(10)).and_then(|m| m.checked_add((c - b'0') as u64));
                    self.i += 1;
                }
            }
            _ => return Err(Unsure),
        }
        let int_digits = self.i - ia;
        if int_digits > MAX_NUM_DIGITS {
            return Err(Unsure);
        }
        let mut frac = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            let fa = self.i;
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
            if self.i == fa || self.i - fa > MAX_NUM_DIGITS {
                return Err(Unsure);
            }
            frac = true;
        }
        let mut exp = false;
        if let Some(b'e' | b'E') = self.peek() {
            // finite whatever the digits when the exponent is at most 280 and the integer
            // part short (an underflow is 0.0 to orjson too); anything bigger: Unsure
            self.i += 1;
            let neg_exp = self.peek() == Some(b'-');
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            let ea = self.i;
            let mut e: u32 = 0;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                e = e.saturating_mul(10).saturating_add((c - b'0') as u32);
                self.i += 1;
            }
            if self.i == ea || self.i - ea > 5 || int_digits > 20 || (!neg_exp && e > 280) {
                return Err(Unsure);
            }
            exp = true;
        }
        if !frac && !exp {
            // "-0" is the integer 0, written "0": valid, not spliceable
            if neg && int_digits == 1 && s[ia] == b'0' {
                return Ok((a, self.i, 0, 0));
            }
            let v = mag.and_then(|m| {
                if neg {
                    if m <= 1u64 << 63 { Some((m as i64).wrapping_neg()) } else { None }
                } else {
                    i64::try_from(m).ok()
                }
            });
            return Ok(match v {
                Some(v) => (a, self.i, NUM_INT, v),
                None => (a, self.i, 0, 0), // valid (a big int or a float to orjson), not spliceable
            });
        }
        // A plain decimal with at most 15 significant digits in [1e-4, 1e15), no trailing
        // zero (but "x.0"): its text *is* orjson's text (a 15-digit decimal round-trips
        // through f64, so it is the shortest repr, written positionally by both orjson
        // and Rust's `{:?}`): copied as is. Any other finite float: parsed and written
        // when it is output (NUM_FLOAT), Unsure then if outside that range.
        if frac && !exp && int_digits <= 15 {
            let ip = &s[ia..ia + int_digits];
            let fp = &s[ia + int_digits + 1..self.i];
            let trailing_ok = fp == b"0" || fp.last() != Some(&b'0');
            let canon = if ip == b"0" {
                let z = fp.iter().take_while(|&&c| c == b'0').count();
                fp == b"0" || (trailing_ok && z <= 3 && z < fp.len() && fp.len() - z <= 15)
            } else {
                trailing_ok && int_digits + if fp == b"0" { 0 } else { fp.len() } <= 15
            };
            if canon {
                return Ok((a, self.i, NUM_FLOAT_TEXT, 0));
            }
        }
        if int_digits <= 20 {
            return Ok((a, self.i, NUM_FLOAT, 0)); // finite: the digits and exponent are bounded above
        }
        Ok((a, self.i, 0, 0))
    }
}
