//! The audit's check of a shard's personal records and secondary indexes against its
//! journal.
//!
//! [`run`] drives it in three steps, and its caller decides where the journal comes from
//! (the audit feeds it from the same walk that re-hashes the chain, so each journal page is
//! read once): [`IndexCheck::subjects_pass`] walks the `subjects` table (history digest, implied expiry
//! rows, current-state claims); [`IndexCheck::entry`] takes every journal entry, in order,
//! meets each consent entry's personal record (it must open the entry's commitment, or be
//! gone with an erasure entry naming it) and, below `indexed_upto`, what the entry implies
//! for the indexes; [`IndexCheck::finish`] compares what the journal implies with
//! the stored time, expiry, erasure and counter rows. Memory is bounded by the counters of
//! one day ([`DayTally`]), the customers, and the state claims' batch bound, not by the
//! number of events or the ledger's age.

// foldhash: these maps are read once per journal entry or state row (SipHash was ≈ 3 % of
// an audit's CPU); an offline audit has no untrusted clients to fear collisions from.
use foldhash::HashMap;
use std::iter::Peekable;

use std::hash::Hasher as _;

use redb::{ReadOnlyTable, ReadableTable};

use super::db::Snapshots;
use siphasher::sip128::{Hasher128 as _, SipHasher24};

use super::error::StorageError;
use super::index::{DayCounts, MS_PER_DAY, TimeRun, row_event, tally};
use super::reader::read_indexed_upto;
use super::state_check::{ClaimProblem, ClaimSpill};
use super::subjects_walk::{SubjectsPass, SubjectsWalk, walk_subjects};
use super::tables::*;
use crate::format::{ConsentView, Entry, EntryView, PersonalRecord, stored_request_digest};
use crate::hash::{HASH_LEN, Hash, personal_commitment, subject_key};

/// What an index check found and compared.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IndexReport {
    /// Journal entries checked against the subject tier of the indexes: those below
    /// `indexed_upto` (all of them once a server stopped cleanly; the customer tier is
    /// checked below its own `customer_indexed_upto`).
    pub entries: u64,
    /// Daily counter rows.
    pub counters: u64,
    /// Consent entries the time index's rows cover (its rows are runs of entries, index
    /// layout 3).
    pub time_rows: u64,
    /// Subject history rows, counting the one each state row stands for (its subject's
    /// latest event, which has no row of its own in index layout 2).
    pub history_rows: u64,
    /// Current state rows (subjects).
    pub state_rows: u64,
    /// Expiry index rows.
    pub expiry_rows: u64,
    /// Erasure entries (each checked: its entries exist, are consent events of the same
    /// customer, and have no personal record left).
    pub erasure_rows: u64,
    /// Personal records that open their consent entry's commitment (every stored one: a
    /// record of no consent entry is a mismatch).
    pub personal_records: u64,
    /// Consent entries without a personal record, each named by exactly one erasure
    /// entry.
    pub erased_entries: u64,
    /// Idempotency key rows, each naming the entry that carries its key (with a request
    /// digest cleared exactly when that entry was erased).
    pub idempotency_rows: u64,
    /// State claims written to the temporary file because they exceeded the memory bound
    /// (0 when every claim fit: see [`crate::engine::ClaimSpill`]).
    pub spilled_claims: u64,
}

/// An index that disagrees with the journal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard {shard_id}: {detail}")]
pub struct IndexMismatch {
    /// Which shard.
    pub shard_id: u32,
    /// What disagrees, naming the entry or row.
    pub detail: String,
    /// The check stopped because its temporary file failed (the auditing machine's disk,
    /// not the ledger; `detail` says how): nothing was found wrong with the ledger.
    pub temp_file_failed: bool,
}

impl IndexMismatch {
    /// A disagreement (or an unreadable index) in shard `shard_id`, described by `detail`.
    pub(crate) fn new(shard_id: u32, detail: String) -> IndexMismatch {
        IndexMismatch {
            shard_id,
            detail,
            temp_file_failed: false,
        }
    }
}

/// Rows of a `u64`-keyed table, walked beside the journal.
type Rows = Peekable<redb::Range<'static, u64, &'static [u8]>>;

