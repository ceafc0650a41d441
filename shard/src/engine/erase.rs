//! Erasure: deleting personal records while every entry, hash and proof stays valid.
//!
//! One erasure transaction of the shard file deletes the personal records (subject id,
//! evidence, consent strings and the salts that open their commitments) of at most
//! `MAX_ERASED_PER_ENTRY` consent entries, marks their idempotency keys erased, appends one
//! erasure entry naming the entries, and commits durably. Then the index writer deletes
//! their subject-history rows and recomputes the current state of every subject concerned
//! from what remains, durably, before the caller is answered. The journal is only appended
//! to. See docs/design.md, "Erasure".

use std::collections::BTreeSet;

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable};

use super::error::{ErasureError, StorageError};
use super::index::subject_seqs;
use super::index_file::IndexErasure;
use super::reader::split_personal;
use super::store::{Appended, Store, WriteTables};
use super::tables::{CUSTOMER_EVENTS, META_SCRUB_PENDING, SUBJECTS};
use crate::format::limits::{MAX_ERASED_PER_ENTRY, MAX_ERASURE_REASON_BYTES, MAX_SUBJECT_ID_BYTES};
use crate::format::{EntryBody, ErasureCause, ErasureRecord};
use crate::hash::{Hash, subject_key};

/// Which personal records to erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureTarget {
    /// Every event of one subject (`eraseSubject`).
    Subject(String),
    /// Every event recorded before this instant (Unix ms) that still has its personal
    /// record (retention).
    RecordedBefore(i64),
}

/// An erasure request for one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRequest {
    /// Customer whose records are erased.
    pub customer_id: String,
    /// What to erase.
    pub target: ErasureTarget,
    /// Why, without personal data (stored in the ledger).
    pub reason: String,
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    /// The erasure entries written (one per `MAX_ERASED_PER_ENTRY` erased events).
    pub entries: Vec<Appended>,
    /// Consent entries whose personal record was deleted.
    pub erased_events: u64,
    /// Distinct subjects concerned.
    pub subjects: u64,
}

impl Store {
    /// Erases what `req` names, in as many transactions of at most
    /// `MAX_ERASED_PER_ENTRY` events as needed (one, for any subject with fewer events:
    /// then the erasure is all or nothing). `NothingToErase` when nothing matched.
    pub fn erase(&mut self, req: &ErasureRequest) -> Result<Erased, ErasureError> {
        if req.reason.len() > MAX_ERASURE_REASON_BYTES {
            return Err(ErasureError::ReasonTooLong {
                max: MAX_ERASURE_REASON_BYTES as u64,
            });
        }
        if let ErasureTarget::Subject(id) = &req.target
            && (id.is_empty() || id.len() > MAX_SUBJECT_ID_BYTES)
        {
            return Err(ErasureError::BadSubject {
                max: MAX_SUBJECT_ID_BYTES as u64,
            });
        }
        let mut out = Erased {
            entries: Vec::new(),
            erased_events: 0,
            subjects: 0,
        };
        loop {
            // The subject's rows must all be in the indexes before they are looked up
            // (durably: an erasure is rare, and then its index step starts from a file
            // that has every earlier entry).
            self.index.requests().durable()?;
            match self.undo_on_error(|store| store.erase_step(req))? {
                Some((appended, events, erasure)) => {
                    out.entries.push(appended);
                    out.erased_events += events;
                    out.subjects += erasure
                        .erased
                        .iter()
                        .map(|(_, s)| s)
                        .collect::<BTreeSet<_>>()
                        .len() as u64;
                    self.index.requests().erase(erasure)?;
                }
                None if out.entries.is_empty() => return Err(ErasureError::NothingToErase),
                None => return Ok(out),
            }
        }
    }

