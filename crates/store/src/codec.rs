//! The byte encoding of the store's payloads: varints, zigzag integers,
//! floats and length-prefixed strings, read back without copying more than
//! the values themselves.
//!
//! Blocks, rollup shards and registry shards are stored as one `bytes`
//! field each because SurrealDB writes and reads a byte string about five
//! times faster than the same numbers as an array of values (measured in
//! `docs/decisions/0002-aggregates-in-shards.md`). Every format starts with
//! a version byte, so a later layout can be read beside this one.

use std::fmt;

/// A payload that does not decode: truncated, or written by a newer Vigia.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub(crate) &'static str);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stored payload does not decode: {}", self.0)
    }
}

impl std::error::Error for CodecError {}

/// `v` as a whole number of thousandths, when that gives back exactly `v`
/// ([`milli_f64`] returns the same bits; `-0.0`, NaN and most results of
/// arithmetic do not qualify). Readings mostly have three decimals or fewer,
/// and a varint of thousandths takes 2 or 3 bytes where a float takes 8.
pub(crate) fn thousandths(v: f64) -> Option<i64> {
    let t = (v * 1000.0).round() as i64;
    (milli_f64(t).to_bits() == v.to_bits()).then_some(t)
}

/// The number `t` thousandths stand for.
pub(crate) fn milli_f64(t: i64) -> f64 {
    t as f64 / 1000.0
}

/// Appends values to a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct Enc {
    pub(crate) buf: Vec<u8>,
}

impl Enc {
    pub(crate) fn with_capacity(n: usize) -> Enc {
        Enc { buf: Vec::with_capacity(n) }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn uv(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub(crate) fn iv(&mut self, v: i64) {
        self.uv(((v << 1) ^ (v >> 63)) as u64);
    }

    pub(crate) fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.uv(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    pub(crate) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    /// `v` written after `last` in a sorted list: the length of the prefix
    /// they share (ending on a character boundary) and the rest of `v`.
    pub(crate) fn after(&mut self, last: &str, v: &str) {
        let mut shared = last.bytes().zip(v.bytes()).take_while(|(a, b)| a == b).count();
        while !v.is_char_boundary(shared) {
            shared -= 1;
        }
        self.uv(shared as u64);
        self.str(&v[shared..]);
    }

    /// Only version 1 of the block format wrote these (kept for its tests).
    #[cfg(test)]
    pub(crate) fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
}

/// Reads values back in the order they were written.
#[derive(Debug)]
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        let (&v, rest) = self.buf.split_first().ok_or(CodecError("truncated"))?;
        self.buf = rest;
        Ok(v)
    }

    pub(crate) fn uv(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(CodecError("varint too long"))
    }

    pub(crate) fn iv(&mut self) -> Result<i64, CodecError> {
        let u = self.uv()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, CodecError> {
        let (head, rest) = self.buf.split_at_checked(8).ok_or(CodecError("truncated float"))?;
        self.buf = rest;
        Ok(f64::from_le_bytes(head.try_into().expect("eight bytes")))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = usize::try_from(self.uv()?).map_err(|_| CodecError("length"))?;
        let (head, rest) = self.buf.split_at_checked(n).ok_or(CodecError("truncated bytes"))?;
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CodecError("text is not UTF-8"))
    }

    /// Reads what [`Enc::after`] wrote into `last`, which held the text before.
    pub(crate) fn after(&mut self, last: &mut String) -> Result<(), CodecError> {
        let shared = usize::try_from(self.uv()?).map_err(|_| CodecError("shared prefix"))?;
        if shared > last.len() || !last.is_char_boundary(shared) {
            return Err(CodecError("shared prefix"));
        }
        last.truncate(shared);
        last.push_str(self.str()?);
        Ok(())
    }

    pub(crate) fn opt_str(&mut self) -> Result<Option<String>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            _ => Ok(Some(self.str()?.to_owned())),
        }
    }

    /// A count of items that follow, bounded by what is left (each item is
    /// at least one byte), so a corrupt count cannot make us allocate.
    pub(crate) fn count(&mut self) -> Result<usize, CodecError> {
        let n = self.uv()?;
        if n > self.buf.len() as u64 {
            return Err(CodecError("count larger than the payload"));
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let mut e = Enc::default();
        let ints = [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN, i64::MAX];
        for v in ints {
            e.iv(v);
        }
        e.uv(u64::MAX);
        e.f64(-0.25);
        e.str("Zoë");
        e.opt_str(None);
        e.opt_str(Some(""));
        let mut d = Dec::new(&e.buf);
        for v in ints {
            assert_eq!(d.iv().unwrap(), v);
        }
        assert_eq!(d.uv().unwrap(), u64::MAX);
        assert_eq!(d.f64().unwrap(), -0.25);
        assert_eq!(d.str().unwrap(), "Zoë");
        assert_eq!(d.opt_str().unwrap(), None);
        assert_eq!(d.opt_str().unwrap(), Some(String::new()));
        assert!(d.is_empty());
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut e = Enc::default();
        e.str("hello");
        e.f64(1.0);
        for cut in 0..e.buf.len() {
            let mut d = Dec::new(&e.buf[..cut]);
            assert!(d.str().and_then(|_| d.f64()).is_err(), "cut at {cut}");
        }
        assert!(Dec::new(&[0xff; 11]).uv().is_err());
        assert!(Dec::new(&[200]).count().is_err());
    }
}
