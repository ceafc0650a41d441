//! Proof verification, step for step as RFC 9162 §2.1.3.2 and §2.1.4.2.

use super::TreeHasher;
use crate::hash::Hash;

/// Why a Merkle proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleVerifyError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// Claimed leaf index.
        index: u64,
        /// Claimed tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for the sizes.
    #[error("proof has the wrong length for these sizes")]
    WrongLength,
    /// The recomputed root differs from the one claimed.
    #[error("recomputed root {computed} does not match the expected root {expected}")]
    RootMismatch {
        /// Root the proof leads to.
        computed: Hash,
        /// Root it should lead to.
        expected: Hash,
    },
    /// The first tree's root recomputed from a consistency proof differs.
    #[error("the proof does not lead to the older root")]
    OldRootMismatch,
    /// Sizes are out of order (old > new).
    #[error("old size {old} is larger than new size {new}")]
    SizesOutOfOrder {
        /// Older size.
        old: u64,
        /// Newer size.
        new: u64,
    },
}

/// The root that `proof` leads to from `leaf_hash` at `index` in a tree of `size`.
pub fn root_from_inclusion_proof<H: TreeHasher>(
    hasher: &H,
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, MerkleVerifyError> {
    if index >= size {
        return Err(MerkleVerifyError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(MerkleVerifyError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = hasher.hash_children(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = hasher.hash_children(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(MerkleVerifyError::WrongLength);
    }
    Ok(r)
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves with `root`.
pub fn verify_inclusion<H: TreeHasher>(
    hasher: &H,
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleVerifyError> {
    let computed = root_from_inclusion_proof(hasher, leaf_hash, index, size, proof)?;
    if computed != *root {
        return Err(MerkleVerifyError::RootMismatch {
            computed,
            expected: *root,
        });
    }
    Ok(())
}

/// Checks that the tree (`new_size`, `new_root`) extends (`old_size`, `old_root`).
pub fn verify_consistency<H: TreeHasher>(
    hasher: &H,
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleVerifyError> {
    if old_size > new_size {
        return Err(MerkleVerifyError::SizesOutOfOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(MerkleVerifyError::WrongLength);
        }
        if old_root != new_root {
            return Err(MerkleVerifyError::RootMismatch {
                computed: *old_root,
                expected: *new_root,
            });
        }
        return Ok(());
    }
    if old_size == 0 {
        // Every tree extends the empty tree; the proof is empty.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(MerkleVerifyError::WrongLength)
        };
    }
    if proof.is_empty() {
        return Err(MerkleVerifyError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(MerkleVerifyError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = hasher.hash_children(c, &fr);
            sr = hasher.hash_children(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = hasher.hash_children(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(MerkleVerifyError::WrongLength);
    }
    if fr != *old_root {
        return Err(MerkleVerifyError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(MerkleVerifyError::RootMismatch {
            computed: sr,
            expected: *new_root,
        });
    }
    Ok(())
}
