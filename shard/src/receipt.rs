//! Receipts: everything needed to verify one event offline, and their verification.
//!
//! The JSON form is documented field by field in docs/receipts.md.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, open_checkpoint, shard_head_leaf};
use crate::format::{Entry, PersonalRecord};
use crate::hash::{Hash, entry_hash, personal_commitment};
use crate::merkle::{Blake3Tree, MerkleVerifyError, TreeHasher, verify_inclusion};
use crate::verify::verify_entry_inclusion;

/// Receipt JSON version this build writes and reads.
pub const RECEIPT_VERSION: u32 = 1;

/// A receipt, as `Query.receipt` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipt {
    /// Always 1 for this layout.
    pub version: u32,
    /// The event's API id.
    pub event_id: String,
    /// Canonical entry bytes, base64.
    pub entry: String,
    /// The personal record and its salt, for the person's own copy; absent once erased.
    pub personal: Option<ReceiptPersonal>,
    /// Inclusion of the entry in its shard's tree.
    pub shard_proof: ReceiptShardProof,
    /// Inclusion of the shard head in the checkpoint's combined tree.
    pub combined_proof: ReceiptCombinedProof,
    /// The signed checkpoint note (C2SP signed-note text).
    pub checkpoint: String,
}

/// Salt and personal record bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptPersonal {
    /// 32-byte salt, base64.
    pub salt: String,
    /// Canonical personal record bytes, base64.
    pub record: String,
}

/// Shard inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptShardProof {
    /// Shard holding the entry.
    pub shard_id: u32,
    /// Entry's sequence number (leaf index).
    pub seq: u64,
    /// Shard tree size in the checkpoint.
    pub tree_size: u64,
    /// Audit path, leaf side first, lowercase hex.
    pub path: Vec<String>,
}

/// Combined-tree inclusion proof of the shard head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptCombinedProof {
    /// Leaf index (= shard id).
    pub leaf_index: u64,
    /// Number of shards.
    pub tree_size: u64,
    /// Audit path, leaf side first, lowercase hex.
    pub path: Vec<String>,
}

/// What a valid receipt proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptSummary {
    /// The decoded entry.
    pub entry: Entry,
    /// Its chain hash.
    pub entry_hash: Hash,
    /// The opened personal record, when the receipt carries one.
    pub personal: Option<PersonalRecord>,
    /// Checkpoint number that covers the event.
    pub checkpoint_number: u64,
    /// Ledger name (origin) of the checkpoint.
    pub origin: String,
    /// Whether the checkpoint's signature was checked against a pinned key.
    pub signer_checked: bool,
}

/// The first step of verification that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// A field is not of the documented form.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The entry bytes do not decode, or name another shard or position.
    #[error("entry: {0}")]
    Entry(String),
    /// The personal record does not open the entry's commitment.
    #[error("personal record: does not match the entry's personal_commitment")]
    PersonalCommitment,
    /// The checkpoint does not parse or its signature fails.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The shard proof's tree size or shard is not the one in the checkpoint.
    #[error("shard proof: {0}")]
    ShardHead(String),
    /// The entry is not included in the shard head.
    #[error("shard inclusion proof: {0}")]
    ShardProof(MerkleVerifyError),
    /// The shard head is not included in the combined root.
    #[error("combined inclusion proof: {0}")]
    CombinedProof(MerkleVerifyError),
}

impl ReceiptError {
    /// The name of the verification step that failed (docs/receipts.md §3), stable for
    /// scripts and for verifiers in other languages to compare against (the step names of
    /// tests/vectors/manifest.json).
    pub fn step(&self) -> &'static str {
        match self {
            ReceiptError::Malformed(_) => "format",
            ReceiptError::Entry(_) => "entry",
            ReceiptError::PersonalCommitment => "personal-commitment",
            ReceiptError::Checkpoint(c) => c.step(),
            ReceiptError::ShardHead(_) => "shard-head",
            ReceiptError::ShardProof(_) => "shard-inclusion",
            ReceiptError::CombinedProof(_) => "combined-inclusion",
        }
    }
}

