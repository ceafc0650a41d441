//! `assent audit`: re-verifies a whole ledger on disk, or monitors a server's checkpoints.
//! Exit codes: 0 intact, 1 a problem was found (named by shard and sequence number), 2
//! unusable input.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use gateway::{CHECKPOINTS, LEDGER_META, ledger_db_builder};
use redb::ReadableDatabase;
use serde_json::{Value, json};
use shard::checkpoint::Checkpoint;
use shard::engine::{
    AuditOpen, ClaimSpill, STATE_CLAIM_BYTES_PER_PASS, ShardAuditError, ShardReader, StorageError,
    SubjectsPass,
};
use shard::hash::Hash;
use shard::merkle::{Blake3Tree, TreeHasher};
use shard::verify::ChainError;

use crate::verify_cmd::{KeyArgs, Trusted, open_with, trusted};

/// Options of `assent audit`.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// Data directory of a stopped server (or a copy of one). Opened read-only: the audit
    /// never changes what it checks.
    #[arg(long, conflicts_with = "server")]
    data_dir: Option<PathBuf>,
    /// With --data-dir, where the state check spills the claims of current states beyond
    /// --claim-memory-bytes (an unnamed file, about 60 bytes a state, gone when the audit
    /// ends): a disk with room, not a tmpfs (default: TMPDIR, else /tmp).
    #[arg(long, requires = "data_dir")]
    temp_dir: Option<PathBuf>,
    /// With --data-dir, bytes of current-state claims held in memory per shard before they
    /// are spilled to --temp-dir (default 64 MiB, about a million five-purpose states).
    #[arg(long, requires = "data_dir", value_parser = clap::value_parser!(u64).range(1..))]
    claim_memory_bytes: Option<u64>,
    /// Let redb repair files that were not shut down cleanly (a crash, or a copy taken
    /// while a server ran) before auditing them. This changes the files: use it on a copy.
    #[arg(long, requires = "data_dir")]
    repair: bool,
    /// URL of a running server to monitor: checks every checkpoint issued since the last
    /// audit extends the one before (token in ASSENT_AUDIT_TOKEN or --token-file).
    #[arg(long, requires = "state")]
    server: Option<String>,
    /// File that keeps the monitor's state between runs (created on the first run).
    #[arg(long)]
    state: Option<PathBuf>,
    /// With --server, a checkpoint shown to someone else (a signed checkpoint note, a
    /// receipt JSON, or another monitor's state file), repeatable: it must carry the
    /// trusted key's signature and be the very checkpoint the server serves under its
    /// number. Checkpoint numbers are never reused, so this catches a server that shows
    /// different histories to different people once their checkpoints are compared.
    #[arg(long, requires = "server")]
    compare: Vec<PathBuf>,
    /// File holding a READER or ADMIN key, with --server.
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[command(flatten)]
    keys: KeyArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Shards audited at once, with --data-dir (default: the machine's cores). Each shard's
    /// audit keeps two threads busy: the chain walk and the index check it feeds (and, when
    /// fewer shards than cores run at once, a third for half of its first step).
    #[arg(long)]
    jobs: Option<u32>,
}

/// Runs the audit and returns the exit code.
pub fn run(args: AuditArgs) -> u8 {
    let result = match (&args.data_dir, &args.server) {
        (Some(dir), None) => audit_dir(dir, &args),
        (None, Some(url)) => crate::monitor::run(
            url,
            args.state
                .as_deref()
                .expect("clap requires --state with --server"),
            args.token_file.as_deref(),
            &args.keys,
            &args.compare,
        ),
        _ => Err(Failure::Unusable(
            "give --data-dir DIR, or --server URL --state FILE".into(),
        )),
    };
    let (code, text) = match result {
        Ok(report) => (
            0,
            if args.json {
                report.to_string()
            } else {
                report["summary"].as_str().unwrap_or("").to_string()
            },
        ),
        Err(Failure::Problem(m)) => (
            1,
            if args.json {
                json!({ "intact": false, "problem": m }).to_string()
            } else {
                format!("PROBLEM: {m}")
            },
        ),
        Err(Failure::Unusable(m)) => (
            2,
            if args.json {
                json!({ "intact": false, "unusable": m }).to_string()
            } else {
                format!("unusable input: {m}")
            },
        ),
    };
    println!("{text}");
    code
}

