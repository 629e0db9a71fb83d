//! Stage 4: the whitelist projection (`decide.project_plan`) over the scanned event:
//! the permitted fields' bytes are spliced into the engine output, in the order the
//! Python engine inserts them into its output dict, nested records merged the same way.
//! Only the plan's paths are read (G1): nothing is copied and then deleted.

use crate::geo::coarsen_country;
use crate::json_scan::{Kind, Res, Tape, Unsure};
use crate::spec::{EngineSpec, Entry, Shape, T_COUNTRY, T_ENCRYPT, T_PSEUDONYMIZE};

/// Per-event working buffers, reused.
#[derive(Default)]
pub struct Scratch {
    blobs: Vec<u8>,
    /// (entry index in the plan, blob start, blob end) of every field that made it
    picked: Vec<(u32, u32, u32)>,
    strbuf: Vec<u8>,
    /// Fields to encrypt in this record's outputs, in the order the Python engine seals
    /// them (`seal::Sealed`): cleared per record, not per projection.
    pub seals: crate::seal::Sealed,
}

/// What the projection needs of the event besides the tape.
pub struct Event<'a> {
    pub src: &'a [u8],
    pub tape: &'a Tape,
    /// top-level key id -> value node (u32::MAX: absent)
    pub slots: &'a [u32],
    pub event_id: u32,
    pub event_type: u32,
    pub ts: i64,
}

pub const ABSENT: u32 = u32::MAX;

impl Event<'_> {
    #[inline]
    pub fn top(&self, id: u16) -> Option<u32> {
        let v = self.slots[id as usize];
        if v == ABSENT || self.tape.node(v).kind == Kind::Null {
            None
        } else {
            Some(v)
        }
    }
}

const HOUR_MS: i64 = 3_600_000;

/// `shape_copy(value, shape)` written out; Ok(false) when the copy is None.
fn copy_shape(t: &Tape, src: &[u8], v: u32, shape: &Shape, out: &mut Vec<u8>) -> Res<bool> {
    match shape {
        Shape::Scalar => {
            t.write_value(src, v, out)?;
            Ok(true)
        }
        Shape::Record(fields) => {
            if t.node(v).kind != Kind::Obj {
                return Ok(false);
            }
            let start = out.len();
            out.push(b'{');
            let mut n = 0;
            for (k, sub) in fields {
                let Some(x) = t.get(src, v, k)? else { continue };
                let mark = out.len();
                if n > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(k);
                out.extend_from_slice(b"\":");
                if copy_shape(t, src, x, sub, out)? {
                    n += 1;
                } else {
                    out.truncate(mark);
                }
            }
            if n == 0 {
                out.truncate(start);
                return Ok(false);
            }
            out.push(b'}');
            Ok(true)
        }
        Shape::Array(sub) => {
            if t.node(v).kind != Kind::Arr {
                return Ok(false);
            }
            out.push(b'[');
            let mut n = 0;
            for &el in t.arr_elems(v) {
                if t.node(el).kind == Kind::Null {
                    continue;
                }
                let mark = out.len();
                if n > 0 {
                    out.push(b',');
                }
                if copy_shape(t, src, el, sub, out)? {
                    n += 1;
                } else {
                    out.truncate(mark);
                }
            }
            out.push(b']');
            Ok(true)
        }
    }
}

#[inline]
fn path(e: &Entry, i: usize) -> &[u8] {
    if i < e.parents.len() {
        &e.parents[i]
    } else {
        &e.leaf
    }
}

#[inline]
fn depth(e: &Entry) -> usize {
    e.parents.len() + 1
}

/// Members of the output object at `d` levels below the top whose path starts like `rep`'s,
/// in first-insertion order (what the Python dict holds).
fn write_level(plan: &[Entry], picked: &[(u32, u32, u32)], blobs: &[u8], rep: Option<usize>, d: usize,
               mut comma: bool, out: &mut Vec<u8>) {
    let same_prefix = |j: usize| match rep {
        None => true,
        Some(r) => (0..d).all(|i| path(&plan[j], i) == path(&plan[r], i)),
    };
    for (k, &(j, a, b)) in picked.iter().enumerate() {
        let j = j as usize;
        let e = &plan[j];
        if depth(e) <= d || !same_prefix(j) {
            continue;
        }
        let key = path(e, d);
        let seen = picked[..k].iter().any(|&(i, _, _)| {
            let i = i as usize;
            depth(&plan[i]) > d && same_prefix(i) && path(&plan[i], d) == key
        });
        if seen {
            continue;
        }
        if comma {
            out.push(b',');
        }
        comma = true;
        out.push(b'"');
        out.extend_from_slice(key);
        out.extend_from_slice(b"\":");
        if depth(e) == d + 1 {
            out.extend_from_slice(&blobs[a as usize..b as usize]);
        } else {
            out.push(b'{');
            write_level(plan, picked, blobs, Some(j), d + 1, false, out);
            out.push(b'}');
        }
    }
}

