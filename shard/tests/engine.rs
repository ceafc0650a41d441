//! Engine tests against real redb files: durability, atomicity, idempotency, queries,
//! proofs and tamper detection.
#![cfg(feature = "engine")]

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::event;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use shard::engine::{
    Append, AppendError, GetHead, IndexHold, OpenError, Order, ShardAuditError, ShardHandle, Store,
    SubjectsPass, VerifyJournalError,
};
use shard::format::{Choice, Entry, PersonalRecord};
use shard::hash::{Hash, personal_commitment};
use shard::merkle::{Blake3Tree, verify_consistency};
use shard::verify::{ChainError, verify_entry_inclusion};

const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
const MERKLE: TableDefinition<(u64, u8), [u8; 32]> = TableDefinition::new("merkle");

fn open(path: &Path) -> Store {
    Store::open(path, 0).expect("shard opens")
}

/// Appends `n` events of customer `acme`, subject `a`, one commit each.
fn append_one_by_one(store: &mut Store, n: u64) {
    for i in 0..n {
        store
            .append_batches(vec![vec![event("acme", "a", i)]])
            .unwrap()
            .remove(0)
            .unwrap();
    }
}

#[actix_rt::test]
async fn ten_thousand_concurrent_appends_survive_reopen_and_verify() {
    // Proves: every acknowledged event is durable and the reopened ledger verifies end to end.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-0.redb");
    let shard = ShardHandle::start(&path, 0).unwrap();
    const TASKS: u64 = 64;
    const PER_TASK: u64 = 10_000 / TASKS + 1;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let addr = shard.addr.clone();
        tasks.push(actix_rt::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PER_TASK {
                let ev = event(
                    &format!("cust-{}", t % 7),
                    &format!("subj-{t}-{}", i % 5),
                    i,
                );
                let out = addr.send(Append(vec![ev])).await.unwrap().unwrap();
                acked.push((out[0].entry.seq, out[0].entry_hash));
            }
            acked
        }));
    }
    let mut acked: HashMap<u64, Hash> = HashMap::new();
    for t in tasks {
        for (seq, hash) in t.await.unwrap() {
            assert!(
                acked.insert(seq, hash).is_none(),
                "seq {seq} acknowledged twice"
            );
        }
    }
    let total = TASKS * PER_TASK;
    assert_eq!(acked.len() as u64, total);
    let head_before = shard.addr.send(GetHead {}).await.unwrap().unwrap();
    shard.stop().await;

    let store = open(&path);
    let reader = store.reader();
    assert_eq!(store.head(), head_before);
    assert_eq!(store.head().size, total);
    for (seq, hash) in &acked {
        let stored = reader
            .event(*seq)
            .unwrap()
            .expect("acknowledged event is stored");
        assert_eq!(&stored.entry_hash, hash);
    }
    assert_eq!(reader.verify_journal().unwrap(), store.head());
    let head = store.head();
    for seq in (0..total).step_by(97) {
        let ev = reader.event(seq).unwrap().unwrap();
        let proof = reader.inclusion_proof(seq, head.size).unwrap();
        assert_eq!(proof.root, head.root);
        verify_entry_inclusion(&ev.entry_bytes, seq, head.size, &proof.path, &head.root).unwrap();
    }
}

#[test]
fn a_batch_with_one_invalid_event_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    store
        .append_batches(vec![vec![event("acme", "a", 0)]])
        .unwrap()
        .remove(0)
        .unwrap();
    let before = store.head();
    let mut bad = event("acme", "b", 1);
    bad.subject_id = "x".repeat(300);
    let batch = vec![event("acme", "c", 2), bad, event("acme", "d", 3)];
    let good = vec![event("acme", "e", 4)];
    let results = store.append_batches(vec![batch, good]).unwrap();
    match &results[0] {
        Err(AppendError::Invalid { index: 1, source }) => assert_eq!(source.field, "subjectId"),
        other => panic!("expected an invalid-event error, got {other:?}"),
    }
    // The other batch of the same group commit is unaffected.
    assert_eq!(results[1].as_ref().unwrap()[0].entry.seq, 1);
    assert_eq!(store.head().size, before.size + 1);
    let reader = store.reader();
    assert!(
        reader
            .history("acme", "c", Order::Ascending, None, 10)
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        reader
            .history("acme", "d", Order::Ascending, None, 10)
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(reader.verify_journal().unwrap(), store.head());
}

#[test]
fn batches_must_hold_one_customer_and_at_most_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir.path().join("s.redb"));
    let mixed = vec![event("acme", "a", 0), event("other", "a", 0)];
    let too_big: Vec<_> = (0..1001).map(|i| event("acme", "a", i)).collect();
    let results = store.append_batches(vec![mixed, too_big, vec![]]).unwrap();
    assert!(matches!(
        results[0],
        Err(AppendError::MixedCustomers { index: 1 })
    ));
    assert!(matches!(
        results[1],
        Err(AppendError::BatchSize { count: 1001, .. })
    ));
    assert!(matches!(
        results[2],
        Err(AppendError::BatchSize { count: 0, .. })
    ));
    assert_eq!(store.head().size, 0);
}

#[test]
fn an_append_hands_back_each_new_events_personal_record_and_none_for_a_duplicate() {
    // Proves: the personal record moved out of a submitted event comes back with its
    // entry (the gateway answers with it instead of keeping a copy), it is the record the
    // stored one and the entry's commitment hold, and a duplicate carries none.
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir.path().join("s.redb"));
    let mut ev = event("acme", "alice", 0);
    ev.idempotency_key = Some("req-1".into());
    let other = event("acme", "bob", 1);
    let expected = [ev.personal_record(), other.personal_record()];
    let batch = vec![ev.clone(), other, ev];
    let out = store
        .append_batches(vec![batch])
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(out[0].personal.as_ref(), Some(&expected[0]));
    assert_eq!(out[1].personal.as_ref(), Some(&expected[1]));
    assert!(out[2].duplicate && out[2].personal.is_none());
    let reader = store.reader();
    for (a, want) in out.iter().zip(&expected) {
        let stored = reader.event(a.entry.seq).unwrap().unwrap();
        assert_eq!(stored.personal.unwrap().record, *want);
    }
}

#[test]
fn idempotency_returns_the_original_and_refuses_a_changed_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    let mut ev = event("acme", "a", 0);
    ev.idempotency_key = Some("req-1".into());
    let first = store
        .append_batches(vec![vec![ev.clone()]])
        .unwrap()
        .remove(0)
        .unwrap()
        .remove(0);
    assert!(!first.duplicate);
    // A retry in a later commit, and a repeat inside one batch, both give the original.
    let again = store
        .append_batches(vec![vec![ev.clone(), ev.clone()]])
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(again.iter().all(|a| a.duplicate && a.entry == first.entry));
    assert_eq!(store.head().size, 1);
    let mut changed = ev.clone();
    changed.purposes.insert("analytics".into(), Choice::Granted);
    changed.purposes.insert("ads".into(), Choice::Denied);
    let results = store
        .append_batches(vec![vec![event("acme", "z", 9), changed]])
        .unwrap();
    assert!(
        matches!(&results[0], Err(AppendError::IdempotencyConflict { index: 1, key }) if key == "req-1")
    );
    assert_eq!(store.head().size, 1, "the conflicting batch wrote nothing");
    // Idempotency survives a restart and an index rebuild.
    drop(store);
    Store::reset_indexes(&path).unwrap();
    let mut store = open(&path);
    let retry = store
        .append_batches(vec![vec![ev]])
        .unwrap()
        .remove(0)
        .unwrap()
        .remove(0);
    assert!(retry.duplicate);
    assert_eq!(retry.entry, first.entry);
}

