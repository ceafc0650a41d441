//! The shard actor: the single writer of one shard, with group commit.
//!
//! Appends are queued as they arrive; one `Flush` per burst commits every queued batch in
//! one durable transaction and only then answers each caller. An idle shard commits a
//! burst at once; a busy one (it just committed) first waits `GROUP_COMMIT_WAIT_US` for
//! more appends, unless `GROUP_COMMIT_EARLY_EVENTS` are already pending. The secondary indexes
//! follow on the shard's index writer (its own thread and file: `index_writer`), which
//! this actor hands every commit's entries to and waits for only when
//! `MAX_INDEX_LAG_ENTRIES` wait or before an erasure. Reads use redb snapshots
//! (through [`ShardHandle::reader`], or the read messages here, which run on the blocking
//! pool), so they never wait for a commit to finish.

use std::path::Path;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::erase::{Erased, ErasureRequest};
use super::error::{AppendError, ErasureError, OpenError, QueryError, StorageError};
use super::index::PurposeState;
use super::reader::{
    ConsistencyProof, DailyCount, InclusionProof, Order, Page, ShardReader, StoredEvent,
};
use super::scrub::{ScrubCopy, ScrubReport};
use super::store::{Appended, IndexTier, Store, WriteStats};
use crate::format::ConsentEvent;
use crate::format::limits::MAX_BATCH_EVENTS;
use crate::verify::ShardHead;

/// Messages that may wait in a shard's mailbox; senders wait (backpressure) beyond it.
pub const MAILBOX_CAPACITY: usize = 1_024;

/// How long after the index writer receives an entry the subject tier lacks it runs the
/// subject tier's step if no reader asks for it sooner (a reader of a subject with entries
/// the tier lacks wakes it at once; readers of other subjects never wait for it). Entries
/// handed while a step is due join it without waking the thread. Measured
/// (docs/benchmarks.md): in session 16, before readers waited only for their own subject,
/// 20 ms made readers wait (`mixed` −7 to −15 %) and 2 ms was taken; in session 30, 10 ms
/// instead of 2, alternated: `record` on the 10M ledger +9 % (4 of 4 pairs, server CPU per
/// event −10 %), on a fresh server −9 % server CPU per event (3 of 3), with 6 connections
/// −10 % (3 of 3), `mixed` −4 % (3 of 4), `batch` unchanged. A step then carries five times
/// the entries, and its fixed cost (a write transaction and its commit) is shared by them.
pub const INDEX_DELAY_MS: u64 = 10;

/// How long after the index writer receives an entry the customer tier lacks it runs the
/// full index step (both tiers, durable) if no customer-wide read asks for it sooner (and
/// unless half the lag bound is reached first). The customer tier's rows sit at each
/// customer's end of its table: under load from many customers an index step copies about
/// one page per event there, whatever its size, so indexing seconds of entries at once
/// copies each customer's page once instead of once per event (docs/benchmarks.md,
/// session 10). The step is also the index file's durable commit: its `fdatasync` writes
/// every page the subject steps dirtied since the last one, and on a 10M-event ledger
/// (one random `subjects` leaf and branch per event) that burst delays the shard files'
/// commits. 3 s instead of 1 s (session 17, `benches/http/flat.sh`, 2 × 2 runs): 10M
/// `record` p99 17–19 ms instead of 22–27 ms, 15.0–15.5 instead of 16.3–17.0 KB written
/// to the device per event (8.1–8.2 instead of 8.9–9.0 on a fresh ledger), req/s +3–5 %;
/// the queue then holds up to 3 s of a shard's entries (still at most
/// `MAX_INDEX_LAG_ENTRIES` / 2, as before at higher rates): peak RSS at 10M 226–237 MiB
/// instead of 210.
pub const CUSTOMER_INDEX_DELAY_MS: u64 = 3_000;

/// How long the writer waits for more appends before a durable commit while it is busy
/// (it committed within the last `BUSY_WINDOW_MS`). A durable commit is the write path's
/// main cost (≈ 360 µs of CPU each on the benchmark machine, most of it the kernel writing
/// pages out), so under load two or three sparse writes then share one; an idle shard
/// commits at once. Measured in docs/benchmarks.md (session 6): `mixed` +18 %.
pub const GROUP_COMMIT_WAIT_US: u64 = 1_000;