/// Why an audit or a monitor run did not report INTACT.
pub(crate) enum Failure {
    /// The ledger or the server broke a promise (exit code 1).
    Problem(String),
    /// The input could not be checked at all (exit code 2).
    Unusable(String),
}

fn unusable(e: impl std::fmt::Display) -> Failure {
    Failure::Unusable(e.to_string())
}

/// The expected state of one shard at one checkpoint.
struct Expect {
    number: u64,
    size: u64,
    root: Hash,
    chain_head: Hash,
}

/// The ledger file, open read-only in one snapshot, with what its meta table names.
pub(crate) struct Ledger {
    /// The snapshot every pass over the checkpoints reads (the signature pass and each
    /// shard's), so they all see the same notes.
    pub(crate) txn: redb::ReadTransaction,
    /// Shards of the ledger.
    pub(crate) count: u32,
    /// The ledger's name (the checkpoints' origin).
    name: String,
}

pub(crate) fn load_ledger(dir: &Path, repair: bool) -> Result<Ledger, Failure> {
    let path = dir.join("ledger.redb");
    if !path.exists() {
        return Err(Failure::Unusable(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let open_error = |e: redb::DatabaseError| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Failure::Unusable(
            "a server is running on this data directory; stop it or audit a copy".into(),
        ),
        redb::DatabaseError::RepairAborted => {
            Failure::Unusable(format!("{}: {}", path.display(), StorageError::NeedsRepair))
        }
        other => Failure::Problem(format!("{}: {other}", path.display())),
    };
    if repair {
        // redb repairs a file that was not shut down cleanly when it opens it writable.
        drop(ledger_db_builder().open(&path).map_err(open_error)?);
    }
    let db = ledger_db_builder()
        .open_read_only(&path)
        .map_err(open_error)?;
    let txn = db.begin_read().map_err(unusable)?;
    let meta = txn.open_table(LEDGER_META).map_err(unusable)?;
    let count = meta
        .get("shard_count")
        .map_err(unusable)?
        .and_then(|v| v.value().try_into().ok().map(u32::from_be_bytes));
    let name = meta
        .get("ledger_name")
        .map_err(unusable)?
        .map(|v| String::from_utf8_lossy(v.value()).to_string());
    let (Some(count), Some(name)) = (count, name) else {
        return Err(Failure::Problem(
            "ledger.redb has no shard count or ledger name".into(),
        ));
    };
    Ok(Ledger { txn, count, name })
}

/// The stored checkpoint notes in order, each with its number; a gap in the numbers is a
/// problem. Read one at a time: a server issues one a second while it writes, so a ledger
/// holds millions, and no pass keeps more than one.
fn stored_notes(
    txn: &redb::ReadTransaction,
) -> Result<
    impl Iterator<Item = Result<(u64, redb::AccessGuard<'static, &'static str>), Failure>>,
    Failure,
> {
    let table = txn.open_table(CHECKPOINTS).map_err(unusable)?;
    let rows = table.range::<u64>(..).map_err(unusable)?;
    Ok((1u64..).zip(rows).map(|(expected, row)| {
        let (k, v) = row.map_err(|e| Failure::Problem(format!("checkpoints table: {e}")))?;
        if k.value() != expected {
            return Err(Failure::Problem(format!(
                "checkpoint {expected} is missing (next stored is {})",
                k.value()
            )));
        }
        Ok((expected, v))
    }))
}

fn local_key(dir: &Path) -> Result<Vec<Trusted>, Failure> {
    let text = std::fs::read_to_string(dir.join("signing-key"))
        .map_err(|e| Failure::Unusable(format!("no key pinned and signing-key unreadable: {e}")))?;
    let secret = Hash::from_hex(text.trim())
        .ok_or_else(|| Failure::Unusable("signing-key is not 64 hex digits".into()))?;
    Ok(vec![(
        None,
        ed25519_dalek::SigningKey::from_bytes(&secret.0).verifying_key(),
    )])
}

/// Checkpoints read and verified at once in the signature pass (each of the `--jobs`
/// threads takes a share): bounds the pass's memory to this many notes.
const CHECKPOINTS_PER_CHUNK: usize = 4_096;

/// Checks every checkpoint's signature (on `jobs` threads: an ed25519 verification is
/// ≈ 70 µs here, so a year of checkpoints, one a second, is most of an hour on one core)
/// and its order against the one before it; returns how many there are. Memory: one
/// chunk of notes.
fn check_checkpoints(ledger: &Ledger, keys: &[Trusted], jobs: usize) -> Result<u64, Failure> {
    let mut prev: Option<Checkpoint> = None;
    let mut checked = 0;
    let mut notes =
        stored_notes(&ledger.txn)?.map(|row| row.map(|(n, v)| (n, v.value().to_string())));
    loop {
        let chunk: Vec<Result<(u64, String), Failure>> =
            notes.by_ref().take(CHECKPOINTS_PER_CHUNK).collect();
        if chunk.is_empty() {
            return Ok(checked);
        }
        let opened = open_in_parallel(&chunk, keys, jobs);
        for (row, c) in chunk.into_iter().zip(opened) {
            let (n, _) = row?;
            let c = c.expect("every readable note was opened")?;
            check_order(&c, n, prev.as_ref(), ledger)?;
            prev = Some(c);
            checked += 1;
        }
    }
}

/// Opens (parses, and checks the signature of) every readable note of `chunk`, in order,
/// on up to `jobs` threads; `None` for a row that could not be read.
fn open_in_parallel(
    chunk: &[Result<(u64, String), Failure>],
    keys: &[Trusted],
    jobs: usize,
) -> Vec<Option<Result<Checkpoint, Failure>>> {
    let open =
        |rows: &[Result<(u64, String), Failure>]| -> Vec<Option<Result<Checkpoint, Failure>>> {
            rows.iter()
                .map(|row| {
                    let (n, note) = row.as_ref().ok()?;
                    Some(
                        open_with(note, keys)
                            .map(|(c, _)| c)
                            .map_err(|e| Failure::Problem(format!("checkpoint {n}: {e}"))),
                    )
                })
                .collect()
        };
    let share = chunk.len().div_ceil(jobs.max(1));
    std::thread::scope(|scope| {
        let parts: Vec<_> = chunk
            .chunks(share.max(1))
            .map(|rows| scope.spawn(move || open(rows)))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("opening notes does not panic"))
            .collect()
    })
}

/// Checkpoint `n`, `c`, names its number, the ledger and its shard count, does not go
/// back in time from `prev`, and shrinks no shard.
fn check_order(
    c: &Checkpoint,
    n: u64,
    prev: Option<&Checkpoint>,
    ledger: &Ledger,
) -> Result<(), Failure> {
    if c.number != n || c.origin != ledger.name || c.shards.len() != ledger.count as usize {
        return Err(Failure::Problem(format!(
            "checkpoint {n}: wrong number, ledger name or shard count"
        )));
    }
    let Some(p) = prev else { return Ok(()) };
    if c.time_ms < p.time_ms {
        return Err(Failure::Problem(format!("checkpoint {n}: time goes back")));
    }
    if let Some(s) = p
        .shards
        .iter()
        .zip(&c.shards)
        .find(|(a, b)| b.size < a.size)
    {
        return Err(Failure::Problem(format!(
            "checkpoint {n}: shard {} shrank from {} to {}",
            s.0.shard_id, s.0.size, s.1.size
        )));
    }
    Ok(())
}

/// What the checkpoints say of one shard, read one checkpoint at a time from the snapshot
/// [`check_checkpoints`] verified.
struct Expectations<I> {
    /// The stored notes still to read.
    notes: I,
    /// Which shard.
    shard: usize,
    /// The next expectation, if any.
    next: Option<Expect>,
    /// A note that could not be read (the walk stops meeting checkpoints; reported after).
    failed: Option<Failure>,
}

impl<I> Expectations<I>
where
    I: Iterator<Item = Result<(u64, redb::AccessGuard<'static, &'static str>), Failure>>,
{
    fn new(notes: I, shard: usize) -> Self {
        let mut e = Expectations {
            notes,
            shard,
            next: None,
            failed: None,
        };
        e.advance();
        e
    }

    /// The next checkpoint's expectation of this shard, if any.
    fn peek(&self) -> Option<&Expect> {
        self.next.as_ref()
    }

    /// Moves to the next checkpoint.
    fn advance(&mut self) {
        self.next = match self.notes.next() {
            None => None,
            Some(Ok((n, note))) => match shard::checkpoint::open_checkpoint(note.value(), None) {
                Ok((c, _)) => c.shards.get(self.shard).map(|h| Expect {
                    number: n,
                    size: h.size,
                    root: h.root,
                    chain_head: h.chain_head,
                }),
                Err(e) => {
                    self.failed = Some(Failure::Problem(format!("checkpoint {n}: {e}")));
                    None
                }
            },
            Some(Err(e)) => {
                self.failed = Some(e);
                None
            }
        };
    }
}

fn audit_dir(dir: &Path, args: &AuditArgs) -> Result<Value, Failure> {
    let started = Instant::now();
    let ledger = load_ledger(dir, args.repair)?;
    let (count, name) = (ledger.count, ledger.name.as_str());
    let mode = if args.repair {
        AuditOpen::Repair
    } else {
        AuditOpen::ReadOnly
    };
    let pinned = trusted(&args.keys).map_err(Failure::Unusable)?;
    let keys = if pinned.is_empty() {
        local_key(dir)?
    } else {
        pinned.clone()
    };
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |j| j as usize,
    );
    let spill = ClaimSpill {
        bytes_per_pass: args
            .claim_memory_bytes
            .map_or(STATE_CLAIM_BYTES_PER_PASS, |b| {
                usize::try_from(b).unwrap_or(usize::MAX)
            }),
        temp_dir: args.temp_dir.clone().unwrap_or_else(std::env::temp_dir),
    };
    spill.check().map_err(|e| {
        Failure::Unusable(format!(
            "--temp-dir {}: no temporary file can be made there ({e}); the audit spills the state claims of large shards there: name a writable directory",
            spill.temp_dir.display()
        ))
    })?;
    // The shards' data is read while the checkpoints' signatures are checked (millions of
    // them in an old ledger) and while the first shards are audited.
    let files = (0..count)
        .map(|i| {
            let file = dir.join("shards").join(format!("shard-{i:04}.redb"));
            vec![shard::engine::index_path(&file), file]
        })
        .collect();
    // One shard beyond those being audited: its data is read while they compute.
    let ahead = crate::read_ahead::ReadAhead::start(files, jobs.min(count as usize) + 1);
    let checkpoints = check_checkpoints(&ledger, &keys, jobs)?;
    let readers: Vec<ShardReader> = (0..count)
        .map(|i| {
            let path = dir.join("shards").join(format!("shard-{i:04}.redb"));
            ShardReader::open_existing(&path, i, mode).map_err(|e| {
                let m = format!("shard {i} ({}): {e}", path.display());
                match e {
                    StorageError::NeedsRepair
                    | StorageError::OldLayout { .. }
                    | StorageError::OtherIndexLayout { .. } => Failure::Unusable(m),
                    _ => Failure::Problem(m),
                }
            })
        })
        .collect::<Result<_, _>>()?;
    let total: u64 = readers
        .iter()
        .map(|r| r.head().map(|h| h.size).unwrap_or(0))
        .sum();
    let bar = indicatif::ProgressBar::new(total);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    // One task per shard; each keeps two threads busy (the chain walk and the index check
    // it feeds) and a third briefly (the side digests). The index check's first step, the
    // walk of the `subjects` table, is split over two threads when the shards audited at
    // once leave a core to spare (when none is, the split only costs CPU: measured).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pass = if jobs.min(readers.len()) < cores {
        SubjectsPass::TwoThreads
    } else {
        SubjectsPass::OneThread
    };
    let outcomes = in_parallel(readers.len(), jobs, |i| {
        let outcome = stored_notes(&ledger.txn).and_then(|notes| {
            let expect = Expectations::new(notes, i);
            audit_shard(&readers[i], expect, pass, &spill, &bar)
        });
        ahead.finished_one();
        outcome
    });
    drop(ahead);
    bar.finish_and_clear();
    let mut total = ShardCounts::default();
    // The first problem in shard order is reported, whichever thread met it first.
    for outcome in outcomes {
        total.add(&outcome?);
    }
    let ShardCounts {
        entries,
        index_rows,
        personal_records,
        erased_entries,
        spilled_claims,
    } = total;
    let secs = started.elapsed().as_secs_f64();
    let signer = if pinned.is_empty() {
        "the data directory's own signing key (pin --public-key to check against a published key)"
    } else {
        "the pinned key"
    };
    Ok(json!({
        "intact": true, "shards": count, "entries": entries, "checkpoints": checkpoints, "indexRows": index_rows,
        "personalRecords": personal_records, "erasedEntries": erased_entries,
        "spilledClaims": spilled_claims, "seconds": secs, "entriesPerSecond": entries as f64 / secs.max(1e-9),
        "summary": format!(
            "ledger {name}: {count} shards, {entries} entries re-hashed and chained, {} checkpoints verified against {signer} and the journal, {personal_records} personal records open their commitments ({erased_entries} erased, each named by an erasure entry), {index_rows} index rows agree; INTACT ({:.2} s, {:.0} entries/s)",
            checkpoints, secs, entries as f64 / secs.max(1e-9)
        ),
    }))
}

