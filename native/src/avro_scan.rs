//! Stage 1 for Avro inputs: the body of an event in the Confluent wire format, decoded
//! into the same tape the JSON scanner builds (`json_scan::Tape`), so the rest of the
//! hot path (envelope, rule, projection, outputs) is the JSON one.
//!
//! The writer schema is not hardcoded: `streams/engine/native_avro.py` compiles the
//! codec's own schema into a small type program once (`AType`), read here at start-up.
//!
//! As the JSON scanner, the decoder accepts only what it is *sure* the Python reader
//! (`avro_compiler`'s compiled reader, then the kind's check) decodes to the same dict:
//! a canonical varint, a union index in range, valid UTF-8, a finite double, an int in
//! 32 bits, no trailing byte. Anything else is `Unsure` and the record goes to the
//! Python engine, which classifies it (DLQ reason and message).
//!
//! The tape's nodes point into one buffer: the record's field names (`names`, a blob
//! exported with the program) followed by the value's bytes, so member keys and string
//! values are slices of it as in a JSON document. Strings carry `RAW` (unescaped text),
//! numbers `NUM_VALUE` (no text: the value is in `Node::int`).

use crate::json_scan::{Kind, Member, Node, Res, Tape, Unsure, NUM_FLOAT, NUM_INT, NUM_VALUE, RAW};

/// A type of the program (`native_avro.program`), named types resolved.
#[derive(Debug, Clone)]
pub enum AType {
    Null,
    Bool,
    Int,
    Long,
    Double,
    Str,
    /// Never decoded nor written natively (`Unsure`): encrypted fields' binary branch.
    Bytes,
    /// Branches by index.
    Union(Vec<AType>),
    /// Fields in schema order: (name start, name end) in the names blob, type, and what
    /// the writer does when the field is absent (`ABSENT_*`).
    Record(Vec<(u32, u32, AType, u8)>),
    Array(Box<AType>),
}

/// An absent field: the Python writer raises (no default) / writes null / writes another default.
pub const ABSENT_REQUIRED: u8 = 0;
pub const ABSENT_NULL: u8 = 1;
pub const ABSENT_OTHER: u8 = 2;

/// Nesting of the program beyond this is refused at start-up (ours are 3 deep).
pub const MAX_DEPTH: u32 = 32;

/// Decode `buf[body..]` (the Avro body, after the 5-byte header) with `root` onto
/// `tape` (cleared); `buf[..body]` holds the names blob. Returns the root node.
pub fn scan(tape: &mut Tape, buf: &[u8], body: usize, root: &AType) -> Res<u32> {
    tape.nodes.clear();
    tape.members.clear();
    tape.elems.clear();
    let mut r = Reader { s: buf, p: body };
    let v = r.value(root, tape, 0)?;
    if r.p != buf.len() {
        return Err(Unsure); // trailing bytes: Python says schema_mismatch
    }
    Ok(v)
}

struct Reader<'a> {
    s: &'a [u8],
    p: usize,
}

#[inline]
fn node(kind: Kind, start: usize, end: usize, flag: u8, int: i64) -> Node {
    Node { kind, start: start as u32, end: end as u32, first: 0, len: 0, flag, int }
}

fn push(tape: &mut Tape, n: Node) -> u32 {
    tape.nodes.push(n);
    (tape.nodes.len() - 1) as u32
}

