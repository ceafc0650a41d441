//! The index file and its writer against real redb files: what a shard does with an index
//! file it cannot trust, an erasure whose index step was lost, and the lag bound.
#![cfg(feature = "engine")]

mod common;

use std::path::Path;

use common::event;
use shard::engine::{
    AuditOpen, ErasureRequest, ErasureTarget, IndexHold, MAX_INDEX_LAG_ENTRIES, Order, ShardReader,
    StorageError, Store, index_path,
};

fn open(path: &Path, shard_id: u32) -> Store {
    Store::open(path, shard_id).expect("shard opens")
}

/// Appends `count` one-event batches of customer acme, subjects s0..s4 in turn, numbered
/// from `first`.
fn append(store: &mut Store, first: u64, count: u64) {
    for n in first..first + count {
        let batch = vec![event("acme", &format!("s{}", n % 5), n)];
        store
            .append_batches(vec![batch])
            .unwrap()
            .remove(0)
            .unwrap();
    }
}

/// The seqs of subject `subject`'s history.
fn history(store: &Store, subject: &str) -> Vec<u64> {
    let page = store
        .reader()
        .history("acme", subject, Order::Ascending, None, 500)
        .unwrap();
    page.items.iter().map(|e| e.entry.seq).collect()
}

/// Checks that the indexes of the shard at `path` hold exactly its `size` entries.
fn assert_rebuilt(path: &Path, shard_id: u32, size: u64, why: &str) {
    let store = open(path, shard_id);
    assert_eq!(
        (store.customer_indexed_upto(), store.indexed_upto()),
        (size, size),
        "{why}"
    );
    let report = store.reader().verify_indexes();
    assert_eq!(report.unwrap().entries, size, "{why}");
    let s1: Vec<u64> = (0..size).filter(|n| n % 5 == 1).collect();
    assert_eq!(history(&store, "s1"), s1, "{why}");
    store.close();
}

/// Shard 0 at `dir/s.redb` with 20 indexed events, closed.
fn closed_shard_of_20(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("s.redb");
    let mut store = open(&path, 0);
    append(&mut store, 0, 20);
    store.close();
    path
}

