//! A shard's redb file: opening and checking it, the append transaction and the index step.
//!
//! One `Store` is the only writer of its file. An append commits the journal, the Merkle
//! nodes, the personal records, the idempotency keys, the customers and the head in one
//! durable write transaction; the caller is answered then. The secondary indexes follow in
//! a later, non-durable transaction ([`Store::index_now`]) that covers every entry
//! committed since the last one; they are derived from the journal and rebuilt from
//! `indexed_upto` after a crash (see docs/design.md, "Commit sequence").

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    WriteTransaction,
};

use super::db::DbCell;
use super::error::{AppendError, OpenError, StorageError};
use super::index::IndexTables;
use super::node_cache::NodeCache;
use super::reader::{Progress, RedbNodes, ShardReader, read_head, split_personal};
use super::tables::*;
use crate::format::limits::MAX_BATCH_EVENTS;
use crate::format::{
    ConsentEvent, ConsentRecord, Entry, EntryBody, request_digest, validate_event,
};
use crate::hash::{Hash, entry_hash, personal_commitment, subject_key};
use crate::merkle::{Blake3Tree, Frontier, TreeHasher};
use crate::verify::ShardHead;

/// redb's page cache per shard file. redb's default (1 GiB per database) made a 4-shard
/// server's RSS grow to 5.9 GB while 10M events were loaded; at 32 MiB the caches alone
/// took half of the 256 MiB budget under 1,000-event batches (peak 349 MiB, 258 MiB at
/// 16 MiB, same throughput). The OS page cache still holds hot pages beyond this.
pub const SHARD_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Opens or creates a shard file with the bounded cache.
pub(crate) fn open_db(path: &Path, create: bool) -> Result<Database, redb::DatabaseError> {
    let mut builder = Database::builder();
    builder.set_cache_size(SHARD_CACHE_BYTES);
    if create {
        builder.create(path)
    } else {
        builder.open(path)
    }
}

/// Committed entries that may wait for the index step. When an append leaves more than this
/// many not in both tiers, the writer indexes them before it takes the next request: the
/// bound on the memory they hold (≈ 1 KB each) and on how far a reader may have to wait.
pub const MAX_INDEX_LAG_ENTRIES: usize = 16_384;

/// The two tiers of the secondary indexes, indexed at different paces (docs/design.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexTier {
    /// The subject tier alone (`subjects`, `expiries`: current state, history, renewals),
    /// whose rows sit at random places: indexed every `INDEX_DELAY_MS`.
    Subjects,
    /// Both tiers: also the customer tier (`customer_events`, `daily_counts`, `erasures`),
    /// whose rows sit at each customer's end of its table, so that indexing many entries at
    /// once copies each customer's pages once: every `CUSTOMER_INDEX_DELAY_MS`, or when a
    /// customer-wide read asks.
    All,
}

/// Storage layout version written to `meta.format_version`.
/// Layout 2 added the `erasures` and `expiries` indexes; layout 3 merged the subject history
/// and current state into `subjects`, keyed `expiries` by granting event and the Merkle
/// nodes by completing leaf; layout 4 indexes in two tiers (`meta.customer_indexed_upto`).
/// A file of layout 1 or 2 is migrated on open: its Merkle nodes are re-keyed and its
/// indexes rebuilt from the journal; one of layout 3 gets `customer_indexed_upto =
/// indexed_upto`.
pub const STORE_FORMAT_VERSION: u32 = 4;

/// One appended (or idempotently found) event, as returned to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored entry.
    pub entry: Entry,
    /// Its chain hash.
    pub entry_hash: Hash,
    /// True when the idempotency key was seen before and this is the original event.
    pub duplicate: bool,
}

/// Counters of the write path, for metrics and the group-commit measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Durable write transactions committed.
    pub commits: u64,
    /// Batches (requests) answered by those commits.
    pub batches: u64,
    /// New entries appended.
    pub events: u64,
}

/// The single writer of one shard file.
pub struct Store {
    pub(super) db: Arc<DbCell>,
    pub(super) path: std::path::PathBuf,
    pub(super) head: ShardHead,
    pub(super) last_recorded_at_ms: i64,
    pub(super) frontier: Frontier,
    pub(super) stats: WriteStats,
    /// Personal records were deleted since the file was last rewritten (see `scrub`).
    pub(super) scrub_pending: bool,
    /// Entries [0, indexed_upto) are in the subject tier of the secondary indexes (as
    /// committed, durably or not).
    pub(super) indexed_upto: u64,
    /// Entries [0, customer_indexed_upto) are also in the customer tier; never above
    /// `indexed_upto`.
    pub(super) customer_indexed_upto: u64,
    /// Committed consent entries not yet in both tiers, in seq order from
    /// `customer_indexed_upto` (those from `indexed_upto` on are in neither).
    pub(super) unindexed: Vec<Unindexed>,
    /// Published to readers: what is committed and what is indexed.
    pub(super) progress: Arc<Progress>,
    /// Upper Merkle nodes read by proofs, shared by every reader handed out.
    pub(super) nodes: Arc<NodeCache>,
}

