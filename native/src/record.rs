//! The driver of one record through the stages (see the crate doc): the envelope
//! checks, the consent state, phase 1 (everything that does not depend on `now`, with
//! no side effect) and phase 2 (the clock, then the records appended).

use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::encode;
use crate::json_scan::{Kind, NUM_INT};
use crate::project::{self, Event, ABSENT};
use crate::rule::{before_now, expired, Before, Summary, ANONYMOUS, EXPIRED, NOTHING_PERMITTED, NO_CONSENT};
use crate::{avro_scan, avro_write, Engine};

/// An engine output ready in phase 1: its bytes `outs[a..b]`, its key (a pseudonym in
/// `okeys[x..y]`, or None: the input's key), the categories it sends and its slots
/// `s0..s1` of fields to encrypt (`seal`; empty: the bytes are final).
type Emit = (usize, usize, Option<(usize, usize)>, u64, (usize, usize));

/// What phase 1 (no side effects) decided for one engine.
#[derive(Clone, Copy)]
pub(crate) enum Pending {
    Drop(u8),
    /// Time-dependent: `expired` when `now >= min_ea`; else `post`, else the output
    /// (`out`: output bytes range, output key range (pseudonym) or None, sent mask),
    /// else nothing permitted.
    Timed { min_ea: i64, post: Option<u8>, out: Option<Emit> },
}

/// An OutRecord `(topic, key, value, None)` (a 4-tuple built directly, not from an iterator).
#[inline]
fn record<'py>(py: Python<'py>, topic: &Bound<'py, PyString>, key: &Bound<'py, PyAny>, value: Bound<'py, PyBytes>)
               -> PyResult<Bound<'py, PyTuple>> {
    (topic.clone(), key.clone(), value, py.None()).into_pyobject(py)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
