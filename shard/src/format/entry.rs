//! The ledger entry and the personal record: canonical, versioned byte encodings.
//!
//! The layouts are a contract with every independent verifier and are documented byte
//! for byte in `docs/design.md` ("Entry format v1", "Personal record format v1").

use super::codec::{DecodeError, Reader, Writer};
use super::event::{CaptureMethod, Choice, ConsentEvent, Evidence, PersonalRecord};
use super::view::EntryView;
use crate::hash::{HASH_LEN, Hash};

/// Version byte that starts every entry this build writes.
pub const ENTRY_FORMAT_VERSION: u8 = 1;
/// Version byte that starts every personal record this build writes.
pub const PERSONAL_FORMAT_VERSION: u8 = 1;
/// Entry kind byte of a consent event.
pub const KIND_CONSENT: u8 = 1;
/// Entry kind byte of an erasure record. Other kinds are reserved for later formats.
pub const KIND_ERASURE: u8 = 2;

/// One journal entry: the unit that is hash-chained and becomes a Merkle leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Shard that owns the entry; binds the entry to one chain.
    pub shard_id: u32,
    /// Position in the shard's journal, from 0, with no gaps.
    pub seq: u64,
    /// Server time of the commit (Unix ms); never decreases within a shard.
    pub recorded_at_ms: i64,
    /// Chain hash of the previous entry, all zeros for seq 0.
    pub prev_hash: Hash,
    /// Customer (tenant) the entry belongs to.
    pub customer_id: String,
    /// The kind-specific part.
    pub body: EntryBody,
}

/// What an entry records; the kind byte selects the variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryBody {
    /// A consent event (kind 1).
    Consent(ConsentRecord),
    /// The erasure of earlier entries' personal records (kind 2).
    Erasure(ErasureRecord),
}

/// Why personal records were erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasureCause {
    /// The person asked (GDPR Art. 17, CCPA deletion): `eraseSubject`.
    SubjectRequest,
    /// The customer's retention period ran out.
    Retention,
}

impl ErasureCause {
    /// The byte stored in the entry.
    pub fn to_byte(self) -> u8 {
        match self {
            ErasureCause::SubjectRequest => 1,
            ErasureCause::Retention => 2,
        }
    }

    /// Inverse of [`ErasureCause::to_byte`].
    pub fn from_byte(b: u8) -> Option<ErasureCause> {
        match b {
            1 => Some(ErasureCause::SubjectRequest),
            2 => Some(ErasureCause::Retention),
            _ => None,
        }
    }
}

/// An erasure, as recorded in the ledger: which entries lost their personal record, when
/// (the entry's `recorded_at_ms`) and why. Holds no personal data, so it is never erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRecord {
    /// What caused the erasure.
    pub cause: ErasureCause,
    /// The caller's reason, free text without personal data (a ticket number, a policy).
    pub reason: String,
    /// Sequence numbers of the consent entries (same shard and customer, all earlier than
    /// this entry) whose personal records were deleted; strictly increasing, 1..=
    /// `MAX_ERASED_PER_ENTRY`.
    pub erased_seqs: Vec<u64>,
}

/// The non-personal fields of a consent event, as stored in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    /// `blake3(salt ‖ personal record bytes)`: binds the entry to its personal record.
    pub personal_commitment: Hash,
    /// Notice shown to the person.
    pub notice_id: String,
    /// Version of that notice.
    pub notice_version: String,
    /// How the choice was captured.
    pub capture_method: CaptureMethod,
    /// Legal regime applied.
    pub jurisdiction: String,
    /// Global Privacy Control signal present.
    pub gpc: bool,
    /// Client time of the decision (Unix ms).
    pub occurred_at_ms: i64,
    /// Expiry of the consent (Unix ms), if any.
    pub expires_at_ms: Option<i64>,
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Purpose choices, sorted by name bytes, names unique.
    pub purposes: Vec<(String, Choice)>,
}

impl ConsentRecord {
    /// The ledger part of `event`, committed to `personal_commitment`.
    pub fn from_event(event: &ConsentEvent, personal_commitment: Hash) -> ConsentRecord {
        ConsentRecord {
            personal_commitment,
            notice_id: event.notice_id.clone(),
            notice_version: event.notice_version.clone(),
            capture_method: event.capture_method,
            jurisdiction: event.jurisdiction.clone(),
            gpc: event.gpc,
            occurred_at_ms: event.occurred_at_ms,
            expires_at_ms: event.expires_at_ms,
            idempotency_key: event.idempotency_key.clone(),
            purposes: event
                .purposes
                .iter()
                .map(|(name, choice)| (name.clone(), *choice))
                .collect(),
        }
    }
}

/// A consent event taken apart for the write path without copying a string: its customer
/// and ledger part go into the entry, its personal record into the personal-records table
/// and back to the caller, who answers with it. [`ConsentRecord::from_event`] and
/// [`ConsentEvent::personal_record`] give the same parts by copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventParts {
    /// The customer the event belongs to (the entry's `customer_id`).
    pub customer_id: String,
    /// The ledger part, committed to the personal record.
    pub record: ConsentRecord,
    /// The personal part.
    pub personal: PersonalRecord,
}