/// A shard that committed within this window counts as busy (see `GROUP_COMMIT_WAIT_US`).
pub const BUSY_WINDOW_MS: u64 = 10;

/// Events pending at which a waiting commit starts at once (after the appends already in
/// the mailbox, which join it): a commit of this many already shares its cost well, and
/// under heavy load the wait only left the writer idle. Measured (docs/benchmarks.md,
/// session 7): 16 instead of 256 gave `record` +6–9 % (about 19 events per commit instead
/// of 23, 250 commits/s per shard instead of 188).
pub const GROUP_COMMIT_EARLY_EVENTS: usize = 16;

/// When a shard waits to group appends into one commit (defaults: `GROUP_COMMIT_WAIT_US`,
/// `BUSY_WINDOW_MS`; tests stretch them to observe the grouping).
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// How long a busy shard waits for more appends before committing.
    pub wait: std::time::Duration,
    /// A shard that committed within this window counts as busy.
    pub busy_window: std::time::Duration,
}

impl Default for GroupCommit {
    fn default() -> GroupCommit {
        GroupCommit {
            wait: std::time::Duration::from_micros(GROUP_COMMIT_WAIT_US),
            busy_window: std::time::Duration::from_millis(BUSY_WINDOW_MS),
        }
    }
}

/// Where the answer to an append goes.
pub type AppendReply = oneshot::Sender<Result<Vec<Appended>, AppendError>>;

/// What one group commit did, for metrics.
#[derive(Debug, Clone)]
pub struct CommitReport {
    /// Shard that committed.
    pub shard_id: u32,
    /// Requests (batches) answered by the commit.
    pub batches: u64,
    /// Events in those requests (including refused ones).
    pub events: u64,
    /// Wall time of the transaction, commit included.
    pub duration: std::time::Duration,
    /// The new entries this commit made durable, in sequence order, each with its
    /// personal record: what subscriptions stream. Empty when the commit failed, and when
    /// the observer did not want entries at the time (see [`CommitObserver::with_entries`]).
    pub published: std::sync::Arc<[Published]>,
}

/// A newly committed entry with its personal record.
#[derive(Debug, Clone)]
pub struct Published {
    /// The entry.
    pub entry: crate::format::Entry,
    /// Its chain hash.
    pub entry_hash: crate::hash::Hash,
    /// Its personal record.
    pub personal: crate::format::PersonalRecord,
}

/// Receives a [`CommitReport`] after every group commit (metrics and the live feed live in
/// the gateway).
#[derive(Clone)]
pub struct CommitObserver {
    /// Called on the shard's thread after every group commit.
    on_commit: std::sync::Arc<dyn Fn(CommitReport) + Send + Sync>,
    /// Asked after each commit whether the new entries are wanted now (by shard id):
    /// copying every entry and personal record for a feed nobody listens to was ≈ 5 % of
    /// the batch path's CPU.
    wants_entries: Option<std::sync::Arc<dyn Fn(u32) -> bool + Send + Sync>>,
}

impl CommitObserver {
    /// An observer of the reports alone: their `published` lists stay empty.
    pub fn reports(on_commit: impl Fn(CommitReport) + Send + Sync + 'static) -> CommitObserver {
        CommitObserver {
            on_commit: std::sync::Arc::new(on_commit),
            wants_entries: None,
        }
    }

    /// An observer that also takes each commit's new entries whenever `wants_entries`
    /// says yes for the shard at the time, after the commit is durable and visible to
    /// readers. A listener that starts after a "no" must therefore read what it missed
    /// from the journal (the live feed's subscribers subscribe before they read).
    pub fn with_entries(
        on_commit: impl Fn(CommitReport) + Send + Sync + 'static,
        wants_entries: impl Fn(u32) -> bool + Send + Sync + 'static,
    ) -> CommitObserver {
        CommitObserver {
            on_commit: std::sync::Arc::new(on_commit),
            wants_entries: Some(std::sync::Arc::new(wants_entries)),
        }
    }
}