impl Engine {
    /// One record: Ok(true) handled (records appended, counters updated), Ok(false) not
    /// handled and nothing done, Err: a Python error (the clock raised).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn one(&mut self, py: Python<'_>, rec: &Bound<'_, PyAny>, out: &Bound<'_, PyList>, store: &Bound<'_, PyAny>,
           clock: Option<&Bound<'_, PyAny>>, seal: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let Ok(t) = rec.cast::<PyTuple>() else { return Ok(false) };
        if t.len() != 7 {
            return Ok(false);
        }
        let topic = t.get_borrowed_item(0)?;
        let Some(ti) = self.spec.topics.iter().position(|x| topic.is(&x.name)
            || topic.cast::<PyString>().ok().zip(x.name.bind(py).to_str().ok())
                .is_some_and(|(a, b)| a.to_str().is_ok_and(|a| a == b)))
        else {
            return Ok(false);
        };
        // a partition beyond int32 is not a Kafka record: the Python engine refuses it
        let Ok(partition) = t.get_borrowed_item(1)?.extract::<i32>() else { return Ok(false) };
        let partition = i64::from(partition);
        let Ok(offset) = t.get_borrowed_item(2)?.extract::<i64>() else { return Ok(false) };
        let key_obj = t.get_item(3)?;
        let key: Option<&[u8]> = if key_obj.is_none() {
            None
        } else if let Ok(b) = key_obj.cast_exact::<PyBytes>() {
            let kb = b.as_bytes();
            if std::str::from_utf8(kb).is_err() {
                return Ok(false);
            }
            Some(kb)
        } else {
            return Ok(false);
        };
        let value_obj = t.get_item(4)?;
        let Ok(value) = value_obj.cast_exact::<PyBytes>() else { return Ok(false) };
        let raw = value.as_bytes();
        let tspec = &self.spec.topics[ti];
        if raw.len() > tspec.max_bytes {
            return Ok(false);
        }
        let Some(av) = &tspec.avro else {
            let Ok(root) = self.tape.scan(raw) else { return Ok(false) };
            return self.scanned(py, ti, partition, offset, key, &key_obj, raw, root, out, store, clock, seal);
        };
        // Avro: only the codec's own schema id (another one: registry or unknown_schema_id)
        if raw.len() < 5 || raw[..5] != av.header[..] {
            return Ok(false);
        }
        let mut buf = std::mem::take(&mut self.abuf);
        buf.clear();
        buf.extend_from_slice(&av.names);
        let body = buf.len() + 5;
        buf.extend_from_slice(raw);
        let r = match avro_scan::scan(&mut self.tape, &buf, body, &av.root) {
            Ok(root) => self.scanned(py, ti, partition, offset, key, &key_obj, &buf, root, out, store, clock, seal),
            Err(_) => Ok(false),
        };
        self.abuf = buf;
        r
    }

    /// The rest of `one` once the event is on the tape (`src`: the bytes it points into).
    #[allow(clippy::too_many_arguments)]
    fn scanned(&mut self, py: Python<'_>, ti: usize, partition: i64, offset: i64, key: Option<&[u8]>,
               key_obj: &Bound<'_, PyAny>, src: &[u8], root: u32, out: &Bound<'_, PyList>, store: &Bound<'_, PyAny>,
               clock: Option<&Bound<'_, PyAny>>, seal: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let tspec = &self.spec.topics[ti];
        let tape = &self.tape;
        if tape.node(root).kind != Kind::Obj {
            return Ok(false);
        }
        self.slots.clear();
        self.slots.resize(self.spec.top.names.len(), ABSENT);
        for m in tape.obj_members(root) {
            if let Some(id) = self.spec.top.find(&src[m.key_start as usize..m.key_end as usize]) {
                let s = &mut self.slots[id as usize];
                if *s != ABSENT {
                    return Ok(false); // a known key twice
                }
                *s = m.val;
            }
        }
        let sp = &self.spec;
        let get = |id: u16| {
            let v = self.slots[id as usize];
            if v == ABSENT || tape.node(v).kind == Kind::Null { None } else { Some(v) }
        };
        // envelope (codec check + batch._event_problem): anything off -> Python says why
        let Some(event_id) = get(sp.id_event_id) else { return Ok(false) };
        let n = tape.node(event_id);
        if n.kind != Kind::Str || n.start == n.end {
            return Ok(false);
        }
        let Some(tsn) = get(sp.id_ts) else { return Ok(false) };
        let n = tape.node(tsn);
        if n.kind != Kind::Num || n.flag & NUM_INT == 0 || n.int == i64::MAX {
            return Ok(false);
        }
        let ts = n.int;
        let Some(etn) = get(sp.id_event_type) else { return Ok(false) };
        if tape.node(etn).kind != Kind::Str {
            return Ok(false);
        }
        self.subj.clear();
        let mut tmp = Vec::new();
        let et = tape.str_bytes(src, etn, &mut tmp);
        let Some(type_id) = tspec.types.iter().copied().find(|&i| sp.event_types[i as usize] == et) else {
            return Ok(false);
        };
        let subject_node = get(sp.id_subject_id);
        if let Some(sn) = subject_node {
            if tape.node(sn).kind != Kind::Str {
                return Ok(false);
            }
            let mut tmp = Vec::new();
            let s = tape.str_bytes(src, sn, &mut tmp);
            if s.is_empty() || Some(s) != key {
                return Ok(false); // empty: invalid_event; differs from the key: key_mismatch
            }
        }
        if let Some(c) = get(sp.id_context) {
            if tape.node(c).kind != Kind::Obj {
                return Ok(false);
            }
        }
        if tspec.purchase {
            if let Some(c) = get(sp.id_items) {
                if tape.node(c).kind != Kind::Arr {
                    return Ok(false);
                }
            }
        }
        // consent state and summaries
        let n_eng = sp.engines.len();
        let mut cv: Option<i64> = None;
        self.summ_buf.clear();
        let mut subject_str: Option<Bound<'_, PyString>> = None;
        if subject_node.is_none() {
            self.summ_buf.resize(n_eng, Summary::fixed(ANONYMOUS));
        } else {
            let kb = key.unwrap_or_default();
            let subject = PyString::new(py, std::str::from_utf8(kb).unwrap_or_default());
            subject_str = Some(subject.clone());
            let state = if let Ok(d) = store.cast_exact::<PyDict>() {
                d.get_item(&subject)?
            } else {
                let s = store.call_method1("get", (&subject,))?;
                if s.is_none() { None } else { Some(s) }
            };
            match state {
                None => self.summ_buf.resize(n_eng, Summary::fixed(NO_CONSENT)),
                Some(state) => {
                    let Some(c) = self.profiles.summarize(&sp.engines, sp.vocab_fp, &state, &mut self.summ_buf) else {
                        return Ok(false);
                    };
                    cv = c;
                }
            }
        }
        // phase 1: everything that does not depend on `now`, projections included
        if let Some(sn) = subject_node {
            tape.write_str(src, sn, &mut self.subj);
        }
        let ev = Event { src, tape, slots: &self.slots, event_id, event_type: etn, ts };
        self.pend.clear();
        self.outs.clear();
        self.okeys.clear();
        self.sc.seals.clear();
        // envelopes are text: JSON outputs only (an Avro output's are bytes, sealed in Python)
        let can_seal = seal.is_some() && sp.avro_out.is_none();
        for (ei, e) in sp.engines.iter().enumerate() {
            let p = match before_now(&self.summ_buf[ei], ts) {
                Before::Drop(r) => Pending::Drop(r),
                Before::Timed { min_ea, post: Some(r) } => Pending::Timed { min_ea, post: Some(r), out: None },
                Before::Timed { min_ea, post: None } => {
                    let okey = if e.pseudonymize_subject {
                        let Some(k) = e.key.as_ref() else { return Ok(false) };
                        let a = self.okeys.len();
                        k.subject(key.unwrap_or_default(), &mut self.okeys);
                        Some((a, self.okeys.len()))
                    } else {
                        None
                    };
                    let mut sj = Vec::new();
                    let subject_json: &[u8] = match okey {
                        Some((a, b)) => {
                            sj.push(b'"');
                            sj.extend_from_slice(&self.okeys[a..b]);
                            sj.push(b'"');
                            &sj
                        }
                        None => &self.subj,
                    };
                    let a = self.outs.len();
                    let s0 = self.sc.seals.len();
                    let plan = &e.plans[type_id as usize];
                    let Ok(r) = project::project(&ev, e, plan, self.summ_buf[ei].allowed, subject_json, can_seal,
                                                 &mut self.outs, &mut self.sc) else { return Ok(false) };
                    match r {
                        None => Pending::Timed { min_ea, post: None, out: None },
                        Some(sent) => {
                            self.outs.extend_from_slice(b",\"consent_version\":");
                            let Some(c) = cv else { return Ok(false) };
                            encode::int(&mut self.outs, c);
                            self.outs.extend_from_slice(&e.trailer);
                            if let Some(ao) = &sp.avro_out {
                                // the output in Avro: the JSON text just written, re-encoded
                                self.jbuf.clear();
                                self.jbuf.extend_from_slice(&self.outs[a..]);
                                self.outs.truncate(a);
                                let Ok(root) = self.otape.scan(&self.jbuf) else { return Ok(false) };
                                self.outs.extend_from_slice(&ao.out_header);
                                if avro_write::write(&ao.out.root, &self.otape, &self.jbuf, &ao.out.names, Some(root),
                                                     &mut self.outs, &mut self.atmp).is_err() {
                                    return Ok(false);
                                }
                            }
                            let slots = (s0, self.sc.seals.len());
                            Pending::Timed { min_ea, post: None, out: Some((a, self.outs.len(), okey, sent, slots)) }
                        }
                    }
                }
            };
            self.pend.push(p);
        }
        // phase 2: the clock, then the records
        let now = match clock {
            None => now_ms(),
            Some(c) => c.call0()?.extract::<i64>()
                .map_err(|_| PyTypeError::new_err("native engine: the clock must return an int (epoch ms)"))?,
        };
        let sj = &self.subj;
        let subj_w = |h: &mut Vec<u8>| h.extend_from_slice(sj);
        let eid_w = |h: &mut Vec<u8>| tape.write_str(src, event_id, h);
        match &sp.avro_out {
            Some(ao) => {
                let mut tmp = Vec::new();
                let eid = tape.str_bytes(src, event_id, &mut tmp);
                // the subject is the key (checked above)
                self.parts.set_avro(&ao.decision_header, eid, subject_node.and(key), &sp.head_suffix, cv,
                                    &sp.cvp_suffix, ts, now, &tspec.json, partition, offset);
            }
            None => self.parts.set(&eid_w, subject_node.map(|_| &subj_w as &dyn Fn(&mut Vec<u8>)), &sp.head_suffix,
                                   cv, &sp.cvp_suffix, ts, now, &tspec.json, partition, offset),
        }
        let dtopic = sp.decisions_topic.bind(py);
        let mut reasons = [0u8; 64];
        let mut n_reasons = 0;
        // one record per input (CONTRACT §7): step 1 of the rule (anonymous, no consent)
        // fails for every engine alike and is said once, without entries
        let shared = if subject_node.is_none() { Some(ANONYMOUS) } else if cv.is_none() { Some(NO_CONSENT) } else { None };
        self.rec.clear();
        self.rec.extend_from_slice(&self.parts.head);
        if let Some(r) = shared {
            self.rec.extend_from_slice(&sp.shared[r as usize]);
            self.rec.extend_from_slice(&self.parts.cvp);
            self.rec.extend_from_slice(&self.parts.tail);
            let d = PyBytes::new(py, &self.rec);
            out.append(record(py, dtopic, key_obj, d)?)?;
            self.decided += 1;
            self.count_drop(r, n_eng as u64);
            return Ok(true);
        }
        self.rec.extend_from_slice(&sp.opening);
        let first_output = out.len();
        for (ei, e) in sp.engines.iter().enumerate() {
            let reason = match self.pend[ei] {
                Pending::Drop(r) => Some(r),
                Pending::Timed { min_ea, post, out: o } => {
                    if expired(min_ea, now) {
                        Some(EXPIRED)
                    } else if post.is_some() {
                        post
                    } else if let Some((a, b, okey, sent, (s0, s1))) = o {
                        let okey_obj: Bound<'_, PyAny> = match okey {
                            Some((x, y)) => PyBytes::new(py, &self.okeys[x..y]).into_any(),
                            None => key_obj.clone(),
                        };
                        let v = match (s0 < s1, seal, &subject_str) {
                            (false, _, _) => PyBytes::new(py, &self.outs[a..b]),
                            (true, Some(seal), Some(subject)) => {
                                let plan = &e.plans[type_id as usize];
                                let sealed = self.sc.seals.splice(py, seal, subject, plan, &self.outs[a..b], s0, s1)?;
                                PyBytes::new(py, &sealed)
                            }
                            // slots are only made with a sealer, for a subject (unreachable)
                            _ => return Err(PyValueError::new_err("native engine: fields to encrypt without a sealer")),
                        };
                        out.append(record(py, e.topic.bind(py), &okey_obj, v)?)?;
                        self.rec.extend_from_slice(&e.entry_emitted);
                        match &sp.avro_out {
                            Some(ao) => encode::avro_categories(&mut self.rec, &ao.categories, sent),
                            None => {
                                encode::categories(&mut self.rec, &sp.categories_json, sent);
                                self.rec.push(b'}');
                            }
                        }
                        self.emitted[ei] += 1;
                        None
                    } else {
                        Some(NOTHING_PERMITTED)
                    }
                }
            };
            if let Some(r) = reason {
                self.rec.extend_from_slice(&e.entry_dropped[r as usize]);
                if n_reasons < reasons.len() {
                    reasons[n_reasons] = r;
                    n_reasons += 1;
                }
            }
        }
        // the decision record goes before the event's outputs (the audit trail first)
        self.rec.extend_from_slice(&sp.closing);
        self.rec.extend_from_slice(&self.parts.cvp);
        self.rec.extend_from_slice(&self.parts.tail);
        let d = PyBytes::new(py, &self.rec);
        out.insert(first_output, record(py, dtopic, key_obj, d)?)?;
        self.decided += 1;
        for &r in &reasons[..n_reasons] {
            self.count_drop(r, 1);
        }
        Ok(true)
    }

    fn count_drop(&mut self, r: u8, n: u64) {
        if self.dropped[r as usize] == 0 && !self.drop_order.contains(&r) {
            self.drop_order.push(r);
        }
        self.dropped[r as usize] += n;
    }
}
