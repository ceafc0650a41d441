//! RFC 9162 §2.1 Merkle tree over the journal, with blake3 in place of SHA-256.
//!
//! Pure: nodes come from a [`NodeSource`] (redb in the engine, memory in tests and in
//! the gateway's combined tree), so the same proof code serves every caller.
//! Generic over [`TreeHasher`] so RFC known-answer vectors run through it with SHA-256.

mod frontier;
mod proof;
mod verify;

#[cfg(test)]
mod tests;

use crate::hash::Hash;

pub use frontier::{Frontier, MemoryTree, NewNode};
pub use proof::{ProofError, consistency_proof, inclusion_proof, subtree_root};
pub use verify::{
    MerkleVerifyError, root_from_inclusion_proof, verify_consistency, verify_inclusion,
};

/// The three hash rules of RFC 9162 §2.1.1.
pub trait TreeHasher {
    /// `HASH(0x00 ‖ data)`.
    fn hash_leaf(&self, data: &[u8]) -> Hash;
    /// `HASH(0x01 ‖ left ‖ right)`.
    fn hash_children(&self, left: &Hash, right: &Hash) -> Hash;
    /// `HASH()`, the root of the empty tree.
    fn hash_empty(&self) -> Hash;
}

/// The ledger's tree hasher: RFC 9162 with blake3.
#[derive(Debug, Clone, Copy, Default)]
pub struct Blake3Tree;

impl TreeHasher for Blake3Tree {
    fn hash_leaf(&self, data: &[u8]) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(&[0x00]);
        h.update(data);
        h.finalize().into()
    }
    fn hash_children(&self, left: &Hash, right: &Hash) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(&[0x01]);
        h.update(&left.0);
        h.update(&right.0);
        h.finalize().into()
    }
    fn hash_empty(&self) -> Hash {
        blake3::hash(b"").into()
    }
}

/// Read access to stored perfect subtrees.
///
/// Node `(level, index)` is the root of the perfect subtree over leaves
/// `[index·2^level, (index+1)·2^level)`; level 0 holds the leaf hashes. Such a node never
/// changes once its last leaf exists, which is why stored nodes can serve proofs for
/// every later tree size.
pub trait NodeSource {
    /// Why a node could not be read (I/O, corruption).
    type Error: std::error::Error + Send + Sync + 'static;
    /// The node at `(level, index)`; only called for nodes whose leaves all exist.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Largest power of two strictly less than `n` (`n ≥ 2`): the RFC's split point `k`.
pub(crate) fn split_point(n: u64) -> u64 {
    assert!(n >= 2, "split_point needs at least two leaves");
    1u64 << (63 - (n - 1).leading_zeros())
}
