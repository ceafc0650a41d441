//! The audit's check of current-state rows against the journal, without one random journal
//! lookup per state.
//!
//! A state row claims, per purpose, "entry `seq` set this choice at `occurred_at_ms`,
//! lapsing at `expires_at_ms`". The subject-history rows, already proven equal to the
//! journal's (customer, subject, seq) facts by their multiset digest, sit just before the
//! state row in the same table, and the state stands for the subject's latest event, whose
//! row is implied (index layout 2) and digested with them: a claimed seq must be one of
//! them, which proves the entry
//! is this subject's, this customer's, and still has its personal record. What the entry
//! says (purpose, choice, times) is checked by collecting the claims, sorting them by seq,
//! and meeting them in the index check's own pass over the journal. Every event of the
//! history gets a claim, which also lists the purposes the state names a later event for:
//! the event may set only those and its own, so no purpose of the state names an event a
//! later one overrode (until session 28 a state that kept an older event's choice went
//! unnoticed while its entry said so). Beyond
//! [`STATE_CLAIM_BYTES_PER_PASS`] of claims (or the bound a [`ClaimSpill`] sets), each full
//! batch is written, sorted, to a temporary file (a run), and the journal pass meets the
//! merge of all runs: memory stays bounded, the journal is read once, in order, and the
//! temporary file sequentially.
//! (Before, each full batch read its entries from the journal at once: a random read per
//! claim, which on a large shard made a cold audit wait for the whole shard file before it
//! could compute; docs/benchmarks.md, session 24.)

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

// foldhash: these maps are read once per journal entry or state row (SipHash was ≈ 3 % of
// an audit's CPU); an offline audit has no untrusted clients to fear collisions from.
use foldhash::{HashMap, HashMapExt};

use super::index::StoredPurpose;
use crate::format::codec::{DecodeError, Reader, Writer};
use crate::format::{Choice, EntryView};

/// Bytes of claims held before they are written out as a sorted run: the memory bound of
/// the state check. Each event of a subject's history makes one 40-byte claim plus 4 bytes
/// per purpose the state names it or a later event for, so 64 MiB holds about a million
/// five-purpose subjects of one event each. A shard with more writes them to a temporary
/// file (in [`ClaimSpill::temp_dir`], `TMPDIR` unless told otherwise), about 60 bytes a
/// claim.
pub const STATE_CLAIM_BYTES_PER_PASS: usize = 64 << 20;

/// Bytes of buffer the merge of spilled runs holds, over all runs together (each run gets
/// an equal share, at least [`MIN_RUN_BUFFER_BYTES`]).
pub(crate) const MERGE_BUFFER_BYTES: usize = 8 << 20;

/// The smallest read from one run during the merge.
pub(crate) const MIN_RUN_BUFFER_BYTES: usize = 4096;

/// Where the audit's state check keeps its claims: at most `bytes_per_pass` in memory per
/// shard, the rest in sorted runs in an unnamed file in `temp_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSpill {
    /// Bytes of claims held in memory per shard (split between the two `subjects` walks
    /// when there are two): the state check's memory bound.
    pub bytes_per_pass: usize,
    /// Directory of the temporary file: a disk with room for about 60 bytes per current
    /// state of the largest shard (a tmpfs would hold them in memory after all).
    pub temp_dir: std::path::PathBuf,
}

impl Default for ClaimSpill {
    /// [`STATE_CLAIM_BYTES_PER_PASS`] in memory, the rest in the system's temporary
    /// directory (`TMPDIR`).
    fn default() -> ClaimSpill {
        ClaimSpill {
            bytes_per_pass: STATE_CLAIM_BYTES_PER_PASS,
            temp_dir: std::env::temp_dir(),
        }
    }
}

