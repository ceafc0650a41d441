//! Configuration of `assent serve`; the defaults need no configuration at all.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Most shards a new ledger gets by default ([`default_shards`]): each shard is a writer
/// thread with its own file and page cache.
pub const DEFAULT_SHARDS_MAX: u32 = 16;

/// Default number of shards of a new ledger: one per core, from 1 to [`DEFAULT_SHARDS_MAX`].
/// More shards than cores only split group commits into more, smaller durable commits
/// competing with the HTTP workers for the same cores (docs/benchmarks.md, session 6: on
/// two cores `record` ran 18 % faster with 2 shards than with 4).
pub fn default_shards() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cores)
        .unwrap_or(DEFAULT_SHARDS_MAX)
        .clamp(1, DEFAULT_SHARDS_MAX)
}
/// Largest shard count a ledger may be created with.
pub const MAX_SHARDS: u32 = 256;
/// Default checkpoint interval.
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 1_000;
/// Default ledger name: the origin line of checkpoints and the signing key's name.
pub const DEFAULT_LEDGER_NAME: &str = "localhost/assent";

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything `assent serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where the ledger lives (created if missing).
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port (logged at start).
    pub listen: SocketAddr,
    /// Shard count for a new ledger; `None` uses the stored count (or the default).
    pub shards: Option<u32>,
    /// Ledger name for a new ledger; `None` uses the stored name (or the default).
    pub ledger_name: Option<String>,
    /// How often a checkpoint is issued when anything changed.
    pub checkpoint_interval_ms: u64,
    /// Use this ed25519 signing key file (32 raw bytes or 64 hex digits) instead of the
    /// generated `<data-dir>/signing-key`.
    pub signing_key_file: Option<PathBuf>,
    /// Appends that may wait in one shard's mailbox; beyond it a writer waits up to
    /// `overload_wait_ms` and then gets `OVERLOADED`.
    pub shard_mailbox_capacity: usize,
    /// How long a writer waits for room in a full shard mailbox before `OVERLOADED`
    /// (default `OVERLOAD_WAIT_MS`): longer smooths bursts, shorter tells clients sooner
    /// to back off; 0 answers `OVERLOADED` at once.
    pub overload_wait_ms: u64,
    /// Body bytes of large requests (body above `LARGE_REQUEST_BYTES`) decoded and executed
    /// at once; a request that does not fit waits its turn, one larger than the whole budget
    /// runs alone. Bounds memory under batch load (default `LARGE_REQUEST_BUDGET_BYTES`).
    pub large_request_budget_bytes: usize,
    /// How long a request body may take to arrive (default `BODY_READ_TIMEOUT_MS`), so
    /// that a slow sender cannot hold the large-request budget.
    pub body_read_timeout_ms: u64,
    /// Admin token supplied by the operator (`ASSENT_ADMIN_TOKEN`) instead of a generated
    /// `<data-dir>/admin-token`.
    pub admin_token: Option<String>,
    /// Requests per second per non-admin key; 0 turns the limit off.
    pub rate_limit_per_second: u32,
    /// Commits a subscriber may fall behind the live feed before it replays from the journal.
    pub feed_capacity: usize,
    /// How often shard files with pending erasures are rewritten (bounds how long erased
    /// bytes may stay in freed pages; a shard whose last rewrite took long waits
    /// `SCRUB_SPACING_FACTOR` times its duration); 0 turns the timer off (`scrubStorage`
    /// still works).
    pub scrub_interval_ms: u64,
    /// How often every customer's retention period is applied; 0 (the default) leaves it
    /// to `applyRetention` / `assent retention apply`.
    pub retention_interval_ms: u64,
}