/// A committed consent entry waiting for the index step, with what indexing it needs
/// (kept from the append so the step reads nothing back).
pub(super) struct Unindexed {
    /// The committed entry (its seq says where it goes in the queue).
    entry: Entry,
    /// Its customer's number in this shard (the prefix of every index key).
    customer: u32,
    /// Its subject's keyed hash, computed at the append while the subject id was at hand.
    subject: Hash,
}

/// The decision for one event of a batch, made before anything is written.
enum Planned<'a> {
    New {
        event: &'a ConsentEvent,
        digest: Option<Hash>,
    },
    /// Idempotent retry of an event already in the journal.
    Stored(u64),
    /// Idempotent repeat of an earlier event in the same batch.
    SameAs(usize),
}

impl Store {
    /// Opens (or creates) the shard file at `path` for `shard_id` and checks that its
    /// head agrees with its journal; brings lagging indexes up to date.
    pub fn open(path: &Path, shard_id: u32) -> Result<Store, OpenError> {
        super::scrub::remove_leftover(path).map_err(|source| StorageError::File {
            what: "removing the file of an interrupted scrub",
            source,
        })?;
        let db = open_db(path, true).map_err(StorageError::from)?;
        init_if_new(&db, shard_id)?;
        check_identity(&db, shard_id)?;
        let (head, last_recorded_at_ms) = read_head(&db, shard_id)?;
        let frontier = check_head(&db, &head)?;
        let scrub_pending = super::scrub::pending_in(&db)?;
        let mut store = Store {
            db: Arc::new(DbCell::new(db)),
            path: path.to_path_buf(),
            head,
            last_recorded_at_ms,
            frontier,
            stats: WriteStats::default(),
            scrub_pending,
            indexed_upto: 0,
            customer_indexed_upto: 0,
            unindexed: Vec::new(),
            progress: Arc::new(Progress::default()),
            nodes: Arc::new(NodeCache::default()),
        };
        store.catch_up_indexes()?;
        store.indexed_upto = head.size;
        store.customer_indexed_upto = head.size;
        store.publish();
        Ok(store)
    }

    /// Closes the shard file now. Readers (the gateway's handles) share the file with the
    /// writer and may live until the process exits, so dropping the writer alone does not
    /// close it, and redb records a clean shutdown only when the database is dropped: a file
    /// left open at exit must be repaired (a scan of the whole file) at its next open. Later
    /// reads through any handle fail with "database closed".
    pub fn close(self) {
        let db = self.db.close();
        drop(self);
        if Arc::strong_count(&db) > 1 {
            tracing::warn!("a read still holds the shard file; it closes when that read ends");
        }
    }

    /// The committed head.
    pub fn head(&self) -> ShardHead {
        self.head
    }

    /// Write-path counters since open.
    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    /// A read handle that can be used from any thread.
    pub fn reader(&self) -> ShardReader {
        ShardReader::with_progress(
            self.db.clone(),
            self.head.shard_id,
            self.progress.clone(),
            self.nodes.clone(),
        )
    }

    /// Entries [0, n) are in the secondary indexes.
    pub fn indexed_upto(&self) -> u64 {
        self.indexed_upto
    }

    /// Entries [0, customer_indexed_upto) are also in the customer tier.
    pub fn customer_indexed_upto(&self) -> u64 {
        self.customer_indexed_upto
    }

    /// Entries [0, n) are in `tier` (both tiers, for `All`).
    pub fn indexed_upto_in(&self, tier: IndexTier) -> u64 {
        match tier {
            IndexTier::Subjects => self.indexed_upto,
            IndexTier::All => self.customer_indexed_upto,
        }
    }

    /// Whether committed entries wait for the subject tier's index step.
    pub fn index_pending(&self) -> bool {
        self.indexed_upto < self.head.size
    }

    /// Whether committed entries wait for the customer tier's index step.
    pub fn customer_index_pending(&self) -> bool {
        !self.unindexed.is_empty()
    }

    /// The full index step: reflects every committed entry not yet indexed in both tiers
    /// of the secondary indexes, in one transaction. Durable only when `durable`; otherwise
    /// it becomes durable with the next durable commit, and a crash before that only means
    /// the next open replays these entries from the journal (`catch_up_indexes`).
    ///
    /// With `durable` it always commits durably, also with nothing to index, so that
    /// earlier non-durable index steps reach the disk (shutdown).
    pub fn index_now(&mut self, durable: bool) -> Result<(), StorageError> {
        self.index_step(IndexTier::All, durable)
    }

