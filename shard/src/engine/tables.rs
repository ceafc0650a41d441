//! The redb tables of a shard file and the byte layout of their values
//! (documented in docs/design.md, "Storage layout").

use redb::TableDefinition;

// 32-byte values are declared `&[u8; 32]`, not `[u8; 32]`: redb gives both the same type
// name and bytes (files are interchangeable), but decodes, encodes and compares an owned
// array byte by byte, and a borrowed one with one slice cast or `memcmp` (≈ 7 % of an
// audit's CPU went to decoding the `subjects` keys and `merkle` values element-wise).

/// seq → canonical entry bytes. The single source of truth.
pub(crate) const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
/// (last leaf, level) → hash of the perfect subtree of height `level` whose last leaf is
/// `last leaf`, i.e. node (level, index) with `last leaf = (index + 1)·2^level − 1` (see
/// [`merkle_key`]). Keyed by the leaf that completes a node, so every node an append writes
/// lands at the end of the table: one commit dirties one leaf page, not one per level.
/// Nodes below [`MIN_STORED_LEVEL`] are not stored (layout 6): each is computed from the
/// journal entries under it when a proof needs it.
pub(crate) const MERKLE: TableDefinition<(u64, u8), &[u8; 32]> = TableDefinition::new("merkle");
/// The lowest level of the Merkle nodes the `merkle` table stores (layout 6). A leaf is the
/// hash of its journal entry and a level-1 node the hash of two of them: storing them was
/// a row and a half per entry, 1.5 of an append's 3.5 shard-file B-tree inserts, while a
/// proof needs at most one of each, computed from at most three entries it reads anyway
/// (docs/benchmarks.md, session 26).
pub(crate) const MIN_STORED_LEVEL: u8 = 2;
/// Layouts 1 and 2 keyed the nodes by (level, index) (converted on migration).
pub(crate) const OLD_MERKLE: TableDefinition<(u8, u64), &[u8; 32]> =
    TableDefinition::new("merkle_nodes");

/// The `MERKLE` key of node (level, index).
pub(crate) fn merkle_key(level: u8, index: u64) -> (u64, u8) {
    let leaves = index
        .checked_add(1)
        .expect("a node index is below 2^64 − 1");
    assert!(
        level < 64 && leaves <= u64::MAX >> level,
        "a stored node lies within a tree of fewer than 2^64 leaves"
    );
    ((leaves << level) - 1, level)
}

/// seq → salt (32 bytes) ‖ canonical personal record. Deleted on erasure.
pub(crate) const PERSONAL: TableDefinition<u64, &[u8]> = TableDefinition::new("personal_records");
/// Named metadata values (see the `META_*` keys).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// customer id → (customer number in this shard, secret subject key).
pub(crate) const CUSTOMERS: TableDefinition<&str, (u32, &[u8; 32])> =
    TableDefinition::new("customers");
/// (customer number, idempotency key) → (seq, request digest).
pub(crate) const IDEMPOTENCY: TableDefinition<(u32, &str), (u64, &[u8; 32])> =
    TableDefinition::new("idempotency_keys");
/// (customer number, subject key, seq) → []: a subject's history; and
/// (customer number, subject key, `u64::MAX`) → encoded current state (see
/// `index::encode_state`). One table, so an event's history row and its subject's state
/// row sit side by side.
pub(crate) const SUBJECTS: TableDefinition<(u32, &[u8; 32], u64), &[u8]> =
    TableDefinition::new("subjects");
/// (customer number, recorded_at_ms, first seq) → last seq: a customer's events in time
/// order, as runs (index layout 3): each row stands for the consecutive journal entries
/// `first..=last`, all consent events of the customer recorded in that millisecond, and a
/// run is as long as the journal allows (the entries just before and after it are not
/// such), so the rows follow from the journal alone. A batch is one row, not a thousand.
pub(crate) const CUSTOMER_EVENTS: TableDefinition<(u32, i64, u64), u64> =
    TableDefinition::new("customer_events");
/// (customer number, UTC day since epoch, purpose) → (granted count, denied count).
pub(crate) const DAILY_COUNTS: TableDefinition<(u32, i64, &str), (u64, u64)> =
    TableDefinition::new("daily_counts");