impl ClaimSpill {
    /// Fails unless a temporary file can be created in `temp_dir` (checked before an audit,
    /// so that a missing or read-only directory is named at once, not mid-audit).
    pub fn check(&self) -> std::io::Result<()> {
        assert!(self.bytes_per_pass > 0, "a batch holds at least one claim");
        tempfile::tempfile_in(&self.temp_dir).map(drop)
    }

    /// The same directory with half the memory (one of two `subjects` walks).
    pub(crate) fn half(&self) -> ClaimSpill {
        ClaimSpill {
            bytes_per_pass: (self.bytes_per_pass / 2).max(1),
            temp_dir: self.temp_dir.clone(),
        }
    }
}

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

/// An interned purpose and what its claim wants of it in one `u32`: id × 4 + 0 (the entry
/// sets it GRANTED), 1 (sets it DENIED) or 2 ([`Want::MaySet`]).
type PackedChoice = u32;

/// What a claim says of one purpose of its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The entry sets the purpose to this choice: the state names the entry for it.
    Sets(Choice),
    /// The entry may set the purpose: the state names this entry or a later one of the
    /// subject for it. A purpose the entry sets must be named so or as [`Want::Sets`]: a
    /// state that names an earlier entry (or none) for it is not the subject's latest.
    MaySet,
}

/// The tag of [`Want::MaySet`] in a [`PackedChoice`].
const MAY_SET_TAG: u32 = 2;

/// Packs interned purpose `id` with what is wanted of it.
fn pack(id: u32, want: Want) -> PackedChoice {
    id * 4
        + match want {
            Want::Sets(Choice::Granted) => 0,
            Want::Sets(Choice::Denied) => 1,
            Want::MaySet => MAY_SET_TAG,
        }
}

/// Inverse of [`pack`]: (purpose id, want).
fn unpack(packed: PackedChoice) -> (u32, Want) {
    let want = match packed % 4 {
        0 => Want::Sets(Choice::Granted),
        1 => Want::Sets(Choice::Denied),
        _ => Want::MaySet,
    };
    (packed / 4, want)
}

/// Why the state check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimProblem {
    /// A current-state row disagrees with the journal: the ledger is wrong.
    Mismatch(String),
    /// The temporary file could not be created, written or read back: the auditing
    /// machine's failure, which says nothing of the ledger.
    TempFile(String),
}

/// Collects state claims and checks them against the journal pass, in memory or, beyond
/// the bound, through sorted runs in a temporary file.
pub(crate) struct StateClaims {
    /// Bytes held before a batch is spilled, and where.
    limits: ClaimSpill,
    /// Claims not yet checked (or spilled).
    claims: Vec<Claim>,
    /// The purposes of `claims`, each claim's contiguous.
    choices: Vec<PackedChoice>,
    /// Purpose names of the pending claims (interned: a handful of names per customer).
    purposes: Vec<String>,
    /// Name → index into `purposes`.
    purpose_ids: HashMap<String, u32>,
    /// One state's purposes sorted by (seq, times), reused between states.
    scratch: Vec<(u64, i64, Option<i64>, PackedChoice)>,
    /// The first claim the journal pass has not yet reached (in memory).
    next: usize,
    /// The runs written once a batch filled; the journal pass then meets their merge.
    spill: Option<Spill>,
    /// Claims written to `spill` so far.
    spilled: u64,
}

impl StateClaims {
    /// An empty collector that spills a batch once it holds `limits.bytes_per_pass` bytes.
    pub(crate) fn new(limits: ClaimSpill) -> StateClaims {
        let bytes_per_pass = limits.bytes_per_pass;
        assert!(bytes_per_pass > 0, "a batch holds at least one claim");
        StateClaims {
            limits,
            // Reserved whole (address space, not memory: pages are touched as claims
            // arrive), so that growing never copies them or faults their pages twice.
            claims: Vec::with_capacity(bytes_per_pass / std::mem::size_of::<Claim>() + 1),
            choices: Vec::with_capacity(bytes_per_pass / std::mem::size_of::<PackedChoice>() + 1),
            purposes: Vec::new(),
            purpose_ids: HashMap::new(),
            scratch: Vec::new(),
            next: 0,
            spill: None,
            spilled: 0,
        }
    }

