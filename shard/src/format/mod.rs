//! The ledger's data format: consent events, entries, personal records, their canonical
//! encodings and the limits that bound them. Pure: no I/O.

pub(crate) mod codec;
mod entry;
mod event;
mod gpc;
pub mod limits;
mod validate;
mod view;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_support;

pub use codec::DecodeError;
pub use entry::{
    ConsentRecord, ENTRY_FORMAT_VERSION, Entry, EntryBody, ErasureCause, ErasureRecord, EventParts,
    KIND_CONSENT, KIND_ERASURE, PERSONAL_FORMAT_VERSION, event_id, parse_event_id, request_digest,
    stored_request_digest,
};
pub use event::{CaptureMethod, Choice, ConsentEvent, Evidence, PersonalRecord, Purposes};
pub use gpc::{
    GPC_OPT_OUT_JURISDICTIONS, GPC_SALE_PURPOSE, GPC_SHARING_PURPOSE, apply_gpc, gpc_opts_out,
};
pub use validate::{InvalidEvent, validate_customer_id, validate_event, validate_purpose_name};
pub use view::{BodyView, ConsentView, EntryView, ErasureView, HeaderView, PurposesView};