#[test]
fn queries_answer_state_history_ranges_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir.path().join("s.redb"));
    for i in 0..25 {
        let batch = vec![event("acme", "alice", i), event("acme", "bob", i)];
        store
            .append_batches(vec![batch])
            .unwrap()
            .remove(0)
            .unwrap();
    }
    store
        .append_batches(vec![vec![event("other", "alice", 99)]])
        .unwrap()
        .remove(0)
        .unwrap();
    store.index_now(false).unwrap();
    let r = store.reader();

    let state = r.current_state("acme", "alice").unwrap();
    let last = r
        .history("acme", "alice", Order::Descending, None, 1)
        .unwrap()
        .items[0]
        .clone();
    assert_eq!(state.len(), 3);
    assert!(state.iter().all(|s| s.seq == last.entry.seq));
    let analytics = state.iter().find(|s| s.purpose == "analytics").unwrap();
    assert_eq!(
        analytics.choice,
        Choice::Granted,
        "event 24 grants analytics"
    );
    assert!(r.current_state("acme", "nobody").unwrap().is_empty());
    assert!(
        r.current_state("unknown-customer", "alice")
            .unwrap()
            .is_empty()
    );

    for order in [Order::Ascending, Order::Descending] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = r.history("acme", "alice", order, after, 7).unwrap();
            seen.extend(page.items.iter().map(|e| e.entry.seq));
            if !page.has_more {
                break;
            }
            after = page.last_cursor;
        }
        let mut expected: Vec<u64> = (0..25).map(|i| 2 * i).collect();
        if order == Order::Descending {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order:?} pages have no gaps or repeats");
    }

    let mut count = 0;
    let mut after = None;
    loop {
        let page = r.customer_events("acme", 0, i64::MAX, after, 10).unwrap();
        count += page.items.len();
        assert!(page.items.iter().all(|e| e.entry.customer_id == "acme"));
        if !page.has_more {
            break;
        }
        after = page.last_cursor;
    }
    assert_eq!(count, 50);
    assert!(
        r.customer_events("acme", i64::MAX - 1, i64::MAX, None, 10)
            .unwrap()
            .items
            .is_empty()
    );

    let counts = r.daily_counts("acme", 0, i64::MAX).unwrap();
    let total: u64 = counts
        .iter()
        .filter(|c| c.purpose == "analytics")
        .map(|c| c.granted + c.denied)
        .sum();
    assert_eq!(total, 50);
    let personalisation: u64 = counts
        .iter()
        .filter(|c| c.purpose == "personalisation")
        .map(|c| c.granted)
        .sum();
    assert_eq!(personalisation, 50);
}

#[test]
fn stored_personal_records_open_their_commitments_and_indexes_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    for i in 0..30 {
        store
            .append_batches(vec![vec![event("acme", &format!("s{}", i % 4), i)]])
            .unwrap()
            .remove(0)
            .unwrap();
    }
    store.index_now(false).unwrap();
    let r = store.reader();
    let ev = r.event(5).unwrap().unwrap();
    let personal = ev.personal.clone().unwrap();
    assert_eq!(personal.record.subject_id, "s1");
    let commitment = personal_commitment(&personal.salt, &personal.record.encode());
    assert_eq!(commitment, ev.entry.consent().unwrap().personal_commitment);
    assert_eq!(
        PersonalRecord::decode(&personal.record.encode()).unwrap(),
        personal.record
    );
    // The entry itself holds no personal data.
    let raw = String::from_utf8_lossy(&ev.entry_bytes).to_string();
    assert!(!raw.contains("198.51.100.7") && !raw.contains("Mozilla") && !raw.contains("CQ-TCF"));

    let before_state = r.current_state("acme", "s1").unwrap();
    let before_counts = r.daily_counts("acme", 0, i64::MAX).unwrap();
    drop((r, store));
    Store::reset_indexes(&path).unwrap();
    let store = open(&path);
    let r = store.reader();
    assert_eq!(r.current_state("acme", "s1").unwrap(), before_state);
    assert_eq!(r.daily_counts("acme", 0, i64::MAX).unwrap(), before_counts);
    assert_eq!(
        r.history("acme", "s1", Order::Ascending, None, 100)
            .unwrap()
            .items
            .len(),
        8
    );
}

#[test]
fn consistency_proofs_link_every_earlier_head_to_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir.path().join("s.redb"));
    let mut heads = Vec::new();
    for i in 0..40 {
        store
            .append_batches(vec![vec![event("acme", "a", i)]])
            .unwrap()
            .remove(0)
            .unwrap();
        heads.push(store.head());
    }
    let r = store.reader();
    let now = store.head();
    for old in &heads {
        let p = r.consistency_proof(old.size, now.size).unwrap();
        verify_consistency(
            &Blake3Tree,
            old.size,
            now.size,
            &old.root,
            &now.root,
            &p.path,
        )
        .unwrap();
        assert_eq!(r.root_at(old.size).unwrap(), old.root);
    }
    assert!(r.inclusion_proof(0, now.size + 1).is_err());
    assert!(r.consistency_proof(5, now.size + 1).is_err());
    let same = r.consistency_proof(now.size, now.size).unwrap();
    assert!(
        same.path.is_empty(),
        "between equal sizes the proof is empty"
    );
    assert!(
        r.consistency_proof(now.size + 1, now.size + 1).is_err(),
        "equal sizes beyond the committed tree are still refused"
    );
}

#[test]
fn recorded_at_never_goes_backwards_and_entries_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir.path().join("s.redb"));
    append_one_by_one(&mut store, 20);
    let r = store.reader();
    let mut prev: Option<(i64, Hash)> = None;
    for seq in 0..20 {
        let e = r.event(seq).unwrap().unwrap();
        match prev {
            None => assert_eq!(e.entry.prev_hash, Hash::ZERO),
            Some((t, h)) => {
                assert!(e.entry.recorded_at_ms >= t);
                assert_eq!(e.entry.prev_hash, h);
            }
        }
        prev = Some((e.entry.recorded_at_ms, e.entry_hash));
    }
}

/// Changes table `def` of the shard file at `path` with `f`, in one committed transaction.
fn edit_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    path: &Path,
    def: TableDefinition<K, V>,
    f: impl FnOnce(&mut redb::Table<K, V>),
) {
    use redb::TableHandle;
    let index = shard::engine::index_path(path);
    let path = if shard::engine::in_index_file(def.name()) {
        &index
    } else {
        path
    };
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    f(&mut txn.open_table(def).unwrap());
    txn.commit().unwrap();
}

/// Rewrites journal entry `seq` in the redb file with one byte flipped.
fn tamper(path: &Path, seq: u64, offset: usize) {
    edit_table(path, JOURNAL, |t| {
        let mut bytes = t.get(seq).unwrap().unwrap().value().to_vec();
        bytes[offset] ^= 0x01;
        t.insert(seq, bytes.as_slice()).unwrap();
    });
}

