//! Erasure against real redb files: every proof survives, every link to the person goes,
//! and after a scrub no byte of the file holds the erased data.
#![cfg(feature = "engine")]

mod common;

use std::path::Path;

use redb::ReadableTable;

use common::event;
use shard::engine::{AppendError, ErasureError, ErasureRequest, ErasureTarget, Order, Store};
use shard::format::{Choice, ConsentEvent, ErasureCause};
use shard::merkle::{Blake3Tree, verify_consistency};
use shard::verify::verify_entry_inclusion;

fn open(path: &Path) -> Store {
    Store::open(path, 0).expect("shard opens")
}

/// An event of `subject` whose evidence names it, so a byte search can find it.
fn personal_event(subject: &str, n: u64, key: Option<&str>) -> ConsentEvent {
    let mut e = event("acme", subject, n);
    e.evidence.ip_address = Some(format!("203.0.113.{}", subject.len()));
    e.evidence.user_agent = Some(format!("UA-of-{subject}"));
    e.tcf_string = Some(format!("TCF-of-{subject}"));
    e.idempotency_key = key.map(str::to_string);
    e.expires_at_ms = Some(e.occurred_at_ms + 1_000_000);
    e
}

/// Appends one batch and runs the index step, as the shard actor does after a commit.
fn append(store: &mut Store, events: Vec<ConsentEvent>) -> Result<(), AppendError> {
    let result = store.append_batches(vec![events]).unwrap().remove(0);
    store.index_now(false).unwrap();
    result.map(|_| ())
}

/// A new shard at `path` with six indexed events of acme, subjects s0, s1, s2 in turn (the
/// migration tests' starting point).
fn six_events(path: &Path) -> Store {
    let mut store = open(path);
    for i in 0..6 {
        append(
            &mut store,
            vec![personal_event(&format!("s{}", i % 3), i, None)],
        )
        .unwrap();
    }
    store
}

