//! Privacy operations: erasure, subject access export, renewal lists, retention, scrub.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Object, Result, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use shard::engine::{
    ErasureRequest, ErasureTarget, ExpiryCursor, Personal, StoredEvent, apply_to_state,
};

use super::mutation::{check_customer, check_subject};
use super::query::page_size;
use super::scalars::UInt64;
use super::types::{EventView, ReceiptView, ms_to_time};
use super::{AppState, state};
use crate::errors::{Code, bad_input, err};
use crate::event_fields::{gql_name, proven_fields, rfc3339, state_fields};
use crate::ids::event_id;

/// Most events `subjectExport` puts in one document; a subject with more is exported
/// with `assent export` (streamed).
pub const MAX_EXPORT_EVENTS: usize = 10_000;

/// Erasure, retention and scrub.
#[derive(Default)]
pub(crate) struct PrivacyMutation;

/// Subject access and renewal lists.
#[derive(Default)]
pub(crate) struct PrivacyQuery;

/// The outcome of an erasure.
#[derive(SimpleObject)]
pub(crate) struct ErasureResult {
    /// API ids of the erasure entries written to the ledger (one per 100,000 erased events).
    erasure_event_ids: Vec<ID>,
    /// Consent events whose personal record was deleted.
    erased_events: UInt64,
    /// When the erasure was committed.
    recorded_at: DateTime<Utc>,
    /// A receipt for each erasure entry: the proof, for a regulator, that the erasure is
    /// in the ledger (verify with `assent verify receipt`).
    receipts: Vec<ReceiptView>,
}

/// What a retention run erased for one customer.
#[derive(SimpleObject)]
pub(crate) struct RetentionResult {
    /// The customer.
    customer_id: ID,
    /// Personal records of events recorded before this instant were erased.
    cutoff: DateTime<Utc>,
    /// Consent events whose personal record was deleted.
    erased_events: UInt64,
    /// API ids of the erasure entries written.
    erasure_event_ids: Vec<ID>,
}

/// What a storage scrub did to one shard file.
#[derive(SimpleObject)]
pub(crate) struct ScrubResult {
    /// Shard id.
    shard: u32,
    /// File size before, in bytes.
    bytes_before: UInt64,
    /// File size after, in bytes.
    bytes_after: UInt64,
    /// Rows copied into the rewritten file.
    rows: UInt64,
    /// How long the scrub took, from the start of its copy to the swap, in milliseconds.
    took_ms: UInt64,
    /// How long the shard's writes waited for the scrub (its hand-over), in milliseconds.
    paused_ms: UInt64,
}

/// A GRANTED purpose that lapses: a subject due for renewal.
#[derive(SimpleObject)]
pub(crate) struct ExpiringConsent {
    /// The subject to ask again.
    subject_id: String,
    /// The purpose granted.
    purpose: String,
    /// When the grant lapses.
    expires_at: DateTime<Utc>,
    /// Whether it has lapsed already.
    expired: bool,
    /// The event that granted it.
    event: EventView,
}

/// A subject access export (GDPR Art. 15).
#[derive(SimpleObject)]
pub(crate) struct SubjectExport {
    /// Events in the document.
    events: UInt64,
    /// The export as one JSON document (layout in docs/receipts.md, "Subject export"):
    /// every event of the subject with its personal record and a receipt.
    document: String,
}

#[Object]
impl PrivacyMutation {
    /// Erases a subject (GDPR Art. 17, CCPA deletion): deletes the personal records (subject
    /// id, evidence, TCF/GPP strings) and salts of every event of the subject, its history
    /// and current state, and marks its idempotency keys used. The ledger entries, their
    /// hashes and every receipt stay valid; the erasure itself is recorded as a ledger
    /// entry (which entries, when, `reason`; no personal data). `reason` (≤ 1,024 bytes)
    /// must not contain personal data: a ticket number or policy name. NOT_FOUND when
    /// nothing of the subject is stored. The erased bytes may stay in freed pages of the
    /// shard file until it is rewritten: within `--scrub-interval-ms` (on a large shard,
    /// within 100 times its last rewrite's duration), or `scrubStorage`.
    async fn erase_subject(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        subject_id: String,
        reason: String,
    ) -> Result<ErasureResult> {
        check_customer(&customer_id)?;
        check_subject(&subject_id)?;
        let st = state(ctx);
        let shard = st.ledger.shard_for(&customer_id);
        let erased = shard
            .erase(ErasureRequest {
                customer_id: customer_id.to_string(),
                target: ErasureTarget::Subject(subject_id),
                reason,
            })
            .await?;
        let mut receipts = Vec::with_capacity(erased.entries.len());
        for a in &erased.entries {
            receipts.push(st.receipt(a.entry.shard_id, a.entry.seq).await?);
        }
        let last = erased.entries.last().expect("an erasure writes an entry");
        Ok(ErasureResult {
            erasure_event_ids: ids(erased
                .entries
                .iter()
                .map(|a| (a.entry.shard_id, a.entry.seq))),
            erased_events: UInt64(erased.erased_events),
            recorded_at: ms_to_time(last.entry.recorded_at_ms),
            receipts,
        })
    }

