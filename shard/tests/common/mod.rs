//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::Path;

use shard::engine::{ShardAuditError, Store, SubjectsPass};
use shard::format::{CaptureMethod, Choice, ConsentEvent, Evidence, Purposes};

/// A realistic event for `customer`/`subject`; `n` varies the choices and time.
pub fn event(customer: &str, subject: &str, n: u64) -> ConsentEvent {
    let flip = |k: u64| {
        if (n + k).is_multiple_of(2) {
            Choice::Granted
        } else {
            Choice::Denied
        }
    };
    ConsentEvent {
        customer_id: customer.into(),
        subject_id: subject.into(),
        purposes: Purposes::from([
            ("analytics".to_string(), flip(0)),
            ("marketing".to_string(), flip(1)),
            ("personalisation".to_string(), Choice::Granted),
        ]),
        notice_id: "cookie-banner".into(),
        notice_version: "2026-11".into(),
        capture_method: CaptureMethod::BannerCustom,
        jurisdiction: "EU".into(),
        gpc: false,
        tcf_string: Some("CQ-TCF-STRING".into()),
        gpp_string: None,
        evidence: Evidence {
            ip_address: Some("198.51.100.7".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
            page_url: Some("https://shop.example/".into()),
        },
        occurred_at_ms: 1_767_225_600_000 + n as i64,
        expires_at_ms: None,
        idempotency_key: None,
    }
}

/// Both files of a shard in one write transaction each; `open_table` opens a table in the
/// file that holds it, as the engine does.
pub struct Edit {
    /// Of the shard file.
    pub shard: redb::WriteTransaction,
    /// Of the index file.
    pub index: redb::WriteTransaction,
}

impl Edit {
    /// Opens `table` in the transaction of its file.
    pub fn open_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: redb::TableDefinition<K, V>,
    ) -> Result<redb::Table<'_, K, V>, redb::TableError> {
        use redb::TableHandle;
        if shard::engine::in_index_file(table.name()) {
            self.index.open_table(table)
        } else {
            self.shard.open_table(table)
        }
    }
}

/// Applies `edit` to both files of the shard at `path`, committing both.
pub fn edit_files(path: &Path, edit: impl FnOnce(&Edit)) {
    let shard = redb::Database::create(path).unwrap();
    let index = redb::Database::create(shard::engine::index_path(path)).unwrap();
    let txns = Edit {
        shard: shard.begin_write().unwrap(),
        index: index.begin_write().unwrap(),
    };
    edit(&txns);
    txns.shard.commit().unwrap();
    txns.index.commit().unwrap();
}

/// Copies both files of the shard at `path` to `copy` (and its index file).
pub fn copy_shard(path: &Path, copy: &Path) {
    std::fs::copy(path, copy).unwrap();
    let index = shard::engine::index_path(path);
    std::fs::copy(index, shard::engine::index_path(copy)).unwrap();
}

/// Copies the shard at `path` to `name` beside it, applies `edit` to the copy, and returns
/// the problem the index check names; the whole-shard audit must name the same one with
/// either subjects pass.
pub fn index_problem_of_copy(path: &Path, name: &str, edit: impl FnOnce(&Edit)) -> String {
    let copy = path.with_file_name(name);
    copy_shard(path, &copy);
    edit_files(&copy, edit);
    let store = Store::open(&copy, 0).unwrap();
    let alone = store.reader().verify_indexes().unwrap_err().to_string();
    for pass in [SubjectsPass::OneThread, SubjectsPass::TwoThreads] {
        match store.reader().audit(pass, |_, _| Ok(())) {
            Err(ShardAuditError::Index(e)) => assert_eq!(e.to_string(), alone),
            other => panic!("{name}: expected {alone}, got {other:?}"),
        }
    }
    alone
}