impl ConsentEvent {
    /// Moves the event's strings into its [`EventParts`], the ledger part committed to
    /// `personal_commitment` (the purposes in name order, as [`Purposes`](super::event::Purposes) keeps them).
    pub fn into_parts(self, personal_commitment: Hash) -> EventParts {
        EventParts {
            customer_id: self.customer_id,
            record: ConsentRecord {
                personal_commitment,
                notice_id: self.notice_id,
                notice_version: self.notice_version,
                capture_method: self.capture_method,
                jurisdiction: self.jurisdiction,
                gpc: self.gpc,
                occurred_at_ms: self.occurred_at_ms,
                expires_at_ms: self.expires_at_ms,
                idempotency_key: self.idempotency_key,
                purposes: self.purposes.into_vec(),
            },
            personal: PersonalRecord {
                subject_id: self.subject_id,
                tcf_string: self.tcf_string,
                gpp_string: self.gpp_string,
                evidence: self.evidence,
            },
        }
    }
}

impl Entry {
    /// The canonical bytes: what is hashed, chained and proven.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.u8(ENTRY_FORMAT_VERSION);
        match &self.body {
            EntryBody::Consent(_) => w.u8(KIND_CONSENT),
            EntryBody::Erasure(_) => w.u8(KIND_ERASURE),
        }
        w.u32(self.shard_id);
        w.u64(self.seq);
        w.i64(self.recorded_at_ms);
        w.hash(&self.prev_hash);
        w.str(&self.customer_id);
        match &self.body {
            EntryBody::Consent(c) => encode_consent(&mut w, c),
            EntryBody::Erasure(e) => encode_erasure(&mut w, e),
        }
        w.buf
    }

    /// Strict inverse of [`Entry::encode`]: only canonical bytes decode
    /// ([`EntryView::decode`], then owned copies of its strings).
    pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
        EntryView::decode(bytes).map(|v| v.to_entry())
    }

    /// The consent record, when this entry is a consent event.
    pub fn consent(&self) -> Option<&ConsentRecord> {
        match &self.body {
            EntryBody::Consent(c) => Some(c),
            EntryBody::Erasure(_) => None,
        }
    }

    /// The erasure record, when this entry is an erasure.
    pub fn erasure(&self) -> Option<&ErasureRecord> {
        match &self.body {
            EntryBody::Erasure(e) => Some(e),
            EntryBody::Consent(_) => None,
        }
    }
}

fn encode_erasure(w: &mut Writer, e: &ErasureRecord) {
    w.u8(e.cause.to_byte());
    w.str(&e.reason);
    let count = u32::try_from(e.erased_seqs.len()).expect("erased count is bounded");
    w.u32(count);
    for seq in &e.erased_seqs {
        w.u64(*seq);
    }
}

fn encode_consent(w: &mut Writer, c: &ConsentRecord) {
    w.hash(&c.personal_commitment);
    w.str(&c.notice_id);
    w.str(&c.notice_version);
    w.u8(c.capture_method.to_byte());
    w.str(&c.jurisdiction);
    w.bool(c.gpc);
    w.i64(c.occurred_at_ms);
    w.opt_i64(c.expires_at_ms);
    w.opt_str(c.idempotency_key.as_deref());
    let count = u32::try_from(c.purposes.len()).expect("purpose count is validated");
    w.u32(count);
    for (name, choice) in &c.purposes {
        w.str(name);
        w.u8(choice.to_byte());
    }
}

/// The one encoder of personal records ([`PersonalRecord::encode`]), over borrowed fields
/// so that the write path encodes a submitted event's record without copying it first.
pub(crate) fn encode_personal(
    subject_id: &str,
    tcf_string: Option<&str>,
    gpp_string: Option<&str>,
    evidence: &Evidence,
) -> Vec<u8> {
    let w = Writer::with_capacity(128);
    encode_personal_after(w, subject_id, tcf_string, gpp_string, evidence)
}

/// [`encode_personal`] appended to what `w` holds already (the stored row's salt).
pub(crate) fn encode_personal_after(
    mut w: Writer,
    subject_id: &str,
    tcf_string: Option<&str>,
    gpp_string: Option<&str>,
    evidence: &Evidence,
) -> Vec<u8> {
    w.u8(PERSONAL_FORMAT_VERSION);
    w.str(subject_id);
    w.opt_str(tcf_string);
    w.opt_str(gpp_string);
    w.opt_str(evidence.ip_address.as_deref());
    w.opt_str(evidence.user_agent.as_deref());
    w.opt_str(evidence.page_url.as_deref());
    w.buf
}

impl PersonalRecord {
    /// The canonical bytes the entry's commitment covers (after the salt).
    pub fn encode(&self) -> Vec<u8> {
        encode_personal(
            &self.subject_id,
            self.tcf_string.as_deref(),
            self.gpp_string.as_deref(),
            &self.evidence,
        )
    }

