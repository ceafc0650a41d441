//! The consent event as a client submits it, and its personal part.

use std::collections::BTreeMap;

/// A person's choice for one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Choice {
    /// The person agreed to the purpose.
    Granted,
    /// The person refused or withdrew the purpose.
    Denied,
}

impl Choice {
    /// Byte in the canonical encoding.
    pub fn to_byte(self) -> u8 {
        match self {
            Choice::Granted => 1,
            Choice::Denied => 2,
        }
    }
    /// Inverse of [`Choice::to_byte`].
    pub fn from_byte(b: u8) -> Option<Choice> {
        match b {
            1 => Some(Choice::Granted),
            2 => Some(Choice::Denied),
            _ => None,
        }
    }
}

/// How the consent was captured; part of the proof of *how* a person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptureMethod {
    /// "Accept all" on a banner.
    BannerAcceptAll,
    /// "Reject all" on a banner.
    BannerRejectAll,
    /// Individual choices on a banner.
    BannerCustom,
    /// A later change in a preference centre.
    PreferenceCentre,
    /// A Global Privacy Control signal sent by the browser.
    GpcSignal,
    /// Recorded by a backend through the API.
    Api,
    /// Imported from an earlier system.
    Import,
    /// A withdrawal (`withdrawConsent`).
    Withdrawal,
}

impl CaptureMethod {
    /// Every method, in byte order.
    pub const ALL: [CaptureMethod; 8] = [
        CaptureMethod::BannerAcceptAll,
        CaptureMethod::BannerRejectAll,
        CaptureMethod::BannerCustom,
        CaptureMethod::PreferenceCentre,
        CaptureMethod::GpcSignal,
        CaptureMethod::Api,
        CaptureMethod::Import,
        CaptureMethod::Withdrawal,
    ];
    /// Byte in the canonical encoding (1..=8).
    pub fn to_byte(self) -> u8 {
        match self {
            CaptureMethod::BannerAcceptAll => 1,
            CaptureMethod::BannerRejectAll => 2,
            CaptureMethod::BannerCustom => 3,
            CaptureMethod::PreferenceCentre => 4,
            CaptureMethod::GpcSignal => 5,
            CaptureMethod::Api => 6,
            CaptureMethod::Import => 7,
            CaptureMethod::Withdrawal => 8,
        }
    }
    /// Inverse of [`CaptureMethod::to_byte`].
    pub fn from_byte(b: u8) -> Option<CaptureMethod> {
        CaptureMethod::ALL
            .get(usize::from(b).checked_sub(1)?)
            .copied()
    }
}

/// Evidence of the capture context. Personal data: kept in the personal record only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Client IP address as the CMP saw it.
    pub ip_address: Option<String>,
    /// Browser user agent.
    pub user_agent: Option<String>,
    /// Page on which consent was captured.
    pub page_url: Option<String>,
}

/// A consent event as submitted by a CMP backend, before the shard stamps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEvent {
    /// The website owner (tenant) the event belongs to.
    pub customer_id: String,
    /// The CMP's pseudonymous id of the end user. Personal data.
    pub subject_id: String,
    /// Choice per purpose; a `BTreeMap` so the order is canonical by construction.
    pub purposes: BTreeMap<String, Choice>,
    /// Which notice (banner / policy) the person was shown.
    pub notice_id: String,
    /// Which version of that notice.
    pub notice_version: String,
    /// How the choice was captured.
    pub capture_method: CaptureMethod,
    /// Legal regime the CMP applied (e.g. `EU`, `US-CA`).
    pub jurisdiction: String,
    /// Whether a Global Privacy Control signal was present.
    pub gpc: bool,
    /// IAB TCF consent string. Personal data (it is a per-person record).
    pub tcf_string: Option<String>,
    /// IAB GPP string. Personal data.
    pub gpp_string: Option<String>,
    /// Capture evidence. Personal data.
    pub evidence: Evidence,
    /// When the client says the choice was made (Unix ms).
    pub occurred_at_ms: i64,
    /// When the consent lapses, if it does (Unix ms).
    pub expires_at_ms: Option<i64>,
    /// Client key that makes retries safe: the same key returns the original event.
    pub idempotency_key: Option<String>,
}

/// The personal part of an event, stored apart from the ledger entry so it can be erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalRecord {
    /// The end user's subject id.
    pub subject_id: String,
    /// IAB TCF string.
    pub tcf_string: Option<String>,
    /// IAB GPP string.
    pub gpp_string: Option<String>,
    /// Capture evidence.
    pub evidence: Evidence,
}

impl ConsentEvent {
    /// The canonical bytes of [`ConsentEvent::personal_record`], without copying it.
    pub fn encode_personal_record(&self) -> Vec<u8> {
        super::entry::encode_personal(
            &self.subject_id,
            self.tcf_string.as_deref(),
            self.gpp_string.as_deref(),
            &self.evidence,
        )
    }

    /// The stored form of its personal record: `salt`, then the canonical bytes of
    /// [`ConsentEvent::encode_personal_record`], in one buffer (the personal-records row).
    pub fn salted_personal_record(&self, salt: &[u8; 32]) -> Vec<u8> {
        let mut w = super::codec::Writer::with_capacity(32 + 96 + self.subject_id.len());
        w.buf.extend_from_slice(salt);
        super::entry::encode_personal_after(
            w,
            &self.subject_id,
            self.tcf_string.as_deref(),
            self.gpp_string.as_deref(),
            &self.evidence,
        )
    }

    /// The personal record this event's entry commits to.
    pub fn personal_record(&self) -> PersonalRecord {
        PersonalRecord {
            subject_id: self.subject_id.clone(),
            tcf_string: self.tcf_string.clone(),
            gpp_string: self.gpp_string.clone(),
            evidence: self.evidence.clone(),
        }
    }
}
