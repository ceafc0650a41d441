//! A shard's index file (`shard-NNNN.index.redb`): opening it (or rebuilding it from the
//! journal when it cannot be trusted), catching it up with the journal, and the steps that
//! apply handed entries and erasures to its tables. Only the index writer (`index_writer`)
//! holds an [`IndexStore`]; nothing here knows threads or requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, WriteTransaction,
};

use super::db::DbCell;
use super::error::StorageError;
use super::index::{
    ConsentFacts, FactPurposes, IndexTables, STATE_ROW, apply_to_state, expiry_rows, latest_seq,
    pack_purposes, row_event,
};
use super::reader::{Progress, indexed_upto_in, split_personal};
use super::store::IndexTier;
use super::tables::*;
use crate::format::Entry;
use crate::hash::{Hash, entry_hash, subject_key};

/// The index file beside the shard file at `shard_path` (`x.redb` → `x.index.redb`).
pub fn index_path(shard_path: &Path) -> PathBuf {
    let stem = shard_path.with_extension("");
    let mut name = stem.into_os_string();
    name.push(".index.redb");
    PathBuf::from(name)
}

/// A committed consent entry on its way to the index writer, as much of it as indexing
/// needs (kept from the append so that the step reads nothing back; not the whole entry:
/// the queue holds up to `MAX_INDEX_LAG_ENTRIES` of these per shard: 104 bytes and the
/// purposes, where a whole entry was 264 bytes and its customer id, notice, jurisdiction
/// and TCF/GPP strings besides, all freed on another thread than the one that allocated
/// them).
pub(crate) struct Unindexed {
    /// The entry's sequence number.
    pub(crate) seq: u64,
    /// When the ledger recorded it (Unix ms).
    pub(crate) recorded_at_ms: i64,
    /// When the event says the choices were made (Unix ms).
    pub(crate) occurred_at_ms: i64,
    /// When its grants lapse (Unix ms), if they do.
    pub(crate) expires_at_ms: Option<i64>,
    /// Its purposes and choices ([`pack_purposes`]).
    pub(crate) purposes: Box<str>,
    /// Its customer's number in this shard (the prefix of every index key).
    pub(crate) customer: u32,
    /// Its subject's keyed hash, computed at the append while the subject id was at hand.
    pub(crate) subject: Hash,
}

/// `items` (in seq order) sorted by `key`, keeping seq order among equal keys.
fn in_key_order<K: Ord>(items: &[Unindexed], key: impl Fn(&Unindexed) -> K) -> Vec<&Unindexed> {
    let mut sorted: Vec<&Unindexed> = items.iter().collect();
    sorted.sort_by_key(|item| key(item));
    sorted
}

impl Unindexed {
    /// The queue record of a committed consent entry with these facts.
    pub(crate) fn new(facts: &ConsentFacts<'_>, customer: u32, subject: Hash) -> Unindexed {
        Unindexed {
            seq: facts.seq,
            recorded_at_ms: facts.recorded_at_ms,
            occurred_at_ms: facts.occurred_at_ms,
            expires_at_ms: facts.expires_at_ms,
            purposes: pack_purposes(facts.purposes.iter()),
            customer,
            subject,
        }
    }

    /// What the index tiers read of it.
    fn facts(&self) -> ConsentFacts<'_> {
        ConsentFacts {
            seq: self.seq,
            recorded_at_ms: self.recorded_at_ms,
            occurred_at_ms: self.occurred_at_ms,
            expires_at_ms: self.expires_at_ms,
            purposes: FactPurposes::Packed(&self.purposes),
        }
    }
}

/// What an erasure asks of the index file once its shard commit is durable.
pub(crate) struct IndexErasure {
    /// The erasure entry (its listing row is derived from it).
    pub(crate) entry: Entry,
    /// The customer's number in this shard.
    pub(crate) customer: u32,
    /// The erased consent entries, each with its subject key (read from its personal
    /// record before the shard commit deleted it).
    pub(crate) erased: Vec<(u64, Hash)>,
}

