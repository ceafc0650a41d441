//! GraphQL output and input types.

use std::sync::Arc;

use async_graphql::parser::types::Field;
use async_graphql::{
    Context, Enum, ID, InputObject, InputType, Object, Positioned, Result, ScalarType,
    SimpleObject, Value,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, TimeZone, Utc};
use shard::checkpoint::key_id;
use shard::format::{Entry, PersonalRecord};
use shard::hash::Hash;
use shard::verify::ShardHead;

use super::plain::{PlainFields, PlainList, plain_list, plain_object};
use super::scalars::{HashHex, UInt64};
use super::state;
use crate::checkpoints::Issued;
use crate::errors::{Code, err};
use crate::ids::event_id;

pub(crate) fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Whether a purpose may be relied on at a given instant.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConsentStatus {
    /// Granted and not lapsed.
    Granted,
    /// Denied (or withdrawn).
    Denied,
    /// Granted, but the grant lapsed (`expiresAt` passed): ask again.
    Expired,
}

/// A person's choice for one purpose.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[graphql(name = "Choice", remote = "shard::format::Choice")]
pub enum ChoiceGql {
    /// The person agreed to the purpose.
    Granted,
    /// The person refused or withdrew the purpose.
    Denied,
}

/// How a consent was captured.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[graphql(name = "CaptureMethod", remote = "shard::format::CaptureMethod")]
pub enum CaptureMethodGql {
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
    /// A withdrawal recorded by `withdrawConsent`.
    Withdrawal,
}

/// Order of a history page.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum HistoryOrder {
    /// Oldest event first.
    OldestFirst,
    /// Newest event first.
    NewestFirst,
}

// The input types of events also derive serde's `Deserialize`, with the same names and
// rules as GraphQL input coercion, for the bulk path (`crate::bulk`), which decodes a
// `[ConsentEventInput!]!` variable straight from the request body.

/// One purpose and the choice made for it.
#[derive(InputObject, Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeChoiceInput {
    /// Purpose name: 1-64 characters of a-z 0-9 _ . : -
    pub purpose: String,
    /// The choice.
    pub choice: ChoiceGql,
}

/// Evidence of the capture context. Personal data: stored apart from the ledger entry and
/// erasable.
#[derive(InputObject, Default, Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvidenceInput {
    /// Client IP address as the CMP saw it (at most 64 bytes).
    pub ip_address: Option<String>,
    /// Browser user agent (at most 1,024 bytes).
    pub user_agent: Option<String>,
    /// Page on which consent was captured (at most 2,048 bytes).
    pub page_url: Option<String>,
}

/// A consent event as a CMP records it.
#[derive(InputObject, Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsentEventInput {
    /// The CMP's pseudonymous id of the end user (1-256 bytes). Personal data: stored apart
    /// from the ledger entry, indexed only through a keyed hash.
    pub subject_id: String,
    /// The choice for each purpose (1-64 purposes, names unique).
    #[serde(deserialize_with = "crate::bulk::one_or_many")]
    pub purposes: Vec<PurposeChoiceInput>,
    /// Which notice (banner or policy) the person was shown (1-128 bytes).
    pub notice_id: String,
    /// Which version of that notice (1-64 bytes).
    pub notice_version: String,
    /// How the choice was captured.
    pub capture_method: CaptureMethodGql,
    /// Legal regime the CMP applied, e.g. `EU` or `US-CA` (1-32 bytes).
    pub jurisdiction: String,
    /// Whether the browser sent a Global Privacy Control signal. Under a CCPA-type
    /// jurisdiction (CCPA, CPRA, US-CA, US-CO, US-CT, US-DE, US-MD, US-MN, US-MT, US-NH,
    /// US-NJ, US-OR, US-TX) it is an opt-out of sale and sharing: the purposes `sale` and
    /// `sharing` are recorded as DENIED (added when absent; an event granting either is
    /// refused with BAD_USER_INPUT). Elsewhere it is recorded as evidence only.
    #[graphql(default)]
    #[serde(default)]
    pub gpc: bool,
    /// IAB TCF consent string (at most 16 KiB). Personal data.
    pub tcf_string: Option<String>,
    /// IAB GPP string (at most 16 KiB). Personal data.
    pub gpp_string: Option<String>,
    /// Capture evidence. Personal data.
    pub evidence: Option<EvidenceInput>,
    /// When the person made the choice, as the client saw it.
    #[serde(deserialize_with = "crate::bulk::date_time")]
    pub occurred_at: DateTime<Utc>,
    /// When the consent lapses, if it does (after `occurredAt`). When absent and the
    /// customer has a `defaultConsentLifetimeDays`, it is `occurredAt` plus that lifetime.
    #[serde(default, deserialize_with = "crate::bulk::opt_date_time")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Makes retries safe: the same key returns the original event; the same key with
    /// different content is an `IDEMPOTENCY_CONFLICT` (1-128 bytes). Stored in the ledger
    /// for good, even after erasure: never put personal data (an email, a user id) in it.
    pub idempotency_key: Option<String>,
}

