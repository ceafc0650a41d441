//! A shard's redb file: opening and checking it, and the append transaction.
//!
//! One `Store` is the only writer of its file. An append commits the journal, the Merkle
//! nodes, the personal records, the idempotency keys, the customers and the head in one
//! durable write transaction; the caller is answered then, and the new entries are handed
//! to the shard's index writer (`index_writer`), which keeps the secondary indexes in a
//! file of their own behind the journal; they are derived from the journal and replayed
//! from its `indexed_upto` after a crash (see docs/design.md, "Commit sequence").

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, WriteTransaction,
};

use super::db::DbCell;
use super::error::{AppendError, OpenError, StorageError};
use super::index::ConsentFacts;
use super::index_file::{IndexStore, Unindexed, index_path, remove_index_file};
use super::index_writer::{IndexHold, IndexWriter};
use super::node_cache::NodeCache;
use super::reader::{Progress, RedbNodes, ShardReader, read_head, split_personal};
use super::tables::*;
use crate::format::limits::MAX_BATCH_EVENTS;
use crate::format::{
    ConsentEvent, Entry, EntryBody, PersonalRecord, request_digest, validate_event,
};
use crate::hash::{Hash, entry_hash, personal_commitment, subject_key};
use crate::merkle::{Blake3Tree, Frontier, TreeHasher};
use crate::verify::ShardHead;

/// redb's page cache per shard file. redb's default (1 GiB per database) made a 4-shard
/// server's RSS grow to 5.9 GB while 10M events were loaded; at 32 MiB the caches alone
/// took half of the 256 MiB budget under 1,000-event batches (peak 349 MiB, 258 MiB at
/// 16 MiB, same throughput). Since the indexes have their own file (and cache,
/// `INDEX_CACHE_BYTES`), the shard file's hot pages are the tails of append-only tables:
/// 8 MiB instead of 16 cost nothing measurable at 10M events and saved 17–30 MiB of peak
/// RSS (docs/benchmarks.md, session 16). The OS page cache holds hot pages beyond this.
pub const SHARD_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Opens or creates a shard file with the bounded cache.
pub(crate) fn open_db(path: &Path, create: bool) -> Result<Database, redb::DatabaseError> {
    open_with_cache(path, create, SHARD_CACHE_BYTES)
}

/// Opens (or with `create`, creates) a redb file with a page cache of `cache_bytes`.
pub(crate) fn open_with_cache(
    path: &Path,
    create: bool,
    cache_bytes: usize,
) -> Result<Database, redb::DatabaseError> {
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    if create {
        builder.create(path)
    } else {
        builder.open(path)
    }
}

/// Committed entries that may wait for the index writer. When an append leaves more than
/// this many not in both tiers, the shard's writer waits for the index writer before it
/// takes the next request: the bound on the memory they hold (≈ 1 KB each) and on how far
/// a reader may have to wait.
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
/// nodes by completing leaf; layout 4 indexed in two tiers (`meta.customer_indexed_upto`);
/// layout 5 moved the secondary indexes to their own file (`shard-NNNN.index.redb`);
/// layout 6 stores no Merkle node below `MIN_STORED_LEVEL` (leaves and level-1 nodes are
/// computed from the journal when a proof needs them).
/// A file of layout 1 or 2 is migrated on open: its Merkle nodes are re-keyed and its
/// idempotency keys rebuilt from the journal; from layouts 1–4 the index tables are
/// dropped from the shard file and rebuilt from the journal into the index file; from
/// layouts 1–5 the stored nodes below `MIN_STORED_LEVEL` are deleted.
pub const STORE_FORMAT_VERSION: u32 = 6;

/// The layout that moved the indexes to their own file; a migration through it says so
/// before the next step.
const LAYOUT_INDEX_FILE: u32 = 5;