    /// Claims written to the temporary file so far.
    pub(crate) fn spilled(&self) -> u64 {
        self.spilled
    }

    /// Takes the claims of one state row whose subject's history (ascending seqs, the
    /// latest event included) is `history`: one per event of the history, which names the
    /// purposes the state says the event set (and how, and when) and those it names a
    /// later event for, which the event may also set; the event must set no other purpose.
    /// Together these prove the state is the fold of the subject's events: no purpose of it
    /// names an event that a later one of the subject overrode. Fails when a claimed entry
    /// is not in that history; spills the pending batch when it is full.
    pub(crate) fn add(
        &mut self,
        states: &[StoredPurpose<'_>],
        history: &[u64],
    ) -> Result<(), ClaimProblem> {
        self.scratch.clear();
        for s in states {
            if history.binary_search(&s.seq).is_err() {
                return Err(ClaimProblem::Mismatch(format!(
                    "current state of a subject names entry {} for {}, which is not in that subject's history (another subject's or customer's, or erased)",
                    s.seq, s.purpose
                )));
            }
            let packed = pack(self.intern(s.purpose), Want::Sets(s.choice));
            self.scratch
                .push((s.seq, s.occurred_at_ms, s.expires_at_ms, packed));
        }
        self.scratch.sort_unstable();
        let mut next = 0;
        for &seq in history {
            let claims_before = self.claims.len();
            while self.scratch.get(next).is_some_and(|s| s.0 == seq) {
                next = self.add_group(next);
            }
            if self.claims.len() == claims_before {
                // The state names this event for no purpose: it may only have set purposes
                // the state names later events for. No times to check.
                self.add_claim(seq, 0, None, next..next);
            }
        }
        assert_eq!(
            next,
            self.scratch.len(),
            "every entry the state names is in the history (checked above)"
        );
        let held = self.claims.len() * std::mem::size_of::<Claim>()
            + self.choices.len() * std::mem::size_of::<PackedChoice>();
        if held >= self.limits.bytes_per_pass {
            self.spill_batch()?;
        }
        Ok(())
    }

    /// Adds the claim of the purposes `scratch[at..]` that name one entry with the same
    /// times; returns the index of the first purpose after them.
    fn add_group(&mut self, at: usize) -> usize {
        let (seq, occurred_at_ms, expires_at_ms, _) = self.scratch[at];
        let end = at
            + self.scratch[at..]
                .iter()
                .take_while(|s| (s.0, s.1, s.2) == (seq, occurred_at_ms, expires_at_ms))
                .count();
        self.add_claim(seq, occurred_at_ms, expires_at_ms, at..end);
        end
    }

    /// Adds the claim of entry `seq`: it sets the purposes `scratch[sets]` as they say, and
    /// may set the others the state names it or a later entry for.
    fn add_claim(
        &mut self,
        seq: u64,
        occurred_at_ms: i64,
        expires_at_ms: Option<i64>,
        sets: std::ops::Range<usize>,
    ) {
        let first = u32::try_from(self.choices.len()).expect("batches stay far below 4 G purposes");
        self.choices
            .extend(self.scratch[sets.clone()].iter().map(|s| s.3));
        // Named for this entry with other times (a state that disagrees with itself, which
        // the claim of those fails on), or for a later entry.
        let others = self
            .scratch
            .iter()
            .enumerate()
            .filter(|(i, s)| s.0 >= seq && !sets.contains(i));
        self.choices
            .extend(others.map(|(_, s)| pack(unpack(s.3).0, Want::MaySet)));
        let len = u32::try_from(self.choices.len()).expect("checked above") - first;
        self.claims.push(Claim {
            seq,
            occurred_at_ms,
            expires_at_ms,
            first,
            len,
        });
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
    /// the journal then calls for every entry in seq order; once runs were spilled, spills
    /// the rest too and opens their merge.
    pub(crate) fn sort_for_pass(&mut self) -> Result<(), ClaimProblem> {
        self.claims.sort_unstable_by_key(|c| c.seq);
        self.next = 0;
        if self.spill.is_some() {
            if !self.claims.is_empty() {
                self.spill_batch()?;
            }
            let spill = self.spill.as_mut().expect("checked above");
            spill
                .start_merge()
                .map_err(|e| temp_file_error(&self.limits, e))?;
        }
        Ok(())
    }

    /// Checks the pending claims on entry `seq` (the journal pass calls this for every
    /// entry, in order, after [`StateClaims::sort_for_pass`]).
    pub(crate) fn check_entry(
        &mut self,
        seq: u64,
        entry: &EntryView<'_>,
    ) -> Result<(), ClaimProblem> {
        if let Some(spill) = &mut self.spill {
            return spill.check_entry(seq, entry, &self.limits);
        }
        while let Some(claim) = self.claims.get(self.next).filter(|c| c.seq <= seq) {
            if claim.seq < seq {
                return Err(never_met(claim.seq));
            }
            check_claim(
                entry,
                claim.seq,
                claim.occurred_at_ms,
                claim.expires_at_ms,
                self.purposes_of(claim),
            )?;
            self.next += 1;
        }
        Ok(())
    }

    /// Fails when a claim named an entry the journal pass never reached.
    pub(crate) fn finish_pass(&self) -> Result<(), ClaimProblem> {
        let beyond = match &self.spill {
            Some(spill) => spill.pending(),
            None => self.claims.get(self.next).map(|c| c.seq),
        };
        match beyond {
            Some(seq) => Err(ClaimProblem::Mismatch(format!(
                "a current state names entry {seq}, beyond the indexed journal"
            ))),
            None => Ok(()),
        }
    }

    /// The purposes of an in-memory claim and what it wants of each.
    fn purposes_of<'s>(
        &'s self,
        claim: &Claim,
    ) -> impl Iterator<Item = (&'s str, Want)> + Clone + 's {
        let range = claim.first as usize..(claim.first + claim.len) as usize;
        self.choices[range].iter().map(|&packed| {
            let (id, want) = unpack(packed);
            (self.purposes[id as usize].as_str(), want)
        })
    }

    /// Writes the pending claims, sorted by seq, as one run of the temporary file, and
    /// empties the batch.
    fn spill_batch(&mut self) -> Result<(), ClaimProblem> {
        if self.spill.is_none() {
            let spill = Spill::new(&self.limits.temp_dir);
            self.spill = Some(spill.map_err(|e| temp_file_error(&self.limits, e))?);
        }
        self.claims.sort_unstable_by_key(|c| c.seq);
        let mut spill = self.spill.take().expect("opened above");
        let written = spill.write_run(|out| {
            for c in &self.claims {
                let purposes = self.purposes_of(c);
                encode_claim(out, c.seq, c.occurred_at_ms, c.expires_at_ms, purposes)?;
            }
            Ok(())
        });
        self.spill = Some(spill);
        written.map_err(|e| temp_file_error(&self.limits, e))?;
        self.spilled += self.claims.len() as u64;
        self.claims.clear();
        self.choices.clear();
        self.next = 0;
        self.purposes.clear();
        self.purpose_ids.clear();
        Ok(())
    }
}

fn temp_file_error(limits: &ClaimSpill, e: std::io::Error) -> ClaimProblem {
    ClaimProblem::TempFile(format!(
        "the state check's temporary file (in {}): {e}; free space there or name another directory (--temp-dir)",
        limits.temp_dir.display()
    ))
}

/// A claim on entry `seq`, which the journal pass went past without meeting.
fn never_met(seq: u64) -> ClaimProblem {
    ClaimProblem::Mismatch(format!(
        "a current state names entry {seq}, which the journal pass never met"
    ))
}

/// Entry `seq` of a subject's history sets `purpose`, for which the subject's state names an
/// earlier entry or none.
fn not_latest(seq: u64, purpose: &[u8]) -> ClaimProblem {
    ClaimProblem::Mismatch(format!(
        "current state of a subject is not its latest: entry {seq} of its history sets {}, for which the state names an earlier entry or none",
        String::from_utf8_lossy(purpose)
    ))
}

fn does_not_set(seq: u64, purpose: &str) -> ClaimProblem {
    ClaimProblem::Mismatch(format!(
        "current state of a subject names entry {seq} for {purpose}, which does not set it so"
    ))
}

/// Checks a claim on `entry` (entry `seq`): that it is a consent event at the claimed times
/// that sets every [`Want::Sets`] purpose to the claimed choice (the times are checked only
/// when there is one), and that every purpose it sets is among the claim's.
fn check_claim<'p>(
    entry: &EntryView<'_>,
    seq: u64,
    occurred_at_ms: i64,
    expires_at_ms: Option<i64>,
    purposes: impl Iterator<Item = (&'p str, Want)> + Clone,
) -> Result<(), ClaimProblem> {
    let consent = entry.consent();
    for (name, want) in purposes.clone() {
        let Want::Sets(choice) = want else {
            continue;
        };
        let Some(consent) = consent else {
            return Err(does_not_set(seq, name));
        };
        if consent.occurred_at_ms != occurred_at_ms || consent.expires_at_ms != expires_at_ms {
            return Err(does_not_set(seq, name));
        }
        if !consent
            .purposes
            .iter_bytes()
            .any(|(p, ch)| p == name.as_bytes() && ch == choice)
        {
            return Err(does_not_set(seq, name));
        }
    }
    let Some(consent) = consent else {
        return Ok(());
    };
    for (p, _) in consent.purposes.iter_bytes() {
        if !purposes.clone().any(|(name, _)| name.as_bytes() == p) {
            return Err(not_latest(seq, p));
        }
    }
    Ok(())
}

/// One claim as a run holds it: its purpose names spelled out (each batch interns its own).
#[derive(Debug, Clone, PartialEq)]
struct SpilledClaim {
    seq: u64,
    occurred_at_ms: i64,
    expires_at_ms: Option<i64>,
    purposes: Vec<(String, Want)>,
}

/// The byte of [`Want::MaySet`] in a spilled claim (a choice's byte stands for
/// [`Want::Sets`]).
const MAY_SET_BYTE: u8 = 3;

/// Writes one claim to `out` in a single call, in the ledger formats' codec
/// (`format::codec`, big-endian): the claim's length (u32), then seq (u64), occurred (i64)
/// and expiry (opt i64), then per purpose a byte (its choice's, or `MAY_SET_BYTE`) and its
/// name (str). A temporary format, never kept.
fn encode_claim<'p>(
    out: &mut RunWriter<'_>,
    seq: u64,
    occurred_at_ms: i64,
    expires_at_ms: Option<i64>,
    purposes: impl Iterator<Item = (&'p str, Want)>,
) -> std::io::Result<()> {
    let mut w = Writer {
        buf: std::mem::take(&mut out.scratch),
    };
    w.buf.clear();
    w.u32(0); // The claim's length, set below.
    w.u64(seq);
    w.i64(occurred_at_ms);
    w.opt_i64(expires_at_ms);
    for (name, want) in purposes {
        w.u8(match want {
            Want::Sets(choice) => choice.to_byte(),
            Want::MaySet => MAY_SET_BYTE,
        });
        w.str(name);
    }
    let len = u32::try_from(w.buf.len() - 4).expect("a claim is far below 4 GiB");
    w.buf[..4].copy_from_slice(&len.to_be_bytes());
    out.out.write_all(&w.buf)?;
    out.bytes += w.buf.len() as u64;
    out.scratch = w.buf;
    Ok(())
}

/// Inverse of [`encode_claim`], after the length.
fn decode_claim(bytes: &[u8]) -> Result<SpilledClaim, DecodeError> {
    let mut r = Reader::new(bytes);
    let seq = r.u64()?;
    let occurred_at_ms = r.i64()?;
    let expires_at_ms = r.opt_i64("expires_at_ms")?;
    let mut purposes = Vec::new();
    while r.position() < bytes.len() {
        let value = r.u8()?;
        let want = match value {
            MAY_SET_BYTE => Want::MaySet,
            _ => Want::Sets(Choice::from_byte(value).ok_or(DecodeError::BadValue {
                field: "choice",
                value: value.into(),
            })?),
        };
        purposes.push((r.str()?, want));
    }
    Ok(SpilledClaim {
        seq,
        occurred_at_ms,
        expires_at_ms,
        purposes,
    })
}

/// Where [`encode_claim`] writes one run.
struct RunWriter<'f> {
    /// The buffered file, positioned at the run's start.
    out: BufWriter<&'f File>,
    /// One claim's bytes, reused.
    scratch: Vec<u8>,
    /// Bytes of the run so far.
    bytes: u64,
}

/// Sorted runs of claims in one temporary file (deleted when closed), and their merge.
struct Spill {
    /// The file (unnamed: the system deletes it when the audit ends, however it ends).
    file: File,
    /// Bytes written so far (the next run's start).
    written: u64,
    /// Each run's byte range.
    runs: Vec<(u64, u64)>,
    /// One reader per run that still holds claims, during the journal pass.
    readers: Vec<RunReader>,
    /// (seq, reader) of each reader's current claim, smallest first.
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(u64, usize)>>,
}

impl Spill {
    fn new(dir: &std::path::Path) -> std::io::Result<Spill> {
        Ok(Spill {
            file: tempfile::tempfile_in(dir)?,
            written: 0,
            runs: Vec::new(),
            readers: Vec::new(),
            heap: std::collections::BinaryHeap::new(),
        })
    }

