//! Privacy maintenance: retention runs and storage scrubs, on demand and on a schedule.
//!
//! Erasure itself is a shard operation (`shard::engine::erase`); this module decides
//! *when*: which customers' records have outlived their retention period, and when each
//! shard file is rewritten so that erased bytes leave the disk (docs/design.md, "Erasure").

use std::sync::Arc;

use shard::engine::{ErasureError, ErasureRequest, ErasureTarget, ScrubReport};

use crate::auth::KeyStore;
use crate::errors::ShardCallError;
use crate::ledger::Ledger;

/// Milliseconds in a day, for retention periods given in days.
const MS_PER_DAY: i64 = 86_400_000;

/// Default interval of the scrub timer: a shard file with pending erasures is rewritten
/// within this long of the erasure (`--scrub-interval-ms`).
pub const DEFAULT_SCRUB_INTERVAL_MS: u64 = 60_000;

/// What a retention run erased for one customer.
#[derive(Debug, Clone)]
pub(crate) struct RetentionOutcome {
    /// The customer.
    pub(crate) customer_id: String,
    /// Records recorded before this instant (Unix ms) were erased.
    pub(crate) cutoff_ms: i64,
    /// Consent events whose personal record was deleted.
    pub(crate) erased_events: u64,
    /// API ids of the erasure entries written.
    pub(crate) erasure_ids: Vec<(u32, u64)>,
}

/// What a run over several shards or customers did: the outcomes of those that succeeded
/// and the failures of the others. One failing shard (a full disk, say) does not keep the
/// others from their erasures and scrubs.
#[derive(Debug)]
pub(crate) struct EachOutcome<T> {
    /// What succeeded, in order.
    pub(crate) done: Vec<T>,
    /// Which shard or customer failed ("shard 3", "customer acme"), and how, in order.
    pub(crate) failed: Vec<(String, ShardCallError)>,
}

impl<T> Default for EachOutcome<T> {
    fn default() -> Self {
        EachOutcome {
            done: Vec::new(),
            failed: Vec::new(),
        }
    }
}

impl<T> EachOutcome<T> {
    /// The outcomes when nothing failed; else the first failure, its message followed by
    /// what succeeded meanwhile (named by `what_done`) and the count of further failures
    /// (logged), so that a caller learns that part of the run took effect.
    pub(crate) fn into_result(
        mut self,
        what: &str,
        what_done: impl Fn(&T) -> String,
    ) -> Result<Vec<T>, async_graphql::Error> {
        if self.failed.is_empty() {
            return Ok(self.done);
        }
        let (key, first) = self.failed.remove(0);
        self.log_failures(what);
        let mut e = async_graphql::Error::from(first);
        let done: Vec<String> = self.done.iter().map(what_done).collect();
        e.message = format!(
            "{key}: {}; done meanwhile: [{}]; {} other failure(s), in the server's log",
            e.message,
            done.join(", "),
            self.failed.len()
        );
        Err(e)
    }

    /// Logs every failure (all of a timer's run, which has no caller to answer; a
    /// request's beyond the first, which its answer carries).
    pub(crate) fn log_failures(&self, what: &str) {
        for (key, e) in &self.failed {
            tracing::error!(%key, error = %e.message(), "{what} failed");
        }
    }
}

/// Applies the retention period of `only` (or of every customer that has one): erases the
/// personal records of events recorded more than `retention_days` ago. A customer whose
/// shard fails is reported in `failed`; the others' periods are applied.
pub(crate) async fn apply_retention(
    ledger: &Ledger,
    keys: &KeyStore,
    only: Option<&str>,
    now_ms: i64,
) -> EachOutcome<RetentionOutcome> {
    let mut periods = keys.retention_periods();
    if let Some(id) = only {
        periods.retain(|(c, _)| c == id);
    }
    periods.sort();
    let mut out = EachOutcome::default();
    for (customer_id, days) in periods {
        let cutoff_ms = now_ms.saturating_sub(i64::from(days) * MS_PER_DAY);
        let req = ErasureRequest {
            customer_id: customer_id.clone(),
            target: ErasureTarget::RecordedBefore(cutoff_ms),
            reason: format!("retention period of {days} days"),
        };
        let shard = ledger.shard_for(&customer_id);
        let erased = match shard.erase(req).await {
            Ok(e) => e,
            Err(ShardCallError::Erasure(ErasureError::NothingToErase)) => continue,
            Err(e) => {
                out.failed.push((format!("customer {customer_id}"), e));
                continue;
            }
        };
        out.done.push(RetentionOutcome {
            customer_id,
            cutoff_ms,
            erased_events: erased.erased_events,
            erasure_ids: erased
                .entries
                .iter()
                .map(|a| (a.entry.shard_id, a.entry.seq))
                .collect(),
        });
    }
    out
}

/// Rewrites every shard file with pending erasures (every file with `force`); `scheduled`
/// (the timer) skips a shard whose last scrub ended too recently for its length
/// (`SCRUB_SPACING_FACTOR`). Every shard is tried: one that fails is reported in `failed`
/// and the next is scrubbed all the same.
pub(crate) async fn scrub_all(
    ledger: &Ledger,
    force: bool,
    scheduled: bool,
) -> EachOutcome<(u32, ScrubReport)> {
    let mut out = EachOutcome::default();
    for shard in &ledger.shards {
        match shard.scrub(force, scheduled).await {
            Ok(Some(report)) => out.done.push((shard.shard_id(), report)),
            Ok(None) => {}
            Err(e) => out.failed.push((format!("shard {}", shard.shard_id()), e)),
        }
    }
    out
}

/// Scrubs shards with pending erasures every `interval_ms`.
pub(crate) async fn scrub_loop(ledger: Arc<Ledger>, interval_ms: u64) {
    crate::http::every(interval_ms, || async {
        scrub_all(&ledger, false, true)
            .await
            .log_failures("scheduled scrub");
    })
    .await
}

/// Applies every customer's retention period every `interval_ms`.
pub(crate) async fn retention_loop(ledger: Arc<Ledger>, keys: Arc<KeyStore>, interval_ms: u64) {
    crate::http::every(interval_ms, || async {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let outcome = apply_retention(&ledger, &keys, None, now_ms).await;
        for o in &outcome.done {
            tracing::info!(customer = %o.customer_id, erased_events = o.erased_events, "retention applied");
        }
        outcome.log_failures("scheduled retention");
    })
    .await
}