fn file_contains(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn erase_subject(store: &mut Store, subject: &str) -> Result<shard::engine::Erased, ErasureError> {
    store.erase(&ErasureRequest {
        customer_id: "acme".into(),
        target: ErasureTarget::Subject(subject.into()),
        reason: "ticket 42".into(),
    })
}

#[test]
fn erasing_a_subject_keeps_every_proof_and_leaves_nothing_that_links_to_the_person() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    let victim = "erase-me-subject-7f3a";
    for i in 0..40 {
        let subject = if i % 3 == 0 { victim } else { "keep-me" };
        let key = format!("k{i}");
        append(&mut store, vec![personal_event(subject, i, Some(&key))]).unwrap();
    }
    let r = store.reader();
    let old_head = r.head().unwrap();
    let proof = r.inclusion_proof(3, old_head.size).unwrap();
    let entry3 = r.event(3).unwrap().unwrap();
    let kept_state = r.current_state("acme", "keep-me").unwrap();
    let kept_history = r
        .history("acme", "keep-me", Order::Ascending, None, 500)
        .unwrap();
    let counts = r.daily_counts("acme", 0, i64::MAX).unwrap();
    assert!(
        file_contains(&path, victim),
        "the test needs the subject on disk first"
    );

    let erased = erase_subject(&mut store, victim).unwrap();
    assert_eq!(erased.erased_events, 14);
    assert_eq!(erased.subjects, 1);
    let entry = &erased.entries[0].entry;
    let record = entry.erasure().expect("an erasure entry");
    assert_eq!(record.cause, ErasureCause::SubjectRequest);
    assert_eq!(record.erased_seqs, (0..40).step_by(3).collect::<Vec<_>>());
    assert_eq!(entry.seq, 40);

    // Every proof made before still holds, and the new head extends the old one.
    let new_head = r.head().unwrap();
    assert!(
        verify_entry_inclusion(
            &entry3.entry_bytes,
            3,
            old_head.size,
            &proof.path,
            &old_head.root
        )
        .is_ok()
    );
    let cp = r.consistency_proof(old_head.size, new_head.size).unwrap();
    verify_consistency(
        &Blake3Tree,
        old_head.size,
        new_head.size,
        &old_head.root,
        &new_head.root,
        &cp.path,
    )
    .unwrap();
    r.verify_journal().unwrap();
    let report = r.verify_indexes().unwrap();
    assert_eq!(report.erasure_rows, 1);

    // The subject is gone from every query; the others are untouched.
    assert!(r.current_state("acme", victim).unwrap().is_empty());
    assert!(
        r.history("acme", victim, Order::Ascending, None, 500)
            .unwrap()
            .items
            .is_empty()
    );
    let stored = r.event(3).unwrap().unwrap();
    assert!(stored.personal.is_none());
    assert_eq!(
        stored.entry_bytes, entry3.entry_bytes,
        "the entry itself never changes"
    );
    assert_eq!(r.current_state("acme", "keep-me").unwrap(), kept_state);
    assert_eq!(
        r.history("acme", "keep-me", Order::Ascending, None, 500)
            .unwrap(),
        kept_history
    );
    assert_eq!(
        r.daily_counts("acme", 0, i64::MAX).unwrap(),
        counts,
        "statistics hold no person"
    );

    // A retry of an erased event's request is refused, not silently recorded again.
    match append(&mut store, vec![personal_event(victim, 3, Some("k3"))]) {
        Err(AppendError::IdempotencyErased { key, .. }) => assert_eq!(key, "k3"),
        other => panic!("expected IdempotencyErased, got {other:?}"),
    }
    // Erasing again finds nothing.
    assert!(matches!(
        erase_subject(&mut store, victim),
        Err(ErasureError::NothingToErase)
    ));

    // Indexes rebuilt from the journal agree with the ones erasure left.
    drop(r);
    drop(store);
    Store::reset_indexes(&path).unwrap();
    let mut store = open(&path);
    let r = store.reader();
    r.verify_indexes().unwrap();
    assert!(r.current_state("acme", victim).unwrap().is_empty());
    assert_eq!(r.current_state("acme", "keep-me").unwrap(), kept_state);
    assert!(matches!(
        append(&mut store, vec![personal_event(victim, 3, Some("k3"))]),
        Err(AppendError::IdempotencyErased { .. })
    ));

    // Freed pages may still hold the bytes until the file is rewritten; after it, none do.
    assert!(
        file_contains(&path, victim),
        "redb keeps deleted bytes in freed pages (the reason scrub exists); if this changes, revisit docs/design.md"
    );
    assert!(store.scrub_pending());
    let scrub = store.scrub().unwrap();
    assert!(scrub.rows > 0);
    assert!(!store.scrub_pending());
    for needle in [victim, "UA-of-erase-me", "TCF-of-erase-me", "203.0.113.21"] {
        assert!(
            !file_contains(&path, needle),
            "{needle} is still in the file"
        );
    }
    assert!(
        file_contains(&path, "UA-of-keep-me"),
        "others' records are kept"
    );
    // The swapped file serves reads and writes, and reopens as a verified shard.
    assert_eq!(r.current_state("acme", "keep-me").unwrap(), kept_state);
    append(&mut store, vec![personal_event("new", 99, None)]).unwrap();
    drop(r);
    drop(store);
    let store = open(&path);
    assert!(!store.scrub_pending());
    store.reader().verify_journal().unwrap();
    store.reader().verify_indexes().unwrap();
}

