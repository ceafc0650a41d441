//! The index writer: a thread per shard that owns the shard's index file
//! (`shard-NNNN.index.redb`) and keeps the secondary indexes behind the journal.
//!
//! The shard's writer commits journal, Merkle nodes, personal records and idempotency keys
//! durably in the shard file, answers its callers, and hands the new consent entries here.
//! This thread applies the subject tier `INDEX_DELAY_MS` after the first entry it lacks
//! arrives (the entries of the commits meanwhile join the step, without waking the thread)
//! and both tiers `CUSTOMER_INDEX_DELAY_MS` after the first entry the customer tier lacks,
//! durably; a reader's request wakes it at once. It answers readers waiting for a tier,
//! and applies an erasure's index changes after the shard commit that erased. Neither
//! writer waits for the other's transactions, except at the lag bound
//! (`MAX_INDEX_LAG_ENTRIES`) and during an erasure. See docs/design.md §5.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::actor::{CUSTOMER_INDEX_DELAY_MS, INDEX_DELAY_MS};
use super::db::DbCell;
use super::error::StorageError;
use super::index_file::{IndexErasure, IndexStore, Unindexed};
use super::memory::{MEMORY_RELEASE_INTERVAL_MS, release_memory, releases_memory};
use super::store::{IndexTier, MAX_INDEX_LAG_ENTRIES};

/// Entries the customer tier may lack before its step runs without waiting for
/// `CUSTOMER_INDEX_DELAY_MS`: half the lag bound.
const CUSTOMER_STEP_ENTRIES: usize = MAX_INDEX_LAG_ENTRIES / 2;

/// After a failed index step, how long the writer waits before its next try (unless a
/// reader asks sooner). A step retried at once spun a core and wrote 150 million log lines
/// in five minutes when the disk was full (session 20), filling the rest of the disk.
pub const INDEX_RETRY_MS: u64 = 1_000;

/// Where the outcome of a request to the index writer goes.
pub(crate) type Reply<T> = Box<dyn FnOnce(Result<T, StorageError>) + Send>;

/// Requests to the index writer, taken in the order they were sent.
enum Command {
    /// Entries just committed durably, in seq order, following those handed before.
    Entries(Vec<Unindexed>),
    /// Answer once `tier` reflects the first `size` entries.
    UpTo {
        tier: IndexTier,
        size: u64,
        reply: Reply<()>,
    },
    /// Index everything handed, in both tiers, and commit durably.
    Durable(Reply<()>),
    /// Index everything handed, then apply an erasure; durable.
    Erase(Box<IndexErasure>, Reply<()>),
    /// End a scrub: bring its copy of the index file up to date and put it in place.
    FinishScrub(Box<DbCell>, Reply<u64>),
    /// Index everything handed durably, close the file and end the thread.
    Stop(Reply<()>),
    /// Hold back index steps from now on (tests).
    Hold(IndexHold),
}

/// Which index steps a held index writer leaves undone, so that a test can observe the
/// indexes lagging the journal, and a crash between a commit and its index step (a writer
/// stopped while held does not run its final step).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexHold {
    /// Every step runs (the default).
    Nothing,
    /// Subject steps run; customer-tier steps do not.
    CustomerTier,
    /// No step runs except those a `Durable`, `Erase` or `FinishScrub` request makes.
    BothTiers,
}

/// The requests waiting for the index writer, and whether a new one must wake it.
#[derive(Default)]
struct Inbox {
    /// Requests in the order they were sent.
    commands: Vec<Command>,
    /// How the writer waits, if it does.
    sleep: Sleep,
    /// The writer has ended: requests are refused.
    closed: bool,
}

/// How the index writer waits for requests.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Sleep {
    /// It is working; it looks at the inbox before it waits again.
    #[default]
    Awake,
    /// No subject step is due: any request wakes it.
    UntilWoken,
    /// A subject step falls due soon: only a request that needs an answer wakes it sooner;
    /// handed entries wait for the step (waking a thread per commit cost ≈ 4 % of the server's CPU
    /// under `mixed`).
    UntilDue,
}