/// The actor that owns one shard's [`Store`].
pub struct ShardActor {
    /// `None` once stopped: later messages get `ShardStopped`.
    store: Option<Store>,
    /// Batches waiting for the next group commit, with their callers.
    pending: Vec<(Vec<ConsentEvent>, AppendReply)>,
    /// Told about every commit.
    observer: Option<CommitObserver>,
    /// Bound of the mailbox.
    mailbox_capacity: usize,
    /// When to wait for more appends before committing.
    group_commit: GroupCommit,
    /// When the last group commit ended (`None` before the first).
    last_commit: Option<std::time::Instant>,
    /// The delayed `Flush` of a busy shard, cancelled when enough events arrive sooner.
    waiting_flush: Option<SpawnHandle>,
    /// Events in `pending`.
    pending_events: usize,
    /// The scrub under way, if one is.
    scrubbing: Option<Scrubbing>,
}

impl Actor for ShardActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        if super::memory::releases_memory() {
            let every = std::time::Duration::from_millis(super::memory::MEMORY_RELEASE_INTERVAL_MS);
            ctx.run_interval(every, |_, _| super::memory::release_memory());
        }
    }
}

/// Append one atomic batch (1..=`MAX_BATCH_EVENTS` events of one customer).
#[derive(Message)]
#[rtype(result = "Result<Vec<Appended>, AppendError>")]
pub struct Append(pub Vec<ConsentEvent>);

/// Append one atomic batch, answering on `reply`. Unlike [`Append`] it can be sent with
/// `try_send`, so a caller can tell a full mailbox (overload) from a slow commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit {
    /// The batch.
    pub events: Vec<ConsentEvent>,
    /// Where the outcome goes.
    pub reply: AppendReply,
}

/// Commit everything pending (sent by the actor to itself).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

/// Answered once `tier` reflects at least the first `size` entries (at once if it already
/// does; otherwise after the index writer's step that reaches it).
#[derive(Message)]
#[rtype(result = "Result<(), QueryError>")]
pub struct IndexUpTo {
    /// Entries the reader needs indexed.
    pub size: u64,
    /// The tier its rows are in (`All` for customer-wide reads).
    pub tier: IndexTier,
}

/// Commit what is pending, close the database and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Erase personal records (after committing what is pending). Answered once durable.
#[derive(Message)]
#[rtype(result = "Result<Erased, ErasureError>")]
pub struct Erase(pub ErasureRequest);

/// Rewrite the shard file if an erasure happened since its last rewrite (or always, with
/// `force`), so that no erased byte remains in it. `None` when there was nothing to do.
#[derive(Message)]
#[rtype(result = "Result<Option<ScrubReport>, StorageError>")]
pub struct Scrub {
    /// Rewrite even when no erasure is pending.
    pub force: bool,
    /// Asked by the scrub timer: waits its turn after the shard's last scrub
    /// (`SCRUB_SPACING_FACTOR`); a scrub asked for by an operator runs at once.
    pub scheduled: bool,
}

/// Write-path counters.
#[derive(Message)]
#[rtype(result = "Result<WriteStats, QueryError>")]
pub struct GetWriteStats;

impl Handler<Append> for ShardActor {
    type Result = ResponseFuture<Result<Vec<Appended>, AppendError>>;

    fn handle(&mut self, msg: Append, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.enqueue(msg.0, tx, ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(AppendError::ShardStopped)) })
    }
}

impl Handler<Submit> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        self.enqueue(msg.events, msg.reply, ctx);
    }
}

impl Handler<Flush> for ShardActor {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {
        self.waiting_flush = None;
        self.flush();
    }
}

impl Handler<IndexUpTo> for ShardActor {
    type Result = ResponseFuture<Result<(), QueryError>>;

    fn handle(&mut self, msg: IndexUpTo, _: &mut Context<Self>) -> Self::Result {
        let Some(store) = self.store.as_ref() else {
            return Box::pin(async { Err(QueryError::ShardStopped) });
        };
        let wait = store.reader().wait_indexed(msg.tier, msg.size);
        Box::pin(async move { Ok(wait.await?) })
    }
}