/// One shard's index check in progress (see the module documentation for its steps).
pub(crate) struct IndexCheck {
    /// Which shard (named in every mismatch).
    shard_id: u32,
    /// The journal, for the entries erasures and slow-path rows name.
    journal: ReadOnlyTable<u64, &'static [u8]>,
    /// Personal records, for erasure checks and the slow path.
    personal: ReadOnlyTable<u64, &'static [u8]>,
    /// Personal records walked beside the journal (each gives its entry's subject key).
    personal_rows: Rows,
    /// Customer number → (customer id, secret subject key).
    secrets: HashMap<u32, (String, [u8; 32])>,
    /// Customer id → customer number.
    numbers: HashMap<String, u32>,
    /// Entries below `indexed_upto` have subject-tier rows; those at and above it were
    /// committed but not yet indexed (a server stopped by a crash): the next open indexes
    /// them, so no row may exist for them yet. Their personal records are checked all the
    /// same.
    indexed: u64,
    /// As `indexed`, for the customer tier (`customer_indexed_upto`, never above it).
    customer_indexed: u64,
    /// Counts so far.
    report: IndexReport,
    /// The key of this check's multiset digests (drawn at random for each check).
    key: MultisetKey,
    /// The walks of the `subjects` table (one, or two halves: [`IndexCheck::subjects_pass`]),
    /// whose claims the journal entries meet.
    walks: Vec<SubjectsWalk>,
    /// The first state problem, reported only after the history itself is proven.
    state_problem: Option<ClaimProblem>,
    /// The daily counters the journal implies, a day at a time.
    counters: DayTally,
    /// Digest of the time rows (runs) the journal implies.
    want_time: Multiset,
    /// The implied run not yet digested (the journal pass extends it).
    open_run: Option<TimeRun>,
    /// Consent entries the implied time rows cover.
    time_events: u64,
    /// Digest of the history rows the journal implies.
    want_history: Multiset,
    /// Digest of the erasure rows the journal implies.
    want_erasures: Multiset,
    /// Digest of the seqs of consent entries that have no personal record.
    missing_records: Multiset,
    /// Digest of the seqs erasure entries name.
    named_by_erasures: Multiset,
    /// Digest of the idempotency rows the journal implies.
    want_keys: Multiset,
    /// The seq the next fed entry must have.
    next_seq: u64,
}

/// Runs the whole index check of the snapshot `txn`: the side digests on a thread of their
/// own, the `subjects` walk (as `pass` says, holding at most `spill.bytes_per_pass` of
/// state claims in memory, the rest in `spill.temp_dir`), then `feed`, which must hand every journal entry to the check in order,
/// then the comparisons. `feed`'s error is the check's.
pub(crate) fn run(
    txn: &Snapshots,
    shard_id: u32,
    pass: SubjectsPass,
    spill: &ClaimSpill,
    feed: impl FnOnce(&mut IndexCheck) -> Result<(), IndexMismatch>,
) -> Result<IndexReport, IndexMismatch> {
    let key = MultisetKey::random()
        .map_err(|e| IndexMismatch::new(shard_id, format!("drawing the digest key: {e}")))?;
    std::thread::scope(|scope| {
        let side = scope.spawn(|| SideDigests::of(txn, key));
        let mut check = IndexCheck::open(txn, shard_id, key)?;
        check.subjects_pass(txn, pass, spill)?;
        feed(&mut check)?;
        let side = side.join().expect("the digest thread does not panic");
        let side = side.map_err(|e| check.io(e))?;
        check.finish(txn, side)
    })
}

impl IndexCheck {
    /// Opens the tables of `txn` and reads the customers; `key` keys the check's digests.
    fn open(txn: &Snapshots, shard_id: u32, key: MultisetKey) -> Result<IndexCheck, IndexMismatch> {
        let io = |e: StorageError| IndexMismatch::new(shard_id, format!("reading: {e}"));
        let secrets: HashMap<u32, (String, [u8; 32])> = txn
            .open_table(CUSTOMERS)
            .map_err(|e| io(e.into()))?
            .iter()
            .map_err(|e| io(e.into()))?
            .map(|r| r.map(|(k, v)| (v.value().0, (k.value().to_string(), *v.value().1))))
            .collect::<Result<_, _>>()
            .map_err(|e| io(e.into()))?;
        let numbers = secrets
            .iter()
            .map(|(n, (id, _))| (id.clone(), *n))
            .collect();
        let (indexed, customer_indexed) = read_indexed_upto(&txn.index).map_err(io)?;
        let personal = txn.open_table(PERSONAL).map_err(|e| io(e.into()))?;
        let personal_rows = personal.range::<u64>(..).map_err(|e| io(e.into()))?;
        Ok(IndexCheck {
            shard_id,
            journal: txn.open_table(JOURNAL).map_err(|e| io(e.into()))?,
            personal,
            personal_rows: personal_rows.peekable(),
            secrets,
            numbers,
            indexed,
            customer_indexed,
            report: IndexReport::default(),
            key,
            walks: Vec::new(),
            state_problem: None,
            counters: DayTally::default(),
            want_time: Multiset::default(),
            open_run: None,
            time_events: 0,
            want_history: Multiset::default(),
            want_erasures: Multiset::default(),
            missing_records: Multiset::default(),
            named_by_erasures: Multiset::default(),
            want_keys: Multiset::default(),
            next_seq: 0,
        })
    }

    fn bad(&self, detail: String) -> IndexMismatch {
        IndexMismatch::new(self.shard_id, detail)
    }

    fn io(&self, e: impl Into<StorageError>) -> IndexMismatch {
        self.bad(format!("reading: {}", e.into()))
    }

    /// One pass over the subjects table, on one thread or in two halves as `pass` says
    /// ([`walk_subjects`]): the digest of its history rows, the expiry rows its state rows
    /// imply, and their claims (met by the journal entries later; at most
    /// `spill.bytes_per_pass` of them held in memory at once). A state problem of the first half is
    /// reported before one of the second.
    fn subjects_pass(
        &mut self,
        txn: &Snapshots,
        pass: SubjectsPass,
        spill: &ClaimSpill,
    ) -> Result<(), IndexMismatch> {
        let customers: Vec<u32> = self.secrets.keys().copied().collect();
        let walks =
            walk_subjects(txn, pass, &customers, self.key, spill).map_err(|e| self.io(e))?;
        for mut walk in walks {
            self.report.history_rows += walk.have_history.count();
            self.report.state_rows += walk.state_rows;
            self.report.spilled_claims += walk.claims.spilled();
            if self.state_problem.is_none() {
                self.state_problem = walk.state_problem.take();
            }
            self.walks.push(walk);
        }
        Ok(())
    }