/// The index file and what its writer knows: how far each tier reaches and the entries
/// handed but not yet in both tiers.
pub(crate) struct IndexStore {
    /// The index file (replaced by a scrub).
    pub(super) db: Arc<DbCell>,
    /// The shard file, read for an erasure's recomputed states and for catch-up.
    shard: Arc<DbCell>,
    path: PathBuf,
    pub(super) shard_id: u32,
    /// Entries [0, indexed_upto) are in the subject tier.
    pub(super) indexed_upto: u64,
    /// Entries [0, customer_indexed_upto) are in both tiers; never above `indexed_upto`.
    pub(super) customer_indexed_upto: u64,
    /// Handed consent entries not yet in both tiers, in seq order from
    /// `customer_indexed_upto` (those from `indexed_upto` on are in neither).
    pub(super) queue: Vec<Unindexed>,
    /// Published to readers.
    progress: Arc<Progress>,
    /// Set when an erasure's index step failed after its shard commit: the file no longer
    /// follows the journal, and every later step refuses until a restart rebuilds it.
    broken: Option<String>,
}

/// The tables of the index file open in one write transaction.
struct IndexWrite<'t> {
    indexes: IndexTables<'t>,
    meta: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> IndexWrite<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<IndexWrite<'t>, StorageError> {
        let meta = txn.open_table(INDEX_META)?;
        let (_, runs_from) = indexed_upto_in(&meta)?;
        Ok(IndexWrite {
            indexes: IndexTables {
                subjects: txn.open_table(SUBJECTS)?,
                customer_events: txn.open_table(CUSTOMER_EVENTS)?,
                daily_counts: txn.open_table(DAILY_COUNTS)?,
                erasures: txn.open_table(ERASURES)?,
                expiries: txn.open_table(EXPIRIES)?,
                pending_counts: Default::default(),
                open_run: None,
                runs_from,
            },
            meta,
        })
    }

    fn set_upto(&mut self, subjects: u64, customers: u64) -> Result<(), StorageError> {
        self.indexes.flush_pending()?;
        self.meta
            .insert(META_INDEXED_UPTO, subjects.to_be_bytes().as_slice())?;
        self.meta.insert(
            META_CUSTOMER_INDEXED_UPTO,
            customers.to_be_bytes().as_slice(),
        )?;
        Ok(())
    }
}

/// Opens or creates an index file with the bounded cache.
pub(crate) fn open_index_db(path: &Path, create: bool) -> Result<Database, redb::DatabaseError> {
    super::store::open_with_cache(path, create, INDEX_CACHE_BYTES)
}

/// redb's page cache of each index file (see `SHARD_CACHE_BYTES` for the shard file). The
/// index file's hot pages are scattered (a subject's rows sit at a random place): on a
/// large ledger no cache within the memory budget holds them (10M events: ≈ 170,000
/// `subjects` leaves per shard with index layout 3, an index file of 570–600 MB per shard
/// with layout 4), and the OS page cache serves the misses. 8 MiB instead of
/// 16 (session 17, alternated): `record` at 10M events the same req/s and CPU per event,
/// peak RSS 162–167 instead of 214–219 MiB; `record` and `batch` on a fresh ledger the
/// same (docs/benchmarks.md).
pub const INDEX_CACHE_BYTES: usize = 8 * 1024 * 1024;

impl IndexStore {
    /// Opens the index file of the shard file at `shard_path` (whose journal holds `size`
    /// entries), rebuilding it from the journal when it is missing, unopenable, of another
    /// shard or ledger, of another layout, or ahead of the journal; then replays the
    /// entries it lacks, an erasure entry among them included (its lost index commit is
    /// redone, see `redo_erasure`).
    pub(crate) fn open(
        shard_path: &Path,
        shard_id: u32,
        shard: Arc<DbCell>,
        progress: Arc<Progress>,
        size: u64,
    ) -> Result<IndexStore, StorageError> {
        let path = index_path(shard_path);
        super::scrub::remove_leftover(&path).map_err(|source| StorageError::File {
            what: "removing the file of an interrupted scrub",
            source,
        })?;
        let first = first_entry_hash(&shard)?;
        let db = match open_checked(&path, shard_id, first, size)? {
            Ok(db) => db,
            Err(why) => {
                tracing::warn!(
                    shard = shard_id,
                    why,
                    "rebuilding the index file from the journal"
                );
                remove_index_file(&path)?;
                let db = open_index_db(&path, true)?;
                init(&db, shard_id)?;
                db
            }
        };
        if let Some(first) = first {
            record_first_entry(&db, first)?;
        }
        let mut store = IndexStore {
            db: Arc::new(DbCell::new(db)),
            shard,
            path,
            shard_id,
            indexed_upto: 0,
            customer_indexed_upto: 0,
            queue: Vec::new(),
            progress,
            broken: None,
        };
        let started = Instant::now();
        let replayed = catch_up(&store.db, &store.shard, size)?;
        if replayed > 0 {
            tracing::info!(
                shard = shard_id,
                entries = replayed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "indexes caught up with the journal"
            );
        }
        store.indexed_upto = size;
        store.customer_indexed_upto = size;
        store.publish();
        Ok(store)
    }

