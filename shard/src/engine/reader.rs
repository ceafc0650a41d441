//! Reads of a shard: events, current state, history, statistics, proofs, verification.
//!
//! Readers use redb's MVCC snapshots: they never block the writer and see only committed
//! data, so every answer is consistent with one head.

use std::sync::Arc;

use redb::{
    AccessGuard, Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
};

use super::db::{Db, DbCell, Snapshot, Snapshots};
use super::error::{QueryError, StorageError, VerifyJournalError};
use super::index::{MS_PER_DAY, PurposeState, STATE_ROW, WithLatest, latest_in, state_in};
use super::index_check::{IndexMismatch, IndexReport};
use super::index_file::index_path;
use super::index_writer::IndexRequests;
use super::node_cache::NodeCache;
use super::store::IndexTier;
use super::store::{meta_u32_in, u32_in};
use super::subjects_walk::SubjectsPass;
use super::tables::*;
use crate::format::{Entry, EntryView, HeaderView, PersonalRecord};
use crate::hash::{Hash, entry_hash, subject_key};
use crate::merkle::{
    Blake3Tree, NodeSource, ProofError, consistency_proof, inclusion_proof, subtree_root,
};
use crate::verify::{ChainError, ChainVerifier, ChainedEntry, ShardHead, VerifiedEntry};

/// Largest page any paged read returns.
pub const MAX_PAGE_SIZE: u32 = 500;

/// An event as stored, with what a receipt needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The decoded entry.
    pub entry: Entry,
    /// Its canonical bytes (what the receipt carries).
    pub entry_bytes: Vec<u8>,
    /// Its chain hash.
    pub entry_hash: Hash,
    /// The personal record and its salt; `None` once erased.
    pub personal: Option<StoredPersonal>,
}

/// Whether the events of a page carry their personal records. Loading one is a second
/// lookup (another table's leaf) and a decode of personal data per event; a caller that
/// shows no personal field skips both (docs/benchmarks.md, session 29).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personal {
    /// Each event with its personal record (`None` only once erased).
    Load,
    /// Each event without it: `StoredEvent::personal` is `None` whether erased or not.
    Skip,
}

/// A personal record with the salt that opens its commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPersonal {
    /// The 32-byte salt.
    pub salt: [u8; 32],
    /// The record.
    pub record: PersonalRecord,
}

/// Order of a history page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest first.
    Ascending,
    /// Newest first.
    Descending,
}

/// One page of a paged read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<C> {
    /// The events of the page.
    pub items: Vec<StoredEvent>,
    /// Cursor of the last item, to ask for the next page; `None` on an empty page.
    pub last_cursor: Option<C>,
    /// Whether more items follow.
    pub has_more: bool,
}

/// Position in the expiry index, to resume a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryCursor {
    /// When the purpose lapses (Unix ms).
    pub expires_at_ms: i64,
    /// The event that granted it.
    pub seq: u64,
    /// The purpose.
    pub purpose: String,
}

/// A GRANTED purpose that lapses, with the event that granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    /// Where it is in the listing.
    pub cursor: ExpiryCursor,
    /// The purpose's current state.
    pub state: PurposeState,
    /// The granting event (with its personal record: who must be asked again).
    pub event: StoredEvent,
}

/// Granted and denied counts of one purpose on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyCount {
    /// UTC day as days since 1970-01-01.
    pub day: i64,
    /// Purpose name.
    pub purpose: String,
    /// Events that granted it that day.
    pub granted: u64,
    /// Events that denied it that day.
    pub denied: u64,
}

/// An inclusion proof with the sizes and root it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Leaf index (= sequence number).
    pub seq: u64,
    /// Tree size the proof is for.
    pub size: u64,
    /// Root of that tree.
    pub root: Hash,
    /// The audit path, leaf side first.
    pub path: Vec<Hash>,
}

/// A consistency proof between two sizes of the shard's tree. The roots it links are the
/// caller's (the checkpoints or heads it compares): computing them here cost two walks of
/// the tree per proof that every caller threw away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// Older size.
    pub old_size: u64,
    /// Newer size.
    pub new_size: u64,
    /// The proof, as RFC 9162 §2.1.4.
    pub path: Vec<Hash>,
}

/// Stored Merkle nodes as a [`NodeSource`], and the nodes below them computed from the
/// journal.
pub(crate) struct RedbNodes {
    /// The stored nodes (levels ≥ [`MIN_STORED_LEVEL`]).
    merkle: ReadOnlyTable<(u64, u8), &'static [u8; 32]>,
    /// The journal, whose entries give the nodes below (not stored).
    pub(crate) journal: ReadOnlyTable<u64, &'static [u8]>,
}

impl NodeSource for RedbNodes {
    type Error = StorageError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        self.get(level, index)
    }
}

impl RedbNodes {
    /// The nodes of the tree `txn` sees.
    pub(crate) fn open(txn: &ReadTransaction) -> Result<RedbNodes, StorageError> {
        Ok(RedbNodes {
            merkle: txn.open_table(MERKLE)?,
            journal: txn.open_table(JOURNAL)?,
        })
    }

    pub(crate) fn get(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        if level < MIN_STORED_LEVEL {
            return self.computed(level, index);
        }
        match self.merkle.get(merkle_key(level, index))? {
            Some(v) => Ok(Hash(*v.value())),
            None => Err(StorageError::Corrupt {
                table: "merkle",
                detail: format!("node ({level}, {index}) is missing"),
            }),
        }
    }

    /// Node (level, index) below [`MIN_STORED_LEVEL`], from the journal entries under it.
    fn computed(&self, level: u8, index: u64) -> Result<Hash, StorageError> {
        use crate::merkle::TreeHasher;
        if level == 0 {
            return match self.journal.get(index)? {
                Some(entry) => Ok(Blake3Tree.hash_leaf(entry.value())),
                None => Err(StorageError::Corrupt {
                    table: "journal",
                    detail: format!("entry {index}, under a node of a proof, is missing"),
                }),
            };
        }
        let left = self.computed(level - 1, index * 2)?;
        let right = self.computed(level - 1, index * 2 + 1)?;
        Ok(Blake3Tree.hash_children(&left, &right))
    }
}