#[test]
fn a_flipped_byte_in_a_stored_entry_is_named_by_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    append_one_by_one(&mut store, 50);
    drop(store);
    // A byte inside the notice id of entry 17 (not a structural byte: it still decodes).
    let notice_offset = {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let bytes = txn
            .open_table(JOURNAL)
            .unwrap()
            .get(17)
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        let e = Entry::decode(&bytes).unwrap();
        let needle = e.consent().unwrap().notice_id.as_bytes().to_vec();
        bytes
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
            .unwrap()
    };
    tamper(&path, 17, notice_offset);
    let store = open(&path); // the tail is intact, so the shard opens...
    match store.reader().verify_journal() {
        Err(VerifyJournalError::Chain {
            source: ChainError::LeafMismatch { seq: 17 },
            ..
        }) => {}
        other => panic!("expected entry 17 to be named, got {other:?}"),
    }
    drop(store);
    // Entry 16 completes no stored node (the nodes under level 2 are not stored): the
    // broken link of entry 17 and the intact one of entry 18 name it; a changed prev_hash
    // (offset 22) of entry 20 breaks both its own link and entry 21's, and names 20.
    tamper(&path, 17, notice_offset); // restored
    for (seq, offset) in [(16, notice_offset), (20, 22 + 5)] {
        tamper(&path, seq, offset);
        match open(&path).reader().verify_journal() {
            Err(VerifyJournalError::Chain {
                source: ChainError::LeafMismatch { seq: named },
                ..
            }) => assert_eq!(named, seq),
            other => panic!("expected entry {seq} to be named, got {other:?}"),
        }
        tamper(&path, seq, offset);
    }
    assert_eq!(open(&path).reader().verify_journal().unwrap().size, 50);
    // ...but a damaged last entry stops the shard from opening at all.
    tamper(&path, 49, 20);
    match Store::open(&path, 0) {
        Err(OpenError::Inconsistent { detail, .. }) => assert!(detail.contains("49"), "{detail}"),
        Err(other) => panic!("expected Inconsistent, got {other}"),
        Ok(_) => panic!("a shard with a damaged tail opened"),
    }
}

#[test]
fn a_changed_missing_or_extra_inner_merkle_node_is_named_by_the_verifier() {
    // Proves: the journal check compares every stored Merkle node (not only leaves and the
    // root) with the tree the entries imply, since proofs are served from stored nodes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    append_one_by_one(&mut store, 50);
    drop(store);
    let expect = |want: ChainError| match open(&path).reader().verify_journal() {
        Err(VerifyJournalError::Chain { source, .. }) if source == want => {}
        other => panic!("expected {want:?}, got {other:?}"),
    };
    // Node (level 2, index 2) covers leaves 8..=11: completed by entry 11, not a peak of
    // the 50-leaf tree, so the shard still opens.
    let original = Database::create(&path)
        .unwrap()
        .begin_read()
        .unwrap()
        .open_table(MERKLE)
        .unwrap()
        .get((11, 2))
        .unwrap()
        .unwrap()
        .value();
    edit_table(&path, MERKLE, |t| {
        t.insert((11, 2), [7u8; 32]).unwrap();
    });
    expect(ChainError::NodeMismatch { seq: 11, level: 2 });
    edit_table(&path, MERKLE, |t| {
        t.remove((11, 2)).unwrap();
    });
    expect(ChainError::NodeMismatch { seq: 11, level: 2 });
    edit_table(&path, MERKLE, |t| {
        t.insert((11, 2), original).unwrap();
        t.insert((50, 0), [1u8; 32]).unwrap();
    });
    expect(ChainError::ExtraNodes { size: 50 });
    edit_table(&path, MERKLE, |t| {
        t.remove((50, 0)).unwrap();
    });
    assert_eq!(open(&path).reader().verify_journal().unwrap().size, 50);
}

#[test]
fn a_layout_5_file_loses_its_two_lowest_levels_on_open_and_every_proof_still_verifies() {
    // Proves: layout 6 stores no Merkle node below level 2 (a proof computes a leaf or a
    // level-1 node from the journal entries under it); a layout-5 file, which stored them
    // all, is migrated at open (those rows deleted, layout 6 written, in one transaction),
    // and then its journal check, roots and inclusion proofs of every entry at every size
    // agree with what they were; a stray leaf row is named by the journal check.
    use shard::merkle::TreeHasher;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    append_one_by_one(&mut store, 37);
    let head = store.head();
    drop(store);
    let rows = |path: &Path| -> Vec<(u64, u8)> {
        let db = Database::create(path).unwrap();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(MERKLE).unwrap();
        t.iter().unwrap().map(|r| r.unwrap().0.value()).collect()
    };
    let inner = rows(&path);
    assert!(inner.iter().all(|&(_, level)| level >= 2), "{inner:?}");
    assert_eq!(
        inner.len(),
        9 + 4 + 2 + 1,
        "37 entries complete 9 + 4 + 2 + 1 nodes of levels 2 to 5"
    );
    // Back to layout 5: a row for every leaf and every level-1 node.
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let journal = txn.open_table(JOURNAL).unwrap();
            let mut merkle = txn.open_table(MERKLE).unwrap();
            let leaf = |seq: u64| Blake3Tree.hash_leaf(journal.get(seq).unwrap().unwrap().value());
            for seq in 0..37u64 {
                merkle.insert((seq, 0), leaf(seq).0).unwrap();
                if seq % 2 == 1 {
                    let node = Blake3Tree.hash_children(&leaf(seq - 1), &leaf(seq));
                    merkle.insert((seq, 1), node.0).unwrap();
                }
            }
            let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
            let mut m = txn.open_table(meta).unwrap();
            m.insert("format_version", 5u32.to_be_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    assert_eq!(rows(&path).len(), inner.len() + 37 + 18);
    let store = open(&path);
    let r = store.reader();
    assert_eq!(r.verify_journal().unwrap(), head);
    for seq in 0..37u64 {
        let ev = r.event(seq).unwrap().unwrap();
        let proof = r.inclusion_proof(seq, head.size).unwrap();
        assert_eq!(proof.root, head.root);
        verify_entry_inclusion(&ev.entry_bytes, seq, head.size, &proof.path, &head.root).unwrap();
        let older = r.inclusion_proof(seq, seq + 1).unwrap();
        assert_eq!(older.root, r.root_at(seq + 1).unwrap());
    }
    drop((r, store));
    assert_eq!(
        rows(&path),
        inner,
        "the leaves are gone, the nodes above kept"
    );
    let db = Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    let version = txn
        .open_table(meta)
        .unwrap()
        .get("format_version")
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(version, 6u32.to_be_bytes(), "migrated to layout 6");
    drop((txn, db));
    // A leaf row put back by hand is not part of layout 6: the check names the node it
    // stands in front of (the first stored node after it, completed by entry 7).
    edit_table(&path, MERKLE, |t| {
        t.insert((4, 0), [1u8; 32]).unwrap();
    });
    match open(&path).reader().verify_journal() {
        Err(VerifyJournalError::Chain {
            source: ChainError::NodeMismatch { seq: 7, level: 2 },
            ..
        }) => {}
        other => panic!("expected the stray leaf to be named, got {other:?}"),
    }
}

#[test]
fn the_whole_shard_audit_reads_the_journal_once_and_reports_journal_problems_first() {
    // Proves: `ShardReader::audit` (the chain walk feeding the index check in batches of
    // AUDIT_BATCH_BYTES) agrees with the two separate checks on a shard of several batches,
    // and names a changed entry as a journal problem even when an index is also wrong.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    for round in 0..12u64 {
        let batches: Vec<_> = ["acme", "globex", "initech"]
            .iter()
            .enumerate()
            .map(|(c, customer)| {
                (0..333u64)
                    .map(|i| {
                        let n = round * 1_000 + c as u64 * 333 + i;
                        event(customer, &format!("s{}", n % 50), n)
                    })
                    .collect()
            })
            .collect();
        for result in store.append_batches(batches).unwrap() {
            result.unwrap();
        }
    }
    store.index_now(true).unwrap();
    let journal_bytes: usize = {
        let db = store.reader();
        let mut total = 0;
        for seq in 0..11_988 {
            total += db.event(seq).unwrap().unwrap().entry_bytes.len();
        }
        total
    };
    assert!(
        journal_bytes > 2 * shard::engine::AUDIT_BATCH_BYTES,
        "the journal spans several batches ({journal_bytes} bytes)"
    );
    let reader = store.reader();
    let mut seen = 0u64;
    let (head, report) = reader
        .audit(SubjectsPass::OneThread, |entry, _| {
            assert_eq!(entry.seq, seen, "entries are observed in order");
            seen += 1;
            Ok(())
        })
        .expect("an intact shard audits");
    assert_eq!(head, reader.verify_journal().unwrap());
    assert_eq!(report, reader.verify_indexes().unwrap());
    let halves = reader.audit(SubjectsPass::TwoThreads, |_, _| Ok(()));
    assert_eq!(halves.unwrap(), (head, report), "both passes agree");
    assert_eq!(
        (seen, report.entries, report.time_rows),
        (11_988, 11_988, 11_988)
    );
    drop((reader, store));
    // A state row that does not decode stops the index check while the walk still runs.
    let copy = dir.path().join("copy.redb");
    common::copy_shard(&path, &copy);
    let subjects = TableDefinition::<(u32, [u8; 32], u64), &[u8]>::new("subjects");
    edit_table(&copy, subjects, |t| {
        let state = t
            .iter()
            .unwrap()
            .map(|r| r.unwrap().0.value())
            .find(|k| k.2 == u64::MAX)
            .expect("a state row");
        t.insert(state, [0xffu8].as_slice()).unwrap();
    });
    for pass in [SubjectsPass::OneThread, SubjectsPass::TwoThreads] {
        match open(&copy).reader().audit(pass, |_, _| Ok(())) {
            Err(ShardAuditError::Index(e)) => {
                assert!(e.to_string().contains("current_state"), "{e}")
            }
            other => panic!("expected the state row to be named, got {other:?}"),
        }
    }
    // An index row and an entry both changed: the entry is what is named.
    let times = TableDefinition::<(u32, i64, u64), u64>::new("customer_events");
    edit_table(&path, times, |t| {
        let (c, time, seq) = t.first().unwrap().unwrap().0.value();
        t.remove((c, time, seq)).unwrap();
    });
    match open(&path)
        .reader()
        .audit(SubjectsPass::TwoThreads, |_, _| Ok(()))
    {
        Err(ShardAuditError::Index(e)) => assert!(e.to_string().contains("time index"), "{e}"),
        other => panic!("expected the index problem, got {other:?}"),
    }
    tamper(&path, 9_321, 60);
    match open(&path)
        .reader()
        .audit(SubjectsPass::OneThread, |_, _| Ok(()))
    {
        Err(ShardAuditError::Journal(e)) => assert!(e.to_string().contains("9321"), "{e}"),
        other => panic!("expected entry 9321 to be named, got {other:?}"),
    }
}