/// One appended (or idempotently found) event, as returned to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored entry.
    pub entry: Entry,
    /// Its chain hash.
    pub entry_hash: Hash,
    /// True when the idempotency key was seen before and this is the original event.
    pub duplicate: bool,
    /// The personal record of a consent event this call appended, moved out of the
    /// submitted event (not copied) so that the caller can answer with it. `None` for a
    /// duplicate (the stored record, which may have been erased, is the caller's to read)
    /// and for an erasure entry.
    pub personal: Option<PersonalRecord>,
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
    /// This process's last scrub of the shard, which spaces the scheduled ones.
    pub(super) last_scrub: Option<super::scrub::LastScrub>,
    /// The free disk space a scrub needs (tests lower or raise it).
    pub(super) scrub_space: super::scrub::ScrubSpace,
    /// Consent entries of the transaction being written, handed to the index writer
    /// once it has committed.
    pub(super) fresh: Vec<Unindexed>,
    /// The index writer, which owns the index file.
    pub(super) index: IndexWriter,
    /// The index file, as the index writer's readers share it.
    pub(super) index_db: Arc<DbCell>,
    /// Published to readers: what is committed and what is indexed.
    pub(super) progress: Arc<Progress>,
    /// Upper Merkle nodes read by proofs, shared by every reader handed out.
    pub(super) nodes: Arc<NodeCache>,
}