impl Reader<'_> {
    /// A zigzag varint in its canonical (shortest) form; anything else is `Unsure`
    /// (Python reads a padded one too: it then decides that record itself).
    #[inline]
    fn long(&mut self) -> Res<i64> {
        let mut n: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = *self.s.get(self.p).ok_or(Unsure)?;
            self.p += 1;
            if shift == 63 && b > 1 {
                return Err(Unsure); // beyond 64 bits, or longer than 10 bytes
            }
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                if b == 0 && shift > 0 {
                    return Err(Unsure); // padded
                }
                break;
            }
            shift += 7;
        }
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
    }

    fn value(&mut self, t: &AType, tape: &mut Tape, depth: u32) -> Res<u32> {
        if depth > MAX_DEPTH {
            return Err(Unsure);
        }
        let p = self.p;
        Ok(match t {
            AType::Null => push(tape, node(Kind::Null, p, p, 0, 0)),
            AType::Bool => {
                let b = *self.s.get(p).ok_or(Unsure)?;
                self.p += 1;
                match b {
                    0 => push(tape, node(Kind::False, p, p + 1, 0, 0)),
                    1 => push(tape, node(Kind::True, p, p + 1, 0, 0)),
                    _ => return Err(Unsure),
                }
            }
            AType::Int | AType::Long => {
                let v = self.long()?;
                // Python reads an int as a long; the kind's check then refuses what does
                // not fit 32 bits: not ours to reproduce
                if matches!(t, AType::Int) && i32::try_from(v).is_err() {
                    return Err(Unsure);
                }
                push(tape, node(Kind::Num, p, self.p, NUM_INT | NUM_VALUE, v))
            }
            AType::Double => {
                let b = self.s.get(p..p + 8).ok_or(Unsure)?;
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                let x = f64::from_le_bytes(w);
                if !x.is_finite() {
                    return Err(Unsure); // NaN and infinities: Python decides what they become
                }
                self.p += 8;
                push(tape, node(Kind::Num, p, self.p, NUM_FLOAT | NUM_VALUE, x.to_bits() as i64))
            }
            AType::Str => {
                let n = self.long()?;
                let n = usize::try_from(n).map_err(|_| Unsure)?;
                let a = self.p;
                let e = a.checked_add(n).ok_or(Unsure)?;
                let text = self.s.get(a..e).ok_or(Unsure)?;
                if std::str::from_utf8(text).is_err() {
                    return Err(Unsure);
                }
                self.p = e;
                push(tape, node(Kind::Str, a, e, RAW, 0))
            }
            AType::Bytes => return Err(Unsure),
            AType::Union(branches) => {
                let i = self.long()?;
                let b = usize::try_from(i).ok().and_then(|i| branches.get(i)).ok_or(Unsure)?;
                return self.value(b, tape, depth + 1);
            }
            AType::Record(fields) => {
                let first = tape.members.len();
                tape.members.resize(first + fields.len(), Member { key_start: 0, key_end: 0, val: 0 });
                let n = push(tape, node(Kind::Obj, p, p, 0, 0));
                for (k, (ka, kb, ft, _)) in fields.iter().enumerate() {
                    let v = self.value(ft, tape, depth + 1)?;
                    tape.members[first + k] = Member { key_start: *ka, key_end: *kb, val: v };
                }
                let nd = &mut tape.nodes[n as usize];
                nd.first = first as u32;
                nd.len = fields.len() as u32;
                nd.end = self.p as u32;
                n
            }
            AType::Array(item) => {
                let mut items: Vec<u32> = Vec::new();
                loop {
                    let c = self.long()?;
                    if c == 0 {
                        break;
                    }
                    // a negative count (a block with its byte size) is legal Avro our
                    // writers never emit: Python decides it; a count beyond the bytes
                    // left cannot be honest
                    if c < 0 || c as u64 > (self.s.len() - self.p) as u64 {
                        return Err(Unsure);
                    }
                    for _ in 0..c {
                        items.push(self.value(item, tape, depth + 1)?);
                    }
                }
                let first = tape.elems.len();
                tape.elems.extend_from_slice(&items);
                let mut nd = node(Kind::Arr, p, self.p, 0, 0);
                nd.first = first as u32;
                nd.len = items.len() as u32;
                push(tape, nd)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let t = AType::Long;
        for (bytes, want) in [(&[0u8][..], Some(0i64)), (&[1], Some(-1)), (&[2], Some(1)), (&[0x80, 0x01], Some(64)),
                              (&[0x80, 0x00], None), (&[0x80], None)] {
            let mut tape = Tape::new();
            let got = scan(&mut tape, bytes, 0, &t).ok().map(|n| tape.node(n).int);
            assert_eq!(got, want, "{bytes:?}");
        }
        let mut max = vec![0xffu8; 9];
        max.push(1);
        let mut tape = Tape::new();
        let n = scan(&mut tape, &max, 0, &t).unwrap();
        assert_eq!(tape.node(n).int, i64::MIN);
        max[9] = 2;
        assert!(scan(&mut tape, &max, 0, &t).is_err());
    }
}