#[test]
fn a_shard_refuses_a_file_of_another_shard_or_a_truncated_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    append_one_by_one(&mut store, 5);
    drop(store);
    assert!(matches!(
        Store::open(&path, 3),
        Err(OpenError::WrongShard {
            found: 0,
            expected: 3
        })
    ));
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(JOURNAL).unwrap().remove(4).unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&path, 0)
        .err()
        .expect("a truncated journal is refused");
    assert!(err.to_string().contains("size 4"), "{err}");
}

#[test]
fn index_verification_passes_a_true_index_and_names_a_tampered_one() {
    const SUBJECTS: TableDefinition<(u32, [u8; 32], u64), &[u8]> = TableDefinition::new("subjects");
    const CUSTOMER_EVENTS: TableDefinition<(u32, i64, u64), u64> =
        TableDefinition::new("customer_events");
    const DAILY_COUNTS: TableDefinition<(u32, i64, &str), (u64, u64)> =
        TableDefinition::new("daily_counts");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    for i in 0..30 {
        let batch = vec![
            event("acme", &format!("s{}", i % 7), i),
            event("acme", "other", i),
        ];
        store
            .append_batches(vec![batch])
            .unwrap()
            .remove(0)
            .unwrap();
    }
    store.index_now(true).unwrap();
    let report = store
        .reader()
        .verify_indexes()
        .expect("a true index verifies");
    assert_eq!(
        (report.entries, report.time_rows, report.history_rows),
        (60, 60, 60)
    );
    drop(store);
    // The whole-shard audit (one journal read feeding the same check) must find the same.
    let tamper = |f: &dyn Fn(&common::Edit)| common::index_problem_of_copy(&path, "copy.redb", f);
    let err = tamper(&|t| {
        let mut tab = t.open_table(SUBJECTS).unwrap();
        // The first key of a subject is one of its history rows (the state row is last).
        let first = tab.first().unwrap().unwrap().0.value();
        assert_ne!(first.2, u64::MAX, "a history row");
        tab.remove(first).unwrap();
    });
    assert!(err.contains("subject history"), "{err}");
    // Index layout 2: a subject's latest event has no history row, its state row stands
    // for it. A row added for that event, or the state row taken away, is a history that
    // disagrees with the journal.
    let latest_of_first_state = |t: &common::Edit| {
        let tab = t.open_table(SUBJECTS).unwrap();
        let (key, state) = tab
            .iter()
            .unwrap()
            .map(|r| r.unwrap())
            .find(|(k, _)| k.value().2 == u64::MAX)
            .map(|(k, v)| (k.value(), v.value().to_vec()))
            .unwrap();
        // Every purpose of these states was set by the subject's latest event: one group,
        // whose seq follows the group count (index layout 4).
        let at = 4;
        (
            key,
            u64::from_be_bytes(state[at..at + 8].try_into().unwrap()),
        )
    };
    let err = tamper(&|t| {
        let ((c, s, _), latest) = latest_of_first_state(t);
        let mut tab = t.open_table(SUBJECTS).unwrap();
        assert!(tab.insert((c, s, latest), [].as_slice()).unwrap().is_none());
    });
    assert!(
        err.contains("subject history"),
        "a row for the latest: {err}"
    );
    let err = tamper(&|t| {
        let (key, _) = latest_of_first_state(t);
        t.open_table(SUBJECTS).unwrap().remove(key).unwrap();
    });
    assert!(err.contains("subject history"), "no state row: {err}");
    // A time row is a run of entries (index layout 3): the last one, moved a millisecond
    // on, is named by its first entry; split in two, by what no single entry shows.
    let last_run = |t: &common::Edit| {
        let tab = t.open_table(CUSTOMER_EVENTS).unwrap();
        let (k, last) = tab.last().unwrap().unwrap();
        (k.value(), last.value())
    };
    let first_of_last_run = std::cell::Cell::new(0);
    let err = tamper(&|t| {
        let ((c, time, first), last) = last_run(t);
        assert_eq!(last, 59, "the last run ends at the last entry");
        first_of_last_run.set(first);
        let mut tab = t.open_table(CUSTOMER_EVENTS).unwrap();
        tab.remove((c, time, first)).unwrap();
        tab.insert((c, time + 1, first), last).unwrap();
    });
    let named = format!("entry {} disagrees", first_of_last_run.get());
    assert!(err.contains(&named), "{err}");
    // Runs of one customer's entries in one millisecond: two batches of two events each
    // usually share a run; make one of at least two entries and split it.
    let err = tamper(&|t| {
        let mut tab = t.open_table(CUSTOMER_EVENTS).unwrap();
        let ((c, time, first), last) = tab
            .iter()
            .unwrap()
            .map(|r| r.unwrap())
            .map(|(k, v)| (k.value(), v.value()))
            .find(|(k, last)| *last > k.2)
            .expect("a run of two entries or more");
        tab.insert((c, time, first), first).unwrap();
        tab.insert((c, time, first + 1), last).unwrap();
    });
    assert!(err.contains("split or join runs"), "{err}");
    // The subjects table is walked in two halves (by the subject key's first byte, and
    // customer numbers no customer has in the second): an extra history row is found in
    // either half and under an unknown customer number.
    for (c, first_byte) in [(0u32, 0x00u8), (0, 0xff), (999, 0x10)] {
        let err = tamper(&|t| {
            let mut tab = t.open_table(SUBJECTS).unwrap();
            let mut subject = [0x5a; 32];
            subject[0] = first_byte;
            tab.insert((c, subject, 3), [].as_slice()).unwrap();
        });
        let named = if c == 999 {
            "unknown customer number 999"
        } else {
            "subject history"
        };
        assert!(err.contains(named), "{c} {first_byte}: {err}");
    }
    let err = tamper(&|t| {
        let mut tab = t.open_table(DAILY_COUNTS).unwrap();
        let (k, v) = tab
            .first()
            .unwrap()
            .map(|(k, v)| {
                (
                    k.value().0,
                    (k.value().1, k.value().2.to_string(), v.value()),
                )
            })
            .unwrap();
        tab.insert((k, v.0, v.1.as_str()), (v.2.0 + 1, v.2.1))
            .unwrap();
    });
    assert!(err.contains("daily counter (acme, day"), "{err}");
    assert!(err.contains("the journal says Some"), "{err}");
    // Counters are compared by digest, a day at a time; when they differ, the first bad
    // one is named: a missing counter, one of a purpose no event has, one of a day
    // without events.
    let first_counter = |t: &common::Edit| {
        let tab = t.open_table(DAILY_COUNTS).unwrap();
        let first = tab.first().unwrap().unwrap();
        let (c, day, p) = first.0.value();
        (c, day, p.to_string())
    };
    let err = tamper(&|t| {
        let (c, day, p) = first_counter(t);
        t.open_table(DAILY_COUNTS)
            .unwrap()
            .remove((c, day, p.as_str()))
            .unwrap();
    });
    assert!(err.contains("is missing"), "{err}");
    for (days_back, purpose) in [(0, "no-such-purpose"), (400, "ads")] {
        let err = tamper(&|t| {
            let (c, day, _) = first_counter(t);
            t.open_table(DAILY_COUNTS)
                .unwrap()
                .insert((c, day - days_back, purpose), (1, 0))
                .unwrap();
        });
        assert!(err.contains(purpose), "{err}");
        assert!(err.contains("the journal says None"), "{err}");
    }
    // A current-state row is checked against the entry it names: the subject's own history
    // must hold it, and the entry must set that purpose to that choice at those times.
    // Layout of a state (index layout 4): u32 group count, then per event u64 seq, i64
    // occurred_at_ms, optional i64 expires_at_ms, u32 purpose count, then per purpose u8
    // name length, name, u8 choice.
    /// Where the first group's fields sit in a state's bytes.
    struct At {
        /// Its first purpose's choice byte.
        choice: usize,
        /// Its seq (8 bytes), which every purpose of the group names.
        seq: usize,
        /// Its occurred_at_ms (8 bytes), followed by its expires_at_ms.
        occurred: usize,
        /// Its purpose count (4 bytes), followed by its purposes.
        count: usize,
    }
    /// Edits a state's bytes given where its first group's fields are and its subject's
    /// history.
    type StateEdit<'a> = &'a dyn Fn(&mut Vec<u8>, At, &[u64]);
    fn edit_first_state(t: &common::Edit, edit: StateEdit) {
        let mut tab = t.open_table(SUBJECTS).unwrap();
        let mut history = vec![];
        let (key, mut state) = tab
            .iter()
            .unwrap()
            .map(|r| r.unwrap())
            .find_map(|(k, v)| {
                let k = k.value();
                if k.2 != u64::MAX {
                    history.push(k.2);
                    return None;
                }
                Some((k, v.value().to_vec()))
            })
            .unwrap();
        let expires = 20;
        let count = expires + if state[expires] == 0 { 1 } else { 9 };
        let name_len = usize::from(state[count + 4]);
        let at = At {
            choice: count + 5 + name_len,
            seq: 4,
            occurred: 12,
            count,
        };
        edit(&mut state, at, &history);
        tab.insert(key, state.as_slice()).unwrap();
    }
    let err = tamper(&|t| edit_first_state(t, &|state, at, _| state[at.choice] ^= 3));
    assert!(
        err.contains("does not set it so"),
        "a flipped choice: {err}"
    );
    let err = tamper(&|t| edit_first_state(t, &|state, at, _| state[at.occurred + 7] ^= 1));
    assert!(err.contains("does not set it so"), "a changed time: {err}");
    let err = tamper(&|t| {
        edit_first_state(t, &|state, at, history| {
            let foreign = (0..60u64).find(|s| !history.contains(s)).unwrap();
            // The first purpose moves to a group of its own that names an entry of another
            // subject, older than the state's latest, which the other purposes keep (so
            // that the subject's history stays whole).
            let latest = &state[at.seq..at.seq + 8];
            assert!(
                foreign.to_be_bytes().as_slice() < latest,
                "groups in seq order"
            );
            let times = &state[at.occurred..at.count];
            let n = u32::from_be_bytes(state[at.count..at.count + 4].try_into().unwrap());
            assert!(n >= 2, "the latest event keeps a purpose");
            let moved = &state[at.count + 4..=at.choice];
            let rest = &state[at.choice + 1..];
            *state = [
                &2u32.to_be_bytes()[..],
                &foreign.to_be_bytes(),
                times,
                &1u32.to_be_bytes(),
                moved,
                latest,
                times,
                &(n - 1).to_be_bytes(),
                rest,
            ]
            .concat();
        })
    });
    assert!(
        err.contains("not in that subject's history"),
        "another subject's entry: {err}"
    );
}

