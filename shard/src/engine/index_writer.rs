//! The index writer: a thread per shard that owns the shard's index file
//! (`shard-NNNN.index.redb`) and keeps the secondary indexes behind the journal.
//!
//! The shard's writer commits journal, Merkle nodes, personal records and idempotency keys
//! durably in the shard file, answers its callers, and hands the new consent entries here.
//! This thread applies the subject tier as soon as entries arrive (whatever arrived
//! meanwhile joins the step) and both tiers `CUSTOMER_INDEX_DELAY_MS` after the first entry
//! the customer tier lacks, durably; it answers readers waiting for a tier to reach a size,
//! and applies an erasure's index changes after the shard commit that erased. Neither
//! writer waits for the other's transactions, except at the lag bound
//! (`MAX_INDEX_LAG_ENTRIES`) and during an erasure. See docs/design.md §5.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::actor::{CUSTOMER_INDEX_DELAY_MS, INDEX_DELAY_MS};
use super::error::StorageError;
use super::index_file::{IndexErasure, IndexStore, Unindexed};
use super::scrub::ScrubReport;
use super::store::IndexTier;

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
    /// Rewrite the index file with its live rows only (after erasures).
    Scrub(Reply<ScrubReport>),
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
    /// No step runs except those a `Durable`, `Erase` or `Scrub` request makes.
    BothTiers,
}

/// Sends requests to a shard's index writer; cloned into every reader, so that a reader
/// can wait for the indexes without passing through the shard's actor.
#[derive(Clone)]
pub(crate) struct IndexRequests(mpsc::Sender<Command>);

impl IndexRequests {
    fn send(&self, command: Command) {
        if let Err(mpsc::SendError(command)) = self.0.send(command) {
            refuse(command);
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

    /// Blocks until the index file is rewritten.
    pub(crate) fn scrub(&self) -> Result<ScrubReport, StorageError> {
        self.call(Command::Scrub)
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
        Command::Scrub(reply) => reply(Err(stopped())),
    }
}

fn stopped() -> StorageError {
    StorageError::IndexWriter("the index writer has stopped".into())
}

/// The running index writer of one shard: its thread and the way to reach it.
pub(crate) struct IndexWriter {
    requests: IndexRequests,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IndexWriter {
    /// Starts the thread that owns `store` from now on.
    pub(crate) fn start(store: IndexStore) -> Result<IndexWriter, StorageError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("index-{:04}", store.shard_id))
            .spawn(move || run(store, rx))
            .map_err(|source| StorageError::File {
                what: "starting the index writer thread",
                source,
            })?;
        Ok(IndexWriter {
            requests: IndexRequests(tx),
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
    /// The earlier of the two, if any.
    fn next(&self) -> Option<Instant> {
        match (self.subjects, self.customers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The index writer's loop: takes every request waiting, steps each tier when it falls due
/// or a waiting reader needs it, then answers the readers whose tier reached their size.
fn run(mut store: IndexStore, rx: mpsc::Receiver<Command>) {
    let mut waiters: Vec<(IndexTier, u64, Reply<()>)> = Vec::new();
    let mut schedule = Schedule::default();
    let mut stop: Option<Reply<()>> = None;
    let mut hold = IndexHold::Nothing;
    while stop.is_none() {
        let first = match schedule.next() {
            Some(due) => match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => break,
            },
        };
        for command in first.into_iter().chain(rx.try_iter()) {
            match command {
                Command::Entries(items) => store.take(items),
                Command::UpTo { tier, size, reply } => waiters.push((tier, size, reply)),
                Command::Durable(reply) => reply(store.step(IndexTier::All, true)),
                Command::Erase(erasure, reply) => reply(store.erase(*erasure)),
                Command::Scrub(reply) => reply(store.scrub()),
                Command::Hold(new) => hold = new,
                Command::Stop(reply) => {
                    stop = Some(reply);
                    break;
                }
            }
        }
        if stop.is_some() {
            break;
        }
        let outcome = index_steps(&mut store, hold, &waiters, &mut schedule);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "index step failed; the entries stay queued");
        }
        answer(&store, &mut waiters, outcome.err());
    }
    let last = match hold {
        IndexHold::Nothing => store.step(IndexTier::All, true),
        _ => Ok(()),
    };
    answer(&store, &mut waiters, Some(stopped()));
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
    if due <= now || asked(IndexTier::All, store.customer_indexed_upto) {
        store.step(IndexTier::All, due <= now)?;
        schedule.customers = None;
        schedule.subjects = None;
    }
    Ok(())
}

/// Answers the waiters whose tier reached their size; with `failed`, every waiter.
fn answer(
    store: &IndexStore,
    waiters: &mut Vec<(IndexTier, u64, Reply<()>)>,
    failed: Option<StorageError>,
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
                Some(e) => Err(StorageError::IndexWriter(e.to_string())),
            });
        } else {
            i += 1;
        }
    }
}
