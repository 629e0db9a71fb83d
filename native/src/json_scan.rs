//! Stage 1 of the hot path: the JSON scanner.
//!
//! One pass over an event's raw bytes builds a flat tape of nodes that point into
//! the input (no copies, no Python objects). The scanner accepts only what it is
//! *sure* `orjson.loads` accepts with the same meaning; anything else (an exponent,
//! an escaped object key, a lone surrogate escape, deep nesting, a syntax error)
//! is `Unsure`, and the caller hands the record to the Python engine, which
//! classifies it (DLQ reason and message) exactly as before. So the native engine
//! never has to reproduce an error message: it only has to be right about what it
//! accepts.
//!
//! Numbers are read in `json_number`; the writer, which emits a node the way
//! `orjson.dumps` writes the value `orjson.loads` made of it, is `json_write`.

/// The scanner did not accept the input, or the writer cannot reproduce orjson's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsure;

pub type Res<T> = Result<T, Unsure>;

/// Nesting beyond this is `Unsure` (orjson's own limit is higher; our events are
/// 3 levels deep, and a bound keeps the recursion's stack small).
pub const MAX_DEPTH: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    True,
    False,
    Num,
    Str,
    Arr,
    Obj,
}

/// Str: the text holds a backslash escape.
pub const ESCAPED: u8 = 1;
/// Num: an integer in the 64-bit range written as orjson writes it (`int` holds it).
pub const NUM_INT: u8 = 2;
/// Num: a finite float, written from its value (Rust's `{:?}` is orjson's text in
/// [1e-4, 1e15); outside it: Unsure).
pub const NUM_FLOAT: u8 = 4;
/// Num: a float whose text already is orjson's text for it.
pub const NUM_FLOAT_TEXT: u8 = 8;
/// Num without text (decoded from Avro, `avro_scan`): `int` holds the integer (NUM_INT)
/// or the f64's bits (NUM_FLOAT).
pub const NUM_VALUE: u8 = 16;
/// Str whose bytes are the decoded text itself (Avro: valid UTF-8, unescaped): written
/// escaped the orjson way.
pub const RAW: u8 = 32;

#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub kind: Kind,
    /// Value text `[start, end)`; for strings, inside the quotes.
    pub start: u32,
    pub end: u32,
    /// Obj: `members[first..first + len]`; Arr: `elems[first..first + len]`.
    pub first: u32,
    pub len: u32,
    pub flag: u8,
    pub int: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct Member {
    /// Key text inside the quotes (never escaped: an escaped key is `Unsure`).
    pub key_start: u32,
    pub key_end: u32,
    pub val: u32,
}

/// The tape of one document; reused across events (cleared, not reallocated).
#[derive(Default)]
pub struct Tape {
    pub nodes: Vec<Node>,
    pub members: Vec<Member>,
    pub elems: Vec<u32>,
    mstack: Vec<Member>,
    estack: Vec<u32>,
}

impl Tape {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scan `src` (one JSON document, any UTF-8 already checked by the caller or not:
    /// it is checked here); returns the root node's index.
    pub fn scan(&mut self, src: &[u8]) -> Res<u32> {
        self.nodes.clear();
        self.members.clear();
        self.elems.clear();
        self.mstack.clear();
        self.estack.clear();
        let mut p = Parser { s: src, i: 0 };
        p.ws();
        let root = self.value(&mut p, 0)?;
        p.ws();
        if p.i != src.len() {
            return Err(Unsure);
        }
        Ok(root)
    }

    fn push(&mut self, kind: Kind, start: usize, end: usize) -> u32 {
        self.nodes.push(Node { kind, start: start as u32, end: end as u32, first: 0, len: 0, flag: 0, int: 0 });
        (self.nodes.len() - 1) as u32
    }

    fn value(&mut self, p: &mut Parser, depth: u32) -> Res<u32> {
        if depth > MAX_DEPTH {
            return Err(Unsure);
        }
        match p.peek() {
            Some(b'{') => self.object(p, depth),
            Some(b'[') => self.array(p, depth),
            Some(b'"') => {
                let (a, b, esc) = p.string()?;
                let n = self.push(Kind::Str, a, b);
                if esc {
                    self.nodes[n as usize].flag = ESCAPED;
                }
                Ok(n)
            }
            Some(b't') => p.literal(b"true").map(|(a, b)| self.push(Kind::True, a, b)),
            Some(b'f') => p.literal(b"false").map(|(a, b)| self.push(Kind::False, a, b)),
            Some(b'n') => p.literal(b"null").map(|(a, b)| self.push(Kind::Null, a, b)),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let (a, b, flag, int) = p.number()?;
                let n = self.push(Kind::Num, a, b);
                let node = &mut self.nodes[n as usize];
                node.flag = flag;
                node.int = int;
                Ok(n)
            }
            _ => Err(Unsure),
        }
    }

