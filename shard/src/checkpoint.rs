//! Checkpoints: the signed statement of every shard's head, as a C2SP signed note.
//!
//! Body (C2SP tlog-checkpoint): origin line, total number of entries over all shards,
//! base64 combined root, then extension lines `assent-checkpoint <number>`,
//! `assent-time <unix ms>` and one `assent-shard <id> <size> <b64 root> <b64 chain head>`
//! per shard. The combined root is the RFC 9162 root over one leaf per shard head.
//! Signature lines follow C2SP signed-note with ed25519 (docs/receipts.md).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::hash::Hash;
use crate::merkle::{Blake3Tree, MemoryTree, TreeHasher};
use crate::verify::ShardHead;

/// Version byte of the shard-head leaf encoding.
pub const SHARD_HEAD_LEAF_VERSION: u8 = 1;
/// Signature type byte of ed25519 in C2SP signed notes.
const ED25519_SIG_TYPE: u8 = 0x01;
/// The em dash that starts every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// A checkpoint: what the gateway signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The ledger's name (origin line and signing key name).
    pub origin: String,
    /// Sequence number of the checkpoint, from 1, never reused.
    pub number: u64,
    /// When it was issued (Unix ms).
    pub time_ms: i64,
    /// Every shard's head, in shard id order 0..n.
    pub shards: Vec<ShardHead>,
}

/// Why a checkpoint or note does not parse or verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The text is not a well-formed checkpoint note.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// The combined root or total does not match the shard heads listed.
    #[error("checkpoint's {0} does not match its shard heads")]
    Inconsistent(&'static str),
    /// No signature by the expected key is present.
    #[error("no signature by key {name} ({key_id}) on the checkpoint")]
    NoSignature {
        /// Expected key name.
        name: String,
        /// Expected key id, hex.
        key_id: String,
    },
    /// A signature by the expected key is present but does not verify.
    #[error("the signature by key {0} does not verify")]
    BadSignature(String),
}

impl CheckpointError {
    /// The name of the verification step that failed (docs/receipts.md §3): `signature`
    /// when no pinned key signed the body, else `checkpoint`.
    pub fn step(&self) -> &'static str {
        match self {
            CheckpointError::NoSignature { .. } | CheckpointError::BadSignature(_) => "signature",
            CheckpointError::Malformed(_) | CheckpointError::Inconsistent(_) => "checkpoint",
        }
    }
}

/// The 77-byte leaf of a shard head in the combined tree:
/// `0x01 ‖ shard_id u32 ‖ size u64 ‖ root ‖ chain_head`.
pub fn shard_head_leaf(head: &ShardHead) -> Vec<u8> {
    let mut v = Vec::with_capacity(77);
    v.push(SHARD_HEAD_LEAF_VERSION);
    v.extend_from_slice(&head.shard_id.to_be_bytes());
    v.extend_from_slice(&head.size.to_be_bytes());
    v.extend_from_slice(&head.root.0);
    v.extend_from_slice(&head.chain_head.0);
    v
}

/// C2SP signed-note key id: the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key).
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, ED25519_SIG_TYPE]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Whether `name` can be an origin and key name: 1..=128 bytes of `[A-Za-z0-9./_-]`.
pub fn valid_origin(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'_' | b'-'))
}

impl Checkpoint {
    /// Total entries over all shards (the note's size line).
    pub fn total_size(&self) -> u64 {
        self.shards.iter().map(|s| s.size).sum()
    }

    /// The combined tree: one leaf per shard head, in shard order.
    pub fn combined_tree(&self) -> MemoryTree {
        let mut t = MemoryTree::new();
        for head in &self.shards {
            t.push(&Blake3Tree, Blake3Tree.hash_leaf(&shard_head_leaf(head)));
        }
        t
    }

    /// The combined root.
    pub fn combined_root(&self) -> Hash {
        self.combined_tree().root(&Blake3Tree)
    }