/// Runs `task(0..count)` on up to `jobs` threads (each takes the next undone index) and
/// returns the outcomes in index order.
fn in_parallel<T: Send>(
    count: usize,
    jobs: usize,
    task: impl Fn(usize) -> Result<T, Failure> + Sync,
) -> Vec<Result<T, Failure>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<T, Failure>>>> =
        (0..count).map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, count.max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let outcome = task(i);
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every index was run")
        })
        .collect()
}

/// What one shard's audit counted.
#[derive(Default)]
struct ShardCounts {
    /// Journal entries re-hashed and chained.
    entries: u64,
    /// Index rows that agree with the journal.
    index_rows: u64,
    /// Personal records that open their entry's commitment.
    personal_records: u64,
    /// Consent entries without a personal record (each named by an erasure entry).
    erased_entries: u64,
    /// State claims spilled to the temporary file (beyond the memory bound).
    spilled_claims: u64,
}

impl ShardCounts {
    fn add(&mut self, other: &ShardCounts) {
        self.entries += other.entries;
        self.index_rows += other.index_rows;
        self.personal_records += other.personal_records;
        self.erased_entries += other.erased_entries;
        self.spilled_claims += other.spilled_claims;
    }
}

/// Entries between two updates of the progress bar.
const PROGRESS_STEP_ENTRIES: u64 = 4_096;

