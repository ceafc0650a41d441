//! `assent`: the one binary of the Assent consent ledger.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use gateway::{LogFormat, ServeConfig};

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
    /// Number of shards; fixed when the ledger is created [default for a new ledger: 4].
    #[arg(long, env = "ASSENT_SHARDS")]
    shards: Option<u32>,
    /// Ledger name: the origin line of checkpoints and the signing key's name; fixed when
    /// the ledger is created [default for a new ledger: localhost/assent].
    #[arg(long, env = "ASSENT_LEDGER_NAME")]
    ledger_name: Option<String>,
    /// Issue a signed checkpoint this often when anything changed.
    #[arg(long, env = "ASSENT_CHECKPOINT_INTERVAL_MS", default_value_t = 1000)]
    checkpoint_interval_ms: u64,
    /// ed25519 signing key file (32 raw bytes or 64 hex digits) instead of the one
    /// generated in the data directory.
    #[arg(long, env = "ASSENT_SIGNING_KEY_FILE")]
    signing_key_file: Option<PathBuf>,
    /// Requests that may queue at one shard before writers are told OVERLOADED.
    #[arg(long, env = "ASSENT_SHARD_MAILBOX_CAPACITY", default_value_t = shard::engine::MAILBOX_CAPACITY)]
    shard_mailbox_capacity: usize,
    /// Requests per second allowed per non-admin API key (token bucket); 0 turns it off.
    #[arg(long, env = "ASSENT_RATE_LIMIT_PER_SECOND", default_value_t = gateway::auth::DEFAULT_RATE_LIMIT_PER_SECOND)]
    rate_limit_per_second: u32,
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

fn serve(args: ServeArgs) -> ExitCode {
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
        // A secret: read from the environment only, never from argv (visible to `ps`).
        admin_token: std::env::var("ASSENT_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        rate_limit_per_second: args.rate_limit_per_second,
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
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::Schema => {
            print!("{}", gateway::sdl());
            ExitCode::SUCCESS
        }
    }
}