    /// The index step of `tier` (not durable): brings that tier up to the committed size.
    pub fn index_tier(&mut self, tier: IndexTier) -> Result<(), StorageError> {
        self.index_step(tier, false)
    }

    fn index_step(&mut self, tier: IndexTier, durable: bool) -> Result<(), StorageError> {
        let size = self.head.size;
        assert_eq!(
            self.unindexed.len() as u64,
            size - self.customer_indexed_upto,
            "the queue holds exactly the entries not in both tiers"
        );
        let customers = tier == IndexTier::All && self.customer_index_pending();
        if self.indexed_upto == size && !customers && !durable {
            return Ok(());
        }
        let mut txn = self.db.get().begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        {
            let mut t = WriteTables::open(&txn)?;
            self.apply_queued(&mut t.indexes, customers)?;
            t.indexes.flush_counts()?;
            t.set_indexed_upto(size)?;
            if customers {
                t.set_customer_indexed_upto(size)?;
            }
        }
        self.db.commit(txn)?;
        self.indexed_upto = size;
        if customers {
            self.unindexed.clear();
            self.customer_indexed_upto = size;
        }
        self.publish();
        self.progress.clear_unindexed(customers);
        Ok(())
    }

    /// Applies the queue to the subject tier from `indexed_upto` on, and with `customers`
    /// every queued entry to the customer tier.
    fn apply_queued(
        &self,
        t: &mut super::index::IndexTables<'_>,
        customers: bool,
    ) -> Result<(), StorageError> {
        // Entries below `indexed_upto` are already in the subject tier: a subject step
        // starts past them.
        let in_subject_tier = usize::try_from(self.indexed_upto - self.customer_indexed_upto)
            .expect("the queue fits in memory");
        let first = if customers { 0 } else { in_subject_tier };
        let mut next = self.customer_indexed_upto + first as u64;
        for item in &self.unindexed[first..] {
            assert_eq!(item.entry.seq, next, "entries are indexed once, in order");
            if customers {
                t.apply_customer_tier(&item.entry, item.customer)?;
            }
            if next >= self.indexed_upto {
                t.apply_subject_tier(&item.entry, item.customer, Some(item.subject))?;
            }
            next += 1;
        }
        assert_eq!(next, self.head.size, "every committed entry is queued");
        Ok(())
    }

    /// Tells readers what is committed and how far each index tier reaches.
    pub(super) fn publish(&self) {
        self.progress.publish(
            self.head.size,
            self.indexed_upto,
            self.customer_indexed_upto,
        );
    }

    /// Appends several independent batches in one durable transaction (group commit).
    ///
    /// Each batch is all-or-nothing on its own: an invalid batch gets its error and writes
    /// nothing, the others commit. `Err` means the commit itself failed and nothing at all
    /// was written. The new entries reach the secondary indexes at the next
    /// [`Store::index_now`], or here when more than `MAX_INDEX_LAG_ENTRIES` wait.
    pub fn append_batches(
        &mut self,
        batches: &[Vec<ConsentEvent>],
    ) -> Result<Vec<Result<Vec<Appended>, AppendError>>, StorageError> {
        let results = self.undo_on_error(|store| store.append_in_txn(batches))?;
        if self.unindexed.len() > MAX_INDEX_LAG_ENTRIES {
            // The appends are durable and answered either way.
            self.index_or_log(IndexTier::All);
        }
        Ok(results)
    }

    /// The index step off any request path: a failure leaves the entries queued (nothing
    /// of the step was written) for the next step or the next open.
    pub fn index_or_log(&mut self, tier: IndexTier) {
        if let Err(e) = self.index_tier(tier) {
            tracing::error!(error = %e, "index step failed; the entries stay queued");
        }
    }

    /// Runs one write transaction; if it fails, the in-memory head, time, frontier and
    /// index queue go back to the last committed state (nothing of the transaction is on
    /// disk). On success the new head is published to readers.
    pub(super) fn undo_on_error<T, E>(
        &mut self,
        txn: impl FnOnce(&mut Store) -> Result<T, E>,
    ) -> Result<T, E> {
        let saved = (self.head, self.last_recorded_at_ms, self.frontier.clone());
        let queued = self.unindexed.len();
        let outcome = txn(self);
        if outcome.is_err() {
            (self.head, self.last_recorded_at_ms, self.frontier) = saved;
            self.unindexed.truncate(queued);
        }
        self.publish();
        outcome
    }

