//! Appending leaves: the right edge of the tree and the nodes each append completes.

use super::{NodeSource, TreeHasher};
use crate::hash::Hash;

/// A node completed by an append, to be stored at `(level, index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewNode {
    /// Height above the leaves (0 = leaf).
    pub level: u8,
    /// Position within its level.
    pub index: u64,
    /// Its hash.
    pub hash: Hash,
}

/// The perfect subtrees on the right edge of a tree of `size` leaves, largest first:
/// one per set bit of `size`. Enough to append and to compute the root, in O(log n) memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)` of each right-edge subtree, levels strictly decreasing.
    peaks: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Rebuilds the frontier of a tree of `size` leaves from stored nodes (O(log n) reads).
    pub fn load<S: NodeSource>(size: u64, source: &S) -> Result<Frontier, S::Error> {
        let mut peaks = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                peaks.push((level, source.node(level, start >> level)?));
                start += 1u64 << level;
            }
        }
        Ok(Frontier { size, peaks })
    }

    /// Appends a leaf hash; calls `store` for the leaf and every node it completes.
    pub fn push<H: TreeHasher>(&mut self, hasher: &H, leaf: Hash, mut store: impl FnMut(NewNode)) {
        let index = self.size;
        store(NewNode {
            level: 0,
            index,
            hash: leaf,
        });
        let mut level = 0u8;
        let mut hash = leaf;
        while let Some(&(peak_level, peak_hash)) = self.peaks.last() {
            if peak_level != level {
                break;
            }
            self.peaks.pop();
            hash = hasher.hash_children(&peak_hash, &hash);
            level += 1;
            store(NewNode {
                level,
                index: index >> level,
                hash,
            });
        }
        self.peaks.push((level, hash));
        self.size += 1;
        debug_assert_eq!(self.peaks.len() as u32, self.size.count_ones());
    }

    /// The RFC 9162 root: the peaks folded from the right.
    pub fn root<H: TreeHasher>(&self, hasher: &H) -> Hash {
        let mut iter = self.peaks.iter().rev();
        match iter.next() {
            None => hasher.hash_empty(),
            Some(&(_, last)) => iter.fold(last, |acc, (_, peak)| hasher.hash_children(peak, &acc)),
        }
    }
}

/// A whole tree in memory: for tests, and for small trees such as the gateway's
/// combined tree over shard heads.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// Appends a leaf hash.
    pub fn push<H: TreeHasher>(&mut self, hasher: &H, leaf: Hash) {
        let levels = &mut self.levels;
        self.frontier.push(hasher, leaf, |node| {
            let level = usize::from(node.level);
            if levels.len() <= level {
                levels.push(Vec::new());
            }
            assert_eq!(
                levels[level].len() as u64,
                node.index,
                "nodes are completed in order"
            );
            levels[level].push(node.hash);
        });
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root of the current tree.
    pub fn root<H: TreeHasher>(&self, hasher: &H) -> Hash {
        self.frontier.root(hasher)
    }
}

/// The node a [`MemoryTree`] was asked for does not exist.
#[derive(Debug, thiserror::Error)]
#[error("no node at level {level} index {index}")]
pub struct MissingNode {
    level: u8,
    index: u64,
}

impl NodeSource for MemoryTree {
    type Error = MissingNode;
    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.levels
            .get(usize::from(level))
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}
