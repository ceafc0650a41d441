//! Scrub: rewriting a shard file so that erased personal data is gone from every byte.
//!
//! redb is copy-on-write and reuses freed pages without zeroing them, so after an erasure
//! the deleted personal records still sit in free pages of the file until something
//! happens to overwrite them. A scrub copies every live row into a fresh file (which never
//! held the erased bytes), makes it durable, renames it over the old one, syncs the
//! directory and swaps the readers to it; likewise the index file. The copy runs beside
//! the shard's writer (`ScrubJob::copy`, from snapshots, caught up in rounds); the writer
//! pauses only for the hand-over of the last entries (`Store::finish_scrub`). Cost: one
//! sequential copy of the live data. See docs/design.md, "Freed pages" in §10.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableHandle, WriteTransaction,
};

use super::db::{Db, DbCell};
use super::error::StorageError;
use super::index_file::open_index_db;
use super::index_writer::IndexRequests;
use super::reader::read_head;
use super::store::{Store, open_db};
use super::tables::*;
use crate::format::{Entry, EntryBody};

/// Rows copied per transaction of a copy. Each is durable: redb keeps the number of every
/// page a non-durable commit wrote in memory until the next durable one, and a whole copy
/// in non-durable transactions (≈ 830,000 pages for a 3.4 GB shard file) held ≈ 8 MiB more
/// at its peak than durable ones (docs/benchmarks.md, session 20), for the same duration.
const SCRUB_ROWS_PER_TXN: u64 = 200_000;

/// A *scheduled* scrub of a shard waits, after the shard's previous scrub ended, this many
/// times as long as that scrub took. A scrub pauses the shard's writes only for its
/// hand-over, but its copy reads and writes the whole shard and takes CPU and disk from the
/// writers (40–70 s under load for a 2.5M-entry shard of a 10M ledger, docs/benchmarks.md),
/// so with erasures arriving steadily a large shard scrubbed every `--scrub-interval-ms`
/// would be copying most of the time; spaced, it spends at most 1 % of the time scrubbing.
/// A small shard (a scrub of milliseconds) is still scrubbed every interval. Scrubs asked
/// for (`scrubStorage`) run at once.
pub const SCRUB_SPACING_FACTOR: u32 = 100;

/// Free disk space a scrub needs before it starts, in percent of the size of the shard's
/// two files: room for the copies (at most the files' size: 69 % of it for a 10M shard)
/// and for the live files' growth while the copies' snapshots pin their freed pages (+28 %
/// for that shard under `record` load: docs/benchmarks.md, session 19). A copy that
/// finds less than `SCRUB_MIN_FREE_BYTES` free stops, so a heavier load than that is
/// caught too. 150 % refused the largest shard of the 10M ledger with 6.8 GB free, where
/// it needs about 4.7 GB.
pub const SCRUB_FREE_SPACE_PERCENT: u64 = 125;

/// Free disk space below which a running scrub stops and deletes its copies, leaving the
/// rest to the live files: a scrub must never make their writes fail (a shard whose file
/// fails on I/O refuses writes until a restart).
pub const SCRUB_MIN_FREE_BYTES: u64 = 128 * 1024 * 1024;

/// The free disk space a scrub needs ([`SCRUB_FREE_SPACE_PERCENT`],
/// [`SCRUB_MIN_FREE_BYTES`]); tests set others with [`Store::set_scrub_space`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubSpace {
    /// Needed free at the start, in percent of the shard's files' size.
    pub start_percent: u64,
    /// Needed free throughout the copy, in bytes.
    pub min_free_bytes: u64,
}

impl Default for ScrubSpace {
    fn default() -> ScrubSpace {
        ScrubSpace {
            start_percent: SCRUB_FREE_SPACE_PERCENT,
            min_free_bytes: SCRUB_MIN_FREE_BYTES,
        }
    }
}

/// Bytes this process may still write on the file system that holds `path`.
fn free_bytes(path: &Path) -> Result<u64, StorageError> {
    #[cfg(unix)]
    {
        let dir = path.parent().unwrap_or(Path::new("."));
        let stat = rustix::fs::statvfs(dir)
            .map_err(|e| io_error("reading the free disk space", e.into()))?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(u64::MAX)
    }
}

