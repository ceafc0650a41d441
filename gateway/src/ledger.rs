//! The data directory: ledger metadata, the signing key, the shards and routing.
//!
//! Layout: `ledger.redb` (shard count, ledger name, checkpoints), `signing-key`
//! (ed25519 secret, mode 0600), `shards/shard-NNNN.redb`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use redb::{Database, ReadableTable, TableDefinition};
use shard::checkpoint::valid_origin;
use shard::engine::{CommitObserver, GroupCommit, OpenError, ShardHandle, Store};

use crate::config::{DEFAULT_LEDGER_NAME, MAX_SHARDS, ServeConfig, default_shards};
use crate::shards::ShardClient;

/// `ledger.redb`: `shard_count` (u32 BE) and `ledger_name` (UTF-8).
pub const LEDGER_META: TableDefinition<&str, &[u8]> = TableDefinition::new("ledger_meta");
/// `ledger.redb`: checkpoint number → signed note.
pub const CHECKPOINTS: TableDefinition<u64, &str> = TableDefinition::new("checkpoints");

/// redb's page cache for `ledger.redb`. redb's default (1 GiB) let the cache keep every
/// checkpoint page read or written: paging through 300,000 checkpoints (a server issues
/// one a second while it writes) took the server from 31 to 243 MiB of RSS, and auditing
/// a ledger of a million checkpoints held 0.8 GB. What this file serves from its cache is
/// small and hot (keys at start, the latest checkpoint); older checkpoints come from the
/// OS page cache.
pub const LEDGER_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// A redb builder for `ledger.redb` with the bounded cache: every opener of the file (the
/// server, offline admin commands, the audit) uses it.
pub fn ledger_db_builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(LEDGER_CACHE_BYTES);
    builder
}

/// Why the ledger could not be opened. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenLedgerError {
    /// Filesystem trouble.
    #[error("{path}: {source}")]
    Io {
        /// Path concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The metadata database failed.
    #[error("ledger metadata: {0}")]
    Meta(String),
    /// `--shards` disagrees with the ledger.
    #[error(
        "this ledger was created with {stored} shards; --shards {asked} cannot change it (omit --shards, or use a new --data-dir)"
    )]
    ShardCount {
        /// Count stored in the ledger.
        stored: u32,
        /// Count asked for.
        asked: u32,
    },
    /// `--ledger-name` disagrees with the ledger.
    #[error(
        "this ledger is named {stored:?}; --ledger-name {asked:?} cannot rename it (checkpoints are signed under the name)"
    )]
    LedgerName {
        /// Stored name.
        stored: String,
        /// Name asked for.
        asked: String,
    },
    /// Bad configuration value.
    #[error("{0}")]
    Config(String),
    /// The signing key file is unusable.
    #[error("signing key {path}: {reason}")]
    SigningKey {
        /// Path of the key.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A shard refused to open.
    #[error(transparent)]
    Shard(#[from] shard::engine::OpenError),
}

fn meta_err(e: impl std::fmt::Display) -> OpenLedgerError {
    OpenLedgerError::Meta(e.to_string())
}

/// The open ledger: shards, signing key, metadata database.
pub(crate) struct Ledger {
    pub(crate) name: String,
    pub(crate) shards: Vec<ShardClient>,
    pub(crate) signing_key: SigningKey,
    pub(crate) meta: Arc<Database>,
}

/// Opens the `count` shard files in `shards_dir`, as many at once as there are cores (a
/// migration or an index rebuild at open is CPU and disk work per shard: on two cores two
/// at once; not more, so that their caches stay within the memory budget).
fn open_stores(shards_dir: &Path, count: u32) -> Result<Vec<Store>, OpenError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ids: Vec<u32> = (0..count).collect();
    let mut stores = Vec::with_capacity(count as usize);
    for group in ids.chunks(cores) {
        let opened: Vec<Result<Store, OpenError>> = std::thread::scope(|scope| {
            let opening: Vec<_> = group
                .iter()
                .map(|&id| {
                    let path = shards_dir.join(format!("shard-{id:04}.redb"));
                    scope.spawn(move || Store::open(&path, id))
                })
                .collect();
            opening
                .into_iter()
                .map(|t| t.join().expect("opening a shard does not panic"))
                .collect()
        });
        for store in opened {
            stores.push(store?);
        }
    }
    Ok(stores)
}