#[test]
fn the_audit_names_a_current_state_that_a_later_event_of_its_subject_overrode() {
    // Proves: a state row must be the fold of its subject's events, not merely name events
    // that set what it says. Entry 0 grants ads and analytics, entry 1 denies ads, entry 2
    // denies analytics. A state that keeps entry 0's grant of ads (while naming entry 2 for
    // analytics, so that the subject's history is whole) is named with the entry that
    // overrode it, as is a state that lacks a purpose an event set; the true state passes.
    const SUBJECTS: TableDefinition<(u32, [u8; 32], u64), &[u8]> = TableDefinition::new("subjects");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    let choices = [
        vec![("ads", Choice::Granted), ("analytics", Choice::Granted)],
        vec![("ads", Choice::Denied)],
        vec![("analytics", Choice::Denied)],
    ];
    for (n, purposes) in choices.iter().enumerate() {
        let mut e = event("acme", "alice", n as u64);
        e.purposes = purposes.iter().map(|&(p, c)| (p.to_string(), c)).collect();
        store
            .append_batches(vec![vec![e]])
            .unwrap()
            .remove(0)
            .unwrap();
    }
    store.index_now(true).unwrap();
    store
        .reader()
        .verify_indexes()
        .expect("the true state verifies");
    drop(store);
    let occurred = |n: i64| event("acme", "alice", 0).occurred_at_ms + n;
    // State bytes (index layout 4, docs/design.md §4): u32 group count, then per event in
    // seq order: u64 seq, i64 occurred_at_ms, opt i64 expires_at_ms, u32 purpose count,
    // then per purpose by name: u8 name length, name, u8 choice.
    let state = |purposes: &[(&str, Choice, u64)]| {
        let mut groups: std::collections::BTreeMap<u64, Vec<(&str, Choice)>> = Default::default();
        for &(name, choice, seq) in purposes {
            groups.entry(seq).or_default().push((name, choice));
        }
        let mut b = (groups.len() as u32).to_be_bytes().to_vec();
        for (seq, names) in groups {
            b.extend(seq.to_be_bytes());
            b.extend(occurred(seq as i64).to_be_bytes());
            b.push(0);
            b.extend((names.len() as u32).to_be_bytes());
            for (name, choice) in names {
                b.push(name.len() as u8);
                b.extend(name.as_bytes());
                b.push(match choice {
                    Choice::Granted => 1,
                    Choice::Denied => 2,
                });
            }
        }
        b
    };
    let set_state = |t: &common::Edit, bytes: &[u8]| {
        let mut tab = t.open_table(SUBJECTS).unwrap();
        let key = tab
            .iter()
            .unwrap()
            .map(|r| r.unwrap().0.value())
            .find(|k| k.2 == u64::MAX)
            .unwrap();
        assert!(
            tab.insert(key, bytes).unwrap().is_some(),
            "a state replaced"
        );
    };
    let tamper = |bytes: Vec<u8>| {
        common::index_problem_of_copy(&path, "copy.redb", |t| set_state(t, &bytes))
    };
    let truth = state(&[("ads", Choice::Denied, 1), ("analytics", Choice::Denied, 2)]);
    let stale = state(&[
        ("ads", Choice::Granted, 0),
        ("analytics", Choice::Denied, 2),
    ]);
    let err = tamper(stale);
    assert!(
        err.contains("is not its latest: entry 1 of its history sets ads"),
        "a stale purpose: {err}"
    );
    let err = tamper(state(&[("analytics", Choice::Denied, 2)]));
    assert!(
        err.contains("is not its latest: entry 0 of its history sets ads"),
        "a purpose left out: {err}"
    );
    common::edit_files(&path, |t| set_state(t, &truth));
    let store = Store::open(&path, 0).unwrap();
    store
        .reader()
        .verify_indexes()
        .expect("the state written back as the fold verifies");
}

