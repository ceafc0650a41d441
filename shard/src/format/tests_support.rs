//! A sample event for unit tests of the format modules.

use super::{CaptureMethod, Choice, ConsentEvent, Evidence, Purposes};

/// A valid event of customer `acme`.
pub(crate) fn sample() -> ConsentEvent {
    ConsentEvent {
        customer_id: "acme".into(),
        subject_id: "subj-42".into(),
        purposes: Purposes::from([("analytics".to_string(), Choice::Denied)]),
        notice_id: "banner".into(),
        notice_version: "v3".into(),
        capture_method: CaptureMethod::BannerCustom,
        jurisdiction: "EU".into(),
        gpc: false,
        tcf_string: None,
        gpp_string: None,
        evidence: Evidence::default(),
        occurred_at_ms: 1_767_225_600_000,
        expires_at_ms: None,
        idempotency_key: None,
    }
}