/// A purpose and the choice recorded for it.
#[derive(SimpleObject)]
pub struct PurposeChoice {
    /// Purpose name.
    pub purpose: String,
    /// The choice.
    pub choice: ChoiceGql,
}

impl PlainFields for PurposeChoice {
    fn plain_field(&self, field: &Positioned<Field>) -> Option<Value> {
        match field.node.name.node.as_str() {
            "purpose" => Some(Value::String(self.purpose.clone())),
            "choice" => Some(InputType::to_value(&self.choice)),
            _ => None,
        }
    }
}

/// An optional instant as the `DateTime` scalar shows it.
fn opt_time(t: Option<DateTime<Utc>>) -> Value {
    t.as_ref().map_or(Value::Null, ScalarType::to_value)
}

/// An optional string as GraphQL shows it.
fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_string()))
}

/// Capture evidence (personal data; absent once erased).
#[derive(SimpleObject)]
pub struct Evidence {
    /// Client IP address.
    pub ip_address: Option<String>,
    /// Browser user agent.
    pub user_agent: Option<String>,
    /// Page URL.
    pub page_url: Option<String>,
}

impl PlainFields for Evidence {
    fn plain_field(&self, field: &Positioned<Field>) -> Option<Value> {
        match field.node.name.node.as_str() {
            "ipAddress" => Some(opt_str(self.ip_address.as_deref())),
            "userAgent" => Some(opt_str(self.user_agent.as_deref())),
            "pageUrl" => Some(opt_str(self.page_url.as_deref())),
            _ => None,
        }
    }
}

/// The fields of `ConsentEvent` that read its personal record: a page whose selection
/// names none of them is read without the records ([`EventView::without_personal`]).
pub(crate) const PERSONAL_FIELDS: [&str; 4] = ["subjectId", "tcfString", "gppString", "evidence"];

/// A stored event with its personal record when it still exists.
#[derive(Clone)]
pub(crate) struct EventView {
    pub(crate) entry: Entry,
    pub(crate) entry_hash: Hash,
    /// The personal record; `None` once erased (or when not loaded).
    pub(crate) personal: Option<PersonalRecord>,
    /// Whether `personal` was read. A view read without it answers a personal field with
    /// an internal error, never with the null that means "erased".
    pub(crate) personal_loaded: bool,
}

impl From<shard::engine::StoredEvent> for EventView {
    fn from(e: shard::engine::StoredEvent) -> Self {
        EventView {
            entry: e.entry,
            entry_hash: e.entry_hash,
            personal: e.personal.map(|p| p.record),
            personal_loaded: true,
        }
    }
}

impl EventView {
    /// A view of an event read without its personal record (`shard::engine::Personal::Skip`),
    /// for a selection that names no field of [`PERSONAL_FIELDS`].
    pub(crate) fn without_personal(e: shard::engine::StoredEvent) -> Self {
        debug_assert!(e.personal.is_none(), "read without the personal record");
        EventView {
            entry: e.entry,
            entry_hash: e.entry_hash,
            personal: None,
            personal_loaded: false,
        }
    }