#[test]
fn entries_committed_but_not_yet_indexed_are_indexed_from_the_journal_on_the_next_open() {
    // Proves: the index step behind the commit loses nothing when it never runs (a crash
    // after the acknowledgement), and an audit of such a file accepts the lagging indexes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    for i in 0..10 {
        let batch = vec![event("acme", &format!("s{}", i % 3), i)];
        store
            .append_batches(vec![batch])
            .unwrap()
            .remove(0)
            .unwrap();
    }
    store.index_now(true).unwrap();
    // The index writer falls behind, and the store closes before it catches up (a crash).
    store.hold_indexing(IndexHold::BothTiers);
    for i in 10..25 {
        let batch = vec![event("acme", &format!("s{}", i % 3), i)];
        store
            .append_batches(vec![batch])
            .unwrap()
            .remove(0)
            .unwrap();
    }
    assert_eq!((store.indexed_upto(), store.head().size), (10, 25));
    let lagging = store.reader();
    assert_eq!((lagging.indexed_size(), lagging.committed_size()), (10, 25));
    // Only acme's reads must wait for the index step; another customer's need not.
    assert!(lagging.has_unindexed("acme") && !lagging.has_unindexed("other"));
    assert_eq!(
        lagging
            .history("acme", "s1", Order::Ascending, None, 100)
            .unwrap()
            .items
            .len(),
        3,
        "before the index step the history of s1 shows only its indexed events 1, 4, 7"
    );
    drop((lagging, store));

    let audit =
        shard::engine::ShardReader::open_existing(&path, 0, shard::engine::AuditOpen::ReadOnly)
            .unwrap();
    let report = audit
        .verify_indexes()
        .expect("lagging indexes are consistent");
    assert_eq!(
        report.entries, 10,
        "only indexed entries are checked against the indexes"
    );
    drop(audit);

    let mut store = open(&path);
    assert_eq!(store.indexed_upto(), 25);
    assert!(!store.reader().has_unindexed("acme"), "indexed on open");
    store.hold_indexing(IndexHold::BothTiers);
    store
        .append_batches(vec![vec![event("acme", "s9", 99)]])
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(store.reader().has_unindexed("acme"));
    store.hold_indexing(IndexHold::Nothing);
    store.index_now(false).unwrap();
    assert!(
        !store.reader().has_unindexed("acme"),
        "the index step clears it"
    );
    let r = store.reader();
    let history = r
        .history("acme", "s1", Order::Ascending, None, 100)
        .unwrap();
    let seqs: Vec<u64> = history.items.iter().map(|e| e.entry.seq).collect();
    assert_eq!(seqs, vec![1, 4, 7, 10, 13, 16, 19, 22]);
    let state = r.current_state("acme", "s1").unwrap();
    assert!(state.iter().all(|s| s.seq == 22), "{state:?}");
    assert_eq!(r.verify_indexes().unwrap().entries, 26);
}

#[test]
fn the_customer_tier_lags_the_subject_tier_until_its_own_step_and_a_crash_between_loses_nothing() {
    // Proves: a subject-tier step leaves the time index and counters (customer tier) for
    // the full step, customer-wide reads still count as waiting, an audit accepts the two
    // watermarks, and an open after a crash between the steps indexes the customer tier
    // from the journal.
    use shard::engine::{AuditOpen, IndexTier, ShardReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    let append = |store: &mut Store, n: u64| {
        let batch = vec![event("acme", &format!("s{}", n % 3), n)];
        store
            .append_batches(vec![batch])
            .unwrap()
            .remove(0)
            .unwrap();
    };
    for i in 0..4 {
        append(&mut store, i);
    }
    store.index_now(false).unwrap();
    store.hold_indexing(IndexHold::CustomerTier);
    for i in 4..10 {
        append(&mut store, i);
    }
    store.index_tier(IndexTier::Subjects).unwrap();
    assert_eq!(
        (store.customer_indexed_upto(), store.indexed_upto()),
        (4, 10)
    );
    let r = store.reader();
    assert_eq!((r.customer_indexed_size(), r.indexed_size()), (4, 10));
    assert!(r.has_unindexed("acme"), "customer-wide reads still wait");
    assert!(
        !r.has_unindexed_subject("acme", "s1"),
        "subject reads need not"
    );
    let history = r.history("acme", "s1", Order::Ascending, None, 100);
    assert_eq!(history.unwrap().items.len(), 3, "events 1, 4 and 7");
    let times = r.customer_events("acme", i64::MIN, i64::MAX, None, 100);
    assert_eq!(
        times.unwrap().items.len(),
        4,
        "the time index has the first four"
    );
    assert_eq!(r.verify_indexes().unwrap().entries, 10);
    // Entry 10 is committed, and the store closes before either tier has it (a crash).
    store.hold_indexing(IndexHold::BothTiers);
    append(&mut store, 10);
    drop((r, store));

    let audit = ShardReader::open_existing(&path, 0, AuditOpen::ReadOnly).unwrap();
    assert_eq!(
        (audit.customer_indexed_size(), audit.indexed_size()),
        (4, 10)
    );
    assert_eq!(audit.verify_indexes().unwrap().entries, 10);
    drop(audit);

    let store = open(&path);
    assert_eq!(
        (store.customer_indexed_upto(), store.indexed_upto()),
        (11, 11)
    );
    let r = store.reader();
    let times = r.customer_events("acme", i64::MIN, i64::MAX, None, 100);
    assert_eq!(times.unwrap().items.len(), 11);
    let counted: u64 = r
        .daily_counts("acme", i64::MIN / 2, i64::MAX / 2)
        .unwrap()
        .iter()
        .map(|d| d.granted + d.denied)
        .sum();
    assert_eq!(counted, 11 * 3, "every event counted once per purpose");
    let history = r.history("acme", "s1", Order::Ascending, None, 100);
    let seqs: Vec<u64> = history.unwrap().items.iter().map(|e| e.entry.seq).collect();
    assert_eq!(seqs, vec![1, 4, 7, 10], "no history row doubled");
    assert_eq!(r.verify_indexes().unwrap().entries, 11);
}

#[actix_rt::test]
async fn a_customer_wide_read_after_indexes_fresh_sees_appends_the_subject_tier_already_had() {
    // Proves: read-your-writes for customer-wide reads (time index) although the subject
    // tier was brought up to date first and the customer tier lags it.
    let dir = tempfile::tempdir().unwrap();
    let shard = ShardHandle::start(&dir.path().join("s.redb"), 0).unwrap();
    let r = shard.reader();
    for i in 0..10u64 {
        let out = shard
            .addr
            .send(Append(vec![event("acme", "alice", i)]))
            .await
            .unwrap()
            .unwrap();
        shard.subject_indexes_fresh("acme", "alice").await.unwrap();
        assert!(r.indexed_size() > out[0].entry.seq);
        shard.indexes_fresh("acme").await.unwrap();
        assert!(r.customer_indexed_size() > out[0].entry.seq, "append {i}");
        let times = r.customer_events("acme", i64::MIN, i64::MAX, None, 100);
        assert_eq!(times.unwrap().items.len() as u64, i + 1, "append {i}");
    }
    shard.stop().await;
}

#[actix_rt::test]
async fn a_read_after_indexes_fresh_sees_every_acknowledged_append() {
    // Proves: read-your-writes holds although the index step runs after the acknowledgement.
    let dir = tempfile::tempdir().unwrap();
    let shard = ShardHandle::start(&dir.path().join("s.redb"), 0).unwrap();
    for i in 0..50u64 {
        let out = shard
            .addr
            .send(Append(vec![event("acme", "alice", i)]))
            .await
            .unwrap()
            .unwrap();
        shard.indexes_fresh("acme").await.unwrap();
        let r = shard.reader();
        assert!(r.indexed_size() > out[0].entry.seq);
        let state = r.current_state("acme", "alice").unwrap();
        assert!(
            state.iter().all(|s| s.seq == out[0].entry.seq),
            "append {i}: the state names the event just acknowledged"
        );
        let page = r
            .history("acme", "alice", Order::Descending, None, 1)
            .unwrap();
        assert_eq!(page.items[0].entry.seq, out[0].entry.seq);
    }
    shard.stop().await;
}

#[test]
fn only_the_subjects_written_since_the_last_index_step_count_as_unindexed() {
    // Proves: a subject read waits only for its own subject's entries: an append marks its
    // customer and its subjects (not the customer's other subjects) until the index step.
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir.path().join("s.redb"));
    let r = store.reader();
    let append = |store: &mut Store, subject: &str, n: u64| {
        let batch = vec![event("acme", subject, n)];
        store
            .append_batches(vec![batch])
            .unwrap()
            .remove(0)
            .unwrap();
    };
    append(&mut store, "alice", 0);
    store.index_now(false).unwrap();
    assert!(!r.has_unindexed("acme") && !r.has_unindexed_subject("acme", "alice"));
    store.hold_indexing(IndexHold::BothTiers);
    append(&mut store, "bob", 1);
    assert!(r.has_unindexed("acme") && r.has_unindexed_subject("acme", "bob"));
    assert!(!r.has_unindexed_subject("acme", "alice"));
    assert!(
        !r.has_unindexed_subject("other", "bob"),
        "subjects are per customer"
    );
    append(&mut store, "alice", 2);
    assert!(r.has_unindexed_subject("acme", "alice"));
    store.hold_indexing(IndexHold::Nothing);
    store.index_now(false).unwrap();
    assert!(!r.has_unindexed("acme"));
    assert!(!r.has_unindexed_subject("acme", "alice") && !r.has_unindexed_subject("acme", "bob"));
}