/// Reads the committed head (and the last recorded time) of a shard file.
pub(crate) fn read_head(db: &Database, shard_id: u32) -> Result<(ShardHead, i64), StorageError> {
    head_in(&db.begin_read()?, shard_id)
}

fn head_in(txn: &ReadTransaction, shard_id: u32) -> Result<(ShardHead, i64), StorageError> {
    let meta = txn.open_table(META)?;
    let v = meta.get(META_HEAD)?.ok_or_else(|| StorageError::Corrupt {
        table: "meta",
        detail: "no head".into(),
    })?;
    let b = v.value();
    if b.len() != 80 {
        return Err(StorageError::Corrupt {
            table: "meta",
            detail: format!("head is {} bytes, expected 80", b.len()),
        });
    }
    let arr8 = |r: std::ops::Range<usize>| -> [u8; 8] { b[r].try_into().expect("8-byte slice") };
    let arr32 = |r: std::ops::Range<usize>| -> [u8; 32] { b[r].try_into().expect("32-byte slice") };
    let head = ShardHead {
        shard_id,
        size: u64::from_be_bytes(arr8(0..8)),
        root: Hash(arr32(8..40)),
        chain_head: Hash(arr32(40..72)),
    };
    Ok((head, i64::from_be_bytes(arr8(72..80))))
}

/// Where a shard's writer stands, published to its readers: how many entries are durably
/// committed, how many of those each tier of the secondary indexes reflects, and which
/// customers and subjects have committed entries that are not indexed yet. A reader that
/// must see every acknowledged write of a customer (or of one subject) in an index waits
/// only if that customer (subject) is among them (see `ShardHandle::indexes_fresh`).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    committed: std::sync::atomic::AtomicU64,
    /// Entries in the subject tier.
    indexed: std::sync::atomic::AtomicU64,
    /// Entries in both tiers (never more than `indexed`).
    customer_indexed: std::sync::atomic::AtomicU64,
    /// Added to before `committed` is published (so before any caller hears of the
    /// entries); emptied after the index step that covers them has committed.
    unindexed: std::sync::Mutex<Unindexed>,
    /// The first I/O failure of either of the shard's files, set by whichever writer met
    /// it: the shard refuses writes from then on and reports it as unhealthy.
    failure: std::sync::OnceLock<String>,
    /// The random keys of [`Progress::subject_fingerprint`], drawn when the shard opens.
    fingerprint_keys: std::hash::RandomState,
}

/// Who has committed entries waiting for an index step, each with the committed size
/// that covers its newest such entry: an index step that reaches that size clears it.
/// The index writer steps concurrently with new commits, so a step clears only what it
/// covered, never a mark added after it began.
#[derive(Debug, Default)]
struct Unindexed {
    /// Customer ids with entries not in both tiers.
    customers: std::collections::HashMap<String, u64>,
    /// [`Progress::subject_fingerprint`]s of entries not in the subject tier: a subject
    /// read waits only for its own subject's entries. At most one per unindexed entry, so
    /// bounded as the index queue is (`MAX_INDEX_LAG_ENTRIES` and one commit's worth).
    subjects: std::collections::HashMap<u64, u64>,
}

impl Progress {
    /// 64 bits of a keyed SipHash over (customer, subject): what the unindexed set keeps
    /// of a subject (no subject id is kept; a collision only makes a read wait for an index
    /// step it did not need, and the keys are random, so a client cannot aim for one). It
    /// was blake3, once per appended event: 70.2k → 69.6k server instructions per batched
    /// event with SipHash (docs/benchmarks.md, session 27).
    fn subject_fingerprint(&self, customer: &str, subject: &str) -> u64 {
        use std::hash::BuildHasher;
        // `str`'s hash ends each string with a marker: ("ab", "c") and ("a", "bc") differ.
        self.fingerprint_keys.hash_one((customer, subject))
    }

    fn unindexed(&self) -> std::sync::MutexGuard<'_, Unindexed> {
        self.unindexed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that a file of the shard failed with `e`, if it is an I/O failure (the first
    /// one is kept and logged).
    pub(crate) fn note_failure(&self, e: &StorageError) {
        if e.is_io_failure() && self.failure.set(e.to_string()).is_ok() {
            tracing::error!(
                error = %e,
                "the shard's storage failed: it refuses writes until the server restarts"
            );
        }
    }

    /// The first I/O failure of shard `shard_id`'s files, if one happened, as the shard
    /// reports it from then on.
    pub(crate) fn failure(&self, shard_id: u32) -> Option<StorageError> {
        self.failure.get().map(|cause| StorageError::Failed {
            shard_id,
            cause: cause.clone(),
        })
    }

    /// Records that `customer`, and each of `subjects` of it, have committed entries
    /// below `size` waiting for the index step. Called before `size` is published.
    pub(crate) fn add_unindexed<'s>(
        &self,
        customer: &str,
        subjects: impl Iterator<Item = &'s str>,
        size: u64,
    ) {
        let fingerprints: Vec<u64> = subjects
            .map(|s| self.subject_fingerprint(customer, s))
            .collect();
        let mut set = self.unindexed();
        match set.customers.get_mut(customer) {
            Some(upto) => *upto = (*upto).max(size),
            None => {
                set.customers.insert(customer.to_string(), size);
            }
        }
        for f in fingerprints {
            let upto = set.subjects.entry(f).or_insert(size);
            *upto = (*upto).max(size);
        }
    }

    /// Called after an index step that brought the subject tier to `indexed` entries and
    /// the customer tier to `customer_indexed`: forgets the marks those cover.
    pub(crate) fn clear_unindexed(&self, indexed: u64, customer_indexed: u64) {
        let mut set = self.unindexed();
        set.customers.retain(|_, upto| *upto > customer_indexed);
        set.subjects.retain(|_, upto| *upto > indexed);
    }

    /// Whether `customer` has committed entries that both tiers do not reflect yet.
    pub(crate) fn has_unindexed(&self, customer: &str) -> bool {
        self.unindexed().customers.contains_key(customer)
    }