    /// Entries handed so far (the committed size the queue reaches).
    pub(super) fn handed(&self) -> u64 {
        self.customer_indexed_upto + self.queue.len() as u64
    }

    fn publish(&self) {
        self.progress
            .publish_indexed(self.indexed_upto, self.customer_indexed_upto);
        self.progress
            .clear_unindexed(self.indexed_upto, self.customer_indexed_upto);
    }

    /// Takes note of a failed step: an I/O failure of the index file stops the shard's
    /// writes (see [`StorageError::Failed`]); returns it as the shard reports it.
    pub(super) fn note_failure(&self, e: StorageError) -> StorageError {
        self.progress.note_failure(&e);
        if e.is_io_failure() {
            self.failure().expect("an I/O failure was just recorded")
        } else {
            e
        }
    }

    /// The shard's storage failure, if either of its files failed.
    pub(super) fn failure(&self) -> Option<StorageError> {
        self.progress.failure(self.shard_id)
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        match &self.broken {
            Some(why) => Err(StorageError::IndexWriter(why.clone())),
            None => Ok(()),
        }
    }

    /// The index step of `tier` over everything handed; with `durable`, a durable commit
    /// even with nothing to index (earlier non-durable steps then reach the disk).
    pub(super) fn step(&mut self, tier: IndexTier, durable: bool) -> Result<(), StorageError> {
        self.check_usable()?;
        let size = self.handed();
        let customers = tier == IndexTier::All && !self.queue.is_empty();
        if self.indexed_upto == size && !customers && !durable {
            return Ok(());
        }
        let mut txn = self.db.get().begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        {
            let mut t = IndexWrite::open(&txn)?;
            if self.indexed_upto == 0
                && self.queue.first().is_some_and(|first| first.seq == 0)
                && let Some(hash) = first_entry_hash(&self.shard)?
            {
                t.meta.insert(META_FIRST_ENTRY, hash.0.as_slice())?;
            }
            self.apply_queued(&mut t.indexes, customers)?;
            let customer_upto = if customers {
                size
            } else {
                self.customer_indexed_upto
            };
            t.set_upto(size, customer_upto)?;
        }
        self.db.commit(txn)?;
        self.indexed_upto = size;
        if customers {
            self.queue.clear();
            self.customer_indexed_upto = size;
        }
        self.publish();
        Ok(())
    }

    /// Applies the queue to the subject tier from `indexed_upto` on, and with `customers`
    /// every queued entry to the customer tier. Each tier's rows are applied in key order
    /// (by customer, then subject for the subject tier), not in seq order, where entries land
    /// on random leaves of the `subjects` table: consecutive inserts then share their
    /// B-tree path (index-writer CPU −4 %, server instructions per batched event −3.7 %;
    /// docs/benchmarks.md, session 27). The sort is stable, so one subject's entries (one
    /// customer's, for the time rows) still apply in seq order, and rows of different
    /// subjects do not depend on each other.
    fn apply_queued(&self, t: &mut IndexTables<'_>, customers: bool) -> Result<(), StorageError> {
        let in_subject_tier = usize::try_from(self.indexed_upto - self.customer_indexed_upto)
            .expect("the queue fits in memory");
        // Only what this step applies: the subject tier's part of the queue alone is most
        // steps' work, while the queue holds up to `CUSTOMER_INDEX_DELAY_MS` of entries.
        let first = if customers { 0 } else { in_subject_tier };
        for (i, item) in self.queue.iter().enumerate().skip(first) {
            assert_eq!(
                item.seq,
                self.customer_indexed_upto + i as u64,
                "entries are indexed once, in order"
            );
        }
        if customers {
            for item in in_key_order(&self.queue, |item| item.customer) {
                t.apply_customer_consent(&item.facts(), item.customer)?;
            }
        }
        let subject_tier = &self.queue[in_subject_tier..];
        for item in in_key_order(subject_tier, |item| (item.customer, item.subject.0)) {
            t.apply_subject_consent(&item.facts(), item.customer, item.subject)?;
        }
        Ok(())
    }