/// The engine output up to (not including) its trailer, appended to `out`:
/// Ok(Some(sent mask)), or Ok(None) when no permitted field is present (nothing is written).
/// `subject_json`: the output's `subject_id` as JSON (the id, or its pseudonym).
/// `seal`: fields to encrypt get a mark (`seal::Sealed`), else they make the record `Unsure`.
#[allow(clippy::too_many_arguments)]
pub fn project(ev: &Event<'_>, eng: &EngineSpec, plan: &[Entry], allowed: u64, subject_json: &[u8],
               seal: bool, out: &mut Vec<u8>, sc: &mut Scratch) -> Res<Option<u64>> {
    let (t, src) = (ev.tape, ev.src);
    sc.blobs.clear();
    sc.picked.clear();
    let mut sent = 0u64;
    for (k, ent) in plan.iter().enumerate() {
        if allowed & ent.bit == 0 {
            continue;
        }
        let Some(mut v) = ev.top(ent.head) else { continue };
        let mut found = true;
        for key in &ent.rest {
            let next = if t.node(v).kind == Kind::Obj { t.get(src, v, key)? } else { None };
            match next {
                Some(x) => v = x,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let a = sc.blobs.len();
        let ok = match ent.code {
            // a field to encrypt is never copied as it is: a mark stands where its envelope
            // goes once the record is sure (`seal`); without a sealer (Avro outputs, whose
            // envelopes are bytes) the whole record goes to the Python engine
            T_ENCRYPT => {
                if !seal || t.node(v).kind != Kind::Str {
                    return Err(Unsure);
                }
                let mut tmp = Vec::new();
                let text = t.str_bytes(src, v, &mut tmp);
                sc.seals.mark(k as u32, text, &mut sc.blobs)?;
                true
            }
            T_COUNTRY => coarsen_country(t, src, v, &mut sc.blobs)?,
            T_PSEUDONYMIZE => {
                let key = eng.key.as_ref().ok_or(Unsure)?;
                let node = *t.node(v);
                // pseudonym_input: a string's UTF-8, else the value's canonical JSON
                sc.strbuf.clear();
                match (&ent.shape, node.kind) {
                    (Shape::Scalar, Kind::Str) => {
                        let mut tmp = Vec::new();
                        let s = t.str_bytes(src, v, &mut tmp);
                        sc.strbuf.extend_from_slice(s);
                    }
                    (Shape::Scalar, Kind::Num | Kind::True | Kind::False) => t.write_value(src, v, &mut sc.strbuf)?,
                    _ => return Err(Unsure),
                }
                sc.blobs.push(b'"');
                key.field(&ent.dotted, &sc.strbuf, &mut sc.blobs);
                sc.blobs.push(b'"');
                true
            }
            _ => copy_shape(t, src, v, &ent.shape, &mut sc.blobs)?,
        };
        if !ok {
            sc.blobs.truncate(a);
            continue;
        }
        sc.picked.push((k as u32, a as u32, sc.blobs.len() as u32));
        sent |= ent.bit;
    }
    if sent == 0 {
        return Ok(None);
    }
    let ts = if eng.ts_hour { ev.ts.checked_sub(ev.ts.rem_euclid(HOUR_MS)).ok_or(Unsure)? } else { ev.ts };
    out.extend_from_slice(b"{\"event_id\":");
    t.write_str(src, ev.event_id, out);
    out.extend_from_slice(b",\"subject_id\":");
    out.extend_from_slice(subject_json);
    out.extend_from_slice(b",\"event_type\":");
    t.write_str(src, ev.event_type, out);
    out.extend_from_slice(b",\"ts\":");
    crate::encode::int(out, ts);
    write_level(plan, &sc.picked, &sc.blobs, None, 0, true, out);
    Ok(Some(sent))
}
