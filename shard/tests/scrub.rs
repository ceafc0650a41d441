//! Scrubs against real redb files while the shard keeps writing: what is appended and
//! erased during the copy reaches the new files, and nothing erased before it does.
#![cfg(feature = "engine")]

mod common;

use std::path::Path;

use common::event;
use shard::engine::{
    AppendError, ErasureRequest, ErasureTarget, ScrubSpace, ScrubStage, StorageError, Store,
};
use shard::format::ConsentEvent;

/// An event of `subject` whose evidence names it, so a byte search can find it.
fn personal_event(subject: &str, n: u64, key: Option<&str>) -> ConsentEvent {
    let mut e = event("acme", subject, n);
    e.evidence.user_agent = Some(format!("UA-of-{subject}"));
    e.idempotency_key = key.map(str::to_string);
    e
}

/// Appends one batch and runs the index step, as the shard actor does after a commit.
fn append(store: &mut Store, events: Vec<ConsentEvent>) -> Result<(), AppendError> {
    let result = store.append_batches(vec![events]).unwrap().remove(0);
    store.index_now(false).unwrap();
    result.map(|_| ())
}

/// Appends `count` events of distinct subjects named after `tag`, in batches of 1,000.
fn fill(store: &mut Store, tag: &str, count: u64) {
    let events: Vec<_> = (0..count)
        .map(|i| personal_event(&format!("{tag}-{i}"), i, None))
        .collect();
    for batch in events.chunks(1_000) {
        append(store, batch.to_vec()).unwrap();
    }
}

fn erase(store: &mut Store, subject: &str) {
    let erased = store
        .erase(&ErasureRequest {
            customer_id: "acme".into(),
            target: ErasureTarget::Subject(subject.into()),
            reason: "ticket 7".into(),
        })
        .unwrap();
    assert!(erased.erased_events > 0, "{subject} had events");
}