#[test]
fn retention_erases_old_records_and_recomputes_the_state_from_what_remains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    // Old events: s1 grants marketing; s2's only event.
    let mut old = personal_event("s1", 0, None);
    old.purposes.insert("marketing".into(), Choice::Granted);
    append(&mut store, vec![old, personal_event("s2", 1, None)]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mut newer = personal_event("s1", 2, None);
    newer.purposes.remove("marketing");
    append(&mut store, vec![newer]).unwrap();

    let erased = store
        .erase(&ErasureRequest {
            customer_id: "acme".into(),
            target: ErasureTarget::RecordedBefore(cutoff),
            reason: "retention 24 months".into(),
        })
        .unwrap();
    assert_eq!(erased.erased_events, 2);
    assert_eq!(
        erased.entries[0].entry.erasure().unwrap().cause,
        ErasureCause::Retention
    );
    let r = store.reader();
    assert!(
        r.current_state("acme", "s2").unwrap().is_empty(),
        "s2 had only old events"
    );
    let s1 = r.current_state("acme", "s1").unwrap();
    assert!(
        s1.iter().all(|s| s.seq == 2),
        "s1's state comes only from its remaining event"
    );
    assert!(
        s1.iter().all(|s| s.purpose != "marketing"),
        "the old grant no longer counts"
    );
    r.verify_indexes().unwrap();
    // Nothing older is left: a second run erases nothing.
    let again = store.erase(&ErasureRequest {
        customer_id: "acme".into(),
        target: ErasureTarget::RecordedBefore(cutoff),
        reason: "retention".into(),
    });
    assert!(matches!(again, Err(ErasureError::NothingToErase)));
}

#[test]
fn expiring_lists_granted_purposes_that_lapse_and_forgets_erased_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir.path().join("s.redb"));
    for (i, subject) in ["a", "b", "c"].into_iter().enumerate() {
        let mut e = personal_event(subject, i as u64, None);
        e.expires_at_ms = Some(2_000_000_000_000 + i as i64);
        append(&mut store, vec![e]).unwrap();
    }
    let r = store.reader();
    // Each event grants personalisation plus one of analytics/marketing.
    let (all, more) = r.expiring("acme", i64::MAX, None, 100).unwrap();
    assert!(!more);
    assert_eq!(all.len(), 6);
    assert!(
        all.windows(2)
            .all(|w| w[0].cursor.expires_at_ms <= w[1].cursor.expires_at_ms)
    );
    assert!(all.iter().all(|x| x.state.choice == Choice::Granted));
    // Paging returns the same rows in the same order, whether a page ends between the two
    // purposes one event granted (one index row) or after them.
    for size in 1..=5 {
        let (mut paged, mut cursor) = (Vec::new(), None);
        loop {
            let (page, more) = r.expiring("acme", i64::MAX, cursor, size).unwrap();
            cursor = page.last().map(|x| x.cursor.clone());
            paged.extend(page);
            if !more {
                break;
            }
        }
        assert_eq!(paged, all, "pages of {size}");
    }
    // `before` bounds the listing.
    let (soon, _) = r.expiring("acme", 2_000_000_000_001, None, 100).unwrap();
    assert_eq!(soon.len(), 2);
    erase_subject(&mut store, "a").unwrap();
    let (left, _) = r.expiring("acme", i64::MAX, None, 100).unwrap();
    assert_eq!(left.len(), 4);
    r.verify_indexes().unwrap();
}

