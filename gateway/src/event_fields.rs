//! An event's fields as the API shows them (`ConsentEvent`), computed from its entry and
//! personal record alone, with no server. Two users: the subject access export
//! (`subjectExport`), whose events are these fields, and `assent verify export`, which checks
//! that every field of an exported event is what the event's receipt proves. The GraphQL
//! resolvers of `ConsentEvent` and this function must agree: the export tests verify real
//! `assent export` output, which the resolvers render, against it (`tests/verify.rs`).

use serde_json::{Map, Value, json};
use shard::format::{Entry, PersonalRecord};
use shard::hash::Hash;

use crate::ids::event_id;
use crate::schema::types::{CaptureMethodGql, ChoiceGql, ms_to_time};

/// Fields whose values are instants (RFC 3339 text). The API prints them with an offset
/// (`+00:00`) and as many fraction digits as needed, the access export with milliseconds and
/// `Z`: compare them as instants.
pub const TIME_FIELDS: [&str; 3] = ["recordedAt", "occurredAt", "expiresAt"];

/// Every field of `ConsentEvent` that the entry and its personal record fix, by its GraphQL
/// name and in its GraphQL JSON form (instants as RFC 3339 with milliseconds and `Z`).
/// Personal fields are null when `personal` is `None` (erased); consent fields are null for
/// an entry of another kind.
pub fn proven_fields(
    entry: &Entry,
    entry_hash: &Hash,
    personal: Option<&PersonalRecord>,
) -> Map<String, Value> {
    let c = entry.consent();
    let p = personal;
    let fields = json!({
        "id": event_id(entry.shard_id, entry.seq),
        "customerId": entry.customer_id,
        "subjectId": p.map(|p| &p.subject_id),
        "shard": entry.shard_id,
        "sequence": entry.seq.to_string(),
        "recordedAt": rfc3339(entry.recorded_at_ms),
        "occurredAt": c.map(|c| rfc3339(c.occurred_at_ms)),
        "expiresAt": c.and_then(|c| c.expires_at_ms.map(rfc3339)),
        "purposes": c.map(|c| c.purposes.iter().map(|(n, ch)| json!({
            "purpose": n, "choice": gql_name(ChoiceGql::from(*ch)),
        })).collect::<Vec<_>>()),
        "noticeId": c.map(|c| &c.notice_id),
        "noticeVersion": c.map(|c| &c.notice_version),
        "captureMethod": c.map(|c| gql_name(CaptureMethodGql::from(c.capture_method))),
        "jurisdiction": c.map(|c| &c.jurisdiction),
        "gpc": c.map(|c| c.gpc),
        "tcfString": p.and_then(|p| p.tcf_string.as_ref()),
        "gppString": p.and_then(|p| p.gpp_string.as_ref()),
        "evidence": p.map(|p| json!({
            "ipAddress": p.evidence.ip_address,
            "userAgent": p.evidence.user_agent,
            "pageUrl": p.evidence.page_url,
        })),
        "idempotencyKey": c.and_then(|c| c.idempotency_key.as_ref()),
        "entryHash": entry_hash.to_hex(),
        "prevHash": entry.prev_hash.to_hex(),
        "personalCommitment": c.map(|c| c.personal_commitment.to_hex()),
    });
    match fields {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// An instant as the access export prints it: RFC 3339 in UTC with milliseconds and `Z`.
pub(crate) fn rfc3339(ms: i64) -> String {
    ms_to_time(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A GraphQL enum value as JSON: its name in the schema, from the one definition.
pub(crate) fn gql_name<T: async_graphql::InputType>(v: T) -> Value {
    serde_json::to_value(v.to_value()).unwrap_or_default()
}

/// One purpose of a subject's current state as the access export prints it (without its
/// `status`, which depends on the instant it is asked at): what the exported events imply.
pub fn state_fields(s: &shard::engine::PurposeState, shard_id: u32) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("purpose".into(), json!(s.purpose));
    m.insert("choice".into(), gql_name(ChoiceGql::from(s.choice)));
    m.insert("expiresAt".into(), json!(s.expires_at_ms.map(rfc3339)));
    m.insert("eventId".into(), json!(event_id(shard_id, s.seq)));
    m
}