    /// The note body that is signed (ends with a newline).
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\nassent-checkpoint {}\nassent-time {}\n",
            self.origin,
            self.total_size(),
            B64.encode(self.combined_root().0),
            self.number,
            self.time_ms
        );
        for h in &self.shards {
            s.push_str(&format!(
                "assent-shard {} {} {} {}\n",
                h.shard_id,
                h.size,
                B64.encode(h.root.0),
                B64.encode(h.chain_head.0)
            ));
        }
        s
    }

    /// The signed note: body, blank line, one ed25519 signature line by `key` named `origin`.
    pub fn sign(&self, key: &SigningKey) -> String {
        let body = self.body();
        let sig: Signature = key.sign(body.as_bytes());
        let mut blob = key_id(&self.origin, &key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n{SIG_PREFIX}{} {}\n", self.origin, B64.encode(blob))
    }

    /// Parses a note body; checks the total and the combined root against the shard lines.
    pub fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |m: &str| CheckpointError::Malformed(m.to_string());
        let lines: Vec<&str> = body
            .strip_suffix('\n')
            .ok_or_else(|| bad("body must end with a newline"))?
            .split('\n')
            .collect();
        if lines.len() < 5 {
            return Err(bad("too few lines"));
        }
        let origin = lines[0].to_string();
        if !valid_origin(&origin) {
            return Err(bad(
                "origin line is not 1-128 characters of A-Z a-z 0-9 . / _ -",
            ));
        }
        let total: u64 = lines[1]
            .parse()
            .map_err(|_| bad("size line is not a number"))?;
        let root = b64_hash(lines[2]).ok_or_else(|| bad("root line is not base64 of 32 bytes"))?;
        let number = ext_value(lines[3], "assent-checkpoint")?;
        let time_ms = ext_value(lines[4], "assent-time")?;
        let mut shards = Vec::new();
        for (i, line) in lines[5..].iter().enumerate() {
            shards.push(parse_shard_line(line, i as u32)?);
        }
        let cp = Checkpoint {
            origin,
            number: u64::try_from(number).map_err(|_| bad("negative checkpoint number"))?,
            time_ms,
            shards,
        };
        if cp.total_size() != total {
            return Err(CheckpointError::Inconsistent("total size"));
        }
        if cp.combined_root() != root {
            return Err(CheckpointError::Inconsistent("combined root"));
        }
        if cp.body() != body {
            return Err(bad("not in canonical form"));
        }
        Ok(cp)
    }
}

fn b64_hash(s: &str) -> Option<Hash> {
    let v = B64.decode(s).ok()?;
    Some(Hash(v.try_into().ok()?))
}

fn ext_value(line: &str, key: &str) -> Result<i64, CheckpointError> {
    line.strip_prefix(key)
        .and_then(|r| r.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| CheckpointError::Malformed(format!("expected a `{key} <n>` line")))
}

fn parse_shard_line(line: &str, expected_id: u32) -> Result<ShardHead, CheckpointError> {
    let bad = || CheckpointError::Malformed(format!("bad shard line {line:?}"));
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 5 || parts[0] != "assent-shard" {
        return Err(bad());
    }
    let shard_id: u32 = parts[1].parse().map_err(|_| bad())?;
    if shard_id != expected_id {
        return Err(CheckpointError::Malformed(
            "shard lines must list ids 0..n in order".into(),
        ));
    }
    Ok(ShardHead {
        shard_id,
        size: parts[2].parse().map_err(|_| bad())?,
        root: b64_hash(parts[3]).ok_or_else(bad)?,
        chain_head: b64_hash(parts[4]).ok_or_else(bad)?,
    })
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// 4-byte key id.
    pub key_id: [u8; 4],
    /// Signature bytes (64 for ed25519).
    pub signature: Vec<u8>,
}

/// Splits a signed note into its body (with its final newline) and its signature lines.
pub fn split_note(note: &str) -> Result<(&str, Vec<NoteSignature>), CheckpointError> {
    let bad = |m: &str| CheckpointError::Malformed(m.to_string());
    let idx = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let (body, sigs) = (&note[..idx + 1], &note[idx + 2..]);
    let sigs = sigs
        .strip_suffix('\n')
        .ok_or_else(|| bad("note must end with a newline"))?;
    let mut out = Vec::new();
    for line in sigs.split('\n') {
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| bad("signature line must start with an em dash"))?;
        let (name, blob) = rest
            .split_once(' ')
            .ok_or_else(|| bad("signature line needs a name and a signature"))?;
        let blob = B64
            .decode(blob)
            .map_err(|_| bad("signature is not base64"))?;
        if blob.len() < 5 {
            return Err(bad("signature too short"));
        }
        out.push(NoteSignature {
            name: name.to_string(),
            key_id: [blob[0], blob[1], blob[2], blob[3]],
            signature: blob[4..].to_vec(),
        });
    }
    if out.is_empty() {
        return Err(bad("no signature lines"));
    }
    Ok((body, out))
}

