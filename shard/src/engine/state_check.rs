//! The audit's check of current-state rows against the journal, without one random journal
//! lookup per state.
//!
//! A state row claims, per purpose, "entry `seq` set this choice at `occurred_at_ms`,
//! lapsing at `expires_at_ms`". The subject-history rows, already proven equal to the
//! journal's (customer, subject, seq) facts by their multiset digest, sit just before the
//! state row in the same table: a claimed seq must be one of them, which proves the entry
//! is this subject's, this customer's, and still has its personal record. What the entry
//! says (purpose, choice, times) is checked by collecting the claims, sorting them by seq,
//! and meeting them in the index check's own pass over the journal. Beyond
//! [`STATE_CLAIM_BYTES_PER_PASS`] of claims, each full batch is checked at once by reading its
//! entries in ascending order: memory stays bounded and journal pages are read in key order.

// foldhash: these maps are read once per journal entry or state row (SipHash was ≈ 3 % of
// an audit's CPU); an offline audit has no untrusted clients to fear collisions from.
use foldhash::{HashMap, HashMapExt};

use redb::ReadOnlyTable;

use super::index::StoredPurpose;
use crate::format::{Choice, EntryView};

/// Bytes of claims held before they are checked against the journal: the memory bound of
/// the state check. A state's purposes set by one entry make one 40-byte claim plus 4 bytes
/// per purpose, so 64 MiB holds about a million five-purpose states. Each batch beyond
/// the first costs one ascending walk of the journal pages it names.
pub(crate) const STATE_CLAIM_BYTES_PER_PASS: usize = 64 << 20;

/// The purposes of one state row that name the same entry and times.
#[derive(Debug, Clone, Copy)]
struct Claim {
    /// The entry that must set them; claims sort by it into journal order.
    seq: u64,
    /// The claimed occurrence time (Unix ms).
    occurred_at_ms: i64,
    /// The claimed lapse time (Unix ms), if any.
    expires_at_ms: Option<i64>,
    /// First of this claim's purposes in [`StateClaims::choices`].
    first: u32,
    /// How many purposes.
    len: u32,
}

/// An interned purpose and its claimed choice in one `u32`: id × 2 + (1 if DENIED).
type PackedChoice = u32;

/// Collects state claims and checks them against the journal in bounded batches.
pub(crate) struct StateClaims {
    /// Bytes held before a batch is checked ([`STATE_CLAIM_BYTES_PER_PASS`] but in tests).
    bytes_per_pass: usize,
    /// Claims not yet checked.
    claims: Vec<Claim>,
    /// The purposes of `claims`, each claim's contiguous.
    choices: Vec<PackedChoice>,
    /// Purpose names of the pending claims (interned: a handful of names per customer).
    purposes: Vec<String>,
    /// Name → index into `purposes`.
    purpose_ids: HashMap<String, u32>,
    /// One state's purposes sorted by (seq, times), reused between states.
    scratch: Vec<(u64, i64, Option<i64>, PackedChoice)>,
    /// The first claim the journal pass has not yet reached.
    next: usize,
}

impl StateClaims {
    /// An empty collector that checks a batch once it holds `bytes_per_pass` bytes.
    pub(crate) fn new(bytes_per_pass: usize) -> StateClaims {
        assert!(bytes_per_pass > 0, "a batch holds at least one claim");
        StateClaims {
            bytes_per_pass,
            // Reserved whole (address space, not memory: pages are touched as claims
            // arrive), so that growing never copies them or faults their pages twice.
            claims: Vec::with_capacity(bytes_per_pass / std::mem::size_of::<Claim>() + 1),
            choices: Vec::with_capacity(bytes_per_pass / std::mem::size_of::<PackedChoice>() + 1),
            purposes: Vec::new(),
            purpose_ids: HashMap::new(),
            scratch: Vec::new(),
            next: 0,
        }
    }

