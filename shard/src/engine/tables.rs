//! The redb tables of a shard file and the byte layout of their values
//! (documented in docs/design.md, "Storage layout").

use redb::TableDefinition;

/// seq → canonical entry bytes. The single source of truth.
pub(crate) const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
/// (level, index) → hash of the perfect subtree over leaves [index·2^level, (index+1)·2^level).
pub(crate) const MERKLE: TableDefinition<(u8, u64), [u8; 32]> =
    TableDefinition::new("merkle_nodes");
/// seq → salt (32 bytes) ‖ canonical personal record. Deleted on erasure.
pub(crate) const PERSONAL: TableDefinition<u64, &[u8]> = TableDefinition::new("personal_records");
/// Named metadata values (see the `META_*` keys).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// customer id → (customer number in this shard, secret subject key).
pub(crate) const CUSTOMERS: TableDefinition<&str, (u32, [u8; 32])> =
    TableDefinition::new("customers");
/// (customer number, idempotency key) → (seq, request digest).
pub(crate) const IDEMPOTENCY: TableDefinition<(u32, &str), (u64, [u8; 32])> =
    TableDefinition::new("idempotency_keys");
/// (customer number, subject key, seq) → []: a subject's history; and
/// (customer number, subject key, `u64::MAX`) → encoded current state (see
/// `index::encode_state`). One table, so an event's history row and its subject's state
/// row sit side by side.
pub(crate) const SUBJECTS: TableDefinition<(u32, [u8; 32], u64), &[u8]> =
    TableDefinition::new("subjects");
/// Tables of layouts 1 and 2 replaced by `subjects`, named only to be deleted on migration
/// (layout 2's `expiries` had another key; it is deleted and recreated).
pub(crate) const OLD_SUBJECT_EVENTS: TableDefinition<(u32, [u8; 32], u64), ()> =
    TableDefinition::new("subject_events");
pub(crate) const OLD_CURRENT_STATE: TableDefinition<(u32, [u8; 32]), &[u8]> =
    TableDefinition::new("current_state");
/// (customer number, recorded_at_ms, seq) → (): a customer's events in time order.
pub(crate) const CUSTOMER_EVENTS: TableDefinition<(u32, i64, u64), ()> =
    TableDefinition::new("customer_events");
/// (customer number, UTC day since epoch, purpose) → (granted count, denied count).
pub(crate) const DAILY_COUNTS: TableDefinition<(u32, i64, &str), (u64, u64)> =
    TableDefinition::new("daily_counts");

/// (customer number, seq) → (): a customer's erasure entries.
pub(crate) const ERASURES: TableDefinition<(u32, u64), ()> = TableDefinition::new("erasures");
/// (customer number, expires_at_ms, seq) → subject key: the GRANTED purposes that entry
/// `seq` set, that lapse at `expires_at_ms` and that are still the subject's current
/// choice, for renewal lists.
pub(crate) const EXPIRIES: TableDefinition<(u32, i64, u64), [u8; 32]> =
    TableDefinition::new("expiries");

/// `u32` BE: storage layout version.
pub(crate) const META_FORMAT_VERSION: &str = "format_version";
/// `u32` BE: the shard id this file belongs to.
pub(crate) const META_SHARD_ID: &str = "shard_id";
/// size `u64` BE ‖ root (32) ‖ chain head (32) ‖ last recorded_at_ms `i64` BE.
pub(crate) const META_HEAD: &str = "head";
/// `u64` BE: entries [0, indexed_upto) are reflected in every secondary index.
pub(crate) const META_INDEXED_UPTO: &str = "indexed_upto";
/// `u8`: 1 while personal records were deleted since the file was last rewritten, so freed
/// pages may still hold their bytes (see `scrub`).
pub(crate) const META_SCRUB_PENDING: &str = "scrub_pending";