/// Parses a signed checkpoint note, and checks its signature when a key is given.
/// Returns the checkpoint and whether the signer was checked.
pub fn open_checkpoint(
    note: &str,
    key: Option<(&str, &VerifyingKey)>,
) -> Result<(Checkpoint, bool), CheckpointError> {
    let (body, sigs) = split_note(note)?;
    let cp = Checkpoint::parse_body(body)?;
    let Some((name, key)) = key else {
        return Ok((cp, false));
    };
    let id = key_id(name, key);
    let hex_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let sig = sigs
        .iter()
        .find(|s| s.name == name && s.key_id == id)
        .ok_or_else(|| CheckpointError::NoSignature {
            name: name.to_string(),
            key_id: hex_id.clone(),
        })?;
    let sig = Signature::from_slice(&sig.signature)
        .map_err(|_| CheckpointError::BadSignature(hex_id.clone()))?;
    key.verify_strict(body.as_bytes(), &sig)
        .map_err(|_| CheckpointError::BadSignature(hex_id))?;
    Ok((cp, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            origin: "example.com/assent".into(),
            number: 7,
            time_ms: 1_767_225_600_000,
            shards: (0..3)
                .map(|i| ShardHead {
                    shard_id: i,
                    size: 10 * u64::from(i),
                    root: Hash([i as u8; 32]),
                    chain_head: Hash([0x40 + i as u8; 32]),
                })
                .collect(),
        }
    }

    #[test]
    fn a_signed_checkpoint_round_trips_and_verifies_only_with_its_key() {
        let key = SigningKey::from_bytes(&[5u8; 32]);
        let other = SigningKey::from_bytes(&[6u8; 32]);
        let cp = sample();
        let note = cp.sign(&key);
        let vk = key.verifying_key();
        assert_eq!(
            open_checkpoint(&note, Some((&cp.origin, &vk))).unwrap(),
            (cp.clone(), true)
        );
        assert_eq!(open_checkpoint(&note, None).unwrap(), (cp.clone(), false));
        assert!(matches!(
            open_checkpoint(&note, Some((&cp.origin, &other.verifying_key()))),
            Err(CheckpointError::NoSignature { .. })
        ));
    }

    #[test]
    fn any_changed_byte_of_a_signed_note_is_rejected() {
        let key = SigningKey::from_bytes(&[5u8; 32]);
        let cp = sample();
        let note = cp.sign(&key);
        let vk = key.verifying_key();
        let bytes = note.as_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0x01;
            let Ok(text) = String::from_utf8(b) else {
                continue;
            };
            assert!(
                open_checkpoint(&text, Some((&cp.origin, &vk))).is_err(),
                "byte {i} changed undetected"
            );
        }
    }

    #[test]
    fn a_body_whose_origin_breaks_the_documented_rule_is_malformed_before_any_signature_check() {
        let cp = sample();
        for origin in ["example.com/ass`nt", "", "two words", &"a".repeat(129)] {
            let body = cp.body().replacen(&cp.origin, origin, 1);
            assert!(
                matches!(
                    Checkpoint::parse_body(&body),
                    Err(CheckpointError::Malformed(_))
                ),
                "origin {origin:?} accepted"
            );
        }
    }

    #[test]
    fn key_id_follows_the_signed_note_rule() {
        let key = SigningKey::from_bytes(&[5u8; 32]).verifying_key();
        let mut h = Sha256::new();
        h.update(b"example.com/assent\n\x01");
        h.update(key.as_bytes());
        assert_eq!(key_id("example.com/assent", &key), h.finalize()[..4]);
    }
}
