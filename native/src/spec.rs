//! The compiled policy as the native engine holds it: built once from the compact spec
//! `streams/engine/native.py` exports from a `CompiledPolicy` (plain lists, ints and
//! bytes; see `spec_of` there), never re-read per event.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::avro_scan::{AType, MAX_DEPTH};
use crate::pseudonym::Keyed;
use crate::rule::N_REASONS;

/// The shape of a field value (`policy.EVENT_PAYLOADS`): what a copy keeps.
#[derive(Debug, Clone)]
pub enum Shape {
    /// A scalar: copied as it is.
    Scalar,
    /// A record: these keys only, in this order.
    Record(Vec<(Vec<u8>, Shape)>),
    /// An array of this shape.
    Array(Box<Shape>),
}

/// transforms (policy.T_*)
pub const T_KEEP: u8 = 0;
pub const T_PSEUDONYMIZE: u8 = 2;
pub const T_COUNTRY: u8 = 3;
/// `encrypt` (CONTRACT §10): never projected here. An output that would carry such a field
/// (allowed and present) makes the projection `Unsure`, so the record goes to the Python
/// engine, which holds the data keys; an output of the same engine without one is written here.
pub const T_ENCRYPT: u8 = 5;

/// One field of a plan (`policy._compile_engine.plan_for`).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index of the top-level key in `Spec::top`.
    pub head: u16,
    pub rest: Vec<Vec<u8>>,
    pub parents: Vec<Vec<u8>>,
    pub leaf: Vec<u8>,
    pub dotted: Vec<u8>,
    pub bit: u64,
    pub code: u8,
    pub shape: Shape,
}

pub struct EngineSpec {
    pub topic: Py<PyString>,
    pub vocab_fp: i64,
    pub needs_idx: Vec<u32>,
    pub needs_mask: u64,
    pub tps_bit: u64,
    /// This engine's bit of a profile's gates mask (consent_rules: a signal closed its gate).
    pub gate_bit: u64,
    pub third_party: bool,
    pub jurisdictions: Option<Vec<Vec<u8>>>,
    pub categories_mask: u64,
    pub pseudonymize_subject: bool,
    pub ts_hour: bool,
    /// None: no key was given (no secret); pseudonymizing events fall back to Python.
    pub key: Option<Keyed>,
    /// This engine's entry of a decision record, per drop reason (its separator included),
    /// and the start of its entry when it emitted (the categories and `}` follow).
    pub entry_dropped: Vec<Vec<u8>>,
    pub entry_emitted: Vec<u8>,
    /// Engine output trailer after the consent version.
    pub trailer: Vec<u8>,
    /// Plan per event type id (`Spec::event_types`).
    pub plans: Vec<Vec<Entry>>,
}

/// The top-level keys the engine reads, indexed by length for a cheap match.
pub struct TopIndex {
    pub names: Vec<Vec<u8>>,
    /// the first 8 bytes of each name as a word (zero-padded)
    words: Vec<u64>,
    by_len: Vec<Vec<u16>>,
}

#[inline]
fn first_word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = b.len().min(8);
    w[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(w)
}

impl TopIndex {
    fn new(names: Vec<Vec<u8>>) -> Self {
        let mut by_len: Vec<Vec<u16>> = vec![Vec::new(); 33];
        for (i, n) in names.iter().enumerate() {
            if n.len() < by_len.len() {
                by_len[n.len()].push(i as u16);
            }
        }
        let words = names.iter().map(|n| first_word(n)).collect();
        TopIndex { names, words, by_len }
    }

    #[inline]
    pub fn find(&self, key: &[u8]) -> Option<u16> {
        let cands = self.by_len.get(key.len())?;
        let w = first_word(key);
        cands.iter().copied().find(|&i| {
            self.words[i as usize] == w && (key.len() <= 8 || self.names[i as usize][8..] == key[8..])
        })
    }