    /// Takes entries the shard writer handed over.
    pub(super) fn take(&mut self, items: Vec<Unindexed>) {
        for item in items {
            assert_eq!(
                item.seq,
                self.handed(),
                "entries are handed once, in order, without gaps"
            );
            self.queue.push(item);
        }
    }

    /// Applies an erasure whose shard commit is durable: deletes the erased entries'
    /// history rows, recomputes their subjects' states from what remains, writes the
    /// listing row; commits durably.
    pub(super) fn erase(&mut self, erasure: IndexErasure) -> Result<(), StorageError> {
        self.step(IndexTier::All, false)?;
        let seq = erasure.entry.seq;
        assert!(
            self.queue.is_empty() && self.indexed_upto == seq,
            "every entry before an erasure entry is indexed before its index changes"
        );
        let outcome = self.apply_erasure(&erasure);
        if let Err(e) = &outcome {
            self.broken = Some(format!(
                "the index changes of erasure entry {seq} failed ({e}); restart to rebuild the indexes"
            ));
        }
        outcome
    }

    fn apply_erasure(&mut self, erasure: &IndexErasure) -> Result<(), StorageError> {
        let shard = self.shard.get().begin_read()?;
        let journal = shard.open_table(JOURNAL)?;
        let txn = self.db.get().begin_write()?;
        {
            let mut t = IndexWrite::open(&txn)?;
            let customer = erasure.customer;
            let erased = erasure.erased.iter().copied();
            delete_erased_rows(&mut t.indexes, &journal, customer, erased)?;
            t.indexes.apply_customer_tier(&erasure.entry, customer)?;
            t.set_upto(erasure.entry.seq + 1, erasure.entry.seq + 1)?;
        }
        self.db.commit(txn)?;
        self.indexed_upto = erasure.entry.seq + 1;
        self.customer_indexed_upto = erasure.entry.seq + 1;
        self.publish();
        Ok(())
    }

    /// Ends a scrub of the index file: indexes everything handed (durable), brings the
    /// scrub's copy up to the same entries by replay, checks that it has every table with
    /// as many rows, renames it over the file and swaps the readers to it; returns the new
    /// file's size in bytes. The copy was filled from a snapshot while this writer kept
    /// indexing (`scrub::ScrubJob::copy`), so the replay here is of the last few entries.
    pub(super) fn finish_scrub(&mut self, copy: DbCell) -> Result<u64, StorageError> {
        let started = Instant::now();
        self.step(IndexTier::All, true)?;
        let stepped_ms = started.elapsed().as_millis() as u64;
        let size = self.handed();
        assert_eq!(
            (self.indexed_upto, self.customer_indexed_upto),
            (size, size),
            "a durable step of both tiers indexes everything handed"
        );
        let replayed = catch_up(&copy, &self.shard, size)?;
        tracing::debug!(
            shard = self.shard_id,
            stepped_ms,
            replayed,
            replayed_ms = started.elapsed().as_millis() as u64 - stepped_ms,
            "scrub hand-over of the index file: the live file's durable step, the copy's replay"
        );
        super::scrub::check_same_rows(&self.db.get().begin_read()?, &copy.get().begin_read()?)?;
        drop(copy.close());
        super::scrub::replace_file(&self.db, &self.path, super::scrub::FileKind::Index)
    }
}

