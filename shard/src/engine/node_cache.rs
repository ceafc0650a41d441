//! Merkle nodes of the upper levels, kept in memory for the proofs a shard serves.
//!
//! Every receipt's inclusion proof and every consistency proof walks from the leaves to
//! the root, and the upper part of that walk is the same few nodes for every proof: the
//! node over entries [0, 2^20) is a sibling in half of all proofs of a tree of 2^21 entries.
//! A stored node never changes (the `merkle` table is append-only: a node is written once,
//! when its last leaf is appended, and scrubbing copies it unchanged), so a node read once
//! can be served from memory for the life of the process without any invalidation.
//!
//! The audit never reads through this cache: it recomputes every node from the journal
//! and compares it with the file (`reader::walk_journal`).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::hash::Hash;
use crate::merkle::NodeSource;

use super::error::StorageError;
use super::reader::RedbNodes;

/// Nodes at this level or above are cached: each covers 2^8 = 256 entries, so a shard of
/// `n` entries has fewer than `n / 128` of them, and a proof in a tree of `2^h` entries
/// reads at most 8 nodes (plus the edge of the tree's last, imperfect subtree) below it.
pub const CACHED_NODE_MIN_LEVEL: u8 = 8;

/// At most this many nodes per shard are cached (≈ 3 MiB with the map's overhead): every
/// node at or above [`CACHED_NODE_MIN_LEVEL`] of a shard of up to 2^23 entries. Nodes
/// first read after the cache is full are read from the file each time.
pub const MAX_CACHED_NODES: usize = 65_536;

/// The cached nodes of one shard file, shared by all its readers.
#[derive(Default)]
pub(crate) struct NodeCache {
    /// `(level, index)` → node hash; only levels ≥ [`CACHED_NODE_MIN_LEVEL`], at most
    /// [`MAX_CACHED_NODES`] entries.
    nodes: RwLock<HashMap<(u8, u64), Hash>>,
    /// Set once the map holds [`MAX_CACHED_NODES`]: later misses skip the write lock.
    full: AtomicBool,
}

impl NodeCache {
    /// The level of every cached node (for tests).
    #[cfg(test)]
    pub(crate) fn levels(&self) -> Vec<u8> {
        let nodes = self.nodes.read().expect("node cache lock");
        nodes.keys().map(|&(level, _)| level).collect()
    }

    /// A node source that reads `stored` through this cache.
    pub(crate) fn over(&self, stored: RedbNodes) -> CachedNodes<'_> {
        CachedNodes {
            cache: self,
            stored,
        }
    }

    fn get(&self, level: u8, index: u64) -> Option<Hash> {
        self.nodes
            .read()
            .expect("node cache lock")
            .get(&(level, index))
            .copied()
    }

    fn remember(&self, level: u8, index: u64, node: Hash) {
        if self.full.load(Ordering::Relaxed) {
            return;
        }
        let mut nodes = self.nodes.write().expect("node cache lock");
        if nodes.len() >= MAX_CACHED_NODES {
            self.full.store(true, Ordering::Relaxed);
            return;
        }
        let earlier = nodes.insert((level, index), node);
        assert!(
            earlier.is_none_or(|h| h == node),
            "a stored Merkle node never changes"
        );
    }
}

/// Stored nodes read through a [`NodeCache`].
pub(crate) struct CachedNodes<'a> {
    cache: &'a NodeCache,
    stored: RedbNodes,
}

impl NodeSource for CachedNodes<'_> {
    type Error = StorageError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        if level < CACHED_NODE_MIN_LEVEL {
            return self.stored.get(level, index);
        }
        if let Some(node) = self.cache.get(level, index) {
            return Ok(node);
        }
        let node = self.stored.get(level, index)?;
        self.cache.remember(level, index, node);
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::{CACHED_NODE_MIN_LEVEL, MAX_CACHED_NODES, NodeCache};
    use crate::engine::Store;
    use crate::format::tests_support::sample;
    use crate::hash::Hash;
    use crate::merkle::{Blake3Tree, TreeHasher as _, verify_consistency, verify_inclusion};

    #[test]
    fn the_cache_stops_growing_at_its_bound() {
        // Proves: memory stays bounded: past MAX_CACHED_NODES nothing more is kept, and a
        // node already kept is still served.
        let cache = NodeCache::default();
        for index in 0..MAX_CACHED_NODES as u64 + 100 {
            cache.remember(CACHED_NODE_MIN_LEVEL, index, Hash([index as u8; 32]));
        }
        assert_eq!(cache.levels().len(), MAX_CACHED_NODES);
        assert_eq!(cache.get(CACHED_NODE_MIN_LEVEL, 7), Some(Hash([7; 32])));
        let past = MAX_CACHED_NODES as u64 + 1;
        assert_eq!(cache.get(CACHED_NODE_MIN_LEVEL, past), None);
    }

    #[test]
    fn proofs_through_the_node_cache_verify_cold_and_warm_at_every_size() {
        // Proves: inclusion and consistency proofs read partly from cached upper nodes verify
        // against the roots the appends computed (not read back from the file), before and
        // after the cache is warm, for sizes on both sides of the cached levels' boundaries.
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&dir.path().join("s.redb"), 0).expect("open");
        let mut heads = Vec::new();
        for target in [1u64, 255, 256, 257, 511, 700, 1024, 1025, 1300] {
            let n = target - store.head().size;
            let batch: Vec<_> = (0..n)
                .map(|i| {
                    let mut e = sample();
                    e.subject_id = format!("s{}", (target + i) % 17);
                    e
                })
                .collect();
            store
                .append_batches(vec![batch])
                .expect("append")
                .remove(0)
                .expect("appended");
            heads.push(store.head());
        }
        let reader = store.reader();
        let leaves: Vec<_> = (0..store.head().size)
            .map(|seq| {
                let stored = reader.event(seq).expect("read").expect("stored");
                Blake3Tree.hash_leaf(&stored.entry_bytes)
            })
            .collect();
        let mut cold = Vec::new();
        for round in 0..2 {
            let mut proofs = Vec::new();
            for head in &heads {
                for seq in (0..head.size).step_by(7).chain([head.size - 1]) {
                    let p = reader.inclusion_proof(seq, head.size).expect("proof");
                    assert_eq!(p.root, head.root, "round {round}, size {}", head.size);
                    verify_inclusion(
                        &Blake3Tree,
                        &leaves[seq as usize],
                        seq,
                        head.size,
                        &p.path,
                        &head.root,
                    )
                    .unwrap_or_else(|e| {
                        panic!("round {round}, seq {seq}, size {}: {e}", head.size)
                    });
                    proofs.push(p.path);
                }
                for old in &heads[..] {
                    if old.size > head.size {
                        continue;
                    }
                    let c = reader
                        .consistency_proof(old.size, head.size)
                        .expect("proof");
                    verify_consistency(
                        &Blake3Tree,
                        old.size,
                        head.size,
                        &old.root,
                        &head.root,
                        &c.path,
                    )
                    .unwrap_or_else(|e| panic!("round {round}, {} → {}: {e}", old.size, head.size));
                }
            }
            if round == 0 {
                cold = proofs;
            } else {
                assert_eq!(proofs, cold, "warm proofs are the cold ones");
            }
        }
        let cached = store.nodes.levels();
        assert!(!cached.is_empty(), "upper nodes were cached");
        assert!(
            cached.iter().all(|&l| l >= CACHED_NODE_MIN_LEVEL),
            "{cached:?}"
        );
    }
}