/// Refuses unless at least `needed_bytes` are free beside `path`.
fn require_free(path: &Path, needed_bytes: u64) -> Result<(), StorageError> {
    let free = free_bytes(path)?;
    if free < needed_bytes {
        return Err(StorageError::DiskSpace {
            free_bytes: free,
            needed_bytes,
        });
    }
    Ok(())
}

/// When a shard's last scrub ended and how long it took, to space the scheduled ones.
#[derive(Debug, Clone, Copy)]
pub(super) struct LastScrub {
    /// When it ended.
    pub(super) ended: Instant,
    /// How long it took.
    pub(super) took: Duration,
}

impl LastScrub {
    /// How much longer a scheduled scrub must wait at `now` (zero: it may run).
    pub(super) fn wait_at(&self, now: Instant) -> Duration {
        let spacing = self.took.saturating_mul(SCRUB_SPACING_FACTOR);
        spacing.saturating_sub(now.saturating_duration_since(self.ended))
    }
}

/// What a scrub did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubReport {
    /// Shard file size before, in bytes.
    pub bytes_before: u64,
    /// Shard file size after, in bytes.
    pub bytes_after: u64,
    /// Rows copied, every table together.
    pub rows: u64,
    /// From the start of the copy to the swap, in milliseconds.
    pub took_ms: u64,
    /// How long the shard's writes were paused for the hand-over, in milliseconds.
    pub paused_ms: u64,
}

/// The temporary file a scrub writes before renaming it over the shard file.
fn scrub_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".scrub");
    PathBuf::from(name)
}

