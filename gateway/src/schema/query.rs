//! Queries: consent state, history, statistics, events, receipts, checkpoints, keys.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Lookahead, Object, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use shard::engine::{MAX_PAGE_SIZE, Order, Personal, PurposeState, apply_to_state};

use super::mutation::{check_customer, check_subject};
use super::plain::{Plain, PlainConnection, PlainList};
use super::scalars::{HashHex, UInt64};
use super::types::*;
use super::{AppState, DEFAULT_PAGE_SIZE, MAX_CONSISTENCY_PROOFS, MAX_JOURNAL_PAGE, state};
use crate::checkpoints::Issued;
use crate::errors::{Code, bad_input, err};
use crate::ids::{cursor, parse_cursor};

/// Longest window `consentStats` accepts, in days.
pub const MAX_STATS_DAYS: i64 = 731;
/// Most events `consentEvents` scans for one page when filtering by purpose.
pub const MAX_FILTER_SCAN: usize = 100_000;

/// What a purpose's state means at `at_ms`: a grant whose expiry has passed is EXPIRED.
pub(crate) fn status_at(s: &PurposeState, at_ms: i64) -> ConsentStatus {
    match s.choice {
        shard::format::Choice::Denied => ConsentStatus::Denied,
        shard::format::Choice::Granted if s.expires_at_ms.is_some_and(|e| e <= at_ms) => {
            ConsentStatus::Expired
        }
        shard::format::Choice::Granted => ConsentStatus::Granted,
    }
}

/// Consent reads: state, history, statistics, events, receipts, checkpoints, keys.
#[derive(Default)]
pub(crate) struct ConsentQuery;

