//! What a verifier is handed comes from whoever wants it to be wrong: entries, personal
//! records, checkpoint notes, proofs and receipts of any shape. These properties drive the
//! pure crate's decoders and verifiers with arbitrary and mutated inputs (the published
//! vectors of `tests/vectors/` changed byte by byte and line by line, as
//! `tests/common/edits.rs` changes them) and require an answer, never a panic, and, for the
//! hashed formats, that whatever decodes is the one canonical encoding of what it decodes
//! to (two byte strings for one entry would give one event two hashes).

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use proptest::prelude::*;
use shard::checkpoint::{Checkpoint, open_checkpoint, split_note};
use shard::format::{Entry, EntryView, HeaderView, PersonalRecord};
use shard::hash::Hash;
use shard::merkle::{Blake3Tree, root_from_inclusion_proof, verify_consistency, verify_inclusion};
use shard::receipt::{Receipt, verify_receipt};

#[path = "../../tests/common/edits.rs"]
mod edits;
use edits::{apply, edits};

fn vector(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The entries of the published journal vector (both kinds: consents and an erasure).
fn vector_entries() -> Vec<Vec<u8>> {
    vector("journal-valid.jsonl")
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["entry"].as_str().map(|e| B64.decode(e).unwrap())
        })
        .collect()
}

fn valid_receipt() -> Receipt {
    serde_json::from_str(&vector("receipt-valid.json")).unwrap()
}

fn vector_key() -> VerifyingKey {
    let bytes: [u8; 32] = B64
        .decode(vector("public-key.txt").trim())
        .unwrap()
        .try_into()
        .unwrap();
    VerifyingKey::from_bytes(&bytes).unwrap()
}

/// Decodes `bytes` with every entry decoder; when one accepts them, all must, agreeing,
/// and the bytes must be the canonical encoding of the entry.
fn check_entry_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
    let owned = Entry::decode(bytes);
    let view = EntryView::decode(bytes);
    prop_assert_eq!(owned.is_ok(), view.is_ok(), "the two decoders disagree");
    if let (Ok(entry), Ok(view)) = (owned, view) {
        prop_assert_eq!(&entry.encode(), bytes, "decoded bytes are not canonical");
        let header = HeaderView::decode(bytes).expect("a whole entry's header decodes");
        prop_assert_eq!(header, view.header());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn entry_decoders_answer_any_bytes_and_accept_only_canonical_ones(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        // Proves: arbitrary bytes never panic a decoder, and nothing but canonical bytes decodes.
        check_entry_decoders(&bytes)?;
        let _ = PersonalRecord::decode(&bytes);
        let _ = PersonalRecord::decode_subject_id(&bytes);
    }

    #[test]
    fn a_changed_real_entry_decodes_only_if_it_is_canonical(
        which in any::<prop::sample::Index>(),
        edits in edits(),
    ) {
        // Proves: byte changes of real entries of both kinds never panic a decoder, and a
        // change that still decodes is the canonical encoding of a different entry.
        let entries = vector_entries();
        let original = which.get(&entries).clone();
        let changed = apply(&original, &edits);
        check_entry_decoders(&changed)?;
        if let (true, Ok(e)) = (changed != original, Entry::decode(&changed)) {
            prop_assert_ne!(e, Entry::decode(&original).unwrap());
        }
    }

    #[test]
    fn inclusion_and_consistency_checks_answer_any_sizes_and_proofs(
        index in any::<u64>(),
        old_size in prop_oneof![any::<u64>(), 0u64..70],
        new_size in prop_oneof![any::<u64>(), 0u64..70, Just(u64::MAX)],
        proof_len in 0usize..80,
        seed in any::<u8>(),
    ) {
        // Proves: no tree size, index or proof length (up to 64 levels and beyond) panics a
        // proof check; an answer is always given.
        let proof: Vec<Hash> = (0..proof_len)
            .map(|i| Hash([seed.wrapping_add(i as u8); 32]))
            .collect();
        let root = Hash([seed; 32]);
        let _ = root_from_inclusion_proof(&Blake3Tree, &root, index, new_size, &proof);
        let _ = verify_inclusion(&Blake3Tree, &root, index, new_size, &proof, &root);
        let _ = verify_consistency(&Blake3Tree, old_size, new_size, &root, &root, &proof);
    }

    #[test]
    fn a_changed_checkpoint_note_is_answered_and_never_verifies(
        edits in edits(),
        text in "\\PC{0,300}",
    ) {
        // Proves: byte changes of a real signed note, and arbitrary text, never panic the
        // note parser; a changed note never passes the pinned key's signature check.
        let note = vector("checkpoint-new.note");
        let key = vector_key();
        let changed = apply(note.as_bytes(), &edits);
        if let Ok(changed) = String::from_utf8(changed) {
            let opened = open_checkpoint(&changed, Some(("example.com/assent", &key)));
            if let Ok((cp, _)) = opened {
                // Only a change outside the signed body (after it) may still verify.
                let (body, _) = split_note(&changed).unwrap();
                prop_assert_eq!(body, split_note(&note).unwrap().0);
                prop_assert_eq!(cp, Checkpoint::parse_body(body).unwrap());
            }
        }
        let _ = open_checkpoint(&text, None);
        let _ = Checkpoint::parse_body(&text);
    }

    #[test]
    fn a_receipt_with_any_numbers_and_path_lengths_is_answered(
        shard_id in prop_oneof![any::<u32>(), 0u32..3],
        seq in prop_oneof![any::<u64>(), 0u64..20],
        tree_size in prop_oneof![any::<u64>(), 0u64..20],
        leaf_index in prop_oneof![any::<u64>(), 0u64..3],
        combined_size in prop_oneof![any::<u64>(), 0u64..3],
        shard_path_len in 0usize..70,
        combined_path_len in 0usize..70,
    ) {
        // Proves: whatever numbers and path lengths a receipt claims, verification answers
        // without a panic, and a receipt changed in any of them never verifies.
        let valid = valid_receipt();
        let mut r = valid.clone();
        r.shard_proof.shard_id = shard_id;
        r.shard_proof.seq = seq;
        r.shard_proof.tree_size = tree_size;
        r.combined_proof.leaf_index = leaf_index;
        r.combined_proof.tree_size = combined_size;
        let hex = "00".repeat(32);
        r.shard_proof.path.resize(shard_path_len, hex.clone());
        r.combined_proof.path.resize(combined_path_len, hex);
        let verdict = verify_receipt(&r, Some(("example.com/assent", &vector_key())));
        if r != valid {
            prop_assert!(verdict.is_err(), "a changed receipt verified");
        } else {
            prop_assert!(verdict.is_ok());
        }
    }
}
