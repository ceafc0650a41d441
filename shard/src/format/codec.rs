//! Primitive byte codec shared by every canonical encoding.
//!
//! All integers are big-endian with explicit widths; strings are a `u32` byte length
//! followed by UTF-8; optional values are a `u8` tag (0 absent, 1 present) then the value.
//! The reader is strict: truncation, bad tags, bad UTF-8 and trailing bytes are errors,
//! so that exactly one byte string decodes to each value.

use crate::hash::{HASH_LEN, Hash};

/// Why a byte string is not a valid canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the structure does.
    #[error("truncated: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Where the missing bytes should start.
        offset: u64,
        /// How many more bytes the structure needs there.
        needed: u64,
    },
    /// Bytes remain after a complete structure.
    #[error("{count} trailing bytes after the end of the structure")]
    TrailingBytes {
        /// How many bytes follow the structure.
        count: u64,
    },
    /// A string is not UTF-8.
    #[error("string at offset {offset} is not valid UTF-8")]
    BadUtf8 {
        /// Where the string's bytes start (after its length prefix).
        offset: u64,
    },
    /// A tag or enum byte has a value the format does not define.
    #[error("field {field} has undefined value {value}")]
    BadValue {
        /// The field whose byte is undefined.
        field: &'static str,
        /// The value found there.
        value: u64,
    },
    /// The format version is not one this build understands.
    #[error("unsupported format version {0}; upgrade Assent to read this ledger")]
    UnsupportedVersion(u8),
    /// The bytes decode, but not in canonical form (e.g. purposes out of order).
    #[error("not canonical: {0}")]
    NotCanonical(&'static str),
}

/// Appends canonical primitives to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn hash(&mut self, h: &Hash) {
        self.buf.extend_from_slice(&h.0);
    }
    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    pub(crate) fn str(&mut self, s: &str) {
        let len = u32::try_from(s.len()).expect("string lengths are validated far below 4 GiB");
        self.u32(len);
        self.buf.extend_from_slice(s.as_bytes());
    }
    /// A string of at most 255 bytes with a one-byte length (index rows only: purpose
    /// names, at most `MAX_PURPOSE_NAME_BYTES`).
    #[cfg(feature = "engine")]
    pub(crate) fn short_str(&mut self, s: &str) {
        let len = u8::try_from(s.len()).expect("a short string is under 256 bytes");
        self.u8(len);
        self.buf.extend_from_slice(s.as_bytes());
    }
    pub(crate) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    pub(crate) fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.i64(v);
            }
        }
    }
}

/// Reads canonical primitives from a byte slice, tracking the offset for errors.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let remaining = self.bytes.len() - self.pos;
        if remaining < n {
            return Err(DecodeError::Truncated {
                offset: self.pos as u64,
                needed: (n - remaining) as u64,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    pub(crate) fn hash(&mut self) -> Result<Hash, DecodeError> {
        Ok(Hash(self.array::<HASH_LEN>()?))
    }
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::BadValue {
                field,
                value: u64::from(v),
            }),
        }
    }
    pub(crate) fn str(&mut self) -> Result<String, DecodeError> {
        self.str_ref().map(str::to_string)
    }
    /// A length-prefixed UTF-8 string, borrowed from the bytes.
    pub(crate) fn str_ref(&mut self) -> Result<&'a str, DecodeError> {
        let offset = self.pos as u64 + 4;
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::BadUtf8 { offset })
    }
    /// A UTF-8 string with a one-byte length (`Writer::short_str`), borrowed.
    #[cfg(feature = "engine")]
    pub(crate) fn short_str_ref(&mut self) -> Result<&'a str, DecodeError> {
        let offset = self.pos as u64 + 1;
        let len = usize::from(self.u8()?);
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::BadUtf8 { offset })
    }
    /// A length-prefixed byte string, borrowed.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    /// The offset of the next byte to read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }
    /// The bytes read since offset `start` (from [`Reader::position`]).
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        &self.bytes[start..self.pos]
    }
    pub(crate) fn opt_str(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        if self.bool(field)? {
            Ok(Some(self.str()?))
        } else {
            Ok(None)
        }
    }
    pub(crate) fn opt_i64(&mut self, field: &'static str) -> Result<Option<i64>, DecodeError> {
        if self.bool(field)? {
            Ok(Some(self.i64()?))
        } else {
            Ok(None)
        }
    }
    /// Fails unless every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        let count = (self.bytes.len() - self.pos) as u64;
        if count == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { count })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_truncation_trailing_bytes_and_bad_tags() {
        let mut w = Writer::default();
        w.str("héllo");
        w.opt_i64(Some(-5));
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.opt_i64("x").unwrap(), Some(-5));
        r.finish().unwrap();

        let mut r = Reader::new(&w.buf[..3]);
        assert!(matches!(r.str(), Err(DecodeError::Truncated { .. })));

        let mut extra = w.buf.clone();
        extra.push(0);
        let mut r = Reader::new(&extra);
        r.str().unwrap();
        r.opt_i64("x").unwrap();
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes { count: 1 }));

        let mut r = Reader::new(&[2]);
        assert!(matches!(r.bool("flag"), Err(DecodeError::BadValue { .. })));
    }
}