    /// Meets the claims of both walks that name entry `e`.
    fn check_claims(&mut self, e: &EntryView<'_>) {
        for walk in &mut self.walks {
            if self.state_problem.is_none() {
                self.state_problem = walk.claims.check_entry(e.seq, e).err();
            }
        }
    }

    /// Takes the next journal entry's canonical bytes (see [`IndexCheck::entry`]).
    pub(crate) fn entry_bytes(&mut self, bytes: &[u8]) -> Result<(), IndexMismatch> {
        let e = EntryView::decode(bytes)
            .map_err(|err| self.bad(format!("entry {}: {err}", self.next_seq)))?;
        self.entry(bytes, &e)
    }

    /// Takes the next journal entry, in seq order from 0, after
    /// [`IndexCheck::subjects_pass`]: its personal record, and below each tier's
    /// `indexed_upto` what it implies for that tier.
    fn entry(&mut self, bytes: &[u8], e: &EntryView<'_>) -> Result<(), IndexMismatch> {
        assert_eq!(e.seq, self.next_seq, "entries are fed in journal order");
        self.next_seq += 1;
        let indexed = e.seq < self.indexed;
        let customer_indexed = e.seq < self.customer_indexed;
        let c = *self
            .numbers
            .get(e.customer_id)
            .ok_or_else(|| self.bad(format!("entry {}: customer has no number", e.seq)))?;
        let Some(consent) = e.consent() else {
            return self.erasure_entry(e, c, indexed, customer_indexed);
        };
        let stored = self.personal_record(e.seq, consent)?;
        // Opened above, so at least its salt long: the record is what follows it.
        let record = stored.as_ref().map(|v| &v.value()[HASH_LEN..]);
        if let Some(key) = consent.idempotency_key {
            let digest = record.map_or(Hash::ZERO, |r| {
                stored_request_digest(e, bytes, r).expect("a consent entry")
            });
            self.want_keys
                .add(self.key, &key_row(c, e.seq, &digest.0, key.as_bytes()));
        }
        if customer_indexed {
            self.time_run(c, e.recorded_at_ms, e.seq);
            let day = e.recorded_at_ms.div_euclid(MS_PER_DAY);
            let shard_id = self.shard_id;
            let day_counts = self.counters.of(self.key, c, day).ok_or_else(|| {
                let detail = format!(
                    "entry {}: recorded_at goes back in time from an earlier entry",
                    e.seq
                );
                IndexMismatch::new(shard_id, detail)
            })?;
            for (p, choice) in consent.purposes.iter_bytes() {
                tally(day_counts, p, choice);
            }
        }
        if !indexed {
            return Ok(());
        }
        self.check_claims(e);
        self.report.entries += 1;
        if let Some(record) = record {
            let id = PersonalRecord::decode_subject_id(record)
                .map_err(|err| self.bad(format!("personal record {}: {err}", e.seq)))?;
            let subject = subject_key(&self.secrets[&c].1, id);
            self.want_history
                .add(self.key, &history_row(c, &subject.0, e.seq));
        }
        Ok(())
    }

    /// Puts consent entry `seq` into the run of time rows the journal implies, digesting
    /// the run it ends.
    fn time_run(&mut self, c: u32, recorded_at_ms: i64, seq: u64) {
        if let Some(ended) = TimeRun::push(&mut self.open_run, c, recorded_at_ms, seq) {
            self.digest_time_run(ended);
        }
    }

    /// Digests the open run of implied time rows, if any.
    fn close_time_run(&mut self) {
        if let Some(run) = self.open_run.take() {
            self.digest_time_run(run);
        }
    }

    /// Digests one implied time row.
    fn digest_time_run(&mut self, run: TimeRun) {
        let row = time_row(run.customer, run.recorded_at_ms, run.first, run.last);
        self.want_time.add(self.key, &row);
        self.time_events += run.last - run.first + 1;
    }

    /// An erasure entry: what it names must be gone, and (below `customer_indexed_upto`)
    /// it has its erasure index row.
    fn erasure_entry(
        &mut self,
        e: &EntryView<'_>,
        c: u32,
        indexed: bool,
        customer_indexed: bool,
    ) -> Result<(), IndexMismatch> {
        if indexed {
            self.report.entries += 1;
            self.check_claims(e);
        }
        if customer_indexed {
            self.want_erasures.add(self.key, &erasure_row(c, e.seq));
        }
        let erasure = e
            .erasure()
            .expect("an entry that is not a consent is an erasure");
        for seq in erasure.erased_seqs() {
            self.named_by_erasures.add(self.key, &seq.to_be_bytes());
        }
        check_erasure(e, &self.journal, &self.personal).map_err(|d| self.bad(d))
    }

