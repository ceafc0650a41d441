//! Verification of a shard's journal against its hash chain and Merkle root.
//!
//! Pure and streaming: entries are fed one at a time in sequence order and memory stays
//! O(log n), so the same code checks a ten-entry test ledger and a billion-entry audit.

use crate::format::{DecodeError, EntryView, HeaderView};
use crate::hash::{Hash, entry_hash};
use crate::merkle::{
    Blake3Tree, Frontier, MerkleVerifyError, NewNode, TreeHasher, verify_inclusion,
};

/// What a shard claims about its journal: the values a checkpoint signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHead {
    /// Which shard.
    pub shard_id: u32,
    /// Number of entries (the next sequence number).
    pub size: u64,
    /// RFC 9162 root over all entries (blake3).
    pub root: Hash,
    /// Chain hash of the last entry (all zeros when empty).
    pub chain_head: Hash,
}

/// The first inconsistency found, with the sequence number where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The stored bytes are not a valid entry.
    #[error("entry {seq}: not a valid entry: {source}")]
    Undecodable {
        /// Position in the journal.
        seq: u64,
        /// Why decoding failed.
        source: DecodeError,
    },
    /// The entry claims another sequence number than its position.
    #[error("entry {seq}: claims sequence number {claimed}")]
    WrongSeq {
        /// Position in the journal.
        seq: u64,
        /// Sequence number written inside the entry.
        claimed: u64,
    },
    /// The entry claims another shard.
    #[error("entry {seq}: claims shard {claimed}, expected shard {expected}")]
    WrongShard {
        /// Position in the journal.
        seq: u64,
        /// Shard id written inside the entry.
        claimed: u32,
        /// Shard being verified.
        expected: u32,
    },
    /// The entry's `prev_hash` is not the hash of the entry before it.
    #[error("entry {seq}: prev_hash does not match the hash of entry {} (one of the two was altered)", seq.wrapping_sub(1))]
    BrokenLink {
        /// Position of the entry whose link is broken.
        seq: u64,
    },
    /// `recorded_at` went backwards.
    #[error("entry {seq}: recorded_at goes back in time from the previous entry")]
    TimeWentBackwards {
        /// Position in the journal.
        seq: u64,
    },
    /// The entry's bytes differ from those the chain and the stored Merkle tree recorded
    /// (the next entry's link, or the head, and the node the entry completed disagree with
    /// them).
    #[error(
        "entry {seq}: bytes do not match what the chain and the Merkle tree recorded for them (the entry was altered)"
    )]
    LeafMismatch {
        /// Position in the journal.
        seq: u64,
    },
    /// A stored inner Merkle node differs from the one the entries imply (proofs built
    /// from it would not verify), or is missing.
    #[error(
        "Merkle node at level {level} completed by entry {seq} is missing or differs from the one the entries imply (the stored tree was altered)"
    )]
    NodeMismatch {
        /// The entry whose append completed the node.
        seq: u64,
        /// Height of the node above the leaves.
        level: u8,
    },
    /// The stored Merkle tree holds nodes that no entry completes.
    #[error("the stored Merkle tree holds a node beyond the journal's {size} entries")]
    ExtraNodes {
        /// Entries in the journal.
        size: u64,
    },
    /// Entries are missing: the journal skips from `seq` to `found`.
    #[error("entry {seq} is missing: the journal continues at {found} (entries were deleted)")]
    Gap {
        /// First missing position.
        seq: u64,
        /// Next position actually present.
        found: u64,
    },
    /// The journal ends before or after the claimed size.
    #[error("journal has {found} entries but the head claims {claimed}")]
    SizeMismatch {
        /// Entries actually present.
        found: u64,
        /// Entries the head claims.
        claimed: u64,
    },
    /// The recomputed root differs from the claimed one.
    #[error("Merkle root over {size} entries is {computed}, the head claims {claimed}")]
    RootMismatch {
        /// Tree size.
        size: u64,
        /// Root recomputed from the entries.
        computed: Hash,
        /// Root claimed by the head.
        claimed: Hash,
    },
    /// The last entry's hash differs from the claimed chain head.
    #[error("chain head over {size} entries is {computed}, the head claims {claimed}")]
    ChainHeadMismatch {
        /// Tree size.
        size: u64,
        /// Hash of the last entry.
        computed: Hash,
        /// Chain head claimed.
        claimed: Hash,
    },
}

/// An entry accepted by [`ChainVerifier::push`], with its hashes.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedEntry<'a> {
    /// The decoded entry, borrowing from the bytes pushed.
    pub entry: EntryView<'a>,
    /// Its chain hash.
    pub entry_hash: Hash,
    /// Its Merkle leaf hash.
    pub leaf_hash: Hash,
}

/// An entry accepted by [`ChainVerifier::push_chained`]: its place and hashes, its body
/// not decoded.
#[derive(Debug, Clone, Copy)]
pub struct ChainedEntry {
    /// Its sequence number.
    pub seq: u64,
    /// Its chain hash.
    pub entry_hash: Hash,
    /// Its Merkle leaf hash.
    pub leaf_hash: Hash,
}