    /// The personal record (`None` once erased), or an internal error when the view was
    /// read without it: a selection [`PERSONAL_FIELDS`] did not foresee.
    fn personal(&self) -> Result<Option<&PersonalRecord>> {
        if self.personal_loaded {
            Ok(self.personal.as_ref())
        } else {
            Err(err(
                Code::Internal,
                "the event was read without its personal record",
            ))
        }
    }

    /// The consent part. Every `EventView` is built from a consent entry: the indexes hold
    /// only those, and lookups by id refuse other kinds (`event_by_id`).
    fn consent(&self) -> &shard::format::ConsentRecord {
        self.entry
            .consent()
            .expect("an EventView is only built from a consent entry")
    }

    /// The choice per purpose as output objects, sorted by purpose name.
    fn purpose_choices(&self) -> Vec<PurposeChoice> {
        let purposes = &self.consent().purposes;
        purposes
            .iter()
            .map(|(p, c)| PurposeChoice {
                purpose: p.clone(),
                choice: (*c).into(),
            })
            .collect()
    }
}

/// A consent event as stored in the ledger.
#[Object(name = "ConsentEvent")]
impl EventView {
    /// Opaque, stable id of the event.
    async fn id(&self) -> ID {
        ID(event_id(self.entry.shard_id, self.entry.seq))
    }
    /// The customer (website owner) the event belongs to.
    async fn customer_id(&self) -> &str {
        &self.entry.customer_id
    }
    /// The end user's subject id; null once the subject was erased.
    async fn subject_id(&self) -> Result<Option<&str>> {
        Ok(self.personal()?.map(|p| p.subject_id.as_str()))
    }
    /// Shard holding the event.
    async fn shard(&self) -> u32 {
        self.entry.shard_id
    }
    /// Position in the shard's journal (from 0, no gaps).
    async fn sequence(&self) -> UInt64 {
        UInt64(self.entry.seq)
    }
    /// Server time of the durable commit; never decreases within a shard.
    async fn recorded_at(&self) -> DateTime<Utc> {
        ms_to_time(self.entry.recorded_at_ms)
    }
    /// When the client says the choice was made.
    async fn occurred_at(&self) -> DateTime<Utc> {
        ms_to_time(self.consent().occurred_at_ms)
    }
    /// When the consent lapses, if it does.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.consent().expires_at_ms.map(ms_to_time)
    }
    /// The choice per purpose, sorted by purpose name.
    async fn purposes(&self) -> PlainList<PurposeChoice> {
        PlainList(self.purpose_choices())
    }
    /// Notice shown.
    async fn notice_id(&self) -> &str {
        &self.consent().notice_id
    }
    /// Version of the notice shown.
    async fn notice_version(&self) -> &str {
        &self.consent().notice_version
    }
    /// How the choice was captured.
    async fn capture_method(&self) -> CaptureMethodGql {
        self.consent().capture_method.into()
    }
    /// Legal regime applied.
    async fn jurisdiction(&self) -> &str {
        &self.consent().jurisdiction
    }
    /// Whether a Global Privacy Control signal was present.
    async fn gpc(&self) -> bool {
        self.consent().gpc
    }
    /// IAB TCF string (null once erased).
    async fn tcf_string(&self) -> Result<Option<&str>> {
        Ok(self.personal()?.and_then(|p| p.tcf_string.as_deref()))
    }
    /// IAB GPP string (null once erased).
    async fn gpp_string(&self) -> Result<Option<&str>> {
        Ok(self.personal()?.and_then(|p| p.gpp_string.as_deref()))
    }
    /// Capture evidence (null once erased).
    async fn evidence(&self) -> Result<Option<Evidence>> {
        Ok(self.personal()?.map(evidence))
    }
    /// The client's idempotency key, if any.
    async fn idempotency_key(&self) -> Option<&str> {
        self.consent().idempotency_key.as_deref()
    }
    /// blake3 of the canonical entry bytes (the chain hash).
    async fn entry_hash(&self) -> HashHex {
        HashHex(self.entry_hash)
    }
    /// Chain hash of the previous entry of the shard (zeros for the first).
    async fn prev_hash(&self) -> HashHex {
        HashHex(self.entry.prev_hash)
    }
    /// blake3(salt ‖ personal record): binds the entry to its erasable personal record.
    async fn personal_commitment(&self) -> HashHex {
        HashHex(self.consent().personal_commitment)
    }
}