    /// Meets consent entry `seq`'s stored personal record (`salt ‖ record`) in the walk
    /// beside the journal (seqs only grow): it must open the entry's commitment. `None`
    /// when it is gone (then an erasure entry must name the entry).
    fn personal_record(
        &mut self,
        seq: u64,
        consent: &ConsentView<'_>,
    ) -> Result<Option<redb::AccessGuard<'static, &'static [u8]>>, IndexMismatch> {
        let Some(stored) = self.next_personal_row(seq)? else {
            self.missing_records.add(self.key, &seq.to_be_bytes());
            return Ok(None);
        };
        let opens = stored
            .value()
            .split_first_chunk::<HASH_LEN>()
            .is_some_and(|(salt, record)| {
                personal_commitment(salt, record) == consent.personal_commitment
            });
        if !opens {
            return Err(self.bad(format!(
                "the personal record of entry {seq} does not open the entry's commitment (the record or its salt was changed)"
            )));
        }
        self.report.personal_records += 1;
        Ok(Some(stored))
    }

    /// The stored personal record of `seq`, if any: rows before it belong to no consent
    /// entry (each consent entry takes its own as the journal is fed), which is a mismatch.
    fn next_personal_row(
        &mut self,
        seq: u64,
    ) -> Result<Option<redb::AccessGuard<'static, &'static [u8]>>, IndexMismatch> {
        match self
            .personal_rows
            .next_if(|row| !matches!(row, Ok((k, _)) if k.value() > seq))
        {
            None => Ok(None),
            Some(Ok((k, v))) if k.value() == seq => Ok(Some(v)),
            Some(Ok((k, _))) => Err(self.orphan_record(k.value())),
            Some(Err(e)) => Err(self.io(e)),
        }
    }

    /// Names personal record `seq`, which no consent entry of the journal has.
    fn orphan_record(&self, seq: u64) -> IndexMismatch {
        self.bad(format!(
            "personal record {seq} belongs to no consent entry of the journal"
        ))
    }

    /// Compares what the journal implied with the stored rows; `side` holds the digests of
    /// the time, expiry, erasure and idempotency indexes ([`SideDigests::of`]).
    fn finish(mut self, txn: &Snapshots, side: SideDigests) -> Result<IndexReport, IndexMismatch> {
        self.close_time_run();
        self.check_personal_records_end()?;
        for walk in &self.walks {
            if self.state_problem.is_none() {
                self.state_problem = walk.claims.finish_pass().err();
            }
        }
        let mut have_history = Multiset::default();
        let mut want_expiries = Multiset::default();
        for walk in &self.walks {
            have_history.merge(&walk.have_history);
            want_expiries.merge(&walk.want_expiries);
        }
        // Fast path: the multiset digests of the rows the journal implies and of the rows
        // stored must agree; only when they differ are rows looked up one by one to name
        // the first bad one.
        let fast_ok = side.time == self.want_time && have_history == self.want_history;
        if !fast_ok {
            self.name_bad_time_or_history_row(txn, &side)?;
        }
        self.report.time_rows = side.time_events;
        // After the time rows: naming a bad counter recounts its day from them.
        self.counters.close(self.key);
        self.report.counters = side.counters.count();
        if side.counters != self.counters.want {
            return Err(self.name_bad_counter(txn));
        }
        match self.state_problem.take() {
            Some(ClaimProblem::Mismatch(detail)) => return Err(self.bad(detail)),
            Some(ClaimProblem::TempFile(detail)) => {
                return Err(IndexMismatch {
                    temp_file_failed: true,
                    ..self.bad(detail)
                });
            }
            None => {}
        }
        self.report.expiry_rows = side.expiries.count();
        if side.expiries != want_expiries {
            return Err(self.bad(format!(
                "the expiry index holds {} rows; the current states imply {} others",
                side.expiries.count(),
                want_expiries.count()
            )));
        }
        self.report.idempotency_rows = side.keys.count();
        if side.keys != self.want_keys {
            return Err(self.name_bad_idempotency_row(txn, side.keys.count()));
        }
        self.report.erasure_rows = side.erasures.count();
        if side.erasures != self.want_erasures {
            return Err(self.bad(format!(
                "the erasure index holds {} rows for {} erasure entries, or other rows",
                side.erasures.count(),
                self.want_erasures.count()
            )));
        }
        Ok(self.report)
    }