pub(crate) fn page_size(first: Option<i32>) -> Result<u32> {
    let n = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if n < 1 || n as u32 > MAX_PAGE_SIZE {
        return Err(bad_input(format!(
            "first: must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    Ok(n as u32)
}

fn bad_cursor() -> async_graphql::Error {
    bad_input("after: not a cursor of this list")
}

/// Consent reads.
#[Object]
impl ConsentQuery {
    /// A subject's consent per purpose: now, or as the ledger knew it at `asOf` (by
    /// `recordedAt`). Each purpose comes with the event that set it.
    async fn consent(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        subject_id: String,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Plain<ConsentState>> {
        check_customer(&customer_id)?;
        check_subject(&subject_id)?;
        let shard = state(ctx).ledger.shard_for(&customer_id);
        let event_selection = ctx.look_ahead().field("purposes").field("event");
        let wants_events = event_selection.exists();
        let personal = personal_in(&[event_selection]);
        let pairs: Vec<(PurposeState, Option<EventView>)> = match as_of {
            // Now, without events: the state row alone.
            None if !wants_events => shard
                .current_state(customer_id.to_string(), subject_id.clone())
                .await?
                .into_iter()
                .map(|s| (s, None))
                .collect(),
            // Now: the state and its events from one snapshot.
            None => shard
                .current_state_with_events(customer_id.to_string(), subject_id.clone(), personal)
                .await?
                .into_iter()
                .map(|(s, e)| (s, Some(event_view(e, personal))))
                .collect(),
            Some(t) => {
                let states =
                    state_as_of(shard, &customer_id, &subject_id, t.timestamp_millis()).await?;
                let mut events: HashMap<u64, EventView> = HashMap::new();
                let mut out = Vec::with_capacity(states.len());
                for s in states {
                    if let std::collections::hash_map::Entry::Vacant(slot) = events.entry(s.seq) {
                        let e = shard.event(s.seq, personal).await?.ok_or_else(|| {
                            err(Code::Internal, "index points at a missing event")
                        })?;
                        slot.insert(event_view(e, personal));
                    }
                    let view = events[&s.seq].clone();
                    out.push((s, Some(view)));
                }
                out
            }
        };
        let at_ms = as_of.unwrap_or_else(Utc::now).timestamp_millis();
        let purposes = pairs
            .into_iter()
            .map(|(s, event)| PurposeConsent {
                status: status_at(&s, at_ms),
                purpose: s.purpose,
                choice: s.choice.into(),
                expires_at: s.expires_at_ms.map(ms_to_time),
                event,
            })
            .collect();
        Ok(Plain(ConsentState {
            customer_id: customer_id.to_string(),
            subject_id,
            as_of,
            purposes: PlainList(purposes),
        }))
    }

    /// A subject's events, oldest first unless `order` says otherwise (Relay connection).
    async fn consent_history(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        subject_id: String,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(default_with = "HistoryOrder::OldestFirst")] order: HistoryOrder,
    ) -> Result<Plain<PlainConnection<EventView>>> {
        check_customer(&customer_id)?;
        check_subject(&subject_id)?;
        let limit = page_size(first)?;
        let after = match &after {
            None => None,
            Some(c) => Some(parse_cursor("h", 1, c).ok_or_else(bad_cursor)?[0] as u64),
        };
        let order = match order {
            HistoryOrder::OldestFirst => Order::Ascending,
            HistoryOrder::NewestFirst => Order::Descending,
        };
        let shard = state(ctx).ledger.shard_for(&customer_id);
        let personal = personal_selected(ctx);
        let page = shard
            .history(
                customer_id.to_string(),
                subject_id,
                order,
                after,
                limit,
                personal,
            )
            .await?;
        let mut conn = Connection::new(after.is_some(), page.has_more);
        for e in page.items {
            conn.edges.push(Edge::new(
                cursor("h", &[i128::from(e.entry.seq)]),
                Plain(event_view(e, personal)),
            ));
        }
        Ok(Plain(conn))
    }

    /// A customer's events recorded in `[since, until)`, oldest first, optionally only those
    /// that set `purpose` (Relay connection).
    #[allow(clippy::too_many_arguments)]
    async fn consent_events(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        purpose: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Plain<PlainConnection<EventView>>> {
        check_customer(&customer_id)?;
        let limit = page_size(first)? as usize;
        let since_ms = since.map_or(0, |t| t.timestamp_millis());
        let until_ms = until.map_or(i64::MAX, |t| t.timestamp_millis());
        let mut after = match &after {
            None => None,
            Some(c) => {
                let p = parse_cursor("c", 2, c).ok_or_else(bad_cursor)?;
                Some((
                    i64::try_from(p[0]).map_err(|_| bad_cursor())?,
                    u64::try_from(p[1]).map_err(|_| bad_cursor())?,
                ))
            }
        };
        let shard = state(ctx).ledger.shard_for(&customer_id);
        let personal = personal_selected(ctx);
        let mut conn = Connection::new(after.is_some(), false);
        let mut scanned = 0usize;
        loop {
            let page = shard
                .customer_events(
                    customer_id.to_string(),
                    since_ms,
                    until_ms,
                    after,
                    MAX_PAGE_SIZE,
                    personal,
                )
                .await?;
            let mut more = page.has_more;
            for (i, e) in page.items.iter().enumerate() {
                scanned += 1;
                let key = (e.entry.recorded_at_ms, e.entry.seq);
                after = Some(key);
                let matches = purpose.as_ref().is_none_or(|p| {
                    e.entry
                        .consent()
                        .is_some_and(|c| c.purposes.iter().any(|(n, _)| n == p))
                });
                if matches {
                    conn.edges.push(Edge::new(
                        cursor("c", &[i128::from(key.0), i128::from(key.1)]),
                        Plain(event_view(e.clone(), personal)),
                    ));
                    if conn.edges.len() == limit {
                        more = more || i + 1 < page.items.len();
                        conn.has_next_page = more;
                        return Ok(Plain(conn));
                    }
                }
            }
            if !more {
                return Ok(Plain(conn));
            }
            if scanned >= MAX_FILTER_SCAN {
                if conn.edges.is_empty() {
                    return Err(bad_input(format!(
                        "purpose: no match among {MAX_FILTER_SCAN} events; narrow since/until"
                    )));
                }
                conn.has_next_page = true;
                return Ok(Plain(conn));
            }
        }
    }

    /// Granted and denied counts per purpose per UTC day of `recordedAt`, for
    /// `[since, until)` (at most 731 days).
    async fn consent_stats(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<DailyPurposeStats>> {
        check_customer(&customer_id)?;
        if until <= since || (until - since).num_days() > MAX_STATS_DAYS {
            return Err(bad_input(format!(
                "until must be after since, at most {MAX_STATS_DAYS} days later"
            )));
        }
        let shard = state(ctx).ledger.shard_for(&customer_id);
        let rows = shard
            .daily_counts(
                customer_id.to_string(),
                since.timestamp_millis(),
                until.timestamp_millis(),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DailyPurposeStats {
                day: ms_to_time(r.day * 86_400_000)
                    .format("%Y-%m-%d")
                    .to_string(),
                purpose: r.purpose,
                granted: UInt64(r.granted),
                denied: UInt64(r.denied),
            })
            .collect())
    }

    /// One event by id.
    async fn event(&self, ctx: &Context<'_>, id: ID) -> Result<Plain<EventView>> {
        state(ctx)
            .event_by_id(&id)
            .await?
            .map(Plain)
            .ok_or_else(|| err(Code::NotFound, "no such event"))
    }

    /// The receipt of an event, issuing a checkpoint first when none covers it yet.
    async fn receipt(&self, ctx: &Context<'_>, event_id: ID) -> Result<ReceiptView> {
        let (shard, seq) = crate::ids::parse_event_id(&event_id)
            .ok_or_else(|| bad_input("eventId: not an event id"))?;
        let st = state(ctx);
        if shard as usize >= st.ledger.shards.len() {
            return Err(err(Code::NotFound, "no such event"));
        }
        st.receipt(shard, seq).await
    }

    /// The latest checkpoint; null before the first event.
    async fn checkpoint(&self, ctx: &Context<'_>) -> Option<CheckpointView> {
        state(ctx).checkpoints.latest().map(CheckpointView)
    }

    /// Every checkpoint issued, oldest first (Relay connection).
    async fn checkpoints(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, CheckpointView>> {
        let limit = page_size(first)? as usize;
        let after_n = match &after {
            None => 0,
            Some(c) => u64::try_from(parse_cursor("k", 1, c).ok_or_else(bad_cursor)?[0])
                .map_err(|_| bad_cursor())?,
        };
        let (items, more) = state(ctx).checkpoints.page(after_n, limit)?;
        let mut conn = Connection::new(after.is_some(), more);
        for i in items {
            conn.edges.push(Edge::new(
                cursor("k", &[i128::from(i.checkpoint.number)]),
                CheckpointView(i.into()),
            ));
        }
        Ok(conn)
    }

    /// Proof that checkpoint `toCheckpoint` extends checkpoint `fromCheckpoint`.
    async fn consistency_proof(
        &self,
        ctx: &Context<'_>,
        from_checkpoint: UInt64,
        to_checkpoint: UInt64,
    ) -> Result<CheckpointConsistency> {
        if from_checkpoint.0 > to_checkpoint.0 {
            return Err(bad_input("fromCheckpoint must not be after toCheckpoint"));
        }
        let st = state(ctx);
        let get = |n: u64| -> Result<Arc<Issued>> {
            st.checkpoints
                .get(n)?
                .map(Arc::new)
                .ok_or_else(|| no_checkpoint(n))
        };
        let (from, to) = (get(from_checkpoint.0)?, get(to_checkpoint.0)?);
        consistency(st, from, to).await
    }

    /// Proofs that each checkpoint from `fromCheckpoint + 1` to `fromCheckpoint + count`
    /// extends the one before it, in order: what a monitor checks, `count` pairs in one
    /// request (at most 100, `MAX_CONSISTENCY_PROOFS`).
    async fn consistency_proofs(
        &self,
        ctx: &Context<'_>,
        from_checkpoint: UInt64,
        count: i32,
    ) -> Result<Vec<CheckpointConsistency>> {
        let count = match u64::try_from(count) {
            Ok(n) if (1..=MAX_CONSISTENCY_PROOFS as u64).contains(&n) => n,
            _ => {
                return Err(bad_input(format!(
                    "count must be between 1 and {MAX_CONSISTENCY_PROOFS}"
                )));
            }
        };
        let st = state(ctx);
        let mut run = checkpoint_run(st, from_checkpoint.0, count + 1)?.into_iter();
        let mut older = run.next().expect("a run of at least two checkpoints");
        let mut out = Vec::with_capacity(count as usize);
        for newer in run {
            out.push(consistency(st, older, newer.clone()).await?);
            older = newer;
        }
        Ok(out)
    }

    /// Journal entries of `shard` from `fromSeq` on (default 0), exactly as stored, at most
    /// `first` (default and maximum 1,000, `MAX_JOURNAL_PAGE`), with the journal's size:
    /// what an auditor checks against signed checkpoints without the data directory
    /// (`assent journal --server`, docs/receipts.md §7). Admin only: the journal holds
    /// every customer's entries.
    async fn journal_entries(
        &self,
        ctx: &Context<'_>,
        shard: i32,
        from_seq: Option<UInt64>,
        first: Option<i32>,
    ) -> Result<JournalPage> {
        let st = state(ctx);
        let client = usize::try_from(shard)
            .ok()
            .and_then(|s| st.ledger.shards.get(s))
            .ok_or_else(|| bad_input(format!("shard: no shard {shard}")))?;
        let first = first.unwrap_or(MAX_JOURNAL_PAGE);
        if !(1..=MAX_JOURNAL_PAGE).contains(&first) {
            return Err(bad_input(format!(
                "first: must be between 1 and {MAX_JOURNAL_PAGE}"
            )));
        }
        let from = from_seq.map_or(0, |s| s.0);
        let (entries, size) = client.journal_page(from, first as u64).await?;
        Ok(JournalPage {
            shard,
            size: UInt64(size),
            entries: entries.iter().map(|e| B64.encode(e)).collect(),
        })
    }

    /// The keys that sign checkpoints.
    async fn public_keys(&self, ctx: &Context<'_>) -> Vec<PublicKey> {
        let l = &state(ctx).ledger;
        vec![PublicKey::of(&l.name, &l.signing_key.verifying_key())]
    }
}

/// A page of one shard's journal (`Query.journalEntries`).
#[derive(async_graphql::SimpleObject)]
pub struct JournalPage {
    /// The shard.
    shard: i32,
    /// The shard's journal size when the page was read: entries `0 .. size` exist.
    size: UInt64,
    /// The entries' canonical bytes (docs/design.md §2), base64, from `fromSeq` on (the
    /// next page starts at `fromSeq` plus their count).
    entries: Vec<String>,
}

/// The answer when checkpoint `n` was never issued.
fn no_checkpoint(n: u64) -> async_graphql::Error {
    err(Code::NotFound, format!("no checkpoint {n}"))
}

/// Checkpoints `first .. first + len`, read in one listing (each inside a run is in two
/// pairs); NOT_FOUND names the first number missing.
fn checkpoint_run(st: &AppState, first: u64, len: u64) -> Result<Vec<Arc<Issued>>> {
    if first == 0 {
        return Err(no_checkpoint(0));
    }
    let (issued, _) = st.checkpoints.page(first - 1, len as usize)?;
    let mut expected = first;
    for i in &issued {
        if i.checkpoint.number != expected {
            return Err(no_checkpoint(expected));
        }
        expected = expected.saturating_add(1);
    }
    if (issued.len() as u64) < len {
        return Err(no_checkpoint(expected));
    }
    Ok(issued.into_iter().map(Arc::new).collect())
}

/// Each shard's proof that `to` extends `from`.
async fn consistency(
    st: &AppState,
    from: Arc<Issued>,
    to: Arc<Issued>,
) -> Result<CheckpointConsistency> {
    let mut shards = Vec::with_capacity(from.checkpoint.shards.len());
    for (old, new) in from.checkpoint.shards.iter().zip(&to.checkpoint.shards) {
        let path = st.ledger.shards[old.shard_id as usize]
            .consistency_proof(old.size, new.size)
            .await?
            .path;
        shards.push(ShardConsistency {
            shard_id: old.shard_id,
            old_size: UInt64(old.size),
            new_size: UInt64(new.size),
            old_root: HashHex(old.root),
            new_root: HashHex(new.root),
            path: path.into_iter().map(HashHex).collect(),
        });
    }
    Ok(CheckpointConsistency {
        from: CheckpointView(from),
        to: CheckpointView(to),
        shards,
    })
}

/// Replays a subject's history up to `as_of_ms` (by recordedAt).
async fn state_as_of(
    shard: &crate::shards::ShardClient,
    customer: &str,
    subject: &str,
    as_of_ms: i64,
) -> Result<Vec<PurposeState>> {
    let mut states: Vec<PurposeState> = Vec::new();
    shard
        .walk_history(customer, subject, Personal::Skip, |e| {
            let known = e.entry.recorded_at_ms <= as_of_ms;
            if known {
                apply_to_state(&mut states, &e.entry);
            }
            known
        })
        .await?;
    Ok(states)
}

/// Whether the selection of an event connection names a field of [`PERSONAL_FIELDS`] on its
/// events (through `edges { node }` or `nodes`, fragments included; a field under a
/// directive counts): only then are the events' personal records read.
fn personal_selected(ctx: &Context<'_>) -> Personal {
    let look = ctx.look_ahead();
    personal_in(&[look.field("edges").field("node"), look.field("nodes")])
}

/// Whether any of the selections of events `events` names a field of [`PERSONAL_FIELDS`].
fn personal_in(events: &[Lookahead<'_>]) -> Personal {
    let named = |f: &&str| events.iter().any(|e| e.field(f).exists());
    if PERSONAL_FIELDS.iter().any(named) {
        Personal::Load
    } else {
        Personal::Skip
    }
}

/// The view of an event of a page read as `personal` says.
fn event_view(e: shard::engine::StoredEvent, personal: Personal) -> EventView {
    match personal {
        Personal::Load => e.into(),
        Personal::Skip => EventView::without_personal(e),
    }
}