impl Ledger {
    /// Opens (creating if needed) the ledger in `config.data_dir`.
    pub(crate) fn open(
        config: &ServeConfig,
        observer: Option<CommitObserver>,
    ) -> Result<Ledger, OpenLedgerError> {
        let dir = &config.data_dir;
        create_dir(dir)?;
        create_dir(&dir.join("shards"))?;
        let meta = ledger_db_builder()
            .create(dir.join("ledger.redb"))
            .map_err(meta_err)?;
        let (count, name) = settle_identity(&meta, config)?;
        let signing_key = match &config.signing_key_file {
            Some(path) => read_signing_key(path)?,
            None => load_or_create_key(&dir.join("signing-key"))?,
        };
        let mut shards = Vec::with_capacity(count as usize);
        for (id, store) in (0..count).zip(open_stores(&dir.join("shards"), count)?) {
            let handle = ShardHandle::serve(
                store,
                observer.clone(),
                config.shard_mailbox_capacity,
                GroupCommit::default(),
            );
            shards.push(ShardClient::local(id, handle, config.overload_wait_ms));
        }
        Ok(Ledger {
            name,
            shards,
            signing_key,
            meta: Arc::new(meta),
        })
    }

    /// The shard that owns `customer_id`: a stable hash modulo the shard count.
    pub(crate) fn shard_for(&self, customer_id: &str) -> &ShardClient {
        let h = blake3::hash(customer_id.as_bytes());
        let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        &self.shards[(n % self.shards.len() as u64) as usize]
    }
}

fn create_dir(path: &Path) -> Result<(), OpenLedgerError> {
    fs::create_dir_all(path).map_err(|source| OpenLedgerError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads or records the shard count and ledger name; refuses changes.
fn settle_identity(db: &Database, config: &ServeConfig) -> Result<(u32, String), OpenLedgerError> {
    let txn = db.begin_write().map_err(meta_err)?;
    let out = {
        let mut meta = txn.open_table(LEDGER_META).map_err(meta_err)?;
        txn.open_table(CHECKPOINTS).map_err(meta_err)?;
        let stored_count = meta
            .get("shard_count")
            .map_err(meta_err)?
            .map(|v| u32::from_be_bytes(v.value().try_into().unwrap_or([0; 4])));
        let stored_name = meta
            .get("ledger_name")
            .map_err(meta_err)?
            .map(|v| String::from_utf8_lossy(v.value()).to_string());
        let count = match (stored_count, config.shards) {
            (Some(s), Some(a)) if s != a => {
                return Err(OpenLedgerError::ShardCount {
                    stored: s,
                    asked: a,
                });
            }
            (Some(s), _) => s,
            (None, a) => a.unwrap_or_else(default_shards),
        };
        if !(1..=MAX_SHARDS).contains(&count) {
            return Err(OpenLedgerError::Config(format!(
                "--shards must be between 1 and {MAX_SHARDS}"
            )));
        }
        let name = match (stored_name, &config.ledger_name) {
            (Some(s), Some(a)) if &s != a => {
                return Err(OpenLedgerError::LedgerName {
                    stored: s,
                    asked: a.clone(),
                });
            }
            (Some(s), _) => s,
            (None, a) => a.clone().unwrap_or_else(|| DEFAULT_LEDGER_NAME.to_string()),
        };
        if !valid_origin(&name) {
            return Err(OpenLedgerError::Config(
                "--ledger-name must be 1-128 characters of A-Z a-z 0-9 . / _ -".into(),
            ));
        }
        meta.insert("shard_count", count.to_be_bytes().as_slice())
            .map_err(meta_err)?;
        meta.insert("ledger_name", name.as_bytes())
            .map_err(meta_err)?;
        (count, name)
    };
    txn.commit().map_err(meta_err)?;
    Ok(out)
}

/// The checkpoint signing key in `path` (32 raw bytes or 64 hex digits, as `serve` writes
/// `<data-dir>/signing-key`).
pub fn read_signing_key(path: &Path) -> Result<SigningKey, OpenLedgerError> {
    let bad = |reason: &str| OpenLedgerError::SigningKey {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    let raw = fs::read(path).map_err(|source| OpenLedgerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&raw);
    let bytes: [u8; 32] = if raw.len() == 32 {
        raw.try_into().expect("32 bytes")
    } else {
        shard::hash::Hash::from_hex(text.trim())
            .ok_or_else(|| bad("must hold 32 raw bytes or 64 hex digits"))?
            .0
    };
    Ok(SigningKey::from_bytes(&bytes))
}

fn load_or_create_key(path: &Path) -> Result<SigningKey, OpenLedgerError> {
    if path.exists() {
        return read_signing_key(path);
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| OpenLedgerError::SigningKey {
        path: path.to_path_buf(),
        reason: format!("no randomness: {e}"),
    })?;
    write_private(path, shard::hash::Hash(secret).to_hex().as_bytes())?;
    tracing::info!(path = %path.display(), "generated a new checkpoint signing key");
    Ok(SigningKey::from_bytes(&secret))
}

/// Writes a secret file readable by its owner only (mode 0600), durably.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), OpenLedgerError> {
    let io = |source| OpenLedgerError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)
}
