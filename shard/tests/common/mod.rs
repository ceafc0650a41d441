//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

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
