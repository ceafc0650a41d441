//! `assent journal`: a stopped ledger's journals and newest checkpoint as JSON lines, for
//! verifiers that run none of Assent's code (docs/receipts.md §7). Nothing is checked here:
//! the entries are printed exactly as stored.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use gateway::CHECKPOINTS;
use redb::ReadableTable;
use serde_json::json;
use shard::engine::{AuditOpen, ShardReader, StorageError};

use crate::audit::{Failure, load_ledger};

/// Options of `assent journal`.
#[derive(clap::Args)]
pub struct JournalArgs {
    /// Data directory of a stopped server (or a copy of one), opened read-only.
    #[arg(long)]
    data_dir: PathBuf,
}

/// Why printing stopped: the ledger could not be read, or standard output closed.
#[derive(Debug, thiserror::Error)]
enum PrintError {
    /// A shard file could not be read.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// Standard output failed (a closed pipe).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Prints the newest checkpoint, then every shard's entries; returns the exit code (0, or 2
/// with a message when the ledger cannot be read).
pub fn run(args: JournalArgs) -> u8 {
    match print(&args) {
        Ok(()) => 0,
        Err(Failure::Unusable(m) | Failure::Problem(m)) => {
            eprintln!("assent journal: {m}");
            2
        }
    }
}

fn print(args: &JournalArgs) -> Result<(), Failure> {
    let dir = &args.data_dir;
    let ledger = load_ledger(dir, false)?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let failed = |e: PrintError| Failure::Unusable(e.to_string());
    let table = ledger
        .txn
        .open_table(CHECKPOINTS)
        .map_err(|e| Failure::Unusable(e.to_string()))?;
    if let Some((_, note)) = table
        .last()
        .map_err(|e| Failure::Unusable(e.to_string()))?
        .map(|(k, v)| (k.value(), v.value().to_string()))
    {
        writeln!(out, "{}", json!({ "checkpoint": note })).map_err(|e| failed(e.into()))?;
    }
    for i in 0..ledger.count {
        let path = dir.join("shards").join(format!("shard-{i:04}.redb"));
        let reader = ShardReader::open_existing(&path, i, AuditOpen::ReadOnly)
            .map_err(|e| Failure::Unusable(format!("shard {i} ({}): {e}", path.display())))?;
        reader
            .each_journal_entry(|seq, bytes| -> Result<(), PrintError> {
                let entry = base64::engine::general_purpose::STANDARD.encode(bytes);
                let line = json!({ "shard": i, "seq": seq.to_string(), "entry": entry });
                writeln!(out, "{line}")?;
                Ok(())
            })
            .map_err(failed)?;
    }
    out.flush().map_err(|e| failed(e.into()))
}