    /// Writes the head of the entries appended in `t` (the root costs O(log n) hashes:
    /// once per commit, not once per entry) and the pending counters; the last step before
    /// the commit.
    pub(super) fn seal(&mut self, t: &mut WriteTables<'_>) -> Result<(), StorageError> {
        self.head.root = self.frontier.root(&Blake3Tree);
        t.indexes.flush_counts()?;
        t.write_head(&self.head, self.last_recorded_at_ms)
    }

    fn append_in_txn(
        &mut self,
        batches: &[Vec<ConsentEvent>],
    ) -> Result<Vec<Result<Vec<Appended>, AppendError>>, StorageError> {
        let txn = self.db.get().begin_write()?;
        let mut results = Vec::with_capacity(batches.len());
        let mut appended = 0u64;
        {
            let mut t = WriteTables::open(&txn)?;
            for batch in batches {
                let result = match plan_batch(&t, batch) {
                    Err(e) => Err(e),
                    Ok(plan) => Ok(self.write_batch(&mut t, plan)?),
                };
                if let Ok(items) = &result {
                    appended += items.iter().filter(|a| !a.duplicate).count() as u64;
                }
                results.push(result);
            }
            if appended > 0 {
                self.seal(&mut t)?;
            }
        }
        if appended > 0 {
            self.db.commit(txn)?;
            self.stats.commits += 1;
            // Before the new size is published and any caller answered (undo_on_error).
            for (batch, result) in batches.iter().zip(&results) {
                if let (Some(first), Ok(_)) = (batch.first(), result) {
                    let subjects = batch.iter().map(|e| e.subject_id.as_str());
                    self.progress.add_unindexed(&first.customer_id, subjects);
                }
            }
        } else {
            txn.abort()?;
        }
        self.stats.batches += batches.len() as u64;
        self.stats.events += appended;
        Ok(results)
    }

    fn write_batch(
        &mut self,
        t: &mut WriteTables<'_>,
        plan: Vec<Planned<'_>>,
    ) -> Result<Vec<Appended>, StorageError> {
        let mut out: Vec<Appended> = Vec::with_capacity(plan.len());
        // A batch is one customer's (`plan_batch` checked it): looked up once. Its salts
        // come from one call to the system's random source instead of one per event.
        let new_events = plan
            .iter()
            .filter(|p| matches!(p, Planned::New { .. }))
            .count();
        let salts = random_bytes(32 * new_events)?;
        let mut salts = salts
            .chunks_exact(32)
            .map(|s| <[u8; 32]>::try_from(s).expect("32-byte chunks"));
        let mut customer = None;
        for item in plan {
            let appended = match item {
                Planned::New { event, digest } => {
                    let (number, secret) = match customer {
                        Some(c) => c,
                        None => *customer.insert(t.customer_or_create(&event.customer_id)?),
                    };
                    let salt = salts.next().expect("one salt per new event");
                    let customer = Customer {
                        number,
                        secret,
                        id: &event.customer_id,
                    };
                    self.write_event(t, event, customer, salt, digest)?
                }
                Planned::Stored(seq) => Appended {
                    duplicate: true,
                    ..t.stored(seq)?
                },
                Planned::SameAs(i) => Appended {
                    duplicate: true,
                    ..out[i].clone()
                },
            };
            out.push(appended);
        }
        Ok(out)
    }

    fn write_event(
        &mut self,
        t: &mut WriteTables<'_>,
        event: &ConsentEvent,
        owner: Customer<'_>,
        salt: [u8; 32],
        digest: Option<Hash>,
    ) -> Result<Appended, StorageError> {
        assert_eq!(owner.id, event.customer_id, "a batch is one customer's");
        let (customer, secret) = (owner.number, owner.secret);
        let personal_bytes = event.encode_personal_record();
        let body = EntryBody::Consent(ConsentRecord::from_event(
            event,
            personal_commitment(&salt, &personal_bytes),
        ));
        let (entry, hash) = self.append_entry(t, &event.customer_id, body)?;
        let seq = entry.seq;
        let mut stored_personal = Vec::with_capacity(32 + personal_bytes.len());
        stored_personal.extend_from_slice(&salt);
        stored_personal.extend_from_slice(&personal_bytes);
        t.personal.insert(seq, stored_personal.as_slice())?;
        if let (Some(key), Some(digest)) = (&event.idempotency_key, digest) {
            t.idempotency
                .insert((customer, key.as_str()), (seq, &digest.0))?;
        }
        self.unindexed.push(Unindexed {
            entry: entry.clone(),
            customer,
            subject: subject_key(&secret, &event.subject_id),
        });
        Ok(Appended {
            entry,
            entry_hash: hash,
            duplicate: false,
        })
    }

