//! Mutations: record and withdraw consent.

use async_graphql::{Context, ID, Object, Result};
use shard::engine::{Appended, Order, Personal};
use shard::format::limits::{MAX_BATCH_EVENTS, MAX_SUBJECT_ID_BYTES};
use shard::format::{
    CaptureMethod, Choice, ConsentEvent, Evidence, Purposes, validate_customer_id,
};

use super::plain::{Plain, PlainList};
use super::state;
use super::types::{ConsentEventInput, EventView, RecordResult};
use crate::errors::{Code, bad_input, err};

/// Consent writes: recording and withdrawing consent.
#[derive(Default)]
pub(crate) struct ConsentMutation;

/// Consent writes.
#[Object]
impl ConsentMutation {
    /// Records one consent event, durably, and returns it. Safe to retry with an
    /// idempotency key.
    async fn record_consent(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        event: ConsentEventInput,
    ) -> Result<Plain<RecordResult>> {
        // A `$event` variable decoded by the bulk path reaches async-graphql as a placeholder.
        let events = crate::bulk::events_for(ctx, "event").unwrap_or_else(|| vec![event]);
        if events.len() != 1 {
            return Err(bad_input("event: send exactly one event"));
        }
        let mut out = record(ctx, &customer_id, events).await?;
        Ok(Plain(out.remove(0)))
    }

    /// Records up to 1,000 events of one customer atomically: all of them or none.
    async fn record_consents(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        events: Vec<ConsentEventInput>,
    ) -> Result<PlainList<RecordResult>> {
        // A `$events` variable decoded by the bulk path reaches async-graphql as `[]`.
        let events = crate::bulk::events_for(ctx, "events").unwrap_or(events);
        if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
            return Err(bad_input(format!(
                "events: send between 1 and {MAX_BATCH_EVENTS} events"
            )));
        }
        Ok(PlainList(record(ctx, &customer_id, events).await?))
    }

    /// Withdraws consent: records one event with DENIED for the listed purposes, or for
    /// every purpose currently GRANTED when none are listed. `jurisdiction` defaults to
    /// that of the subject's latest event.
    #[allow(clippy::too_many_arguments)]
    async fn withdraw_consent(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        subject_id: String,
        purposes: Option<Vec<String>>,
        notice_id: String,
        notice_version: String,
        jurisdiction: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<Plain<RecordResult>> {
        check_customer(&customer_id)?;
        check_subject(&subject_id)?;
        let st = state(ctx);
        let shard = st.ledger.shard_for(&customer_id);
        if let Some(key) = &idempotency_key
            && let Some(prior) = shard
                .find_idempotent(customer_id.to_string(), key.clone())
                .await?
        {
            let same = prior
                .entry
                .consent()
                .is_some_and(|c| c.capture_method == CaptureMethod::Withdrawal)
                && prior
                    .personal
                    .as_ref()
                    .is_some_and(|p| p.record.subject_id == subject_id);
            if !same {
                return Err(err(
                    Code::IdempotencyConflict,
                    format!("idempotency key {key:?} was already used for a different event"),
                ));
            }
            return Ok(Plain(RecordResult {
                event: prior.into(),
                duplicate: true,
            }));
        }
        let names = match purposes {
            Some(list) if !list.is_empty() => list,
            _ => {
                let current = shard
                    .current_state(customer_id.to_string(), subject_id.clone())
                    .await?;
                current
                    .into_iter()
                    .filter(|s| s.choice == Choice::Granted)
                    .map(|s| s.purpose)
                    .collect()
            }
        };
        if names.is_empty() {
            return Err(bad_input(
                "nothing to withdraw: the subject has no purpose currently GRANTED",
            ));
        }
        let jurisdiction = match jurisdiction {
            Some(j) => j,
            None => {
                let last = shard
                    .history(
                        customer_id.to_string(),
                        subject_id.clone(),
                        Order::Descending,
                        None,
                        1,
                        Personal::Skip,
                    )
                    .await?;
                match last.items.first() {
                    Some(e) => e
                        .entry
                        .consent()
                        .map(|c| c.jurisdiction.clone())
                        .unwrap_or_default(),
                    None => {
                        return Err(bad_input(
                            "jurisdiction: the subject has no events; give a jurisdiction",
                        ));
                    }
                }
            }
        };
        let event = ConsentEvent {
            customer_id: customer_id.to_string(),
            subject_id,
            purposes: names.into_iter().map(|p| (p, Choice::Denied)).collect(),
            notice_id,
            notice_version,
            capture_method: CaptureMethod::Withdrawal,
            jurisdiction,
            gpc: false,
            tcf_string: None,
            gpp_string: None,
            evidence: Evidence::default(),
            occurred_at_ms: chrono::Utc::now().timestamp_millis(),
            expires_at_ms: None,
            idempotency_key,
        };
        let mut out = shard.append(vec![event]).await?;
        let st_metrics = &st.metrics;
        count_new(st_metrics, &out);
        let mut appended = out.remove(0);
        let personal = appended.personal.take();
        Ok(Plain(to_result(appended, personal)))
    }
}

