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

/// Applies the retention period of `only` (or of every customer that has one): erases the
/// personal records of events recorded more than `retention_days` ago.
pub(crate) async fn apply_retention(
    ledger: &Ledger,
    keys: &KeyStore,
    only: Option<&str>,
    now_ms: i64,
) -> Result<Vec<RetentionOutcome>, ShardCallError> {
    let mut periods = keys.retention_periods();
    if let Some(id) = only {
        periods.retain(|(c, _)| c == id);
    }
    periods.sort();
    let mut out = Vec::new();
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
            Err(e) => return Err(e),
        };
        out.push(RetentionOutcome {
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
    Ok(out)
}

/// Rewrites every shard file with pending erasures (every file with `force`); `scheduled`
/// (the timer) skips a shard whose last scrub ended too recently for its length
/// (`SCRUB_SPACING_FACTOR`).
pub(crate) async fn scrub_all(
    ledger: &Ledger,
    force: bool,
    scheduled: bool,
) -> Result<Vec<(u32, ScrubReport)>, ShardCallError> {
    let mut out = Vec::new();
    for shard in &ledger.shards {
        if let Some(report) = shard.scrub(force, scheduled).await? {
            out.push((shard.shard_id(), report));
        }
    }
    Ok(out)
}

/// Scrubs shards with pending erasures every `interval_ms`.
pub(crate) async fn scrub_loop(ledger: Arc<Ledger>, interval_ms: u64) {
    crate::http::every(interval_ms, || async {
        if let Err(e) = scrub_all(&ledger, false, true).await {
            tracing::error!(error = %e.message(), "scheduled scrub failed");
        }
    })
    .await
}

/// Applies every customer's retention period every `interval_ms`.
pub(crate) async fn retention_loop(ledger: Arc<Ledger>, keys: Arc<KeyStore>, interval_ms: u64) {
    crate::http::every(interval_ms, || async {
        let now_ms = chrono::Utc::now().timestamp_millis();
        match apply_retention(&ledger, &keys, None, now_ms).await {
            Ok(done) => {
                for o in done {
                    tracing::info!(customer = %o.customer_id, erased_events = o.erased_events, "retention applied");
                }
            }
            Err(e) => tracing::error!(error = %e.message(), "scheduled retention failed"),
        }
    })
    .await
}
