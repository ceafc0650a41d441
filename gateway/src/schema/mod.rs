//! The GraphQL schema: `schema.graphql` at the repository root is its published form.

mod admin;
mod mutation;
mod plain;
mod privacy;
mod query;
mod scalars;
mod subscription;
pub(crate) mod types;

use std::sync::Arc;

use async_graphql::{Context, Result, Schema};

use crate::auth::policy::Checked;
use crate::checkpoints::Checkpointer;
use crate::errors::{Code, bad_input, err};
use crate::ids::parse_event_id;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use admin::{AdminMutation, AdminQuery};
use mutation::ConsentMutation;
use privacy::{PrivacyMutation, PrivacyQuery};
use query::ConsentQuery;
use shard::engine::Personal;
use types::{EventView, ReceiptView};

/// Deepest query accepted.
pub const MAX_QUERY_DEPTH: usize = 16;
/// Largest static query complexity accepted (one point per field; lists count once).
pub const MAX_QUERY_COMPLEXITY: usize = 2_000;
/// Most directives on one field.
pub const MAX_DIRECTIVES: usize = 8;
/// Pairs one `consistencyProofs` request may ask for: a monitor's page of checkpoints
/// (`assent audit --server` asks for up to 100).
pub const MAX_CONSISTENCY_PROOFS: i32 = 100;
/// Most journal entries in one `journalEntries` page (≈ 300 KB of base64 at typical entry
/// sizes; an entry is at most a few KB by the limits of `shard::format::limits`).
pub const MAX_JOURNAL_PAGE: i32 = 1_000;
/// Page size when `first` is not given.
pub const DEFAULT_PAGE_SIZE: i32 = 50;

/// Every read: consent data for customers' keys, customers and keys for admins. A read sees
/// every write of its customer that was acknowledged before the read began, whoever made it
/// (no consistency token to carry).
#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Query")]
pub(crate) struct QueryRoot(ConsentQuery, PrivacyQuery, AdminQuery);

/// Every write: consent for writer keys, customers and keys for admins.
#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Mutation")]
pub(crate) struct MutationRoot(ConsentMutation, PrivacyMutation, AdminMutation);

/// The executable schema: every root query and mutation field passes the access check.
pub(crate) type AssentSchema =
    Schema<Checked<QueryRoot>, Checked<MutationRoot>, subscription::SubscriptionRoot>;

/// What resolvers reach through the context.
pub(crate) struct AppState {
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) checkpoints: Arc<Checkpointer>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) keys: Arc<crate::auth::KeyStore>,
    pub(crate) feeds: Arc<crate::feed::Feeds>,
}

pub(crate) fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<Arc<AppState>>()
}

/// Builds the HTTP schema with its limits.
pub(crate) fn build(state: Option<Arc<AppState>>) -> AssentSchema {
    build_with(state, async_graphql::ValidationMode::Strict)
}

/// Builds the WebSocket schema: the HTTP schema plus the access-control extension that
/// checks subscription root fields (`auth::policy`).
pub(crate) fn build_ws(state: Arc<AppState>) -> AssentSchema {
    builder(Some(state), async_graphql::ValidationMode::Strict)
        .extension(crate::auth::policy::AccessControl)
        .finish()
}

/// Builds the schema with its limits and the given validation mode. `Fast` skips the
/// document rules (known fields, argument and variable types, …) but keeps depth,
/// complexity and directive limits; it serves only query texts that already passed
/// `Strict` validation (`query_cache`), whose variables are still type-checked when the
/// arguments are read.
pub(crate) fn build_with(
    state: Option<Arc<AppState>>,
    mode: async_graphql::ValidationMode,
) -> AssentSchema {
    builder(state, mode).finish()
}

fn builder(
    state: Option<Arc<AppState>>,
    mode: async_graphql::ValidationMode,
) -> async_graphql::SchemaBuilder<
    Checked<QueryRoot>,
    Checked<MutationRoot>,
    subscription::SubscriptionRoot,
> {
    let mut builder = Schema::build(
        Checked(QueryRoot::default()),
        Checked(MutationRoot::default()),
        subscription::SubscriptionRoot,
    )
    .limit_depth(MAX_QUERY_DEPTH)
    .limit_complexity(MAX_QUERY_COMPLEXITY)
    .limit_directives(MAX_DIRECTIVES)
    .validation_mode(mode);
    if let Some(s) = state {
        builder = builder.data(s);
    }
    builder
}

/// The schema in SDL: what `schema.graphql` must contain.
pub fn sdl() -> String {
    build(None).sdl()
}

impl AppState {
    /// The receipt of entry `seq` of shard `shard`.
    pub(crate) async fn receipt(&self, shard: u32, seq: u64) -> Result<ReceiptView> {
        match self.checkpoints.receipt(shard, seq).await? {
            Some((receipt, issued)) => Ok(ReceiptView { receipt, issued }),
            None => Err(err(Code::NotFound, "no such event")),
        }
    }

    /// The event with API id `id`.
    pub(crate) async fn event_by_id(&self, id: &str) -> Result<Option<EventView>> {
        let Some((shard, seq)) = parse_event_id(id) else {
            return Err(bad_input("not an event id"));
        };
        let Some(client) = self.ledger.shards.get(shard as usize) else {
            return Ok(None);
        };
        Ok(client
            .event(seq, Personal::Load)
            .await?
            .filter(|e| e.entry.consent().is_some())
            .map(EventView::from))
    }
}

/// The published form of a signing key (also served at `/.well-known/assent/keys`).
pub(crate) fn public_key(name: &str, key: &ed25519_dalek::VerifyingKey) -> serde_json::Value {
    let k = types::PublicKey::of(name, key);
    serde_json::json!({
        "name": k.name, "algorithm": k.algorithm, "keyId": k.key_id,
        "publicKey": k.public_key, "verifierKey": k.verifier_key,
    })
}