    /// Appends one entry of any kind at the end of the journal: journal row, Merkle nodes
    /// and the in-memory head (the stored head is written once per commit).
    pub(super) fn append_entry(
        &mut self,
        t: &mut WriteTables<'_>,
        customer_id: &str,
        body: EntryBody,
    ) -> Result<(Entry, Hash), StorageError> {
        let recorded_at_ms = now_ms().max(self.last_recorded_at_ms);
        let entry = Entry {
            shard_id: self.head.shard_id,
            seq: self.head.size,
            recorded_at_ms,
            prev_hash: self.head.chain_head,
            customer_id: customer_id.to_string(),
            body,
        };
        let bytes = entry.encode();
        let hash = entry_hash(&bytes);
        t.journal.insert(entry.seq, bytes.as_slice())?;
        let mut node_result = Ok(());
        let merkle = &mut t.merkle;
        self.frontier
            .push(&Blake3Tree, Blake3Tree.hash_leaf(&bytes), |node| {
                if node_result.is_ok() {
                    node_result = merkle
                        .insert(merkle_key(node.level, node.index), &node.hash.0)
                        .map(|_| ());
                }
            });
        node_result?;
        self.head.size += 1;
        self.head.chain_head = hash;
        self.last_recorded_at_ms = recorded_at_ms;
        Ok((entry, hash))
    }

    /// Replays journal entries that the indexes do not yet reflect.
    fn catch_up_indexes(&mut self) -> Result<(), StorageError> {
        const CHUNK: u64 = 10_000;
        loop {
            let txn = self.db.get().begin_write()?;
            let done = {
                let mut t = WriteTables::open(&txn)?;
                let (subjects_from, from) = t.indexed_upto()?;
                let to = self.head.size.min(from + CHUNK);
                for seq in from..to {
                    t.reindex(seq, seq >= subjects_from)?;
                }
                t.indexes.flush_counts()?;
                t.set_indexed_upto(to.max(subjects_from))?;
                t.set_customer_indexed_upto(to)?;
                to == self.head.size
            };
            self.db.commit(txn)?;
            if done {
                return Ok(());
            }
        }
    }

    /// Empties every secondary index so that the next open rebuilds them from the
    /// journal (operator repair, and the test that proves indexes are derivable).
    pub fn reset_indexes(path: &Path) -> Result<(), StorageError> {
        let db = open_db(path, true)?;
        let txn = db.begin_write()?;
        drop_indexes(&txn)?;
        txn.commit()?;
        Ok(())
    }
}

/// Validates a batch and resolves idempotency before anything is written.
fn plan_batch<'a>(
    t: &WriteTables<'_>,
    batch: &'a [ConsentEvent],
) -> Result<Vec<Planned<'a>>, AppendError> {
    if batch.is_empty() || batch.len() > MAX_BATCH_EVENTS {
        return Err(AppendError::BatchSize {
            count: batch.len() as u64,
            max: MAX_BATCH_EVENTS as u64,
        });
    }
    let customer_id = &batch[0].customer_id;
    for (i, event) in batch.iter().enumerate() {
        let index = i as u32;
        validate_event(event).map_err(|source| AppendError::Invalid { index, source })?;
        if &event.customer_id != customer_id {
            return Err(AppendError::MixedCustomers { index });
        }
    }
    let customer = t.customer(customer_id)?.map(|(n, _)| n);
    let mut seen: HashMap<&str, (usize, Hash)> = HashMap::new();
    let mut plan = Vec::with_capacity(batch.len());
    for (i, event) in batch.iter().enumerate() {
        let Some(key) = event.idempotency_key.as_deref() else {
            plan.push(Planned::New {
                event,
                digest: None,
            });
            continue;
        };
        let digest = request_digest(event);
        let conflict = || AppendError::IdempotencyConflict {
            index: i as u32,
            key: key.to_string(),
        };
        if let Some(&(j, d)) = seen.get(key) {
            if d != digest {
                return Err(conflict());
            }
            plan.push(Planned::SameAs(j));
            continue;
        }
        seen.insert(key, (i, digest));
        let stored = match customer {
            Some(c) => t
                .idempotency
                .get((c, key))
                .map_err(StorageError::from)?
                .map(|v| {
                    let (seq, digest) = v.value();
                    (seq, *digest)
                }),
            None => None,
        };
        match stored {
            Some((_, d)) if d == Hash::ZERO.0 => {
                return Err(AppendError::IdempotencyErased {
                    index: i as u32,
                    key: key.to_string(),
                });
            }
            Some((_, d)) if d != digest.0 => return Err(conflict()),
            Some((seq, _)) => plan.push(Planned::Stored(seq)),
            None => plan.push(Planned::New {
                event,
                digest: Some(digest),
            }),
        }
    }
    Ok(plan)
}

