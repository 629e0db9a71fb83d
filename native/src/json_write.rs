//! The JSON writer over a scanned tape (`json_scan::Tape`): a node written the way
//! `orjson.dumps` writes the value `orjson.loads` made of it: strings re-escaped the
//! orjson way, numbers only when their text already is orjson's text (else `Unsure`).

use crate::json_scan::{unescape, Kind, Res, Tape, Unsure, ESCAPED, NUM_FLOAT, NUM_FLOAT_TEXT, NUM_INT, NUM_VALUE, RAW};

impl Tape {
    /// Write a node as `orjson.dumps` writes the value `orjson.loads` made of it.
    pub fn write_value(&self, src: &[u8], i: u32, out: &mut Vec<u8>) -> Res<()> {
        let n = *self.node(i);
        match n.kind {
            Kind::Null => out.extend_from_slice(b"null"),
            Kind::True => out.extend_from_slice(b"true"),
            Kind::False => out.extend_from_slice(b"false"),
            Kind::Num => {
                let text = &src[n.start as usize..n.end as usize];
                if n.flag & NUM_VALUE != 0 && n.flag & NUM_INT != 0 {
                    crate::encode::int(out, n.int);
                } else if n.flag & (NUM_INT | NUM_FLOAT_TEXT) != 0 {
                    out.extend_from_slice(text);
                } else if n.flag & NUM_FLOAT != 0 {
                    let x = if n.flag & NUM_VALUE != 0 {
                        f64::from_bits(n.int as u64)
                    } else {
                        std::str::from_utf8(text).ok().and_then(|t| t.parse::<f64>().ok()).ok_or(Unsure)?
                    };
                    if !(x.is_finite() && (x == 0.0 || (1e-4..1e15).contains(&x.abs()))) {
                        return Err(Unsure);
                    }
                    // the shortest round-trip digits are unique when there are at most 15 of
                    // them (then orjson and Rust agree); 16-17 may tie (x.25 -> ".2" or ".3")
                    use std::io::Write;
                    let start = out.len();
                    let _ = write!(out, "{x:?}");
                    let digits = &out[start..];
                    let sig = digits.iter().filter(|c| c.is_ascii_digit()).skip_while(|&&c| c == b'0').count();
                    let trailing = digits.iter().rev().filter(|c| c.is_ascii_digit()).take_while(|&&c| c == b'0').count();
                    if sig.saturating_sub(trailing) > 15 {
                        out.truncate(start);
                        return Err(Unsure);
                    }
                } else {
                    return Err(Unsure);
                }
            }
            Kind::Str => self.write_str(src, i, out),
            Kind::Arr => {
                out.push(b'[');
                for (k, &e) in self.arr_elems(i).iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    self.write_value(src, e, out)?;
                }
                out.push(b']');
            }
            Kind::Obj => {
                let ms = self.obj_members(i);
                for (a, ma) in ms.iter().enumerate() {
                    let ka = &src[ma.key_start as usize..ma.key_end as usize];
                    if ms[..a].iter().any(|mb| &src[mb.key_start as usize..mb.key_end as usize] == ka) {
                        return Err(Unsure);
                    }
                }
                out.push(b'{');
                for (k, m) in ms.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    out.extend_from_slice(&src[m.key_start as usize..m.key_end as usize]);
                    out.extend_from_slice(b"\":");
                    self.write_value(src, m.val, out)?;
                }
                out.push(b'}');
            }
        }
        Ok(())
    }

    /// A string node as orjson writes it (quotes included).
    pub fn write_str(&self, src: &[u8], i: u32, out: &mut Vec<u8>) {
        let n = self.node(i);
        let raw = &src[n.start as usize..n.end as usize];
        if n.flag & RAW != 0 {
            write_json_str(raw, out);
        } else if n.flag & ESCAPED == 0 {
            // no escapes and (the scanner checked) no control characters: orjson writes it as is
            out.push(b'"');
            out.extend_from_slice(raw);
            out.push(b'"');
        } else {
            let mut buf = Vec::with_capacity(raw.len());
            unescape(raw, &mut buf);
            write_json_str(&buf, out);
        }
    }
}

/// `orjson.dumps(s)` of a decoded string (UTF-8 bytes).
pub fn write_json_str(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut last = 0;
    for (k, &c) in s.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[last..k]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(c >> 4) as usize]);
            out.push(HEX[(c & 15) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        last = k + 1;
    }
    out.extend_from_slice(&s[last..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(src: &str) -> Option<String> {
        let mut t = Tape::new();
        let r = t.scan(src.as_bytes()).ok()?;
        let mut out = Vec::new();
        t.write_value(src.as_bytes(), r, &mut out).ok()?;
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canon(r#" { "a" : [1, 2.5, "x\u00e9\n"] } "#).unwrap(), "{\"a\":[1,2.5,\"x\u{e9}\\n\"]}");
        assert_eq!(canon(r#""\ud83d\ude00\/""#).unwrap(), "\"\u{1F600}/\"");
        assert!(canon(r#""\ud83d""#).is_none());
        assert_eq!(canon("1e5").unwrap(), "100000.0");
        assert!(canon("1e-5").is_none());
        assert!(canon("1e400").is_none());
        assert_eq!(canon("100.10").unwrap(), "100.1");
        assert_eq!(canon("13.00").unwrap(), "13.0");
        // 16 shortest digits may tie (orjson: .2, Rust: .3): not sure
        assert!(canon("-939668410476200.2798358069").is_none());
        assert_eq!(canon("0.1000").unwrap(), "0.1");
        assert!(canon("-0").is_none());
        assert_eq!(canon("-0.0").unwrap(), "-0.0");
        assert!(canon(r#"{"a":1,"a":2}"#).is_none());
        assert!(canon("[1,]").is_none());
        assert!(canon("\"\x01\"").is_none());
    }
}
