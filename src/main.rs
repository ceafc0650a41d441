//! `assent`: the one binary of the Assent consent ledger.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use gateway::{LogFormat, ServeConfig};

mod audit;
mod bench;
mod journal_cmd;
mod monitor;
mod privacy_cmd;
mod read_ahead;
mod remote;
mod verify_cmd;
mod verify_export;
mod verify_journal;

#[cfg(test)]
mod untrusted_files;

/// The server allocates and frees many small values per request (GraphQL values, JSON);
/// mimalloc measured markedly faster than glibc malloc on the batch path (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before it returns it to the OS, for the server.
/// mimalloc v3's default, 1,000 ms, kept ≈ 30-50 MiB of freed pages resident under
/// `batch` on a 10M-event ledger (peak RSS 262-274 MiB, over the 256 MiB budget of
/// docs/benchmarks.md): a shard's entries are allocated on its writer's thread and freed on
/// its index writer's. 10 ms: 223-238 MiB there, for ≈ 2-3 % of server CPU on a fresh
/// ledger (page faults of memory handed back and taken again: `perf` of `batch`; alternated
/// `batch` and `record` runs showed no difference above the host's noise); 0 costs `batch`
/// 10-17 % (docs/benchmarks.md, session 18).
/// `MIMALLOC_PURGE_DELAY` in the environment still wins.
const ALLOCATOR_PURGE_DELAY_MS: std::ffi::c_long = 10;

/// mimalloc's option number of `mi_option_purge_delay` in its v3 header (`mimalloc.h`),
/// which `libmimalloc-sys` does not name; the test below checks it against the option's
/// environment variable.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the server's allocator options (see [`ALLOCATOR_PURGE_DELAY_MS`]) unless the
/// environment sets them.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator; mimalloc reads it atomically
        // and allows changing it at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS) };
    }
}

/// Assent: a verifiable consent ledger.
#[derive(Parser)]
#[command(name = "assent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway and its shards in one process on a local data directory.
    Serve(ServeArgs),
    /// Print the GraphQL schema (SDL) that the server serves.
    Schema,
    /// Manage API keys (for operators who script).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage customers (for operators who script).
    #[command(subcommand)]
    Customers(CustomersCommand),
    /// Drive a running server with load and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Verify receipts, checkpoints and consistency proofs offline, without the server.
    #[command(subcommand)]
    Verify(verify_cmd::VerifyCommand),
    /// Audit a whole ledger on disk, or monitor a server's checkpoints.
    Audit(audit::AuditArgs),
    /// Print a ledger's newest checkpoint and every journal entry as JSON lines, unchecked,
    /// for verifiers of your own (docs/receipts.md §7): from a stopped server's data
    /// directory, or from a running server with an ADMIN key.
    Journal(journal_cmd::JournalArgs),
    /// Export a customer's events (with personal records, and receipts on request) from a
    /// running server as JSON lines.
    Export(privacy_cmd::ExportArgs),
    /// Apply customers' retention periods on a running server (admin key).
    #[command(subcommand)]
    Retention(RetentionCommand),
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Erase the personal records of events older than each customer's retention period.
    Apply(privacy_cmd::RetentionArgs),
}

