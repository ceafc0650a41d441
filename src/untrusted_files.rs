//! Property tests of the streamed verifiers on files changed by whoever wants them to pass:
//! the published journal, export and consistency vectors (`tests/vectors/`) with bytes
//! replaced, inserted or removed and lines dropped, repeated or swapped. Each changed file
//! must get an answer (valid, invalid at a named step, or unusable), never a panic; a
//! journal must verify exactly when what its lines say is unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::Value;

use crate::verify_cmd::{KeyArgs, Outcome, consistency};
use crate::verify_export::export;
use crate::verify_journal::journal;

#[path = "../tests/common/edits.rs"]
mod edits;
use edits::{apply, edits};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn vector(name: &str) -> String {
    std::fs::read_to_string(vectors().join(name)).expect("the vectors are in the repository")
}

/// The key the vectors are signed with, pinned as a user would pin it.
fn pinned() -> KeyArgs {
    KeyArgs::from_verifier(vector("public-key.txt").trim())
}

/// What a journal's lines say: the set of its checkpoint notes (their bodies alone when
/// `body_only`: the signature block may change without changing what was signed), whether
/// they all come before the first entry, and each shard's entries (entry and sequence
/// number) in order: lines of different shards may interleave. `None` when a line is not
/// JSON.
type Said = (Vec<Value>, bool, BTreeMap<String, Vec<[Value; 2]>>);

fn journal_says(text: &[u8], body_only: bool) -> Option<Said> {
    let text = std::str::from_utf8(text).ok()?;
    let (mut notes, mut in_order, mut shards) = (Vec::new(), true, BTreeMap::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).ok()?;
        let mut note = v["checkpoint"].clone();
        if note.is_null() {
            let entries: &mut Vec<_> = shards.entry(v["shard"].to_string()).or_default();
            entries.push([v["entry"].clone(), v["seq"].clone()]);
            continue;
        }
        in_order &= shards.is_empty();
        if let (true, Some(n)) = (body_only, note.as_str()) {
            note = shard::checkpoint::split_note(n).map_or(note.clone(), |(b, _)| b.into());
        }
        notes.push(note);
    }
    notes.sort_by_key(Value::to_string);
    notes.dedup();
    Some((notes, in_order, shards))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("the temporary directory is writable");
    path.to_string_lossy().into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn a_changed_journal_verifies_exactly_when_its_lines_say_the_same(edits in edits()) {
        // Proves: `assent verify journal` answers every changed journal without a panic,
        // refuses every change of a checkpoint body, an entry, its place or its shard
        // (dropped, repeated and swapped lines included), and accepts changes of layout alone
        // (white space, a repeated checkpoint, the interleaving of different shards' lines).
        let original = vector("journal-valid.jsonl");
        let changed = apply(original.as_bytes(), &edits);
        let dir = tempfile::tempdir().unwrap();
        let outcome = journal(&write(dir.path(), "j.jsonl", &changed), &[], &pinned());
        let valid = matches!(outcome, Outcome::Valid { .. });
        if let Outcome::Invalid { step, .. } = &outcome {
            prop_assert!(
                ["entry", "chain", "root", "missing", "checkpoint", "signature"].contains(step),
                "unnamed step {step}"
            );
        }
        let same = journal_says(&changed, false) == journal_says(original.as_bytes(), false);
        let same_bodies = journal_says(&changed, true) == journal_says(original.as_bytes(), true);
        prop_assert!(!same || valid, "an unchanged journal was refused");
        prop_assert!(!valid || same_bodies, "a changed journal verified");
    }

    #[test]
    fn a_changed_export_or_consistency_proof_is_answered(edits in edits()) {
        // Proves: `assent verify export` and `assent verify consistency` answer changed
        // files (exports, proofs, and the notes they are checked against) without a panic.
        let dir = tempfile::tempdir().unwrap();
        let exported = apply(vector("export-valid.jsonl").as_bytes(), &edits);
        let _ = export(&write(dir.path(), "e.jsonl", &exported), &pinned());
        let old = vectors().join("checkpoint-old.note");
        let new = vectors().join("checkpoint-new.note");
        let proof = apply(vector("consistency-proof.json").as_bytes(), &edits);
        let proof = PathBuf::from(write(dir.path(), "p.json", &proof));
        let outcome = consistency(&old, &new, &proof, &pinned());
        let changed_note = apply(vector("checkpoint-new.note").as_bytes(), &edits);
        let changed_note = PathBuf::from(write(dir.path(), "n.note", &changed_note));
        let _ = consistency(&old, &changed_note, &vectors().join("consistency-proof.json"), &pinned());
        let proof_unchanged = std::fs::read(&proof).ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            == serde_json::from_str::<Value>(&vector("consistency-proof.json")).ok();
        if proof_unchanged {
            prop_assert!(matches!(outcome, Outcome::Valid { .. }), "an unchanged proof was refused");
        }
    }
}