/// Deletes the temporary file of a scrub cut short (it holds only live data; the shard
/// file it would have replaced is intact).
pub(super) fn remove_leftover(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(scrub_path(path)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether the file says personal records were deleted since its last rewrite.
pub(super) fn pending_in(db: &Database) -> Result<bool, StorageError> {
    pending_in_snapshot(&db.begin_read()?)
}

fn pending_in_snapshot(txn: &ReadTransaction) -> Result<bool, StorageError> {
    let meta = txn.open_table(META)?;
    Ok(meta
        .get(META_SCRUB_PENDING)?
        .is_some_and(|v| v.value() == [1u8]))
}

fn io_error(what: &'static str, source: std::io::Error) -> StorageError {
    StorageError::File { what, source }
}

impl Store {
    /// Whether an erasure happened since the file was last rewritten.
    pub fn scrub_pending(&self) -> bool {
        self.scrub_pending
    }

    /// How much longer a scheduled scrub must wait (zero: it may run now): see
    /// [`SCRUB_SPACING_FACTOR`]. Zero before this process's first scrub of the shard.
    pub fn scheduled_scrub_wait(&self) -> Duration {
        self.last_scrub
            .map_or(Duration::ZERO, |last| last.wait_at(Instant::now()))
    }

    /// Rewrites the shard file, then the index file, with only their live rows, and swaps
    /// every reader to them, all on this thread: [`Store::scrub_job`], [`ScrubJob::copy`]
    /// and [`Store::finish_scrub`] in a row. The shard actor runs the copy on a thread of
    /// its own instead, so that appends go on meanwhile. A cut at any point leaves either
    /// the old file or the new one in place, both complete.
    pub fn scrub(&mut self) -> Result<ScrubReport, StorageError> {
        let outcome = self
            .scrub_job()
            .and_then(ScrubJob::copy)
            .and_then(|copy| self.finish_scrub(copy));
        if outcome.is_err() {
            self.discard_scrub();
        }
        outcome
    }

    /// Sets the free disk space scrubs need (tests; the default is [`ScrubSpace::default`]).
    #[doc(hidden)]
    pub fn set_scrub_space(&mut self, space: ScrubSpace) {
        self.scrub_space = space;
    }

    /// Deletes what a failed scrub left (its copies; the files in use stay as they were).
    pub fn discard_scrub(&self) {
        let index_path = super::index_file::index_path(&self.path);
        for path in [&self.path, &index_path] {
            if let Err(e) = remove_leftover(path) {
                tracing::warn!(error = %e, "a scrub's copy could not be deleted; the next open deletes it");
            }
        }
    }

    /// What a scrub copies from: both files of this shard, as they will be when the copy
    /// reads them. Call with nothing pending (the actor flushes first).
    pub fn scrub_job(&self) -> Result<ScrubJob, StorageError> {
        let index_path = super::index_file::index_path(&self.path);
        let bytes_before = file_len(&self.path)? + file_len(&index_path)?;
        let needed = (bytes_before / 100).saturating_mul(self.scrub_space.start_percent);
        require_free(&self.path, needed)?;
        Ok(ScrubJob {
            bytes_before,
            min_free_bytes: self.scrub_space.min_free_bytes,
            shard: self.db.clone(),
            shard_path: self.path.clone(),
            index: self.index_db.clone(),
            index_path,
            index_requests: self.index.requests().clone(),
            cancel: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
        })
    }

    /// Ends a scrub whose copy ran meanwhile (writes are paused while this runs): copies
    /// what was committed since the copy's last snapshot, checks the copy, makes it durable,
    /// renames it over the shard file and swaps the readers to it; then the index writer
    /// does the same with its copy. Personal records an erasure deleted during the copy are
    /// deleted from it too, but their bytes may then sit in its freed pages: the file stays
    /// marked for the next scrub. After an error, [`Store::discard_scrub`] deletes the
    /// copies (the files in use are as they were, or the shard file is new and the index
    /// file old, which follows the same journal).
    pub fn finish_scrub(&mut self, copy: ScrubCopy) -> Result<ScrubReport, StorageError> {
        let paused = Instant::now();
        let ScrubCopy {
            shard,
            shard_upto,
            erased,
            rows,
            index,
            started,
            bytes_before,
        } = copy;
        let (delta_rows, still_pending) = finish_shard_copy(&self.db, &shard, shard_upto, erased)?;
        let copied_ms = paused.elapsed().as_millis() as u64;
        let (copied, _) = read_head(&shard, self.head.shard_id)?;
        assert_eq!(
            copied, self.head,
            "a scrub copy must carry the committed head"
        );
        drop(shard);
        let shard_bytes = replace_file(&self.db, &self.path, FileKind::Shard)?;
        let swapped_ms = paused.elapsed().as_millis() as u64;
        let index_bytes = self.index.requests().finish_scrub(index)?;
        tracing::debug!(
            shard = self.head.shard_id,
            copied_ms,
            swapped_ms,
            index_done_ms = paused.elapsed().as_millis() as u64,
            "scrub hand-over: shard copy completed, shard file swapped, index file's hand-over done"
        );
        self.scrub_pending = still_pending;
        let took = started.elapsed();
        self.last_scrub = Some(LastScrub {
            ended: Instant::now(),
            took,
        });
        Ok(ScrubReport {
            bytes_before,
            bytes_after: shard_bytes + index_bytes,
            rows: rows + delta_rows,
            took_ms: took.as_millis() as u64,
            paused_ms: paused.elapsed().as_millis() as u64,
        })
    }
}

/// Entries appended during a round of a scrub's copy below which the copying thread hands
/// the copies over; the shard's writer then copies what was appended since with its writes
/// paused (9–94 ms in all on the 10M ledger under load, docs/benchmarks.md).
const SCRUB_HANDOVER_ENTRIES: u64 = 500;

/// At most this many rounds of catching the copies up, on the copying thread, before the
/// hand-over (a shard that appends faster than the rounds catch up still gets scrubbed).
const SCRUB_CATCH_UP_ROUNDS: u32 = 8;

/// A scrub of one shard, ready to copy (on any thread): both files' cells and paths.
pub struct ScrubJob {
    shard: Arc<DbCell>,
    shard_path: PathBuf,
    index: Arc<DbCell>,
    index_path: PathBuf,
    /// The shard's index writer.
    index_requests: IndexRequests,
    /// Set to stop the copy early (the shard is stopping).
    cancel: Arc<AtomicBool>,
    started: Instant,
    /// Both files' sizes when the scrub began.
    bytes_before: u64,
    /// Free disk space below which the copy stops ([`SCRUB_MIN_FREE_BYTES`]).
    min_free_bytes: u64,
}

/// Points of [`ScrubJob::copy_observed`] at which tests act.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrubStage {
    /// The shard file's first snapshot is copied; the index file's copy follows.
    ShardCopied,
    /// The index file's snapshot is copied; the rounds that bring both copies up to the
    /// journal follow.
    IndexCopied,
}

/// Both files copied from snapshots, not yet in place: what [`Store::finish_scrub`] takes.
pub struct ScrubCopy {
    /// The new shard file (`….redb.scrub`), up to `shard_upto` entries.
    shard: Database,
    /// Entries the copy holds.
    shard_upto: u64,
    /// An erasure entry was among the entries copied after the first snapshot.
    erased: bool,
    /// Rows written to both copies so far.
    rows: u64,
    /// The new index file, caught up to the journal as it was at the last round.
    index: DbCell,
    started: Instant,
    /// Both files' sizes when the scrub began.
    bytes_before: u64,
}

impl ScrubJob {
    /// A flag that stops the copy early when set (it then fails, and the temporary files
    /// stay until the next open or scrub removes them).
    pub fn canceller(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Copies both files from read snapshots while the shard may keep appending: the shard
    /// file whole, the index file whole, then, in rounds until fewer than
    /// `SCRUB_HANDOVER_ENTRIES` were appended during the last one, what the entries appended
    /// meanwhile changed in the shard file and the index file's replay of them.
    pub fn copy(self) -> Result<ScrubCopy, StorageError> {
        self.copy_observed(|_| {})
    }

    /// [`ScrubJob::copy`], calling `meanwhile` at each [`ScrubStage`] (tests write to the
    /// shard there, as its writer would while the copy runs).
    #[doc(hidden)]
    pub fn copy_observed(
        self,
        mut meanwhile: impl FnMut(ScrubStage),
    ) -> Result<ScrubCopy, StorageError> {
        let shard = create_copy(&self.shard_path)?;
        let (mut upto, mut rows) = {
            let src = self.shard.get().begin_read()?;
            let size = journal_len(&src)?;
            (size, copy_all(&src, &shard, FileKind::Shard, &self.stop())?)
        };
        meanwhile(ScrubStage::ShardCopied);
        self.stop().check()?;
        let index = create_copy(&self.index_path)?;
        {
            let src = self.index.get().begin_read()?;
            rows += copy_all(&src, &index, FileKind::Index, &self.stop())?;
        }
        let index = DbCell::new(index);
        meanwhile(ScrubStage::IndexCopied);
        let mut erased = false;
        for round in 0..SCRUB_CATCH_UP_ROUNDS {
            let Some(delta) = self.round(&shard, &index, upto, round == 0)? else {
                break;
            };
            (upto, rows, erased) = (delta.upto, rows + delta.rows, erased || delta.erased);
        }
        // Written out here, not during the hand-over: the rounds' non-durable commits left
        // their pages to sync, and the hand-over's durable commit would wait for them.
        shard.begin_write()?.commit()?;
        // Likewise the live index file's durable step of both tiers (up to
        // `CUSTOMER_INDEX_DELAY_MS` of entries): the hand-over's then has only the last few.
        self.index_requests.durable()?;
        Ok(ScrubCopy {
            shard,
            shard_upto: upto,
            erased,
            rows,
            index,
            started: self.started,
            bytes_before: self.bytes_before,
        })
    }
}

impl ScrubJob {
    /// One round: both copies brought up to the journal as it is now (from entry `upto`
    /// on), unless this is not the `first` round and fewer than `SCRUB_HANDOVER_ENTRIES`
    /// were appended since the last one (`None`: time for the hand-over).
    fn round(
        &self,
        shard: &Database,
        index: &DbCell,
        upto: u64,
        first: bool,
    ) -> Result<Option<Delta>, StorageError> {
        self.stop().check()?;
        let src = self.shard.get().begin_read()?;
        let size = journal_len(&src)?;
        assert!(size >= upto, "a journal only grows");
        if !first && size - upto < SCRUB_HANDOVER_ENTRIES {
            return Ok(None);
        }
        let txn = begin_quiet(shard)?;
        let mut delta = copy_shard_delta(&src, &txn, upto)?;
        txn.commit()?;
        drop(src);
        delta.rows += super::index_file::catch_up(index, &self.shard, size)?;
        Ok(Some(delta))
    }
}

/// Completes the shard file's copy from the file in `cell` (the shard's writer is paused):
/// the entries from `upto` on, the whole `customers` and `meta`, the scrub mark; checks
/// it; commits durably. Returns the rows written and whether the file stays marked.
fn finish_shard_copy(
    cell: &DbCell,
    dst: &Database,
    upto: u64,
    erased: bool,
) -> Result<(u64, bool), StorageError> {
    let src = cell.get().begin_read()?;
    let txn = dst.begin_write()?;
    let delta = copy_shard_delta(&src, &txn, upto)?;
    let mut rows = delta.rows;
    rows += overwrite_table(&src, &txn, CUSTOMERS)?;
    rows += overwrite_table(&src, &txn, META)?;
    let pending = erased || delta.erased;
    // A file never erased from has no mark row (and the copy keeps its row count).
    if pending_in_snapshot(&src)? || pending {
        txn.open_table(META)?
            .insert(META_SCRUB_PENDING, [u8::from(pending)].as_slice())?;
    }
    // Durability::Immediate is the default: this commit makes the whole copy durable.
    txn.commit()?;
    check_same_rows(&src, &dst.begin_read()?)?;
    Ok((rows, pending))
}

/// What copying the entries appended after a snapshot did.
struct Delta {
    /// The journal size the copy now reaches.
    upto: u64,
    /// Rows written.
    rows: u64,
    /// An erasure entry was among the entries.
    erased: bool,
}

/// Makes `dst` hold what the shard file snapshot `src` holds for entries from `from` on:
/// journal rows and Merkle nodes completed by them, the personal record and idempotency
/// row of each consent entry among them, and of each entry an erasure entry among them
/// names (copied when `src` has it, deleted when it does not: erased).
fn copy_shard_delta(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    from: u64,
) -> Result<Delta, StorageError> {
    let journal = src.open_table(JOURNAL)?;
    let mut touched = Vec::new();
    let mut out = Delta {
        upto: journal.len()?,
        rows: 0,
        erased: false,
    };
    {
        let mut to = dst.open_table(JOURNAL)?;
        for row in journal.range(from..)? {
            let (seq, bytes) = row?;
            let seq = seq.value();
            to.insert(seq, bytes.value())?;
            out.rows += 1;
            match decode(seq, bytes.value())?.body {
                EntryBody::Consent(_) => touched.push(seq),
                EntryBody::Erasure(e) => {
                    out.erased = true;
                    touched.extend(e.erased_seqs);
                }
            }
        }
    }
    {
        let merkle = src.open_table(MERKLE)?;
        let mut to = dst.open_table(MERKLE)?;
        for row in merkle.range((from, 0u8)..)? {
            let (key, hash) = row?;
            to.insert(key.value(), hash.value())?;
            out.rows += 1;
        }
    }
    out.rows += sync_personal_rows(src, dst, &journal, &touched)?;
    Ok(out)
}

/// For each entry in `seqs`: its personal record and idempotency row in `dst` made what
/// they are in `src` (copied, or deleted when absent there). Returns the rows written.
fn sync_personal_rows(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    journal: &ReadOnlyTable<u64, &'static [u8]>,
    seqs: &[u64],
) -> Result<u64, StorageError> {
    let personal = src.open_table(PERSONAL)?;
    let customers = src.open_table(CUSTOMERS)?;
    let keys = src.open_table(IDEMPOTENCY)?;
    let mut personal_to = dst.open_table(PERSONAL)?;
    let mut keys_to = dst.open_table(IDEMPOTENCY)?;
    let mut rows = 0;
    for &seq in seqs {
        match personal.get(seq)? {
            Some(record) => personal_to.insert(seq, record.value())?,
            None => personal_to.remove(seq)?,
        };
        rows += 1;
        let bytes = journal.get(seq)?.ok_or_else(|| StorageError::Corrupt {
            table: "journal",
            detail: format!("entry {seq}, named by a later entry, is missing"),
        })?;
        let entry = decode(seq, bytes.value())?;
        let Some(key) = entry.consent().and_then(|c| c.idempotency_key.as_deref()) else {
            continue;
        };
        let customer = customers
            .get(entry.customer_id.as_str())?
            .ok_or_else(|| StorageError::Corrupt {
                table: "customers",
                detail: format!("entry {seq} names a customer the shard does not have"),
            })?
            .value()
            .0;
        match keys.get((customer, key))? {
            Some(v) => {
                let (at, digest) = v.value();
                keys_to.insert((customer, key), (at, digest))?
            }
            None => keys_to.remove((customer, key))?,
        };
        rows += 1;
    }
    Ok(rows)
}

fn decode(seq: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    Entry::decode(bytes).map_err(|e| StorageError::Corrupt {
        table: "journal",
        detail: format!("entry {seq}: {e}"),
    })
}

/// Writes every row of `src`'s table into `dst`'s (small tables copied whole at the
/// hand-over); returns how many.
fn overwrite_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, StorageError> {
    let from = src.open_table(def)?;
    let mut to = dst.open_table(def)?;
    let mut rows = 0;
    for row in from.iter()? {
        let (k, v) = row?;
        to.insert(k.value(), v.value())?;
        rows += 1;
    }
    Ok(rows)
}

/// Entries in a shard file snapshot's journal.
fn journal_len(src: &ReadTransaction) -> Result<u64, StorageError> {
    Ok(src.open_table(JOURNAL)?.len()?)
}

/// Refuses a copy that lacks a table of the file it replaces or has another number of rows
/// in one (a table added to the layout but not to `copy_all`, a row the catch-up missed):
/// the old file then stays.
pub(super) fn check_same_rows(
    live: &ReadTransaction,
    copy: &ReadTransaction,
) -> Result<(), StorageError> {
    for table in live.list_tables()? {
        let name = table.name().to_string();
        let want = live.open_untyped_table(table)?.len()?;
        // An untyped open reads only the handle's name: any definition of that name does.
        let got = match copy.open_untyped_table(TableDefinition::<u64, ()>::new(&name)) {
            Ok(t) => t.len()?,
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(e.into()),
        };
        if got != want {
            return Err(StorageError::Corrupt {
                table: "scrub",
                detail: format!(
                    "table {name}: the copy has {got} rows, the file {want}; the file was not replaced"
                ),
            });
        }
    }
    Ok(())
}

/// Which of a shard's two files a scrub rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileKind {
    /// `shard-NNNN.redb`.
    Shard,
    /// `shard-NNNN.index.redb`.
    Index,
}

fn open_kind(path: &Path, kind: FileKind, create: bool) -> Result<Database, StorageError> {
    Ok(match kind {
        FileKind::Shard => open_db(path, create),
        FileKind::Index => open_index_db(path, create),
    }?)
}

/// redb's page cache of each of a scrub's two copies while they are written: rows arrive in
/// key order (and the rounds' few at the ends), so little is read back, and the copies
/// are open beside both live files while the shard serves (their 8 MiB caches pushed peak
/// RSS under `batch` at 10M to 263 MiB, docs/benchmarks.md).
pub const SCRUB_COPY_CACHE_BYTES: usize = 2 * 1024 * 1024;

/// A new, empty file for the copy of the file at `path` (a leftover one removed first).
fn create_copy(path: &Path) -> Result<Database, StorageError> {
    remove_leftover(path).map_err(|e| io_error("removing an old scrub file", e))?;
    let copy = scrub_path(path);
    Ok(super::store::open_with_cache(
        &copy,
        true,
        SCRUB_COPY_CACHE_BYTES,
    )?)
}

/// Puts a finished, durable, closed copy in place of the file at `path` (open in `cell`):
/// renames it over the file, syncs the directory and swaps the cell to it; returns the new
/// file's size in bytes.
pub(super) fn replace_file(
    cell: &DbCell,
    path: &Path,
    kind: FileKind,
) -> Result<u64, StorageError> {
    std::fs::rename(scrub_path(path), path)
        .map_err(|e| io_error("renaming the scrubbed file", e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("syncing the data directory", e))?;
    }
    let fresh = open_kind(path, kind, false)?;
    close_elsewhere(cell.replace(fresh));
    file_len(path)
}

/// Drops the replaced file's database on a thread of its own (there, or on the thread of
/// the last read holding it): redb's clean shutdown of a multi-gigabyte file took 0.43–0.66 s (10M ledger,
/// docs/benchmarks.md), which the shard's writes would otherwise wait for. The file is
/// already renamed over, so nothing reads what the shutdown writes.
fn close_elsewhere(old: Arc<Db>) {
    // If the thread cannot start, the closure and the database are dropped here.
    let spawned = std::thread::Builder::new()
        .name("scrub-close".into())
        .spawn(move || drop(old));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "a replaced file was closed on the writer's thread");
    }
}

