//! Erasure: deleting personal records while every entry, hash and proof stays valid.
//!
//! One erasure transaction deletes the personal records (subject id, evidence, consent
//! strings and the salts that open their commitments) of at most `MAX_ERASED_PER_ENTRY`
//! consent entries, their subject-history rows, marks their idempotency keys erased,
//! recomputes the current state of every subject concerned from what remains, appends one
//! erasure entry naming the entries, and commits durably. The journal is only appended to.
//! See docs/design.md, "Erasure".

use std::collections::BTreeSet;

use redb::ReadableTable;

use super::error::{ErasureError, StorageError};
use super::index::{STATE_ROW, apply_to_state};
use super::reader::split_personal;
use super::store::{Appended, Store, WriteTables};
use super::tables::META_SCRUB_PENDING;
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
        // The subject's rows must all be in the indexes before they are looked up.
        self.index_now(false)?;
        let mut out = Erased {
            entries: Vec::new(),
            erased_events: 0,
            subjects: 0,
        };
        loop {
            match self.undo_on_error(|store| store.erase_step(req))? {
                Some((appended, events, subjects)) => {
                    out.entries.push(appended);
                    out.erased_events += events;
                    out.subjects += subjects;
                }
                None if out.entries.is_empty() => return Err(ErasureError::NothingToErase),
                None => return Ok(out),
            }
        }
    }

    /// One transaction: `None` when nothing (more) matches.
    fn erase_step(
        &mut self,
        req: &ErasureRequest,
    ) -> Result<Option<(Appended, u64, u64)>, StorageError> {
        let txn = self.db.get().begin_write()?;
        let result = {
            let mut t = WriteTables::open(&txn)?;
            let Some((customer, secret)) = t.customer(&req.customer_id)? else {
                return Ok(None);
            };
            let seqs = matching_seqs(&t, customer, &secret, &req.target)?;
            if seqs.is_empty() {
                return Ok(None);
            }
            let mut subjects = BTreeSet::new();
            for &seq in &seqs {
                subjects.insert(erase_one(&mut t, customer, &secret, seq)?);
            }
            for subject in &subjects {
                recompute_state(&mut t, customer, *subject)?;
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
            let (entry, hash) = self.append_entry(&mut t, &req.customer_id, body)?;
            // An erasure entry has no subject-tier rows; its listing row is derived here.
            t.indexes.apply_customer_tier(&entry, customer)?;
            assert!(self.unindexed.is_empty(), "indexed before the erasure");
            t.set_both_indexed_upto(self.head.size)?;
            self.seal(&mut t)?;
            t.meta.insert(META_SCRUB_PENDING, [1u8].as_slice())?;
            let appended = Appended {
                entry,
                entry_hash: hash,
                duplicate: false,
            };
            (appended, count, subjects.len() as u64)
        };
        self.db.commit(txn)?;
        self.stats.commits += 1;
        self.indexed_upto = self.head.size;
        self.customer_indexed_upto = self.head.size;
        self.scrub_pending = true;
        Ok(Some(result))
    }
}

/// The sequence numbers (at most `MAX_ERASED_PER_ENTRY`, increasing) that `target` names and
/// that still have a personal record.
fn matching_seqs(
    t: &WriteTables<'_>,
    customer: u32,
    secret: &[u8; 32],
    target: &ErasureTarget,
) -> Result<Vec<u64>, StorageError> {
    let mut out = Vec::new();
    match target {
        ErasureTarget::Subject(id) => {
            let s = subject_key(secret, id).0;
            for row in t
                .indexes
                .subjects
                .range((customer, &s, 0)..(customer, &s, STATE_ROW))?
                .take(MAX_ERASED_PER_ENTRY)
            {
                out.push(row?.0.value().2);
            }
        }
        ErasureTarget::RecordedBefore(before_ms) => {
            for row in t
                .indexes
                .customer_events
                .range((customer, i64::MIN, 0)..(customer, *before_ms, 0))?
            {
                let seq = row?.0.value().2;
                if t.personal.get(seq)?.is_some() {
                    out.push(seq);
                    if out.len() == MAX_ERASED_PER_ENTRY {
                        break;
                    }
                }
            }
            out.sort_unstable();
        }
    }
    Ok(out)
}

/// Deletes entry `seq`'s personal record and history row and marks its idempotency key
/// erased; returns the subject key it belonged to.
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
    t.indexes.subjects.remove((customer, &subject.0, seq))?;
    let entry = t.stored(seq)?.entry;
    if let Some(key) = entry.consent().and_then(|c| c.idempotency_key.as_deref()) {
        t.idempotency
            .insert((customer, key), (seq, &Hash::ZERO.0))?;
    }
    Ok(subject)
}

/// Rebuilds a subject's current state from the events it still has (none: no state).
fn recompute_state(
    t: &mut WriteTables<'_>,
    customer: u32,
    subject: Hash,
) -> Result<(), StorageError> {
    let old = t.indexes.state(customer, subject)?;
    let mut states = Vec::new();
    for seq in t.indexes.history(customer, subject)? {
        apply_to_state(&mut states, &t.stored(seq)?.entry);
    }
    t.indexes
        .set_state(customer, subject, &super::index::expiry_rows(&old), &states)
}
