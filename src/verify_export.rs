//! `assent verify export`: every event of an export checked against its own receipt,
//! offline. An export is either the JSON lines of `assent export --receipts` (read one line
//! at a time: memory does not grow with the export) or a subject's access export (the JSON
//! document of `subjectExport`). For each event: its receipt verifies (as `assent verify
//! receipt` checks one, the signature once per distinct checkpoint), every field the export
//! shows is what the receipt proves (`gateway::event_fields`), and a shard's events come in
//! journal order, each once. An access export's customer, subject and current state must
//! also be what its events say. What no receipt can show: that an export leaves nothing out.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, Read};

use gateway::event_fields::{TIME_FIELDS, proven_fields, state_fields};
use serde_json::{Map, Value, json};
use shard::engine::{PurposeState, apply_to_state};
use shard::receipt::{Receipt, ReceiptSummary, verify_receipt};

use crate::verify_cmd::{
    KeyArgs, Outcome, Refusal, Trusted, invalid, open_lines, open_with, signer_text, trusted,
    unusable,
};

/// Distinct checkpoint notes whose signature check is remembered; past this the memory is
/// emptied and refills (an export normally cites one or a few checkpoints).
pub const MAX_REMEMBERED_CHECKPOINTS: usize = 1_024;

/// Customers named in the report; an export is one customer's, and memory stays bounded
/// for a file that joins many (the rest are counted).
pub const MAX_NAMED_CUSTOMERS: usize = 16;

/// What the events checked so far add up to.
#[derive(Default)]
struct Tally {
    /// The pinned signers (empty: only the mathematics is checked).
    trusted: Vec<Trusted>,
    /// Checkpoint note → the key id that signed it (None: no key pinned).
    signers: HashMap<String, Option<String>>,
    /// Shard → the last sequence number seen on it: journal order, each event once.
    last_seq: HashMap<u32, u64>,
    /// Events verified.
    events: u64,
    /// Of them, events whose receipt carries no personal record (erased).
    erased: u64,
    /// The customers of the events, up to `MAX_NAMED_CUSTOMERS`.
    customers: BTreeSet<String>,
    /// Events of customers beyond `MAX_NAMED_CUSTOMERS` names (0 for an ordinary export).
    other_customers_events: u64,
    /// Key ids that signed the checkpoints, for the report.
    signer_ids: BTreeSet<String>,
    /// Ledger name of the last checkpoint seen.
    origin: String,
    /// Lowest and highest checkpoint number cited.
    checkpoints: Option<(u64, u64)>,
}

/// `assent verify export`.
pub fn export(file: &str, keys: &KeyArgs) -> Outcome {
    let trusted = match trusted(keys) {
        Ok(t) => t,
        Err(e) => return Outcome::Unusable(e),
    };
    let mut tally = Tally {
        trusted,
        ..Tally::default()
    };
    let input = match open_lines(file) {
        Ok(input) => input,
        Err(refusal) => return *refusal,
    };
    match read_export(input, &mut tally) {
        Ok(()) if tally.events == 0 => Outcome::Unusable("the export holds no events".into()),
        Ok(()) => tally.valid(),
        Err(refusal) => *refusal,
    }
}

/// Reads JSON lines, or (when the first line is not a whole JSON value) one access-export
/// document, and checks every event in it.
fn read_export(mut input: Box<dyn BufRead>, tally: &mut Tally) -> Result<(), Refusal> {
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = input
            .read_line(&mut line)
            .map_err(|e| unusable(format!("reading the export: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        // The first value decides: an access-export document (one JSON value, perhaps over
        // many lines), or an export line.
        let first = tally.events == 0;
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(mut event)) if !(first && event.contains_key("events")) => {
                let receipt = event.remove("receipt").ok_or_else(|| {
                    unusable(format!(
                        "line {number} has no receipt: export with `assent export --receipts`"
                    ))
                })?;
                tally.event(&format!("line {number}"), &event, receipt)?;
            }
            Ok(Value::Object(_)) | Err(_) if first => {
                input
                    .read_to_string(&mut line)
                    .map_err(|e| unusable(format!("reading the export: {e}")))?;
                let doc = serde_json::from_str(&line).map_err(|e| {
                    unusable(format!("neither JSON lines nor one JSON document: {e}"))
                })?;
                return subject_document(doc, tally);
            }
            Ok(_) => return Err(unusable(format!("line {number} is not a JSON object"))),
            Err(e) => return Err(unusable(format!("line {number} is not JSON: {e}"))),
        }
    }
}