impl PlainFields for EventView {
    fn plain_field(&self, field: &Positioned<Field>) -> Option<Value> {
        // A personal field of a view read without its record takes the resolver's path,
        // which reports it.
        let p = self.personal_loaded.then_some(self.personal.as_ref());
        let (e, c) = (&self.entry, self.consent());
        let hash = |h: Hash| ScalarType::to_value(&HashHex(h));
        Some(match field.node.name.node.as_str() {
            "id" => Value::String(event_id(e.shard_id, e.seq)),
            "customerId" => Value::String(e.customer_id.clone()),
            "subjectId" => opt_str(p?.map(|p| p.subject_id.as_str())),
            "shard" => Value::from(e.shard_id),
            "sequence" => ScalarType::to_value(&UInt64(e.seq)),
            "recordedAt" => opt_time(Some(ms_to_time(e.recorded_at_ms))),
            "occurredAt" => opt_time(Some(ms_to_time(c.occurred_at_ms))),
            "expiresAt" => opt_time(c.expires_at_ms.map(ms_to_time)),
            "purposes" => plain_list(self.purpose_choices().iter(), field)?,
            "noticeId" => Value::String(c.notice_id.clone()),
            "noticeVersion" => Value::String(c.notice_version.clone()),
            "captureMethod" => InputType::to_value(&CaptureMethodGql::from(c.capture_method)),
            "jurisdiction" => Value::String(c.jurisdiction.clone()),
            "gpc" => Value::Boolean(c.gpc),
            "tcfString" => opt_str(p?.and_then(|p| p.tcf_string.as_deref())),
            "gppString" => opt_str(p?.and_then(|p| p.gpp_string.as_deref())),
            "evidence" => match p? {
                None => Value::Null,
                Some(p) => plain_object(&evidence(p), field)?,
            },
            "idempotencyKey" => opt_str(c.idempotency_key.as_deref()),
            "entryHash" => hash(self.entry_hash),
            "prevHash" => hash(e.prev_hash),
            "personalCommitment" => hash(c.personal_commitment),
            _ => return None,
        })
    }
}

/// The outcome of recording one event.
pub(crate) struct RecordResult {
    pub(crate) event: EventView,
    pub(crate) duplicate: bool,
}

/// The outcome of recording one event.
#[Object]
impl RecordResult {
    /// The stored event (the original one when `duplicate`).
    async fn event(&self) -> &EventView {
        &self.event
    }
    /// True when the idempotency key was seen before: nothing new was written.
    async fn duplicate(&self) -> bool {
        self.duplicate
    }
    /// A receipt that proves the event offline; computed only when selected (it may issue
    /// a checkpoint).
    async fn receipt(&self, ctx: &Context<'_>) -> Result<ReceiptView> {
        state(ctx)
            .receipt(self.event.entry.shard_id, self.event.entry.seq)
            .await
    }
}

impl PlainFields for RecordResult {
    fn plain_field(&self, field: &Positioned<Field>) -> Option<Value> {
        match field.node.name.node.as_str() {
            "event" => plain_object(&self.event, field),
            "duplicate" => Some(Value::Boolean(self.duplicate)),
            _ => None,
        }
    }
}