    /// The slow path, when the idempotency rows differ from what the journal implies: names
    /// the first row that does not point at an entry of its customer carrying its key, or
    /// whose request digest is not the entry's (zero once erased), or else the count.
    fn name_bad_idempotency_row(&self, txn: &Snapshots, stored_rows: u64) -> IndexMismatch {
        let walked = (|| -> Result<Option<String>, StorageError> {
            for row in txn.open_table(IDEMPOTENCY)?.iter()? {
                let (k, v) = row?;
                let ((c, key), (seq, digest)) = (k.value(), v.value());
                let named = self.journal.get(seq)?;
                let entry = named.as_ref().map(|v| EntryView::decode(v.value()));
                let carries = matches!(&entry, Some(Ok(e)) if self.numbers.get(e.customer_id) == Some(&c)
                    && e.consent().and_then(|x| x.idempotency_key) == Some(key));
                if !carries {
                    return Ok(Some(format!(
                        "idempotency key row of customer number {c} points at entry {seq}, which does not carry that key"
                    )));
                }
                let stored = self.personal.get(seq)?;
                let record = stored.as_ref().and_then(|v| v.value().get(HASH_LEN..));
                let want = match (&entry, &named, record) {
                    (Some(Ok(e)), Some(bytes), Some(record)) => {
                        stored_request_digest(e, bytes.value(), record).expect("a consent entry")
                    }
                    _ => Hash::ZERO,
                };
                if want.0 != *digest {
                    let why = if want == Hash::ZERO {
                        "zero: the entry was erased"
                    } else {
                        "recomputed from the entry and its personal record"
                    };
                    return Ok(Some(format!(
                        "idempotency key row of customer number {c} for entry {seq} holds a request digest other than the entry's ({why})"
                    )));
                }
            }
            Ok(None)
        })();
        match walked {
            Err(e) => self.io(e),
            Ok(Some(detail)) => self.bad(detail),
            Ok(None) => self.bad(format!(
                "the idempotency index holds {stored_rows} rows where the journal implies {}",
                self.want_keys.count()
            )),
        }
    }

    /// After the whole journal: no personal record is left unmet, and the consent entries
    /// without one are exactly those the erasure entries name (each once).
    fn check_personal_records_end(&mut self) -> Result<(), IndexMismatch> {
        match self.personal_rows.next() {
            Some(Ok((k, _))) => return Err(self.orphan_record(k.value())),
            Some(Err(e)) => return Err(self.io(e)),
            None => {}
        }
        self.report.erased_entries = self.missing_records.count();
        if self.missing_records == self.named_by_erasures {
            return Ok(());
        }
        Err(self.name_unerased_missing_record())
    }

    /// The slow path, when the consent entries without a personal record are not exactly
    /// those erasure entries name: walks the journal again to name the first such entry
    /// (memory: one seq per erased entry, on this failure path only).
    fn name_unerased_missing_record(&self) -> IndexMismatch {
        let mut named = std::collections::HashSet::new();
        let mut missing = Vec::new();
        let walked = (|| -> Result<(), StorageError> {
            for row in self.journal.iter()? {
                let (k, v) = row?;
                let Ok(e) = EntryView::decode(v.value()) else {
                    continue; // named by the chain walk
                };
                if let Some(erasure) = e.erasure() {
                    for seq in erasure.erased_seqs() {
                        if !named.insert(seq) {
                            return Err(StorageError::Corrupt {
                                table: "journal",
                                detail: format!(
                                    "entry {seq} is named by two erasure entries (the second is {})",
                                    k.value()
                                ),
                            });
                        }
                    }
                } else if self.personal.get(k.value())?.is_none() {
                    missing.push(k.value());
                }
            }
            Ok(())
        })();
        if let Err(e) = walked {
            return self.io(e);
        }
        match missing.iter().find(|seq| !named.contains(seq)) {
            Some(seq) => self.bad(format!(
                "entry {seq} has no personal record, and no erasure entry names it (the record was deleted outside an erasure)"
            )),
            None => self.bad(format!(
                "{} consent entries lack their personal record, but erasure entries name {}",
                self.missing_records.count(),
                self.named_by_erasures.count()
            )),
        }
    }

    fn owner(&self, c: u32) -> Result<&str, IndexMismatch> {
        self.secrets
            .get(&c)
            .map(|(id, _)| id.as_str())
            .ok_or_else(|| self.bad(format!("index row of unknown customer number {c}")))
    }

    /// The slow path, when the stored daily counters differ from what the journal implies
    /// (the time rows are proven by then): names the first stored counter that differs
    /// from its day's recount (or that no event implies), else the first implied counter
    /// that is missing. Memory: one customer-day's counters at a time.
    fn name_bad_counter(&self, txn: &Snapshots) -> IndexMismatch {
        let named = (|| -> Result<Option<String>, IndexMismatch> {
            let times = txn.open_table(CUSTOMER_EVENTS).map_err(|e| self.io(e))?;
            let mut day: Option<((u32, i64), DayCounts)> = None;
            let stored = txn.open_table(DAILY_COUNTS).map_err(|e| self.io(e))?;
            for row in stored.iter().map_err(|e| self.io(e))? {
                let (k, v) = row.map_err(|e| self.io(e))?;
                let (c, d, p) = k.value();
                if day.as_ref().is_none_or(|(at, _)| *at != (c, d)) {
                    day = Some(((c, d), self.recount(&times, c, d)?));
                }
                let counts = &day.as_ref().expect("set above").1;
                let want = counts.iter().find(|(name, _)| name == p).map(|(_, n)| *n);
                if want != Some(v.value()) {
                    return Ok(Some(format!(
                        "daily counter ({}, day {d}, {p}) is {:?}, the journal says {want:?}",
                        self.owner(c)?,
                        v.value()
                    )));
                }
            }
            let mut last = None;
            for row in times.iter().map_err(|e| self.io(e))? {
                let (c, t, _) = row.map_err(|e| self.io(e))?.0.value();
                let d = t.div_euclid(MS_PER_DAY);
                if last.replace((c, d)) == Some((c, d)) {
                    continue;
                }
                for (p, _) in self.recount(&times, c, d)? {
                    if stored
                        .get((c, d, p.as_str()))
                        .map_err(|e| self.io(e))?
                        .is_none()
                    {
                        return Ok(Some(format!(
                            "daily counter ({}, day {d}, {p}) is missing",
                            self.owner(c)?
                        )));
                    }
                }
            }
            Ok(None)
        })();
        match named {
            Err(e) => e,
            Ok(Some(detail)) => self.bad(detail),
            Ok(None) => self.bad(format!(
                "the daily counters hold {} rows where the journal implies {}, or other values",
                self.report.counters,
                self.counters.want.count()
            )),
        }
    }