#[actix_rt::test]
async fn a_subject_read_after_subject_indexes_fresh_sees_its_acknowledged_appends() {
    // Proves: read-your-writes per subject, while another subject of the customer is
    // written between.
    let dir = tempfile::tempdir().unwrap();
    let shard = ShardHandle::start(&dir.path().join("s.redb"), 0).unwrap();
    let r = shard.reader();
    for i in 0..20u64 {
        let other = Append(vec![event("acme", "bob", 2 * i)]);
        shard.addr.send(other).await.unwrap().unwrap();
        let mine = Append(vec![event("acme", "alice", 2 * i + 1)]);
        let alice = shard.addr.send(mine).await.unwrap().unwrap();
        shard.subject_indexes_fresh("acme", "alice").await.unwrap();
        let state = r.current_state("acme", "alice").unwrap();
        assert!(
            state.iter().all(|s| s.seq == alice[0].entry.seq),
            "append {i}"
        );
        let page = r.history("acme", "alice", Order::Descending, None, 1);
        assert_eq!(page.unwrap().items[0].entry.seq, alice[0].entry.seq);
    }
    shard.stop().await;
}

#[actix_rt::test]
async fn a_busy_shard_groups_sparse_appends_and_an_idle_one_commits_at_once() {
    // Proves: an append to an idle shard commits without waiting for company; appends that
    // trickle into a busy shard share one commit; a group that reaches
    // GROUP_COMMIT_EARLY_EVENTS commits without waiting out the delay.
    use shard::engine::{CommitObserver, GROUP_COMMIT_EARLY_EVENTS, GroupCommit, MAILBOX_CAPACITY};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let commits = Arc::new(Mutex::new(Vec::<u64>::new()));
    let seen = commits.clone();
    let observer = CommitObserver::reports(move |r| seen.lock().unwrap().push(r.batches));
    let group = GroupCommit {
        wait: Duration::from_secs(1),
        busy_window: Duration::from_secs(60),
    };
    let path = dir.path().join("s.redb");
    let shard = ShardHandle::start_with(&path, 0, Some(observer), MAILBOX_CAPACITY, group).unwrap();
    let started = Instant::now();
    let append = |n: u64| shard.addr.send(Append(vec![event("acme", "a", n)]));
    append(0).await.unwrap().unwrap();
    assert!(
        started.elapsed() < group.wait / 2,
        "an idle shard commits at once"
    );
    let first = append(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = append(2);
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(
        *commits.lock().unwrap(),
        vec![1, 2],
        "the two trickling appends share a commit"
    );
    let started = Instant::now();
    let many: Vec<_> = (3..3 + GROUP_COMMIT_EARLY_EVENTS as u64)
        .map(|n| event("acme", "a", n))
        .collect();
    shard.addr.send(Append(many)).await.unwrap().unwrap();
    assert!(
        started.elapsed() < group.wait / 2,
        "a full group does not wait"
    );
    assert_eq!(*commits.lock().unwrap(), vec![1, 2, 1]);
    shard.stop().await;
}

#[actix_rt::test]
async fn a_commit_copies_its_entries_only_while_the_observer_wants_them() {
    // Proves: the observer's `published` list holds a commit's new entries, with their
    // personal records, exactly when `wants_entries` says yes for the shard at that time.
    use shard::engine::{CommitObserver, MAILBOX_CAPACITY};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let wanted = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Vec<(u64, String)>>::new()));
    let (w, s) = (wanted.clone(), seen.clone());
    let observer = CommitObserver::with_entries(
        move |r| {
            let entries = r
                .published
                .iter()
                .map(|p| (p.entry.seq, p.personal.subject_id.clone()))
                .collect();
            s.lock().unwrap().push(entries);
        },
        move |shard_id| shard_id == 3 && w.load(Ordering::SeqCst),
    );
    let path = dir.path().join("s.redb");
    let shard = ShardHandle::start_observed(&path, 3, Some(observer), MAILBOX_CAPACITY).unwrap();
    shard
        .addr
        .send(Append(vec![event("acme", "a", 0)]))
        .await
        .unwrap()
        .unwrap();
    wanted.store(true, Ordering::SeqCst);
    shard
        .addr
        .send(Append(vec![event("acme", "b", 1), event("acme", "c", 2)]))
        .await
        .unwrap()
        .unwrap();
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one report per commit");
    assert!(got[0].is_empty(), "not wanted: nothing copied");
    let seqs: Vec<u64> = got[1].iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, vec![1, 2]);
    assert!(got[1].iter().all(|(_, s)| !s.is_empty()));
    shard.stop().await;
}