/// The evidence of a personal record, as an output object.
fn evidence(p: &PersonalRecord) -> Evidence {
    Evidence {
        ip_address: p.evidence.ip_address.clone(),
        user_agent: p.evidence.user_agent.clone(),
        page_url: p.evidence.page_url.clone(),
    }
}

/// One shard's head in a checkpoint.
#[derive(SimpleObject)]
#[graphql(name = "ShardHead")]
pub struct ShardHeadView {
    /// Shard id.
    pub shard_id: u32,
    /// Number of entries.
    pub size: UInt64,
    /// RFC 9162 root (blake3) over the entries.
    pub root: HashHex,
    /// Chain hash of the last entry.
    pub chain_head: HashHex,
}

impl From<&ShardHead> for ShardHeadView {
    fn from(h: &ShardHead) -> Self {
        ShardHeadView {
            shard_id: h.shard_id,
            size: UInt64(h.size),
            root: HashHex(h.root),
            chain_head: HashHex(h.chain_head),
        }
    }
}

/// A signed checkpoint.
#[derive(Clone)]
pub(crate) struct CheckpointView(pub(crate) Arc<Issued>);

/// A signed statement of every shard's head (a C2SP signed note; docs/receipts.md).
#[Object(name = "Checkpoint")]
impl CheckpointView {
    /// Checkpoint number, from 1, never reused.
    async fn number(&self) -> UInt64 {
        UInt64(self.0.checkpoint.number)
    }
    /// When it was issued.
    async fn time(&self) -> DateTime<Utc> {
        ms_to_time(self.0.checkpoint.time_ms)
    }
    /// Ledger name (origin line).
    async fn origin(&self) -> &str {
        &self.0.checkpoint.origin
    }
    /// Total entries over all shards.
    async fn total_size(&self) -> UInt64 {
        UInt64(self.0.checkpoint.total_size())
    }
    /// Root of the combined tree over the shard heads.
    async fn combined_root(&self) -> HashHex {
        HashHex(self.0.checkpoint.combined_root())
    }
    /// Every shard's head, by shard id.
    async fn shards(&self) -> Vec<ShardHeadView> {
        self.0
            .checkpoint
            .shards
            .iter()
            .map(ShardHeadView::from)
            .collect()
    }
    /// The signed note text, verifiable by any C2SP signed-note verifier.
    async fn note(&self) -> &str {
        &self.0.note
    }
}

/// A receipt: everything needed to verify one event offline.
pub(crate) struct ReceiptView {
    pub(crate) receipt: shard::receipt::Receipt,
    pub(crate) issued: Arc<Issued>,
}

/// Everything needed to verify one event offline (docs/receipts.md).
#[Object(name = "Receipt")]
impl ReceiptView {
    /// The event proven.
    async fn event_id(&self) -> ID {
        ID(self.receipt.event_id.clone())
    }
    /// The checkpoint the proof leads to.
    async fn checkpoint(&self) -> CheckpointView {
        CheckpointView(self.issued.clone())
    }
    /// The receipt as one JSON document: what `assent verify receipt` checks.
    async fn document(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(&self.receipt)?)
    }
}

/// The proof that one checkpoint extends another, shard by shard.
#[derive(SimpleObject)]
pub struct ShardConsistency {
    /// Shard id.
    pub shard_id: u32,
    /// Shard size in the older checkpoint.
    pub old_size: UInt64,
    /// Shard size in the newer checkpoint.
    pub new_size: UInt64,
    /// Root in the older checkpoint.
    pub old_root: HashHex,
    /// Root in the newer checkpoint.
    pub new_root: HashHex,
    /// RFC 9162 §2.1.4 consistency proof.
    pub path: Vec<HashHex>,
}

/// Proof that checkpoint `to` extends checkpoint `from`.
#[derive(SimpleObject)]
pub struct CheckpointConsistency {
    /// The older checkpoint.
    pub from: CheckpointView,
    /// The newer checkpoint.
    pub to: CheckpointView,
    /// One consistency proof per shard.
    pub shards: Vec<ShardConsistency>,
}

