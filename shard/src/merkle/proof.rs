//! Proof construction (RFC 9162 §2.1.3.1 and §2.1.4.1) from stored perfect subtrees.
//!
//! Each function reads O(log n) nodes: every sibling on a path is a perfect subtree
//! (one read) except at most one on the right edge (O(log n) reads).

use super::{NodeSource, TreeHasher, split_point};
use crate::hash::Hash;

/// Why a proof could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProofError<E: std::error::Error + 'static> {
    /// The leaf is not inside the tree size asked for.
    #[error("leaf {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// Requested leaf.
        index: u64,
        /// Requested tree size.
        size: u64,
    },
    /// A consistency proof was asked from a larger size to a smaller one.
    #[error("cannot prove consistency from size {old} to smaller size {new}")]
    SizesOutOfOrder {
        /// Older (first) tree size.
        old: u64,
        /// Newer (second) tree size.
        new: u64,
    },
    /// The node store failed.
    #[error("reading tree nodes: {0}")]
    Source(#[source] E),
}

/// `MTH(D[start:end])`: the root of the leaves in `[start, end)`.
///
/// `start` must be aligned as in the RFC recursion (a multiple of the smallest power of
/// two ≥ `end - start`); the proof functions only ask for such ranges.
pub fn subtree_root<H: TreeHasher, S: NodeSource>(
    hasher: &H,
    source: &S,
    start: u64,
    end: u64,
) -> Result<Hash, S::Error> {
    assert!(end > start, "a subtree has at least one leaf");
    let n = end - start;
    if n.is_power_of_two() {
        let level = n.trailing_zeros() as u8;
        assert_eq!(start % n, 0, "perfect subtrees are aligned");
        return source.node(level, start >> level);
    }
    let k = split_point(n);
    let level = k.trailing_zeros() as u8;
    assert_eq!(start % k, 0, "left subtrees are aligned");
    let left = source.node(level, start >> level)?;
    let right = subtree_root(hasher, source, start + k, end)?;
    Ok(hasher.hash_children(&left, &right))
}

/// The audit path of leaf `index` in the tree of the first `size` leaves, leaf-side first.
pub fn inclusion_proof<H: TreeHasher, S: NodeSource>(
    hasher: &H,
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut path = Vec::new();
    let (mut start, mut end) = (0u64, size);
    while end - start > 1 {
        let k = split_point(end - start);
        let sibling = if index < start + k {
            let s = subtree_root(hasher, source, start + k, end);
            end = start + k;
            s
        } else {
            let s = subtree_root(hasher, source, start, start + k);
            start += k;
            s
        };
        path.push(sibling.map_err(ProofError::Source)?);
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof between the trees of the first `old` and `new` leaves.
/// Empty when `old == 0` or `old == new` (nothing to prove).
pub fn consistency_proof<H: TreeHasher, S: NodeSource>(
    hasher: &H,
    source: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old > new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    let mut proof = Vec::new();
    if old == 0 || old == new {
        return Ok(proof);
    }
    // SUBPROOF(m, D[start:end], b), unrolled: m is relative to `start`.
    let (mut m, mut start, mut end, mut complete) = (old, 0u64, new, true);
    while m != end - start {
        let k = split_point(end - start);
        let node = if m <= k {
            let r = subtree_root(hasher, source, start + k, end);
            end = start + k;
            r
        } else {
            let r = subtree_root(hasher, source, start, start + k);
            m -= k;
            start += k;
            complete = false;
            r
        };
        proof.push(node.map_err(ProofError::Source)?);
    }
    if !complete {
        proof.push(subtree_root(hasher, source, start, end).map_err(ProofError::Source)?);
    }
    proof.reverse();
    Ok(proof)
}