fn file_len(path: &Path) -> Result<u64, StorageError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| io_error("reading the file size", e))
}

/// When a copy stops early: the shard stops, or free disk space runs low.
struct CopyStop<'j> {
    /// Set when the shard stops.
    cancel: &'j AtomicBool,
    /// The shard file (its file system is the one measured).
    path: &'j Path,
    /// Free bytes the copy leaves to the live files.
    min_free_bytes: u64,
}

impl CopyStop<'_> {
    /// Refuses once the shard is stopping or less than `min_free_bytes` are free.
    fn check(&self) -> Result<(), StorageError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(StorageError::IndexWriter(
                "the scrub was cancelled: the shard is stopping".into(),
            ));
        }
        require_free(self.path, self.min_free_bytes)
    }
}

impl ScrubJob {
    /// What stops this job's copy early.
    fn stop(&self) -> CopyStop<'_> {
        CopyStop {
            cancel: &self.cancel,
            path: &self.shard_path,
            min_free_bytes: self.min_free_bytes,
        }
    }
}

/// Copies every table of a `kind` file from `src` into the empty `dst`, in durable
/// transactions of `SCRUB_ROWS_PER_TXN` rows; returns the rows copied.
fn copy_all(
    src: &ReadTransaction,
    dst: &Database,
    kind: FileKind,
    stop: &CopyStop<'_>,
) -> Result<u64, StorageError> {
    let mut copier = Copier {
        dst,
        txn: Some(dst.begin_write()?),
        in_txn: 0,
        rows: 0,
        stop,
    };
    match kind {
        FileKind::Shard => {
            copier.table(src, JOURNAL)?;
            copier.table(src, MERKLE)?;
            copier.table(src, PERSONAL)?;
            copier.table(src, META)?;
            copier.table(src, CUSTOMERS)?;
            copier.table(src, IDEMPOTENCY)?;
        }
        FileKind::Index => {
            copier.table(src, SUBJECTS)?;
            copier.table(src, CUSTOMER_EVENTS)?;
            copier.table(src, DAILY_COUNTS)?;
            copier.table(src, ERASURES)?;
            copier.table(src, EXPIRIES)?;
            copier.table(src, INDEX_META)?;
        }
    }
    copier.txn.take().expect("a transaction is open").commit()?;
    Ok(copier.rows)
}