/// A key that signs checkpoints.
#[derive(SimpleObject)]
pub struct PublicKey {
    /// Key name (the ledger name).
    pub name: String,
    /// Signature algorithm: `ed25519`.
    pub algorithm: String,
    /// C2SP key id: first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key), hex.
    pub key_id: String,
    /// The 32-byte public key, base64.
    pub public_key: String,
    /// Verifier key in signed-note form: `name+keyid+base64(0x01 ‖ key)`.
    pub verifier_key: String,
}

impl PublicKey {
    pub(crate) fn of(name: &str, key: &ed25519_dalek::VerifyingKey) -> PublicKey {
        let id = key_id(name, key);
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut typed = vec![0x01u8];
        typed.extend_from_slice(key.as_bytes());
        PublicKey {
            name: name.to_string(),
            algorithm: "ed25519".into(),
            key_id: hex.clone(),
            public_key: B64.encode(key.as_bytes()),
            verifier_key: format!("{name}+{hex}+{}", B64.encode(typed)),
        }
    }
}

/// A purpose's current value for a subject.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct PurposeConsent {
    /// Purpose name.
    pub purpose: String,
    /// What holds now (or at `asOf`): GRANTED, DENIED, or EXPIRED for a grant whose
    /// `expiresAt` has passed. Read this, not `choice`, to decide whether to process.
    pub status: ConsentStatus,
    /// The choice recorded by the latest event (an expired grant is still GRANTED here).
    pub choice: ChoiceGql,
    /// When the choice lapses, if it does.
    pub expires_at: Option<DateTime<Utc>>,
    /// The event that set it; not loaded when the query does not select `event`.
    #[graphql(skip)]
    pub event: Option<EventView>,
}

#[async_graphql::ComplexObject]
impl PurposeConsent {
    /// The event that set it.
    async fn event(&self) -> Result<&EventView> {
        self.event.as_ref().ok_or_else(|| {
            crate::errors::err(
                crate::errors::Code::Internal,
                "the event of a purpose was not loaded",
            )
        })
    }
}

impl PlainFields for PurposeConsent {
    fn plain_field(&self, field: &Positioned<Field>) -> Option<Value> {
        match field.node.name.node.as_str() {
            "purpose" => Some(Value::String(self.purpose.clone())),
            "status" => Some(InputType::to_value(&self.status)),
            "choice" => Some(InputType::to_value(&self.choice)),
            "expiresAt" => Some(opt_time(self.expires_at)),
            "event" => plain_object(self.event.as_ref()?, field),
            _ => None,
        }
    }
}

/// A subject's consent, purpose by purpose.
#[derive(SimpleObject)]
pub struct ConsentState {
    /// Customer.
    pub customer_id: String,
    /// Subject.
    pub subject_id: String,
    /// The instant the state is for; null for "now".
    pub as_of: Option<DateTime<Utc>>,
    /// Each purpose ever recorded for the subject, with the event that last set it.
    pub purposes: PlainList<PurposeConsent>,
}

impl PlainFields for ConsentState {
    fn plain_field(&self, field: &Positioned<Field>) -> Option<Value> {
        match field.node.name.node.as_str() {
            "customerId" => Some(Value::String(self.customer_id.clone())),
            "subjectId" => Some(Value::String(self.subject_id.clone())),
            "asOf" => Some(opt_time(self.as_of)),
            "purposes" => plain_list(self.purposes.0.iter(), field),
            _ => None,
        }
    }
}

/// Granted and denied counts of one purpose on one UTC day.
#[derive(SimpleObject)]
pub struct DailyPurposeStats {
    /// UTC day, `YYYY-MM-DD` (of `recordedAt`).
    pub day: String,
    /// Purpose name.
    pub purpose: String,
    /// Events that granted the purpose that day.
    pub granted: UInt64,
    /// Events that denied the purpose that day.
    pub denied: UInt64,
}
