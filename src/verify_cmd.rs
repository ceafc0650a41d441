//! `assent verify`: offline checks of receipts, checkpoints and consistency proofs.
//! Exit codes: 0 valid, 1 invalid (the first failing step is named), 2 unusable input.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};
use shard::checkpoint::{Checkpoint, CheckpointError, key_id, open_checkpoint};
use shard::hash::Hash;
use shard::merkle::{Blake3Tree, verify_consistency};
use shard::receipt::{Receipt, verify_receipt};

/// What `assent verify` checks.
#[derive(clap::Subcommand)]
pub enum VerifyCommand {
    /// Check a receipt (JSON, as `Query.receipt.document` returns it); `-` reads stdin.
    Receipt {
        /// Receipt file, or `-`.
        file: String,
        #[command(flatten)]
        keys: KeyArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a checkpoint's signature and internal consistency (what a witness runs).
    Checkpoint {
        /// Signed checkpoint note, or `-`.
        file: String,
        #[command(flatten)]
        keys: KeyArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every event of an export against its own receipt: `assent export --receipts`
    /// output (JSON lines) or a subject's access export (`subjectExport.document`); `-`
    /// reads stdin. Each receipt must verify, each field shown must be what its receipt
    /// proves, and each shard's events must come in journal order, once each.
    Export {
        /// Export file, or `-`.
        file: String,
        #[command(flatten)]
        keys: KeyArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a whole journal as `assent journal` prints it (JSON lines; `-` reads stdin)
    /// against signed checkpoints: every entry in place and chained, every shard's root and
    /// chain head what each checkpoint signed at its size, no signed entry missing.
    Journal {
        /// Journal lines, or `-`.
        file: String,
        /// A signed checkpoint note to hold the journal to, besides those in the file
        /// (repeatable).
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        #[command(flatten)]
        keys: KeyArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that checkpoint --new extends checkpoint --old, shard by shard.
    Consistency {
        /// Older signed checkpoint note.
        #[arg(long)]
        old: PathBuf,
        /// Newer signed checkpoint note.
        #[arg(long)]
        new: PathBuf,
        /// Proof JSON (the `consistencyProof` query's result, or `{"shards": [...]}`).
        #[arg(long)]
        proof: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Which signer to trust. Without either, only the mathematics is checked.
#[derive(clap::Args)]
pub struct KeyArgs {
    /// The ledger's ed25519 public key: base64, a verifier key `name+id+base64`, or a file
    /// holding either.
    #[arg(long)]
    public_key: Option<String>,
    /// A file of trusted verifier keys (`name+keyid+base64(0x01‖key)`, one per line), or the
    /// JSON of `/.well-known/assent/keys`.
    #[arg(long)]
    trusted_keys: Option<PathBuf>,
}

impl KeyArgs {
    /// Key arguments pinning one verifier key string.
    pub fn from_verifier(key: &str) -> KeyArgs {
        KeyArgs {
            public_key: Some(key.to_string()),
            trusted_keys: None,
        }
    }
}

/// The outcome of a check.
pub enum Outcome {
    /// Everything verified.
    Valid { summary: String, details: Value },
    /// A step failed.
    Invalid { step: &'static str, reason: String },
    /// The input could not be used at all.
    Unusable(String),
}

impl Outcome {
    /// Prints the outcome and returns the exit code.
    pub fn report(self, json_out: bool) -> u8 {
        let (code, text) = match &self {
            Outcome::Valid { summary, details } => (
                0,
                if json_out {
                    json!({ "valid": true, "summary": summary, "details": details }).to_string()
                } else {
                    summary.clone()
                },
            ),
            Outcome::Invalid { step, reason } => (
                1,
                if json_out {
                    json!({ "valid": false, "step": step, "reason": reason }).to_string()
                } else {
                    format!("INVALID at step {step}: {reason}")
                },
            ),
            Outcome::Unusable(m) => (
                2,
                if json_out {
                    json!({ "valid": false, "unusable": m }).to_string()
                } else {
                    format!("unusable input: {m}")
                },
            ),
        };
        println!("{text}");
        code
    }
}

/// Why a streamed check (an export, a journal) was not accepted: the `Outcome` to report.
pub(crate) type Refusal = Box<Outcome>;

/// A failed step of a streamed check.
pub(crate) fn invalid(step: &'static str, reason: String) -> Refusal {
    Box::new(Outcome::Invalid { step, reason })
}

/// Input a streamed check cannot use.
pub(crate) fn unusable(reason: String) -> Refusal {
    Box::new(Outcome::Unusable(reason))
}

/// The lines of `file`, or of standard input for `-`.
pub(crate) fn open_lines(file: &str) -> Result<Box<dyn std::io::BufRead>, Refusal> {
    if file == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let f = std::fs::File::open(file).map_err(|e| unusable(format!("{file}: {e}")))?;
    Ok(Box::new(std::io::BufReader::new(f)))
}

/// A trusted signer: key name and key.
pub type Trusted = (Option<String>, VerifyingKey);

fn read_input(file: &str) -> Result<String, String> {
    if file == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("stdin: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))
    }
}

fn parse_key_text(text: &str) -> Option<Trusted> {
    let text = text.trim();
    // A bare base64 key may itself contain '+', so try it first.
    if let Some(key) = B64
        .decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
    {
        return Some((None, key));
    }
    if let Some((name, rest)) = text.split_once('+') {
        let (_, b64) = rest.split_once('+')?;
        let bytes = B64.decode(b64).ok()?;
        if bytes.len() != 33 || bytes[0] != 0x01 {
            return None;
        }
        let key = VerifyingKey::from_bytes(&bytes[1..].try_into().ok()?).ok()?;
        return Some((Some(name.to_string()), key));
    }
    let bytes = B64.decode(text).ok()?;
    Some((
        None,
        VerifyingKey::from_bytes(&bytes.try_into().ok()?).ok()?,
    ))
}

/// The signers the user pinned, if any.
pub fn trusted(keys: &KeyArgs) -> Result<Vec<Trusted>, String> {
    let mut out = Vec::new();
    if let Some(k) = &keys.public_key {
        let text = if Path::new(k).exists() {
            std::fs::read_to_string(k).map_err(|e| format!("{k}: {e}"))?
        } else {
            k.clone()
        };
        out.push(
            parse_key_text(&text)
                .ok_or("--public-key is neither a base64 ed25519 key nor a verifier key")?,
        );
    }
    if let Some(f) = &keys.trusted_keys {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            for k in v["keys"].as_array().cloned().unwrap_or_default() {
                let vk = k["verifierKey"]
                    .as_str()
                    .and_then(parse_key_text)
                    .ok_or("trusted keys JSON holds a bad verifierKey")?;
                out.push(vk);
            }
        } else {
            for line in text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            {
                out.push(
                    parse_key_text(line).ok_or_else(|| format!("bad trusted key line {line:?}"))?,
                );
            }
        }
        if out.is_empty() {
            return Err(format!("{} holds no keys", f.display()));
        }
    }
    Ok(out)
}

/// Opens a note with the pinned keys: Ok((checkpoint, signer key id or None when unpinned)).
pub fn open_with(
    note: &str,
    trusted: &[Trusted],
) -> Result<(Checkpoint, Option<String>), CheckpointError> {
    if trusted.is_empty() {
        return open_checkpoint(note, None).map(|(c, _)| (c, None));
    }
    let (unsigned, _) = open_checkpoint(note, None)?;
    let mut last = None;
    for (name, key) in trusted {
        let name = name.clone().unwrap_or_else(|| unsigned.origin.clone());
        match open_checkpoint(note, Some((&name, key))) {
            Ok((c, _)) => return Ok((c, Some(hex(&key_id(&name, key))))),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one trusted key"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn signer_text(signer: &Option<String>) -> String {
    match signer {
        Some(id) => format!("signed by key {id}"),
        None => "signer NOT checked (no key pinned: pass --public-key or --trusted-keys)".into(),
    }
}

/// `assent verify receipt`.
pub fn receipt(file: &str, keys: &KeyArgs) -> Outcome {
    let text = match read_input(file) {
        Ok(t) => t,
        Err(e) => return Outcome::Unusable(e),
    };
    let receipt: Receipt = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => return Outcome::Unusable(format!("not a receipt: {e}")),
    };
    let trusted = match trusted(keys) {
        Ok(t) => t,
        Err(e) => return Outcome::Unusable(e),
    };
    // The mathematics first, then the signer (so a bad signature is named as such).
    let summary = match verify_receipt(&receipt, None) {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Invalid {
                step: e.step(),
                reason: e.to_string(),
            };
        }
    };
    let signer = match open_with(&receipt.checkpoint, &trusted) {
        Ok((_, s)) => s,
        Err(e) => {
            return Outcome::Invalid {
                step: e.step(),
                reason: e.to_string(),
            };
        }
    };
    let recorded = chrono::DateTime::from_timestamp_millis(summary.entry.recorded_at_ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    Outcome::Valid {
        summary: format!(
            "{} of customer {}, recorded {}, included in checkpoint {} of {}, {}: VALID",
            match summary.entry.erasure() {
                Some(e) => format!(
                    "erasure {} (personal records of {} events erased, reason {:?})",
                    receipt.event_id,
                    e.erased_seqs.len(),
                    e.reason
                ),
                None => format!("event {}", receipt.event_id),
            },
            summary.entry.customer_id,
            recorded,
            summary.checkpoint_number,
            summary.origin,
            signer_text(&signer)
        ),
        details: json!({
            "eventId": receipt.event_id, "customerId": summary.entry.customer_id, "shard": summary.entry.shard_id,
            "sequence": summary.entry.seq, "recordedAt": recorded, "entryHash": summary.entry_hash.to_hex(),
            "checkpoint": summary.checkpoint_number, "origin": summary.origin, "signerKeyId": signer,
            "subjectId": summary.personal.map(|p| p.subject_id),
            "erasedSequences": summary.entry.erasure().map(|e| e.erased_seqs.clone()),
        }),
    }
}

/// `assent verify checkpoint`.
pub fn checkpoint(file: &str, keys: &KeyArgs) -> Outcome {
    let note = match read_input(file) {
        Ok(t) => t,
        Err(e) => return Outcome::Unusable(e),
    };
    let trusted = match trusted(keys) {
        Ok(t) => t,
        Err(e) => return Outcome::Unusable(e),
    };
    match open_with(&note, &trusted) {
        Ok((c, signer)) => Outcome::Valid {
            summary: format!(
                "checkpoint {} of {} ({} entries over {} shards), {}: VALID",
                c.number,
                c.origin,
                c.total_size(),
                c.shards.len(),
                signer_text(&signer)
            ),
            details: json!({ "number": c.number, "origin": c.origin, "totalSize": c.total_size(), "combinedRoot": c.combined_root().to_hex(), "signerKeyId": signer }),
        },
        Err(e) => Outcome::Invalid {
            step: e.step(),
            reason: e.to_string(),
        },
    }
}

/// `assent verify consistency`.
pub fn consistency(old: &Path, new: &Path, proof: &Path, keys: &KeyArgs) -> Outcome {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let (old_note, new_note, proof_text) = match (read(old), read(new), read(proof)) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Outcome::Unusable(e),
    };
    let trusted = match trusted(keys) {
        Ok(t) => t,
        Err(e) => return Outcome::Unusable(e),
    };
    let proof: Value = match serde_json::from_str(&proof_text) {
        Ok(v) => v,
        Err(e) => return Outcome::Unusable(format!("proof is not JSON: {e}")),
    };
    let shards = proof
        .get("shards")
        .or_else(|| proof.pointer("/data/consistencyProof/shards"))
        .and_then(Value::as_array)
        .cloned();
    let Some(shards) = shards else {
        return Outcome::Unusable("proof JSON has no `shards` array".into());
    };
    let (a, sa) = match open_with(&old_note, &trusted) {
        Ok(x) => x,
        Err(e) => {
            return Outcome::Invalid {
                step: "old-checkpoint",
                reason: e.to_string(),
            };
        }
    };
    let (b, _) = match open_with(&new_note, &trusted) {
        Ok(x) => x,
        Err(e) => {
            return Outcome::Invalid {
                step: "new-checkpoint",
                reason: e.to_string(),
            };
        }
    };
    if a.origin != b.origin
        || a.shards.len() != b.shards.len()
        || a.number > b.number
        || shards.len() != a.shards.len()
    {
        return Outcome::Invalid { step: "checkpoints", reason: "the checkpoints are of different ledgers, shard counts or order, or the proof has the wrong shard count".into() };
    }
    for ((old, new), p) in a.shards.iter().zip(&b.shards).zip(&shards) {
        let path: Option<Vec<Hash>> = p["path"].as_array().map(|v| {
            v.iter()
                .filter_map(|h| h.as_str().and_then(Hash::from_hex))
                .collect()
        });
        let Some(path) = path.filter(|v| Some(v.len()) == p["path"].as_array().map(Vec::len))
        else {
            return Outcome::Unusable(format!(
                "shard {}: path is not a list of hashes",
                old.shard_id
            ));
        };
        if let Err(e) =
            verify_consistency(&Blake3Tree, old.size, new.size, &old.root, &new.root, &path)
        {
            return Outcome::Invalid {
                step: "consistency",
                reason: format!("shard {}: {e}", old.shard_id),
            };
        }
    }
    Outcome::Valid {
        summary: format!(
            "checkpoint {} extends checkpoint {} on every one of {} shards, {}: VALID",
            b.number,
            a.number,
            a.shards.len(),
            signer_text(&sa)
        ),
        details: json!({ "old": a.number, "new": b.number, "shards": a.shards.len() }),
    }
}