    /// Whether `subject` of `customer` has committed entries the subject tier does not
    /// reflect yet (or shares its fingerprint with one that has).
    pub(crate) fn has_unindexed_subject(&self, customer: &str, subject: &str) -> bool {
        let fingerprint = self.subject_fingerprint(customer, subject);
        self.unindexed().subjects.contains_key(&fingerprint)
    }

    /// Called by the shard's writer after a commit returned, so that a snapshot begun
    /// after a reader sees this number holds at least what it says.
    pub(crate) fn publish_committed(&self, committed: u64) {
        use std::sync::atomic::Ordering::{Acquire, Release};
        assert!(
            self.indexed.load(Acquire) <= committed,
            "nothing uncommitted is indexed"
        );
        self.committed.store(committed, Release);
    }

    /// Called by the index writer after an index commit returned.
    pub(crate) fn publish_indexed(&self, indexed: u64, customer_indexed: u64) {
        use std::sync::atomic::Ordering::{Acquire, Release};
        assert!(
            indexed <= self.committed.load(Acquire),
            "nothing uncommitted is indexed"
        );
        assert!(
            customer_indexed <= indexed,
            "the customer tier never leads the subject tier"
        );
        self.indexed.store(indexed, Release);
        self.customer_indexed.store(customer_indexed, Release);
    }

    /// Entries in `tier` (both tiers, for `All`), as last published.
    pub(crate) fn indexed_in(&self, tier: IndexTier) -> u64 {
        let reached = match tier {
            IndexTier::Subjects => &self.indexed,
            IndexTier::All => &self.customer_indexed,
        };
        reached.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The stored (subject tier, customer tier) `indexed_upto` as of `txn`: entries below each
/// are in that tier.
pub(crate) fn read_indexed_upto(txn: &ReadTransaction) -> Result<(u64, u64), StorageError> {
    indexed_upto_in(&txn.open_table(INDEX_META)?)
}

/// [`read_indexed_upto`] from an open `index_meta` table (of a read or a write
/// transaction of the index file).
pub(crate) fn indexed_upto_in(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<(u64, u64), StorageError> {
    let subjects = meta_u64(meta, META_INDEXED_UPTO)?.unwrap_or(0);
    let customers = meta_u64(meta, META_CUSTOMER_INDEXED_UPTO)?.unwrap_or(0);
    if customers > subjects {
        return Err(StorageError::Corrupt {
            table: "index_meta",
            detail: format!("customer_indexed_upto {customers} is above indexed_upto {subjects}"),
        });
    }
    Ok((subjects, customers))
}

/// The index layout an index file records (`index_meta.format_version`; 0 when it records
/// none).
fn index_layout_in(txn: &ReadTransaction) -> Result<u32, StorageError> {
    let meta = txn.open_table(INDEX_META)?;
    Ok(u32_in(&meta, "index_meta", META_FORMAT_VERSION)?.unwrap_or(0))
}

/// A `u64` BE value of `meta`, if present.
fn meta_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &'static str,
) -> Result<Option<u64>, StorageError> {
    let Some(v) = meta.get(key)? else {
        return Ok(None);
    };
    let arr: [u8; 8] = v.value().try_into().map_err(|_| StorageError::Corrupt {
        table: "meta",
        detail: format!("{key} is not 8 bytes"),
    })?;
    Ok(Some(u64::from_be_bytes(arr)))
}

/// How [`ShardReader::open_existing`] opens a shard file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOpen {
    /// Read only: the file is never changed, and one that needs repair is refused.
    ReadOnly,
    /// First let redb repair a file that was not shut down cleanly (changes the file: use
    /// on a copy), then read it as `ReadOnly` does.
    Repair,
}

/// The index file as readers see it.
#[derive(Clone)]
pub(crate) struct IndexSide {
    /// The index file.
    pub(crate) db: Arc<DbCell>,
    /// Its writer, to wait for the indexes to reach a size; `None` in audits.
    pub(crate) requests: Option<IndexRequests>,
}

/// A cheap, cloneable read handle on one shard's files, usable from any thread.
#[derive(Clone)]
pub struct ShardReader {
    db: Arc<DbCell>,
    index: IndexSide,
    shard_id: u32,
    progress: Arc<Progress>,
    /// Upper Merkle nodes already read, shared by every reader of the file (proofs).
    nodes: Arc<NodeCache>,
}

impl ShardReader {
    /// The first I/O failure of the shard's files, if one happened: the shard then refuses
    /// writes until a restart (`/healthz` reports it).
    pub fn storage_failure(&self) -> Option<StorageError> {
        self.progress.failure(self.shard_id)
    }

    pub(crate) fn with_progress(
        db: Arc<DbCell>,
        index: IndexSide,
        shard_id: u32,
        progress: Arc<Progress>,
        nodes: Arc<NodeCache>,
    ) -> ShardReader {
        ShardReader {
            db,
            index,
            shard_id,
            progress,
            nodes,
        }
    }

