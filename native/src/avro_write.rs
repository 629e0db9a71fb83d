//! Stage 5 for Avro outputs: an engine output, as the projection wrote it (a JSON
//! object, `project`), re-encoded with the output schema's program, byte for byte as
//! the compiled writer (`avro_compiler`, `_Gen.write`) encodes the dict the Python
//! engine builds. The JSON text is ours (well formed, orjson's), so the re-scan is
//! cheap; a value the writer would refuse or might write otherwise is `Unsure`, and
//! the record goes to the Python engine (which then says why, or writes it).

use crate::avro_scan::{AType, ABSENT_NULL, ABSENT_REQUIRED};
use crate::encode::{avro_str, long};
use crate::json_scan::{Kind, Res, Tape, Unsure, NUM_FLOAT, NUM_FLOAT_TEXT, NUM_INT};

/// Largest integer a double holds exactly (the writer packs `float(int)`; beyond, a
/// rounding we would have to reproduce: not worth it, no event of ours has one).
const F64_EXACT: i64 = 1 << 53;

/// Write `v` (None: absent or null) with type `t`. `names`: the program's names blob.
pub fn write(t: &AType, tape: &Tape, src: &[u8], names: &[u8], v: Option<u32>, out: &mut Vec<u8>,
             tmp: &mut Vec<u8>) -> Res<()> {
    let v = v.filter(|&i| tape.node(i).kind != Kind::Null);
    match t {
        AType::Bytes => return Err(Unsure),
        AType::Null => {
            if v.is_some() {
                return Err(Unsure);
            }
        }
        AType::Bool => match v.map(|i| tape.node(i).kind) {
            Some(Kind::True) => out.push(1),
            Some(Kind::False) => out.push(0),
            _ => return Err(Unsure),
        },
        AType::Int | AType::Long => {
            let n = tape.node(v.ok_or(Unsure)?);
            if n.kind != Kind::Num || n.flag & NUM_INT == 0 {
                return Err(Unsure);
            }
            if matches!(t, AType::Int) && i32::try_from(n.int).is_err() {
                return Err(Unsure);
            }
            long(out, n.int);
        }
        AType::Double => {
            let n = tape.node(v.ok_or(Unsure)?);
            if n.kind != Kind::Num {
                return Err(Unsure);
            }
            let x = if n.flag & NUM_INT != 0 {
                if !(-F64_EXACT..=F64_EXACT).contains(&n.int) {
                    return Err(Unsure);
                }
                n.int as f64
            } else if n.flag & (NUM_FLOAT | NUM_FLOAT_TEXT) != 0 {
                let text = &src[n.start as usize..n.end as usize];
                std::str::from_utf8(text).ok().and_then(|t| t.parse::<f64>().ok()).ok_or(Unsure)?
            } else {
                return Err(Unsure);
            };
            out.extend_from_slice(&x.to_le_bytes());
        }
        AType::Str => {
            let i = v.ok_or(Unsure)?;
            if tape.node(i).kind != Kind::Str {
                return Err(Unsure);
            }
            avro_str(out, tape.str_bytes(src, i, tmp));
        }
        AType::Union(bs) => {
            let null = bs.iter().position(|b| matches!(b, AType::Null));
            let Some(i) = v else {
                long(out, null.ok_or(Unsure)? as i64);
                return Ok(());
            };
            // the writer's unions: [null, T], and [null, string, bytes] (encrypted fields,
            // a str takes the string branch); JSON text holds no bytes
            let others: Vec<usize> = (0..bs.len()).filter(|&k| !matches!(bs[k], AType::Null)).collect();
            let pick = match others.as_slice() {
                [k] => *k,
                [_, _] => {
                    if tape.node(i).kind != Kind::Str {
                        return Err(Unsure);
                    }
                    *others.iter().find(|&&k| matches!(bs[k], AType::Str)).ok_or(Unsure)?
                }
                _ => return Err(Unsure),
            };
            long(out, pick as i64);
            write(&bs[pick], tape, src, names, Some(i), out, tmp)?;
        }
        AType::Record(fields) => {
            let i = v.ok_or(Unsure)?;
            if tape.node(i).kind != Kind::Obj {
                return Err(Unsure);
            }
            for (a, b, ft, absent) in fields {
                let name = &names[*a as usize..*b as usize];
                let mut found = None;
                for m in tape.obj_members(i) {
                    if &src[m.key_start as usize..m.key_end as usize] == name {
                        found = Some(m.val);
                    }
                }
                if found.is_none() && *absent != ABSENT_NULL {
                    // required: the writer raises; another default: not ours to write
                    let _ = ABSENT_REQUIRED;
                    return Err(Unsure);
                }
                write(ft, tape, src, names, found, out, tmp)?;
            }
        }
        AType::Array(item) => {
            let i = v.ok_or(Unsure)?;
            if tape.node(i).kind != Kind::Arr {
                return Err(Unsure);
            }
            let elems = tape.arr_elems(i);
            if !elems.is_empty() {
                long(out, elems.len() as i64);
                for &e in elems {
                    write(item, tape, src, names, Some(e), out, tmp)?;
                }
            }
            out.push(0);
        }
    }
    Ok(())
}