/// Every table of the shard, open in one write transaction.
pub(super) struct WriteTables<'t> {
    pub(super) journal: Table<'t, u64, &'static [u8]>,
    pub(super) merkle: Table<'t, (u64, u8), &'static [u8; 32]>,
    pub(super) personal: Table<'t, u64, &'static [u8]>,
    pub(super) meta: Table<'t, &'static str, &'static [u8]>,
    pub(super) customers: Table<'t, &'static str, (u32, &'static [u8; 32])>,
    pub(super) idempotency: Table<'t, (u32, &'static str), (u64, &'static [u8; 32])>,
    pub(super) indexes: IndexTables<'t>,
}

impl<'t> WriteTables<'t> {
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<WriteTables<'t>, StorageError> {
        Ok(WriteTables {
            journal: txn.open_table(JOURNAL)?,
            merkle: txn.open_table(MERKLE)?,
            personal: txn.open_table(PERSONAL)?,
            meta: txn.open_table(META)?,
            customers: txn.open_table(CUSTOMERS)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            indexes: IndexTables {
                subjects: txn.open_table(SUBJECTS)?,
                customer_events: txn.open_table(CUSTOMER_EVENTS)?,
                daily_counts: txn.open_table(DAILY_COUNTS)?,
                erasures: txn.open_table(ERASURES)?,
                expiries: txn.open_table(EXPIRIES)?,
                pending_counts: Default::default(),
            },
        })
    }

    pub(super) fn customer(&self, id: &str) -> Result<Option<(u32, [u8; 32])>, StorageError> {
        Ok(self.customers.get(id)?.map(|v| {
            let (number, secret) = v.value();
            (number, *secret)
        }))
    }

    fn customer_or_create(&mut self, id: &str) -> Result<(u32, [u8; 32]), StorageError> {
        if let Some(found) = self.customer(id)? {
            return Ok(found);
        }
        let number = u32::try_from(self.customers.len()?).map_err(|_| StorageError::Corrupt {
            table: "customers",
            detail: "more than 2^32 customers in one shard".into(),
        })?;
        let value = (number, random_32()?);
        self.customers.insert(id, (value.0, &value.1))?;
        Ok(value)
    }

    pub(super) fn stored(&self, seq: u64) -> Result<Appended, StorageError> {
        let bytes = self
            .journal
            .get(seq)?
            .ok_or_else(|| StorageError::Corrupt {
                table: "journal",
                detail: format!("idempotency key points at missing entry {seq}"),
            })?;
        let bytes = bytes.value();
        let entry = Entry::decode(bytes).map_err(|e| StorageError::Corrupt {
            table: "journal",
            detail: format!("entry {seq}: {e}"),
        })?;
        Ok(Appended {
            entry,
            entry_hash: entry_hash(bytes),
            duplicate: false,
        })
    }

    pub(super) fn write_head(
        &mut self,
        head: &ShardHead,
        last_recorded_at_ms: i64,
    ) -> Result<(), StorageError> {
        let mut v = Vec::with_capacity(80);
        v.extend_from_slice(&head.size.to_be_bytes());
        v.extend_from_slice(&head.root.0);
        v.extend_from_slice(&head.chain_head.0);
        v.extend_from_slice(&last_recorded_at_ms.to_be_bytes());
        self.meta.insert(META_HEAD, v.as_slice())?;
        Ok(())
    }

    /// The stored (subject tier, customer tier) `indexed_upto`.
    fn indexed_upto(&self) -> Result<(u64, u64), StorageError> {
        super::reader::indexed_upto_in(&self.meta)
    }

    pub(super) fn set_indexed_upto(&mut self, upto: u64) -> Result<(), StorageError> {
        self.meta
            .insert(META_INDEXED_UPTO, upto.to_be_bytes().as_slice())?;
        Ok(())
    }

    pub(super) fn set_customer_indexed_upto(&mut self, upto: u64) -> Result<(), StorageError> {
        self.meta
            .insert(META_CUSTOMER_INDEXED_UPTO, upto.to_be_bytes().as_slice())?;
        Ok(())
    }

    /// Both tiers' `indexed_upto` (erasure and rebuilds move them together).
    pub(super) fn set_both_indexed_upto(&mut self, upto: u64) -> Result<(), StorageError> {
        self.set_indexed_upto(upto)?;
        self.set_customer_indexed_upto(upto)
    }

    /// Applies journal entry `seq` to the customer tier, the idempotency keys and, with
    /// `subject_tier`, the subject tier.
    pub(super) fn reindex(&mut self, seq: u64, subject_tier: bool) -> Result<(), StorageError> {
        let Appended { entry, .. } = self.stored(seq)?;
        let (customer, secret) = self.customer_or_create(&entry.customer_id)?;
        self.indexes.apply_customer_tier(&entry, customer)?;
        let Some(consent) = entry.consent() else {
            return Ok(());
        };
        // An erased entry has no personal record: it is counted but linked to no one, and
        // its idempotency key keeps only the position, with the zero digest that marks it
        // erased (the real digest covers the personal part).
        let personal = match self.personal.get(seq)? {
            Some(p) => Some(split_personal(seq, p.value())?.record),
            None => None,
        };
        if let Some(key) = &consent.idempotency_key {
            let digest = match &personal {
                Some(record) => request_digest(&ConsentEvent::reassemble(&entry, record.clone())),
                None => Hash::ZERO,
            };
            self.idempotency
                .insert((customer, key.as_str()), (seq, &digest.0))?;
        }
        if !subject_tier {
            return Ok(());
        }
        let subject = personal.map(|r| subject_key(&secret, &r.subject_id));
        self.indexes.apply_subject_tier(&entry, customer, subject)
    }
}