/// Replays the journal entries (of the shard file in `shard`, up to `size`) that the index
/// file in `index` lacks, in durable chunks (at least one durable commit, even with
/// nothing to replay); returns how many. Used at open, and on a scrub's copy.
pub(super) fn catch_up(index: &DbCell, shard: &DbCell, size: u64) -> Result<u64, StorageError> {
    const CHUNK: u64 = 10_000;
    let shard = shard.get().begin_read()?;
    let journal = shard.open_table(JOURNAL)?;
    let personal = shard.open_table(PERSONAL)?;
    let customers = shard.open_table(CUSTOMERS)?;
    // Subject rows on disk before this catch-up: only entries below this mark can have
    // rows that a replayed erasure entry must delete.
    let rows_below = {
        let txn = index.get().begin_read()?;
        indexed_upto_in(&txn.open_table(INDEX_META)?)?.0
    };
    let mut replayed = 0;
    loop {
        let txn = index.get().begin_write()?;
        let done = {
            let mut t = IndexWrite::open(&txn)?;
            let (subjects_from, from) = indexed_upto_in(&t.meta)?;
            let to = size.min(from + CHUNK);
            for seq in from..to {
                let replay = Replay {
                    journal: &journal,
                    personal: &personal,
                    customers: &customers,
                    rows_below,
                };
                replay.entry(&mut t.indexes, seq, seq >= subjects_from)?;
            }
            replayed += to - from;
            t.set_upto(to.max(subjects_from), to)?;
            to == size
        };
        index.commit(txn)?;
        if done {
            return Ok(replayed);
        }
    }
}

/// The shard-file tables a replay reads.
struct Replay<'a> {
    journal: &'a ReadOnlyTable<u64, &'static [u8]>,
    personal: &'a ReadOnlyTable<u64, &'static [u8]>,
    customers: &'a ReadOnlyTable<&'static str, (u32, &'static [u8; 32])>,
    /// The subject tier's watermark before the replay began: rows of entries below it may
    /// be in the file (see [`redo_erasure`]); a rebuild starts at 0.
    rows_below: u64,
}

impl Replay<'_> {
    /// Applies journal entry `seq` to the customer tier and, with `subject_tier`, to the
    /// subject tier. An erased entry (no personal record) is counted but linked to no one.
    fn entry(
        &self,
        t: &mut IndexTables<'_>,
        seq: u64,
        subject_tier: bool,
    ) -> Result<(), StorageError> {
        let entry = stored_entry(self.journal, seq)?;
        let (customer, secret) = self
            .customers
            .get(entry.customer_id.as_str())?
            .map(|v| {
                let (number, secret) = v.value();
                (number, *secret)
            })
            .ok_or_else(|| StorageError::Corrupt {
                table: "customers",
                detail: format!("entry {seq} names a customer the shard does not have"),
            })?;
        t.apply_customer_tier(&entry, customer)?;
        if !subject_tier {
            return Ok(());
        }
        if let Some(erasure) = entry.erasure() {
            return redo_erasure(
                t,
                self.journal,
                customer,
                &erasure.erased_seqs,
                self.rows_below,
            );
        }
        let subject = match self.personal.get(seq)? {
            Some(p) => Some(subject_key(
                &secret,
                &split_personal(seq, p.value())?.record.subject_id,
            )),
            None => None,
        };
        t.apply_subject_tier(&entry, customer, subject)
    }
}

fn stored_entry(
    journal: &ReadOnlyTable<u64, &'static [u8]>,
    seq: u64,
) -> Result<Entry, StorageError> {
    let bytes = journal.get(seq)?.ok_or_else(|| StorageError::Corrupt {
        table: "journal",
        detail: format!("entry {seq} is missing"),
    })?;
    Entry::decode(bytes.value()).map_err(|e| StorageError::Corrupt {
        table: "journal",
        detail: format!("entry {seq}: {e}"),
    })
}

/// The subject-tier effect of an erasure entry met by a replay: the history rows of its
/// erased entries that the file already holds (those below `rows_below`, written before the
/// process died between the erasure's shard commit and its index commit) are deleted and
/// their subjects' states recomputed. The erased entries' subject keys went with their
/// personal records, so the rows are found by their seqs in a walk of the customer's
/// subject rows: one customer's rows, not the journal (a rebuild reads all of it). Erased
/// entries at or above `rows_below` are replayed without a personal record, so they have
/// no rows.
fn redo_erasure(
    t: &mut IndexTables<'_>,
    journal: &ReadOnlyTable<u64, &'static [u8]>,
    customer: u32,
    erased_seqs: &[u64],
    rows_below: u64,
) -> Result<(), StorageError> {
    debug_assert!(
        erased_seqs.is_sorted(),
        "erased seqs are strictly increasing"
    );
    if erased_seqs.first().is_none_or(|&first| first >= rows_below) {
        return Ok(());
    }
    let mut found = Vec::new();
    for row in t
        .subjects
        .range((customer, &[0u8; 32], 0)..=(customer, &[0xffu8; 32], STATE_ROW))?
    {
        let (key, value) = row?;
        let (_, subject, seq) = key.value();
        let seq = row_event(seq, value.value())?;
        if let Some(seq) = seq.filter(|seq| erased_seqs.binary_search(seq).is_ok()) {
            found.push((seq, Hash(*subject)));
        }
    }
    delete_erased_rows(t, journal, customer, found)
}