impl ShardActor {
    fn enqueue(&mut self, events: Vec<ConsentEvent>, tx: AppendReply, ctx: &mut Context<Self>) {
        let count = events.len();
        if count == 0 || count > MAX_BATCH_EVENTS {
            let _ = tx.send(Err(AppendError::BatchSize {
                count: count as u64,
                max: MAX_BATCH_EVENTS as u64,
            }));
        } else if self.store.is_none() {
            let _ = tx.send(Err(AppendError::ShardStopped));
        } else if let Some(Err(e)) = self.store.as_ref().map(Store::check_writable) {
            let _ = tx.send(Err(AppendError::Storage(e)));
        } else {
            let first = self.pending.is_empty();
            self.pending_events += count;
            self.pending.push((events, tx));
            let enough = self.pending_events >= GROUP_COMMIT_EARLY_EVENTS;
            if first && self.busy() && !enough {
                self.waiting_flush = Some(ctx.notify_later(Flush, self.group_commit.wait));
            } else if first {
                // Runs after every message already in the mailbox: they share the commit.
                ctx.notify(Flush);
            } else if enough && let Some(waiting) = self.waiting_flush.take() {
                ctx.cancel_future(waiting);
                ctx.notify(Flush);
            }
        }
    }

    /// Whether the shard committed within the busy window.
    fn busy(&self) -> bool {
        self.last_commit
            .is_some_and(|at| at.elapsed() < self.group_commit.busy_window)
    }

    fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.pending_events = 0;
        if pending.is_empty() {
            return;
        }
        let Some(store) = self.store.as_mut() else {
            for (_, tx) in pending {
                let _ = tx.send(Err(AppendError::ShardStopped));
            }
            return;
        };
        let (batches, replies): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
        let batch_count = batches.len() as u64;
        let event_count = batches.iter().map(|b| b.len() as u64).sum();
        let started = std::time::Instant::now();
        let outcome = store.append_batches(batches);
        if let Some(observer) = &self.observer {
            let shard_id = store.head().shard_id;
            let wanted = observer.wants_entries.as_ref().is_some_and(|w| w(shard_id));
            let mut published = Vec::new();
            if wanted && let Ok(results) = &outcome {
                for items in results.iter().filter_map(|r| r.as_ref().ok()) {
                    for a in items.iter().filter(|a| !a.duplicate) {
                        published.push(Published {
                            entry: a.entry.clone(),
                            entry_hash: a.entry_hash,
                            personal: a.personal.clone().expect("a new event's personal record"),
                        });
                    }
                }
            }
            (observer.on_commit)(CommitReport {
                shard_id,
                batches: batch_count,
                events: event_count,
                duration: started.elapsed(),
                published: published.into(),
            });
        }
        self.last_commit = Some(std::time::Instant::now());
        match outcome {
            Ok(results) => {
                assert_eq!(results.len(), replies.len(), "one result per batch");
                for (result, tx) in results.into_iter().zip(replies) {
                    let _ = tx.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "shard commit failed; nothing of this group was written");
                store.progress.note_failure(&e);
                for tx in replies {
                    let _ = tx.send(Err(AppendError::Storage(commit_failure(store, &e))));
                }
            }
        }
    }
}

/// What each caller of a failed group commit hears (the error is not `Clone`): the
/// shard's storage failure when the commit failed on I/O.
fn commit_failure(store: &Store, e: &StorageError) -> StorageError {
    match store.check_writable() {
        Err(failed) => failed,
        Ok(()) => StorageError::Corrupt {
            table: "commit",
            detail: e.to_string(),
        },
    }
}

impl Handler<Stop> for ShardActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.flush();
        if let Some(running) = self.scrubbing.take() {
            // Its callers learn that it stopped; the copy's files go at the next open.
            running
                .cancel
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(store) = self.store.as_mut()
            && let Err(e) = store.index_now(true)
        {
            tracing::error!(error = %e, "final index step failed; the next open rebuilds it");
        }
        if let Some(store) = self.store.take() {
            store.close();
        }
        ctx.stop();
    }
}

impl Handler<Erase> for ShardActor {
    type Result = Result<Erased, ErasureError>;

    fn handle(&mut self, msg: Erase, _: &mut Context<Self>) -> Self::Result {
        self.flush();
        let store = self.store.as_mut().ok_or(ErasureError::ShardStopped)?;
        store.check_writable()?;
        let outcome = store.erase(&msg.0);
        if let Err(ErasureError::Storage(e)) = &outcome {
            store.progress.note_failure(e);
        }
        outcome
    }
}