    /// Entries durably committed (the size of the last committed head).
    pub fn committed_size(&self) -> u64 {
        self.progress
            .committed
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Entries the subject tier of the secondary indexes reflects (current state, history,
    /// expiries); never more than [`ShardReader::committed_size`].
    pub fn indexed_size(&self) -> u64 {
        self.progress.indexed_in(IndexTier::Subjects)
    }

    /// Entries both tiers reflect (also the time index, counters and erasure list); never
    /// more than [`ShardReader::indexed_size`].
    pub fn customer_indexed_size(&self) -> u64 {
        self.progress.indexed_in(IndexTier::All)
    }

    /// Entries `tier` reflects ([`ShardReader::indexed_size`] or
    /// [`ShardReader::customer_indexed_size`]).
    pub fn indexed_size_in(&self, tier: IndexTier) -> u64 {
        self.progress.indexed_in(tier)
    }

    /// Whether `customer_id` has committed entries that both tiers do not reflect yet (a
    /// customer-wide index read must then wait for the full index step; others need not).
    pub fn has_unindexed(&self, customer_id: &str) -> bool {
        self.progress.has_unindexed(customer_id)
    }

    /// Whether `subject_id` of `customer_id` has committed entries that the subject tier
    /// does not reflect yet (an index read of that subject alone must then wait for the
    /// subject tier's index step).
    pub fn has_unindexed_subject(&self, customer_id: &str, subject_id: &str) -> bool {
        self.progress.has_unindexed_subject(customer_id, subject_id)
    }

    /// Resolves once `tier` reflects the first `size` entries (at once when it already
    /// does, without a request to the index writer, and in an audit, whose files do not
    /// change).
    pub fn wait_indexed(
        &self,
        tier: IndexTier,
        size: u64,
    ) -> impl std::future::Future<Output = Result<(), StorageError>> + Send + 'static {
        let wait = match &self.index.requests {
            Some(requests) if self.indexed_size_in(tier) < size => Some(requests.up_to(tier, size)),
            _ => None,
        };
        async move {
            match wait {
                Some(wait) => wait.await,
                None => Ok(()),
            }
        }
    }

    /// The index snapshot, then the shard snapshot (in that order: see [`Snapshots`]),
    /// both shared with other point reads.
    fn index_then_shard(&self) -> Result<(Arc<Snapshot>, Arc<Snapshot>), StorageError> {
        let index = self.index.db.shared_snapshot()?;
        Ok((index, self.db.shared_snapshot()?))
    }

    /// The shard this reader reads.
    pub fn shard_id(&self) -> u32 {
        self.shard_id
    }

    /// The latest committed head.
    pub fn head(&self) -> Result<ShardHead, StorageError> {
        Ok(head_in(self.db.shared_snapshot()?.txn(), self.shard_id)?.0)
    }

    /// The event at `seq`, if it exists.
    pub fn event(&self, seq: u64) -> Result<Option<StoredEvent>, StorageError> {
        self.event_with(seq, Personal::Load)
    }

    /// The event at `seq`, if it exists, with its personal record only if `personal` says.
    pub fn event_with(
        &self,
        seq: u64,
        personal: Personal,
    ) -> Result<Option<StoredEvent>, StorageError> {
        load_event(&*self.db.shared_snapshot()?, seq, personal)
    }

    /// The event recorded under `customer_id`'s idempotency key `key`, if any.
    pub fn find_idempotent(
        &self,
        customer_id: &str,
        key: &str,
    ) -> Result<Option<StoredEvent>, StorageError> {
        let snap = self.db.shared_snapshot()?;
        let Some((c, _)) = customer_ref(&snap, customer_id)? else {
            return Ok(None);
        };
        let table = snap.txn().open_table(IDEMPOTENCY)?;
        let Some(v) = table.get((c, key))? else {
            return Ok(None);
        };
        load_event(&snap, v.value().0, Personal::Load)
    }

    /// The current state of a subject: each purpose with the event that last set it.
    pub fn current_state(
        &self,
        customer_id: &str,
        subject_id: &str,
    ) -> Result<Vec<PurposeState>, StorageError> {
        let (index, snap) = self.index_then_shard()?;
        let Some((customer, subject)) = subject_ref(&snap, customer_id, subject_id)? else {
            return Ok(Vec::new());
        };
        state_in(index.subjects()?, customer, &subject.0)
    }

    /// The current state of a subject with the event that set each purpose, read from one
    /// snapshot (one lookup per distinct event), the events' personal records only if
    /// `personal` says.
    pub fn current_state_with_events(
        &self,
        customer_id: &str,
        subject_id: &str,
        personal: Personal,
    ) -> Result<Vec<(PurposeState, StoredEvent)>, StorageError> {
        let (index, snap) = self.index_then_shard()?;
        let Some((customer, subject)) = subject_ref(&snap, customer_id, subject_id)? else {
            return Ok(Vec::new());
        };
        let states = state_in(index.subjects()?, customer, &subject.0)?;
        let tables = EventTables::open(&snap)?;
        let mut loaded: std::collections::HashMap<u64, StoredEvent> =
            std::collections::HashMap::new();
        let mut out = Vec::with_capacity(states.len());
        for s in states {
            if let std::collections::hash_map::Entry::Vacant(slot) = loaded.entry(s.seq) {
                let e = tables
                    .load(s.seq, personal)?
                    .ok_or_else(|| StorageError::Corrupt {
                        table: "current_state",
                        detail: format!("points at missing entry {}", s.seq),
                    })?;
                slot.insert(e);
            }
            let e = loaded[&s.seq].clone();
            out.push((s, e));
        }
        Ok(out)
    }

    /// A page of a subject's events; `after` is the seq cursor of the previous page.
    pub fn history(
        &self,
        customer_id: &str,
        subject_id: &str,
        order: Order,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Page<u64>, StorageError> {
        self.history_with(customer_id, subject_id, order, after, limit, Personal::Load)
    }

    /// [`ShardReader::history`], with or without the events' personal records.
    pub fn history_with(
        &self,
        customer_id: &str,
        subject_id: &str,
        order: Order,
        after: Option<u64>,
        limit: u32,
        personal: Personal,
    ) -> Result<Page<u64>, StorageError> {
        let (index, snap) = self.index_then_shard()?;
        let Some((c, s)) = subject_ref(&snap, customer_id, subject_id)? else {
            return Ok(empty_page());
        };
        let table = index.subjects()?;
        let range = match (order, after) {
            (Order::Ascending, Some(a)) if a >= STATE_ROW - 1 => return Ok(empty_page()),
            (Order::Ascending, Some(a)) => table.range((c, &s.0, a + 1)..(c, &s.0, STATE_ROW))?,
            (Order::Ascending, None) | (Order::Descending, None) => {
                table.range((c, &s.0, 0)..(c, &s.0, STATE_ROW))?
            }
            (Order::Descending, Some(0)) => return Ok(empty_page()),
            (Order::Descending, Some(a)) => table.range((c, &s.0, 0)..(c, &s.0, a))?,
        };
        // The latest event has no history row: the state row stands for it.
        let latest = latest_in(table, c, &s.0)?.filter(|&l| match (order, after) {
            (_, None) => true,
            (Order::Ascending, Some(a)) => l > a,
            (Order::Descending, Some(a)) => l < a,
        });
        let rows = range.map(|r| r.map(|(k, _)| k.value().2));
        let seqs: Box<dyn Iterator<Item = _>> = match order {
            Order::Ascending => Box::new(WithLatest::new(rows, latest, false)),
            Order::Descending => Box::new(WithLatest::new(rows.rev(), latest, true)),
        };
        collect_page(&snap, seqs, limit, |seq| (seq, seq), personal)
    }

    /// A page of a customer's events recorded in `[since_ms, until_ms)`, oldest first;
    /// `after` is the `(recorded_at_ms, seq)` cursor of the previous page.
    pub fn customer_events(
        &self,
        customer_id: &str,
        since_ms: i64,
        until_ms: i64,
        after: Option<(i64, u64)>,
        limit: u32,
    ) -> Result<Page<(i64, u64)>, StorageError> {
        let load = Personal::Load;
        self.customer_events_with(customer_id, since_ms, until_ms, after, limit, load)
    }

    /// [`ShardReader::customer_events`], with or without the events' personal records.
    pub fn customer_events_with(
        &self,
        customer_id: &str,
        since_ms: i64,
        until_ms: i64,
        after: Option<(i64, u64)>,
        limit: u32,
        personal: Personal,
    ) -> Result<Page<(i64, u64)>, StorageError> {
        let (index, snap) = self.index_then_shard()?;
        let Some((c, _)) = customer_ref(&snap, customer_id)? else {
            return Ok(empty_page());
        };
        let start = match after {
            None => (since_ms, 0),
            Some((t, u64::MAX)) => (t.saturating_add(1), 0),
            Some((t, s)) => (t, s + 1),
        };
        let start = start.max((since_ms, 0));
        if start >= (until_ms, 0) {
            return Ok(empty_page());
        }
        let table = index.txn().open_table(CUSTOMER_EVENTS)?;
        // A row is a run of entries (index layout 3): the one holding the cursor's next
        // entry may start before it.
        let range = table.range((c, start.0, 0)..(c, until_ms, 0))?;
        let keys = range.flat_map(move |row| -> TimeKeys {
            match row {
                Err(e) => Box::new(std::iter::once(Err(e))),
                Ok((k, last)) => {
                    let (_, t, first) = k.value();
                    let from = if t == start.0 {
                        first.max(start.1)
                    } else {
                        first
                    };
                    Box::new((from..=last.value()).map(move |seq| Ok((seq, (t, seq)))))
                }
            }
        });
        collect_page(&snap, keys, limit, |x| x, personal)
    }

    /// A page of the customer's GRANTED purposes that lapse before `before_ms` (already
    /// lapsed ones included), soonest first; `after` is the cursor of the previous page.
    pub fn expiring(
        &self,
        customer_id: &str,
        before_ms: i64,
        after: Option<ExpiryCursor>,
        limit: u32,
    ) -> Result<(Vec<Expiring>, bool), StorageError> {
        let (index, snap) = self.index_then_shard()?;
        let Some((c, _)) = customer_ref(&snap, customer_id)? else {
            return Ok((Vec::new(), false));
        };
        let expiries = index.txn().open_table(EXPIRIES)?;
        let subjects = index.subjects()?;
        let tables = EventTables::open(&snap)?;
        let start = after
            .as_ref()
            .map_or((i64::MIN, 0), |a| (a.expires_at_ms, a.seq));
        let mut out: Vec<Expiring> = Vec::new();
        for row in expiries.range((c, start.0, start.1)..(c, before_ms, 0))? {
            let (k, v) = row?;
            let (_, at, seq) = k.value();
            let subject = v.value();
            // The purposes this row stands for: those of the subject's current state that
            // entry `seq` granted with this expiry (sorted by purpose, as the state is).
            let states = state_in(subjects, c, subject)?;
            let resumed = after
                .as_ref()
                .filter(|a| (a.expires_at_ms, a.seq) == (at, seq));
            let mut rows = states
                .into_iter()
                .filter(|s| super::index::Expiring::expiry_row(s) == Some((at, seq)))
                .filter(|s| resumed.is_none_or(|a| s.purpose.as_str() > a.purpose.as_str()))
                .peekable();
            if rows.peek().is_none() {
                if resumed.is_none() {
                    return Err(StorageError::Corrupt {
                        table: "expiries",
                        detail: format!("row for entry {seq} without a current state"),
                    });
                }
                continue;
            }
            let event = tables
                .load(seq, Personal::Load)?
                .ok_or_else(|| StorageError::Corrupt {
                    table: "expiries",
                    detail: format!("points at missing entry {seq}"),
                })?;
            for state in rows {
                if out.len() == limit as usize {
                    return Ok((out, true));
                }
                out.push(Expiring {
                    cursor: ExpiryCursor {
                        expires_at_ms: at,
                        seq,
                        purpose: state.purpose.clone(),
                    },
                    state,
                    event: event.clone(),
                });
            }
        }
        Ok((out, false))
    }

    /// Granted/denied counts per purpose per UTC day, for days in `[since_ms, until_ms)`.
    pub fn daily_counts(
        &self,
        customer_id: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<DailyCount>, StorageError> {
        let (index, snap) = self.index_then_shard()?;
        let Some((c, _)) = customer_ref(&snap, customer_id)? else {
            return Ok(Vec::new());
        };
        let (first, last) = (
            since_ms.div_euclid(MS_PER_DAY),
            (until_ms - 1).div_euclid(MS_PER_DAY),
        );
        if last < first {
            return Ok(Vec::new());
        }
        let table = index.txn().open_table(DAILY_COUNTS)?;
        let mut out = Vec::new();
        for row in table.range((c, first, "")..(c, last + 1, ""))? {
            let (k, v) = row?;
            let (_, day, purpose) = k.value();
            let (granted, denied) = v.value();
            out.push(DailyCount {
                day,
                purpose: purpose.to_string(),
                granted,
                denied,
            });
        }
        Ok(out)
    }

    /// Root of the tree of the first `size` entries (`size` ≤ head size).
    pub fn root_at(&self, size: u64) -> Result<Hash, QueryError> {
        let snap = self.db.shared_snapshot()?;
        let txn = snap.txn();
        let head = head_in(txn, self.shard_id)?.0;
        check_size(size, &head)?;
        if size == 0 {
            return Ok(crate::merkle::TreeHasher::hash_empty(&Blake3Tree));
        }
        let nodes = self.nodes.over(RedbNodes::open(txn)?);
        Ok(subtree_root(&Blake3Tree, &nodes, 0, size)?)
    }

    /// Inclusion proof of entry `seq` in the tree of the first `size` entries.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<InclusionProof, QueryError> {
        let snap = self.db.shared_snapshot()?;
        let txn = snap.txn();
        let head = head_in(txn, self.shard_id)?.0;
        check_size(size, &head)?;
        let nodes = self.nodes.over(RedbNodes::open(txn)?);
        let path = inclusion_proof(&Blake3Tree, &nodes, seq, size).map_err(proof_error)?;
        let root = subtree_root(&Blake3Tree, &nodes, 0, size)?;
        Ok(InclusionProof {
            seq,
            size,
            root,
            path,
        })
    }

    /// Consistency proof from the tree of `old_size` entries to that of `new_size`.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, QueryError> {
        // Between equal sizes the proof is empty (RFC 9162; the verifier then requires equal
        // roots): no snapshot or node read once the size is known to be committed. Most
        // consecutive checkpoints leave some shard unchanged.
        if old_size == new_size && new_size <= self.committed_size() {
            return Ok(ConsistencyProof {
                old_size,
                new_size,
                path: Vec::new(),
            });
        }
        let snap = self.db.shared_snapshot()?;
        let txn = snap.txn();
        let head = head_in(txn, self.shard_id)?.0;
        check_size(new_size, &head)?;
        let nodes = self.nodes.over(RedbNodes::open(txn)?);
        let path =
            consistency_proof(&Blake3Tree, &nodes, old_size, new_size).map_err(proof_error)?;
        Ok(ConsistencyProof {
            old_size,
            new_size,
            path,
        })
    }

    /// Opens an existing shard file for an audit: nothing is created or rebuilt. With
    /// [`AuditOpen::ReadOnly`] the file is not changed at all, and a file that was not shut
    /// down cleanly is refused ([`StorageError::NeedsRepair`]) rather than repaired. Fails
    /// if the file is missing or in use by a server.
    pub fn open_existing(
        path: &std::path::Path,
        shard_id: u32,
        mode: AuditOpen,
    ) -> Result<ShardReader, StorageError> {
        let db = open_audited(path, super::store::SHARD_CACHE_BYTES, mode, "")?;
        let found = meta_u32_in(&db.begin_read()?, META_FORMAT_VERSION)?.unwrap_or(0);
        if found != super::store::STORE_FORMAT_VERSION {
            return Err(StorageError::OldLayout {
                found,
                supported: super::store::STORE_FORMAT_VERSION,
            });
        }
        let index = open_audited(
            &index_path(path),
            super::index_file::INDEX_CACHE_BYTES,
            mode,
            " (the index file: a server rebuilds it from the journal at its next start)",
        )?;
        let found = index_layout_in(&index.begin_read()?)?;
        if found != super::tables::INDEX_FORMAT_VERSION {
            return Err(StorageError::OtherIndexLayout {
                found,
                supported: super::tables::INDEX_FORMAT_VERSION,
            });
        }
        let (head, _) = head_in(&db.begin_read()?, shard_id)?;
        let (indexed, customer_indexed) = read_indexed_upto(&index.begin_read()?)?;
        let progress = Progress::default();
        let indexed = indexed.min(head.size);
        progress.publish_committed(head.size);
        progress.publish_indexed(indexed, customer_indexed.min(indexed));
        let cell = DbCell::holding(Db::ReadOnly(db));
        let index = IndexSide {
            db: Arc::new(DbCell::holding(Db::ReadOnly(index))),
            requests: None,
        };
        Ok(ShardReader::with_progress(
            Arc::new(cell),
            index,
            shard_id,
            Arc::new(progress),
            Arc::new(NodeCache::default()),
        ))
    }

    /// Re-hashes the whole journal, checks every link, every stored Merkle node and the head.
    /// Streams in one read snapshot; memory is O(log n).
    pub fn verify_journal(&self) -> Result<ShardHead, VerifyJournalError> {
        self.verify_journal_observed(|_, _| Ok(()))
    }

    /// [`ShardReader::verify_journal`], calling `observe(entry, verifier)` after each entry
    /// (audits use it to check checkpoint roots at their sizes and to report progress).
    pub fn verify_journal_observed(
        &self,
        mut observe: impl FnMut(&VerifiedEntry<'_>, &ChainVerifier) -> Result<(), ChainError>,
    ) -> Result<ShardHead, VerifyJournalError> {
        let shard_id = self.shard_id;
        let chain = |source| VerifyJournalError::Chain { shard_id, source };
        let txn = self.db.get().begin_read().map_err(StorageError::from)?;
        self.walk_journal(&txn, |bytes, chained, verifier| {
            let seq = chained.seq;
            let entry = EntryView::decode(bytes)
                .map_err(|source| chain(ChainError::Undecodable { seq, source }))?;
            let verified = VerifiedEntry {
                entry,
                entry_hash: chained.entry_hash,
                leaf_hash: chained.leaf_hash,
            };
            observe(&verified, verifier).map_err(chain)
        })
    }

    /// Calls `f(seq, bytes)` for up to `max` journal entries from seq `from` on, in order,
    /// exactly as stored and unchecked, in one read snapshot, and returns the journal's size
    /// in that snapshot: what `assent journal` prints and `Query.journalEntries` pages, for
    /// verifiers that run none of this crate's code. Stops at the first error of `f`.
    pub fn each_journal_entry<E: From<StorageError>>(
        &self,
        from: u64,
        max: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let txn = self.db.get().begin_read().map_err(StorageError::from)?;
        let size = head_in(&txn, self.shard_id)?.0.size;
        let journal = txn.open_table(JOURNAL).map_err(StorageError::from)?;
        let rows = journal
            .range(from..from.saturating_add(max))
            .map_err(StorageError::from)?;
        for row in rows {
            let (k, v) = row.map_err(StorageError::from)?;
            f(k.value(), v.value())?;
        }
        Ok(size)
    }

    /// Read snapshots of both files of the shard (the index file's first).
    pub(crate) fn snapshot(&self) -> Result<Snapshots, StorageError> {
        let index = self.index.db.get().begin_read()?;
        Ok(Snapshots {
            index,
            shard: self.db.get().begin_read()?,
        })
    }

    /// Streams the journal of `txn` through a [`ChainVerifier`], comparing every Merkle node
    /// an append completes with the stored one, and calls `observe(bytes, entry, verifier)`
    /// after each entry; then checks the head. Only each entry's header is decoded here:
    /// `observe` decodes the whole entry strictly (or hands it to what does). Memory is
    /// O(log n).
    pub(crate) fn walk_journal(
        &self,
        txn: &ReadTransaction,
        mut observe: impl FnMut(&[u8], &ChainedEntry, &ChainVerifier) -> Result<(), VerifyJournalError>,
    ) -> Result<ShardHead, VerifyJournalError> {
        let shard_id = self.shard_id;
        let chain = |source: ChainError| VerifyJournalError::Chain { shard_id, source };
        let head = head_in(txn, shard_id)?.0;
        let journal = txn.open_table(JOURNAL).map_err(StorageError::from)?;
        let merkle = txn.open_table(MERKLE).map_err(StorageError::from)?;
        // The stored nodes, in key order, are exactly the nodes the entries complete in
        // append order (see `merkle_key`): one walk beside the journal checks them all.
        let mut stored = merkle.iter().map_err(StorageError::from)?;
        let mut verifier = ChainVerifier::new(shard_id);
        let mut rows = journal.iter().map_err(StorageError::from)?.peekable();
        while let Some(row) = rows.next() {
            let (k, v) = row.map_err(StorageError::from)?;
            let seq = verifier.size();
            if k.value() != seq {
                return Err(chain(ChainError::Gap {
                    seq,
                    found: k.value(),
                }));
            }
            let bytes = v.value();
            let mut node_problem: Option<Result<u8, StorageError>> = None;
            let pushed = verifier.push_chained(bytes, |node| {
                if node_problem.is_none() && node.level >= MIN_STORED_LEVEL {
                    node_problem = stored_node_differs(stored.next(), &node);
                }
            });
            // A broken link says that entry seq − 1 or seq changed, a stored node that
            // differs that entry seq or the node did (the nodes under it are not stored,
            // layout 6): whether the next entry (or, for the last, the head) still links
            // to entry seq as it is tells which.
            let mut next_links_here = || {
                let next = rows.peek().map(|r| r.as_ref().ok().map(|(_, v)| v.value()));
                links_to(next, &head, entry_hash(bytes))
            };
            let chained = match pushed {
                Err(ChainError::BrokenLink { seq }) => {
                    let altered = match next_links_here() {
                        true => seq.saturating_sub(1),
                        false => seq,
                    };
                    return Err(chain(ChainError::LeafMismatch { seq: altered }));
                }
                pushed => pushed.map_err(chain)?,
            };
            match node_problem {
                None => {}
                Some(Ok(level)) if next_links_here() => {
                    return Err(chain(ChainError::NodeMismatch { seq, level }));
                }
                Some(Ok(_)) => return Err(chain(ChainError::LeafMismatch { seq })),
                Some(Err(e)) => return Err(e.into()),
            }
            observe(bytes, &chained, &verifier)?;
        }
        verifier.finish(&head).map_err(chain)?;
        if stored.next().is_some() {
            return Err(chain(ChainError::ExtraNodes { size: head.size }));
        }
        Ok(head)
    }

    /// Checks every secondary index against the journal: each index row points at an
    /// entry of the same customer that says what the row says, the per-customer time index
    /// and the daily counters hold exactly what the journal implies, and every subject
    /// history row is backed by a personal record, and every current state is set by an
    /// entry of its subject's history. Every personal record must open its consent entry's
    /// commitment, and a consent entry without one must be named by an erasure entry.
    /// Memory is bounded by the number of (customer, day, purpose) counters and by
    /// `STATE_CLAIM_BYTES_PER_PASS`, not by the number of events. The `subjects` table is
    /// walked in two halves on two threads.
    pub fn verify_indexes(&self) -> Result<IndexReport, IndexMismatch> {
        self.verify_indexes_in_passes(
            super::state_check::STATE_CLAIM_BYTES_PER_PASS,
            SubjectsPass::TwoThreads,
        )
    }

    /// [`ShardReader::verify_indexes`], holding at most `claim_bytes_per_pass` of state
    /// claims in memory (tests use a small bound to exercise the spilled runs) and walking the
    /// `subjects` table as `pass` says.
    pub(crate) fn verify_indexes_in_passes(
        &self,
        claim_bytes_per_pass: usize,
        pass: SubjectsPass,
    ) -> Result<IndexReport, IndexMismatch> {
        let shard_id = self.shard_id;
        let io = |e: StorageError| IndexMismatch::new(shard_id, format!("reading: {e}"));
        let txn = self.snapshot().map_err(io)?;
        let spill = super::state_check::ClaimSpill {
            bytes_per_pass: claim_bytes_per_pass,
            ..Default::default()
        };
        super::index_check::run(&txn, shard_id, pass, &spill, |check| {
            let journal = txn.shard.open_table(JOURNAL).map_err(|e| io(e.into()))?;
            for row in journal.iter().map_err(|e| io(e.into()))? {
                check.entry_bytes(row.map_err(|e| io(e.into()))?.1.value())?;
            }
            Ok(())
        })
    }
}

/// One row of the `merkle` table as its iterator yields it.
type MerkleRow<'a> = (
    AccessGuard<'a, (u64, u8)>,
    AccessGuard<'a, &'static [u8; 32]>,
);

/// Whether the entry after one whose hash is `hash` names it as its predecessor: `next` is
/// that entry's bytes (`Some(None)` when its row could not be read), or `None` when there is
/// none and the head's chain head speaks for it.
fn links_to(next: Option<Option<&[u8]>>, head: &ShardHead, hash: Hash) -> bool {
    match next {
        Some(Some(bytes)) => HeaderView::decode(bytes).is_ok_and(|h| h.prev_hash == hash),
        Some(None) => false,
        None => head.chain_head == hash,
    }
}

/// `None` when `row` is the stored copy of `node`; otherwise the node's level (or the read
/// error).
fn stored_node_differs(
    row: Option<Result<MerkleRow<'_>, redb::StorageError>>,
    node: &crate::merkle::NewNode,
) -> Option<Result<u8, StorageError>> {
    match row {
        Some(Ok((k, v)))
            if k.value() == merkle_key(node.level, node.index) && *v.value() == node.hash.0 =>
        {
            None
        }
        Some(Err(e)) => Some(Err(e.into())),
        _ => Some(Ok(node.level)),
    }
}

/// Opens an existing file of a shard (with a page cache of `cache_bytes`) for an audit, as
/// [`ShardReader::open_existing`] says; a missing file is a finding (`missing_note` adds
/// what it means).
fn open_audited(
    path: &std::path::Path,
    cache_bytes: usize,
    mode: AuditOpen,
    missing_note: &str,
) -> Result<redb::ReadOnlyDatabase, StorageError> {
    if !path.exists() {
        return Err(StorageError::Corrupt {
            table: "file",
            detail: format!("{} does not exist{missing_note}", path.display()),
        });
    }
    if mode == AuditOpen::Repair {
        // redb repairs a file that was not shut down cleanly when it opens it writable.
        drop(super::store::open_with_cache(path, false, cache_bytes)?);
    }
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    match builder.open_read_only(path) {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::RepairAborted) => Err(StorageError::NeedsRepair),
        Err(e) => Err(e.into()),
    }
}

/// The entries of time-index runs, each with its `(recorded_at_ms, seq)` cursor.
type TimeKeys = Box<dyn Iterator<Item = Result<(u64, (i64, u64)), redb::StorageError>>>;

fn empty_page<C>() -> Page<C> {
    Page {
        items: vec![],
        last_cursor: None,
        has_more: false,
    }
}

fn check_size(size: u64, head: &ShardHead) -> Result<(), QueryError> {
    if size > head.size {
        return Err(QueryError::OutOfRange(format!(
            "tree size {size} is larger than shard {}'s size {}",
            head.shard_id, head.size
        )));
    }
    Ok(())
}

fn proof_error(e: ProofError<StorageError>) -> QueryError {
    match e {
        ProofError::Source(s) => QueryError::Storage(s),
        other => QueryError::OutOfRange(other.to_string()),
    }
}

/// Loads up to `limit` events whose seqs come from `keys`, then checks for one more.
fn collect_page<K, C>(
    snap: &Snapshot,
    keys: impl Iterator<Item = Result<K, redb::StorageError>>,
    limit: u32,
    split: impl Fn(K) -> (u64, C),
    personal: Personal,
) -> Result<Page<C>, StorageError>
where
    K: Copy,
{
    let limit = limit.clamp(1, MAX_PAGE_SIZE) as usize;
    let mut items = Vec::new();
    let mut last_cursor = None;
    let mut keys = keys.peekable();
    let tables = EventTables::open(snap)?;
    while items.len() < limit {
        let Some(key) = keys.next() else { break };
        let (seq, cursor) = split(key?);
        let event = tables
            .load(seq, personal)?
            .ok_or_else(|| StorageError::Corrupt {
                table: "journal",
                detail: format!("index points at missing entry {seq}"),
            })?;
        items.push(event);
        last_cursor = Some(cursor);
    }
    let has_more = keys.peek().is_some();
    Ok(Page {
        items,
        last_cursor,
        has_more,
    })
}

fn load_event(
    snap: &Snapshot,
    seq: u64,
    personal: Personal,
) -> Result<Option<StoredEvent>, StorageError> {
    EventTables::open(snap)?.load(seq, personal)
}

/// The journal and personal-record tables of one snapshot, opened once for many loads.
struct EventTables<'s> {
    journal: &'s ReadOnlyTable<u64, &'static [u8]>,
    personal: &'s ReadOnlyTable<u64, &'static [u8]>,
}

