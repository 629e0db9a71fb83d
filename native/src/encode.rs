//! Stage 5: the records the filter writes, as byte fragments. Each fragment is what
//! `JsonCodec.encode` (orjson) writes for that part of the dict `Filter` builds; the
//! constant parts come pre-encoded from Python (native.py), only the parts that vary
//! per event are written here.
//!
//! The decision record, one per input (CONTRACT §7), is `{"event_id":E,"subject_id":S`
//! and the head suffix (`,"outcome":"decided","reason":`), then `opening`, one entry per
//! engine and `closing`, or a reason shared by every engine; then cvp (`<cv|null>` and the
//! policy version fragment) and the tail
//! `,"ts":..,"decided_at":..,"source_topic":..,"source_partition":..,"source_offset":..}`.
//! Every constant fragment comes from Python (streams/engine/native.py).

/// Decimal text of an integer (as orjson writes it), without going through `core::fmt`
/// (3 integers per decision record: formatting showed in the profile).
#[inline]
pub fn int(out: &mut Vec<u8>, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut u = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// `orjson.dumps(category_names(mask))`
pub fn categories(out: &mut Vec<u8>, names_json: &[Vec<u8>], mask: u64) {
    out.push(b'[');
    let mut first = true;
    for (i, n) in names_json.iter().enumerate() {
        if i < 64 && mask >> i & 1 == 1 {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(n);
        }
    }
    out.push(b']');
}

/// An Avro long (zigzag varint), as `varint.write_long`.
#[inline]
pub fn long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z > 0x7f {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// An Avro string (or bytes): length, then the bytes.
#[inline]
pub fn avro_str(out: &mut Vec<u8>, s: &[u8]) {
    long(out, s.len() as i64);
    out.extend_from_slice(s);
}

/// `AvroFragments.entry`'s categories of `category_names(mask)`: one block, or the empty array.
pub fn avro_categories(out: &mut Vec<u8>, names_avro: &[Vec<u8>], mask: u64) {
    let n = names_avro.iter().enumerate().filter(|(i, _)| *i < 64 && mask >> i & 1 == 1).count();
    if n > 0 {
        long(out, n as i64);
        for (i, s) in names_avro.iter().enumerate() {
            if i < 64 && mask >> i & 1 == 1 {
                out.extend_from_slice(s);
            }
        }
    }
    out.push(0);
}

/// The per-event parts shared by the event's decision records.
pub struct DecisionParts {
    pub head: Vec<u8>,
    pub cvp: Vec<u8>,
    pub tail: Vec<u8>,
}

/// Writes a JSON value into a buffer (an event's id or subject, from the tape).
pub type Writer<'a> = &'a dyn Fn(&mut Vec<u8>);

impl Default for DecisionParts {
    fn default() -> Self {
        Self::new()
    }
}

impl DecisionParts {
    pub fn new() -> Self {
        DecisionParts { head: Vec::with_capacity(96), cvp: Vec::with_capacity(48), tail: Vec::with_capacity(128) }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn set(&mut self, event_id: Writer<'_>, subject: Option<Writer<'_>>, head_suffix: &[u8],
               cv: Option<i64>,
               cvp_suffix: &[u8], ts: i64, now: i64, topic_json: &[u8], partition: i64, offset: i64) {
        let h = &mut self.head;
        h.clear();
        h.extend_from_slice(b"{\"event_id\":");
        event_id(h);
        h.extend_from_slice(b",\"subject_id\":");
        match subject {
            Some(w) => w(h),
            None => h.extend_from_slice(b"null"),
        }
        h.extend_from_slice(head_suffix);
        let c = &mut self.cvp;
        c.clear();
        match cv {
            Some(v) => int(c, v),
            None => c.extend_from_slice(b"null"),
        }
        c.extend_from_slice(cvp_suffix);
        let t = &mut self.tail;
        t.clear();
        t.extend_from_slice(b",\"ts\":");
        int(t, ts);
        t.extend_from_slice(b",\"decided_at\":");
        int(t, now);
        t.extend_from_slice(b",\"source_topic\":");
        t.extend_from_slice(topic_json);
        t.extend_from_slice(b",\"source_partition\":");
        int(t, partition);
        t.extend_from_slice(b",\"source_offset\":");
        int(t, offset);
        t.push(b'}');
    }
}

impl DecisionParts {
    /// `set` in Avro (`fragments.AvroFragments.event`): `event_id` and `subject` are the
    /// decoded texts; `head_suffix` is the outcome's Avro string, `cvp_suffix` the policy
    /// version's, `topic` the source topic's.
    #[allow(clippy::too_many_arguments)]
    pub fn set_avro(&mut self, header: &[u8], event_id: &[u8], subject: Option<&[u8]>, head_suffix: &[u8],
                    cv: Option<i64>, cvp_suffix: &[u8], ts: i64, now: i64, topic: &[u8], partition: i64, offset: i64) {
        let h = &mut self.head;
        h.clear();
        h.extend_from_slice(header);
        h.push(2);
        avro_str(h, event_id);
        match subject {
            Some(s) => {
                h.push(2);
                avro_str(h, s);
            }
            None => h.push(0),
        }
        h.extend_from_slice(head_suffix);
        let c = &mut self.cvp;
        c.clear();
        match cv {
            Some(v) => {
                c.push(2);
                long(c, v);
            }
            None => c.push(0),
        }
        c.extend_from_slice(cvp_suffix);
        let t = &mut self.tail;
        t.clear();
        t.push(2);
        long(t, ts);
        long(t, now);
        t.extend_from_slice(topic);
        long(t, partition);
        long(t, offset);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn longs() {
        for (n, want) in [(0i64, &[0u8][..]), (-1, &[1]), (1, &[2]), (64, &[0x80, 1]), (-65, &[0x81, 1])] {
            let mut out = Vec::new();
            super::long(&mut out, n);
            assert_eq!(out, want);
        }
        let mut out = Vec::new();
        super::long(&mut out, i64::MIN);
        assert_eq!(out, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]);
    }

    #[test]
    fn ints() {
        for n in [0i64, 1, -1, 9, 10, -10, 1_700_000_000_000, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            super::int(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }
}
