//! Secondary indexes: derived from the journal (and personal records), rebuildable.
//!
//! Everything here can be recomputed by replaying the journal; see
//! `IndexStore::open` (`index_file`).

use redb::{ReadableTable, Table};

use super::error::StorageError;
use crate::format::codec::{Reader, Writer};
use crate::format::{Choice, Entry};
use crate::hash::Hash;

/// Milliseconds in a UTC day, for the daily counters.
pub(crate) const MS_PER_DAY: i64 = 86_400_000;

/// A purpose's current value for one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeState {
    /// Purpose name.
    pub purpose: String,
    /// Latest choice.
    pub choice: Choice,
    /// Sequence number of the event that set it.
    pub seq: u64,
    /// When that event says the choice was made (Unix ms).
    pub occurred_at_ms: i64,
    /// When that choice lapses (Unix ms), if it does.
    pub expires_at_ms: Option<i64>,
}

/// Updates a subject's state (sorted by purpose) with the choices of `entry`, a later event
/// of the same subject: the one rule behind the stored current state and `asOf` replays.
/// Entries that are not consent events change nothing.
pub fn apply_to_state(states: &mut Vec<PurposeState>, entry: &Entry) {
    if let Some(facts) = ConsentFacts::of(entry) {
        apply_facts(states, &facts);
    }
}

/// What the indexes read of a consent entry: the whole entry (notice, jurisdiction, TCF
/// and GPP strings, hashes) is not needed, and the index writer's queue holds up to
/// `MAX_INDEX_LAG_ENTRIES` of these per shard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsentFacts<'a> {
    /// The entry's sequence number.
    pub(crate) seq: u64,
    /// When the ledger recorded it (Unix ms): the time index and the day's counters.
    pub(crate) recorded_at_ms: i64,
    /// When the event says the choices were made (Unix ms).
    pub(crate) occurred_at_ms: i64,
    /// When its grants lapse (Unix ms), if they do.
    pub(crate) expires_at_ms: Option<i64>,
    /// Its purposes and choices, sorted by name and distinct.
    pub(crate) purposes: FactPurposes<'a>,
}

/// An entry's purposes as the index reads them: a decoded entry's list, or the packed copy
/// the index writer's queue keeps ([`pack_purposes`]: one allocation per queued event
/// where a list took one per name and one for itself, 2.3 % of `batch`'s server CPU to
/// copy and 1.7 % to free on the index writer's thread, docs/benchmarks.md, session 31).
#[derive(Debug, Clone, Copy)]
pub(crate) enum FactPurposes<'a> {
    /// A decoded entry's list.
    Listed(&'a [(String, Choice)]),
    /// The text of [`pack_purposes`].
    Packed(&'a str),
}

/// `purposes` (sorted, distinct, validated names of at most 64 bytes) in one buffer: the
/// count, then per purpose the name's length, the name, the choice byte; count, lengths
/// and choice bytes are each one ASCII character (all below 128), so the buffer is a `str`
/// whose names read back as slices, without checking their UTF-8 again on every pass of
/// the index writer. Kept in memory only.
pub(crate) fn pack_purposes(purposes: FactPurposeIter<'_>) -> Box<str> {
    let ascii = |n: usize| {
        let b = u8::try_from(n).ok().filter(u8::is_ascii);
        char::from(b.expect("counts and name lengths are at most 64"))
    };
    let bytes: usize = purposes.clone().map(|(name, _)| name.len() + 2).sum();
    let mut out = String::with_capacity(1 + bytes);
    out.push(ascii(purposes.len()));
    for (name, choice) in purposes {
        out.push(ascii(name.len()));
        out.push_str(name);
        out.push(char::from(choice.to_byte()));
    }
    out.into_boxed_str()
}

impl<'a> FactPurposes<'a> {
    /// Names and choices in name order.
    pub(crate) fn iter(self) -> FactPurposeIter<'a> {
        match self {
            FactPurposes::Listed(list) => FactPurposeIter::Listed(list.iter()),
            FactPurposes::Packed(text) => FactPurposeIter::Packed {
                left: text.as_bytes()[0],
                rest: &text[1..],
            },
        }
    }

    /// Whether there are none.
    pub(crate) fn is_empty(self) -> bool {
        self.iter().len() == 0
    }
}