fn b64(field: &str, s: &str) -> Result<Vec<u8>, ReceiptError> {
    B64.decode(s)
        .map_err(|_| ReceiptError::Malformed(format!("{field} is not base64")))
}

fn hashes(field: &str, v: &[String]) -> Result<Vec<Hash>, ReceiptError> {
    v.iter()
        .map(|h| {
            Hash::from_hex(h)
                .ok_or_else(|| ReceiptError::Malformed(format!("{field} holds a non-hash")))
        })
        .collect()
}

/// Verifies every step of a receipt. With `key` (name, public key) the checkpoint's
/// signature must be by that key; without it only the mathematics is checked and
/// `signer_checked` is false.
pub fn verify_receipt(
    r: &Receipt,
    key: Option<(&str, &VerifyingKey)>,
) -> Result<ReceiptSummary, ReceiptError> {
    if r.version != RECEIPT_VERSION {
        return Err(ReceiptError::Malformed(format!(
            "unsupported receipt version {}",
            r.version
        )));
    }
    let entry_bytes = b64("entry", &r.entry)?;
    let entry = Entry::decode(&entry_bytes).map_err(|e| ReceiptError::Entry(e.to_string()))?;
    let p = &r.shard_proof;
    if r.event_id != crate::format::event_id(entry.shard_id, entry.seq) {
        return Err(ReceiptError::Entry(
            "eventId does not name this entry's shard and sequence number".into(),
        ));
    }
    if entry.shard_id != p.shard_id || entry.seq != p.seq {
        return Err(ReceiptError::Entry(
            "names another shard or sequence number than the proof".into(),
        ));
    }
    let personal = match &r.personal {
        None => None,
        Some(rp) => {
            let salt: [u8; 32] = b64("personal.salt", &rp.salt)?
                .try_into()
                .map_err(|_| ReceiptError::Malformed("personal.salt is not 32 bytes".into()))?;
            let record = b64("personal.record", &rp.record)?;
            let Some(consent) = entry.consent() else {
                return Err(ReceiptError::Malformed(
                    "personal: only consent entries have a personal record".into(),
                ));
            };
            if personal_commitment(&salt, &record) != consent.personal_commitment {
                return Err(ReceiptError::PersonalCommitment);
            }
            Some(
                PersonalRecord::decode(&record)
                    .map_err(|e| ReceiptError::Malformed(format!("personal.record: {e}")))?,
            )
        }
    };
    let (cp, signer_checked) = open_checkpoint(&r.checkpoint, key)?;
    let head = cp.shards.get(p.shard_id as usize).ok_or_else(|| {
        ReceiptError::ShardHead(format!("checkpoint has no shard {}", p.shard_id))
    })?;
    if head.size != p.tree_size {
        return Err(ReceiptError::ShardHead(format!(
            "tree size {} is not the checkpoint's size {} for shard {}",
            p.tree_size, head.size, p.shard_id
        )));
    }
    verify_entry_inclusion(
        &entry_bytes,
        p.seq,
        p.tree_size,
        &hashes("shardProof.path", &p.path)?,
        &head.root,
    )
    .map_err(ReceiptError::ShardProof)?;
    let c = &r.combined_proof;
    if c.leaf_index != u64::from(p.shard_id) || c.tree_size != cp.shards.len() as u64 {
        return Err(ReceiptError::CombinedProof(MerkleVerifyError::WrongLength));
    }
    let leaf = Blake3Tree.hash_leaf(&shard_head_leaf(head));
    verify_inclusion(
        &Blake3Tree,
        &leaf,
        c.leaf_index,
        c.tree_size,
        &hashes("combinedProof.path", &c.path)?,
        &cp.combined_root(),
    )
    .map_err(ReceiptError::CombinedProof)?;
    Ok(ReceiptSummary {
        entry_hash: entry_hash(&entry_bytes),
        entry,
        personal,
        checkpoint_number: cp.number,
        origin: cp.origin,
        signer_checked,
    })
}