/// A write transaction that commits without syncing.
fn begin_quiet(db: &Database) -> Result<WriteTransaction, StorageError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::None)?;
    Ok(txn)
}

/// Streams rows into `dst` in durable transactions of `SCRUB_ROWS_PER_TXN` rows.
struct Copier<'d> {
    dst: &'d Database,
    txn: Option<WriteTransaction>,
    in_txn: u64,
    rows: u64,
    stop: &'d CopyStop<'d>,
}

impl Copier<'_> {
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        src: &ReadTransaction,
        def: TableDefinition<K, V>,
    ) -> Result<(), StorageError> {
        let from = src.open_table(def)?;
        let mut rows = from.iter()?;
        loop {
            let txn = self.txn.as_ref().expect("a transaction is open");
            let mut to = txn.open_table(def)?;
            let mut full = false;
            for row in rows.by_ref() {
                let (k, v) = row?;
                to.insert(k.value(), v.value())?;
                self.in_txn += 1;
                self.rows += 1;
                if self.in_txn == SCRUB_ROWS_PER_TXN {
                    full = true;
                    break;
                }
            }
            drop(to);
            if !full {
                return Ok(());
            }
            self.rotate()?;
        }
    }

    /// Commits the current transaction and starts the next one, unless the copy must
    /// stop ([`CopyStop::check`]).
    fn rotate(&mut self) -> Result<(), StorageError> {
        self.stop.check()?;
        self.txn.take().expect("a transaction is open").commit()?;
        self.txn = Some(self.dst.begin_write()?);
        self.in_txn = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_scrub_waits_the_spacing_factor_times_the_last_scrubs_duration() {
        // Proves: the wait is SCRUB_SPACING_FACTOR x took from the end, shrinking to zero.
        let ended = Instant::now();
        let last = LastScrub {
            ended,
            took: Duration::from_millis(500),
        };
        let spacing = Duration::from_millis(500) * SCRUB_SPACING_FACTOR;
        assert_eq!(last.wait_at(ended), spacing);
        let later = ended + Duration::from_secs(10);
        assert_eq!(last.wait_at(later), spacing - Duration::from_secs(10));
        assert_eq!(last.wait_at(ended + spacing), Duration::ZERO);
        assert_eq!(last.wait_at(ended + spacing * 2), Duration::ZERO);
    }
}