#[test]
fn an_index_file_that_is_missing_foreign_or_ahead_of_the_journal_is_rebuilt_from_it() {
    // Proves: the index file is derived data the shard never trusts blindly: one that is
    // missing, of another ledger, of another shard, of another index layout, or ahead of
    // the journal is replaced by
    // one rebuilt from the journal, so that reads and the audit agree with the journal.
    let dir = tempfile::tempdir().unwrap();
    let path = closed_shard_of_20(dir.path());
    let shard_at_20 = dir.path().join("s20.redb");
    std::fs::copy(&path, &shard_at_20).unwrap();

    std::fs::remove_file(index_path(&path)).unwrap();
    assert_rebuilt(&path, 0, 20, "missing");

    // Another ledger's shard 0, shorter, with other events (subject s1 at other seqs):
    // only the hash of its first entry tells it apart.
    let other = dir.path().join("other.redb");
    let mut foreign = open(&other, 0);
    for n in 0..12 {
        let batch = vec![event("acme", &format!("s{}", n % 3), 1000 + n)];
        foreign
            .append_batches(vec![batch])
            .unwrap()
            .remove(0)
            .unwrap();
    }
    foreign.close();
    std::fs::copy(index_path(&other), index_path(&path)).unwrap();
    assert_rebuilt(&path, 0, 20, "of another ledger");

    // The same journal's index, but built as shard 1.
    let one = dir.path().join("one.redb");
    std::fs::copy(&shard_at_20, &one).unwrap();
    {
        // A shard file says which shard it is; make a shard 1 with the same journal.
        let db = redb::Database::open(&one).unwrap();
        let txn = db.begin_write().unwrap();
        let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        txn.open_table(meta)
            .unwrap()
            .insert("shard_id", 1u32.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let built_as_one = Store::open(&one, 1);
    // Entries name their shard: the journal of shard 0 does not open as shard 1.
    assert!(built_as_one.is_err());
    let mut shard_one = open(&dir.path().join("n1.redb"), 1);
    append(&mut shard_one, 0, 20);
    shard_one.close();
    std::fs::copy(index_path(&dir.path().join("n1.redb")), index_path(&path)).unwrap();
    assert_rebuilt(&path, 0, 20, "of another shard");

    // An index file of index layout 1 (before session 28 it kept a history row for every
    // event, the latest included), 2 (a time row per event, not runs) or 3 (a state's
    // purposes each with their own seq and times, not grouped by event): rebuilt, while
    // the audit refuses it as unusable input.
    let set_layout = |layout: u32| {
        let db = redb::Database::open(index_path(&path)).unwrap();
        let txn = db.begin_write().unwrap();
        let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("index_meta");
        txn.open_table(meta)
            .unwrap()
            .insert("format_version", layout.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    };
    for layout in [1, 2, 3] {
        set_layout(layout);
        let refused = ShardReader::open_existing(&path, 0, AuditOpen::ReadOnly).err();
        assert!(
            matches!(
                refused,
                Some(StorageError::OtherIndexLayout { found, supported: 4 }) if found == layout
            ),
            "{refused:?}"
        );
        assert_rebuilt(&path, 0, 20, &format!("of index layout {layout}"));
        assert!(ShardReader::open_existing(&path, 0, AuditOpen::ReadOnly).is_ok());
    }

    // An index of 25 entries beside a journal of 20 (a shard file restored from a backup).
    let mut store = open(&path, 0);
    append(&mut store, 20, 5);
    store.close();
    std::fs::copy(&shard_at_20, &path).unwrap();
    assert_rebuilt(&path, 0, 20, "ahead of the journal");
}

#[test]
fn an_erasure_whose_index_step_was_lost_is_redone_by_the_catch_up_without_a_rebuild() {
    // Proves: an erasure entry past the index file's watermark (the process died between
    // the erasure's shard commit and its index commit) is replayed by the next open's
    // catch-up: no history row or state of the erased subject survives, other subjects
    // keep theirs, the audit's index check passes, and the index file is the same file
    // (caught up, not rebuilt from the whole journal). Both when the file held every
    // erased event and when it held only the older ones.
    for indexed_before in [20, 10] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let before = dir.path().join("before.index.redb");
        let mut store = open(&path, 0);
        append(&mut store, 0, indexed_before);
        store.close();
        std::fs::copy(index_path(&path), &before).unwrap();
        let mut store = open(&path, 0);
        append(&mut store, indexed_before, 20 - indexed_before);
        store.index_now(false).unwrap();
        assert_eq!(history(&store, "s2"), vec![2, 7, 12, 17]);
        store
            .erase(&ErasureRequest {
                customer_id: "acme".into(),
                target: ErasureTarget::Subject("s2".into()),
                reason: "request".into(),
            })
            .unwrap();
        assert!(history(&store, "s2").is_empty());
        store.close();
        // The index file as it was before the erasure reached it.
        std::fs::copy(&before, index_path(&path)).unwrap();
        // A table of our own in it: a catch-up keeps it, a rebuild (a new file) would not.
        let marker: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("test_marker");
        {
            let db = redb::Database::open(index_path(&path)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(marker).unwrap().insert(1, 1).unwrap();
            txn.commit().unwrap();
        }

        let store = open(&path, 0);
        let why = format!("index file of {indexed_before} entries");
        assert!(history(&store, "s2").is_empty(), "{why}: no erased row");
        let r = store.reader();
        assert!(r.current_state("acme", "s2").unwrap().is_empty(), "{why}");
        assert_eq!(history(&store, "s3"), vec![3, 8, 13, 18], "{why}");
        assert_eq!(r.current_state("acme", "s3").unwrap()[0].seq, 18, "{why}");
        let report = r.verify_indexes().unwrap();
        assert_eq!((report.entries, report.erased_entries), (21, 4), "{why}");
        store.close();
        let db = redb::Database::open(index_path(&path)).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        assert!(
            txn.open_table(marker).is_ok(),
            "{why}: caught up, not rebuilt"
        );
    }
}

#[test]
fn past_the_lag_bound_an_append_waits_for_the_index_writer_to_catch_up() {
    // Proves: the entries the index writer holds are bounded: once more than
    // MAX_INDEX_LAG_ENTRIES committed entries are not in both tiers, the append that
    // crossed the bound returns only after the index writer has indexed them all.
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir.path().join("s.redb"), 0);
    store.hold_indexing(IndexHold::BothTiers);
    let mut n = 0u64;
    while store.head().size <= MAX_INDEX_LAG_ENTRIES as u64 {
        assert_eq!(store.customer_indexed_upto(), 0, "held below the bound");
        let batch = (0..1_000)
            .map(|i| event("acme", &format!("s{}", i % 50), n + i))
            .collect();
        store
            .append_batches(vec![batch])
            .unwrap()
            .remove(0)
            .unwrap();
        n += 1_000;
    }
    let size = store.head().size;
    assert!(size > MAX_INDEX_LAG_ENTRIES as u64);
    assert_eq!(
        (store.customer_indexed_upto(), store.indexed_upto()),
        (size, size),
        "the append that crossed the bound waited for both tiers"
    );
    assert_eq!(store.reader().verify_indexes().unwrap().entries, size);
}