    /// Appends one run: the claims `write` encodes (sorted by seq) with [`encode_claim`].
    fn write_run(
        &mut self,
        write: impl FnOnce(&mut RunWriter<'_>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let start = self.written;
        let mut out = BufWriter::with_capacity(1 << 20, &self.file);
        out.seek(SeekFrom::Start(start))?;
        let mut run = RunWriter {
            out,
            scratch: Vec::new(),
            bytes: 0,
        };
        write(&mut run)?;
        run.out.flush()?;
        self.written += run.bytes;
        self.runs.push((start, self.written));
        Ok(())
    }

    /// Opens a reader on every run and reads each one's first claim.
    fn start_merge(&mut self) -> std::io::Result<()> {
        assert!(self.readers.is_empty(), "the merge starts once");
        let share = (MERGE_BUFFER_BYTES / self.runs.len().max(1)).max(MIN_RUN_BUFFER_BYTES);
        for &(start, end) in &self.runs {
            let mut reader = RunReader {
                at: start,
                end,
                buf: Vec::with_capacity(share),
                pos: 0,
                current: None,
            };
            reader.advance(&self.file)?;
            if let Some(claim) = &reader.current {
                self.heap
                    .push(std::cmp::Reverse((claim.seq, self.readers.len())));
            }
            self.readers.push(reader);
        }
        Ok(())
    }

    /// The merge's part of [`StateClaims::check_entry`].
    fn check_entry(
        &mut self,
        seq: u64,
        entry: &EntryView<'_>,
        limits: &ClaimSpill,
    ) -> Result<(), ClaimProblem> {
        while let Some(claim) = self.pop_upto(seq).map_err(|e| temp_file_error(limits, e))? {
            if claim.seq < seq {
                return Err(never_met(claim.seq));
            }
            let purposes = claim.purposes.iter().map(|(n, w)| (n.as_str(), *w));
            check_claim(
                entry,
                seq,
                claim.occurred_at_ms,
                claim.expires_at_ms,
                purposes,
            )?;
        }
        Ok(())
    }

    /// The merge's next claim if it names `seq` or an earlier entry (runs in seq order).
    fn pop_upto(&mut self, seq: u64) -> std::io::Result<Option<SpilledClaim>> {
        let Some(&std::cmp::Reverse((claimed, i))) = self.heap.peek() else {
            return Ok(None);
        };
        if claimed > seq {
            return Ok(None);
        }
        self.heap.pop();
        let reader = &mut self.readers[i];
        let claim = reader
            .current
            .take()
            .expect("a reader in the heap holds a claim");
        reader.advance(&self.file)?;
        if let Some(next) = &reader.current {
            self.heap.push(std::cmp::Reverse((next.seq, i)));
        }
        Ok(Some(claim))
    }

    /// The smallest seq a run still claims, if any.
    fn pending(&self) -> Option<u64> {
        self.heap.peek().map(|r| r.0.0)
    }
}

/// Reads one run's claims in order, a buffer at a time.
struct RunReader {
    /// File offset of the first byte not yet in `buf`.
    at: u64,
    /// End of the run.
    end: u64,
    /// Bytes read from the run, `buf[pos..]` not yet decoded.
    buf: Vec<u8>,
    pos: usize,
    /// The claim the merge looks at; `None` once the run is exhausted.
    current: Option<SpilledClaim>,
}

impl RunReader {
    /// Decodes the run's next claim into `current` (`None` at the run's end).
    fn advance(&mut self, file: &File) -> std::io::Result<()> {
        if self.pos == self.buf.len() && self.at == self.end {
            self.current = None;
            return Ok(());
        }
        let len = self.take(file, 4)?.try_into().expect("4 bytes");
        let len = u32::from_be_bytes(len) as usize;
        let claim = decode_claim(self.take(file, len)?).map_err(std::io::Error::other)?;
        self.current = Some(claim);
        Ok(())
    }