    fn object(&mut self, p: &mut Parser, depth: u32) -> Res<u32> {
        let start = p.i;
        p.i += 1;
        let base = self.mstack.len();
        p.ws();
        if p.peek() == Some(b'}') {
            p.i += 1;
        } else {
            loop {
                if p.peek() != Some(b'"') {
                    return Err(Unsure);
                }
                let (ka, kb, esc) = p.string()?;
                if esc {
                    return Err(Unsure);
                }
                p.ws();
                if p.peek() != Some(b':') {
                    return Err(Unsure);
                }
                p.i += 1;
                p.ws();
                let v = self.value(p, depth + 1)?;
                self.mstack.push(Member { key_start: ka as u32, key_end: kb as u32, val: v });
                p.ws();
                match p.peek() {
                    Some(b',') => {
                        p.i += 1;
                        p.ws();
                    }
                    Some(b'}') => {
                        p.i += 1;
                        break;
                    }
                    _ => return Err(Unsure),
                }
            }
        }
        let n = self.push(Kind::Obj, start, p.i);
        let first = self.members.len();
        self.members.extend(self.mstack.drain(base..));
        let node = &mut self.nodes[n as usize];
        node.first = first as u32;
        node.len = (self.members.len() - first) as u32;
        Ok(n)
    }

    fn array(&mut self, p: &mut Parser, depth: u32) -> Res<u32> {
        let start = p.i;
        p.i += 1;
        let base = self.estack.len();
        p.ws();
        if p.peek() == Some(b']') {
            p.i += 1;
        } else {
            loop {
                let v = self.value(p, depth + 1)?;
                self.estack.push(v);
                p.ws();
                match p.peek() {
                    Some(b',') => {
                        p.i += 1;
                        p.ws();
                    }
                    Some(b']') => {
                        p.i += 1;
                        break;
                    }
                    _ => return Err(Unsure),
                }
            }
        }
        let n = self.push(Kind::Arr, start, p.i);
        let first = self.elems.len();
        self.elems.extend(self.estack.drain(base..));
        let node = &mut self.nodes[n as usize];
        node.first = first as u32;
        node.len = (self.elems.len() - first) as u32;
        Ok(n)
    }

    pub fn node(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    /// `obj.get(key)` of the decoded dict: the member's value node, None when the key is
    /// absent or its value is null (both are None to the engine). A key present twice is
    /// `Unsure` (orjson keeps the last value at the first position; we never rely on it).
    pub fn get(&self, src: &[u8], obj: u32, key: &[u8]) -> Res<Option<u32>> {
        let n = self.node(obj);
        debug_assert_eq!(n.kind, Kind::Obj);
        let mut found: Option<u32> = None;
        for m in &self.members[n.first as usize..(n.first + n.len) as usize] {
            if short_eq(&src[m.key_start as usize..m.key_end as usize], key) {
                if found.is_some() {
                    return Err(Unsure);
                }
                found = Some(m.val);
            }
        }
        Ok(found.filter(|&v| self.node(v).kind != Kind::Null))
    }

    pub fn obj_members(&self, obj: u32) -> &[Member] {
        let n = self.node(obj);
        &self.members[n.first as usize..(n.first + n.len) as usize]
    }

    pub fn arr_elems(&self, arr: u32) -> &[u32] {
        let n = self.node(arr);
        &self.elems[n.first as usize..(n.first + n.len) as usize]
    }

    /// The decoded text of a string node (escapes resolved).
    pub fn str_bytes<'a>(&self, src: &'a [u8], i: u32, buf: &'a mut Vec<u8>) -> &'a [u8] {
        let n = self.node(i);
        let raw = &src[n.start as usize..n.end as usize];
        if n.flag & ESCAPED == 0 {
            return raw;
        }
        buf.clear();
        unescape(raw, buf);
        buf
    }
}


/// Equality of two short byte strings (object keys) without a call to memcmp: keys are
/// compared a word at a time, most differ in length or in their first word.
#[inline]
pub fn short_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut ca = a.chunks(8);
    let mut cb = b.chunks(8);
    loop {
        match (ca.next(), cb.next()) {
            (Some(x), Some(y)) => {
                let mut wx = [0u8; 8];
                let mut wy = [0u8; 8];
                wx[..x.len()].copy_from_slice(x);
                wy[..y.len()].copy_from_slice(y);
                if u64::from_le_bytes(wx) != u64::from_le_bytes(wy) {
                    return false;
                }
            }
            _ => return true,
        }
    }
}