/// Checks a subject's access export: its events, and that its customer, subject and
/// current state are what those events say.
fn subject_document(mut doc: Value, tally: &mut Tally) -> Result<(), Refusal> {
    let Value::Array(items) = doc["events"].take() else {
        return Err(unusable(
            "not an export: no `events` list (give `assent export --receipts` output or a \
             `subjectExport` document)"
                .into(),
        ));
    };
    let mut states: Vec<PurposeState> = Vec::new();
    let mut shard_id = 0;
    for (i, mut item) in items.into_iter().enumerate() {
        let at = format!("events[{i}]");
        let event = match item["event"].take() {
            Value::Object(event) => event,
            _ => Map::new(),
        };
        let summary = tally.event(&at, &event, item["receipt"].take())?;
        for (field, claimed) in [
            ("customerId", &doc["customerId"]),
            ("subjectId", &doc["subjectId"]),
        ] {
            if event.get(field) != Some(claimed) {
                return Err(invalid(
                    "subject",
                    format!("{at}: its {field} is not the document's {claimed}"),
                ));
            }
        }
        apply_to_state(&mut states, &summary.entry);
        shard_id = summary.entry.shard_id;
    }
    check_current_state(&doc["currentState"], &states, shard_id)
}

/// The document's `currentState` (without `status`) must be what its events imply.
fn check_current_state(
    claimed: &Value,
    states: &[PurposeState],
    shard_id: u32,
) -> Result<(), Refusal> {
    let claimed_list = claimed.as_array().map_or(&[][..], Vec::as_slice);
    let implied: Vec<Map<String, Value>> =
        states.iter().map(|s| state_fields(s, shard_id)).collect();
    let same = claimed_list.len() == implied.len()
        && claimed_list.iter().zip(&implied).all(|(c, i)| {
            i.iter()
                .all(|(k, v)| same_value(k, c.get(k).unwrap_or(&Value::Null), v))
        });
    if same {
        Ok(())
    } else {
        Err(invalid(
            "current-state",
            format!(
                "the document's currentState is {claimed}, but its events imply {}",
                json!(implied)
            ),
        ))
    }
}

impl Tally {
    /// Checks one exported event against its receipt; returns what the receipt proves.
    fn event(
        &mut self,
        at: &str,
        event: &Map<String, Value>,
        receipt: Value,
    ) -> Result<ReceiptSummary, Refusal> {
        let id = event.get("id").and_then(Value::as_str).unwrap_or("?");
        let at = format!("{at} (event {id})");
        let receipt: Receipt = serde_json::from_value(receipt)
            .map_err(|e| invalid("format", format!("{at}: its receipt is not a receipt: {e}")))?;
        let summary =
            verify_receipt(&receipt, None).map_err(|e| invalid(e.step(), format!("{at}: {e}")))?;
        self.signature(&at, &receipt.checkpoint)?;
        check_fields(&at, event, &summary)?;
        self.in_order(&at, &summary)?;
        self.events += 1;
        self.erased += u64::from(summary.personal.is_none());
        let customer = &summary.entry.customer_id;
        if !self.customers.contains(customer) {
            if self.customers.len() < MAX_NAMED_CUSTOMERS {
                self.customers.insert(customer.clone());
            } else {
                self.other_customers_events += 1;
            }
        }
        self.origin.clone_from(&summary.origin);
        let n = summary.checkpoint_number;
        self.checkpoints = Some(match self.checkpoints {
            None => (n, n),
            Some((lo, hi)) => (lo.min(n), hi.max(n)),
        });
        Ok(summary)
    }

