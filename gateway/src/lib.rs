//! The Assent gateway: GraphQL over HTTP in front of the shards.
//!
//! Map of the crate (see ARCHITECTURE.md):
//! - [`auth`]: customers, API keys, the access policy, rate limits.
//! - [`config`]: what `assent serve` is told (flags and `ASSENT_*` variables).
//! - `ledger`: the data directory: ledger metadata, signing key, shards, routing.
//! - `shards`: the one narrow interface through which the gateway reaches a shard.
//! - `checkpoints`: issuing, storing and proving signed checkpoints; building receipts.
//! - `schema`: the GraphQL schema (types, queries, mutations) and its limits.
//! - `feed`: per-shard broadcast of committed events for subscriptions.
//! - `errors`: the mapping of engine errors to GraphQL `extensions.code`.
//! - `ids`: opaque event ids and page cursors.
//! - `http`: the actix-web routes, body limits, health, metrics, GraphiQL page.
//! - [`query_cache`]: parsed documents of repeated query texts.
//! - `metrics`: Prometheus metrics.
//! - `privacy`: retention runs and storage scrubs, on demand and on a schedule.
//! - `ws`: GraphQL over WebSocket on actix-ws, with backpressure and close on shutdown.
//!
//! Only this crate knows HTTP and GraphQL.

pub mod auth;
mod bulk;
mod checkpoints;
pub mod config;
mod errors;
pub mod event_fields;
pub mod feed;
mod http;
mod ids;
mod input_shapes;
mod ledger;
mod metrics;
pub mod privacy;
pub mod query_cache;
mod schema;
mod shards;
mod ws;

pub use config::{LogFormat, ServeConfig};
pub use feed::FEED_CAPACITY;
pub use http::{BODY_READ_TIMEOUT_MS, LARGE_REQUEST_BUDGET_BYTES, LARGE_REQUEST_BYTES, serve};
pub use ledger::{
    CHECKPOINTS, LEDGER_CACHE_BYTES, LEDGER_META, OpenLedgerError, ledger_db_builder,
    read_signing_key,
};
pub use schema::{MAX_CONSISTENCY_PROOFS, MAX_JOURNAL_PAGE, sdl};
pub use shards::OVERLOAD_WAIT_MS;