/// Audits one shard (journal, stored Merkle tree, personal records and indexes, reading
/// the journal once), checking every checkpoint's root and chain head at its size.
fn audit_shard<I>(
    reader: &ShardReader,
    mut next: Expectations<I>,
    pass: SubjectsPass,
    spill: &ClaimSpill,
    bar: &indicatif::ProgressBar,
) -> Result<ShardCounts, Failure>
where
    I: Iterator<Item = Result<(u64, redb::AccessGuard<'static, &'static str>), Failure>>,
{
    let shard = reader.shard_id();
    while let Some(e) = next.peek().filter(|e| e.size == 0) {
        if e.root != Blake3Tree.hash_empty() || e.chain_head != Hash::ZERO {
            return Err(Failure::Problem(format!(
                "checkpoint {}: shard {shard} empty but root or chain head not",
                e.number
            )));
        }
        next.advance();
    }
    let mut mismatch: Option<String> = None;
    // The bar takes a lock and reads the clock on every update: once per step, not per entry.
    let mut unreported = 0u64;
    let (head, report) = reader
        .audit_with(pass, spill, |entry, verifier| {
            unreported += 1;
            if unreported == PROGRESS_STEP_ENTRIES {
                bar.inc(unreported);
                unreported = 0;
            }
            while let Some(e) = next.peek().filter(|e| e.size == verifier.size()) {
                if e.root != verifier.root() || e.chain_head != entry.entry_hash {
                    mismatch = Some(format!("checkpoint {} disagrees with shard {shard}'s journal at size {} (entries before seq {} were changed)", e.number, e.size, e.size));
                    return Err(ChainError::RootMismatch { size: e.size, computed: verifier.root(), claimed: e.root });
                }
                next.advance();
            }
            Ok(())
        })
        .map_err(|e| match (e, mismatch.take()) {
            (ShardAuditError::Journal(_), Some(checkpoint)) => Failure::Problem(checkpoint),
            // The auditing machine's disk failed, not the ledger: the audit is unfinished.
            (ShardAuditError::Index(m), _) if m.temp_file_failed => {
                Failure::Unusable(format!("audit not finished: {m}"))
            }
            (e, _) => Failure::Problem(e.to_string()),
        })?;
    bar.inc(unreported);
    if let Some(failed) = next.failed.take() {
        return Err(failed);
    }
    if let Some(e) = next.peek() {
        return Err(Failure::Problem(format!(
            "checkpoint {} claims {} entries in shard {shard} but its journal has {} (entries were removed)",
            e.number, e.size, head.size
        )));
    }
    Ok(ShardCounts {
        entries: head.size,
        index_rows: report.counters
            + report.time_rows
            + report.history_rows
            + report.state_rows
            + report.idempotency_rows,
        personal_records: report.personal_records,
        erased_entries: report.erased_entries,
        spilled_claims: report.spilled_claims,
    })
}
