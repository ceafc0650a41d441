//! Customers and API keys: durable records in `ledger.redb`, cached in memory.
//!
//! A key is `asnt_<16 hex id>_<43 base64url chars of 32 random bytes>`: 256 bits of
//! entropy, a prefix secret scanners can match, and an id to find its record. Only
//! `blake3(key)` is stored; checking compares hashes in constant time.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use dashmap::DashMap;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Prefix of every key Assent issues.
pub const KEY_PREFIX: &str = "asnt_";
/// Shortest token accepted from `ASSENT_ADMIN_TOKEN`.
pub const MIN_SUPPLIED_TOKEN_BYTES: usize = 32;
/// Longest label of a key and longest customer name.
pub const MAX_LABEL_BYTES: usize = 200;

const CUSTOMER_RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("customer_records");
const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The operator: manages customers and keys, acts for any customer.
    Admin,
    /// A CMP backend: records and withdraws, reads its own receipts.
    Writer,
    /// A dashboard: every query and subscription of its customer, no writes.
    Reader,
}

/// A customer (website owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    /// Customer id, as used in `customerId`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time (Unix ms).
    pub created_at_ms: i64,
    /// Personal records older than this many days may be erased in bulk.
    pub retention_days: Option<u32>,
    /// Lifetime of a consent recorded without `expiresAt`, in days.
    pub default_consent_lifetime_days: Option<u32>,
}

/// A stored key: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Key id (the part between the prefix and the secret).
    pub id: String,
    /// The customer it belongs to; `None` for admin keys.
    pub customer_id: Option<String>,
    /// Its role.
    pub role: Role,
    /// Operator's label.
    pub label: String,
    /// Creation time (Unix ms).
    pub created_at_ms: i64,
    /// Revocation time; a revoked key is refused at once.
    pub revoked_at_ms: Option<i64>,
    /// blake3 of the whole key, hex.
    pub hash: String,
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key used.
    pub key_id: String,
    /// Its role.
    pub role: Role,
    /// Its customer (`None` for admin).
    pub customer_id: Option<String>,
}

/// Why a customer or key operation failed.
#[derive(Debug)]
pub enum KeyError {
    /// Bad input; the message says which.
    Invalid(String),
    /// No such customer or key.
    NotFound(String),
    /// The id is taken.
    Exists(String),
    /// Storage failed.
    Storage(String),
}

impl KeyError {
    /// Message for clients and logs.
    pub fn message(&self) -> String {
        match self {
            KeyError::Invalid(m) | KeyError::NotFound(m) | KeyError::Exists(m) => m.clone(),
            KeyError::Storage(m) => format!("key storage: {m}"),
        }
    }
}

fn storage(e: impl std::fmt::Display) -> KeyError {
    KeyError::Storage(e.to_string())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn token_hash(token: &str) -> blake3::Hash {
    blake3::hash(token.as_bytes())
}

/// The key id inside a token of Assent's format.
fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 43)
        .then_some(id)
}

/// Customers and keys, durable and cached.
pub struct KeyStore {
    db: Arc<Database>,
    keys: DashMap<String, KeyRecord>,
    customers: DashMap<String, CustomerRecord>,
}

impl KeyStore {
    /// Loads every customer and key from `db` (creating the tables).
    pub fn open(db: Arc<Database>) -> Result<KeyStore, KeyError> {
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(CUSTOMER_RECORDS).map_err(storage)?;
        txn.open_table(API_KEYS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        let store = KeyStore {
            db,
            keys: DashMap::new(),
            customers: DashMap::new(),
        };
        let txn = store.db.begin_read().map_err(storage)?;
        for row in txn
            .open_table(CUSTOMER_RECORDS)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
        {
            let (k, v) = row.map_err(storage)?;
            let rec: CustomerRecord = serde_json::from_slice(v.value()).map_err(storage)?;
            store.customers.insert(k.value().to_string(), rec);
        }
        for row in txn
            .open_table(API_KEYS)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
        {
            let (k, v) = row.map_err(storage)?;
            let rec: KeyRecord = serde_json::from_slice(v.value()).map_err(storage)?;
            store.keys.insert(k.value().to_string(), rec);
        }
        Ok(store)
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        value: &T,
    ) -> Result<(), KeyError> {
        let bytes = serde_json::to_vec(value).map_err(storage)?;
        let txn = self.db.begin_write().map_err(storage)?;
        txn.open_table(table)
            .map_err(storage)?
            .insert(id, bytes.as_slice())
            .map_err(storage)?;
        txn.commit().map_err(storage)
    }

    /// Checks a presented token. `None` when unknown or revoked.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let presented = token_hash(token);
        let matches = |rec: &KeyRecord| {
            rec.revoked_at_ms.is_none()
                && blake3::Hash::from_hex(&rec.hash).is_ok_and(|stored| stored == presented) // constant-time eq
        };
        let found = match token_id(token) {
            Some(id) => self.keys.get(id).filter(|r| matches(r)).map(|r| r.clone()),
            None => self
                .keys
                .iter()
                .find(|r| r.id.starts_with("supplied-") && matches(r))
                .map(|r| r.clone()),
        }?;
        Some(Principal {
            key_id: found.id,
            role: found.role,
            customer_id: found.customer_id,
        })
    }