    /// One transaction of the shard file: `None` when nothing (more) matches.
    fn erase_step(
        &mut self,
        req: &ErasureRequest,
    ) -> Result<Option<(Appended, u64, IndexErasure)>, StorageError> {
        // Read before the shard transaction begins: the index writer has indexed every
        // committed entry (`erase`), and nothing is appended until this step ends.
        let index = self.index_db.get().begin_read()?;
        let txn = self.db.get().begin_write()?;
        let result = {
            let mut t = WriteTables::open(&txn)?;
            let Some((customer, secret)) = t.customer(&req.customer_id)? else {
                return Ok(None);
            };
            let seqs = matching_seqs(&index, &t, customer, &secret, &req.target)?;
            if seqs.is_empty() {
                return Ok(None);
            }
            let mut erased = Vec::with_capacity(seqs.len());
            for &seq in &seqs {
                erased.push((seq, erase_one(&mut t, customer, &secret, seq)?));
            }
            let cause = match req.target {
                ErasureTarget::Subject(_) => ErasureCause::SubjectRequest,
                ErasureTarget::RecordedBefore(_) => ErasureCause::Retention,
            };
            let count = seqs.len() as u64;
            let body = EntryBody::Erasure(ErasureRecord {
                cause,
                reason: req.reason.clone(),
                erased_seqs: seqs,
            });
            let (entry, hash) = self.append_entry(&mut t, req.customer_id.clone(), body)?;
            self.seal(&mut t)?;
            t.meta.insert(META_SCRUB_PENDING, [1u8].as_slice())?;
            let appended = Appended {
                entry: entry.clone(),
                entry_hash: hash,
                duplicate: false,
                personal: None,
            };
            let erasure = IndexErasure {
                entry,
                customer,
                erased,
            };
            (appended, count, erasure)
        };
        self.db.commit(txn)?;
        self.stats.commits += 1;
        self.scrub_pending = true;
        // Until the index writer has applied it, reads of this customer wait for it.
        let size = self.head.size;
        match &req.target {
            ErasureTarget::Subject(id) => {
                self.progress
                    .add_unindexed(&req.customer_id, std::iter::once(id.as_str()), size)
            }
            ErasureTarget::RecordedBefore(_) => {
                self.progress
                    .add_unindexed(&req.customer_id, std::iter::empty(), size)
            }
        }
        Ok(Some(result))
    }
}

/// The sequence numbers (at most `MAX_ERASED_PER_ENTRY`, increasing) that `target` names and
/// that still have a personal record, found in the index snapshot `index`.
fn matching_seqs(
    index: &ReadTransaction,
    t: &WriteTables<'_>,
    customer: u32,
    secret: &[u8; 32],
    target: &ErasureTarget,
) -> Result<Vec<u64>, StorageError> {
    let mut out = Vec::new();
    match target {
        ErasureTarget::Subject(id) => {
            let s = subject_key(secret, id).0;
            let subjects: ReadOnlyTable<_, _> = index.open_table(SUBJECTS)?;
            out = subject_seqs(&subjects, customer, &s, MAX_ERASED_PER_ENTRY)?;
        }
        ErasureTarget::RecordedBefore(before_ms) => {
            let times = index.open_table(CUSTOMER_EVENTS)?;
            'rows: for row in times.range((customer, i64::MIN, 0)..(customer, *before_ms, 0))? {
                // A row is a run of entries (index layout 3).
                let (k, last) = row?;
                for seq in k.value().2..=last.value() {
                    if t.personal.get(seq)?.is_some() {
                        out.push(seq);
                        if out.len() == MAX_ERASED_PER_ENTRY {
                            break 'rows;
                        }
                    }
                }
            }
            out.sort_unstable();
        }
    }
    Ok(out)
}

/// Deletes entry `seq`'s personal record and marks its idempotency key erased; returns the
/// subject key it belonged to (the index writer deletes its history row with it).
fn erase_one(
    t: &mut WriteTables<'_>,
    customer: u32,
    secret: &[u8; 32],
    seq: u64,
) -> Result<Hash, StorageError> {
    let record = {
        let stored = t
            .personal
            .remove(seq)?
            .ok_or_else(|| StorageError::Corrupt {
                table: "personal_records",
                detail: format!("entry {seq} to erase has no personal record"),
            })?;
        split_personal(seq, stored.value())?.record
    };
    let subject = subject_key(secret, &record.subject_id);
    let entry = t.stored(seq)?.entry;
    if let Some(key) = entry.consent().and_then(|c| c.idempotency_key.as_deref()) {
        t.idempotency
            .insert((customer, key), (seq, &Hash::ZERO.0))?;
    }
    Ok(subject)
}