/// The iterator of [`FactPurposes::iter`].
#[derive(Clone)]
pub(crate) enum FactPurposeIter<'a> {
    /// Over a decoded list.
    Listed(std::slice::Iter<'a, (String, Choice)>),
    /// Over packed text: how many purposes are left, and their text.
    Packed { left: u8, rest: &'a str },
}

impl<'a> Iterator for FactPurposeIter<'a> {
    type Item = (&'a str, Choice);

    fn next(&mut self) -> Option<(&'a str, Choice)> {
        match self {
            FactPurposeIter::Listed(list) => list.next().map(|(n, c)| (n.as_str(), *c)),
            FactPurposeIter::Packed { left, rest } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                let len = usize::from(rest.as_bytes()[0]);
                let (name, tail) = rest[1..].split_at(len);
                let choice = Choice::from_byte(tail.as_bytes()[0]).expect("packed from a Choice");
                *rest = &tail[1..];
                Some((name, choice))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match self {
            FactPurposeIter::Listed(list) => list.len(),
            FactPurposeIter::Packed { left, .. } => usize::from(*left),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for FactPurposeIter<'_> {}

impl<'a> ConsentFacts<'a> {
    /// The facts of `entry`, or `None` for an erasure entry.
    pub(crate) fn of(entry: &'a Entry) -> Option<ConsentFacts<'a>> {
        let consent = entry.consent()?;
        Some(ConsentFacts {
            seq: entry.seq,
            recorded_at_ms: entry.recorded_at_ms,
            occurred_at_ms: consent.occurred_at_ms,
            expires_at_ms: consent.expires_at_ms,
            purposes: FactPurposes::Listed(&consent.purposes),
        })
    }
}

/// [`apply_to_state`] from the facts of a consent entry.
fn apply_facts(states: &mut Vec<PurposeState>, facts: &ConsentFacts<'_>) {
    for (purpose, choice) in facts.purposes.iter() {
        let new = PurposeState {
            purpose: purpose.to_string(),
            choice,
            seq: facts.seq,
            occurred_at_ms: facts.occurred_at_ms,
            expires_at_ms: facts.expires_at_ms,
        };
        match states.binary_search_by(|s| s.purpose.as_str().cmp(purpose)) {
            Ok(i) => states[i] = new,
            Err(i) => states.insert(i, new),
        }
    }
}

/// The encoded state a subject's first event gives it: what [`encode_state`] makes of
/// [`apply_facts`] on no state, without building the states (an entry's purposes are
/// sorted by name and distinct, as a state's are, and share the entry's seq and times: one
/// group).
fn encode_first_state(facts: &ConsentFacts<'_>) -> Vec<u8> {
    let names = facts.purposes.iter();
    assert!(
        names.clone().is_sorted_by(|a, b| a.0 < b.0),
        "an entry's purposes are sorted and distinct"
    );
    let mut w = Writer::with_capacity(32 + 16 * names.len());
    w.u32(1);
    let times = (facts.occurred_at_ms, facts.expires_at_ms);
    write_group(&mut w, facts.seq, times, names);
    w.buf
}

/// The expiry rows of the state a subject's first event gives it ([`expiry_rows`]): its
/// purposes share one seq and one lapse time, so one row when any is GRANTED and lapses.
fn first_expiry_rows(facts: &ConsentFacts<'_>) -> Vec<(i64, u64)> {
    facts
        .purposes
        .iter()
        .find_map(|(_, choice)| granted_expiry(choice, facts.expires_at_ms, facts.seq))
        .into_iter()
        .collect()
}

/// The state row's value (index layout 4, docs/design.md "State bytes"): the purposes
/// grouped by the event that set them, so that an event's seq and times are stored once.
pub(crate) fn encode_state(states: &[PurposeState]) -> Vec<u8> {
    let mut by_event: Vec<&PurposeState> = states.iter().collect();
    // Stable: the names of one event's group stay sorted.
    by_event.sort_by_key(|s| s.seq);
    let groups = by_event.chunk_by(|a, b| a.seq == b.seq);
    let mut w = Writer::with_capacity(32 * states.len() + 4);
    w.u32(u32::try_from(groups.clone().count()).expect("events per state fit in u32"));
    for group in groups {
        let first = group[0];
        let times = (first.occurred_at_ms, first.expires_at_ms);
        assert!(
            group
                .iter()
                .all(|s| (s.occurred_at_ms, s.expires_at_ms) == times),
            "the purposes one event set share its times"
        );
        let names = group.iter().map(|s| (s.purpose.as_str(), s.choice));
        write_group(&mut w, first.seq, times, names);
    }
    w.buf
}

/// One group of the state layout: u64 seq, i64 occurred_at_ms, opt i64 expires_at_ms,
/// u32 purpose count, then per purpose (sorted by name) short str name, u8 choice.
fn write_group<'p>(
    w: &mut Writer,
    seq: u64,
    (occurred_at_ms, expires_at_ms): (i64, Option<i64>),
    purposes: impl ExactSizeIterator<Item = (&'p str, Choice)>,
) {
    assert!(purposes.len() > 0, "a group names a purpose");
    w.u64(seq);
    w.i64(occurred_at_ms);
    w.opt_i64(expires_at_ms);
    w.u32(u32::try_from(purposes.len()).expect("purposes per event fit in u32"));
    for (name, choice) in purposes {
        w.short_str(name);
        w.u8(choice.to_byte());
    }
}

/// One purpose of a stored state with its name borrowed from the row: the audit reads every
/// state row, and owned names were a fifth of its `subjects` walk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredPurpose<'a> {
    /// Purpose name.
    pub(crate) purpose: &'a str,
    /// Latest choice.
    pub(crate) choice: Choice,
    /// Sequence number of the event that set it.
    pub(crate) seq: u64,
    /// When that event says the choice was made (Unix ms).
    pub(crate) occurred_at_ms: i64,
    /// When that choice lapses (Unix ms), if it does.
    pub(crate) expires_at_ms: Option<i64>,
}

/// Inverse of [`encode_state`].
pub(crate) fn decode_state(bytes: &[u8]) -> Result<Vec<PurposeState>, StorageError> {
    Ok(decode_state_view(bytes)?
        .into_iter()
        .map(|s| PurposeState {
            purpose: s.purpose.to_string(),
            choice: s.choice,
            seq: s.seq,
            occurred_at_ms: s.occurred_at_ms,
            expires_at_ms: s.expires_at_ms,
        })
        .collect())
}

/// Inverse of [`encode_state`], borrowing the purpose names from `bytes`; sorted by name.
pub(crate) fn decode_state_view(bytes: &[u8]) -> Result<Vec<StoredPurpose<'_>>, StorageError> {
    let corrupt = |detail: String| StorageError::Corrupt {
        table: "current_state",
        detail,
    };
    let decode = |e: crate::format::DecodeError| corrupt(e.to_string());
    let mut r = Reader::new(bytes);
    let groups = r.u32().map_err(decode)?;
    let mut out = Vec::new();
    let mut previous_seq = None;
    for _ in 0..groups {
        let seq = r.u64().map_err(decode)?;
        let occurred_at_ms = r.i64().map_err(decode)?;
        let expires_at_ms = r.opt_i64("expires_at_ms").map_err(decode)?;
        let count = r.u32().map_err(decode)?;
        if count == 0 || previous_seq >= Some(seq) {
            return Err(corrupt(format!("an empty or unordered group (seq {seq})")));
        }
        previous_seq = Some(seq);
        let group_start = out.len();
        for _ in 0..count {
            let purpose = r.short_str_ref().map_err(decode)?;
            let b = r.u8().map_err(decode)?;
            let choice = Choice::from_byte(b).ok_or_else(|| corrupt(format!("choice byte {b}")))?;
            out.push(StoredPurpose {
                purpose,
                choice,
                seq,
                occurred_at_ms,
                expires_at_ms,
            });
        }
        if !out[group_start..].is_sorted_by(|a, b| a.purpose < b.purpose) {
            return Err(corrupt(format!("unsorted purpose names (seq {seq})")));
        }
    }
    r.finish().map_err(decode)?;
    if groups > 1 {
        out.sort_unstable_by(|a, b| a.purpose.cmp(b.purpose));
        if !out.is_sorted_by(|a, b| a.purpose < b.purpose) {
            return Err(corrupt("a purpose named by two groups".to_string()));
        }
    }
    Ok(out)
}

/// Key of a subject's current-state row in the `subjects` table: after every history row
/// of the subject (history rows are keyed by entry seq, which never reaches `u64::MAX`), so
/// the state and the newest history row usually share a B-tree page.
pub(crate) const STATE_ROW: u64 = u64::MAX;

/// A subject's current state from the `subjects` table of a read or a write transaction
/// (empty when it has none).
pub(crate) fn state_in(
    subjects: &impl ReadableTable<(u32, &'static [u8; 32], u64), &'static [u8]>,
    customer: u32,
    subject: &[u8; 32],
) -> Result<Vec<PurposeState>, StorageError> {
    match subjects.get((customer, subject, STATE_ROW))? {
        Some(v) => decode_state(v.value()),
        None => Ok(Vec::new()),
    }
}

/// The seq of the event a state stands for without a history row of its own (index layout
/// 2): the greatest seq the state names. Every consent event that sets a purpose sets it to
/// its own seq, and a subject's events apply in seq order, so this is the subject's latest
/// such event. `None` for no state.
pub(crate) fn latest_seq(states: &[impl Expiring]) -> Option<u64> {
    states.iter().map(Expiring::seq).max()
}

/// The event a `subjects` row (key seq `seq`, value `value`) stands for: a history row's own
/// seq, or the latest event of a state row (index layout 2; `None` for a state that names
/// no purpose).
pub(crate) fn row_event(seq: u64, value: &[u8]) -> Result<Option<u64>, StorageError> {
    match seq {
        STATE_ROW => Ok(latest_seq(&decode_state_view(value)?)),
        seq => Ok(Some(seq)),
    }
}

/// [`latest_seq`] of the subject's stored state row, if it has one.
pub(crate) fn latest_in(
    subjects: &impl ReadableTable<(u32, &'static [u8; 32], u64), &'static [u8]>,
    customer: u32,
    subject: &[u8; 32],
) -> Result<Option<u64>, StorageError> {
    match subjects.get((customer, subject, STATE_ROW))? {
        Some(v) => Ok(latest_seq(&decode_state_view(v.value())?)),
        None => Ok(None),
    }
}

/// Every event of a subject, oldest first, at most `limit`: its history rows, and the
/// latest event its state stands for ([`latest_in`]) in its place among them.
pub(crate) fn subject_seqs(
    subjects: &impl ReadableTable<(u32, &'static [u8; 32], u64), &'static [u8]>,
    customer: u32,
    subject: &[u8; 32],
    limit: usize,
) -> Result<Vec<u64>, StorageError> {
    let latest = latest_in(subjects, customer, subject)?;
    let rows = subjects
        .range((customer, subject, 0)..(customer, subject, STATE_ROW))?
        .map(|r| r.map(|(k, _)| k.value().2));
    let seqs = WithLatest::new(rows, latest, false).take(limit);
    Ok(seqs.collect::<Result<_, _>>()?)
}

/// A subject's history rows (seqs, ascending or `descending`), with its latest event (which
/// has no row: the state row stands for it, index layout 2) in its place among them.
pub(crate) struct WithLatest<I: Iterator> {
    /// The history rows' seqs, in order.
    rows: std::iter::Peekable<I>,
    /// The latest event, until it is yielded.
    latest: Option<u64>,
    /// Whether `rows` come newest first.
    descending: bool,
}

impl<I: Iterator<Item = Result<u64, redb::StorageError>>> WithLatest<I> {
    pub(crate) fn new(rows: I, latest: Option<u64>, descending: bool) -> WithLatest<I> {
        WithLatest {
            rows: rows.peekable(),
            latest,
            descending,
        }
    }
}

impl<I: Iterator<Item = Result<u64, redb::StorageError>>> Iterator for WithLatest<I> {
    type Item = Result<u64, redb::StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(latest) = self.latest {
            let first = match self.rows.peek() {
                None => true,
                Some(Err(_)) => false,
                Some(Ok(row)) if self.descending => latest > *row,
                Some(Ok(row)) => latest < *row,
            };
            if first {
                self.latest = None;
                return Some(Ok(latest));
            }
        }
        self.rows.next()
    }
}

/// One (customer, day)'s counters: (purpose, (granted, denied)), a handful each, so a
/// short list beats a map keyed by copied names.
pub(crate) type DayCounts = Vec<(String, (u64, u64))>;

/// Pending counter increments of one index transaction, by (customer, day).
pub(crate) type PendingCounts = std::collections::BTreeMap<(u32, i64), DayCounts>;

/// Counts one `choice` of the purpose named `purpose` (UTF-8 bytes) in `day`; the name is
/// copied only the first time the day sees it. The index step and the audit's recount of
/// the counters both count through here.
pub(crate) fn tally(day: &mut DayCounts, purpose: &[u8], choice: Choice) {
    let i = match day.iter().position(|(name, _)| name.as_bytes() == purpose) {
        Some(i) => i,
        None => {
            day.push((String::from_utf8_lossy(purpose).into_owned(), (0, 0)));
            day.len() - 1
        }
    };
    let slot = &mut day[i].1;
    match choice {
        Choice::Granted => slot.0 += 1,
        Choice::Denied => slot.1 += 1,
    }
}

/// The index tables open in one write transaction.
pub(crate) struct IndexTables<'t> {
    /// History rows `(customer, subject, seq) → []` of every event of a subject but its
    /// latest, and the state row `(customer, subject, STATE_ROW) → encoded state`, which
    /// stands for the latest ([`latest_seq`]).
    pub(crate) subjects: Table<'t, (u32, &'static [u8; 32], u64), &'static [u8]>,
    /// Runs `(customer, recorded_at_ms, first seq) → last seq` (see `CUSTOMER_EVENTS`).
    pub(crate) customer_events: Table<'t, (u32, i64, u64), u64>,
    pub(crate) daily_counts: Table<'t, (u32, i64, &'static str), (u64, u64)>,
    pub(crate) erasures: Table<'t, (u32, u64), ()>,
    /// `(customer, expires_at_ms, seq of the granting event) → subject key`.
    pub(crate) expiries: Table<'t, (u32, i64, u64), &'static [u8; 32]>,
    /// Counter increments of this transaction per (customer, day): (purpose, (granted,
    /// denied)), a handful each. Written once per key by [`IndexTables::flush_counts`], in
    /// key order (a 1,000-event commit touches a handful of counters thousands of times; a
    /// purpose name is copied once per step, not once per event).
    pub(crate) pending_counts: PendingCounts,
    /// The time run being extended, written by [`IndexTables::flush_pending`].
    pub(crate) open_run: Option<TimeRun>,
    /// The customer tier's watermark when this transaction opened: the entry at it is the
    /// only one whose run may continue a stored row (runs are consecutive seqs).
    pub(crate) runs_from: u64,
}

/// A run of the time index being built: consecutive consent entries of one customer
/// recorded in one millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeRun {
    /// The customer number.
    pub(crate) customer: u32,
    /// When its entries were recorded (Unix ms).
    pub(crate) recorded_at_ms: i64,
    /// Its first entry.
    pub(crate) first: u64,
    /// Its last entry so far.
    pub(crate) last: u64,
}

impl TimeRun {
    /// Whether the consent entry `seq` of `customer` recorded at `recorded_at_ms` extends
    /// the run.
    fn extended_by(&self, customer: u32, recorded_at_ms: i64, seq: u64) -> bool {
        self.customer == customer && self.recorded_at_ms == recorded_at_ms && self.last + 1 == seq
    }

    /// Puts that entry into the run being built, `open`: it extends the run, or starts a
    /// new one and the run it ends (to be stored, or digested by the audit) is returned.
    /// The writer and the audit build the runs alike through this.
    pub(crate) fn push(
        open: &mut Option<TimeRun>,
        customer: u32,
        recorded_at_ms: i64,
        seq: u64,
    ) -> Option<TimeRun> {
        if let Some(run) = open
            && run.extended_by(customer, recorded_at_ms, seq)
        {
            run.last = seq;
            return None;
        }
        open.replace(TimeRun {
            customer,
            recorded_at_ms,
            first: seq,
            last: seq,
        })
    }
}

impl IndexTables<'_> {
    /// Writes the open time run and adds the pending counter increments to the stored
    /// counters. Must run before the transaction commits (the commit paths call it; an
    /// unflushed run or increment would be lost).
    pub(crate) fn flush_pending(&mut self) -> Result<(), StorageError> {
        self.write_open_run()?;
        self.flush_counts()
    }

    /// Writes the time run being built, if any, as it stands.
    fn write_open_run(&mut self) -> Result<(), StorageError> {
        match self.open_run.take() {
            Some(run) => self.write_run(run),
            None => Ok(()),
        }
    }

    /// Stores a time run.
    fn write_run(&mut self, run: TimeRun) -> Result<(), StorageError> {
        self.customer_events
            .insert((run.customer, run.recorded_at_ms, run.first), run.last)?;
        Ok(())
    }

    /// Adds the pending counter increments to the stored counters.
    fn flush_counts(&mut self) -> Result<(), StorageError> {
        for ((customer, day), mut counts) in std::mem::take(&mut self.pending_counts) {
            counts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (purpose, (g, d)) in counts {
                let key = (customer, day, purpose.as_str());
                let (granted, denied) = self
                    .daily_counts
                    .get(key)?
                    .map(|v| v.value())
                    .unwrap_or((0, 0));
                self.daily_counts.insert(key, (granted + g, denied + d))?;
            }
        }
        Ok(())
    }

    /// A subject's stored current state (empty when it has none).
    pub(crate) fn state(
        &self,
        customer: u32,
        subject: Hash,
    ) -> Result<Vec<PurposeState>, StorageError> {
        state_in(&self.subjects, customer, &subject.0)
    }

    /// Every event of a subject, oldest first ([`subject_seqs`]).
    pub(crate) fn history(&self, customer: u32, subject: Hash) -> Result<Vec<u64>, StorageError> {
        subject_seqs(&self.subjects, customer, &subject.0, usize::MAX)
    }

    /// Puts consent entry `seq` of `customer` into the time index: it extends the open run,
    /// or (at `runs_from`) a stored run that ends just before it, or starts a run.
    fn extend_runs(
        &mut self,
        customer: u32,
        recorded_at_ms: i64,
        seq: u64,
    ) -> Result<(), StorageError> {
        if let Some(ended) = TimeRun::push(&mut self.open_run, customer, recorded_at_ms, seq) {
            self.write_run(ended)?;
        }
        // The step's first entry is the only one an earlier step's run can end just before
        // (the open run is new there: the entries before it were indexed earlier).
        if seq == self.runs_from && seq > 0 {
            let stored = self
                .customer_events
                .range((customer, recorded_at_ms, 0)..(customer, recorded_at_ms, seq))?
                .next_back()
                .transpose()?;
            if let Some((k, v)) = stored
                && v.value().checked_add(1) == Some(seq)
            {
                let run = self
                    .open_run
                    .as_mut()
                    .expect("a run holds the entry just put");
                assert_eq!(run.first, seq, "the run at the step's first entry is new");
                run.first = k.value().2;
            }
        }
        Ok(())
    }

    /// Reflects `entry` in the customer tier: its time row, its day's counters, and for an
    /// erasure entry its listing row. Depends on the entry alone, so it may run long after
    /// the subject tier did.
    pub(crate) fn apply_customer_tier(
        &mut self,
        entry: &Entry,
        customer: u32,
    ) -> Result<(), StorageError> {
        match ConsentFacts::of(entry) {
            Some(facts) => self.apply_customer_consent(&facts, customer),
            None => {
                // An erasure: its effects were applied when it was written (and a rebuild
                // finds the personal records already gone); only the listing row is derived
                // here.
                self.erasures.insert((customer, entry.seq), ())?;
                Ok(())
            }
        }
    }

    /// The customer tier of a consent entry: its time row and its day's counters.
    pub(crate) fn apply_customer_consent(
        &mut self,
        facts: &ConsentFacts<'_>,
        customer: u32,
    ) -> Result<(), StorageError> {
        self.extend_runs(customer, facts.recorded_at_ms, facts.seq)?;
        let day = facts.recorded_at_ms.div_euclid(MS_PER_DAY);
        let day_counts = self.pending_counts.entry((customer, day)).or_default();
        for (purpose, choice) in facts.purposes.iter() {
            tally(day_counts, purpose.as_bytes(), choice);
        }
        Ok(())
    }

    /// Reflects `entry` in the subject tier: its subject's history row, current state and
    /// expiry rows (nothing for an erasure entry or an erased event).
    pub(crate) fn apply_subject_tier(
        &mut self,
        entry: &Entry,
        customer: u32,
        subject: Option<Hash>,
    ) -> Result<(), StorageError> {
        match (ConsentFacts::of(entry), subject) {
            (Some(facts), Some(subject)) => self.apply_subject_consent(&facts, customer, subject),
            _ => Ok(()),
        }
    }

    /// The subject tier of a consent entry: its current state and expiry rows, and the
    /// history row of the subject's previous latest event (index layout 2: the latest event
    /// has none, its state row stands for it).
    pub(crate) fn apply_subject_consent(
        &mut self,
        facts: &ConsentFacts<'_>,
        customer: u32,
        subject: Hash,
    ) -> Result<(), StorageError> {
        assert!(
            facts.seq < STATE_ROW,
            "a seq never reaches the state row key"
        );
        if facts.purposes.is_empty() {
            // Validation refuses such events. One would change no state, so the state
            // could not stand for it: it keeps a history row of its own.
            self.subjects
                .insert((customer, &subject.0, facts.seq), [].as_slice())?;
            return Ok(());
        }
        // Most events are their subject's first (a new visitor): the state row is written
        // first with the state this event alone gives, and the previous state, if any,
        // comes back from the insert. A first event then costs one B-tree insert in all
        // (layout 1 also inserted a history row for it: 7.6 % of `batch`'s server CPU,
        // docs/benchmarks.md, session 28); a later one a history row for the event its
        // state stood for, and a second write of the state.
        let key = (customer, &subject.0, STATE_ROW);
        let alone = encode_first_state(facts);
        let replaced = match self.subjects.insert(key, alone.as_slice())? {
            Some(old) => Some(decode_state(old.value())?),
            None => None,
        };
        let Some(mut states) = replaced else {
            return self.set_expiries(customer, subject, &[], &first_expiry_rows(facts));
        };
        // The writer stores only states of events it indexed before this one; anything
        // else is a damaged index file (which a restart rebuilds), not a reason to panic.
        let previous = latest_seq(&states)
            .filter(|&p| p < facts.seq)
            .ok_or_else(|| StorageError::Corrupt {
                table: "subjects",
                detail: format!(
                    "the state row before entry {} names no earlier entry",
                    facts.seq
                ),
            })?;
        self.subjects
            .insert((customer, &subject.0, previous), [].as_slice())?;
        let before = expiry_rows(&states);
        apply_facts(&mut states, facts);
        let merged = encode_state(&states);
        if merged != alone {
            self.subjects.insert(key, merged.as_slice())?;
        }
        self.set_expiries(customer, subject, &before, &expiry_rows(&states))
    }

    /// Stores `new` as a subject's current state (empty: the subject has no state) whose
    /// previous state had the expiry rows `before` (see [`expiry_rows`]), keeping the
    /// expiry index in step.
    pub(crate) fn set_state(
        &mut self,
        customer: u32,
        subject: Hash,
        before: &[(i64, u64)],
        new: &[PurposeState],
    ) -> Result<(), StorageError> {
        self.set_expiries(customer, subject, before, &expiry_rows(new))?;
        let key = (customer, &subject.0, STATE_ROW);
        if new.is_empty() {
            self.subjects.remove(key)?;
        } else {
            self.subjects.insert(key, encode_state(new).as_slice())?;
        }
        Ok(())
    }

    /// Brings a subject's expiry rows from those of its previous state (`before`) to
    /// those of its new one (`after`; both as [`expiry_rows`] gives them).
    fn set_expiries(
        &mut self,
        customer: u32,
        subject: Hash,
        before: &[(i64, u64)],
        after: &[(i64, u64)],
    ) -> Result<(), StorageError> {
        // Only rows that change are touched: most events carry no expiry, and a purpose
        // the event does not name keeps its row.
        for &(at, seq) in before.iter().filter(|r| !after.contains(r)) {
            self.expiries.remove((customer, at, seq))?;
        }
        for &(at, seq) in after.iter().filter(|r| !before.contains(r)) {
            self.expiries.insert((customer, at, seq), &subject.0)?;
        }
        Ok(())
    }
}

/// The expiry rows a state implies: the distinct (expires_at_ms, seq) of its GRANTED
/// purposes that lapse, sorted. One event usually grants several purposes with one expiry:
/// they share one row, and new rows land at the end of the index (expiry times grow with
/// time, seqs grow), not at random places.
pub(crate) fn expiry_rows(states: &[impl Expiring]) -> Vec<(i64, u64)> {
    let mut rows: Vec<(i64, u64)> = states.iter().filter_map(Expiring::expiry_row).collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// A stored purpose state, owned or borrowed, as the expiry index sees it.
pub(crate) trait Expiring {
    /// `(expires_at_ms, seq)` when the purpose is GRANTED and lapses: the expiry index
    /// holds those, since they are what must be renewed.
    fn expiry_row(&self) -> Option<(i64, u64)>;
    /// The seq of the event that set the purpose ([`latest_seq`]).
    fn seq(&self) -> u64;
}

fn granted_expiry(choice: Choice, expires_at_ms: Option<i64>, seq: u64) -> Option<(i64, u64)> {
    match choice {
        Choice::Granted => expires_at_ms.map(|at| (at, seq)),
        Choice::Denied => None,
    }
}

impl Expiring for PurposeState {
    fn expiry_row(&self) -> Option<(i64, u64)> {
        granted_expiry(self.choice, self.expires_at_ms, self.seq)
    }
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl Expiring for StoredPurpose<'_> {
    fn expiry_row(&self) -> Option<(i64, u64)> {
        granted_expiry(self.choice, self.expires_at_ms, self.seq)
    }
    fn seq(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Proves: the index writer's queue gives back an entry's purposes exactly: packed
        /// purposes read back as the list they were packed from, names (1 to 64 bytes) and
        /// choices, in order, with their count.
        #[test]
        fn packed_purposes_read_back_as_the_list(
            names in proptest::collection::btree_set("[a-z0-9_.:-]{1,64}", 0..=64),
            bits in any::<u64>(),
        ) {
            let list: Vec<(String, Choice)> = names
                .into_iter()
                .enumerate()
                .map(|(i, n)| {
                    let choice = if bits >> i & 1 == 1 { Choice::Granted } else { Choice::Denied };
                    (n, choice)
                })
                .collect();
            let packed = pack_purposes(FactPurposes::Listed(&list).iter());
            let back = FactPurposes::Packed(&packed).iter();
            prop_assert_eq!(back.len(), list.len());
            let back: Vec<(String, Choice)> = back.map(|(n, c)| (n.to_string(), c)).collect();
            prop_assert_eq!(back, list);
        }
    }

    /// A state as events build it: `events` applied in turn, each (purposes by index into
    /// `NAMES`, choice bits, expiry) at seq 10, 20, ….
    fn state_of(events: &[(Vec<usize>, u8, Option<i64>)]) -> Vec<PurposeState> {
        const NAMES: [&str; 6] = ["ads", "analytics", "functional", "marketing", "p", "zz"];
        let mut states = Vec::new();
        for (i, (names, bits, expires_at_ms)) in events.iter().enumerate() {
            let mut purposes: Vec<(String, Choice)> = names
                .iter()
                .map(|&n| {
                    let granted = bits >> (n % 8) & 1 == 1;
                    let choice = if granted {
                        Choice::Granted
                    } else {
                        Choice::Denied
                    };
                    (NAMES[n % NAMES.len()].to_string(), choice)
                })
                .collect();
            purposes.sort_by(|a, b| a.0.cmp(&b.0));
            purposes.dedup_by(|a, b| a.0 == b.0);
            let seq = 10 * (i as u64 + 1);
            let facts = ConsentFacts {
                seq,
                recorded_at_ms: 1_700_000_000_000,
                occurred_at_ms: 1_700_000_000_000 - seq as i64,
                expires_at_ms: *expires_at_ms,
                purposes: FactPurposes::Listed(&purposes),
            };
            apply_facts(&mut states, &facts);
        }
        states
    }

    proptest! {
        #[test]
        fn a_state_decodes_to_what_was_encoded_whatever_events_built_it(
            events in prop::collection::vec(
                (prop::collection::vec(0usize..6, 1..5), any::<u8>(), prop::option::of(0i64..1 << 50)),
                1..6,
            )
        ) {
            // Proves: the grouped layout (index layout 4) keeps every purpose's choice, seq
            // and times, gives them back sorted by name, and is canonical (re-encoding the
            // decoded state gives the same bytes).
            let states = state_of(&events);
            let bytes = encode_state(&states);
            let decoded = decode_state(&bytes).expect("decodes");
            prop_assert_eq!(&decoded, &states);
            prop_assert_eq!(encode_state(&decoded), bytes);
        }
    }

    #[test]
    fn a_damaged_state_row_is_refused_not_misread() {
        // Proves: truncation, a trailing byte, a second group that names a purpose again,
        // groups out of seq order and a bad choice byte are each reported as corrupt.
        let states = state_of(&[(vec![0, 1], 0b11, None), (vec![3], 0, Some(5))]);
        let good = encode_state(&states);
        assert!(decode_state_view(&good).is_ok());
        let mut bad = vec![good[..good.len() - 1].to_vec()];
        bad.push([good.as_slice(), &[0]].concat());
        let group = |seq: u64, name: &str| {
            let mut w = Writer::with_capacity(64);
            write_group(
                &mut w,
                seq,
                (1, None),
                [(name, Choice::Granted)].into_iter(),
            );
            w.buf
        };
        bad.push([&2u32.to_be_bytes()[..], &group(1, "ads"), &group(2, "ads")].concat());
        bad.push([&2u32.to_be_bytes()[..], &group(2, "ads"), &group(1, "b")].concat());
        let mut choice = [&1u32.to_be_bytes()[..], &group(1, "ads")].concat();
        *choice.last_mut().expect("a choice byte") = 9;
        bad.push(choice);
        for bytes in bad {
            assert!(
                matches!(decode_state_view(&bytes), Err(StorageError::Corrupt { .. })),
                "{bytes:?} must be refused"
            );
        }
    }

    #[test]
    fn a_first_state_is_one_group_naming_its_event_once() {
        // Proves: the layout-4 state of a subject's first event with five purposes takes
        // 81 bytes (layout 3: 160), the size the subjects table's leaves are made of.
        let names = [
            "ads",
            "analytics",
            "functional",
            "marketing",
            "personalisation",
        ];
        let purposes: Vec<(String, Choice)> = names
            .iter()
            .map(|n| (n.to_string(), Choice::Granted))
            .collect();
        let facts = ConsentFacts {
            seq: 7,
            recorded_at_ms: 1,
            occurred_at_ms: 1,
            expires_at_ms: None,
            purposes: FactPurposes::Listed(&purposes),
        };
        assert_eq!(encode_first_state(&facts).len(), 4 + 17 + 4 + 5 * 2 + 46);
    }

    #[test]
    fn a_first_events_state_is_encoded_as_the_general_path_would() {
        // Proves: the shortcut for a subject's first event writes the same state bytes
        // and expiry rows as applying the event to no state, with and without an expiry
        // and with only denials (which have no expiry row).
        let mixed = [
            ("ads".to_string(), Choice::Denied),
            ("analytics".to_string(), Choice::Granted),
            ("marketing".to_string(), Choice::Granted),
        ];
        let denied = [("ads".to_string(), Choice::Denied)];
        for purposes in [&mixed[..], &denied[..]] {
            for expires_at_ms in [None, Some(1_800_000_000_000)] {
                let facts = ConsentFacts {
                    seq: 42,
                    recorded_at_ms: 1_700_000_000_000,
                    occurred_at_ms: 1_699_999_999_000,
                    expires_at_ms,
                    purposes: FactPurposes::Listed(purposes),
                };
                let mut states = Vec::new();
                apply_facts(&mut states, &facts);
                assert_eq!(encode_first_state(&facts), encode_state(&states));
                assert_eq!(first_expiry_rows(&facts), expiry_rows(&states));
            }
        }
    }
}