fn hex4(s: &[u8]) -> Option<u32> {
    if s.len() < 4 {
        return None;
    }
    let mut v = 0u32;
    for &c in &s[..4] {
        let d = (c as char).to_digit(16)?;
        v = v * 16 + d;
    }
    Some(v)
}

/// Resolve the escapes of a string the scanner accepted (so every escape is valid).
pub(crate) fn unescape(raw: &[u8], buf: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            buf.push(c);
            i += 1;
            continue;
        }
        let e = raw[i + 1];
        i += 2;
        let ch = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => {
                let hi = hex4(&raw[i..]).unwrap_or(0xfffd);
                i += 4;
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    let lo = hex4(&raw[i + 2..]).unwrap_or(0xDC00);
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(cp).unwrap_or('\u{fffd}')
            }
        };
        let mut tmp = [0u8; 4];
        buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
    }
}

/// Byte classes inside a string: 0 plain, Q quote, B backslash, C control, W non-ASCII.
const Q: u8 = 1;
const B: u8 = 2;
const C: u8 = 3;
const W: u8 = 4;
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i < 0x20 {
            C
        } else if i == b'"' as usize {
            Q
        } else if i == b'\\' as usize {
            B
        } else if i >= 0x80 {
            W
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Whether a little-endian word of 8 string bytes holds a byte that is not plain:
/// `"`, `\\`, a control character (< 0x20) or non-ASCII (>= 0x80). Exact for the
/// first such byte; a false positive only sends the word to the byte loop.
#[inline]
fn special(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero(x ^ (ONES * b'"' as u64));
    let bslash = zero(x ^ (ONES * b'\\' as u64));
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    (quote | bslash | control | (x & HIGH)) != 0
}

pub(crate) struct Parser<'a> {
    pub(crate) s: &'a [u8],
    pub(crate) i: usize,
}

impl Parser<'_> {
    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Res<(usize, usize)> {
        let a = self.i;
        if self.s.len() >= a + word.len() && &self.s[a..a + word.len()] == word {
            self.i += word.len();
            Ok((a, self.i))
        } else {
            Err(Unsure)
        }
    }

    /// A string at `"`: (start, end inside the quotes, has escapes). Non-ASCII text is
    /// checked to be UTF-8 here (outside strings any non-ASCII byte is a syntax error).
    fn string(&mut self) -> Res<(usize, usize, bool)> {
        self.i += 1;
        let a = self.i;
        let s = self.s;
        let mut esc = false;
        let mut wide = false;
        loop {
            // skip plain bytes 8 at a time (no quote, backslash, control or non-ASCII
            // byte in the word), then one table look-up each
            while let Some(w) = s.get(self.i..self.i + 8) {
                let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                if special(x) {
                    break;
                }
                self.i += 8;
            }
            while let Some(&c) = s.get(self.i) {
                if CLASS[c as usize] != 0 {
                    break;
                }
                self.i += 1;
            }
            let c = *s.get(self.i).ok_or(Unsure)?;
            match CLASS[c as usize] {
                Q => {
                    let b = self.i;
                    self.i += 1;
                    if wide && std::str::from_utf8(&s[a..b]).is_err() {
                        return Err(Unsure);
                    }
                    return Ok((a, b, esc));
                }
                B => {
                    esc = true;
                    let e = *s.get(self.i + 1).ok_or(Unsure)?;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            let v = hex4(s.get(self.i + 2..).unwrap_or_default()).ok_or(Unsure)?;
                            self.i += 6;
                            if (0xD800..0xDC00).contains(&v) {
                                // a high surrogate must be followed by a low one
                                if s.get(self.i) != Some(&b'\\') || s.get(self.i + 1) != Some(&b'u') {
                                    return Err(Unsure);
                                }
                                let lo = hex4(s.get(self.i + 2..).unwrap_or_default()).ok_or(Unsure)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(Unsure);
                                }
                                self.i += 6;
                            } else if (0xDC00..0xE000).contains(&v) {
                                return Err(Unsure);
                            }
                        }
                        _ => return Err(Unsure),
                    }
                }
                W => {
                    wide = true;
                    self.i += 1;
                }
                _ => return Err(Unsure), // a control character
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        let int = |src: &str| {
            let mut t = Tape::new();
            let r = t.scan(src.as_bytes()).unwrap();
            let n = *t.node(r);
            (n.flag & NUM_INT != 0).then_some(n.int)
        };
        assert_eq!(int("9223372036854775807"), Some(i64::MAX));
        assert_eq!(int("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(int("9223372036854775808"), None);
        assert_eq!(int("-9223372036854775809"), None);
        assert_eq!(int("184467440737095516160"), None);
        assert_eq!(int("-17"), Some(-17));
        assert_eq!(int("-0"), None);
        assert_eq!(int("0"), Some(0));
    }
}
