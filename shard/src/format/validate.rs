//! Checks a submitted event against the limits before it can reach the journal.

use super::event::ConsentEvent;
use super::limits::*;

/// Why an event was refused. The message names the field and the rule, so the caller
/// can fix the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct InvalidEvent {
    /// The offending field, as named in the API.
    pub field: &'static str,
    /// The rule it broke, in words.
    pub rule: String,
}

fn invalid(field: &'static str, rule: impl Into<String>) -> InvalidEvent {
    InvalidEvent {
        field,
        rule: rule.into(),
    }
}

fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), InvalidEvent> {
    if s.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    check_max(field, s, max)
}

fn check_max(field: &'static str, s: &str, max: usize) -> Result<(), InvalidEvent> {
    if s.len() > max {
        return Err(invalid(
            field,
            format!("is {} bytes; the limit is {max}", s.len()),
        ));
    }
    Ok(())
}

fn check_opt(field: &'static str, s: Option<&str>, max: usize) -> Result<(), InvalidEvent> {
    s.map_or(Ok(()), |s| check_max(field, s, max))
}

fn check_time(field: &'static str, ms: i64) -> Result<(), InvalidEvent> {
    if !(0..=MAX_TIME_MS).contains(&ms) {
        return Err(invalid(
            field,
            "must lie between 1970-01-01 and 9999-12-31 (UTC)",
        ));
    }
    Ok(())
}

/// Whether `id` is a valid customer id: 1..=128 bytes of `[A-Za-z0-9_.-]`.
pub fn validate_customer_id(id: &str) -> Result<(), InvalidEvent> {
    check_len("customerId", id, MAX_CUSTOMER_ID_BYTES)?;
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(invalid("customerId", "may contain only A-Z a-z 0-9 _ . -"));
    }
    Ok(())
}

/// Whether `name` is a valid purpose name: 1..=64 bytes of `[a-z0-9_.:-]`.
pub fn validate_purpose_name(name: &str) -> Result<(), InvalidEvent> {
    check_len("purposes", name, MAX_PURPOSE_NAME_BYTES)?;
    if !name.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b':' | b'-')
    }) {
        return Err(invalid(
            "purposes",
            format!("purpose name {name:?} may contain only a-z 0-9 _ . : -"),
        ));
    }
    Ok(())
}

/// Checks every field of `event` against the limits in [`super::limits`].
pub fn validate_event(event: &ConsentEvent) -> Result<(), InvalidEvent> {
    validate_customer_id(&event.customer_id)?;
    check_len("subjectId", &event.subject_id, MAX_SUBJECT_ID_BYTES)?;
    if event.purposes.is_empty() {
        return Err(invalid("purposes", "at least one purpose is required"));
    }
    if event.purposes.len() > MAX_PURPOSES {
        return Err(invalid(
            "purposes",
            format!(
                "{} purposes; the limit is {MAX_PURPOSES}",
                event.purposes.len()
            ),
        ));
    }
    event
        .purposes
        .iter()
        .try_for_each(|(p, _)| validate_purpose_name(p))?;
    check_len("noticeId", &event.notice_id, MAX_NOTICE_ID_BYTES)?;
    check_len(
        "noticeVersion",
        &event.notice_version,
        MAX_NOTICE_VERSION_BYTES,
    )?;
    check_len("jurisdiction", &event.jurisdiction, MAX_JURISDICTION_BYTES)?;
    super::gpc::check_gpc(event)?;
    check_opt(
        "tcfString",
        event.tcf_string.as_deref(),
        MAX_CONSENT_STRING_BYTES,
    )?;
    check_opt(
        "gppString",
        event.gpp_string.as_deref(),
        MAX_CONSENT_STRING_BYTES,
    )?;
    let ev = &event.evidence;
    check_opt(
        "evidence.ipAddress",
        ev.ip_address.as_deref(),
        MAX_IP_ADDRESS_BYTES,
    )?;
    check_opt(
        "evidence.userAgent",
        ev.user_agent.as_deref(),
        MAX_USER_AGENT_BYTES,
    )?;
    check_opt(
        "evidence.pageUrl",
        ev.page_url.as_deref(),
        MAX_PAGE_URL_BYTES,
    )?;
    if let Some(key) = &event.idempotency_key {
        check_len("idempotencyKey", key, MAX_IDEMPOTENCY_KEY_BYTES)?;
    }
    check_time("occurredAt", event.occurred_at_ms)?;
    if let Some(expires) = event.expires_at_ms {
        check_time("expiresAt", expires)?;
        if expires <= event.occurred_at_ms {
            return Err(invalid("expiresAt", "must be later than occurredAt"));
        }
    }
    Ok(())
}