/// Takes one customer's erased entries (`(seq, subject key)`) out of the subject tier and
/// recomputes the state of every subject concerned from the events it still has: an
/// erasure's index step, and its redo by a replay.
fn delete_erased_rows(
    t: &mut IndexTables<'_>,
    journal: &ReadOnlyTable<u64, &'static [u8]>,
    customer: u32,
    erased: impl IntoIterator<Item = (u64, Hash)>,
) -> Result<(), StorageError> {
    let mut subjects: BTreeMap<Hash, Vec<u64>> = BTreeMap::new();
    for (seq, subject) in erased {
        subjects.entry(subject).or_default().push(seq);
    }
    for (subject, mut seqs) in subjects {
        seqs.sort_unstable();
        recompute_state(t, journal, customer, subject, &seqs)?;
    }
    Ok(())
}

/// Removes the events `erased` (sorted) from a subject's history and rebuilds its current
/// state from the events it still has (none: no state). The new state stands for its
/// latest remaining event, which then keeps no history row (index layout 2).
fn recompute_state(
    t: &mut IndexTables<'_>,
    journal: &ReadOnlyTable<u64, &'static [u8]>,
    customer: u32,
    subject: Hash,
    erased: &[u64],
) -> Result<(), StorageError> {
    let old = t.state(customer, subject)?;
    let remaining: Vec<u64> = t
        .history(customer, subject)?
        .into_iter()
        .filter(|seq| erased.binary_search(seq).is_err())
        .collect();
    for &seq in erased {
        t.subjects.remove((customer, &subject.0, seq))?;
    }
    let mut states = Vec::new();
    for &seq in &remaining {
        apply_to_state(&mut states, &stored_entry(journal, seq)?);
    }
    t.set_state(customer, subject, &expiry_rows(&old), &states)?;
    if let Some(latest) = latest_seq(&states) {
        t.subjects.remove((customer, &subject.0, latest))?;
    }
    Ok(())
}

/// The hash of journal entry 0, if the journal has one.
fn first_entry_hash(shard: &DbCell) -> Result<Option<Hash>, StorageError> {
    let txn = shard.get().begin_read()?;
    let journal = txn.open_table(JOURNAL)?;
    Ok(journal.get(0)?.map(|v| entry_hash(v.value())))
}