    /// Whether any key exists (a fresh data directory has none).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Registers an operator-supplied admin token (from `ASSENT_ADMIN_TOKEN`) if new.
    pub fn ensure_supplied_admin(&self, token: &str) -> Result<(), KeyError> {
        if token.len() < MIN_SUPPLIED_TOKEN_BYTES {
            return Err(KeyError::Invalid(format!(
                "ASSENT_ADMIN_TOKEN must be at least {MIN_SUPPLIED_TOKEN_BYTES} bytes of high-entropy text"
            )));
        }
        if self
            .authenticate(token)
            .is_some_and(|p| p.role == Role::Admin)
        {
            return Ok(());
        }
        let hash = token_hash(token).to_hex().to_string();
        let rec = KeyRecord {
            id: format!("supplied-{}", &hash[..16]),
            customer_id: None,
            role: Role::Admin,
            label: "ASSENT_ADMIN_TOKEN".into(),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
            hash,
        };
        self.put(API_KEYS, &rec.id, &rec)?;
        self.keys.insert(rec.id.clone(), rec);
        Ok(())
    }

    /// Creates a key and returns its record and its secret (shown once).
    pub fn create_key(
        &self,
        customer_id: Option<&str>,
        role: Role,
        label: &str,
    ) -> Result<(KeyRecord, String), KeyError> {
        if label.len() > MAX_LABEL_BYTES {
            return Err(KeyError::Invalid(format!(
                "label: at most {MAX_LABEL_BYTES} bytes"
            )));
        }
        match (role, customer_id) {
            (Role::Admin, Some(_)) => {
                return Err(KeyError::Invalid(
                    "an ADMIN key belongs to no customer; omit customerId".into(),
                ));
            }
            (Role::Writer | Role::Reader, None) => {
                return Err(KeyError::Invalid(
                    "a WRITER or READER key needs a customerId".into(),
                ));
            }
            (_, Some(c)) if !self.customers.contains_key(c) => {
                return Err(KeyError::NotFound(format!("no customer {c:?}")));
            }
            _ => {}
        }
        let mut raw = [0u8; 40];
        getrandom::fill(&mut raw).map_err(storage)?;
        let id: String = raw[..8].iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("{KEY_PREFIX}{id}_{}", B64URL.encode(&raw[8..]));
        let rec = KeyRecord {
            id: id.clone(),
            customer_id: customer_id.map(str::to_string),
            role,
            label: label.to_string(),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
            hash: token_hash(&token).to_hex().to_string(),
        };
        self.put(API_KEYS, &id, &rec)?;
        self.keys.insert(id, rec.clone());
        Ok((rec, token))
    }

    /// Revokes a key; it is refused from the next request on.
    pub fn revoke(&self, id: &str) -> Result<KeyRecord, KeyError> {
        let mut rec = self
            .keys
            .get(id)
            .map(|r| r.clone())
            .ok_or_else(|| KeyError::NotFound(format!("no key {id:?}")))?;
        if rec.revoked_at_ms.is_none() {
            rec.revoked_at_ms = Some(now_ms());
            self.put(API_KEYS, id, &rec)?;
            self.keys.insert(id.to_string(), rec.clone());
        }
        Ok(rec)
    }

    /// Keys of a customer (`None`: admin keys), oldest first.
    pub fn keys_of(&self, customer_id: Option<&str>) -> Vec<KeyRecord> {
        let mut v: Vec<KeyRecord> = self
            .keys
            .iter()
            .filter(|r| r.customer_id.as_deref() == customer_id)
            .map(|r| r.clone())
            .collect();
        v.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        v
    }

    /// Creates a customer.
    pub fn create_customer(&self, rec: CustomerRecord) -> Result<CustomerRecord, KeyError> {
        shard::format::validate_customer_id(&rec.id)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        if rec.name.is_empty() || rec.name.len() > MAX_LABEL_BYTES {
            return Err(KeyError::Invalid(format!(
                "name: 1-{MAX_LABEL_BYTES} bytes"
            )));
        }
        if self.customers.contains_key(&rec.id) {
            return Err(KeyError::Exists(format!(
                "customer {:?} already exists",
                rec.id
            )));
        }
        self.put(CUSTOMER_RECORDS, &rec.id, &rec)?;
        self.customers.insert(rec.id.clone(), rec.clone());
        Ok(rec)
    }

    /// Replaces a customer's mutable fields.
    pub fn update_customer(&self, rec: CustomerRecord) -> Result<CustomerRecord, KeyError> {
        if !self.customers.contains_key(&rec.id) {
            return Err(KeyError::NotFound(format!("no customer {:?}", rec.id)));
        }
        self.put(CUSTOMER_RECORDS, &rec.id, &rec)?;
        self.customers.insert(rec.id.clone(), rec.clone());
        Ok(rec)
    }

    /// One customer.
    pub fn customer(&self, id: &str) -> Option<CustomerRecord> {
        self.customers.get(id).map(|r| r.clone())
    }

    /// The customer's default consent lifetime (days), read without copying its record
    /// (every recorded event asks).
    pub fn default_consent_lifetime_days(&self, id: &str) -> Option<u32> {
        self.customers
            .get(id)
            .and_then(|r| r.default_consent_lifetime_days)
    }

    /// Every customer that has a retention period, with it (days).
    pub fn retention_periods(&self) -> Vec<(String, u32)> {
        self.customers
            .iter()
            .filter_map(|r| r.retention_days.map(|d| (r.id.clone(), d)))
            .collect()
    }

    /// Customers with ids after `after`, in id order, and whether more follow.
    pub fn customers_page(&self, after: Option<&str>, limit: usize) -> (Vec<CustomerRecord>, bool) {
        let mut ids: Vec<String> = self
            .customers
            .iter()
            .map(|r| r.id.clone())
            .filter(|id| after.is_none_or(|a| id.as_str() > a))
            .collect();
        ids.sort();
        let more = ids.len() > limit;
        let page = ids
            .into_iter()
            .take(limit)
            .filter_map(|id| self.customer(&id))
            .collect();
        (page, more)
    }
}
