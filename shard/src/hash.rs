//! The 32-byte digest type and the blake3 domain rules of the ledger.
//!
//! Every hash that appears in a proof is computed here, so that the byte rules in
//! `docs/design.md` have exactly one implementation to match.

use std::fmt;

/// Length of every digest in the ledger, in bytes.
pub const HASH_LEN: usize = 32;

/// A 32-byte digest (blake3 in the ledger, SHA-256 only in the RFC known-answer tests).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// The all-zero digest: `prev_hash` of the first entry of every shard.
    pub const ZERO: Hash = Hash([0u8; HASH_LEN]);

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Lowercase hex, the form used in the API and in documents.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(HASH_LEN * 2);
        for b in self.0 {
            s.push(char::from(HEX[(b >> 4) as usize]));
            s.push(char::from(HEX[(b & 0x0f) as usize]));
        }
        s
    }

    /// Parses exactly 64 hex digits (either case); `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Hash> {
        let bytes = s.as_bytes();
        if bytes.len() != HASH_LEN * 2 {
            return None;
        }
        let mut out = [0u8; HASH_LEN];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(Hash(out))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<blake3::Hash> for Hash {
    fn from(h: blake3::Hash) -> Hash {
        Hash(*h.as_bytes())
    }
}

/// The chain hash of an entry: `blake3(entry bytes)`. The next entry's `prev_hash`.
pub fn entry_hash(entry_bytes: &[u8]) -> Hash {
    blake3::hash(entry_bytes).into()
}

/// The commitment to a personal record: `blake3(salt ‖ canonical personal record)`.
///
/// The salt is 32 random bytes stored beside the record; deleting both leaves the
/// commitment in the ledger unlinkable to the person.
pub fn personal_commitment(salt: &[u8; HASH_LEN], personal_bytes: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(salt);
    h.update(personal_bytes);
    h.finalize().into()
}

/// The index key of a subject: keyed blake3 of the subject id under the customer's
/// secret subject key. Indexes never hold the raw subject id.
pub fn subject_key(customer_secret: &[u8; HASH_LEN], subject_id: &str) -> Hash {
    blake3::keyed_hash(customer_secret, subject_id.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        let h = entry_hash(b"abc");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        assert_eq!(Hash::from_hex("00"), None);
        assert_eq!(Hash::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn blake3_matches_the_published_empty_input_vector() {
        // blake3("") from the BLAKE3 reference test vectors.
        assert_eq!(
            entry_hash(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn subject_keys_depend_on_the_customer_secret() {
        let a = subject_key(&[1u8; 32], "user-1");
        let b = subject_key(&[2u8; 32], "user-1");
        assert_ne!(a, b);
        assert_eq!(a, subject_key(&[1u8; 32], "user-1"));
    }
}