/// Deletes the index file at `path`, if there is one (the next open rebuilds it).
pub(super) fn remove_index_file(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::File {
            what: "removing the index file",
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Writes the metadata of a new index file (nothing indexed).
fn init(db: &Database, shard_id: u32) -> Result<(), StorageError> {
    let txn = db.begin_write()?;
    {
        let mut t = IndexWrite::open(&txn)?;
        t.meta.insert(
            META_FORMAT_VERSION,
            INDEX_FORMAT_VERSION.to_be_bytes().as_slice(),
        )?;
        t.meta
            .insert(META_SHARD_ID, shard_id.to_be_bytes().as_slice())?;
        t.set_upto(0, 0)?;
    }
    txn.commit()?;
    Ok(())
}

/// Records which journal the index file follows (the hash of entry 0), once the journal
/// has an entry 0 and the file does not say yet (a file opened while the journal was empty
/// learns it here or at its first step).
fn record_first_entry(db: &Database, first: Hash) -> Result<(), StorageError> {
    if db
        .begin_read()?
        .open_table(INDEX_META)?
        .get(META_FIRST_ENTRY)?
        .is_some()
    {
        return Ok(());
    }
    let txn = db.begin_write()?;
    txn.open_table(INDEX_META)?
        .insert(META_FIRST_ENTRY, first.0.as_slice())?;
    txn.commit()?;
    Ok(())
}

/// Opens the index file at `path` if it exists and can be caught up with the journal;
/// `Err(why)` when it must be rebuilt (absent, unopenable, foreign, or ahead).
fn open_checked(
    path: &Path,
    shard_id: u32,
    first: Option<Hash>,
    size: u64,
) -> Result<Result<Database, &'static str>, StorageError> {
    if !path.exists() {
        return Ok(Err("the index file is missing"));
    }
    let db = match open_index_db(path, false) {
        Ok(db) => db,
        Err(redb::DatabaseError::Storage(e)) => {
            tracing::warn!(error = %e, "the index file cannot be opened");
            return Ok(Err("the index file cannot be opened"));
        }
        Err(e) => return Err(e.into()),
    };
    let why = {
        let txn = db.begin_read()?;
        match txn.open_table(INDEX_META) {
            Ok(meta) => identity_problem(&meta, shard_id, first, size)?,
            Err(redb::TableError::TableDoesNotExist(_)) => Some("the index file has no metadata"),
            Err(e) => return Err(e.into()),
        }
    };
    Ok(match why {
        None => Ok(db),
        Some(why) => Err(why),
    })
}

/// Why an index file with this `index_meta` cannot be caught up with the journal, if so.
fn identity_problem(
    meta: &ReadOnlyTable<&'static str, &'static [u8]>,
    shard_id: u32,
    first: Option<Hash>,
    size: u64,
) -> Result<Option<&'static str>, StorageError> {
    let get = |key: &str| -> Result<Option<Vec<u8>>, StorageError> {
        Ok(meta.get(key)?.map(|v| v.value().to_vec()))
    };
    if get(META_FORMAT_VERSION)? != Some(INDEX_FORMAT_VERSION.to_be_bytes().to_vec()) {
        return Ok(Some("the index file has another layout"));
    }
    if get(META_SHARD_ID)? != Some(shard_id.to_be_bytes().to_vec()) {
        return Ok(Some("the index file belongs to another shard"));
    }
    let (subjects, _) = indexed_upto_in(meta)?;
    let stored_first = get(META_FIRST_ENTRY)?;
    if subjects > 0 && stored_first != first.map(|h| h.0.to_vec()) {
        return Ok(Some("the index file was built from another journal"));
    }
    if subjects > size {
        return Ok(Some("the index file is ahead of the journal"));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Choice;

    #[test]
    fn a_time_run_continues_across_steps_and_breaks_at_anything_else() {
        // Proves: time rows are the longest runs whatever the steps' bounds: a step's first
        // entry extends the run the step before stored last when it follows it (same
        // customer, same millisecond), and another customer, another millisecond or a gap
        // in the seqs starts a new run.
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_index_db(&dir.path().join("i.redb"), true).expect("create");
        init(&db, 0).expect("init");
        let purposes = vec![("ads".to_string(), Choice::Granted)];
        let step = |entries: &[(u64, u32, i64)]| {
            let txn = db.begin_write().expect("write");
            {
                let mut t = IndexWrite::open(&txn).expect("tables");
                for &(seq, customer, recorded_at_ms) in entries {
                    let facts = ConsentFacts {
                        seq,
                        recorded_at_ms,
                        occurred_at_ms: 0,
                        expires_at_ms: None,
                        purposes: FactPurposes::Listed(&purposes),
                    };
                    t.indexes
                        .apply_customer_consent(&facts, customer)
                        .expect("apply");
                }
                let upto = entries.last().expect("an entry").0 + 1;
                t.set_upto(upto, upto).expect("watermarks");
            }
            txn.commit().expect("commit");
        };
        step(&[(0, 1, 5), (1, 1, 5)]);
        // Entry 2 continues the stored run 0..=1; 3 is another customer's; 4 follows a gap.
        step(&[(2, 1, 5), (3, 2, 5), (4, 1, 5)]);
        // Another millisecond; then a step whose first entry is another customer's.
        step(&[(5, 1, 6)]);
        step(&[(6, 2, 6), (7, 1, 6)]);
        let txn = db.begin_read().expect("read");
        let rows: Vec<((u32, i64, u64), u64)> = txn
            .open_table(CUSTOMER_EVENTS)
            .expect("table")
            .iter()
            .expect("iter")
            .map(|r| r.map(|(k, v)| (k.value(), v.value())).expect("row"))
            .collect();
        assert_eq!(
            rows,
            vec![
                ((1, 5, 0), 2),
                ((1, 5, 4), 4),
                ((1, 6, 5), 5),
                ((1, 6, 7), 7),
                ((2, 5, 3), 3),
                ((2, 6, 6), 6),
            ]
        );
    }
}