    pub fn id(&self, name: &[u8]) -> Option<u16> {
        self.find(name)
    }
}

/// An input event topic.
pub struct TopicSpec {
    pub name: Py<PyString>,
    /// The topic as the decision record writes it: orjson.dumps(topic), or its Avro string.
    pub json: Vec<u8>,
    /// Event type ids this topic's kind accepts.
    pub types: Vec<u16>,
    pub purchase: bool,
    pub max_bytes: usize,
    /// Avro input (Confluent wire format): None for JSON.
    pub avro: Option<AvroInput>,
}

/// An Avro input topic: the codec's own header and its schema's program.
pub struct AvroInput {
    /// Magic byte and schema id: any other id goes to Python (registry, unknown id).
    pub header: Vec<u8>,
    /// The record's field names, which the program's names point into.
    pub names: Vec<u8>,
    pub root: AType,
}

/// A type of `native_avro.program`: `[code]`, `["union", [t..]]`,
/// `["record", [[name start, name end, t, absent]..]]`, `["array", t]`.
fn atype(v: &Bound<'_, PyAny>, names_len: usize, depth: u32) -> PyResult<AType> {
    let bad = || PyValueError::new_err("native spec: not an Avro type program");
    if depth > MAX_DEPTH {
        return Err(bad());
    }
    let code: String = v.get_item(0)?.extract()?;
    Ok(match code.as_str() {
        "null" => AType::Null,
        "boolean" => AType::Bool,
        "int" => AType::Int,
        "long" => AType::Long,
        "double" => AType::Double,
        "string" => AType::Str,
        "bytes" => AType::Bytes,
        "union" => {
            let mut bs = Vec::new();
            for b in v.get_item(1)?.try_iter()? {
                bs.push(atype(&b?, names_len, depth + 1)?);
            }
            AType::Union(bs)
        }
        "record" => {
            let mut fs = Vec::new();
            for f in v.get_item(1)?.try_iter()? {
                let f = f?;
                let a: u32 = f.get_item(0)?.extract()?;
                let b: u32 = f.get_item(1)?.extract()?;
                if a > b || b as usize > names_len {
                    return Err(bad());
                }
                let absent: u8 = f.get_item(3)?.extract()?;
                fs.push((a, b, atype(&f.get_item(2)?, names_len, depth + 1)?, absent));
            }
            AType::Record(fs)
        }
        "array" => AType::Array(Box::new(atype(&v.get_item(1)?, names_len, depth + 1)?)),
        _ => return Err(bad()),
    })
}

/// The output side in Avro: the output codec's header and schema program, and the
/// decision record fragments' Avro bits (the fragments themselves are in the spec).
pub struct AvroOutput {
    pub out_header: Vec<u8>,
    pub out: AvroInput,
    pub decision_header: Vec<u8>,
    /// per category: its Avro string
    pub categories: Vec<Vec<u8>>,
}

fn avro_output(v: &Bound<'_, PyAny>) -> PyResult<Option<AvroOutput>> {
    if v.is_none() {
        return Ok(None);
    }
    let d = v.cast::<PyDict>()?;
    let Some(out) = avro_input(&item(d, "output")?)? else {
        return Err(PyValueError::new_err("native spec: avro_out without an output program"));
    };
    Ok(Some(AvroOutput {
        out_header: out.header.clone(),
        out,
        decision_header: bytes_of(&item(d, "decision_header")?)?,
        categories: strs(&item(d, "categories")?)?,
    }))
}

fn avro_input(v: &Bound<'_, PyAny>) -> PyResult<Option<AvroInput>> {
    if v.is_none() {
        return Ok(None);
    }
    let d = v.cast::<PyDict>()?;
    let names = bytes_of(&item(d, "names")?)?;
    let root = atype(&item(d, "program")?, names.len(), 0)?;
    if !matches!(root, AType::Record(_)) {
        return Err(PyValueError::new_err("native spec: an Avro event schema is a record"));
    }
    Ok(Some(AvroInput { header: bytes_of(&item(d, "header")?)?, names, root }))
}

