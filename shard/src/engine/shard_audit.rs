//! The whole-shard audit in one read of the journal: the chain walk hands each entry's
//! bytes to the index check on a second thread.
//!
//! Before, the chain check and the index check each read and decoded the whole journal
//! (about half of a shard file), so every journal page crossed the `pread` copy twice. Now
//! one thread walks the journal and the Merkle table (re-hash, links, nodes, checkpoints)
//! and copies every entry into batches; the index thread first walks the
//! `subjects` table (the state claims must be collected before the journal reaches them),
//! then checks the batches as they come. A third thread digests the time, expiry and
//! erasure indexes. The bounded channel between the two walks keeps memory at
//! `(AUDIT_BATCHES_IN_FLIGHT + 2) × AUDIT_BATCH_BYTES` per shard.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use super::error::{ShardAuditError, StorageError, VerifyJournalError};
use super::index_check::{self, IndexMismatch, IndexReport};
use super::reader::ShardReader;
use super::state_check::ClaimSpill;
use super::subjects_walk::SubjectsPass;
use crate::verify::{ChainError, ChainVerifier, ChainedEntry, ShardHead};

/// Bytes of journal entries per batch handed from the chain walk to the index check.
pub const AUDIT_BATCH_BYTES: usize = 1 << 20;
/// Batches queued between the chain walk and the index check before the walk waits.
pub const AUDIT_BATCHES_IN_FLIGHT: usize = 4;

/// Entries copied into one buffer, in journal order.
#[derive(Default)]
struct EntryBatch {
    /// The entries' canonical bytes, back to back.
    bytes: Vec<u8>,
    /// Where each entry ends in `bytes`.
    ends: Vec<usize>,
}

impl EntryBatch {
    fn push(&mut self, entry: &[u8]) {
        self.bytes.extend_from_slice(entry);
        self.ends.push(self.bytes.len());
    }

    fn is_full(&self) -> bool {
        self.bytes.len() >= AUDIT_BATCH_BYTES
    }

    fn entries(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.bytes[a..b])
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

impl ShardReader {
    /// Checks the whole shard in one snapshot: the journal as
    /// [`ShardReader::verify_journal_observed`] does (calling `observe` after each entry)
    /// and the indexes as [`ShardReader::verify_indexes`] does, reading the journal once,
    /// walking the `subjects` table as `pass` says. A journal problem is reported before an
    /// index problem. The chain walk decodes only each entry's header; the index check
    /// decodes every entry strictly, once, and names an entry that does not decode.
    pub fn audit(
        &self,
        pass: SubjectsPass,
        observe: impl FnMut(&ChainedEntry, &ChainVerifier) -> Result<(), ChainError>,
    ) -> Result<(ShardHead, IndexReport), ShardAuditError> {
        self.audit_with(pass, &ClaimSpill::default(), observe)
    }

    /// [`ShardReader::audit`], with the state claims held and spilled as `spill` says.
    pub fn audit_with(
        &self,
        pass: SubjectsPass,
        spill: &ClaimSpill,
        mut observe: impl FnMut(&ChainedEntry, &ChainVerifier) -> Result<(), ChainError>,
    ) -> Result<(ShardHead, IndexReport), ShardAuditError> {
        let shard_id = self.shard_id();
        let txn = self.snapshot()?;
        let journal_failed = AtomicBool::new(false);
        let (full_tx, full_rx) = mpsc::sync_channel::<EntryBatch>(AUDIT_BATCHES_IN_FLIGHT);
        let (empty_tx, empty_rx) = mpsc::channel::<EntryBatch>();
        std::thread::scope(|scope| {
            let index = scope.spawn(|| {
                index_check::run(&txn, shard_id, pass, spill, |check| {
                    for mut batch in full_rx {
                        for entry in batch.entries() {
                            check.entry_bytes(entry)?;
                        }
                        batch.clear();
                        let _ = empty_tx.send(batch);
                    }
                    if journal_failed.load(Ordering::Acquire) {
                        let detail = "not finished: the journal check failed".into();
                        return Err(IndexMismatch::new(shard_id, detail));
                    }
                    Ok(())
                })
            });
            let mut batch = EntryBatch::default();
            let mut hung_up = false;
            let walked = self.walk_journal(&txn.shard, |bytes, entry, verifier| {
                observe(entry, verifier)
                    .map_err(|source| VerifyJournalError::Chain { shard_id, source })?;
                batch.push(bytes);
                if batch.is_full() {
                    let next = empty_rx.try_recv().unwrap_or_default();
                    if full_tx.send(std::mem::replace(&mut batch, next)).is_err() {
                        // The index check stopped at a problem; it is reported below.
                        hung_up = true;
                        return Err(StorageError::Corrupt {
                            table: "journal",
                            detail: "the index check stopped".into(),
                        }
                        .into());
                    }
                }
                Ok(())
            });
            match &walked {
                Ok(_) => hung_up |= full_tx.send(batch).is_err(),
                Err(_) if !hung_up => journal_failed.store(true, Ordering::Release),
                Err(_) => {}
            }
            drop(full_tx);
            let indexes = index.join().expect("the index thread does not panic");
            match (walked, indexes) {
                (_, Err(e)) if hung_up => Err(ShardAuditError::Index(e)),
                (Err(e), _) => Err(ShardAuditError::Journal(e)),
                (Ok(head), Ok(report)) => Ok((head, report)),
                (Ok(_), Err(e)) => Err(ShardAuditError::Index(e)),
            }
        })
    }
}
