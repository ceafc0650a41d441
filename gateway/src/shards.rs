//! The one narrow interface through which the gateway reaches a shard.
//!
//! Today every shard runs in this process (`Local`): appends go to its actor, reads run
//! against its redb snapshots on the calling worker thread (see [`ShardClient::read`]). A shard in another process would be one
//! more variant behind the same methods; nothing else in the gateway changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use actix::dev::SendError;
use shard::engine::{
    Appended, ConsistencyProof, DailyCount, Erase, Erased, ErasureError, ErasureRequest, Expiring,
    ExpiryCursor, InclusionProof, Order, Page, Personal, PurposeState, QueryError, Scrub,
    ScrubReport, ShardHandle, ShardReader, StoredEvent, Submit,
};
use shard::format::ConsentEvent;
use shard::verify::ShardHead;
use tokio::sync::oneshot;

use crate::errors::ShardCallError;

/// How long an append waits for room in a full shard mailbox before `OVERLOADED`, unless
/// the server is told otherwise (`ServeConfig::overload_wait_ms`).
pub const OVERLOAD_WAIT_MS: u64 = 200;

/// A handle on one shard, cheap to clone.
#[derive(Clone)]
pub(crate) struct ShardClient {
    shard_id: u32,
    local: Arc<LocalShard>,
}

struct LocalShard {
    handle: ShardHandle,
    /// How long an append waits for room in a full mailbox before `OVERLOADED`.
    overload_wait: Duration,
    reader: ShardReader,
    /// Appends sent and not yet answered: the shard's queue depth.
    in_flight: AtomicI64,
}

impl ShardClient {
    pub(crate) fn local(shard_id: u32, handle: ShardHandle, overload_wait_ms: u64) -> ShardClient {
        let reader = handle.reader().clone();
        ShardClient {
            shard_id,
            local: Arc::new(LocalShard {
                handle,
                overload_wait: Duration::from_millis(overload_wait_ms),
                reader,
                in_flight: AtomicI64::new(0),
            }),
        }
    }

    pub(crate) fn shard_id(&self) -> u32 {
        self.shard_id
    }

    /// The shard's storage failure, if one of its files failed (it then refuses writes
    /// until the server restarts).
    pub(crate) fn storage_failure(&self) -> Option<shard::engine::StorageError> {
        self.local.reader.storage_failure()
    }

    /// Appends not yet answered.
    pub(crate) fn queue_depth(&self) -> i64 {
        self.local.in_flight.load(Ordering::Relaxed)
    }

    /// Appends one atomic batch; answered once durable.
    pub(crate) async fn append(
        &self,
        events: Vec<ConsentEvent>,
    ) -> Result<Vec<Appended>, ShardCallError> {
        let (tx, rx) = oneshot::channel();
        let mut msg = Submit { events, reply: tx };
        let deadline = Instant::now() + self.local.overload_wait;
        loop {
            match self.local.handle.addr.try_send(msg) {
                Ok(()) => break,
                Err(SendError::Full(back)) if Instant::now() < deadline => {
                    msg = back;
                    actix_web::rt::time::sleep(Duration::from_millis(2)).await;
                }
                Err(SendError::Full(_)) => return Err(ShardCallError::Overloaded(self.shard_id)),
                Err(SendError::Closed(_)) => {
                    return Err(shard::engine::AppendError::ShardStopped.into());
                }
            }
        }
        self.local.in_flight.fetch_add(1, Ordering::Relaxed);
        let out = rx.await;
        self.local.in_flight.fetch_sub(1, Ordering::Relaxed);
        Ok(out.unwrap_or(Err(shard::engine::AppendError::ShardStopped))?)
    }

    /// Reads from the secondary indexes, after waiting until they reflect every write
    /// acknowledged before this call (the index step runs behind the commit; see
    /// `ShardHandle::indexes_fresh`).
    async fn read_indexed<T>(
        &self,
        customer: &str,
        f: impl FnOnce(&ShardReader) -> Result<T, ShardCallError>,
    ) -> Result<T, ShardCallError> {
        self.local.handle.indexes_fresh(customer).await?;
        self.read(f).await
    }