    /// The counters of customer `c` on UTC day `day`, recounted from its time rows (proven
    /// equal to the journal's before this is called) and the entries they name.
    fn recount(
        &self,
        times: &ReadOnlyTable<(u32, i64, u64), u64>,
        c: u32,
        day: i64,
    ) -> Result<DayCounts, IndexMismatch> {
        let from = day.saturating_mul(MS_PER_DAY);
        let to = from.saturating_add(MS_PER_DAY - 1);
        let mut counts = DayCounts::new();
        let mut seqs = Vec::new();
        for row in times
            .range((c, from, 0)..=(c, to, u64::MAX))
            .map_err(|e| self.io(e))?
        {
            let (k, last) = row.map_err(|e| self.io(e))?;
            seqs.extend(run_seqs(k.value().2, last.value()));
        }
        for seq in seqs {
            let bytes = self
                .journal
                .get(seq)
                .map_err(|e| self.io(e))?
                .ok_or_else(|| self.bad(format!("a time row points at missing entry {seq}")))?;
            let e = EntryView::decode(bytes.value())
                .map_err(|err| self.bad(format!("entry {seq}: {err}")))?;
            for (p, choice) in e.consent().iter().flat_map(|c| c.purposes.iter_bytes()) {
                tally(&mut counts, p, choice);
            }
        }
        Ok(counts)
    }

    /// The slow path, when the digests of the time or history rows differ: looks the rows
    /// up one by one to name the first bad one. Always fails.
    fn name_bad_time_or_history_row(
        &self,
        txn: &Snapshots,
        side: &SideDigests,
    ) -> Result<(), IndexMismatch> {
        let entry_at = |seq: u64| -> Result<Entry, IndexMismatch> {
            let v = self
                .journal
                .get(seq)
                .map_err(|e| self.io(e))?
                .ok_or_else(|| self.bad(format!("an index points at missing entry {seq}")))?;
            Entry::decode(v.value()).map_err(|e| self.bad(format!("entry {seq}: {e}")))
        };
        let mut time_events = 0u64;
        let times = txn.open_table(CUSTOMER_EVENTS).map_err(|e| self.io(e))?;
        for row in times.iter().map_err(|e| self.io(e))? {
            let (k, last) = row.map_err(|e| self.io(e))?;
            let (c, t, first) = k.value();
            for seq in run_seqs(first, last.value()) {
                let e = entry_at(seq)?;
                if e.customer_id != self.owner(c)? || e.recorded_at_ms != t || e.consent().is_none()
                {
                    return Err(self.bad(format!(
                        "time index row for entry {seq} disagrees with the entry"
                    )));
                }
                time_events += 1;
            }
        }
        if time_events != self.time_events {
            return Err(self.bad(format!(
                "time index covers {time_events} entries for {} consent entries",
                self.time_events
            )));
        }
        if side.time != self.want_time {
            return Err(self.bad(
                "time index rows split or join runs of entries otherwise than the journal does (each row is the longest run of one customer's consent entries recorded in one millisecond)".into(),
            ));
        }
        let mut history_rows = 0u64;
        let subjects = txn.open_table(SUBJECTS).map_err(|e| self.io(e))?;
        for row in subjects.iter().map_err(|e| self.io(e))? {
            let (key, value) = row.map_err(|e| self.io(e))?;
            let (c, _, seq) = key.value();
            let Some(seq) = row_event(seq, value.value()).map_err(|e| self.io(e))? else {
                continue;
            };
            let has_record = self.personal.get(seq).map_err(|e| self.io(e))?.is_some();
            if entry_at(seq)?.customer_id != self.owner(c)? || !has_record {
                return Err(self.bad(format!(
                    "subject history row for entry {seq} has no matching entry or personal record"
                )));
            }
            history_rows += 1;
        }
        Err(self.bad(format!(
            "the subject history index holds {history_rows} rows where the journal implies {}, or rows that no entry implies",
            self.want_history.count()
        )))
    }
}

/// Checks that every entry erasure `e` names is an earlier consent entry of the same
/// customer whose personal record is gone.
fn check_erasure(
    e: &EntryView<'_>,
    journal: &ReadOnlyTable<u64, &'static [u8]>,
    personal: &ReadOnlyTable<u64, &'static [u8]>,
) -> Result<(), String> {
    let erasure = e.erasure().expect("called for erasure entries");
    for seq in erasure.erased_seqs() {
        let named = journal.get(seq).map_err(|err| format!("reading: {err}"))?;
        let ok = named.as_ref().is_some_and(|v| {
            matches!(EntryView::decode(v.value()), Ok(n) if n.consent().is_some() && n.customer_id == e.customer_id)
        });
        if !ok {
            return Err(format!(
                "erasure entry {} names entry {seq}, which is not a consent event of its customer",
                e.seq
            ));
        }
        if personal
            .get(seq)
            .map_err(|err| format!("reading: {err}"))?
            .is_some()
        {
            return Err(format!(
                "erasure entry {} names entry {seq}, whose personal record is still stored",
                e.seq
            ));
        }
    }
    Ok(())
}

