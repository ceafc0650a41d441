//! Access control: the one place every top-level field passes through.
//!
//! Before any top-level resolver runs, [`check`] makes sure that the caller is
//! authenticated, that its role may use the field, and that the customer the field touches
//! (its `customerId` argument, or the owner of the event it names) is the key's own. A
//! field without a rule is refused: new fields are closed until a rule opens them.
//!
//! Two doors lead to it. [`Checked`] wraps the query and mutation roots, so every root
//! field of every request is checked as it resolves. The [`AccessControl`] extension is
//! installed only on the WebSocket schema: subscription root fields start streams instead
//! of resolving, so it checks them on the parsed document. It is not on the HTTP schemas
//! because any extension sends every field of every response through async-graphql's
//! extension path (a boxed future, a registry lookup and a type-name string per field and
//! list item): measured as 30 % of a read's cost (docs/benchmarks.md). Introspection
//! fields (`__schema`, `__type`) are answered by async-graphql before a root sees them:
//! HTTP requests without a valid key get introspection turned off ([`for_caller`]), so
//! those names reach [`Checked`] and are refused like any other field.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextResolve, ResolveInfo,
};
use async_graphql::parser::types::{ExecutableDocument, Field, OperationType, Selection};
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::{ContainerType, resolve_container};
use async_graphql::{
    Context, ContextSelectionSet, ObjectType, OutputType, Positioned, Request, ServerResult, Value,
    Variables,
};

use super::keys::{Principal, Role};
use crate::errors::Code;
use crate::ids::parse_event_id;
use crate::schema::AppState;
use shard::engine::Personal;

/// The caller as the transport authenticated it (HTTP header or WebSocket `connection_init`).
#[derive(Debug, Clone)]
pub enum Caller {
    /// No key was presented.
    Anonymous,
    /// A key was presented but is unknown or revoked.
    Invalid,
    /// A valid key.
    Key(Principal),
}

/// Which customer a field touches.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// Not customer data (checkpoints, keys, introspection).
    Global,
    /// The customer named by this argument.
    CustomerArg(&'static str),
    /// The customer owning the event named by this argument.
    EventArg(&'static str),
}

const ALL: &[Role] = &[Role::Admin, Role::Writer, Role::Reader];
const WRITE: &[Role] = &[Role::Admin, Role::Writer];
const READ: &[Role] = &[Role::Admin, Role::Reader];
const RECEIPTS: &[Role] = &[Role::Admin, Role::Writer, Role::Reader];
const ADMIN: &[Role] = &[Role::Admin];

/// The rule of each top-level field: who may call it, and for which customer.
fn rule(field: &str) -> Option<(Scope, &'static [Role])> {
    use Scope::*;
    Some(match field {
        "recordConsent" | "recordConsents" | "withdrawConsent" | "eraseSubject" => {
            (CustomerArg("customerId"), WRITE)
        }
        "consent" | "consentHistory" | "consentEvents" | "consentStats" | "consentChanges"
        | "subjectExport" | "expiringConsents" => (CustomerArg("customerId"), READ),
        "event" => (EventArg("id"), READ),
        "receipt" => (EventArg("eventId"), RECEIPTS),
        "checkpoint" | "checkpoints" | "consistencyProof" | "consistencyProofs" | "publicKeys" => {
            (Global, ALL)
        }
        "journalEntries" => (Global, ADMIN),
        "__schema" | "__type" | "__typename" => (Global, ALL),
        "createCustomer" | "updateCustomer" | "customers" | "createApiKey" | "apiKeys"
        | "revokeApiKey" | "applyRetention" | "scrubStorage" => (Global, ADMIN),
        _ => return None,
    })
}

use crate::errors::server_error as refuse;

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Admin => "ADMIN",
        Role::Writer => "WRITER",
        Role::Reader => "READER",
    }
}

/// Factory installed on the WebSocket schema (see the module doc).
pub(crate) struct AccessControl;

impl ExtensionFactory for AccessControl {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AccessCheck {
            variables: Mutex::new(Variables::default()),
        })
    }
}

struct AccessCheck {
    /// The request's variables, to read arguments given as `$variables`.
    variables: Mutex<Variables>,
}

