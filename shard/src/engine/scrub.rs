//! Scrub: rewriting a shard file so that erased personal data is gone from every byte.
//!
//! redb is copy-on-write and reuses freed pages without zeroing them, so after an erasure
//! the deleted personal records still sit in free pages of the file until something
//! happens to overwrite them. A scrub copies every live row into a fresh file (which never
//! held the erased bytes), makes it durable, renames it over the old one, syncs the
//! directory and swaps the readers to it. Cost: one sequential copy of the live data.
//! See docs/design.md, "Erasure and freed pages".

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle, WriteTransaction,
};

use super::db::DbCell;
use super::error::StorageError;
use super::index_file::open_index_db;
use super::reader::read_head;
use super::store::{Store, open_db};
use super::tables::*;

/// Rows copied per (non-durable) transaction of the new file; the last commit is durable.
const SCRUB_ROWS_PER_TXN: u64 = 200_000;

/// A *scheduled* scrub of a shard waits, after the shard's previous scrub ended, this many
/// times as long as that scrub took. A scrub blocks the shard's writes while it copies
/// (50.7 s for a 2.5M-entry shard of a 10M ledger, docs/benchmarks.md), so with erasures
/// arriving steadily a large shard scrubbed every `--scrub-interval-ms` would take writes
/// only a few seconds a minute; spaced, it spends at most 1 % of the time scrubbing. A
/// small shard (a scrub of milliseconds) is still scrubbed every interval. Scrubs asked for
/// (`scrubStorage`) run at once.
pub const SCRUB_SPACING_FACTOR: u32 = 100;

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
    let txn = db.begin_read()?;
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
    /// every reader to them. A cut at any point leaves either the old file or the new one
    /// in place, both complete.
    pub fn scrub(&mut self) -> Result<ScrubReport, StorageError> {
        let started = Instant::now();
        let head = self.head;
        let shard = rewrite(&self.db, &self.path, FileKind::Shard, |dst| {
            let (copied, _) = read_head(dst, head.shard_id)?;
            assert_eq!(copied, head, "a scrub copy must carry the committed head");
            Ok(())
        })?;
        let index = self.index.requests().scrub()?;
        self.scrub_pending = false;
        self.last_scrub = Some(LastScrub {
            ended: Instant::now(),
            took: started.elapsed(),
        });
        Ok(ScrubReport {
            bytes_before: shard.bytes_before + index.bytes_before,
            bytes_after: shard.bytes_after + index.bytes_after,
            rows: shard.rows + index.rows,
        })
    }
}

/// Which of a shard's two files a scrub rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileKind {
    /// `shard-NNNN.redb`.
    Shard,
    /// `shard-NNNN.index.redb`.
    Index,
}

/// Rewrites the file at `path` (open in `cell`) with only its live rows: copies them into a
/// new file, lets `check` look at it, makes it durable, renames it over the old one, syncs
/// the directory and swaps the cell to it.
pub(super) fn rewrite(
    cell: &DbCell,
    path: &Path,
    kind: FileKind,
    check: impl FnOnce(&Database) -> Result<(), StorageError>,
) -> Result<ScrubReport, StorageError> {
    let tmp = scrub_path(path);
    remove_leftover(path).map_err(|e| io_error("removing an old scrub file", e))?;
    let bytes_before = file_len(path)?;
    let open = |p: &Path, create: bool| match kind {
        FileKind::Shard => open_db(p, create),
        FileKind::Index => open_index_db(p, create),
    };
    let rows = {
        let dst = open(&tmp, true)?;
        let src = cell.get().begin_read()?;
        let rows = copy_all(&src, &dst, kind)?;
        check(&dst)?;
        rows
    };
    std::fs::rename(&tmp, path).map_err(|e| io_error("renaming the scrubbed file", e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("syncing the data directory", e))?;
    }
    let fresh = open(path, false)?;
    drop(cell.replace(fresh));
    Ok(ScrubReport {
        bytes_before,
        bytes_after: file_len(path)?,
        rows,
    })
}

fn file_len(path: &Path) -> Result<u64, StorageError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| io_error("reading the file size", e))
}

/// Copies every table of a `kind` file from `src` into the empty `dst` (in a shard file,
/// clearing the scrub mark) and commits durably; returns the rows copied.
fn copy_all(src: &ReadTransaction, dst: &Database, kind: FileKind) -> Result<u64, StorageError> {
    let mut copier = Copier {
        dst,
        txn: Some(dst.begin_write()?),
        in_txn: 0,
        rows: 0,
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
    let txn = copier.txn.take().expect("a transaction is open");
    // A table added to the layout but not to the list above would be lost by the rename:
    // refuse to finish instead (the old file stays).
    let names = |tables: Vec<String>| tables.into_iter().collect::<BTreeSet<_>>();
    let copied = names(txn.list_tables()?.map(|t| t.name().to_string()).collect());
    let live = names(src.list_tables()?.map(|t| t.name().to_string()).collect());
    if let Some(missing) = live.difference(&copied).next() {
        return Err(StorageError::Corrupt {
            table: "scrub",
            detail: format!(
                "table {missing} is not copied by scrub::copy_all; the file was not replaced"
            ),
        });
    }
    if kind == FileKind::Shard {
        txn.open_table(META)?
            .insert(META_SCRUB_PENDING, [0u8].as_slice())?;
    }
    // Durability::Immediate is the default: this commit makes the whole copy durable.
    txn.commit()?;
    Ok(copier.rows)
}

/// Streams rows into `dst` in transactions of `SCRUB_ROWS_PER_TXN` rows.
struct Copier<'d> {
    dst: &'d Database,
    txn: Option<WriteTransaction>,
    in_txn: u64,
    rows: u64,
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

    /// Commits the current (non-durable) transaction and starts the next one.
    fn rotate(&mut self) -> Result<(), StorageError> {
        let mut txn = self.txn.take().expect("a transaction is open");
        txn.set_durability(Durability::None)
            .map_err(|e| StorageError::Corrupt {
                table: "scrub",
                detail: e.to_string(),
            })?;
        txn.commit()?;
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