pub struct Spec {
    pub vocab_fp: i64,
    /// After the envelope's ids in a decision record.
    pub head_suffix: Vec<u8>,
    /// Before the first entry, after the last one, and per reason the part of a record
    /// whose reason is shared by every engine (empty: not a shared reason).
    pub opening: Vec<u8>,
    pub closing: Vec<u8>,
    pub shared: Vec<Vec<u8>>,
    /// `,"policy_version":<v>` (after the consent version)
    pub cvp_suffix: Vec<u8>,
    pub top: TopIndex,
    pub event_types: Vec<Vec<u8>>,
    pub topics: Vec<TopicSpec>,
    pub decisions_topic: Py<PyString>,
    pub categories_json: Vec<Vec<u8>>,
    pub engines: Vec<EngineSpec>,
    /// Avro outputs and decision records (None: JSON; the fragments above are then JSON).
    pub avro_out: Option<AvroOutput>,
    /// Top ids of the envelope fields.
    pub id_event_id: u16,
    pub id_subject_id: u16,
    pub id_event_type: u16,
    pub id_ts: u16,
    pub id_context: u16,
    pub id_items: u16,
}

fn bytes_of(v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(s.to_str()?.as_bytes().to_vec());
    }
    v.extract::<Vec<u8>>()
}

fn item<'py>(d: &Bound<'py, PyDict>, k: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(k)?.ok_or_else(|| PyValueError::new_err(format!("native spec: missing {k:?}")))
}

fn shape_of(v: &Bound<'_, PyAny>) -> PyResult<Shape> {
    if v.is_none() {
        return Ok(Shape::Scalar);
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut fields = Vec::new();
        for (k, sub) in d.iter() {
            fields.push((bytes_of(&k)?, shape_of(&sub)?));
        }
        return Ok(Shape::Record(fields));
    }
    if let Ok(l) = v.cast::<PyList>() {
        if l.len() == 1 {
            return Ok(Shape::Array(Box::new(shape_of(&l.get_item(0)?)?)));
        }
    }
    Err(PyValueError::new_err("native spec: a shape is None, a dict or a one-element list"))
}

fn strs(v: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for x in v.try_iter()? {
        out.push(bytes_of(&x?)?);
    }
    Ok(out)
}