    /// The checkpoint's signature, checked once per distinct note.
    fn signature(&mut self, at: &str, note: &str) -> Result<(), Refusal> {
        if !self.signers.contains_key(note) {
            let signer = open_with(note, &self.trusted)
                .map_err(|e| invalid(e.step(), format!("{at}: {e}")))?
                .1;
            if self.signers.len() >= MAX_REMEMBERED_CHECKPOINTS {
                self.signers.clear();
            }
            self.signer_ids.extend(signer.clone());
            self.signers.insert(note.to_string(), signer);
        }
        Ok(())
    }

    /// Each shard's events in journal order, each once.
    fn in_order(&mut self, at: &str, summary: &ReceiptSummary) -> Result<(), Refusal> {
        let (shard, seq) = (summary.entry.shard_id, summary.entry.seq);
        match self.last_seq.insert(shard, seq) {
            Some(last) if last >= seq => Err(invalid(
                "order",
                format!(
                    "{at}: entry {seq} of shard {shard} comes after entry {last}: an export lists \
                     each event once, in journal order"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The report of an export whose every event verified.
    fn valid(self) -> Outcome {
        let (first, last) = self.checkpoints.unwrap_or_default();
        let join = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
        let signer = match self.signer_ids.len() {
            0 => signer_text(&None),
            _ => format!("signed by key {}", join(&self.signer_ids)),
        };
        let mut customers = join(&self.customers);
        if self.other_customers_events > 0 {
            let n = self.other_customers_events;
            customers.push_str(&format!(" and {n} events of other customers"));
        }
        Outcome::Valid {
            summary: format!(
                "{} events of customer {customers} ({} with personal data erased), each as its \
                 receipt proves, in checkpoints {first}–{last} of {}, {signer}: VALID",
                self.events, self.erased, self.origin,
            ),
            details: json!({
                "events": self.events, "erased": self.erased, "customers": self.customers,
                "otherCustomersEvents": self.other_customers_events,
                "checkpoints": { "first": first, "last": last }, "origin": self.origin,
                "signerKeyIds": self.signer_ids,
            }),
        }
    }
}

/// Every field the export shows must be one a receipt proves, with the proven value.
fn check_fields(
    at: &str,
    event: &Map<String, Value>,
    summary: &ReceiptSummary,
) -> Result<(), Refusal> {
    if !event.contains_key("id") {
        return Err(invalid(
            "fields",
            format!("{at}: the exported event has no id"),
        ));
    }
    let proven = proven_fields(
        &summary.entry,
        &summary.entry_hash,
        summary.personal.as_ref(),
    );
    // The id first: a receipt of another event is best named as such.
    let id = event.get_key_value("id").into_iter();
    for (field, shown) in id.chain(event.iter().filter(|(k, _)| *k != "id")) {
        let Some(expected) = proven.get(field) else {
            return Err(invalid(
                "fields",
                format!("{at}: `{field}` is not a field a receipt proves"),
            ));
        };
        if !same_value(field, shown, expected) {
            return Err(invalid(
                "fields",
                format!(
                    "{at}: `{field}` is {shown} in the export, but its receipt proves {expected}"
                ),
            ));
        }
    }
    Ok(())
}

/// Equal values; instants (`TIME_FIELDS`) compared as instants, whatever their notation.
fn same_value(field: &str, shown: &Value, expected: &Value) -> bool {
    if !TIME_FIELDS.contains(&field) {
        return shown == expected;
    }
    let instant = |v: &Value| {
        v.as_str().map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .ok()
        })
    };
    match (instant(shown), instant(expected)) {
        (Some(Some(a)), Some(Some(b))) => a == b,
        (None, None) => shown.is_null() && expected.is_null(),
        _ => false,
    }
}