/// Where the answer to a scrub request goes.
type ScrubReply = oneshot::Sender<Result<Option<ScrubReport>, StorageError>>;

/// A scrub under way: its copy runs on a thread of its own while the shard appends.
struct Scrubbing {
    /// Callers waiting for its report (the first asked for it; the others joined).
    waiters: Vec<ScrubReply>,
    /// Stops the copy when the shard stops.
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A scrub's copy is done (or failed): the writer pauses to hand it over (sent by the
/// copying thread).
#[derive(Message)]
#[rtype(result = "()")]
struct ScrubCopied(Result<ScrubCopy, StorageError>);

impl Handler<Scrub> for ShardActor {
    type Result = ResponseFuture<Result<Option<ScrubReport>, StorageError>>;

    fn handle(&mut self, msg: Scrub, ctx: &mut Context<Self>) -> Self::Result {
        let nothing = || -> Self::Result { Box::pin(async { Ok(None) }) };
        let Some(store) = self.store.as_ref() else {
            return nothing();
        };
        if !msg.force && !store.scrub_pending() {
            return nothing();
        }
        if let Err(e) = store.check_writable() {
            return Box::pin(async move { Err(e) });
        }
        if let Some(running) = self.scrubbing.as_mut() {
            // A timer tick needs nothing more; an operator's request waits for this one.
            if msg.scheduled {
                return nothing();
            }
            return waiting_on(&mut running.waiters);
        }
        if msg.scheduled {
            let wait = store.scheduled_scrub_wait();
            if !wait.is_zero() {
                tracing::info!(
                    shard = store.head().shard_id,
                    wait_ms = wait.as_millis() as u64,
                    "scheduled scrub deferred: the last one took long (SCRUB_SPACING_FACTOR)"
                );
                return nothing();
            }
        }
        // The copy starts from the last commit: what waits now would only be copied later.
        self.flush();
        let store = self
            .store
            .as_ref()
            .expect("flushing does not stop the shard");
        let job = match store.scrub_job() {
            Ok(job) => job,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let cancel = job.canceller();
        let addr = ctx.address();
        let spawned = std::thread::Builder::new()
            .name(format!("scrub-{:04}", store.head().shard_id))
            .spawn(move || addr.do_send(ScrubCopied(job.copy())));
        if let Err(source) = spawned {
            let what = "starting the scrub thread";
            return Box::pin(async move { Err(StorageError::File { what, source }) });
        }
        tracing::info!(
            shard = store.head().shard_id,
            "scrub started: the files are copied while writes go on"
        );
        let mut waiters = Vec::new();
        let answer = waiting_on(&mut waiters);
        self.scrubbing = Some(Scrubbing { waiters, cancel });
        answer
    }
}

/// A new caller of the running scrub: its reply joins `waiters`; the future answers it.
fn waiting_on(
    waiters: &mut Vec<ScrubReply>,
) -> ResponseFuture<Result<Option<ScrubReport>, StorageError>> {
    let (tx, rx) = oneshot::channel();
    waiters.push(tx);
    Box::pin(async move { rx.await.unwrap_or_else(|_| Err(scrub_stopped())) })
}

impl Handler<ScrubCopied> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: ScrubCopied, _: &mut Context<Self>) {
        let Some(running) = self.scrubbing.take() else {
            return;
        };
        self.flush();
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let shard = store.head().shard_id;
        let outcome = msg.0.and_then(|copy| store.finish_scrub(copy));
        match &outcome {
            Ok(report) => tracing::info!(
                shard,
                bytes_before = report.bytes_before,
                bytes_after = report.bytes_after,
                elapsed_ms = report.took_ms,
                paused_ms = report.paused_ms,
                "shard file rewritten; erased records are gone from it"
            ),
            Err(e) => {
                store.discard_scrub();
                // Not noted as the shard's failure: a full disk fails the copy's writes,
                // which leave the live files usable (an I/O failure of theirs shows at the
                // next commit).
                tracing::error!(shard, error = %e, "scrub failed; the files stay as they were");
            }
        }
        let mut waiters = running.waiters.into_iter();
        let first = waiters.next();
        for tx in waiters {
            let shared = match &outcome {
                Ok(report) => Ok(Some(*report)),
                Err(e) => Err(StorageError::Corrupt {
                    table: "scrub",
                    detail: e.to_string(),
                }),
            };
            let _ = tx.send(shared);
        }
        if let Some(tx) = first {
            let _ = tx.send(outcome.map(Some));
        }
    }
}