    /// Applies the retention period of `customerId` (or of every customer that has one):
    /// erases, as `eraseSubject` does, the personal records of events recorded longer ago
    /// than the period, counted back from `asOf` (default: now; a later instant erases what
    /// will have expired by then, e.g. before a planned export). Admin only; `assent
    /// retention apply` calls it. Every customer is tried: if one's shard fails, the error
    /// names it and lists the customers done meanwhile.
    async fn apply_retention(
        &self,
        ctx: &Context<'_>,
        customer_id: Option<ID>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Vec<RetentionResult>> {
        let st = state(ctx);
        if let Some(c) = &customer_id {
            check_customer(c)?;
            match st.keys.customer(c) {
                None => return Err(err(Code::NotFound, "no such customer")),
                Some(rec) if rec.retention_days.is_none() => {
                    return Err(bad_input(
                        "the customer has no retention period; set retentionDays with updateCustomer",
                    ));
                }
                Some(_) => {}
            }
        }
        let now_ms = as_of.unwrap_or_else(Utc::now).timestamp_millis();
        let done = crate::privacy::apply_retention(
            &st.ledger,
            &st.keys,
            customer_id.as_ref().map(|c| c.as_str()),
            now_ms,
        )
        .await
        .into_result("retention", |o| format!("customer {}", o.customer_id))?;
        Ok(done
            .into_iter()
            .map(|o| RetentionResult {
                customer_id: ID(o.customer_id),
                cutoff: ms_to_time(o.cutoff_ms),
                erased_events: UInt64(o.erased_events),
                erasure_event_ids: ids(o.erasure_ids.into_iter()),
            })
            .collect())
    }

    /// Rewrites every shard file that has had an erasure since its last rewrite (every
    /// file with `force`), so no erased byte remains on disk; returns when done. The server
    /// also does this every `--scrub-interval-ms` (spacing a large shard's rewrites to at
    /// most 1 % of the time); this runs at once. Admin only. Writes to a shard go on while
    /// its files are copied and wait only for the hand-over of the last entries
    /// (milliseconds); a subject erased during the copy leaves the file marked for the
    /// next scrub. Every shard is tried: if one fails (`STORAGE_FAILED`,
    /// `INSUFFICIENT_STORAGE`), the error names it and lists the shards scrubbed meanwhile.
    async fn scrub_storage(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] force: bool,
    ) -> Result<Vec<ScrubResult>> {
        let done = crate::privacy::scrub_all(&state(ctx).ledger, force, false)
            .await
            .into_result("scrub", |(shard, _)| format!("shard {shard}"))?;
        Ok(done
            .into_iter()
            .map(|(shard, r)| ScrubResult {
                shard,
                bytes_before: UInt64(r.bytes_before),
                bytes_after: UInt64(r.bytes_after),
                rows: UInt64(r.rows),
                took_ms: UInt64(r.took_ms),
                paused_ms: UInt64(r.paused_ms),
            })
            .collect())
    }
}

#[Object]
impl PrivacyQuery {
    /// Every event of a subject with its personal record and a receipt, as one JSON
    /// document: the answer to an access request (GDPR Art. 15). At most 10,000 events
    /// (`MAX_EXPORT_EVENTS`); beyond that use `assent export`.
    async fn subject_export(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        subject_id: String,
    ) -> Result<SubjectExport> {
        check_customer(&customer_id)?;
        check_subject(&subject_id)?;
        let st = state(ctx);
        let events = subject_events(st, &customer_id, &subject_id).await?;
        if events.is_empty() {
            return Err(err(
                Code::NotFound,
                "no event of this subject is stored (never recorded, or erased)",
            ));
        }
        let mut items = Vec::with_capacity(events.len());
        for e in &events {
            let receipt = st.receipt(e.entry.shard_id, e.entry.seq).await?;
            items.push(serde_json::json!({
                "event": event_json(e),
                "receipt": receipt.receipt,
            }));
        }
        // The state the exported events imply, by the one rule the index uses.
        let mut states = Vec::new();
        for e in &events {
            apply_to_state(&mut states, &e.entry);
        }
        let now = Utc::now();
        let shard_id = events[0].entry.shard_id;
        let current: Vec<_> = states
            .iter()
            .map(|s| {
                let mut m = state_fields(s, shard_id);
                let status = super::query::status_at(s, now.timestamp_millis());
                m.insert("status".into(), gql_name(status));
                serde_json::Value::Object(m)
            })
            .collect();
        let doc = serde_json::json!({
            "version": 1,
            "customerId": customer_id.to_string(),
            "subjectId": subject_id,
            "exportedAt": rfc3339(now.timestamp_millis()),
            "currentState": current,
            "events": items,
        });
        Ok(SubjectExport {
            events: UInt64(events.len() as u64),
            document: serde_json::to_string_pretty(&doc)?,
        })
    }

