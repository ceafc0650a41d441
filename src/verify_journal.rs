//! `assent verify journal`: the JSON lines of `assent journal` against signed checkpoints
//! (docs/receipts.md §7), streamed: memory holds the checkpoints and each shard's Merkle
//! frontier, not the journal.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use shard::checkpoint::Checkpoint;
use shard::verify::{ChainError, ChainVerifier, ShardHead};

use crate::verify_cmd::{
    KeyArgs, Outcome, Refusal, Trusted, invalid, open_lines, open_with, signer_text, trusted,
    unusable,
};

/// The journal check in progress: checkpoints first, then entries line by line.
struct JournalCheck {
    /// The pinned signers; empty checks only the mathematics (and says so).
    trusted: Vec<Trusted>,
    /// The checkpoints met so far (origin and shard count must agree).
    checkpoints: Vec<Checkpoint>,
    /// Signers of the checkpoints (key ids), when keys are pinned.
    signers: Vec<String>,
    /// (shard, size) → (checkpoint number, the head it signed) still to be met.
    due: HashMap<(u32, u64), Vec<(u64, ShardHead)>>,
    /// One chain per shard, from the first entry line on.
    walks: Option<Vec<ChainVerifier>>,
    /// Entries checked.
    entries: u64,
}

impl JournalCheck {
    /// Takes a signed checkpoint (from `--checkpoint` or a line before the entries): its
    /// shard heads become due at their sizes.
    fn checkpoint(&mut self, note: &str, at: &str) -> Result<(), Refusal> {
        if self.walks.is_some() {
            return Err(unusable(format!(
                "{at}: a checkpoint after entries (checkpoints come first)"
            )));
        }
        let (cp, signer) =
            open_with(note, &self.trusted).map_err(|e| invalid(e.step(), format!("{at}: {e}")))?;
        if let Some(first) = self.checkpoints.first()
            && (first.origin != cp.origin || first.shards.len() != cp.shards.len())
        {
            return Err(invalid(
                "checkpoint",
                format!("{at}: the checkpoints are of different ledgers or shard counts"),
            ));
        }
        for head in &cp.shards {
            let due = self.due.entry((head.shard_id, head.size)).or_default();
            due.push((cp.number, *head));
        }
        self.signers.extend(signer);
        self.checkpoints.push(cp);
        Ok(())
    }

    /// Before the first entry: every shard empty, met against checkpoints of size 0.
    fn start(&mut self) -> Result<(), Refusal> {
        if self.walks.is_some() {
            return Ok(());
        }
        let Some(first) = self.checkpoints.first() else {
            return Err(unusable("no checkpoint: pass --checkpoint NOTE".into()));
        };
        let walks: Vec<ChainVerifier> = (0..first.shards.len() as u32)
            .map(ChainVerifier::new)
            .collect();
        for (i, walk) in walks.iter().enumerate() {
            meet(&mut self.due, i as u32, walk)?;
        }
        self.walks = Some(walks);
        Ok(())
    }

    /// Takes an entry line: it must be the next entry of its shard, decode strictly and
    /// link to the one before; then the heads due at the new size are met.
    fn entry(&mut self, line: &Value, at: &str) -> Result<(), Refusal> {
        self.start()?;
        let walks = self.walks.as_mut().expect("started");
        let shard = line["shard"].as_u64().and_then(|s| u32::try_from(s).ok());
        let Some((shard, walk)) = shard.and_then(|s| Some((s, walks.get_mut(s as usize)?))) else {
            return Err(invalid("entry", format!("{at}: no such shard")));
        };
        let bytes = line["entry"].as_str().and_then(|e| B64.decode(e).ok());
        let (Some(bytes), true) = (bytes, line["seq"] == json!(walk.size().to_string())) else {
            return Err(invalid(
                "entry",
                format!(
                    "{at}: not entry {} of shard {shard} (a gap, a repeat or a reorder)",
                    walk.size()
                ),
            ));
        };
        walk.push(&bytes).map_err(|e| {
            let step = match e {
                ChainError::BrokenLink { .. } | ChainError::TimeWentBackwards { .. } => "chain",
                _ => "entry",
            };
            invalid(step, format!("{at}: shard {shard}: {e}"))
        })?;
        meet(&mut self.due, shard, walk)?;
        self.entries += 1;
        Ok(())
    }

    /// After the last line: every signed head must have been met (none beyond the end).
    fn finish(mut self) -> Result<Outcome, Refusal> {
        self.start()?;
        if let Some(((shard, size), _)) = self.due.iter().next() {
            return Err(invalid(
                "missing",
                format!(
                    "shard {shard} ends before the size {size} a checkpoint signed (entries were dropped)"
                ),
            ));
        }
        let newest = self.checkpoints.iter().map(|c| c.number).max().unwrap_or(0);
        self.signers.sort();
        self.signers.dedup();
        let signer = (!self.trusted.is_empty()).then(|| self.signers.join(", "));
        Ok(Outcome::Valid {
            summary: format!(
                "{} entries on {} shard(s) chained, every root and chain head signed by {} checkpoint(s) (newest {newest}) met, none missing, {}: VALID",
                self.entries,
                self.walks.as_ref().map_or(0, Vec::len),
                self.checkpoints.len(),
                signer_text(&signer)
            ),
            details: json!({ "entries": self.entries, "checkpoints": self.checkpoints.len() }),
        })
    }
}

/// The heads signed for `shard` at its size so far must be what its entries give; they are
/// met once and forgotten.
fn meet(
    due: &mut HashMap<(u32, u64), Vec<(u64, ShardHead)>>,
    shard: u32,
    walk: &ChainVerifier,
) -> Result<(), Refusal> {
    for (number, head) in due.remove(&(shard, walk.size())).unwrap_or_default() {
        walk.finish(&head).map_err(|e| {
            invalid(
                "root",
                format!("shard {shard}: checkpoint {number} signed otherwise: {e}"),
            )
        })?;
    }
    Ok(())
}

/// `assent verify journal FILE|- [--checkpoint NOTE]...`.
pub fn journal(file: &str, notes: &[PathBuf], keys: &KeyArgs) -> Outcome {
    match check(file, notes, keys) {
        Ok(o) => o,
        Err(refusal) => *refusal,
    }
}

fn check(file: &str, notes: &[PathBuf], keys: &KeyArgs) -> Result<Outcome, Refusal> {
    let mut check = JournalCheck {
        trusted: trusted(keys).map_err(unusable)?,
        checkpoints: Vec::new(),
        signers: Vec::new(),
        due: HashMap::new(),
        walks: None,
        entries: 0,
    };
    for path in notes {
        let note = std::fs::read_to_string(path)
            .map_err(|e| unusable(format!("{}: {e}", path.display())))?;
        check.checkpoint(&note, &path.display().to_string())?;
    }
    for (i, line) in open_lines(file)?.lines().enumerate() {
        let at = format!("line {}", i + 1);
        let line = line.map_err(|e| unusable(format!("{file}: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(&line).map_err(|_| unusable(format!("{at} is not JSON")))?;
        match v["checkpoint"].as_str() {
            Some(note) => check.checkpoint(note, &at)?,
            None => check.entry(&v, &at)?,
        }
    }
    check.finish()
}