/// The decision for one event of a batch, made before anything is written.
enum Planned {
    /// A new event, with its request digest when it has an idempotency key.
    New { digest: Option<Hash> },
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
        let mut db = open_db(path, true).map_err(StorageError::from)?;
        init_if_new(&db, shard_id)?;
        check_identity(&mut db, path, shard_id)?;
        let (head, last_recorded_at_ms) = read_head(&db, shard_id)?;
        let frontier = check_head(&db, &head)?;
        let scrub_pending = super::scrub::pending_in(&db)?;
        let db = Arc::new(DbCell::new(db));
        let progress = Arc::new(Progress::default());
        progress.publish_committed(head.size);
        let index = IndexStore::open(path, shard_id, db.clone(), progress.clone(), head.size)?;
        let index_db = index.db.clone();
        Ok(Store {
            db,
            path: path.to_path_buf(),
            head,
            last_recorded_at_ms,
            frontier,
            stats: WriteStats::default(),
            scrub_pending,
            last_scrub: None,
            scrub_space: super::scrub::ScrubSpace::default(),
            fresh: Vec::new(),
            index: IndexWriter::start(index)?,
            index_db,
            progress,
            nodes: Arc::new(NodeCache::default()),
        })
    }

    /// Closes the shard file now. Readers (the gateway's handles) share the file with the
    /// writer and may live until the process exits, so dropping the writer alone does not
    /// close it, and redb records a clean shutdown only when the database is dropped: a file
    /// left open at exit must be repaired (a scan of the whole file) at its next open. Later
    /// reads through any handle fail with "database closed".
    pub fn close(mut self) {
        self.index.stop();
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
            super::reader::IndexSide {
                db: self.index_db.clone(),
                requests: Some(self.index.requests().clone()),
            },
            self.head.shard_id,
            self.progress.clone(),
            self.nodes.clone(),
        )
    }

    /// Entries [0, n) are in the subject tier of the secondary indexes.
    pub fn indexed_upto(&self) -> u64 {
        self.progress.indexed_in(IndexTier::Subjects)
    }

    /// Entries [0, customer_indexed_upto) are also in the customer tier.
    pub fn customer_indexed_upto(&self) -> u64 {
        self.progress.indexed_in(IndexTier::All)
    }

    /// Waits until both tiers reflect every committed entry; with `durable`, until that is
    /// also durable in the index file (always a durable commit there, so that earlier
    /// non-durable index steps reach the disk).
    pub fn index_now(&mut self, durable: bool) -> Result<(), StorageError> {
        if durable {
            self.index.requests().durable()
        } else {
            self.index_tier(IndexTier::All)
        }
    }

    /// Waits until `tier` reflects every committed entry.
    pub fn index_tier(&mut self, tier: IndexTier) -> Result<(), StorageError> {
        self.index.requests().wait_up_to(tier, self.head.size)
    }

    /// Holds back the index writer's steps from after the entries committed so far, so
    /// that a test can observe indexes behind the journal; a writer closed while held skips
    /// its final step, as after a crash.
    #[doc(hidden)]
    pub fn hold_indexing(&self, hold: IndexHold) {
        self.index.requests().hold(hold);
    }

    /// Tells readers what is committed.
    pub(super) fn publish(&self) {
        self.progress.publish_committed(self.head.size);
    }

    /// Appends several independent batches in one durable transaction (group commit).
    ///
    /// Each batch is all-or-nothing on its own: an invalid batch gets its error and writes
    /// nothing, the others commit. `Err` means the commit itself failed and nothing at all
    /// was written. The new entries are then handed to the index writer, which indexes
    /// them behind the commit; this waits for it only when more than
    /// `MAX_INDEX_LAG_ENTRIES` committed entries are not in both tiers.
    pub fn append_batches(
        &mut self,
        batches: Vec<Vec<ConsentEvent>>,
    ) -> Result<Vec<Result<Vec<Appended>, AppendError>>, StorageError> {
        let results = self.undo_on_error(|store| store.append_in_txn(batches))?;
        self.index.requests().hand(std::mem::take(&mut self.fresh));
        let lag = self.head.size - self.customer_indexed_upto();
        if lag > MAX_INDEX_LAG_ENTRIES as u64 {
            // The appends are durable and answered either way. A durable step: it also
            // bounds what a crash leaves for the next open to replay.
            if let Err(e) = self.index.requests().durable() {
                tracing::error!(error = %e, "waiting for the index writer failed");
            }
        }
        Ok(results)
    }

    /// Refuses when a file of the shard failed earlier (see [`StorageError::Failed`]).
    pub(super) fn check_writable(&self) -> Result<(), StorageError> {
        self.progress
            .failure(self.head.shard_id)
            .map_or(Ok(()), Err)
    }

    /// Runs one write transaction; if it fails, the in-memory head, time, frontier and
    /// index queue go back to the last committed state (nothing of the transaction is on
    /// disk). On success the new head is published to readers.
    pub(super) fn undo_on_error<T, E>(
        &mut self,
        txn: impl FnOnce(&mut Store) -> Result<T, E>,
    ) -> Result<T, E> {
        let saved = (self.head, self.last_recorded_at_ms, self.frontier.clone());
        let queued = self.fresh.len();
        let outcome = txn(self);
        if outcome.is_err() {
            (self.head, self.last_recorded_at_ms, self.frontier) = saved;
            self.fresh.truncate(queued);
        }
        self.publish();
        outcome
    }

    /// Writes the head of the entries appended in `t` (the root costs O(log n) hashes:
    /// once per commit, not once per entry) and the pending counters; the last step before
    /// the commit.
    pub(super) fn seal(&mut self, t: &mut WriteTables<'_>) -> Result<(), StorageError> {
        self.head.root = self.frontier.root(&Blake3Tree);
        t.write_head(&self.head, self.last_recorded_at_ms)
    }

    fn append_in_txn(
        &mut self,
        batches: Vec<Vec<ConsentEvent>>,
    ) -> Result<Vec<Result<Vec<Appended>, AppendError>>, StorageError> {
        let txn = self.db.get().begin_write()?;
        let mut results = Vec::with_capacity(batches.len());
        let mut appended = 0u64;
        {
            let mut t = WriteTables::open(&txn)?;
            for batch in batches {
                let result = match plan_batch(&t, &batch) {
                    Err(e) => Err(e),
                    Ok(plan) => Ok(self.write_batch(&mut t, batch, plan)?),
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
            for items in results.iter().filter_map(|r| r.as_ref().ok()) {
                if let Some(first) = items.iter().find(|a| !a.duplicate) {
                    // The new events' subjects: only they carry a personal record.
                    let subjects = items.iter().filter_map(|a| a.personal.as_ref());
                    let subjects = subjects.map(|p| p.subject_id.as_str());
                    let size = self.head.size;
                    self.progress
                        .add_unindexed(&first.entry.customer_id, subjects, size);
                }
            }
        } else {
            txn.abort()?;
        }
        self.stats.batches += results.len() as u64;
        self.stats.events += appended;
        Ok(results)
    }

    fn write_batch(
        &mut self,
        t: &mut WriteTables<'_>,
        batch: Vec<ConsentEvent>,
        plan: Vec<Planned>,
    ) -> Result<Vec<Appended>, StorageError> {
        assert_eq!(batch.len(), plan.len(), "one decision per event");
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
        let mut customer: Option<Customer> = None;
        for (event, item) in batch.into_iter().zip(plan) {
            let appended = match item {
                Planned::New { digest } => {
                    if customer.is_none() {
                        customer = Some(Customer::of(t, &event.customer_id)?);
                    }
                    let owner = customer.as_ref().expect("looked up above");
                    let salt = salts.next().expect("one salt per new event");
                    self.write_event(t, event, owner, salt, digest)?
                }
                Planned::Stored(seq) => Appended {
                    duplicate: true,
                    ..t.stored(seq)?
                },
                Planned::SameAs(i) => Appended {
                    entry: out[i].entry.clone(),
                    entry_hash: out[i].entry_hash,
                    duplicate: true,
                    personal: None,
                },
            };
            out.push(appended);
        }
        Ok(out)
    }

    /// Writes one new event: its entry (the event's strings move into it), its salted
    /// personal record and its idempotency key, and queues it for the index writer.
    fn write_event(
        &mut self,
        t: &mut WriteTables<'_>,
        event: ConsentEvent,
        owner: &Customer,
        salt: [u8; 32],
        digest: Option<Hash>,
    ) -> Result<Appended, StorageError> {
        assert_eq!(owner.id, event.customer_id, "a batch is one customer's");
        let customer = owner.number;
        let subject = subject_key(&owner.secret, &event.subject_id);
        let stored_personal = event.salted_personal_record(&salt);
        let commitment = personal_commitment(&salt, &stored_personal[32..]);
        let parts = event.into_parts(commitment);
        let body = EntryBody::Consent(parts.record);
        let (entry, hash) = self.append_entry(t, parts.customer_id, body)?;
        let seq = entry.seq;
        t.personal.insert(seq, stored_personal.as_slice())?;
        let consent = entry
            .consent()
            .expect("a consent event's entry is a consent entry");
        if let (Some(key), Some(digest)) = (&consent.idempotency_key, digest) {
            t.idempotency
                .insert((customer, key.as_str()), (seq, &digest.0))?;
        }
        let facts = ConsentFacts::of(&entry).expect("a consent event's entry is a consent entry");
        self.fresh.push(Unindexed::new(&facts, customer, subject));
        Ok(Appended {
            entry,
            entry_hash: hash,
            duplicate: false,
            personal: Some(parts.personal),
        })
    }

    /// Appends one entry of any kind at the end of the journal: journal row, Merkle nodes
    /// and the in-memory head (the stored head is written once per commit).
    pub(super) fn append_entry(
        &mut self,
        t: &mut WriteTables<'_>,
        customer_id: String,
        body: EntryBody,
    ) -> Result<(Entry, Hash), StorageError> {
        let recorded_at_ms = now_ms().max(self.last_recorded_at_ms);
        let entry = Entry {
            shard_id: self.head.shard_id,
            seq: self.head.size,
            recorded_at_ms,
            prev_hash: self.head.chain_head,
            customer_id,
            body,
        };
        let bytes = entry.encode();
        let hash = entry_hash(&bytes);
        t.journal.insert(entry.seq, bytes.as_slice())?;
        let mut node_result = Ok(());
        let merkle = &mut t.merkle;
        self.frontier
            .push(&Blake3Tree, Blake3Tree.hash_leaf(&bytes), |node| {
                // A leaf is its entry's hash and a level-1 node the hash of two entries,
                // computed from the journal when a proof needs them (layout 6).
                if node_result.is_ok() && node.level >= MIN_STORED_LEVEL {
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

    /// Deletes the index file so that the next open rebuilds it from the journal
    /// (operator repair, and the test that proves indexes are derivable).
    pub fn reset_indexes(path: &Path) -> Result<(), StorageError> {
        remove_index_file(&index_path(path))
    }
}

/// Validates a batch and resolves idempotency before anything is written.
fn plan_batch(t: &WriteTables<'_>, batch: &[ConsentEvent]) -> Result<Vec<Planned>, AppendError> {
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
            plan.push(Planned::New { digest: None });
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
            personal: None,
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

    /// Writes journal entry `seq`'s idempotency key, if it has one (migration of layouts
    /// 1 and 2, whose keys had another layout). An erased entry (no personal record) keeps
    /// only its position, with the zero digest that marks it erased (the real digest covers
    /// the personal part).
    fn rebuild_idempotency_key(&mut self, seq: u64) -> Result<(), StorageError> {
        let Appended { entry, .. } = self.stored(seq)?;
        let Some(key) = entry.consent().and_then(|c| c.idempotency_key.clone()) else {
            return Ok(());
        };
        let (customer, _) = self.customer_or_create(&entry.customer_id)?;
        let digest = match self.personal.get(seq)? {
            Some(p) => {
                let record = split_personal(seq, p.value())?.record;
                request_digest(&ConsentEvent::reassemble(&entry, record))
            }
            None => Hash::ZERO,
        };
        self.idempotency
            .insert((customer, key.as_str()), (seq, &digest.0))?;
        Ok(())
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

/// Layouts 1 and 2 kept idempotency keys in another layout: they are rebuilt from the
/// journal, in one transaction.
fn migrate_idempotency(db: &Database) -> Result<(), StorageError> {
    let txn = db.begin_write()?;
    txn.delete_table(IDEMPOTENCY)?;
    {
        let mut t = WriteTables::open(&txn)?;
        let size = t.journal.len()?;
        for seq in 0..size {
            t.rebuild_idempotency_key(seq)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Layouts 1–4 kept the secondary indexes in the shard file: they are dropped from it (the
/// index file is then rebuilt from the journal at this open), and the file says the current
/// layout. A stray index file (of a migration cut short) is deleted first, so that the
/// rebuilt one never mixes with it.
fn migrate_to_index_file(db: &Database, path: &Path) -> Result<(), StorageError> {
    Store::reset_indexes(path)?;
    let txn = db.begin_write()?;
    for name in [
        "subjects",
        "subject_events",
        "current_state",
        "customer_events",
        "daily_counts",
        "erasures",
        "expiries",
    ] {
        txn.delete_table(redb::TableDefinition::<(), ()>::new(name))?;
    }
    {
        let mut meta = txn.open_table(META)?;
        meta.remove(META_INDEXED_UPTO)?;
        meta.remove(META_CUSTOMER_INDEXED_UPTO)?;
        meta.insert(
            META_FORMAT_VERSION,
            LAYOUT_INDEX_FILE.to_be_bytes().as_slice(),
        )?;
    }
    txn.commit()?;
    Ok(())
}

/// Layouts 1–5 stored every Merkle node, leaves included: the nodes below
/// `MIN_STORED_LEVEL` are deleted and the file says layout 6, in one transaction (a cut
/// leaves layout 5, migrated again at the next open). The freed pages are reused by later
/// appends.
fn migrate_drop_low_nodes(db: &Database) -> Result<(), StorageError> {
    let started = std::time::Instant::now();
    let txn = db.begin_write()?;
    {
        let mut merkle = txn.open_table(MERKLE)?;
        merkle.retain(|(_, level), _| level >= MIN_STORED_LEVEL)?;
        let mut meta = txn.open_table(META)?;
        meta.insert(
            META_FORMAT_VERSION,
            STORE_FORMAT_VERSION.to_be_bytes().as_slice(),
        )?;
    }
    txn.commit()?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "shard file migrated to layout 6: its lowest Merkle nodes are computed from the journal"
    );
    Ok(())
}

/// Returns the pages the migration freed (the index tables, about a third of a layout-4
/// file) to the file system, so that the two files of a migrated shard take no more room
/// than the one before. A cut during it leaves a file redb opens at its last commit.
fn compact(db: &mut Database) -> Result<(), StorageError> {
    let started = std::time::Instant::now();
    while db.compact().map_err(redb::Error::from)? {}
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "shard file compacted after its migration to layout 5"
    );
    Ok(())
}

fn meta_u32(db: &Database, key: &str) -> Result<Option<u32>, StorageError> {
    meta_u32_in(&db.begin_read()?, key)
}

/// A `u32` BE value of the shard file's `meta`, if present, as of `txn`.
pub(crate) fn meta_u32_in(
    txn: &redb::ReadTransaction,
    key: &str,
) -> Result<Option<u32>, StorageError> {
    u32_in(&txn.open_table(META)?, "meta", key)
}

/// A `u32` BE value of `key` in the metadata table `meta` (named `table` in errors) of
/// either file, if present.
pub(crate) fn u32_in(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    table: &'static str,
    key: &str,
) -> Result<Option<u32>, StorageError> {
    let Some(v) = meta.get(key)? else {
        return Ok(None);
    };
    let arr: [u8; 4] = v.value().try_into().map_err(|_| StorageError::Corrupt {
        table,
        detail: format!("{key} is not 4 bytes"),
    })?;
    Ok(Some(u32::from_be_bytes(arr)))
}

fn check_identity(db: &mut Database, path: &Path, shard_id: u32) -> Result<(), OpenError> {
    let mut version = meta_u32(db, META_FORMAT_VERSION)?.unwrap_or(0);
    if version == 1 || version == 2 {
        migrate_merkle(db)?;
        migrate_idempotency(db)?;
    }
    if (1..=4).contains(&version) {
        migrate_to_index_file(db, path)?;
        compact(db)?;
        version = LAYOUT_INDEX_FILE;
    }
    if version == LAYOUT_INDEX_FILE {
        migrate_drop_low_nodes(db)?;
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
    let nodes = RedbNodes::open(&txn)?;
    let last = nodes.journal.last().map_err(StorageError::from)?;
    let journal_size = last.as_ref().map_or(0, |(k, _)| k.value() + 1);
    if journal_size != head.size {
        return Err(inconsistent(format!(
            "the journal ends at size {journal_size} but the head says {}",
            head.size
        )));
    }
    // The last entry first: the lowest nodes of the right edge are computed from it, so a
    // change to it would otherwise be named only as a wrong root.
    if let Some((k, v)) = last {
        let seq = k.value();
        let bytes = v.value();
        if entry_hash(bytes) != head.chain_head {
            return Err(inconsistent(format!(
                "entry {seq} does not hash to the stored chain head"
            )));
        }
        match Entry::decode(bytes) {
            Ok(e) if e.seq == seq && e.shard_id == head.shard_id => {}
            Ok(_) => return Err(inconsistent(format!("entry {seq} names another position"))),
            Err(e) => return Err(inconsistent(format!("entry {seq}: {e}"))),
        }
    }
    let frontier = Frontier::load(head.size, &nodes).map_err(|e| inconsistent(e.to_string()))?;
    if frontier.root(&Blake3Tree) != head.root {
        return Err(inconsistent(format!(
            "the stored Merkle nodes give a root other than the head's at size {}",
            head.size
        )));
    }
    Ok(frontier)
}

/// A batch's customer as the write path needs it, looked up (or created) once a batch.
struct Customer {
    /// Its number in this shard.
    number: u32,
    /// Its secret subject key.
    secret: [u8; 32],
    /// Its id (checked against each event's).
    id: String,
}

impl Customer {
    /// The customer `id` of `t`, created when it has no events in this shard yet.
    fn of(t: &mut WriteTables<'_>, id: &str) -> Result<Customer, StorageError> {
        let (number, secret) = t.customer_or_create(id)?;
        Ok(Customer {
            number,
            secret,
            id: id.to_string(),
        })
    }
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