fn init_if_new(db: &Database, shard_id: u32) -> Result<(), StorageError> {
    let txn = db.begin_write()?;
    if txn.open_table(META)?.get(META_FORMAT_VERSION)?.is_some() {
        // An existing file: its tables are those of its layout (`check_identity` migrates).
        txn.abort()?;
        return Ok(());
    }
    {
        // Creates every table, so readers never meet an absent one.
        let WriteTables { mut meta, .. } = WriteTables::open(&txn)?;
        meta.insert(
            META_FORMAT_VERSION,
            STORE_FORMAT_VERSION.to_be_bytes().as_slice(),
        )?;
        meta.insert(META_SHARD_ID, shard_id.to_be_bytes().as_slice())?;
        let mut head = vec![0u8; 8];
        head.extend_from_slice(&Blake3Tree.hash_empty().0);
        head.extend_from_slice(&Hash::ZERO.0);
        head.extend_from_slice(&i64::MIN.to_be_bytes());
        meta.insert(META_HEAD, head.as_slice())?;
        meta.insert(META_INDEXED_UPTO, 0u64.to_be_bytes().as_slice())?;
        meta.insert(META_CUSTOMER_INDEXED_UPTO, 0u64.to_be_bytes().as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Layouts 1 and 2 keyed the Merkle nodes by (level, index): they are copied to the table
/// keyed by completing leaf, in one transaction, and the old table deleted.
fn migrate_merkle(db: &Database) -> Result<(), StorageError> {
    let txn = db.begin_write()?;
    {
        let old = txn.open_table(OLD_MERKLE)?;
        let mut new = txn.open_table(MERKLE)?;
        for row in old.iter()? {
            let (k, v) = row?;
            let (level, index) = k.value();
            new.insert(merkle_key(level, index), v.value())?;
        }
    }
    txn.delete_table(OLD_MERKLE)?;
    txn.commit()?;
    Ok(())
}

/// Layouts 1 and 2 had other index tables: every index is rebuilt from the journal on this
/// open (they are derived), then the file says the current layout.
fn migrate_indexes(db: &Database) -> Result<(), StorageError> {
    let txn = db.begin_write()?;
    drop_indexes(&txn)?;
    txn.open_table(META)?.insert(
        META_FORMAT_VERSION,
        STORE_FORMAT_VERSION.to_be_bytes().as_slice(),
    )?;
    {
        // Recreates the index tables empty, so readers never meet an absent one.
        WriteTables::open(&txn)?;
    }
    txn.commit()?;
    Ok(())
}

/// Layout 3 indexed every table in one step: its customer tier reaches as far as its
/// subject tier.
fn migrate_tiers(db: &Database) -> Result<(), StorageError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let (subjects, _) = super::reader::indexed_upto_in(&meta)?;
        meta.insert(
            META_CUSTOMER_INDEXED_UPTO,
            subjects.to_be_bytes().as_slice(),
        )?;
        meta.insert(
            META_FORMAT_VERSION,
            STORE_FORMAT_VERSION.to_be_bytes().as_slice(),
        )?;
    }
    txn.commit()?;
    Ok(())
}

/// Deletes every derived table and marks nothing indexed: the next open rebuilds them
/// from the journal (`catch_up_indexes`).
fn drop_indexes(txn: &WriteTransaction) -> Result<(), StorageError> {
    txn.delete_table(SUBJECTS)?;
    txn.delete_table(OLD_SUBJECT_EVENTS)?;
    txn.delete_table(OLD_CURRENT_STATE)?;
    txn.delete_table(CUSTOMER_EVENTS)?;
    txn.delete_table(DAILY_COUNTS)?;
    txn.delete_table(IDEMPOTENCY)?;
    txn.delete_table(ERASURES)?;
    txn.delete_table(EXPIRIES)?;
    let mut meta = txn.open_table(META)?;
    meta.insert(META_INDEXED_UPTO, 0u64.to_be_bytes().as_slice())?;
    meta.insert(META_CUSTOMER_INDEXED_UPTO, 0u64.to_be_bytes().as_slice())?;
    Ok(())
}

fn meta_u32(db: &Database, key: &str) -> Result<Option<u32>, StorageError> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let Some(v) = meta.get(key)? else {
        return Ok(None);
    };
    let arr: [u8; 4] = v.value().try_into().map_err(|_| StorageError::Corrupt {
        table: "meta",
        detail: format!("{key} is not 4 bytes"),
    })?;
    Ok(Some(u32::from_be_bytes(arr)))
}

