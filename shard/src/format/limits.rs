//! Every size limit of a consent event, as named constants (documented in docs/design.md).
//!
//! The limits bound the work and storage one request can cause; the gateway reports a
//! breach as `BAD_USER_INPUT` before anything reaches a shard.

/// Events in one atomic batch (`recordConsents`).
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// Customer id: 1..=128 bytes of `[A-Za-z0-9_.-]`.
pub const MAX_CUSTOMER_ID_BYTES: usize = 128;
/// Subject id (the CMP's pseudonymous identifier of the end user): 1..=256 bytes.
pub const MAX_SUBJECT_ID_BYTES: usize = 256;
/// Purposes in one event.
pub const MAX_PURPOSES: usize = 64;
/// Purpose name: 1..=64 bytes of `[a-z0-9_.:-]`.
pub const MAX_PURPOSE_NAME_BYTES: usize = 64;
/// Notice id: 1..=128 bytes.
pub const MAX_NOTICE_ID_BYTES: usize = 128;
/// Notice version: 1..=64 bytes.
pub const MAX_NOTICE_VERSION_BYTES: usize = 64;
/// Jurisdiction (e.g. `EU`, `US-CA`): 1..=32 bytes.
pub const MAX_JURISDICTION_BYTES: usize = 32;
/// IAB TCF and GPP strings: at most 16 KiB each.
pub const MAX_CONSENT_STRING_BYTES: usize = 16 * 1024;
/// Evidence: IP address.
pub const MAX_IP_ADDRESS_BYTES: usize = 64;
/// Evidence: user agent.
pub const MAX_USER_AGENT_BYTES: usize = 1_024;
/// Evidence: page URL.
pub const MAX_PAGE_URL_BYTES: usize = 2_048;
/// Idempotency key: 1..=128 bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
/// Latest accepted instant (9999-12-31T23:59:59.999Z) in Unix milliseconds, so that every
/// stored time prints as RFC 3339.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// Erasure reason: at most 1,024 bytes (a ticket number or policy name, no personal data).
pub const MAX_ERASURE_REASON_BYTES: usize = 1_024;
/// Entries one erasure record names; a larger erasure writes several records in the same
/// transaction.
pub const MAX_ERASED_PER_ENTRY: usize = 100_000;
