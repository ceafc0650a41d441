//! `assent journal`: a ledger's newest checkpoint and journals as JSON lines, for verifiers
//! that run none of Assent's code (docs/receipts.md §7), from a stopped server's data
//! directory or, page by page, from a running server. Nothing is checked here: the entries
//! are printed exactly as stored.

use std::io::Write;
use std::path::{Path, PathBuf};

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
    #[arg(long, conflicts_with = "server", required_unless_present = "server")]
    data_dir: Option<PathBuf>,
    /// URL of a running server instead: its latest checkpoint, then every shard's entries
    /// up to the size it had when read, page by page (`Query.journalEntries`; an ADMIN key
    /// in ASSENT_TOKEN or --token-file).
    #[arg(long)]
    server: Option<String>,
    /// File holding the ADMIN key, with --server (never on the command line, where `ps`
    /// would show it).
    #[arg(long, requires = "server")]
    token_file: Option<PathBuf>,
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

/// The lines of docs/receipts.md §7, written to standard output: one writer for both
/// sources, so they cannot drift apart.
struct Lines(std::io::BufWriter<std::io::StdoutLock<'static>>);

impl Lines {
    fn new() -> Lines {
        Lines(std::io::BufWriter::new(std::io::stdout().lock()))
    }

    /// `{"checkpoint": NOTE}`.
    fn checkpoint(&mut self, note: &str) -> std::io::Result<()> {
        writeln!(self.0, "{}", json!({ "checkpoint": note }))
    }

    /// `{"shard": N, "seq": "S", "entry": "BASE64"}`.
    fn entry(&mut self, shard: u32, seq: u64, entry_b64: &str) -> std::io::Result<()> {
        let line = json!({ "shard": shard, "seq": seq.to_string(), "entry": entry_b64 });
        writeln!(self.0, "{line}")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn written(e: std::io::Error) -> Failure {
    Failure::Unusable(PrintError::Output(e).to_string())
}

/// Prints the newest checkpoint, then every shard's entries; returns the exit code (0, or 2
/// with a message when the ledger cannot be read).
pub fn run(args: JournalArgs) -> u8 {
    let printed = match (&args.data_dir, &args.server) {
        (Some(dir), _) => print(dir),
        (None, Some(url)) => print_remote(url, &args),
        (None, None) => Err(Failure::Unusable("give --data-dir or --server".into())),
    };
    match printed {
        Ok(()) => 0,
        Err(Failure::Unusable(m) | Failure::Problem(m)) => {
            eprintln!("assent journal: {m}");
            2
        }
    }
}

fn print(dir: &Path) -> Result<(), Failure> {
    let ledger = load_ledger(dir, false)?;
    let mut out = Lines::new();
    let table = ledger
        .txn
        .open_table(CHECKPOINTS)
        .map_err(|e| Failure::Unusable(e.to_string()))?;
    if let Some((_, note)) = table
        .last()
        .map_err(|e| Failure::Unusable(e.to_string()))?
        .map(|(k, v)| (k.value(), v.value().to_string()))
    {
        out.checkpoint(&note).map_err(written)?;
    }
    for i in 0..ledger.count {
        let path = dir.join("shards").join(format!("shard-{i:04}.redb"));
        let reader = ShardReader::open_existing(&path, i, AuditOpen::ReadOnly)
            .map_err(|e| Failure::Unusable(format!("shard {i} ({}): {e}", path.display())))?;
        reader
            .each_journal_entry(0, u64::MAX, |seq, bytes| -> Result<(), PrintError> {
                let entry = base64::engine::general_purpose::STANDARD.encode(bytes);
                Ok(out.entry(i, seq, &entry)?)
            })
            .map_err(|e| Failure::Unusable(e.to_string()))?;
    }
    out.flush().map_err(written)
}

/// `--server`: the same lines from a running server. The checkpoint is read first, so the
/// journal pages that follow reach every size it signed.
fn print_remote(url: &str, args: &JournalArgs) -> Result<(), Failure> {
    let token = crate::remote::token(args.token_file.as_deref(), "ASSENT_TOKEN", "an ADMIN key")
        .map_err(Failure::Unusable)?;
    let client = reqwest::blocking::Client::new();
    let call = |query: &str, variables: serde_json::Value| {
        crate::remote::graphql(&client, url, &token, query, variables)
            .map_err(|e| Failure::Unusable(e.to_string()))
    };
    let latest = call("{ checkpoint { note } }", json!({}))?;
    let Some(note) = latest["checkpoint"]["note"].as_str() else {
        return Err(Failure::Unusable(
            "the server has signed no checkpoint yet: nothing to hold its journal to".into(),
        ));
    };
    let (checkpoint, _) = shard::checkpoint::open_checkpoint(note, None)
        .map_err(|e| Failure::Problem(format!("the server's latest checkpoint: {e}")))?;
    let mut out = Lines::new();
    out.checkpoint(note).map_err(written)?;
    const PAGE: &str = "query($s: Int!, $f: UInt64!, $n: Int!) { journalEntries(shard: $s, fromSeq: $f, first: $n) { size entries } }";
    for shard in 0..checkpoint.shards.len() as u32 {
        let (mut from, mut end) = (0u64, None::<u64>);
        while end.is_none_or(|end| from < end) {
            let vars = json!({ "s": shard, "f": from.to_string(), "n": gateway::MAX_JOURNAL_PAGE });
            let page = &call(PAGE, vars)?["journalEntries"];
            let size = page["size"].as_str().and_then(|s| s.parse::<u64>().ok());
            let entries = page["entries"].as_array();
            let (Some(size), Some(entries)) = (size, entries) else {
                return Err(Failure::Problem(format!(
                    "shard {shard}: not a journal page: {page}"
                )));
            };
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                let Some(entry) = entry.as_str() else {
                    return Err(Failure::Problem(format!(
                        "shard {shard}: entry {from} is not a string"
                    )));
                };
                out.entry(shard, from, entry).map_err(written)?;
                from += 1;
            }
            end.get_or_insert(size);
        }
    }
    out.flush().map_err(written)
}