/// One step of [`any_interleaving_of_appends_index_steps_erasures_and_reopens_keeps_every_tier_true`].
#[derive(Debug, Clone)]
enum TierOp {
    /// A batch of `n` events of customer `c{customer}`, subject `s{subject}`.
    Append { customer: u8, subject: u8, n: u8 },
    /// The subject tier's index step.
    SubjectStep,
    /// The full index step.
    FullStep,
    /// The writer goes away without a final index step, and the file is opened again.
    Reopen,
    /// Erasure of subject `s{subject}` of customer `c0`.
    Erase { subject: u8 },
}

fn tier_op() -> impl proptest::strategy::Strategy<Value = TierOp> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0u8..2, 0u8..4, 1u8..4).prop_map(|(customer, subject, n)| TierOp::Append { customer, subject, n }),
        2 => Just(TierOp::SubjectStep),
        1 => Just(TierOp::FullStep),
        1 => Just(TierOp::Reopen),
        1 => (0u8..4).prop_map(|subject| TierOp::Erase { subject }),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    #[test]
    fn any_interleaving_of_appends_index_steps_erasures_and_reopens_keeps_every_tier_true(
        ops in proptest::collection::vec(tier_op(), 1..24)
    ) {
        // Proves: whatever the order of appends, subject-tier steps, full steps, erasures
        // and reopens without a final step, each tier holds exactly what the journal
        // implies below its own watermark (the audit's index check after every step),
        // every subject with an entry past the subject tier's watermark is marked for its
        // readers to wait, the customer tier never leads, and an open brings both tiers to
        // the journal's end.
        use shard::engine::{ErasureError, ErasureRequest, ErasureTarget, IndexTier};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        // The index writer runs only the steps the operations ask for.
        let open_held = |path: &Path| {
            let store = open(path);
            store.hold_indexing(IndexHold::BothTiers);
            store
        };
        let mut store = Some(open_held(&path));
        let mut n = 0u64;
        // (customer, subject, seq) of every consent entry appended.
        let mut written: Vec<(String, String, u64)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let s = store.as_mut().unwrap();
            match op {
                TierOp::Append { customer, subject, n: k } => {
                    let first = s.head().size;
                    for j in 0..u64::from(*k) {
                        written.push((format!("c{customer}"), format!("s{subject}"), first + j));
                    }
                    let batch = (0..*k)
                        .map(|_| {
                            n += 1;
                            // Some events name fewer purposes than the subject's state
                            // holds, some grant until a time: merged states, expiry rows.
                            let mut e = event(&format!("c{customer}"), &format!("s{subject}"), n);
                            if n.is_multiple_of(3) {
                                e.purposes.remove("marketing");
                            }
                            if n % 4 < 2 {
                                e.expires_at_ms = Some(e.occurred_at_ms + 86_400_000 * (1 + n % 5) as i64);
                            }
                            e
                        })
                        .collect();
                    s.append_batches(vec![batch]).unwrap().remove(0).unwrap();
                }
                TierOp::SubjectStep => {
                    s.hold_indexing(IndexHold::CustomerTier);
                    s.index_tier(IndexTier::Subjects).unwrap();
                    s.hold_indexing(IndexHold::BothTiers);
                }
                TierOp::FullStep => {
                    s.hold_indexing(IndexHold::Nothing);
                    s.index_now(false).unwrap();
                    s.hold_indexing(IndexHold::BothTiers);
                }
                TierOp::Reopen => {
                    drop(store.take());
                    store = Some(open_held(&path));
                }
                TierOp::Erase { subject } => {
                    let req = ErasureRequest {
                        customer_id: "c0".into(),
                        target: ErasureTarget::Subject(format!("s{subject}")),
                        reason: "test".into(),
                    };
                    match s.erase(&req) {
                        Ok(_) | Err(ErasureError::NothingToErase) => {}
                        Err(e) => panic!("step {i}: erasure failed: {e}"),
                    }
                }
            }
            let s = store.as_ref().unwrap();
            proptest::prop_assert!(s.customer_indexed_upto() <= s.indexed_upto());
            // A reader of a subject with an entry the subject tier lacks must wait for it.
            let r = s.reader();
            for (c, subject, seq) in &written {
                if *seq >= s.indexed_upto() {
                    proptest::prop_assert!(
                        r.has_unindexed_subject(c, subject),
                        "after step {} ({:?}): {}/{} at {} is unindexed but not marked", i, op, c, subject, seq
                    );
                }
            }
            if let Err(e) = s.reader().verify_indexes() {
                proptest::prop_assert!(false, "after step {i} ({op:?}): {e}");
            }
        }
        drop(store.take());
        let s = open(&path);
        let size = s.head().size;
        proptest::prop_assert_eq!((s.customer_indexed_upto(), s.indexed_upto()), (size, size));
        let report = s.reader().verify_indexes();
        proptest::prop_assert!(report.is_ok(), "after the last open: {:?}", report.err());
        proptest::prop_assert_eq!(report.unwrap().entries, size);
    }
}

#[test]
fn the_audit_names_an_entry_that_does_not_decode_even_when_every_hash_over_it_agrees() {
    // Proves: the audit's chain walk decodes only headers, yet a non-canonical entry whose
    // Merkle nodes and head were recomputed over its bytes is named by the audit (its
    // index check decodes every entry strictly), and by `verify_journal`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    append_one_by_one(&mut store, 8);
    store.index_now(true).unwrap();
    drop(store);
    let last = 7u64;
    let mut entries: Vec<Vec<u8>> = Vec::new();
    edit_table(&path, JOURNAL, |t| {
        for row in t.iter().unwrap() {
            entries.push(row.unwrap().1.value().to_vec());
        }
        entries[last as usize].push(0); // a trailing byte: no longer canonical
        t.insert(last, entries[last as usize].as_slice()).unwrap();
    });
    let mut verifier = shard::verify::ChainVerifier::new(0);
    let mut nodes = Vec::new();
    let mut chain_head = Hash::ZERO;
    for (seq, bytes) in entries.iter().enumerate() {
        let chained = verifier
            .push_chained(bytes, |n| {
                if seq as u64 == last {
                    nodes.push(n)
                }
            })
            .expect("the header still decodes and links");
        chain_head = chained.entry_hash;
    }
    edit_table(&path, MERKLE, |t| {
        // Nodes below level 2 are not stored (layout 6).
        for n in nodes.iter().filter(|n| n.level >= 2) {
            t.insert((last, n.level), n.hash.0).unwrap();
        }
    });
    let meta = TableDefinition::<&str, &[u8]>::new("meta");
    edit_table(&path, meta, |t| {
        let mut head = t.get("head").unwrap().unwrap().value().to_vec();
        head[8..40].copy_from_slice(&verifier.root().0);
        head[40..72].copy_from_slice(&chain_head.0);
        t.insert("head", head.as_slice()).unwrap();
    });
    let reader =
        shard::engine::ShardReader::open_existing(&path, 0, shard::engine::AuditOpen::ReadOnly)
            .unwrap();
    match reader.verify_journal() {
        Err(VerifyJournalError::Chain {
            source: ChainError::Undecodable { seq, .. },
            ..
        }) => assert_eq!(seq, last),
        other => panic!("verify_journal must name the entry, got {other:?}"),
    }
    for pass in [SubjectsPass::OneThread, SubjectsPass::TwoThreads] {
        match reader.audit(pass, |_, _| Ok(())) {
            Err(ShardAuditError::Index(e)) => {
                assert!(e.to_string().contains("entry 7"), "{e}")
            }
            other => panic!("the audit must name the entry, got {other:?}"),
        }
    }
}
