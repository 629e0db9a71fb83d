//! Keyed-hash pseudonyms, byte for byte those of `CompiledEngine.pseudonym` and
//! `pseudonymize_value` (streams/engine/policy.py): the hex digest of
//! HMAC-SHA256(engine key, message), truncated to the policy's number of hex chars.
//!
//! The HMAC is written out over `sha2` (RFC 2104) rather than taken from a crate: the
//! inner and outer states are absorbed once per engine key and cloned per message,
//! which is all a pseudonym costs (two SHA-256 compressions for a short id).

use sha2::{Digest, Sha256};

const BLOCK: usize = 64;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// An engine's pseudonym key, absorbed (never logged, never handed back).
#[derive(Clone)]
pub struct Keyed {
    inner: Sha256,
    outer: Sha256,
    hex_chars: usize,
}

impl Keyed {
    /// `hex_chars`: how many hex digits of the digest a pseudonym keeps (at most 64).
    pub fn new(key: &[u8], hex_chars: usize) -> Self {
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut ipad = [0x36u8; BLOCK];
        let mut opad = [0x5cu8; BLOCK];
        for i in 0..BLOCK {
            ipad[i] ^= k[i];
            opad[i] ^= k[i];
        }
        let mut inner = Sha256::new();
        inner.update(ipad);
        let mut outer = Sha256::new();
        outer.update(opad);
        Keyed { inner, outer, hex_chars: hex_chars.min(64) }
    }

    /// Hex pseudonym of the concatenation of `parts`, appended to `out`.
    pub fn hex(&self, parts: &[&[u8]], out: &mut Vec<u8>) {
        let mut h = self.inner.clone();
        for p in parts {
            h.update(p);
        }
        let d = h.finalize();
        let mut o = self.outer.clone();
        o.update(d);
        let mac = o.finalize();
        for &b in mac.iter().take(self.hex_chars.div_ceil(2)) {
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        }
        out.truncate(out.len() - (self.hex_chars % 2));
    }

    /// Pseudonym of a subject id: HMAC(key, subject).
    pub fn subject(&self, subject: &[u8], out: &mut Vec<u8>) {
        self.hex(&[subject], out)
    }

    /// Pseudonym of a field value: HMAC(key, b"field:" + path + b"\0" + value).
    pub fn field(&self, path: &[u8], value: &[u8], out: &mut Vec<u8>) {
        self.hex(&[b"field:", path, b"\0", value], out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        // HMAC-SHA256(key="Jefe", "what do ya want for nothing?")
        let k = Keyed::new(b"Jefe", 64);
        let mut out = Vec::new();
        k.hex(&[b"what do ya ", b"want for nothing?"], &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