    /// Reads one subject's index rows (current state, history) after waiting until they
    /// reflect every write of that subject acknowledged before this call
    /// (`ShardHandle::subject_indexes_fresh`): writes of the customer's other subjects
    /// never make it wait.
    async fn read_subject_indexed<T>(
        &self,
        customer: &str,
        subject: &str,
        f: impl FnOnce(&ShardReader) -> Result<T, ShardCallError>,
    ) -> Result<T, ShardCallError> {
        self.local
            .handle
            .subject_indexes_fresh(customer, subject)
            .await?;
        self.read(f).await
    }

    /// Reads what the durable commit itself wrote (journal, proofs, personal records,
    /// idempotency keys): never waits for the index step.
    ///
    /// The read runs on the calling HTTP worker, not on the blocking pool: every read is
    /// bounded (a point lookup, an O(log n) proof, or one page of at most `MAX_PAGE_SIZE`
    /// events) and redb's MVCC snapshots never wait for the writer, so the hop to another
    /// thread cost more than the read (measured: `read` 9,400–10,000 → 13,400–16,400
    /// requests/s, p99 18 → 10–11 ms; docs/benchmarks.md). A read of a page not in any
    /// cache blocks this worker for the disk read.
    async fn read<T>(
        &self,
        f: impl FnOnce(&ShardReader) -> Result<T, ShardCallError>,
    ) -> Result<T, ShardCallError> {
        f(&self.local.reader)
    }

    pub(crate) async fn head(&self) -> Result<ShardHead, ShardCallError> {
        self.read(|r| Ok(r.head()?)).await
    }

    /// Up to `max` journal entries from `from` on, as stored, and the journal's size.
    pub(crate) async fn journal_page(
        &self,
        from: u64,
        max: u64,
    ) -> Result<(Vec<Vec<u8>>, u64), ShardCallError> {
        self.read(move |r| {
            let mut entries = Vec::new();
            let size = r.each_journal_entry(from, max, |_, bytes| {
                entries.push(bytes.to_vec());
                Ok::<_, shard::engine::StorageError>(())
            })?;
            Ok((entries, size))
        })
        .await
    }

    pub(crate) async fn event(
        &self,
        seq: u64,
        personal: Personal,
    ) -> Result<Option<StoredEvent>, ShardCallError> {
        self.read(move |r| Ok(r.event_with(seq, personal)?)).await
    }

    pub(crate) async fn current_state(
        &self,
        customer: String,
        subject: String,
    ) -> Result<Vec<PurposeState>, ShardCallError> {
        self.read_subject_indexed(&customer, &subject, |r| {
            Ok(r.current_state(&customer, &subject)?)
        })
        .await
    }

    pub(crate) async fn history(
        &self,
        customer: String,
        subject: String,
        order: Order,
        after: Option<u64>,
        limit: u32,
        personal: Personal,
    ) -> Result<Page<u64>, ShardCallError> {
        self.read_subject_indexed(&customer, &subject, |r| {
            Ok(r.history_with(&customer, &subject, order, after, limit, personal)?)
        })
        .await
    }

    /// Hands a subject's events to `visit`, oldest first, a page at a time, until it
    /// returns `false` or the history ends.
    pub(crate) async fn walk_history(
        &self,
        customer: &str,
        subject: &str,
        personal: Personal,
        mut visit: impl FnMut(StoredEvent) -> bool,
    ) -> Result<(), ShardCallError> {
        let mut after = None;
        loop {
            let page = self
                .history(
                    customer.to_string(),
                    subject.to_string(),
                    Order::Ascending,
                    after,
                    shard::engine::MAX_PAGE_SIZE,
                    personal,
                )
                .await?;
            for e in page.items {
                if !visit(e) {
                    return Ok(());
                }
            }
            if !page.has_more {
                return Ok(());
            }
            after = page.last_cursor;
        }
    }