fn check_identity(db: &Database, shard_id: u32) -> Result<(), OpenError> {
    let mut version = meta_u32(db, META_FORMAT_VERSION)?.unwrap_or(0);
    if version == 1 || version == 2 {
        migrate_merkle(db)?;
        migrate_indexes(db)?;
        version = STORE_FORMAT_VERSION;
    }
    if version == 3 {
        migrate_tiers(db)?;
        version = STORE_FORMAT_VERSION;
    }
    if version != STORE_FORMAT_VERSION {
        return Err(OpenError::UnsupportedFormat {
            found: version,
            supported: STORE_FORMAT_VERSION,
        });
    }
    let found = meta_u32(db, META_SHARD_ID)?.unwrap_or(u32::MAX);
    if found != shard_id {
        return Err(OpenError::WrongShard {
            found,
            expected: shard_id,
        });
    }
    Ok(())
}

/// Checks the stored head against the journal's tail and the stored Merkle nodes, and
/// returns the frontier to append with.
fn check_head(db: &Database, head: &ShardHead) -> Result<Frontier, OpenError> {
    let inconsistent = |detail: String| OpenError::Inconsistent {
        shard_id: head.shard_id,
        detail,
    };
    let txn = db.begin_read().map_err(StorageError::from)?;
    let journal = txn.open_table(JOURNAL).map_err(StorageError::from)?;
    let merkle = txn.open_table(MERKLE).map_err(StorageError::from)?;
    let last = journal.last().map_err(StorageError::from)?;
    let journal_size = last.as_ref().map_or(0, |(k, _)| k.value() + 1);
    if journal_size != head.size {
        return Err(inconsistent(format!(
            "the journal ends at size {journal_size} but the head says {}",
            head.size
        )));
    }
    let nodes = RedbNodes(&merkle);
    let frontier = Frontier::load(head.size, &nodes).map_err(|e| inconsistent(e.to_string()))?;
    if frontier.root(&Blake3Tree) != head.root {
        return Err(inconsistent(format!(
            "the stored Merkle nodes give a root other than the head's at size {}",
            head.size
        )));
    }
    if let Some((k, v)) = last {
        let seq = k.value();
        let bytes = v.value();
        if entry_hash(bytes) != head.chain_head {
            return Err(inconsistent(format!(
                "entry {seq} does not hash to the stored chain head"
            )));
        }
        let leaf = nodes.get(0, seq).map_err(|e| inconsistent(e.to_string()))?;
        if leaf != Blake3Tree.hash_leaf(bytes) {
            return Err(inconsistent(format!(
                "entry {seq} does not match its stored Merkle leaf"
            )));
        }
        match Entry::decode(bytes) {
            Ok(e) if e.seq == seq && e.shard_id == head.shard_id => {}
            Ok(_) => return Err(inconsistent(format!("entry {seq} names another position"))),
            Err(e) => return Err(inconsistent(format!("entry {seq}: {e}"))),
        }
    }
    Ok(frontier)
}

/// A batch's customer as the write path needs it.
#[derive(Clone, Copy)]
struct Customer<'a> {
    /// Its number in this shard.
    number: u32,
    /// Its secret subject key.
    secret: [u8; 32],
    /// Its id (checked against each event's).
    id: &'a str,
}

/// `len` bytes from the system's random source.
fn random_bytes(len: usize) -> Result<Vec<u8>, StorageError> {
    let mut out = vec![0u8; len];
    getrandom::fill(&mut out).map_err(|e| StorageError::Random(e.to_string()))?;
    Ok(out)
}

fn random_32() -> Result<[u8; 32], StorageError> {
    let mut out = [0u8; 32];
    getrandom::fill(&mut out).map_err(|e| StorageError::Random(e.to_string()))?;
    Ok(out)
}

/// Server time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