/// Digests of the stored rows of the time, expiry, erasure, idempotency and counter indexes, computed
/// on a thread of their own beside the journal pass of the index check.
#[derive(Default)]
struct SideDigests {
    /// The time index rows (runs).
    time: Multiset,
    /// Entries the time index rows cover.
    time_events: u64,
    /// The expiry index rows.
    expiries: Multiset,
    /// The erasure index rows.
    erasures: Multiset,
    /// The idempotency rows.
    keys: Multiset,
    /// The daily counter rows.
    counters: Multiset,
}

impl SideDigests {
    /// Walks the five tables of `txn`, digesting under `key`.
    fn of(txn: &Snapshots, key: MultisetKey) -> Result<SideDigests, StorageError> {
        let mut d = SideDigests::default();
        for row in txn.open_table(CUSTOMER_EVENTS)?.iter()? {
            let (k, last) = row?;
            let ((c, t, first), last) = (k.value(), last.value());
            d.time.add(key, &time_row(c, t, first, last));
            d.time_events = d.time_events.saturating_add(run_len(first, last));
        }
        for row in txn.open_table(EXPIRIES)?.iter()? {
            let (k, v) = row?;
            let (c, at, seq) = k.value();
            d.expiries.add(key, &expiry_key(c, at, seq, v.value()));
        }
        for row in txn.open_table(ERASURES)?.iter()? {
            let (c, seq) = row?.0.value();
            d.erasures.add(key, &erasure_row(c, seq));
        }
        for row in txn.open_table(IDEMPOTENCY)?.iter()? {
            let (k, v) = row?;
            let ((c, idempotency_key), (seq, digest)) = (k.value(), v.value());
            d.keys
                .add(key, &key_row(c, seq, digest, idempotency_key.as_bytes()));
        }
        for row in txn.open_table(DAILY_COUNTS)?.iter()? {
            let (k, v) = row?;
            let (c, day, purpose) = k.value();
            d.counters
                .add(key, &counter_row(c, day, purpose, v.value()));
        }
        Ok(d)
    }
}

/// A multiset digest: the sum (mod 2^128) of a keyed 128-bit hash of each member, and how
/// many members were added. Equal multisets give equal digests in any order. The key is drawn at random for each check,
/// after the file was written, so whoever wrote the file cannot compute members' hashes:
/// with an unkeyed hash, a generalised-birthday search could find rows whose hashes cancel
/// a change out; with a secret key, any missing, extra or changed member leaves the digest
/// equal with probability about 2^-128.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Multiset {
    /// The sum of the members' hashes.
    sum: u128,
    /// How many members.
    count: u64,
}

impl Multiset {
    /// Adds `member` under `key`.
    pub(super) fn add(&mut self, key: MultisetKey, member: &[u8]) {
        let mut h = SipHasher24::new_with_keys(key.0[0], key.0[1]);
        h.write(member);
        let h = h.finish128();
        self.sum = self
            .sum
            .wrapping_add((u128::from(h.h1) << 64) | u128::from(h.h2));
        self.count += 1;
    }

    /// Adds every member of `other` (digested under the same key).
    fn merge(&mut self, other: &Multiset) {
        self.sum = self.sum.wrapping_add(other.sum);
        self.count += other.count;
    }

    /// How many members were added.
    pub(super) fn count(&self) -> u64 {
        self.count
    }
}

/// The secret key of one check's multiset digests (SipHash-2-4, a pseudo-random function
/// under a secret key, and on rows of 12 to 52 bytes several times cheaper than blake3).
#[derive(Debug, Clone, Copy)]
pub(super) struct MultisetKey([u64; 2]);

impl MultisetKey {
    /// A fresh key from the system's random source.
    fn random() -> Result<MultisetKey, StorageError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| StorageError::Random(e.to_string()))?;
        let (k0, k1) = bytes.split_at(8);
        Ok(MultisetKey([
            u64::from_le_bytes(k0.try_into().expect("8 bytes")),
            u64::from_le_bytes(k1.try_into().expect("8 bytes")),
        ]))
    }
}

/// An idempotency row as the check digests it: customer number, seq, request digest
/// (zero once the entry was erased), then the key's bytes.
fn key_row(c: u32, seq: u64, digest: &[u8; 32], key: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(44 + key.len());
    row.extend_from_slice(&c.to_be_bytes());
    row.extend_from_slice(&seq.to_be_bytes());
    row.extend_from_slice(digest);
    row.extend_from_slice(key);
    row
}