/// (customer number, seq) → (): a customer's erasure entries.
pub(crate) const ERASURES: TableDefinition<(u32, u64), ()> = TableDefinition::new("erasures");
/// (customer number, expires_at_ms, seq) → subject key: the GRANTED purposes that entry
/// `seq` set, that lapse at `expires_at_ms` and that are still the subject's current
/// choice, for renewal lists.
pub(crate) const EXPIRIES: TableDefinition<(u32, i64, u64), &[u8; 32]> =
    TableDefinition::new("expiries");

/// The index file's own metadata (named apart from the shard file's `meta`, so that a
/// table name alone says which file holds it: [`in_index_file`]).
pub(crate) const INDEX_META: TableDefinition<&str, &[u8]> = TableDefinition::new("index_meta");

/// Tables kept in the index file (`shard-NNNN.index.redb`), written only by the index
/// writer; every other table is in the shard file.
pub(crate) const INDEX_FILE_TABLES: [&str; 6] = [
    "subjects",
    "customer_events",
    "daily_counts",
    "erasures",
    "expiries",
    "index_meta",
];

/// Whether the table named `name` lives in the index file.
pub fn in_index_file(name: &str) -> bool {
    INDEX_FILE_TABLES.contains(&name)
}

/// Layout version of the index file, in `index_meta.format_version`. Layout 2 (session 28)
/// keeps no history row for a subject's latest event (its state row stands for it); layout 3
/// (session 28) keeps the time index as runs (`CUSTOMER_EVENTS`); layout 4 (session 30)
/// stores a state's purposes grouped by the event that set them (`index::encode_state`).
/// An index file of another layout is rebuilt from the journal when a server opens it.
pub(crate) const INDEX_FORMAT_VERSION: u32 = 4;

/// In `index_meta`: the hash of journal entry 0 of the shard the index was built from
/// (32 bytes; absent while the journal is empty), so that an index file of another ledger
/// is refused.
pub(crate) const META_FIRST_ENTRY: &str = "first_entry_hash";

/// `u32` BE: storage layout version.
pub(crate) const META_FORMAT_VERSION: &str = "format_version";
/// `u32` BE: the shard id this file belongs to.
pub(crate) const META_SHARD_ID: &str = "shard_id";
/// size `u64` BE ‖ root (32) ‖ chain head (32) ‖ last recorded_at_ms `i64` BE.
pub(crate) const META_HEAD: &str = "head";
/// `u64` BE: entries [0, indexed_upto) are reflected in the subject tier of the secondary
/// indexes (`subjects`, `expiries`).
pub(crate) const META_INDEXED_UPTO: &str = "indexed_upto";
/// `u64` BE, at most `indexed_upto`: entries [0, customer_indexed_upto) are reflected in the
/// customer tier (`customer_events`, `daily_counts`, `erasures`), which is indexed less often.
/// Absent (layout 3): equal to `indexed_upto`.
pub(crate) const META_CUSTOMER_INDEXED_UPTO: &str = "customer_indexed_upto";
/// `u8`: 1 while personal records were deleted since the file was last rewritten, so freed
/// pages may still hold their bytes (see `scrub`).
pub(crate) const META_SCRUB_PENDING: &str = "scrub_pending";

#[cfg(test)]
mod tests {
    use super::merkle_key;

    #[test]
    fn merkle_keys_follow_the_leaf_that_completes_each_node() {
        // Proves: nodes sort in the order appends write them, and no two nodes share a key.
        assert_eq!(merkle_key(0, 5), (5, 0));
        assert_eq!(merkle_key(1, 0), (1, 1));
        assert_eq!(merkle_key(2, 1), (7, 2));
        assert_eq!(merkle_key(63, 0), ((1 << 63) - 1, 63));
        let mut written = Vec::new();
        for leaf in 0u64..64 {
            // Appending leaf `leaf` completes node (level, leaf >> level) for every level
            // up to its number of trailing one bits.
            for level in 0..=leaf.trailing_ones() as u8 {
                written.push(merkle_key(level, leaf >> level));
            }
        }
        let mut sorted = written.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted, written,
            "append order is key order, without repeats"
        );
    }
}