    /// GRANTED purposes that lapse before `before` (already lapsed ones included), soonest
    /// first: the subjects to ask for renewal (Relay connection).
    async fn expiring_consents(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        before: DateTime<Utc>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, ExpiringConsent>> {
        check_customer(&customer_id)?;
        let limit = page_size(first)?;
        let cursor = match &after {
            None => None,
            Some(c) => Some(
                parse_expiry_cursor(c)
                    .ok_or_else(|| bad_input("after: not a cursor of this list"))?,
            ),
        };
        let shard = state(ctx).ledger.shard_for(&customer_id);
        let (rows, more) = shard
            .expiring(
                customer_id.to_string(),
                before.timestamp_millis(),
                cursor,
                limit,
            )
            .await?;
        let now_ms = Utc::now().timestamp_millis();
        let mut conn = Connection::new(after.is_some(), more);
        for row in rows {
            let Some(subject_id) = row
                .event
                .personal
                .as_ref()
                .map(|p| p.record.subject_id.clone())
            else {
                continue; // erased between the index read and the event read: not due
            };
            let at = row.cursor.expires_at_ms;
            conn.edges.push(Edge::new(
                expiry_cursor(&row.cursor),
                ExpiringConsent {
                    subject_id,
                    purpose: row.state.purpose.clone(),
                    expires_at: ms_to_time(at),
                    expired: at <= now_ms,
                    event: row.event.into(),
                },
            ));
        }
        Ok(conn)
    }
}

fn ids(list: impl Iterator<Item = (u32, u64)>) -> Vec<ID> {
    list.map(|(s, q)| ID(event_id(s, q))).collect()
}

/// Every stored event of a subject, oldest first, at most `MAX_EXPORT_EVENTS`.
async fn subject_events(
    st: &AppState,
    customer_id: &str,
    subject_id: &str,
) -> Result<Vec<StoredEvent>> {
    let mut out = Vec::new();
    st.ledger
        .shard_for(customer_id)
        .walk_history(customer_id, subject_id, Personal::Load, |e| {
            out.push(e);
            out.len() <= MAX_EXPORT_EVENTS
        })
        .await?;
    if out.len() > MAX_EXPORT_EVENTS {
        return Err(bad_input(format!(
            "the subject has more than {MAX_EXPORT_EVENTS} events; export it with `assent export`"
        )));
    }
    Ok(out)
}

/// The fields of an event in a subject's access export (a subset of what its receipt proves).
pub(crate) fn event_json(e: &StoredEvent) -> serde_json::Value {
    const EXPORTED: [&str; 15] = [
        "id",
        "customerId",
        "subjectId",
        "recordedAt",
        "occurredAt",
        "expiresAt",
        "purposes",
        "noticeId",
        "noticeVersion",
        "jurisdiction",
        "gpc",
        "tcfString",
        "gppString",
        "evidence",
        "entryHash",
    ];
    let mut all = proven_fields(
        &e.entry,
        &e.entry_hash,
        e.personal.as_ref().map(|p| &p.record),
    );
    let kept: serde_json::Map<_, _> = EXPORTED
        .iter()
        .filter_map(|k| all.remove_entry(*k))
        .collect();
    serde_json::Value::Object(kept)
}

fn expiry_cursor(c: &ExpiryCursor) -> String {
    B64.encode(format!("x:{}:{}:{}", c.expires_at_ms, c.seq, c.purpose))
}

fn parse_expiry_cursor(s: &str) -> Option<ExpiryCursor> {
    let text = String::from_utf8(B64.decode(s).ok()?).ok()?;
    let mut parts = text.strip_prefix("x:")?.splitn(3, ':');
    let expires_at_ms = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let purpose = parts.next()?.to_string();
    Some(ExpiryCursor {
        expires_at_ms,
        seq,
        purpose,
    })
}