impl EventTables<'_> {
    fn open(snap: &Snapshot) -> Result<EventTables<'_>, StorageError> {
        Ok(EventTables {
            journal: snap.journal()?,
            personal: snap.personal()?,
        })
    }

    fn load(&self, seq: u64, personal: Personal) -> Result<Option<StoredEvent>, StorageError> {
        let Some(v) = self.journal.get(seq)? else {
            return Ok(None);
        };
        let bytes = v.value().to_vec();
        let entry = Entry::decode(&bytes).map_err(|e| StorageError::Corrupt {
            table: "journal",
            detail: format!("entry {seq}: {e}"),
        })?;
        let personal = match personal {
            Personal::Skip => None,
            Personal::Load => match self.personal.get(seq)? {
                None => None,
                Some(p) => Some(split_personal(seq, p.value())?),
            },
        };
        Ok(Some(StoredEvent {
            entry_hash: entry_hash(&bytes),
            entry,
            entry_bytes: bytes,
            personal,
        }))
    }
}

pub(crate) fn split_personal(seq: u64, bytes: &[u8]) -> Result<StoredPersonal, StorageError> {
    let corrupt = |detail: String| StorageError::Corrupt {
        table: "personal_records",
        detail,
    };
    if bytes.len() < 32 {
        return Err(corrupt(format!("record {seq} is shorter than its salt")));
    }
    let salt: [u8; 32] = bytes[..32].try_into().expect("32-byte slice");
    let record =
        PersonalRecord::decode(&bytes[32..]).map_err(|e| corrupt(format!("record {seq}: {e}")))?;
    Ok(StoredPersonal { salt, record })
}

fn customer_ref(
    snap: &Snapshot,
    customer_id: &str,
) -> Result<Option<(u32, [u8; 32])>, StorageError> {
    let customers = snap.customers()?;
    Ok(customers.get(customer_id)?.map(|v| {
        let (number, secret) = v.value();
        (number, *secret)
    }))
}

fn subject_ref(
    snap: &Snapshot,
    customer_id: &str,
    subject_id: &str,
) -> Result<Option<(u32, Hash)>, StorageError> {
    Ok(customer_ref(snap, customer_id)?.map(|(c, secret)| (c, subject_key(&secret, subject_id))))
}