    pub(crate) async fn customer_events(
        &self,
        customer: String,
        since_ms: i64,
        until_ms: i64,
        after: Option<(i64, u64)>,
        limit: u32,
        personal: Personal,
    ) -> Result<Page<(i64, u64)>, ShardCallError> {
        self.read_indexed(&customer, |r| {
            let page =
                r.customer_events_with(&customer, since_ms, until_ms, after, limit, personal);
            Ok(page?)
        })
        .await
    }

    pub(crate) async fn daily_counts(
        &self,
        customer: String,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<DailyCount>, ShardCallError> {
        self.read_indexed(&customer, |r| {
            Ok(r.daily_counts(&customer, since_ms, until_ms)?)
        })
        .await
    }

    pub(crate) async fn inclusion_proof(
        &self,
        seq: u64,
        size: u64,
    ) -> Result<InclusionProof, ShardCallError> {
        self.read(move |r| Ok(r.inclusion_proof(seq, size)?)).await
    }

    pub(crate) async fn consistency_proof(
        &self,
        old: u64,
        new: u64,
    ) -> Result<ConsistencyProof, ShardCallError> {
        self.read(move |r| Ok(r.consistency_proof(old, new)?)).await
    }

    /// Commits what is pending and closes the shard file while others may still hold this
    /// client (shutdown, when a task has not yet let go of the ledger): their later calls
    /// fail with "shard stopped" or "database closed".
    pub(crate) async fn close(&self) {
        self.local.send_stop().await;
    }

    /// Commits what is pending and closes the shard (shutdown).
    pub(crate) async fn stop(self) {
        match Arc::try_unwrap(self.local) {
            Ok(local) => {
                drop(local.reader);
                local.handle.stop().await;
            }
            Err(shared) => shared.send_stop().await,
        }
    }
}

impl LocalShard {
    /// Commits what is pending and closes the shard file (its readers then fail).
    async fn send_stop(&self) {
        let _ = self.handle.addr.send(shard::engine::Stop).await;
    }
}

impl ShardClient {
    /// Erases what `req` names; answered once durable.
    pub(crate) async fn erase(&self, req: ErasureRequest) -> Result<Erased, ShardCallError> {
        match self.local.handle.addr.send(Erase(req)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ErasureError::ShardStopped.into()),
        }
    }

    /// Rewrites the shard file if an erasure is pending (or always, with `force`); a
    /// `scheduled` scrub waits its turn after the last one (`SCRUB_SPACING_FACTOR`).
    pub(crate) async fn scrub(
        &self,
        force: bool,
        scheduled: bool,
    ) -> Result<Option<ScrubReport>, ShardCallError> {
        match self
            .local
            .handle
            .addr
            .send(Scrub { force, scheduled })
            .await
        {
            Ok(result) => Ok(result?),
            Err(_) => Err(QueryError::ShardStopped.into()),
        }
    }

    /// A page of the customer's granted purposes lapsing before `before_ms`.
    pub(crate) async fn expiring(
        &self,
        customer: String,
        before_ms: i64,
        after: Option<ExpiryCursor>,
        limit: u32,
    ) -> Result<(Vec<Expiring>, bool), ShardCallError> {
        self.read_indexed(&customer, |r| {
            Ok(r.expiring(&customer, before_ms, after, limit)?)
        })
        .await
    }

    pub(crate) async fn current_state_with_events(
        &self,
        customer: String,
        subject: String,
        personal: Personal,
    ) -> Result<Vec<(PurposeState, StoredEvent)>, ShardCallError> {
        self.read_subject_indexed(&customer, &subject, |r| {
            Ok(r.current_state_with_events(&customer, &subject, personal)?)
        })
        .await
    }

    pub(crate) async fn find_idempotent(
        &self,
        customer: String,
        key: String,
    ) -> Result<Option<StoredEvent>, ShardCallError> {
        self.read(move |r| Ok(r.find_idempotent(&customer, &key)?))
            .await
    }
}
