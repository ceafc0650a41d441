//! The ledger's data format: consent events, entries, personal records, their canonical
//! encodings and the limits that bound them. Pure: no I/O.

pub(crate) mod codec;
mod entry;
mod event;
pub mod limits;
mod validate;

#[cfg(test)]
mod tests;

pub use codec::DecodeError;
pub use entry::{
    ConsentRecord, ENTRY_FORMAT_VERSION, Entry, EntryBody, ErasureCause, ErasureRecord,
    KIND_CONSENT, KIND_ERASURE, PERSONAL_FORMAT_VERSION, event_id, parse_event_id, request_digest,
};
pub use event::{CaptureMethod, Choice, ConsentEvent, Evidence, PersonalRecord};
pub use validate::{InvalidEvent, validate_customer_id, validate_event, validate_purpose_name};