impl Spec {
    pub fn from_py(d: &Bound<'_, PyDict>) -> PyResult<Spec> {
        let top = TopIndex::new(strs(&item(d, "top_names")?)?);
        let need = |n: &str| top.id(n.as_bytes()).ok_or_else(|| PyValueError::new_err(format!("native spec: {n} not in top_names")));
        let event_types = strs(&item(d, "event_types")?)?;
        let type_id = |t: &[u8]| -> PyResult<u16> {
            event_types
                .iter()
                .position(|x| x.as_slice() == t)
                .map(|i| i as u16)
                .ok_or_else(|| PyValueError::new_err("native spec: unknown event type"))
        };
        let mut topics = Vec::new();
        for t in item(d, "topics")?.try_iter()? {
            let t = t?;
            let t = t.cast::<PyDict>()?;
            let mut types = Vec::new();
            for x in strs(&item(t, "types")?)? {
                types.push(type_id(&x)?);
            }
            topics.push(TopicSpec {
                name: item(t, "name")?.cast_into::<PyString>()?.unbind(),
                json: bytes_of(&item(t, "json")?)?,
                types,
                purchase: item(t, "purchase")?.extract()?,
                max_bytes: item(t, "max_bytes")?.extract()?,
                avro: avro_input(&item(t, "avro")?)?,
            });
        }
        let hex_chars: usize = item(d, "hex_chars")?.extract()?;
        let vocab_fp: i64 = item(d, "vocab_fp")?.extract()?;
        let mut engines = Vec::new();
        for e in item(d, "engines")?.try_iter()? {
            let e = e?;
            let e = e.cast::<PyDict>()?;
            let entry_dropped = strs(&item(e, "entry_dropped")?)?;
            if entry_dropped.len() != N_REASONS {
                return Err(PyValueError::new_err("native spec: one dropped entry per reason"));
            }
            let jur = item(e, "jurisdictions")?;
            let key = item(e, "key")?;
            let mut plans = vec![Vec::new(); event_types.len()];
            let pd = item(e, "plans")?;
            let pd = pd.cast::<PyDict>()?;
            for (t, plan) in pd.iter() {
                let tid = type_id(&bytes_of(&t)?)?;
                let mut entries = Vec::new();
                for ent in plan.try_iter()? {
                    let ent = ent?;
                    let head = bytes_of(&ent.get_item(0)?)?;
                    entries.push(Entry {
                        head: top.id(&head).ok_or_else(|| PyValueError::new_err("native spec: plan head not in top_names"))?,
                        rest: strs(&ent.get_item(1)?)?,
                        parents: strs(&ent.get_item(2)?)?,
                        leaf: bytes_of(&ent.get_item(3)?)?,
                        dotted: bytes_of(&ent.get_item(4)?)?,
                        bit: ent.get_item(5)?.extract()?,
                        code: ent.get_item(6)?.extract()?,
                        shape: shape_of(&ent.get_item(7)?)?,
                    });
                }
                plans[tid as usize] = entries;
            }
            engines.push(EngineSpec {
                topic: item(e, "topic")?.cast_into::<PyString>()?.unbind(),
                vocab_fp,
                needs_idx: item(e, "needs_idx")?.extract()?,
                needs_mask: item(e, "needs_mask")?.extract()?,
                tps_bit: item(e, "tps_bit")?.extract()?,
                gate_bit: item(e, "gate_bit")?.extract()?,
                third_party: item(e, "third_party")?.extract()?,
                jurisdictions: if jur.is_none() { None } else { Some(strs(&jur)?) },
                categories_mask: item(e, "categories_mask")?.extract()?,
                pseudonymize_subject: item(e, "pseudonymize_subject")?.extract()?,
                ts_hour: item(e, "ts_hour")?.extract()?,
                key: if key.is_none() { None } else { Some(Keyed::new(&key.extract::<Vec<u8>>()?, hex_chars)) },
                entry_dropped,
                entry_emitted: bytes_of(&item(e, "entry_emitted")?)?,
                trailer: bytes_of(&item(e, "trailer")?)?,
                plans,
            });
        }
        for e in &engines {
            if e.needs_idx.iter().any(|&i| i >= 64) {
                return Err(PyValueError::new_err("native spec: purpose index beyond 63"));
            }
        }
        let shared = strs(&item(d, "shared")?)?;
        if shared.len() != N_REASONS {
            return Err(PyValueError::new_err("native spec: one shared fragment per reason"));
        }
        Ok(Spec {
            vocab_fp,
            head_suffix: bytes_of(&item(d, "head_suffix")?)?,
            opening: bytes_of(&item(d, "opening")?)?,
            closing: bytes_of(&item(d, "closing")?)?,
            shared,
            cvp_suffix: bytes_of(&item(d, "cvp_suffix")?)?,
            id_event_id: need("event_id")?,
            id_subject_id: need("subject_id")?,
            id_event_type: need("event_type")?,
            id_ts: need("ts")?,
            id_context: need("context")?,
            id_items: need("items")?,
            top,
            event_types,
            topics,
            decisions_topic: item(d, "decisions_topic")?.cast_into::<PyString>()?.unbind(),
            categories_json: strs(&item(d, "categories_json")?)?,
            engines,
            avro_out: avro_output(&item(d, "avro_out")?)?,
        })
    }
}