#[test]
fn files_of_layouts_3_and_4_have_their_indexes_rebuilt_into_the_index_file() {
    // Proves: a shard file that kept its indexes (layouts 3 and 4, one file per shard)
    // opens with its index tables dropped from it and rebuilt from the journal into the
    // index file, a stray index file (of a migration cut short) ignored, and reads and
    // audits as before.
    use redb::{Database, ReadableDatabase, TableDefinition, TableHandle};
    for old_version in [3u32, 4] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut store = six_events(&path);
        store.index_now(true).unwrap();
        let r = store.reader();
        let times = r
            .customer_events("acme", i64::MIN, i64::MAX, None, 100)
            .unwrap();
        let state = r.current_state("acme", "s1").unwrap();
        drop(r);
        store.close();
        {
            // The old layout: index tables (here with a row the journal does not imply)
            // and watermarks in the shard file; a stray, wrong index file beside it.
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let subjects: TableDefinition<(u32, [u8; 32], u64), &[u8]> =
                TableDefinition::new("subjects");
            txn.open_table(subjects)
                .unwrap()
                .insert((0, [7; 32], 1), [].as_slice())
                .unwrap();
            let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
            let mut m = txn.open_table(meta).unwrap();
            m.insert("format_version", old_version.to_be_bytes().as_slice())
                .unwrap();
            m.insert("indexed_upto", 6u64.to_be_bytes().as_slice())
                .unwrap();
            drop(m);
            txn.commit().unwrap();
            let stray = Database::create(shard::engine::index_path(&path)).unwrap();
            let txn = stray.begin_write().unwrap();
            txn.open_table(subjects)
                .unwrap()
                .insert((0, [9; 32], 2), [].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let old_bytes = std::fs::metadata(&path).unwrap().len();
        let store = open(&path);
        assert_eq!(
            (store.customer_indexed_upto(), store.indexed_upto()),
            (6, 6)
        );
        // The dropped tables' pages go back to the file system (compaction).
        let new_bytes = std::fs::metadata(&path).unwrap().len();
        assert!(new_bytes < old_bytes, "{new_bytes} < {old_bytes}");
        let r = store.reader();
        assert_eq!(
            r.customer_events("acme", i64::MIN, i64::MAX, None, 100)
                .unwrap(),
            times
        );
        assert_eq!(r.current_state("acme", "s1").unwrap(), state);
        assert_eq!(r.verify_indexes().unwrap().entries, 6);
        drop((r, store));
        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
        let m = txn.open_table(meta).unwrap();
        let version = m.get("format_version").unwrap().unwrap().value().to_vec();
        assert_eq!(
            version,
            6u32.to_be_bytes(),
            "migrated through layout 5 to 6"
        );
        assert!(m.get("indexed_upto").unwrap().is_none());
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        assert!(
            !names.iter().any(|n| shard::engine::in_index_file(n)),
            "no index table is left in the shard file: {names:?}"
        );
    }
}

#[test]
fn files_of_layouts_1_and_2_are_migrated_by_rebuilding_their_indexes_from_the_journal() {
    use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
    for old_version in [1u32, 2] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = six_events(&path);
        let r = store.reader();
        let listed = r.expiring("acme", i64::MAX, None, 100).unwrap().0;
        let history = r
            .history("acme", "s1", Order::Ascending, None, 100)
            .unwrap();
        let state = r.current_state("acme", "s1").unwrap();
        let proof = r.inclusion_proof(2, 6).unwrap();
        drop((r, store));
        {
            // What the old layouts looked like: separate history and state tables, an
            // expiry table keyed by subject and purpose (layout 2) or none (layout 1).
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            std::fs::remove_file(shard::engine::index_path(&path)).unwrap();
            let history: TableDefinition<(u32, [u8; 32], u64), ()> =
                TableDefinition::new("subject_events");
            txn.open_table(history)
                .unwrap()
                .insert((0, [7; 32], 1), ())
                .unwrap();
            let states: TableDefinition<(u32, [u8; 32]), &[u8]> =
                TableDefinition::new("current_state");
            txn.open_table(states)
                .unwrap()
                .insert((0, [7; 32]), [1u8].as_slice())
                .unwrap();
            if old_version == 2 {
                let old: TableDefinition<(u32, i64, [u8; 32], &str), ()> =
                    TableDefinition::new("expiries");
                txn.open_table(old)
                    .unwrap()
                    .insert((0, 5, [7; 32], "ads"), ())
                    .unwrap();
            }
            // Merkle nodes keyed by (level, index).
            let merkle: TableDefinition<(u64, u8), [u8; 32]> = TableDefinition::new("merkle");
            let old_merkle: TableDefinition<(u8, u64), [u8; 32]> =
                TableDefinition::new("merkle_nodes");
            let nodes: Vec<((u64, u8), [u8; 32])> = txn
                .open_table(merkle)
                .unwrap()
                .iter()
                .unwrap()
                .map(|r| r.map(|(k, v)| (k.value(), v.value())).unwrap())
                .collect();
            assert!(txn.delete_table(merkle).unwrap());
            let mut old = txn.open_table(old_merkle).unwrap();
            for ((last_leaf, level), hash) in nodes {
                old.insert((level, ((last_leaf + 1) >> level) - 1), hash)
                    .unwrap();
            }
            drop(old);
            let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
            txn.open_table(meta)
                .unwrap()
                .insert("format_version", old_version.to_be_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = open(&path);
        let r = store.reader();
        r.verify_indexes().unwrap();
        assert_eq!(r.expiring("acme", i64::MAX, None, 100).unwrap().0, listed);
        assert_eq!(
            r.history("acme", "s1", Order::Ascending, None, 100)
                .unwrap(),
            history
        );
        assert_eq!(r.current_state("acme", "s1").unwrap(), state);
        assert_eq!(r.inclusion_proof(2, 6).unwrap(), proof);
        assert_eq!(r.verify_journal().unwrap().size, 6);
        assert!(!listed.is_empty() && !state.is_empty());
        drop((r, store));
        let db = Database::open(&path).unwrap();
        let names: Vec<String> = db
            .begin_read()
            .unwrap()
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        assert!(
            !names.iter().any(|n| n == "subject_events"
                || n == "current_state"
                || n == "merkle_nodes"
                || shard::engine::in_index_file(n)),
            "old tables are gone: {names:?}"
        );
    }
}

#[test]
fn a_read_after_each_commit_sees_it_though_the_reads_before_shared_one_snapshot() {
    // Proves: point reads share one snapshot only until the next commit — append, index
    // step or erasure — so a read that begins after a commit never misses it.
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir.path().join("s.redb"));
    let r = store.reader();
    for i in 0..4u64 {
        for _ in 0..2 {
            assert_eq!(r.head().unwrap().size, i);
            assert!(r.event(i).unwrap().is_none());
        }
        store.hold_indexing(shard::engine::IndexHold::BothTiers);
        let events = vec![personal_event("alice", i, None)];
        store
            .append_batches(vec![events])
            .unwrap()
            .remove(0)
            .unwrap();
        assert_eq!(r.head().unwrap().size, i + 1, "the append's commit is seen");
        assert!(r.event(i).unwrap().is_some());
        let history = |r: &shard::engine::ShardReader| {
            r.history("acme", "alice", Order::Ascending, None, 10)
                .unwrap()
                .items
                .len() as u64
        };
        assert_eq!(history(&r), i, "not indexed yet");
        store.hold_indexing(shard::engine::IndexHold::Nothing);
        store.index_now(false).unwrap();
        assert_eq!(history(&r), i + 1, "the index step's commit is seen");
    }
    assert!(!r.current_state("acme", "alice").unwrap().is_empty());
    erase_subject(&mut store, "alice").unwrap();
    assert!(r.current_state("acme", "alice").unwrap().is_empty());
    assert!(r.event(0).unwrap().unwrap().personal.is_none());
    assert_eq!(r.head().unwrap().size, 5, "the erasure entry is seen");
}

#[test]
fn the_audit_proves_every_personal_record_and_names_one_changed_deleted_or_orphaned() {
    // Proves: a personal record must open its entry's commitment, a missing one must be
    // named by an erasure entry, and a record of no consent entry is found; the standalone
    // index check and the whole-shard audit name the same entry.
    const PERSONAL: redb::TableDefinition<u64, &[u8]> =
        redb::TableDefinition::new("personal_records");
    const SUBJECTS: redb::TableDefinition<(u32, [u8; 32], u64), &[u8]> =
        redb::TableDefinition::new("subjects");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    for i in 0..12 {
        let subject = ["a", "b", "gone"][i as usize % 3];
        append(&mut store, vec![personal_event(subject, i, None)]).unwrap();
    }
    let erased = erase_subject(&mut store, "gone").unwrap();
    let erasure_seq = erased.entries[0].entry.seq;
    append(&mut store, vec![personal_event("a", 12, None)]).unwrap();
    let report = store.reader().verify_indexes().unwrap();
    assert_eq!((report.personal_records, report.erased_entries), (9, 4));
    drop(store);

    let tampered =
        |name: &str, f: &dyn Fn(&common::Edit)| common::index_problem_of_copy(&path, name, f);
    // Entry 3 is subject a's second event: its state row names a later one.
    let err = tampered("changed", &|t| {
        let mut tab = t.open_table(PERSONAL).unwrap();
        let mut b = tab.get(3).unwrap().unwrap().value().to_vec();
        let last = b.len() - 1;
        b[last] ^= 1;
        tab.insert(3, b.as_slice()).unwrap();
    });
    assert!(
        err.contains("personal record of entry 3 does not open"),
        "{err}"
    );
    // Deleted with its history row, as an operator hiding it would: only the record
    // check sees it.
    let err = tampered("deleted", &|t| {
        t.open_table(PERSONAL).unwrap().remove(3).unwrap();
        let mut subjects = t.open_table(SUBJECTS).unwrap();
        let key = subjects
            .iter()
            .unwrap()
            .map(|r| r.unwrap().0.value())
            .find(|k| k.2 == 3)
            .unwrap();
        subjects.remove(key).unwrap();
    });
    assert!(
        err.contains("entry 3 has no personal record, and no erasure entry names it"),
        "{err}"
    );
    let err = tampered("orphan", &|t| {
        let mut tab = t.open_table(PERSONAL).unwrap();
        let b = tab.get(0).unwrap().unwrap().value().to_vec();
        tab.insert(erasure_seq, b.as_slice()).unwrap();
    });
    assert!(
        err.contains(&format!(
            "personal record {erasure_seq} belongs to no consent entry"
        )),
        "{err}"
    );
}

#[test]
fn the_audit_checks_every_idempotency_key_row_against_the_entry_that_carries_the_key() {
    // Proves: each idempotency row must point at the entry of its customer carrying its
    // key, with the request digest recomputed from the entry and its personal record (zero
    // once erased); a moved, missing, cleared, changed or wrongly kept row is found.
    const KEYS: redb::TableDefinition<(u32, &str), (u64, &[u8; 32])> =
        redb::TableDefinition::new("idempotency_keys");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = open(&path);
    for i in 0..9 {
        let subject = ["a", "b", "gone"][i as usize % 3];
        let key = format!("k{i}");
        append(&mut store, vec![personal_event(subject, i, Some(&key))]).unwrap();
    }
    erase_subject(&mut store, "gone").unwrap();
    let report = store.reader().verify_indexes().unwrap();
    assert_eq!(report.idempotency_rows, 9);
    drop(store);
    type Keys<'t> = redb::Table<'t, (u32, &'static str), (u64, &'static [u8; 32])>;
    let tampered = |name: &str, f: &dyn Fn(&mut Keys<'_>)| {
        common::index_problem_of_copy(&path, name, |t| f(&mut t.open_table(KEYS).unwrap()))
    };
    let row = |t: &Keys<'_>, key: &str| {
        let (c, v) = t
            .iter()
            .unwrap()
            .map(|r| r.unwrap())
            .find(|(k, _)| k.value().1 == key)
            .map(|(k, v)| (k.value().0, (v.value().0, *v.value().1)))
            .unwrap();
        (c, v.0, v.1)
    };
    let err = tampered("moved", &|t| {
        let (c, _, digest) = row(t, "k1");
        t.insert((c, "k1"), (4, &digest)).unwrap();
    });
    assert!(
        err.contains("points at entry 4, which does not carry that key"),
        "{err}"
    );
    let err = tampered("cleared", &|t| {
        let (c, seq, _) = row(t, "k1");
        t.insert((c, "k1"), (seq, &[0u8; 32])).unwrap();
    });
    let recomputed = "for entry 1 holds a request digest other than the entry's (recomputed";
    assert!(err.contains(recomputed), "{err}");
    let err = tampered("changed", &|t| {
        let (c, seq, _) = row(t, "k1");
        t.insert((c, "k1"), (seq, &[7u8; 32])).unwrap();
    });
    assert!(err.contains(recomputed), "{err}");
    let err = tampered("kept", &|t| {
        let (c, seq, _) = row(t, "k2");
        t.insert((c, "k2"), (seq, &[7u8; 32])).unwrap();
    });
    assert!(
        err.contains("for entry 2 holds a request digest other than the entry's (zero"),
        "{err}"
    );
    let err = tampered("missing", &|t| {
        let (c, _, _) = row(t, "k4");
        t.remove((c, "k4")).unwrap();
    });
    assert!(
        err.contains("holds 8 rows where the journal implies 9"),
        "{err}"
    );
}