    /// The subject id of an encoded personal record, borrowed, without decoding the rest
    /// (the audit's index check needs only it, once per record).
    pub fn decode_subject_id(bytes: &[u8]) -> Result<&str, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != PERSONAL_FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        r.str_ref()
    }

    /// Strict inverse of [`PersonalRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<PersonalRecord, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != PERSONAL_FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let record = PersonalRecord {
            subject_id: r.str()?,
            tcf_string: r.opt_str("tcf_string")?,
            gpp_string: r.opt_str("gpp_string")?,
            evidence: Evidence {
                ip_address: r.opt_str("ip_address")?,
                user_agent: r.opt_str("user_agent")?,
                page_url: r.opt_str("page_url")?,
            },
        };
        r.finish()?;
        Ok(record)
    }
}

/// The API id of entry `seq` of `shard`: `ev`, 8 hex digits of shard id, 16 of sequence
/// number (docs/receipts.md). Stable for the life of the ledger, and enough to route a lookup.
pub fn event_id(shard: u32, seq: u64) -> String {
    // Written digit by digit: `format!` with padded hex took 2 % of a batch's server
    // instructions (one id per event in every answer).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digit = |v: u64, at: u32| char::from(HEX[((v >> (4 * at)) & 0xf) as usize]);
    let mut id = String::with_capacity(26);
    id.push_str("ev");
    id.extend((0..8).rev().map(|at| digit(u64::from(shard), at)));
    id.extend((0..16).rev().map(|at| digit(seq, at)));
    id
}

/// Inverse of [`event_id`]; `None` for anything that is not an event id.
pub fn parse_event_id(id: &str) -> Option<(u32, u64)> {
    let hex = id.strip_prefix("ev")?;
    if hex.len() != 24
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    Some((
        u32::from_str_radix(&hex[..8], 16).ok()?,
        u64::from_str_radix(&hex[8..], 16).ok()?,
    ))
}

impl ConsentEvent {
    /// The event a stored entry and its personal record were made from (inverse of the
    /// split in the append path; used to rebuild idempotency digests from the journal).
    ///
    /// # Panics
    /// When `entry` is not a consent event: only consent entries have personal records.
    pub fn reassemble(entry: &Entry, personal: PersonalRecord) -> ConsentEvent {
        let c = entry
            .consent()
            .expect("only consent entries have personal records");
        ConsentEvent {
            customer_id: entry.customer_id.clone(),
            subject_id: personal.subject_id,
            purposes: c.purposes.iter().cloned().collect(),
            notice_id: c.notice_id.clone(),
            notice_version: c.notice_version.clone(),
            capture_method: c.capture_method,
            jurisdiction: c.jurisdiction.clone(),
            gpc: c.gpc,
            tcf_string: personal.tcf_string,
            gpp_string: personal.gpp_string,
            evidence: personal.evidence,
            occurred_at_ms: c.occurred_at_ms,
            expires_at_ms: c.expires_at_ms,
            idempotency_key: c.idempotency_key.clone(),
        }
    }
}

/// Digest of everything a client submitted in one event, used only to tell an
/// idempotent retry (same digest) from a conflicting reuse of a key. Not part of any proof.
pub fn request_digest(event: &ConsentEvent) -> Hash {
    let body = ConsentRecord::from_event(event, Hash::ZERO);
    let mut w = Writer::with_capacity(256);
    w.str(&event.customer_id);
    encode_consent(&mut w, &body);
    let mut h = blake3::Hasher::new_derive_key(REQUEST_DIGEST_CONTEXT);
    h.update(&w.buf);
    h.update(&event.encode_personal_record());
    h.finalize().into()
}

/// The key-derivation context of [`request_digest`].
const REQUEST_DIGEST_CONTEXT: &str = "assent 2026 idempotency request digest v1";

/// Bytes of a journal entry before its customer id: version, kind, shard, seq,
/// recorded_at, prev_hash.
const ENTRY_HEADER_BYTES: usize = 1 + 1 + 4 + 8 + 8 + 32;

/// [`request_digest`] of a stored consent event, from `entry`, the canonical bytes of its
/// consent entry, `view`, their decoding, and `personal`, the canonical bytes of its
/// personal record, without reassembling the event: a consent entry ends with the
/// customer id and the consent body (commitment first), which are the digest's input once
/// the commitment is zeroed. `None` when `view` is not a consent entry. (The audit
/// recomputes every stored digest this way; a test holds it equal to [`request_digest`].)
pub fn stored_request_digest(view: &EntryView<'_>, entry: &[u8], personal: &[u8]) -> Option<Hash> {
    view.consent()?;
    let customer_end = ENTRY_HEADER_BYTES + 4 + view.customer_id.len();
    assert_eq!(
        &entry[ENTRY_HEADER_BYTES + 4..customer_end],
        view.customer_id.as_bytes(),
        "`view` is the decoding of `entry`"
    );
    let mut h = blake3::Hasher::new_derive_key(REQUEST_DIGEST_CONTEXT);
    h.update(&entry[ENTRY_HEADER_BYTES..customer_end]);
    h.update(&Hash::ZERO.0);
    h.update(&entry[customer_end + HASH_LEN..]);
    h.update(personal);
    Some(h.finalize().into())
}