impl AccessCheck {
    fn string_arg(&self, field: &Field, name: &str) -> Option<String> {
        let (_, value) = field
            .arguments
            .iter()
            .find(|(n, _)| n.node.as_str() == name)?;
        let vars = self.variables.lock().expect("lock");
        let value = value
            .node
            .clone()
            .into_const_with(|v| vars.get(&v).cloned().ok_or(()))
            .ok()?;
        match value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Keeps the request's string variables (from `parse_query`, which every request passes
    /// through before any resolver): only strings can name a customer or an event, and
    /// copying just those keeps a 1,000-event batch's values from being cloned.
    fn remember(&self, variables: &Variables) {
        let mut strings = Variables::default();
        for (name, value) in variables.iter() {
            if let Value::String(_) = value {
                strings.insert(name.clone(), value.clone());
            }
        }
        *self.variables.lock().expect("lock") = strings;
    }
}

/// Refuses `name` unless the caller may use it for the customer it touches; `arg` reads a
/// string argument of the field (a literal or a variable).
async fn check(
    caller: Option<&Caller>,
    state: &AppState,
    name: &str,
    arg: impl Fn(&str) -> Option<String>,
) -> ServerResult<()> {
    let principal = match caller {
        Some(Caller::Key(p)) => p,
        Some(Caller::Invalid) => {
            return Err(refuse(
                Code::Unauthenticated,
                "the API key is unknown or revoked",
            ));
        }
        _ => {
            return Err(refuse(
                Code::Unauthenticated,
                "send an API key: Authorization: Bearer <key>",
            ));
        }
    };
    let Some((scope, roles)) = rule(name) else {
        return Err(refuse(
            Code::Forbidden,
            format!("no access rule allows {name}"),
        ));
    };
    if !roles.contains(&principal.role) {
        let msg = format!("a {} key may not use {name}", role_name(principal.role));
        return Err(refuse(Code::Forbidden, msg));
    }
    let customer = match scope {
        Scope::Global => return Ok(()),
        Scope::CustomerArg(a) => arg(a),
        Scope::EventArg(a) => match arg(a).as_deref().and_then(parse_event_id) {
            // Malformed ids and missing events are the resolver's to report.
            None => return Ok(()),
            Some((shard, seq)) => match state.ledger.shards.get(shard as usize) {
                None => return Ok(()),
                Some(s) => match s.event(seq, Personal::Skip).await {
                    Ok(Some(e)) => Some(e.entry.customer_id),
                    _ => return Ok(()),
                },
            },
        },
    };
    let Some(customer) = customer else {
        // A customer-scoped field whose customer cannot be read is refused, not waved on.
        return Err(refuse(
            Code::Forbidden,
            format!("{name}: the customer could not be read from the arguments"),
        ));
    };
    if principal.role != Role::Admin && principal.customer_id.as_deref() != Some(customer.as_str())
    {
        return Err(refuse(
            Code::Forbidden,
            "this key belongs to another customer",
        ));
    }
    if matches!(scope, Scope::CustomerArg(_)) && state.keys.customer(&customer).is_none() {
        return Err(refuse(
            Code::NotFound,
            format!("unknown customer {customer:?}; an admin creates it with createCustomer"),
        ));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Extension for AccessCheck {
    /// Root query and mutation fields are checked by [`Checked`]; only the introspection
    /// fields, which async-graphql answers before the root sees them, are checked here.
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if matches!(info.parent_type, "Query" | "Mutation")
            && matches!(info.name, "__schema" | "__type")
        {
            let state = ctx.data_unchecked::<Arc<AppState>>();
            check(ctx.data_opt::<Caller>(), state, info.name, |a| {
                self.string_arg(info.field, a)
            })
            .await?;
        }
        next.run(ctx, info).await
    }

    /// Subscription root fields start streams rather than resolve, so they are checked
    /// here, on the parsed document, before any stream exists.
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        self.remember(variables);
        let state = ctx.data_unchecked::<Arc<AppState>>();
        for (_, op) in doc.operations.iter() {
            if op.node.ty != OperationType::Subscription {
                continue;
            }
            for sel in &op.node.selection_set.node.items {
                let Selection::Field(f) = &sel.node else {
                    // async-graphql starts streams only for fields written directly at the
                    // root and silently ends the rest; say so instead, and keep this check
                    // and the executor looking at the same fields.
                    return Err(refuse(
                        Code::BadUserInput,
                        "write subscription fields directly in the subscription, not in fragments",
                    ));
                };
                if f.node.name.node.as_str() != "__typename" {
                    let name = f.node.name.node.as_str();
                    check(ctx.data_opt::<Caller>(), state, name, |a| {
                        self.string_arg(&f.node, a)
                    })
                    .await?;
                }
            }
        }
        Ok(doc)
    }
}

/// A query or mutation root whose every field is checked by [`check`] before it resolves.
/// It is the root it wraps to GraphQL: same name, same fields, same SDL.
#[derive(Default)]
pub(crate) struct Checked<T>(pub(crate) T);

impl<T: ObjectType> OutputType for Checked<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve_container(ctx, self).await
    }
}

impl<T: ObjectType> ContainerType for Checked<T> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        let name = ctx.item.node.name.node.as_str();
        if name != "__typename" {
            let state = ctx.data_unchecked::<Arc<AppState>>();
            check(ctx.data_opt::<Caller>(), state, name, |a| {
                ctx.param_value::<Option<String>>(a, None)
                    .ok()
                    .and_then(|(_, v)| v)
            })
            .await?;
        }
        self.0.resolve_field(ctx).await
    }

    async fn find_entity(&self, ctx: &Context<'_>, params: &Value) -> ServerResult<Option<Value>> {
        self.0.find_entity(ctx, params).await
    }
}

impl<T: ObjectType> ObjectType for Checked<T> {}

/// An HTTP request as its caller may send it: introspection is off unless the caller
/// presented a valid key, so that `__schema` and `__type` reach [`Checked`] and are refused.
pub(crate) fn for_caller(request: Request, caller: Caller) -> Request {
    let keyed = matches!(caller, Caller::Key(_));
    let request = request.data(caller);
    if keyed {
        request
    } else {
        request.disable_introspection()
    }
}