pub(crate) fn check_customer(id: &str) -> Result<()> {
    validate_customer_id(id).map_err(|e| bad_input(e.to_string()))
}

pub(crate) fn check_subject(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_SUBJECT_ID_BYTES {
        return Err(bad_input(format!(
            "subjectId: must be 1-{MAX_SUBJECT_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

fn to_event(customer_id: &str, i: usize, e: ConsentEventInput) -> Result<ConsentEvent> {
    let mut purposes = Purposes::new();
    for p in e.purposes {
        // The name moves in; it comes back only for the error.
        if let Err(name) = purposes.try_insert(p.purpose, Choice::from(p.choice)) {
            return Err(bad_input(format!(
                "event {i}: purposes: {name:?} is listed twice"
            )));
        }
    }
    let ev = e.evidence.unwrap_or_default();
    Ok(ConsentEvent {
        customer_id: customer_id.to_string(),
        subject_id: e.subject_id,
        purposes,
        notice_id: e.notice_id,
        notice_version: e.notice_version,
        capture_method: e.capture_method.into(),
        jurisdiction: e.jurisdiction,
        gpc: e.gpc,
        tcf_string: e.tcf_string,
        gpp_string: e.gpp_string,
        evidence: Evidence {
            ip_address: ev.ip_address,
            user_agent: ev.user_agent,
            page_url: ev.page_url,
        },
        occurred_at_ms: e.occurred_at.timestamp_millis(),
        expires_at_ms: e.expires_at.map(|t| t.timestamp_millis()),
        idempotency_key: e.idempotency_key,
    })
}

async fn record(
    ctx: &Context<'_>,
    customer_id: &str,
    inputs: Vec<ConsentEventInput>,
) -> Result<Vec<RecordResult>> {
    check_customer(customer_id)?;
    let st = state(ctx);
    let lifetime_days = st.keys.default_consent_lifetime_days(customer_id);
    // Sized once: collecting `Result`s gives no size hint, and growing a vector of up to
    // 1,000 events by doubling copied them ten times (and faulted in fresh pages each time).
    let mut events: Vec<ConsentEvent> = Vec::with_capacity(inputs.len());
    for (i, e) in inputs.into_iter().enumerate() {
        let mut event = to_event(customer_id, i, e)?;
        complete(&mut event, lifetime_days).map_err(|e| bad_input(format!("event {i}: {e}")))?;
        events.push(event);
    }
    let shard = st.ledger.shard_for(customer_id);
    let appended = shard.append(events).await?;
    count_new(&st.metrics, &appended);
    let mut out = Vec::with_capacity(appended.len());
    for mut a in appended {
        let personal = if a.duplicate {
            // The original's personal record, not this request's.
            let stored = shard.event(a.entry.seq, Personal::Load).await?;
            stored.and_then(|s| s.personal).map(|p| p.record)
        } else {
            a.personal.take()
        };
        out.push(to_result(a, personal));
    }
    Ok(out)
}

/// What the server adds to a submitted event: the customer's default consent lifetime when
/// the event has no `expiresAt`, and the sale/sharing opt-out a GPC signal means under a
/// CCPA-type jurisdiction (`shard::format::apply_gpc`).
fn complete(
    event: &mut ConsentEvent,
    lifetime_days: Option<u32>,
) -> Result<(), shard::format::InvalidEvent> {
    if event.expires_at_ms.is_none()
        && let Some(days) = lifetime_days
    {
        let expires = event
            .occurred_at_ms
            .saturating_add(i64::from(days) * 86_400_000)
            .min(shard::format::limits::MAX_TIME_MS);
        event.expires_at_ms = Some(expires);
    }
    shard::format::apply_gpc(event)
}

/// Counts the new events of one append (all in one shard: one customer's) with one label
/// lookup, not one per event.
fn count_new(metrics: &crate::metrics::Metrics, appended: &[Appended]) {
    let new = appended.iter().filter(|a| !a.duplicate).count() as u64;
    if let Some(first) = appended.first()
        && new > 0
    {
        metrics
            .events_appended
            .with_label_values(&[&first.entry.shard_id.to_string()])
            .inc_by(new);
    }
}

fn to_result(a: Appended, personal: Option<shard::format::PersonalRecord>) -> RecordResult {
    RecordResult {
        event: EventView {
            entry: a.entry,
            entry_hash: a.entry_hash,
            personal,
            personal_loaded: true,
        },
        duplicate: a.duplicate,
    }
}
