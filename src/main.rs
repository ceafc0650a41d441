//! `assent`: the one binary of the Assent consent ledger.

use clap::{Parser, Subcommand};

/// Assent: a verifiable consent ledger.
#[derive(Parser)]
#[command(name = "assent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway and its shards in one process (not yet available).
    Serve,
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Serve => {
            eprintln!("assent serve: not yet: the gateway arrives with issue 3");
            std::process::ExitCode::from(2)
        }
    }
}