/// The inbox and the condition variable its writer waits on.
#[derive(Default)]
struct Shared {
    inbox: Mutex<Inbox>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sends requests to a shard's index writer; cloned into every reader, so that a reader
/// can wait for the indexes without passing through the shard's actor.
#[derive(Clone)]
pub(crate) struct IndexRequests(Arc<Shared>);

impl IndexRequests {
    fn send(&self, command: Command) {
        let urgent = !matches!(command, Command::Entries(_));
        let mut inbox = self.0.lock();
        if inbox.closed {
            drop(inbox);
            refuse(command);
            return;
        }
        inbox.commands.push(command);
        if inbox.sleep == Sleep::UntilWoken || (urgent && inbox.sleep == Sleep::UntilDue) {
            inbox.sleep = Sleep::Awake;
            self.0.wake.notify_one();
        }
    }

    /// Sends what `make` builds and waits (blocking) for its answer.
    fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, StorageError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(make(Box::new(move |r| {
            let _ = tx.send(r);
        })));
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// Hands entries just committed durably (in seq order) to the index writer.
    pub(crate) fn hand(&self, items: Vec<Unindexed>) {
        if !items.is_empty() {
            self.send(Command::Entries(items));
        }
    }

    /// Blocks until `tier` reflects the first `size` entries.
    pub(crate) fn wait_up_to(&self, tier: IndexTier, size: u64) -> Result<(), StorageError> {
        self.call(|reply| Command::UpTo { tier, size, reply })
    }

    /// Resolves once `tier` reflects the first `size` entries (for async readers).
    pub(crate) fn up_to(
        &self,
        tier: IndexTier,
        size: u64,
    ) -> impl std::future::Future<Output = Result<(), StorageError>> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reply: Reply<()> = Box::new(move |r| {
            let _ = tx.send(r);
        });
        self.send(Command::UpTo { tier, size, reply });
        async move { rx.await.unwrap_or_else(|_| Err(stopped())) }
    }

    /// Blocks until everything handed is in both tiers and durable.
    pub(crate) fn durable(&self) -> Result<(), StorageError> {
        self.call(Command::Durable)
    }

    /// Blocks until the erasure's index changes are durable.
    pub(crate) fn erase(&self, erasure: IndexErasure) -> Result<(), StorageError> {
        self.call(|reply| Command::Erase(Box::new(erasure), reply))
    }

    /// Blocks until the scrub's copy of the index file (filled by `ScrubJob::copy`)
    /// has replaced the file; returns the new file's size in bytes.
    pub(crate) fn finish_scrub(&self, copy: DbCell) -> Result<u64, StorageError> {
        self.call(|reply| Command::FinishScrub(Box::new(copy), reply))
    }

    /// Holds back index steps from after the entries handed so far (tests).
    pub(crate) fn hold(&self, hold: IndexHold) {
        self.send(Command::Hold(hold));
    }
}

/// Answers a request the stopped writer will never see.
fn refuse(command: Command) {
    match command {
        Command::Entries(_) | Command::Hold(_) => {}
        Command::UpTo { reply, .. }
        | Command::Durable(reply)
        | Command::Erase(_, reply)
        | Command::Stop(reply) => reply(Err(stopped())),
        Command::FinishScrub(_, reply) => reply(Err(stopped())),
    }
}

/// Why a request to a stopped index writer fails.
const STOPPED: &str = "the index writer has stopped";

fn stopped() -> StorageError {
    StorageError::IndexWriter(STOPPED.into())
}

/// The running index writer of one shard: its thread and the way to reach it.
pub(crate) struct IndexWriter {
    requests: IndexRequests,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IndexWriter {
    /// Starts the thread that owns `store` from now on.
    pub(crate) fn start(store: IndexStore) -> Result<IndexWriter, StorageError> {
        let shared = Arc::new(Shared::default());
        let inbox = Receiver(shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("index-{:04}", store.shard_id))
            .spawn(move || run(store, inbox))
            .map_err(|source| StorageError::File {
                what: "starting the index writer thread",
                source,
            })?;
        Ok(IndexWriter {
            requests: IndexRequests(shared),
            thread: Some(thread),
        })
    }

    /// The way to send it requests.
    pub(crate) fn requests(&self) -> &IndexRequests {
        &self.requests
    }

    /// Indexes everything handed durably, closes the index file and joins the thread.
    pub(crate) fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if let Err(e) = self.requests.call(Command::Stop) {
            tracing::error!(error = %e, "final index step failed; the next open replays it");
        }
        let _ = thread.join();
    }
}

