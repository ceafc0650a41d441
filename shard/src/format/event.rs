//! The consent event as a client submits it, and its personal part.

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

/// Choices by purpose name, kept sorted by name with each name once: the canonical order
/// the entry encodes, without a map's nodes. A vector rather than a `BTreeMap` because an
/// event has a handful of purposes and its entry takes them over as they are (the map was
/// rebuilt into a vector for every appended event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purposes(Vec<(String, Choice)>);

impl Purposes {
    /// No purposes.
    pub fn new() -> Purposes {
        Purposes(Vec::new())
    }

    /// Where `name` is, or where it would go.
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// Sets `name`'s choice; the choice it replaces, if it had one.
    pub fn insert(&mut self, name: String, choice: Choice) -> Option<Choice> {
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, choice)),
            Err(i) => {
                self.0.insert(i, (name, choice));
                None
            }
        }
    }

    /// Adds `name` unless it is already there; `Err(name)` when it is (a duplicate in
    /// a client's list).
    pub fn try_insert(&mut self, name: String, choice: Choice) -> Result<(), String> {
        match self.find(&name) {
            Ok(_) => Err(name),
            Err(i) => {
                self.0.insert(i, (name, choice));
                Ok(())
            }
        }
    }

    /// Removes `name`; its choice, if it had one.
    pub fn remove(&mut self, name: &str) -> Option<Choice> {
        self.find(name).ok().map(|i| self.0.remove(i).1)
    }

    /// `name`'s choice.
    pub fn get(&self, name: &str) -> Option<&Choice> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    /// How many purposes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes them all.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Names and choices in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &Choice)> {
        self.into_iter()
    }

    /// The names and choices in name order, each name once (what an entry stores).
    pub fn into_vec(self) -> Vec<(String, Choice)> {
        debug_assert!(self.0.is_sorted_by(|a, b| a.0 < b.0));
        self.0
    }
}

impl FromIterator<(String, Choice)> for Purposes {
    /// Later choices for a name replace earlier ones, as a map's would.
    fn from_iter<I: IntoIterator<Item = (String, Choice)>>(items: I) -> Purposes {
        let mut all: Vec<(String, Choice)> = items.into_iter().collect();
        // Stable: among equal names the last one given stays last, and wins below.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, Choice)> = Vec::with_capacity(all.len());
        for item in all {
            match out.last_mut() {
                Some(last) if last.0 == item.0 => *last = item,
                _ => out.push(item),
            }
        }
        Purposes(out)
    }
}

impl<const N: usize> From<[(String, Choice); N]> for Purposes {
    fn from(items: [(String, Choice); N]) -> Purposes {
        items.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Purposes {
    type Item = (&'a String, &'a Choice);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Choice)>,
        fn(&'a (String, Choice)) -> (&'a String, &'a Choice),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, c)| (n, c))
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
    /// Choice per purpose, in name order by construction (the canonical order).
    pub purposes: Purposes,
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
