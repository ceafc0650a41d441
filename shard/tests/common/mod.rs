//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use shard::engine::{ShardAuditError, Store, SubjectsPass};
use shard::format::{CaptureMethod, Choice, ConsentEvent, Evidence};

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
        purposes: BTreeMap::from([
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

/// Copies the shard file at `path` to `name` beside it, applies `edit` to the copy in one
/// write transaction, and returns the problem the index check names; the whole-shard audit
/// must name the same one with either subjects pass.
pub fn index_problem_of_copy(
    path: &Path,
    name: &str,
    edit: impl FnOnce(&redb::WriteTransaction),
) -> String {
    let copy = path.with_file_name(name);
    std::fs::copy(path, &copy).unwrap();
    let db = redb::Database::create(&copy).unwrap();
    let txn = db.begin_write().unwrap();
    edit(&txn);
    txn.commit().unwrap();
    drop(db);
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