/// Where an admin command acts: a stopped server's data directory, or a running server.
#[derive(clap::Args)]
struct Target {
    /// Data directory of a stopped server.
    #[arg(
        long,
        env = "ASSENT_DATA_DIR",
        default_value = "./assent-data",
        conflicts_with = "url"
    )]
    data_dir: PathBuf,
    /// URL of a running server (e.g. http://127.0.0.1:8080); the admin token is read from
    /// ASSENT_ADMIN_TOKEN or --token-file, never from the command line.
    #[arg(long)]
    url: Option<String>,
    /// File holding the admin token (e.g. DATA_DIR/admin-token), with --url.
    #[arg(long, requires = "url")]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key and print its secret (once) on standard output.
    Create {
        /// Customer the key belongs to (omit for an ADMIN key).
        #[arg(long)]
        customer: Option<String>,
        /// WRITER, READER or ADMIN.
        #[arg(long, value_parser = ["WRITER", "READER", "ADMIN"])]
        role: String,
        /// A label to recognise the key by.
        #[arg(long, default_value = "cli")]
        label: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum CustomersCommand {
    /// Create a customer.
    Create {
        /// Customer id (A-Z a-z 0-9 _ . -, at most 128).
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long, env = "ASSENT_DATA_DIR", default_value = "./assent-data")]
    data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, env = "ASSENT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Number of shards; fixed when the ledger is created [default for a new ledger: one per
    /// core, at most 16].
    #[arg(long, env = "ASSENT_SHARDS")]
    shards: Option<u32>,
    /// Ledger name: the origin line of checkpoints and the signing key's name; fixed when
    /// the ledger is created [default for a new ledger: localhost/assent].
    #[arg(long, env = "ASSENT_LEDGER_NAME")]
    ledger_name: Option<String>,
    /// Issue a signed checkpoint this often when anything changed (receipts get one on
    /// demand whatever this says). Each is kept for good: a note of ≈ 240 bytes plus ≈ 105
    /// per shard in ledger.redb, and ≈ 35 µs of `assent audit` (its signature).
    #[arg(long, env = "ASSENT_CHECKPOINT_INTERVAL_MS", default_value_t = 1000)]
    checkpoint_interval_ms: u64,
    /// ed25519 signing key file (32 raw bytes or 64 hex digits) instead of the one
    /// generated in the data directory.
    #[arg(long, env = "ASSENT_SIGNING_KEY_FILE")]
    signing_key_file: Option<PathBuf>,
    /// Requests that may queue at one shard before writers are told OVERLOADED.
    #[arg(long, env = "ASSENT_SHARD_MAILBOX_CAPACITY", default_value_t = shard::engine::MAILBOX_CAPACITY)]
    shard_mailbox_capacity: usize,
    /// Milliseconds a writer waits for room at a full shard before it is told OVERLOADED
    /// (0: at once).
    #[arg(long, env = "ASSENT_OVERLOAD_WAIT_MS", default_value_t = gateway::OVERLOAD_WAIT_MS)]
    overload_wait_ms: u64,
    /// Body bytes of requests above 64 KiB (large batches) decoded and executed at once;
    /// a request that does not fit waits its turn. Bounds the server's memory under batch
    /// load.
    #[arg(long, env = "ASSENT_LARGE_REQUEST_BUDGET_BYTES", default_value_t = gateway::LARGE_REQUEST_BUDGET_BYTES)]
    large_request_budget_bytes: usize,
    /// Milliseconds a request body may take to arrive (HTTP 408 beyond), so that a slow
    /// sender cannot hold the large-request budget.
    #[arg(long, env = "ASSENT_BODY_READ_TIMEOUT_MS", default_value_t = gateway::BODY_READ_TIMEOUT_MS)]
    body_read_timeout_ms: u64,
    /// Requests per second allowed per non-admin API key (token bucket); 0 turns it off.
    #[arg(long, env = "ASSENT_RATE_LIMIT_PER_SECOND", default_value_t = gateway::auth::DEFAULT_RATE_LIMIT_PER_SECOND)]
    rate_limit_per_second: u32,
    /// Commits a subscriber may fall behind the live feed before it catches up from the
    /// journal instead.
    #[arg(long, env = "ASSENT_FEED_CAPACITY", default_value_t = gateway::FEED_CAPACITY)]
    feed_capacity: usize,
    /// How often shard files holding erased records in freed pages are rewritten, in ms
    /// (the longest an erased byte stays on disk, unless a shard's last rewrite took longer
    /// than 1 % of the time since: then it waits 100x that rewrite's duration); 0 leaves it
    /// to `scrubStorage`.
    #[arg(long, env = "ASSENT_SCRUB_INTERVAL_MS", default_value_t = gateway::privacy::DEFAULT_SCRUB_INTERVAL_MS)]
    scrub_interval_ms: u64,
    /// How often every customer's retention period is applied, in ms; 0 (default) leaves
    /// it to `assent retention apply`.
    #[arg(long, env = "ASSENT_RETENTION_INTERVAL_MS", default_value_t = 0)]
    retention_interval_ms: u64,
    /// Log format.
    #[arg(long, env = "ASSENT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormatArg,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ASSENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Ignores SIGXFSZ, which the kernel sends when a write would pass the process's file-size
/// limit (`ulimit -f`) and which kills the process by default: the write then fails with
/// EFBIG instead: in the server the shard reports its storage failure (`STORAGE_FAILED`,
/// `/healthz`) and every other shard and every read of the others goes on; in the audit a
/// temporary file that cannot grow ends it as unfinished (exit 2).
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: sets the disposition of one signal to "ignore", which runs no handler code;
    // done before any thread that writes files starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    tune_allocator();
    // SAFETY: mi_collect only walks the calling thread's own heap.
    shard::engine::set_memory_release(|| unsafe { libmimalloc_sys::mi_collect(false) });
    ignore_file_size_signal();
    let log_format = match args.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    init_logging(log_format);
    let config = ServeConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        shards: args.shards,
        ledger_name: args.ledger_name,
        checkpoint_interval_ms: args.checkpoint_interval_ms,
        signing_key_file: args.signing_key_file,
        shard_mailbox_capacity: args.shard_mailbox_capacity,
        overload_wait_ms: args.overload_wait_ms,
        large_request_budget_bytes: args.large_request_budget_bytes,
        body_read_timeout_ms: args.body_read_timeout_ms,
        // A secret: read from the environment only, never from argv (visible to `ps`).
        admin_token: std::env::var("ASSENT_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        rate_limit_per_second: args.rate_limit_per_second,
        feed_capacity: args.feed_capacity,
        scrub_interval_ms: args.scrub_interval_ms,
        retention_interval_ms: args.retention_interval_ms,
    };
    let system = actix_web::rt::System::new();
    match system.block_on(gateway::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("assent serve failed: {e}");
            eprintln!("assent serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Serve(args) => return serve(args),
        Command::Schema => {
            print!("{}", gateway::sdl());
            return ExitCode::SUCCESS;
        }
        Command::Keys(KeysCommand::Create {
            customer,
            role,
            label,
            target,
        }) => admin::create_key(&target, customer, &role, &label),
        Command::Customers(CustomersCommand::Create { id, name, target }) => {
            admin::create_customer(&target, &id, &name)
        }
        Command::Bench(args) => bench::run(args),
        Command::Verify(cmd) => {
            use verify_cmd::VerifyCommand as V;
            let (outcome, json) = match cmd {
                V::Receipt { file, keys, json } => (verify_cmd::receipt(&file, &keys), json),
                V::Checkpoint { file, keys, json } => (verify_cmd::checkpoint(&file, &keys), json),
                V::Export { file, keys, json } => (verify_export::export(&file, &keys), json),
                V::Journal {
                    file,
                    checkpoint,
                    keys,
                    json,
                } => (verify_journal::journal(&file, &checkpoint, &keys), json),
                V::Consistency {
                    old,
                    new,
                    proof,
                    keys,
                    json,
                } => (verify_cmd::consistency(&old, &new, &proof, &keys), json),
            };
            return ExitCode::from(outcome.report(json));
        }
        Command::Audit(args) => {
            // A temporary file that cannot grow is reported (exit 2), not a killed process.
            ignore_file_size_signal();
            return ExitCode::from(audit::run(args));
        }
        Command::Journal(args) => return ExitCode::from(journal_cmd::run(args)),
        Command::Export(args) => return ExitCode::from(privacy_cmd::export(args)),
        Command::Retention(RetentionCommand::Apply(args)) => {
            return ExitCode::from(privacy_cmd::retention_apply(args));
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("assent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Admin commands, on a stopped server's data directory or through a running server.
mod admin {
    use std::sync::Arc;

    use gateway::auth::keys::{CustomerRecord, KeyStore, Role};
    use serde_json::{Value, json};

    use super::Target;

    fn open_offline(target: &Target) -> Result<KeyStore, String> {
        let path = target.data_dir.join("ledger.redb");
        if !path.exists() {
            return Err(format!(
                "{} does not exist; start `assent serve` once to create the ledger",
                path.display()
            ));
        }
        let db =
            gateway::ledger_db_builder().create(&path).map_err(|e| {
                match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                "the server is running on this data directory; use --url with ASSENT_ADMIN_TOKEN"
                    .to_string()
            }
            other => format!("{}: {other}", path.display()),
        }
            })?;
        KeyStore::open(Arc::new(db)).map_err(|e| e.message())
    }

    fn call(target: &Target, url: &str, query: &str, variables: Value) -> Result<Value, String> {
        let token = crate::remote::token(
            target.token_file.as_deref(),
            "ASSENT_ADMIN_TOKEN",
            "the admin token (with --url)",
        )?;
        crate::remote::graphql(
            &reqwest::blocking::Client::new(),
            url,
            &token,
            query,
            variables,
        )
        .map_err(|e| e.to_string())
    }

    pub(crate) fn create_key(
        target: &Target,
        customer: Option<String>,
        role: &str,
        label: &str,
    ) -> Result<(), String> {
        let (id, secret) = match &target.url {
            Some(url) => {
                let q = "mutation($c: ID, $r: Role!, $l: String!) { createApiKey(customerId: $c, role: $r, label: $l) { secret key { id } } }";
                let d = call(
                    target,
                    url,
                    q,
                    json!({ "c": customer, "r": role, "l": label }),
                )?;
                (
                    d["createApiKey"]["key"]["id"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    d["createApiKey"]["secret"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            }
            None => {
                let role = match role {
                    "ADMIN" => Role::Admin,
                    "WRITER" => Role::Writer,
                    _ => Role::Reader,
                };
                let (rec, secret) = open_offline(target)?
                    .create_key(customer.as_deref(), role, label)
                    .map_err(|e| e.message())?;
                (rec.id, secret)
            }
        };
        eprintln!("created key {id}; its secret follows and is shown only this once");
        println!("{secret}");
        Ok(())
    }

    pub(crate) fn create_customer(target: &Target, id: &str, name: &str) -> Result<(), String> {
        match &target.url {
            Some(url) => {
                call(
                    target,
                    url,
                    "mutation($id: ID!, $n: String!) { createCustomer(id: $id, name: $n) { id } }",
                    json!({ "id": id, "n": name }),
                )?;
            }
            None => {
                let rec = CustomerRecord {
                    id: id.to_string(),
                    name: name.to_string(),
                    created_at_ms: chrono::Utc::now().timestamp_millis(),
                    retention_days: None,
                    default_consent_lifetime_days: None,
                };
                open_offline(target)?
                    .create_customer(rec)
                    .map_err(|e| e.message())?;
            }
        }
        eprintln!("created customer {id}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's environment variable: set, the test checks the option in this process.
    const PROBE: &str = "ASSENT_PURGE_DELAY_PROBE";

    #[test]
    fn the_option_tune_allocator_sets_is_the_one_mimalloc_purge_delay_names() {
        // Proves: option 15 is what `MIMALLOC_PURGE_DELAY` sets (checked in a child process
        // started with it), and `tune_allocator` sets it to ALLOCATOR_PURGE_DELAY_MS.
        // SAFETY: reads one integer option of the allocator.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os(PROBE).is_some() {
            assert_eq!(get(), 4_321, "option 15 is not mimalloc's purge delay");
            return;
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::the_option_tune_allocator_sets_is_the_one_mimalloc_purge_delay_names",
            ])
            .env(PROBE, "1")
            .env("MIMALLOC_PURGE_DELAY", "4321")
            .status()
            .unwrap();
        assert!(status.success(), "the child process's check failed");
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            tune_allocator();
            assert_eq!(get(), ALLOCATOR_PURGE_DELAY_MS);
        }
    }
}