impl Drop for IndexWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// When each tier's next step falls due if no reader asks for it sooner.
#[derive(Default)]
struct Schedule {
    /// `INDEX_DELAY_MS` after the first entry the subject tier lacks arrived.
    subjects: Option<Instant>,
    /// `CUSTOMER_INDEX_DELAY_MS` after the first entry the customer tier lacks arrived.
    customers: Option<Instant>,
}

impl Schedule {
    /// Moves each tier's due step to `at` (after a failed step).
    fn retry_later(&mut self, at: Instant) {
        for due in [&mut self.subjects, &mut self.customers] {
            if due.is_some() {
                *due = Some(at);
            }
        }
    }

    /// The earlier of the two, if any.
    fn next(&self) -> Option<Instant> {
        match (self.subjects, self.customers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// When the index writer hands freed memory back (`memory`): every
/// `MEMORY_RELEASE_INTERVAL_MS` while it works, and once after it goes idle.
struct Release {
    /// The last release.
    last: Instant,
    /// Work was done since the last release.
    owed: bool,
}

impl Release {
    fn new() -> Release {
        Release {
            last: Instant::now(),
            owed: false,
        }
    }

    fn interval() -> Duration {
        Duration::from_millis(MEMORY_RELEASE_INTERVAL_MS)
    }

    /// When the writer must wake: at `due`, or sooner for a release it owes.
    fn wake_at(&self, due: Option<Instant>) -> Option<Instant> {
        if !self.owed || !releases_memory() {
            return due;
        }
        let at = self.last + Release::interval();
        Some(due.map_or(at, |due| due.min(at)))
    }

    /// Notes a turn that took requests.
    fn owe_if(&mut self, worked: bool) {
        self.owed |= worked;
    }

    /// Releases when one is owed and the interval has passed.
    fn release_if_due(&mut self) {
        if self.owed && self.last.elapsed() >= Release::interval() {
            release_memory();
            self.last = Instant::now();
            self.owed = false;
        }
    }
}

/// The index writer's end of the inbox. Dropped when the writer ends (also by a panic):
/// the inbox is closed and every request still in it refused, so no caller waits forever.
struct Receiver(Arc<Shared>);

impl Receiver {
    /// Every request waiting, after waiting until there is one or until `due`. With
    /// `subject_step_due` (a subject step falls due at `due`), handed entries do not wake
    /// the writer sooner: they join that step. Without it they do, so that the subject
    /// tier never waits for the customer tier's later due time.
    fn take(&self, due: Option<Instant>, subject_step_due: bool) -> Vec<Command> {
        let mut inbox = self.0.lock();
        while inbox.commands.is_empty() {
            let now = Instant::now();
            inbox.sleep = if subject_step_due {
                Sleep::UntilDue
            } else {
                Sleep::UntilWoken
            };
            match due {
                Some(due) if due <= now => break,
                Some(due) => {
                    inbox = self
                        .0
                        .wake
                        .wait_timeout(inbox, due - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                None => {
                    inbox = self.0.wake.wait(inbox).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
        inbox.sleep = Sleep::Awake;
        std::mem::take(&mut inbox.commands)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let left = {
            let mut inbox = self.0.lock();
            inbox.closed = true;
            std::mem::take(&mut inbox.commands)
        };
        left.into_iter().for_each(refuse);
    }
}

/// The index writer's loop: takes every request waiting, steps each tier when it falls due
/// or a waiting reader needs it, then answers the readers whose tier reached their size.
fn run(mut store: IndexStore, inbox: Receiver) {
    let mut waiters: Vec<(IndexTier, u64, Reply<()>)> = Vec::new();
    let mut schedule = Schedule::default();
    let mut stop: Option<Reply<()>> = None;
    let mut hold = IndexHold::Nothing;
    let mut release = Release::new();
    while stop.is_none() {
        let due = release.wake_at(schedule.next());
        let commands = inbox.take(due, schedule.subjects.is_some());
        release.owe_if(!commands.is_empty());
        let mut commands = commands.into_iter();
        for command in commands.by_ref() {
            match command {
                Command::Entries(items) => store.take(items),
                Command::UpTo { tier, size, reply } => waiters.push((tier, size, reply)),
                Command::Durable(reply) => reply(store.step(IndexTier::All, true)),
                Command::Erase(erasure, reply) => reply(store.erase(*erasure)),
                Command::FinishScrub(copy, reply) => reply(store.finish_scrub(*copy)),
                Command::Hold(new) => hold = new,
                Command::Stop(reply) => {
                    stop = Some(reply);
                    break;
                }
            }
        }
        // Nothing follows a stop but requests of callers that raced it.
        commands.for_each(refuse);
        if stop.is_some() {
            break;
        }
        let outcome = index_steps(&mut store, hold, &waiters, &mut schedule);
        let failed = outcome.err().map(|e| {
            let e = store.note_failure(e);
            if !e.is_io_failure() {
                tracing::error!(error = %e, "index step failed; the entries stay queued");
            }
            schedule.retry_later(Instant::now() + Duration::from_millis(INDEX_RETRY_MS));
            e.to_string()
        });
        answer(&store, &mut waiters, failed);
        release.release_if_due();
    }
    let last = match hold {
        IndexHold::Nothing => store.step(IndexTier::All, true),
        _ => Ok(()),
    };
    answer(&store, &mut waiters, Some(STOPPED.into()));
    drop(store.db.close());
    if let Some(reply) = stop {
        reply(last);
    }
}

/// The steps one turn of the loop runs: a tier's step when it falls due or a waiting
/// reader needs it (the customer tier's when due is durable); entries the tier lacks set
/// its due time.
fn index_steps(
    store: &mut IndexStore,
    hold: IndexHold,
    waiters: &[(IndexTier, u64, Reply<()>)],
    schedule: &mut Schedule,
) -> Result<(), StorageError> {
    let now = Instant::now();
    let asked = |tier: IndexTier, reached: u64| {
        waiters
            .iter()
            .any(|(t, size, _)| (*t == tier || tier == IndexTier::Subjects) && *size > reached)
    };
    if hold != IndexHold::BothTiers && store.indexed_upto < store.handed() {
        let due = *schedule
            .subjects
            .get_or_insert(now + Duration::from_millis(INDEX_DELAY_MS));
        if due <= now || asked(IndexTier::Subjects, store.indexed_upto) {
            store.step(IndexTier::Subjects, false)?;
            schedule.subjects = None;
        }
    }
    if hold != IndexHold::Nothing || store.queue.is_empty() {
        if store.queue.is_empty() {
            schedule.customers = None;
        }
        return Ok(());
    }
    let due = *schedule
        .customers
        .get_or_insert(now + Duration::from_millis(CUSTOMER_INDEX_DELAY_MS));
    // Half-way to the lag bound the step runs early, so that the shard's writer never
    // has to wait for it (at 15,000 events/s on one shard, a second's entries reach the
    // bound: its waits were the 250 ms p99.9 of one customer's `record`).
    let due = due <= now || store.queue.len() >= CUSTOMER_STEP_ENTRIES;
    if due || asked(IndexTier::All, store.customer_indexed_upto) {
        store.step(IndexTier::All, due)?;
        schedule.customers = None;
        schedule.subjects = None;
    }
    Ok(())
}

/// Answers the waiters whose tier reached their size; with `failed` (why), every waiter.
fn answer(
    store: &IndexStore,
    waiters: &mut Vec<(IndexTier, u64, Reply<()>)>,
    failed: Option<String>,
) {
    let reached = |tier: IndexTier| match tier {
        IndexTier::Subjects => store.indexed_upto,
        IndexTier::All => store.customer_indexed_upto,
    };
    let mut i = 0;
    while i < waiters.len() {
        let (tier, size, _) = &waiters[i];
        if failed.is_some() || reached(*tier) >= *size {
            let (_, _, reply) = waiters.swap_remove(i);
            reply(match &failed {
                None => Ok(()),
                Some(why) => Err(store
                    .failure()
                    .unwrap_or_else(|| StorageError::IndexWriter(why.clone()))),
            });
        } else {
            i += 1;
        }
    }
}