    /// The next `n` bytes of the run, reading more of it when the buffer runs short.
    fn take(&mut self, file: &File, n: usize) -> std::io::Result<&[u8]> {
        if self.buf.len() - self.pos < n {
            self.buf.drain(..self.pos);
            self.pos = 0;
            let want = (self.buf.capacity().max(n) - self.buf.len()) as u64;
            let more = want.max(n as u64).min(self.end - self.at);
            let old = self.buf.len();
            self.buf.resize(old + more as usize, 0);
            let mut f = file;
            f.seek(SeekFrom::Start(self.at))?;
            f.read_exact(&mut self.buf[old..])?;
            self.at += more;
            if self.buf.len() < n {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "a run ends inside a claim",
                ));
            }
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::{
        MERGE_BUFFER_BYTES, MIN_RUN_BUFFER_BYTES, Spill, SpilledClaim, Want, encode_claim,
    };
    use crate::engine::{Store, SubjectsPass};
    use crate::format::Choice;
    use crate::format::tests_support::sample;
    use redb::ReadableTable as _;

    #[test]
    fn claims_checked_in_small_batches_agree_with_one_pass() {
        // Proves: the spilled check (claims beyond the bound written as sorted runs and met
        // through their merge) spills every claim when the bound holds one, accepts true
        // states with the same report, and names a state that claims a choice its entry
        // lacks.
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
                .append_batches(vec![vec![e]])
                .expect("append")
                .remove(0)
                .expect("appended");
        }
        store.index_now(true).expect("index");
        let reader = store.reader();
        let whole = reader.verify_indexes().expect("true states verify");
        assert_eq!(whole.spilled_claims, 0, "{whole:?}");
        // 44 bytes: one claim of one purpose.
        for per_pass in [1, 2, 3, 7] {
            for pass in [SubjectsPass::OneThread, SubjectsPass::TwoThreads] {
                let mut batched = reader
                    .verify_indexes_in_passes(per_pass * 44, pass)
                    .expect("true states verify in batches");
                // A walk whose claims never fill its bound keeps them in memory.
                match per_pass {
                    1 => assert!(batched.spilled_claims >= whole.state_rows, "{batched:?}"),
                    _ => assert!(batched.spilled_claims > 0, "{batched:?}"),
                }
                batched.spilled_claims = 0;
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
            let mut purposes = crate::engine::index::decode_state(&state).expect("a state");
            purposes[0].choice = match purposes[0].choice {
                crate::format::Choice::Granted => crate::format::Choice::Denied,
                crate::format::Choice::Denied => crate::format::Choice::Granted,
            };
            state = crate::engine::index::encode_state(&purposes);
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

    fn claim(seq: u64, purposes: usize, name_len: usize) -> SpilledClaim {
        SpilledClaim {
            seq,
            occurred_at_ms: seq as i64 * 3 - 7,
            expires_at_ms: seq.is_multiple_of(2).then_some(seq as i64 * 11),
            purposes: (0..purposes)
                .map(|i| {
                    let want = match (seq as usize + i) % 3 {
                        0 => Want::Sets(Choice::Denied),
                        1 => Want::Sets(Choice::Granted),
                        _ => Want::MaySet,
                    };
                    (format!("p{i}-{}", "x".repeat(name_len)), want)
                })
                .collect(),
        }
    }

    #[test]
    fn spilled_runs_merge_back_in_seq_order_with_every_claim_intact() {
        // Proves: claims written as sorted runs (empty runs, runs of one, claims larger than
        // a run's read buffer, more runs than the merge buffer gives a full share) come back
        // from the merge exactly as written, in seq order across runs, and only up to the
        // entry asked for.
        let runs: Vec<Vec<SpilledClaim>> = vec![
            vec![claim(1, 1, 3), claim(5, 2, 3), claim(9, 64, 200)],
            vec![],
            vec![claim(2, 5, 0), claim(5, 1, 10), claim(10, 3, 5)],
            vec![claim(3, 1, 1)],
        ];
        let extra_runs = MERGE_BUFFER_BYTES / MIN_RUN_BUFFER_BYTES;
        let mut spill = Spill::new(&std::env::temp_dir()).expect("temp file");
        let write = |spill: &mut Spill, run: &[SpilledClaim]| {
            spill
                .write_run(|out| {
                    for c in run {
                        let purposes = c.purposes.iter().map(|(n, w)| (n.as_str(), *w));
                        encode_claim(out, c.seq, c.occurred_at_ms, c.expires_at_ms, purposes)?;
                    }
                    Ok(())
                })
                .expect("write");
        };
        for run in &runs {
            write(&mut spill, run);
        }
        for i in 0..extra_runs as u64 {
            write(&mut spill, &[claim(100 + i, 1, 0)]);
        }
        spill.start_merge().expect("merge");
        let mut want: Vec<SpilledClaim> = runs.into_iter().flatten().collect();
        want.sort_by_key(|c| c.seq);
        let mut got = Vec::new();
        while let Some(c) = spill.pop_upto(9).expect("read") {
            got.push(c);
        }
        assert_eq!(got, want[..want.len() - 1], "up to entry 9");
        assert_eq!(spill.pending(), Some(10));
        assert_eq!(
            spill.pop_upto(u64::MAX).expect("read"),
            want.last().cloned()
        );
        let rest = std::iter::from_fn(|| spill.pop_upto(u64::MAX).expect("read"));
        let rest: Vec<u64> = rest.map(|c| c.seq).collect();
        assert_eq!(rest, (100..100 + extra_runs as u64).collect::<Vec<_>>());
        assert_eq!(spill.pending(), None);
    }
}
