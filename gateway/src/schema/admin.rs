//! The admin API: customers and API keys (ADMIN keys only; see `auth::policy`).

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, MaybeUndefined, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::state;
use super::types::ms_to_time;
use crate::auth::keys::{CustomerRecord, KeyError, KeyRecord, Role};
use crate::errors::{Code, bad_input, err};

/// Longest retention period or consent lifetime, in days (100 years).
pub const MAX_DAYS: u32 = 36_500;

fn key_err(e: KeyError) -> async_graphql::Error {
    match e {
        KeyError::Invalid(m) | KeyError::Exists(m) => bad_input(m),
        KeyError::NotFound(m) => err(Code::NotFound, m),
        KeyError::Storage(m) => {
            tracing::error!(error = %m, "key storage failed");
            err(
                Code::Internal,
                "internal error; the operator's log has the details",
            )
        }
    }
}

fn check_days(field: &str, d: Option<u32>) -> Result<()> {
    match d {
        Some(0) => Err(bad_input(format!("{field}: must be at least 1"))),
        Some(n) if n > MAX_DAYS => Err(bad_input(format!("{field}: at most {MAX_DAYS} days"))),
        _ => Ok(()),
    }
}

/// The role of an API key.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "Role")]
pub enum RoleGql {
    /// The operator: manages customers and keys and may act for any customer.
    Admin,
    /// A CMP backend: records and withdraws consent, reads its own receipts.
    Writer,
    /// A dashboard: every query and subscription of its customer, no writes.
    Reader,
}

impl From<Role> for RoleGql {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => RoleGql::Admin,
            Role::Writer => RoleGql::Writer,
            Role::Reader => RoleGql::Reader,
        }
    }
}

impl From<RoleGql> for Role {
    fn from(r: RoleGql) -> Self {
        match r {
            RoleGql::Admin => Role::Admin,
            RoleGql::Writer => Role::Writer,
            RoleGql::Reader => Role::Reader,
        }
    }
}

/// A customer (website owner).
pub(crate) struct CustomerView(pub(crate) CustomerRecord);

/// A customer (website owner): a tenant whose data no other customer's key reaches.
#[Object(name = "Customer")]
impl CustomerView {
    /// Customer id, as used in `customerId`.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// When the customer was created.
    async fn created_at(&self) -> DateTime<Utc> {
        ms_to_time(self.0.created_at_ms)
    }
    /// Personal records older than this many days may be erased in bulk.
    async fn retention_days(&self) -> Option<u32> {
        self.0.retention_days
    }
    /// Lifetime of a consent recorded without `expiresAt`, in days.
    async fn default_consent_lifetime_days(&self) -> Option<u32> {
        self.0.default_consent_lifetime_days
    }
}

/// An API key's record (never its secret).
pub(crate) struct ApiKeyView(pub(crate) KeyRecord);

/// An API key's record. The secret is shown only once, by `createApiKey`.
#[Object(name = "ApiKey")]
impl ApiKeyView {
    /// Key id (also embedded in the key after `asnt_`).
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// The customer it belongs to; null for ADMIN keys.
    async fn customer_id(&self) -> Option<ID> {
        self.0.customer_id.clone().map(ID)
    }
    /// What the key may do.
    async fn role(&self) -> RoleGql {
        self.0.role.into()
    }
    /// The operator's label.
    async fn label(&self) -> &str {
        &self.0.label
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        ms_to_time(self.0.created_at_ms)
    }
    /// When it was revoked; a revoked key is refused.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at_ms.map(ms_to_time)
    }
}

/// A new key with its secret, shown this once.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// The key's record.
    pub key: ApiKeyView,
    /// The secret to send as `Authorization: Bearer <secret>`. Store it now: it is kept
    /// only as a hash and cannot be shown again.
    pub secret: String,
}

/// Admin reads.
#[derive(Default)]
pub(crate) struct AdminQuery;