/// The daily counters the journal implies, one day at a time. Entries come in journal order
/// and `recorded_at_ms` never decreases along a shard's journal (the chain check enforces
/// it), so once an entry of a later day comes, the earlier day's counters are final: they
/// go into a digest and are dropped. Memory: the counters of one day, however old the
/// ledger.
#[derive(Default)]
struct DayTally {
    /// The UTC day being counted (`None` before the first entry).
    day: Option<i64>,
    /// That day's counters so far, per customer number.
    counts: HashMap<u32, DayCounts>,
    /// Digest of the counter rows of the days already closed.
    want: Multiset,
}

impl DayTally {
    /// Customer `c`'s counters of `day`, closing the day before when `day` is later; `None`
    /// when `day` is earlier than the day being counted.
    fn of(&mut self, key: MultisetKey, c: u32, day: i64) -> Option<&mut DayCounts> {
        match self.day {
            Some(open) if day < open => return None,
            Some(open) if day > open => self.close(key),
            _ => {}
        }
        self.day = Some(day);
        Some(self.counts.entry(c).or_default())
    }

    /// Digests the open day's counters and drops them.
    fn close(&mut self, key: MultisetKey) {
        let Some(day) = self.day else { return };
        for (c, counts) in self.counts.drain() {
            for (purpose, n) in counts {
                self.want.add(key, &counter_row(c, day, &purpose, n));
            }
        }
    }
}

/// A daily counter row as the check digests it: customer number, day, granted, denied,
/// then the purpose's name.
fn counter_row(c: u32, day: i64, purpose: &str, (granted, denied): (u64, u64)) -> Vec<u8> {
    let mut row = Vec::with_capacity(28 + purpose.len());
    row.extend_from_slice(&c.to_be_bytes());
    row.extend_from_slice(&day.to_be_bytes());
    row.extend_from_slice(&granted.to_be_bytes());
    row.extend_from_slice(&denied.to_be_bytes());
    row.extend_from_slice(purpose.as_bytes());
    row
}

fn erasure_row(c: u32, seq: u64) -> [u8; 12] {
    let mut row = [0u8; 12];
    row[..4].copy_from_slice(&c.to_be_bytes());
    row[4..].copy_from_slice(&seq.to_be_bytes());
    row
}

pub(super) fn expiry_key(c: u32, at: i64, seq: u64, subject: &[u8; 32]) -> [u8; 52] {
    let mut row = [0u8; 52];
    row[..4].copy_from_slice(&c.to_be_bytes());
    row[4..12].copy_from_slice(&at.to_be_bytes());
    row[12..20].copy_from_slice(&seq.to_be_bytes());
    row[20..].copy_from_slice(subject);
    row
}

fn time_row(c: u32, t: i64, first: u64, last: u64) -> [u8; 28] {
    let mut b = [0u8; 28];
    b[..4].copy_from_slice(&c.to_be_bytes());
    b[4..12].copy_from_slice(&t.to_be_bytes());
    b[12..20].copy_from_slice(&first.to_be_bytes());
    b[20..].copy_from_slice(&last.to_be_bytes());
    b
}

/// How many entries a stored time run stands for, without walking it.
fn run_len(first: u64, last: u64) -> u64 {
    last.checked_sub(first).map_or(0, |d| d.saturating_add(1))
}

/// The entries a stored time run stands for (none when it is reversed: such a row covers
/// nothing, and the counts and digests then disagree).
fn run_seqs(first: u64, last: u64) -> std::ops::RangeInclusive<u64> {
    first..=last
}

pub(super) fn history_row(c: u32, subject: &[u8; 32], seq: u64) -> [u8; 44] {
    let mut b = [0u8; 44];
    b[..4].copy_from_slice(&c.to_be_bytes());
    b[4..36].copy_from_slice(subject);
    b[36..].copy_from_slice(&seq.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Choice;

    #[test]
    fn day_tally_holds_one_day_and_digests_what_a_whole_ledger_map_would() {
        // Proves: counting 3 customers over 1,000 days keeps at most one day's counters in
        // memory, gives the same digest as counting everything in one map and digesting
        // it at the end, and refuses a day earlier than the one being counted.
        let key = MultisetKey([7, 11]);
        let mut streamed = DayTally::default();
        let mut whole: std::collections::BTreeMap<(u32, i64), DayCounts> = Default::default();
        for day in 20_000..21_000i64 {
            for seq in 0..6u32 {
                let c = seq % 3;
                let purpose: &[u8] = if seq % 2 == 0 { b"ads" } else { b"analytics" };
                let choice = if (day + i64::from(seq)) % 3 == 0 {
                    Choice::Denied
                } else {
                    Choice::Granted
                };
                tally(
                    streamed.of(key, c, day).expect("days only grow"),
                    purpose,
                    choice,
                );
                tally(whole.entry((c, day)).or_default(), purpose, choice);
                assert!(streamed.counts.len() <= 3, "one day of three customers");
            }
        }
        streamed.close(key);
        let mut want = Multiset::default();
        for ((c, day), counts) in whole {
            for (purpose, n) in counts {
                want.add(key, &counter_row(c, day, &purpose, n));
            }
        }
        assert_eq!(want.count(), 1_000 * 6);
        assert_eq!(streamed.want, want);
        let mut tally_ = DayTally::default();
        assert!(tally_.of(key, 0, 5).is_some());
        assert!(
            tally_.of(key, 0, 4).is_none(),
            "a day back in time is refused"
        );
    }
}