fn file_contains(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_scrub_keeps_what_is_appended_and_erased_while_it_copies() {
    // Proves: appends and erasures made during each stage of the copy (before its rounds,
    // before the index catch-up, before the hand-over) are all in the new files, with
    // their indexes and idempotency keys; an erasure during the copy leaves the file
    // marked, and the next scrub removes its bytes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = Store::open(&path, 0).unwrap();
    fill(&mut store, "old", 3_000);
    for (i, subject) in [
        "gone-before",
        "gone-in-rounds",
        "gone-in-index",
        "gone-at-end",
    ]
    .iter()
    .enumerate()
    {
        let key = format!("key-{subject}");
        append(
            &mut store,
            vec![personal_event(subject, i as u64, Some(&key))],
        )
        .unwrap();
    }
    append(
        &mut store,
        vec![personal_event("kept", 9, Some("key-kept"))],
    )
    .unwrap();
    erase(&mut store, "gone-before");

    let job = store.scrub_job().unwrap();
    let copy = job
        .copy_observed(|stage| match stage {
            ScrubStage::ShardCopied => {
                // More than the hand-over threshold: copied by the thread's rounds.
                fill(&mut store, "rounds", 2_500);
                append(
                    &mut store,
                    vec![personal_event("late", 1, Some("key-late"))],
                )
                .unwrap();
                erase(&mut store, "gone-in-rounds");
            }
            ScrubStage::IndexCopied => {
                fill(&mut store, "index", 300);
                erase(&mut store, "gone-in-index");
            }
        })
        .unwrap();
    fill(&mut store, "end", 200);
    erase(&mut store, "gone-at-end");
    let size = store.head().size;
    let report = store.finish_scrub(copy).unwrap();
    assert!(report.rows > 6_000, "{report:?}");
    assert_eq!(store.head().size, size, "a scrub appends nothing");

    let r = store.reader();
    r.verify_journal().unwrap();
    let checked = r.verify_indexes().unwrap();
    assert_eq!(checked.entries, size, "{checked:?}");
    for subject in ["late", "rounds-2499", "index-299", "end-199", "kept"] {
        assert!(
            !r.current_state("acme", subject).unwrap().is_empty(),
            "{subject}"
        );
    }
    for subject in [
        "gone-before",
        "gone-in-rounds",
        "gone-in-index",
        "gone-at-end",
    ] {
        assert!(
            r.current_state("acme", subject).unwrap().is_empty(),
            "{subject}"
        );
    }
    // Idempotency rows written during the copy answer retries; erased ones refuse them.
    append(
        &mut store,
        vec![personal_event("late", 1, Some("key-late"))],
    )
    .unwrap();
    assert_eq!(store.head().size, size, "a retry appends nothing");
    for subject in ["gone-in-rounds", "gone-in-index", "gone-at-end"] {
        let key = format!("key-{subject}");
        let retry = append(&mut store, vec![personal_event(subject, 0, Some(&key))]);
        assert!(
            matches!(retry, Err(AppendError::IdempotencyErased { .. })),
            "{subject}: {retry:?}"
        );
    }

    // Erased before the copy began: never in the new file. Erased during it: the file
    // stays marked until the next scrub rewrites it.
    assert!(!file_contains(&path, "UA-of-gone-before"));
    assert!(
        store.scrub_pending(),
        "erasures during the copy keep the mark"
    );
    store.scrub().unwrap();
    assert!(!store.scrub_pending());
    for subject in ["gone-in-rounds", "gone-in-index", "gone-at-end"] {
        assert!(
            !file_contains(&path, &format!("UA-of-{subject}")),
            "{subject}"
        );
    }
    assert!(file_contains(&path, "UA-of-late"));
    drop(r);
    drop(store);
    let store = Store::open(&path, 0).unwrap();
    store.reader().verify_journal().unwrap();
    store.reader().verify_indexes().unwrap();
}

#[test]
fn a_scrub_without_writes_meanwhile_clears_the_mark_and_leaves_no_copy_behind() {
    // Proves: with nothing written during the copy, the mark goes and only the two files
    // remain in the directory.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = Store::open(&path, 0).unwrap();
    fill(&mut store, "a", 50);
    erase(&mut store, "a-7");
    let report = store.scrub().unwrap();
    assert!(!store.scrub_pending());
    assert!(report.took_ms >= report.paused_ms, "{report:?}");
    assert_eq!(names_in(dir.path()), ["s.index.redb", "s.redb"]);
    assert!(!file_contains(&path, "UA-of-a-7"));
}

#[test]
fn an_erasure_that_only_the_copys_rounds_see_keeps_the_file_marked() {
    // Proves: the mark survives an erasure copied by the copying thread's rounds though the
    // hand-over copies no erasure (the erased record's bytes may sit in the copy's freed
    // pages).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = Store::open(&path, 0).unwrap();
    fill(&mut store, "old", 100);
    erase(&mut store, "old-99");
    let copy = store
        .scrub_job()
        .unwrap()
        .copy_observed(|stage| {
            if stage == ScrubStage::ShardCopied {
                erase(&mut store, "old-98");
                fill(&mut store, "rounds", 2_100);
            }
        })
        .unwrap();
    store.finish_scrub(copy).unwrap();
    assert!(store.scrub_pending());
    store.reader().verify_indexes().unwrap();
    store.scrub().unwrap();
    assert!(!store.scrub_pending());
    assert!(!file_contains(&path, "UA-of-old-98"));
}

/// The names of the files in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_scrub_without_the_free_disk_space_it_needs_changes_nothing_and_says_so() {
    // Proves: a scrub refuses to start when the disk lacks the space it needs, and a copy
    // stops (its files deleted) when free space falls below the floor it leaves the live
    // files; the shard keeps writing, stays marked, and a scrub with room succeeds.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = Store::open(&path, 0).unwrap();
    fill(&mut store, "a", 50);
    erase(&mut store, "a-7");
    // More than any disk has, relative to the files: refused before anything is written.
    store.set_scrub_space(ScrubSpace {
        start_percent: u64::MAX,
        min_free_bytes: 0,
    });
    let e = store.scrub().unwrap_err();
    assert!(matches!(e, StorageError::DiskSpace { .. }), "{e}");
    assert!(e.to_string().contains("Free disk space"), "{e}");
    assert_eq!(names_in(dir.path()), ["s.index.redb", "s.redb"]);
    // The start passes, the floor is never met: the copy stops after the shard file's copy.
    store.set_scrub_space(ScrubSpace {
        start_percent: 0,
        min_free_bytes: u64::MAX,
    });
    let mut stages = Vec::new();
    let job = store.scrub_job().unwrap();
    let e = job.copy_observed(|stage| stages.push(stage)).err().unwrap();
    assert!(matches!(e, StorageError::DiskSpace { .. }), "{e}");
    assert_eq!(stages, [ScrubStage::ShardCopied]);
    store.discard_scrub();
    assert_eq!(names_in(dir.path()), ["s.index.redb", "s.redb"]);
    assert!(store.scrub_pending());
    fill(&mut store, "b", 10);
    store.set_scrub_space(ScrubSpace::default());
    store.scrub().unwrap();
    assert!(!store.scrub_pending());
    assert!(!file_contains(&path, "UA-of-a-7"));
    store.reader().verify_indexes().unwrap();
}