/// Streams a journal from seq 0 and checks every link, then the claimed head.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    shard_id: u32,
    prev_hash: Hash,
    last_recorded_at_ms: i64,
    frontier: Frontier,
}

impl ChainVerifier {
    /// A verifier for the journal of `shard_id`, expecting seq 0 first.
    pub fn new(shard_id: u32) -> ChainVerifier {
        ChainVerifier {
            shard_id,
            prev_hash: Hash::ZERO,
            last_recorded_at_ms: i64::MIN,
            frontier: Frontier::new(),
        }
    }

    /// Entries accepted so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The Merkle root over the entries accepted so far.
    pub fn root(&self) -> Hash {
        self.frontier.root(&Blake3Tree)
    }

    /// Checks the next entry's bytes and extends the chain and tree with it.
    pub fn push<'a>(&mut self, bytes: &'a [u8]) -> Result<VerifiedEntry<'a>, ChainError> {
        self.push_with_nodes(bytes, |_| {})
    }

    /// [`ChainVerifier::push`], handing `node` every Merkle node the entry completes (its
    /// leaf first, then upwards), so that a caller can compare them with stored nodes.
    pub fn push_with_nodes<'a>(
        &mut self,
        bytes: &'a [u8],
        node: impl FnMut(NewNode),
    ) -> Result<VerifiedEntry<'a>, ChainError> {
        let seq = self.frontier.size();
        let entry =
            EntryView::decode(bytes).map_err(|source| ChainError::Undecodable { seq, source })?;
        let chained = self.link(&entry.header(), bytes, node)?;
        Ok(VerifiedEntry {
            entry,
            entry_hash: chained.entry_hash,
            leaf_hash: chained.leaf_hash,
        })
    }

    /// [`ChainVerifier::push_with_nodes`] decoding only the entry's header: the same chain
    /// and tree checks, for a caller that decodes every entry strictly itself (the audit,
    /// whose index check does; decoding each entry twice was ≈ 9 % of its instructions).
    pub fn push_chained(
        &mut self,
        bytes: &[u8],
        node: impl FnMut(NewNode),
    ) -> Result<ChainedEntry, ChainError> {
        let seq = self.frontier.size();
        let header =
            HeaderView::decode(bytes).map_err(|source| ChainError::Undecodable { seq, source })?;
        self.link(&header, bytes, node)
    }

    /// Checks that `entry` (the header of `bytes`) is the next entry of this shard's chain,
    /// then extends the chain and the tree with it.
    fn link(
        &mut self,
        entry: &HeaderView,
        bytes: &[u8],
        node: impl FnMut(NewNode),
    ) -> Result<ChainedEntry, ChainError> {
        let seq = self.frontier.size();
        if entry.seq != seq {
            return Err(ChainError::WrongSeq {
                seq,
                claimed: entry.seq,
            });
        }
        if entry.shard_id != self.shard_id {
            return Err(ChainError::WrongShard {
                seq,
                claimed: entry.shard_id,
                expected: self.shard_id,
            });
        }
        if entry.prev_hash != self.prev_hash {
            return Err(ChainError::BrokenLink { seq });
        }
        if entry.recorded_at_ms < self.last_recorded_at_ms {
            return Err(ChainError::TimeWentBackwards { seq });
        }
        let hash = entry_hash(bytes);
        let leaf_hash = Blake3Tree.hash_leaf(bytes);
        self.frontier.push(&Blake3Tree, leaf_hash, node);
        self.prev_hash = hash;
        self.last_recorded_at_ms = entry.recorded_at_ms;
        Ok(ChainedEntry {
            seq,
            entry_hash: hash,
            leaf_hash,
        })
    }

    /// Checks that the entries pushed are exactly what `head` claims.
    pub fn finish(&self, head: &ShardHead) -> Result<(), ChainError> {
        let size = self.frontier.size();
        if size != head.size {
            return Err(ChainError::SizeMismatch {
                found: size,
                claimed: head.size,
            });
        }
        let root = self.frontier.root(&Blake3Tree);
        if root != head.root {
            return Err(ChainError::RootMismatch {
                size,
                computed: root,
                claimed: head.root,
            });
        }
        if self.prev_hash != head.chain_head {
            return Err(ChainError::ChainHeadMismatch {
                size,
                computed: self.prev_hash,
                claimed: head.chain_head,
            });
        }
        Ok(())
    }
}

/// Checks that `entry_bytes` is entry `seq` of a shard whose tree of `size` has `root`.
pub fn verify_entry_inclusion(
    entry_bytes: &[u8],
    seq: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleVerifyError> {
    let leaf = Blake3Tree.hash_leaf(entry_bytes);
    verify_inclusion(&Blake3Tree, &leaf, seq, size, proof, root)
}