/// Admin reads.
#[Object]
impl AdminQuery {
    /// Every customer, in id order (Relay connection).
    async fn customers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, CustomerView>> {
        let limit = super::query::page_size(first)? as usize;
        let after_id = match &after {
            None => None,
            Some(c) => {
                let bytes =
                    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c)
                        .map_err(|_| bad_input("after: not a cursor of this list"))?;
                Some(
                    String::from_utf8(bytes)
                        .map_err(|_| bad_input("after: not a cursor of this list"))?,
                )
            }
        };
        let (page, more) = state(ctx).keys.customers_page(after_id.as_deref(), limit);
        let mut conn = Connection::new(after.is_some(), more);
        for c in page {
            let cur =
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &c.id);
            conn.edges.push(Edge::new(cur, CustomerView(c)));
        }
        Ok(conn)
    }

    /// The keys of a customer, or the ADMIN keys when `customerId` is null. Never secrets.
    async fn api_keys(&self, ctx: &Context<'_>, customer_id: Option<ID>) -> Vec<ApiKeyView> {
        state(ctx)
            .keys
            .keys_of(customer_id.as_ref().map(|c| c.as_str()))
            .into_iter()
            .map(ApiKeyView)
            .collect()
    }
}

/// Admin writes.
#[derive(Default)]
pub(crate) struct AdminMutation;

/// Admin writes.
#[Object]
impl AdminMutation {
    /// Creates a customer. Events can be recorded for it once it exists.
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: String,
        retention_days: Option<u32>,
        default_consent_lifetime_days: Option<u32>,
    ) -> Result<CustomerView> {
        check_days("retentionDays", retention_days)?;
        check_days("defaultConsentLifetimeDays", default_consent_lifetime_days)?;
        let rec = CustomerRecord {
            id: id.to_string(),
            name,
            created_at_ms: Utc::now().timestamp_millis(),
            retention_days,
            default_consent_lifetime_days,
        };
        state(ctx)
            .keys
            .create_customer(rec)
            .map(CustomerView)
            .map_err(key_err)
    }

    /// Changes a customer's name or periods; an explicit null clears a period.
    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
        retention_days: MaybeUndefined<u32>,
        default_consent_lifetime_days: MaybeUndefined<u32>,
    ) -> Result<CustomerView> {
        let keys = &state(ctx).keys;
        let mut rec = keys
            .customer(&id)
            .ok_or_else(|| err(Code::NotFound, format!("no customer {:?}", id.as_str())))?;
        if let Some(n) = name {
            if n.is_empty() || n.len() > crate::auth::keys::MAX_LABEL_BYTES {
                return Err(bad_input("name: 1-200 bytes"));
            }
            rec.name = n;
        }
        let apply = |field: &str, v: MaybeUndefined<u32>, slot: &mut Option<u32>| -> Result<()> {
            match v {
                MaybeUndefined::Undefined => Ok(()),
                MaybeUndefined::Null => {
                    *slot = None;
                    Ok(())
                }
                MaybeUndefined::Value(d) => {
                    check_days(field, Some(d))?;
                    *slot = Some(d);
                    Ok(())
                }
            }
        };
        apply("retentionDays", retention_days, &mut rec.retention_days)?;
        apply(
            "defaultConsentLifetimeDays",
            default_consent_lifetime_days,
            &mut rec.default_consent_lifetime_days,
        )?;
        keys.update_customer(rec).map(CustomerView).map_err(key_err)
    }

    /// Creates an API key and returns its secret once. ADMIN keys take no `customerId`.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        customer_id: Option<ID>,
        role: RoleGql,
        label: String,
    ) -> Result<CreatedApiKey> {
        let (rec, secret) = state(ctx)
            .keys
            .create_key(
                customer_id.as_ref().map(|c| c.as_str()),
                role.into(),
                &label,
            )
            .map_err(key_err)?;
        Ok(CreatedApiKey {
            key: ApiKeyView(rec),
            secret,
        })
    }

    /// Revokes a key: it is refused from the next request on.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> Result<ApiKeyView> {
        state(ctx).keys.revoke(&id).map(ApiKeyView).map_err(key_err)
    }
}
