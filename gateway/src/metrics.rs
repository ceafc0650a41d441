//! Prometheus metrics, served as text at `GET /metrics`. Never labelled with secrets or
//! personal data: labels are shard ids and error codes only.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use shard::engine::CommitReport;
use std::sync::Arc;

/// Every metric the gateway exports.
pub(crate) struct Metrics {
    registry: Registry,
    /// GraphQL requests received.
    pub(crate) requests: IntCounter,
    /// GraphQL errors by `extensions.code`.
    pub(crate) errors: IntCounterVec,
    /// Events appended, by shard.
    pub(crate) events_appended: IntCounterVec,
    /// Events per group commit, by shard.
    pub(crate) commit_batch_events: HistogramVec,
    /// Group commit latency, by shard.
    pub(crate) commit_seconds: HistogramVec,
    /// Appends waiting for their commit, by shard.
    pub(crate) queue_depth: IntGaugeVec,
    /// Requests with an unknown or revoked key.
    pub(crate) auth_failures: IntCounter,
    /// Subscriptions open now.
    pub(crate) open_subscriptions: prometheus::IntGauge,
    /// Events delivered to subscribers.
    pub(crate) events_delivered: IntCounter,
    /// Subscribers that fell behind the live feed and went back to journal replay.
    pub(crate) subscribers_lagged: IntCounter,
    /// Events decoded from request bodies by the bulk path (`crate::bulk`): how much of
    /// the write load skips async-graphql's value tree.
    pub(crate) bulk_decoded_events: IntCounter,
}

/// Counts one open thing in a gauge for as long as it lives.
pub(crate) struct Open(prometheus::IntGauge);

impl Open {
    pub(crate) fn new(g: &prometheus::IntGauge) -> Open {
        g.inc();
        Open(g.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub(crate) fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let requests =
            IntCounter::new("assent_graphql_requests_total", "GraphQL requests received")
                .expect("metric");
        let errors = IntCounterVec::new(
            Opts::new("assent_graphql_errors_total", "GraphQL errors by code"),
            &["code"],
        )
        .expect("metric");
        let events_appended = IntCounterVec::new(
            Opts::new(
                "assent_events_appended_total",
                "Events appended (new, durable), by shard",
            ),
            &["shard"],
        )
        .expect("metric");
        let commit_batch_events = HistogramVec::new(
            HistogramOpts::new("assent_commit_batch_events", "Events per group commit").buckets(
                vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
                    16384.0,
                ],
            ),
            &["shard"],
        )
        .expect("metric");
        let commit_seconds = HistogramVec::new(
            HistogramOpts::new("assent_commit_seconds", "Group commit latency")
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16).expect("buckets")),
            &["shard"],
        )
        .expect("metric");
        let auth_failures = IntCounter::new(
            "assent_auth_failures_total",
            "Requests with an unknown or revoked API key",
        )
        .expect("metric");
        let open_subscriptions =
            prometheus::IntGauge::new("assent_subscriptions_open", "Subscriptions open now")
                .expect("metric");
        let events_delivered = IntCounter::new(
            "assent_subscription_events_delivered_total",
            "Events delivered to subscribers",
        )
        .expect("metric");
        let subscribers_lagged = IntCounter::new(
            "assent_subscribers_lagged_total",
            "Subscribers that fell behind and replayed from the journal",
        )
        .expect("metric");
        let bulk_decoded_events = IntCounter::new(
            "assent_bulk_decoded_events_total",
            "Events decoded straight from request bodies (event-list variables)",
        )
        .expect("metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "assent_shard_queue_depth",
                "Appends waiting for their commit",
            ),
            &["shard"],
        )
        .expect("metric");
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(events_appended.clone()),
            Box::new(commit_batch_events.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(queue_depth.clone()),
            Box::new(auth_failures.clone()),
            Box::new(open_subscriptions.clone()),
            Box::new(events_delivered.clone()),
            Box::new(subscribers_lagged.clone()),
            Box::new(bulk_decoded_events.clone()),
        ] {
            registry.register(m).expect("unique metric names");
        }
        Arc::new(Metrics {
            registry,
            requests,
            errors,
            events_appended,
            commit_batch_events,
            commit_seconds,
            queue_depth,
            auth_failures,
            open_subscriptions,
            events_delivered,
            subscribers_lagged,
            bulk_decoded_events,
        })
    }

    /// What shards' commit reports add to the metrics.
    pub(crate) fn commit_observer(self: &Arc<Self>) -> impl Fn(CommitReport) + Send + Sync + use<> {
        let m = self.clone();
        move |r: CommitReport| {
            let shard = r.shard_id.to_string();
            m.commit_batch_events
                .with_label_values(&[&shard])
                .observe(r.events as f64);
            m.commit_seconds
                .with_label_values(&[&shard])
                .observe(r.duration.as_secs_f64());
        }
    }

    /// The text exposition.
    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).unwrap_or_default()
    }
}