fn scrub_stopped() -> StorageError {
    StorageError::IndexWriter("the shard stopped before its scrub finished".into())
}

impl Handler<GetWriteStats> for ShardActor {
    type Result = Result<WriteStats, QueryError>;

    fn handle(&mut self, _: GetWriteStats, _: &mut Context<Self>) -> Self::Result {
        self.store
            .as_ref()
            .map(Store::stats)
            .ok_or(QueryError::ShardStopped)
    }
}

/// Declares a read message whose handler runs `$body` with a [`ShardReader`] on the
/// blocking pool.
macro_rules! read_message {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* } -> $out:ty, |$r:ident, $m:ident| $body:expr) => {
        $(#[$doc])*
        pub struct $name { $(#[allow(missing_docs)] pub $field: $ty),* }

        impl Message for $name {
            type Result = Result<$out, QueryError>;
        }

        impl Handler<$name> for ShardActor {
            type Result = ResponseFuture<Result<$out, QueryError>>;

            fn handle(&mut self, $m: $name, _: &mut Context<Self>) -> Self::Result {
                let Some(store) = self.store.as_mut() else {
                    return Box::pin(async { Err(QueryError::ShardStopped) });
                };
                // A read through the actor sees every write acknowledged before it.
                let $r = store.reader();
                let fresh = $r.wait_indexed(IndexTier::All, store.head().size);
                Box::pin(async move {
                    fresh.await?;
                    tokio::task::spawn_blocking(move || -> Result<$out, QueryError> { $body })
                        .await
                        .unwrap_or(Err(QueryError::ShardStopped))
                })
            }
        }
    };
}

read_message!(
    /// The committed head.
    GetHead {} -> ShardHead, |r, _m| Ok(r.head()?)
);
read_message!(
    /// One event by sequence number.
    GetEvent { seq: u64 } -> Option<StoredEvent>, |r, m| Ok(r.event(m.seq)?)
);
read_message!(
    /// A subject's current state.
    GetCurrentState { customer_id: String, subject_id: String } -> Vec<PurposeState>,
    |r, m| Ok(r.current_state(&m.customer_id, &m.subject_id)?)
);
read_message!(
    /// A page of a subject's history.
    GetHistory { customer_id: String, subject_id: String, order: Order, after: Option<u64>, limit: u32 } -> Page<u64>,
    |r, m| Ok(r.history(&m.customer_id, &m.subject_id, m.order, m.after, m.limit)?)
);
read_message!(
    /// A page of a customer's events in a time range.
    GetCustomerEvents { customer_id: String, since_ms: i64, until_ms: i64, after: Option<(i64, u64)>, limit: u32 } -> Page<(i64, u64)>,
    |r, m| Ok(r.customer_events(&m.customer_id, m.since_ms, m.until_ms, m.after, m.limit)?)
);
read_message!(
    /// Per-purpose daily counts.
    GetDailyCounts { customer_id: String, since_ms: i64, until_ms: i64 } -> Vec<DailyCount>,
    |r, m| Ok(r.daily_counts(&m.customer_id, m.since_ms, m.until_ms)?)
);
read_message!(
    /// Inclusion proof of `seq` at tree size `size`.
    GetInclusionProof { seq: u64, size: u64 } -> InclusionProof,
    |r, m| r.inclusion_proof(m.seq, m.size)
);
read_message!(
    /// Consistency proof between two tree sizes.
    GetConsistencyProof { old_size: u64, new_size: u64 } -> ConsistencyProof,
    |r, m| r.consistency_proof(m.old_size, m.new_size)
);

/// A running shard: its actor's address and a direct read handle.
pub struct ShardHandle {
    /// Address of the actor (appends and reads as messages).
    pub addr: Addr<ShardActor>,
    reader: ShardReader,
    arbiter: Arbiter,
}

impl ShardHandle {
    /// Opens the shard file and starts its actor on a thread of its own, so a blocking
    /// commit blocks only this shard. Must be called inside a running actix System.
    pub fn start(path: &Path, shard_id: u32) -> Result<ShardHandle, OpenError> {
        ShardHandle::start_observed(path, shard_id, None, MAILBOX_CAPACITY)
    }

    /// Like [`ShardHandle::start`], reporting every commit to `observer`, with a mailbox of
    /// `mailbox_capacity` messages.
    pub fn start_observed(
        path: &Path,
        shard_id: u32,
        observer: Option<CommitObserver>,
        mailbox_capacity: usize,
    ) -> Result<ShardHandle, OpenError> {
        let group_commit = GroupCommit::default();
        ShardHandle::start_with(path, shard_id, observer, mailbox_capacity, group_commit)
    }

    /// Like [`ShardHandle::start_observed`], grouping commits as `group_commit` says.
    pub fn start_with(
        path: &Path,
        shard_id: u32,
        observer: Option<CommitObserver>,
        mailbox_capacity: usize,
        group_commit: GroupCommit,
    ) -> Result<ShardHandle, OpenError> {
        let store = Store::open(path, shard_id)?;
        Ok(ShardHandle::serve(
            store,
            observer,
            mailbox_capacity,
            group_commit,
        ))
    }

    /// Starts the actor of a shard opened already (a server opens its shards' files on
    /// several threads at once, then starts their actors), as [`ShardHandle::start_with`]
    /// does. Must be called inside a running actix System.
    pub fn serve(
        store: Store,
        observer: Option<CommitObserver>,
        mailbox_capacity: usize,
        group_commit: GroupCommit,
    ) -> ShardHandle {
        let reader = store.reader();
        let arbiter = Arbiter::new();
        let addr = ShardActor::start_in_arbiter(&arbiter.handle(), move |_| ShardActor {
            store: Some(store),
            pending: Vec::new(),
            observer,
            mailbox_capacity: mailbox_capacity.max(1),
            group_commit,
            last_commit: None,
            waiting_flush: None,
            pending_events: 0,
            scrubbing: None,
        });
        ShardHandle {
            addr,
            reader,
            arbiter,
        }
    }

    /// A read handle for direct (non-actor) reads.
    pub fn reader(&self) -> &ShardReader {
        &self.reader
    }

    /// Waits until both tiers of the secondary indexes reflect every entry of `customer_id`
    /// committed before this call, so that a customer-wide read (time range, counters,
    /// expiring consents) begun afterwards sees every acknowledged write (the index steps
    /// run behind the commit). Immediate when they already do, and when only other
    /// customers' entries wait.
    pub async fn indexes_fresh(&self, customer_id: &str) -> Result<(), QueryError> {
        self.index_step_if(IndexTier::All, |r| r.has_unindexed(customer_id))
            .await
    }

    /// As [`ShardHandle::indexes_fresh`] for a read of one subject's rows (its current
    /// state and history): waits only when that subject has unindexed entries, so reads of
    /// a customer's other subjects never wait for the writes of one.
    pub async fn subject_indexes_fresh(
        &self,
        customer_id: &str,
        subject_id: &str,
    ) -> Result<(), QueryError> {
        self.index_step_if(IndexTier::Subjects, |r| {
            r.has_unindexed_subject(customer_id, subject_id)
        })
        .await
    }

    /// Asks for an index step of `tier` up to the committed size, and waits for it, when
    /// that tier lags that size and `waiting` says the caller's rows are among the
    /// unindexed ones.
    async fn index_step_if(
        &self,
        tier: IndexTier,
        waiting: impl FnOnce(&ShardReader) -> bool,
    ) -> Result<(), QueryError> {
        let size = self.reader.committed_size();
        if self.reader.indexed_size_in(tier) >= size || !waiting(&self.reader) {
            return Ok(());
        }
        Ok(self.reader.wait_indexed(tier, size).await?)
    }

    /// Commits what is pending, closes the file and ends the shard's thread.
    pub async fn stop(self) {
        let _ = self.addr.send(Stop).await;
        drop(self.reader);
        self.arbiter.stop();
    }
}
