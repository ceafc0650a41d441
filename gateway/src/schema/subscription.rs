//! `Subscription.consentChanges`: replay from the journal after a cursor, then live, with no
//! gap and no duplicate at the seam; a lagging subscriber goes back to replay.

use async_graphql::{Context, ID, Result, SimpleObject, Subscription};
use futures::Stream;
use shard::engine::{MAX_PAGE_SIZE, Personal};
use shard::format::Entry;
use tokio::sync::broadcast::error::RecvError;

use super::mutation::{check_customer, check_subject};
use super::state;
use super::types::EventView;
use crate::errors::bad_input;
use crate::ids::{cursor, parse_cursor};

/// One delivered change.
#[derive(SimpleObject)]
pub struct ConsentChange {
    /// The stored event.
    pub event: EventView,
    /// Resume point: pass it as `after` to continue right after this event.
    pub cursor: String,
}

/// Streams of consent changes.
#[derive(Default)]
pub(crate) struct SubscriptionRoot;

struct Filter {
    customer: String,
    subject: Option<String>,
    purposes: Option<Vec<String>>,
}

impl Filter {
    fn matches(&self, entry: &Entry, subject: Option<&str>) -> bool {
        entry.customer_id == self.customer
            && self.subject.as_deref().is_none_or(|s| subject == Some(s))
            && self.purposes.as_ref().is_none_or(|ps| {
                entry
                    .consent()
                    .is_some_and(|c| c.purposes.iter().any(|(p, _)| ps.contains(p)))
            })
    }
}

fn change(view: EventView) -> ConsentChange {
    let c = cursor(
        "c",
        &[
            i128::from(view.entry.recorded_at_ms),
            i128::from(view.entry.seq),
        ],
    );
    ConsentChange {
        event: view,
        cursor: c,
    }
}

/// Streams of consent changes.
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Every change to a customer's consent, in ledger order, each exactly once: first the
    /// stored events after `after` (a cursor from an earlier delivery), then live ones.
    /// Optionally only one subject's, or only events that set one of `purposes`.
    async fn consent_changes(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        subject_id: Option<String>,
        purposes: Option<Vec<String>>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = ConsentChange> + use<>> {
        check_customer(&customer_id)?;
        if let Some(s) = &subject_id {
            check_subject(s)?;
        }
        let mut position: Option<(i64, u64)> = match &after {
            None => None,
            Some(c) => {
                let p = parse_cursor("c", 2, c)
                    .ok_or_else(|| bad_input("after: not a subscription cursor"))?;
                Some((
                    i64::try_from(p[0]).map_err(|_| bad_input("after: bad cursor"))?,
                    u64::try_from(p[1]).map_err(|_| bad_input("after: bad cursor"))?,
                ))
            }
        };
        let st = state(ctx);
        let shard = st.ledger.shard_for(&customer_id).clone();
        let feeds = st.feeds.clone();
        let metrics = st.metrics.clone();
        let filter = Filter {
            customer: customer_id.to_string(),
            subject: subject_id,
            purposes,
        };
        // Subscribe before anything is read, so nothing committed meanwhile is missed.
        let mut first_rx = Some(feeds.subscribe(shard.shard_id()));
        // Without a cursor the stream starts now: everything up to the current head is skipped.
        let start_live = after.is_none();
        if start_live {
            let head = shard.head().await?;
            if head.size > 0
                && let Some(e) = shard.event(head.size - 1, Personal::Skip).await?
            {
                position = Some((e.entry.recorded_at_ms, e.entry.seq));
            }
        }
        Ok(async_stream::stream! {
            let _open = crate::metrics::Open::new(&metrics.open_subscriptions);
            let mut replay = !start_live;
            let mut last_seq: Option<u64> = position.map(|p| p.1);
            loop {
                let mut rx = first_rx.take().unwrap_or_else(|| feeds.subscribe(shard.shard_id()));
                if replay {
                    loop {
                        let page = match shard.customer_events(filter.customer.clone(), 0, i64::MAX, position, MAX_PAGE_SIZE, Personal::Load).await {
                            Ok(p) => p,
                            Err(_) => return,
                        };
                        for e in page.items {
                            position = Some((e.entry.recorded_at_ms, e.entry.seq));
                            last_seq = Some(e.entry.seq);
                            let subject = e.personal.as_ref().map(|p| p.record.subject_id.clone());
                            if filter.matches(&e.entry, subject.as_deref()) {
                                metrics.events_delivered.inc();
                                yield change(e.into());
                            }
                        }
                        if !page.has_more {
                            break;
                        }
                    }
                }
                replay = true;
                loop {
                    match rx.recv().await {
                        Ok(commit) => {
                            for p in commit.iter() {
                                if last_seq.is_some_and(|l| p.entry.seq <= l) {
                                    continue; // already delivered by the replay
                                }
                                if p.entry.customer_id != filter.customer {
                                    continue;
                                }
                                position = Some((p.entry.recorded_at_ms, p.entry.seq));
                                last_seq = Some(p.entry.seq);
                                if filter.matches(&p.entry, Some(&p.personal.subject_id)) {
                                    metrics.events_delivered.inc();
                                    yield change(EventView { entry: p.entry.clone(), entry_hash: p.entry_hash, personal: Some(p.personal.clone()), personal_loaded: true });
                                }
                            }
                        }
                        Err(RecvError::Lagged(_)) => {
                            metrics.subscribers_lagged.inc();
                            break; // back to replay from the journal
                        }
                        Err(RecvError::Closed) => return,
                    }
                }
            }
        })
    }
}
