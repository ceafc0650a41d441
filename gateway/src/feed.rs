//! Live fan-out of committed events: one broadcast per shard, one message per commit.
//!
//! Writers pay one `send` per commit whatever the number of subscribers; filtering by
//! customer, subject and purpose happens on each subscriber's side. A subscriber that
//! falls more than `FEED_CAPACITY` commits behind is told it lagged and catches up from
//! the journal.

use std::sync::Arc;

use dashmap::DashMap;
use shard::engine::{CommitReport, Published};
use tokio::sync::broadcast;

/// Default number of commits a subscriber may fall behind before it is switched back to
/// journal replay (`--feed-capacity`).
pub const FEED_CAPACITY: usize = 1_024;

/// One commit's new entries.
pub(crate) type CommitBatch = Arc<[Published]>;

/// The per-shard broadcasts.
pub(crate) struct Feeds {
    senders: DashMap<u32, broadcast::Sender<CommitBatch>>,
    /// Commits each broadcast holds for its slowest receiver.
    capacity: usize,
}

impl Feeds {
    pub(crate) fn new(capacity: usize) -> Feeds {
        Feeds {
            senders: DashMap::new(),
            capacity: capacity.max(1),
        }
    }

    fn sender(&self, shard: u32) -> broadcast::Sender<CommitBatch> {
        self.senders
            .entry(shard)
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .clone()
    }

    /// A receiver of every later commit of `shard`.
    pub(crate) fn subscribe(&self, shard: u32) -> broadcast::Receiver<CommitBatch> {
        self.sender(shard).subscribe()
    }

    /// Whether anyone listens to `shard`'s feed now. Asked by the shard after each commit:
    /// a "no" spares copying its entries; a subscriber that comes later subscribes before
    /// it reads the journal, so it finds them there.
    pub(crate) fn has_subscribers(&self, shard: u32) -> bool {
        self.senders
            .get(&shard)
            .is_some_and(|s| s.receiver_count() > 0)
    }

    /// Publishes a commit (called on the shard's thread after the commit is durable).
    pub(crate) fn publish(&self, report: &CommitReport) {
        if !report.published.is_empty() {
            // No receiver is not an error: nobody is listening.
            let _ = self.sender(report.shard_id).send(report.published.clone());
        }
    }
}