    /// Takes the claims of one state row whose subject's history (ascending seqs) is
    /// `history`. Fails when a claimed entry is not in that history; checks the pending
    /// batch against `journal` when it is full.
    pub(crate) fn add(
        &mut self,
        states: &[StoredPurpose<'_>],
        history: &[u64],
        journal: &ReadOnlyTable<u64, &'static [u8]>,
    ) -> Result<(), String> {
        self.scratch.clear();
        for s in states {
            if history.binary_search(&s.seq).is_err() {
                return Err(format!(
                    "current state of a subject names entry {} for {}, which is not in that subject's history (another subject's or customer's, or erased)",
                    s.seq, s.purpose
                ));
            }
            let packed = self.intern(s.purpose) * 2 + u32::from(s.choice == Choice::Denied);
            self.scratch
                .push((s.seq, s.occurred_at_ms, s.expires_at_ms, packed));
        }
        self.scratch.sort_unstable();
        for (i, &(seq, occurred_at_ms, expires_at_ms, packed)) in self.scratch.iter().enumerate() {
            let same = i > 0 && {
                let (s0, o0, e0, _) = self.scratch[i - 1];
                (s0, o0, e0) == (seq, occurred_at_ms, expires_at_ms)
            };
            if same {
                self.claims.last_mut().expect("a claim was opened").len += 1;
            } else {
                let first =
                    u32::try_from(self.choices.len()).expect("batches stay far below 4 G purposes");
                self.claims.push(Claim {
                    seq,
                    occurred_at_ms,
                    expires_at_ms,
                    first,
                    len: 1,
                });
            }
            self.choices.push(packed);
        }
        let held = self.claims.len() * std::mem::size_of::<Claim>()
            + self.choices.len() * std::mem::size_of::<PackedChoice>();
        if held >= self.bytes_per_pass {
            self.check(journal)?;
        }
        Ok(())
    }

    fn intern(&mut self, purpose: &str) -> u32 {
        if let Some(&id) = self.purpose_ids.get(purpose) {
            return id;
        }
        let id = u32::try_from(self.purposes.len()).expect("at most one name per claim");
        self.purposes.push(purpose.to_string());
        self.purpose_ids.insert(purpose.to_string(), id);
        id
    }

    /// Orders the pending claims by seq for [`StateClaims::check_entry`], which a pass over
    /// the journal then calls for every entry in seq order.
    pub(crate) fn sort_for_pass(&mut self) {
        self.claims.sort_unstable_by_key(|c| c.seq);
        self.next = 0;
    }

    /// Checks the pending claims on entry `seq` (the journal pass calls this for every
    /// entry, in order, after [`StateClaims::sort_for_pass`]).
    pub(crate) fn check_entry(&mut self, seq: u64, entry: &EntryView<'_>) -> Result<(), String> {
        while let Some(claim) = self.claims.get(self.next).filter(|c| c.seq <= seq) {
            if claim.seq < seq {
                return Err(self.does_not_set(claim));
            }
            self.check_claim(entry, claim)?;
            self.next += 1;
        }
        Ok(())
    }

    /// Fails when a claim named an entry the journal pass never reached.
    pub(crate) fn finish_pass(&self) -> Result<(), String> {
        match self.claims.get(self.next) {
            Some(claim) => Err(format!(
                "a current state names entry {}, beyond the indexed journal",
                claim.seq
            )),
            None => Ok(()),
        }
    }

    fn does_not_set(&self, claim: &Claim) -> String {
        let packed = self.choices[claim.first as usize];
        format!(
            "current state of a subject names entry {} for {}, which does not set it so",
            claim.seq,
            self.purposes[(packed / 2) as usize]
        )
    }

    /// Checks every pending claim against its entry, reading the journal in seq order,
    /// and empties the batch.
    pub(crate) fn check(
        &mut self,
        journal: &ReadOnlyTable<u64, &'static [u8]>,
    ) -> Result<(), String> {
        self.claims.sort_unstable_by_key(|c| c.seq);
        // Claims of one entry sit together once sorted: its entry is read and decoded once.
        for same_entry in self.claims.chunk_by(|a, b| a.seq == b.seq) {
            let seq = same_entry[0].seq;
            let bytes = journal
                .get(seq)
                .map_err(|e| format!("reading: {e}"))?
                .ok_or_else(|| format!("a current state names missing entry {seq}"))?;
            let entry =
                EntryView::decode(bytes.value()).map_err(|e| format!("entry {seq}: {e}"))?;
            for claim in same_entry {
                self.check_claim(&entry, claim)?;
            }
        }
        self.claims.clear();
        self.choices.clear();
        self.next = 0;
        self.purposes.clear();
        self.purpose_ids.clear();
        Ok(())
    }

    /// Checks that `entry` is a consent event at the claimed times that sets every
    /// purpose of `claim` to the claimed choice.
    fn check_claim(&self, entry: &EntryView<'_>, claim: &Claim) -> Result<(), String> {
        let Some(consent) = entry.consent() else {
            return Err(self.does_not_set(claim));
        };
        if consent.occurred_at_ms != claim.occurred_at_ms
            || consent.expires_at_ms != claim.expires_at_ms
        {
            return Err(self.does_not_set(claim));
        }
        let range = claim.first as usize..(claim.first + claim.len) as usize;
        for &packed in &self.choices[range] {
            let name = &self.purposes[(packed / 2) as usize];
            let choice = if packed % 2 == 1 {
                Choice::Denied
            } else {
                Choice::Granted
            };
            if !consent
                .purposes
                .iter_bytes()
                .any(|(p, ch)| p == name.as_bytes() && ch == choice)
            {
                return Err(format!(
                    "current state of a subject names entry {} for {name}, which does not set it so",
                    claim.seq
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{Store, SubjectsPass};
    use crate::format::Choice;
    use crate::format::tests_support::sample;
    use redb::ReadableTable as _;

    #[test]
    fn claims_checked_in_small_batches_agree_with_one_pass() {
        // Proves: the batched check (claims beyond the bound read their entries at once)
        // accepts true states, and names a state that claims a choice its entry lacks.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.redb");
        let mut store = Store::open(&path, 0).expect("open");
        for i in 0..40u32 {
            let mut e = sample();
            e.subject_id = format!("s{}", i % 9);
            e.occurred_at_ms += i64::from(i);
            let choice = if i % 2 == 0 {
                Choice::Granted
            } else {
                Choice::Denied
            };
            e.purposes.insert("analytics".into(), choice);
            e.purposes.insert("ads".into(), Choice::Denied);
            store
                .append_batches(&[vec![e]])
                .expect("append")
                .remove(0)
                .expect("appended");
        }
        store.index_now(true).expect("index");
        let reader = store.reader();
        let whole = reader.verify_indexes().expect("true states verify");
        // 44 bytes: one claim of one purpose.
        for per_pass in [1, 2, 3, 7] {
            for pass in [SubjectsPass::OneThread, SubjectsPass::TwoThreads] {
                let batched = reader
                    .verify_indexes_in_passes(per_pass * 44, pass)
                    .expect("true states verify in batches");
                assert_eq!(batched, whole, "per_pass {per_pass}, {pass:?}");
            }
        }
        drop(reader);
        drop(store);
        let db = redb::Database::open(crate::engine::index_path(&path)).expect("reopen");
        let txn = db.begin_write().expect("write");
        {
            let mut tab = txn
                .open_table(crate::engine::tables::SUBJECTS)
                .expect("table");
            let (key, mut state) = {
                let mut rows = tab.iter().expect("iter").map(|r| r.expect("row"));
                let (k, v) = rows
                    .find(|(k, _)| k.value().2 == u64::MAX)
                    .expect("a state row");
                let (c, subject, seq) = k.value();
                ((c, *subject, seq), v.value().to_vec())
            };
            let name_len = u32::from_be_bytes(state[4..8].try_into().expect("4 bytes")) as usize;
            state[8 + name_len] ^= 3; // GRANTED <-> DENIED
            tab.insert((key.0, &key.1, key.2), state.as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
        drop(db);
        let reader =
            crate::engine::ShardReader::open_existing(&path, 0, crate::engine::AuditOpen::ReadOnly)
                .expect("open");
        for per_pass in [1, 2, 1 << 20] {
            for pass in [SubjectsPass::OneThread, SubjectsPass::TwoThreads] {
                let err = reader
                    .verify_indexes_in_passes(per_pass * 44, pass)
                    .expect_err("a flipped state is found");
                assert!(
                    err.to_string().contains("does not set it so"),
                    "per_pass {per_pass}, {pass:?}: {err}"
                );
            }
        }
    }
}
