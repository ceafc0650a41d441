//! Signed checkpoints: issued on a timer or on demand, stored durably, each proven to
//! extend the previous one before it is signed. Receipts are built here.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use redb::{Database, ReadableDatabase, ReadableTable};
use shard::checkpoint::{Checkpoint, open_checkpoint};
use shard::merkle::{Blake3Tree, inclusion_proof, verify_consistency};
use shard::receipt::{
    RECEIPT_VERSION, Receipt, ReceiptCombinedProof, ReceiptPersonal, ReceiptShardProof,
};
use shard::verify::ShardHead;

use crate::errors::{Code, ShardCallError, err};
use crate::ids::event_id;
use crate::ledger::{CHECKPOINTS, Ledger};

/// A checkpoint with its signed note.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) note: String,
}

/// Issues and serves checkpoints.
pub(crate) struct Checkpointer {
    ledger: Arc<Ledger>,
    latest: RwLock<Option<Arc<Issued>>>,
    /// Serialises issuing: concurrent on-demand requests share one signature.
    issuing: tokio::sync::Mutex<()>,
}

/// Why a checkpoint could not be issued. Not `Display`, for the reason given on
/// [`ShardCallError`].
#[derive(Debug)]
pub(crate) enum IssueError {
    Shard(ShardCallError),
    Storage(String),
    NotAnExtension { shard: u32, reason: String },
}

impl IssueError {
    /// The message for logs.
    pub(crate) fn message(&self) -> String {
        match self {
            IssueError::Shard(e) => e.message(),
            IssueError::Storage(e) => format!("checkpoint storage: {e}"),
            IssueError::NotAnExtension { shard, reason } => {
                format!("shard {shard} does not extend the previous checkpoint: {reason}")
            }
        }
    }
}

impl From<ShardCallError> for IssueError {
    fn from(e: ShardCallError) -> Self {
        IssueError::Shard(e)
    }
}

impl From<IssueError> for async_graphql::Error {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Shard(s) => s.into(),
            other => {
                tracing::error!(error = %other.message(), "checkpoint failure");
                err(
                    Code::Internal,
                    "checkpoint could not be issued; the operator's log has the details",
                )
            }
        }
    }
}

fn storage(e: impl std::fmt::Display) -> IssueError {
    IssueError::Storage(e.to_string())
}

impl Checkpointer {
    /// Loads the latest stored checkpoint.
    pub(crate) fn open(ledger: Arc<Ledger>) -> Result<Checkpointer, IssueError> {
        let latest = load_latest(&ledger.meta)?.map(Arc::new);
        Ok(Checkpointer {
            ledger,
            latest: RwLock::new(latest),
            issuing: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn latest(&self) -> Option<Arc<Issued>> {
        self.latest.read().expect("lock").clone()
    }

    /// Issues a checkpoint if any shard moved since the latest one.
    pub(crate) async fn issue_if_changed(&self) -> Result<Option<Arc<Issued>>, IssueError> {
        let _guard = self.issuing.lock().await;
        let heads = self.heads().await?;
        if let Some(l) = self.latest()
            && l.checkpoint.shards == heads
        {
            return Ok(None);
        }
        self.issue(heads).await.map(Some)
    }

    /// A checkpoint whose shard `shard` covers `seq`, issuing one if none does yet.
    pub(crate) async fn covering(&self, shard: u32, seq: u64) -> Result<Arc<Issued>, IssueError> {
        let covers = |i: &Issued| {
            i.checkpoint
                .shards
                .get(shard as usize)
                .is_some_and(|h| h.size > seq)
        };
        if let Some(l) = self.latest().filter(|l| covers(l)) {
            return Ok(l);
        }
        let _guard = self.issuing.lock().await;
        if let Some(l) = self.latest().filter(|l| covers(l)) {
            return Ok(l); // another request issued it while we waited
        }
        let heads = self.heads().await?;
        self.issue(heads).await
    }

    async fn heads(&self) -> Result<Vec<ShardHead>, IssueError> {
        let mut heads = Vec::with_capacity(self.ledger.shards.len());
        for s in &self.ledger.shards {
            heads.push(s.head().await?);
        }
        Ok(heads)
    }

    /// Proves `heads` extend the latest checkpoint, signs, stores durably, publishes.
    async fn issue(&self, heads: Vec<ShardHead>) -> Result<Arc<Issued>, IssueError> {
        let previous = self.latest();
        if let Some(prev) = &previous {
            for (old, new) in prev.checkpoint.shards.iter().zip(&heads) {
                self.check_extension(old, new).await?;
            }
        }
        let number = previous.as_ref().map_or(1, |p| p.checkpoint.number + 1);
        let time_ms = chrono::Utc::now()
            .timestamp_millis()
            .max(previous.as_ref().map_or(0, |p| p.checkpoint.time_ms));
        let checkpoint = Checkpoint {
            origin: self.ledger.name.clone(),
            number,
            time_ms,
            shards: heads,
        };
        let note = checkpoint.sign(&self.ledger.signing_key);
        let db = self.ledger.meta.clone();
        let stored = note.clone();
        actix_web::rt::task::spawn_blocking(move || store(&db, number, &stored))
            .await
            .map_err(storage)??;
        let issued = Arc::new(Issued { checkpoint, note });
        *self.latest.write().expect("lock") = Some(issued.clone());
        Ok(issued)
    }

    async fn check_extension(&self, old: &ShardHead, new: &ShardHead) -> Result<(), IssueError> {
        let not_ext = |reason: String| IssueError::NotAnExtension {
            shard: old.shard_id,
            reason,
        };
        if new.size < old.size {
            return Err(not_ext(format!(
                "size went from {} to {}",
                old.size, new.size
            )));
        }
        let shard = &self.ledger.shards[old.shard_id as usize];
        let proof = shard.consistency_proof(old.size, new.size).await?;
        verify_consistency(
            &Blake3Tree,
            old.size,
            new.size,
            &old.root,
            &new.root,
            &proof.path,
        )
        .map_err(|e| not_ext(e.to_string()))
    }

    /// Checkpoint `number`, if issued.
    pub(crate) fn get(&self, number: u64) -> Result<Option<Issued>, IssueError> {
        let txn = self.ledger.meta.begin_read().map_err(storage)?;
        let table = txn.open_table(CHECKPOINTS).map_err(storage)?;
        let Some(v) = table.get(number).map_err(storage)? else {
            return Ok(None);
        };
        parse_stored(v.value()).map(Some)
    }

    /// Up to `limit` checkpoints with numbers after `after`, oldest first, and whether more follow.
    pub(crate) fn page(&self, after: u64, limit: usize) -> Result<(Vec<Issued>, bool), IssueError> {
        let txn = self.ledger.meta.begin_read().map_err(storage)?;
        let table = txn.open_table(CHECKPOINTS).map_err(storage)?;
        let mut out = Vec::new();
        let mut more = false;
        for row in table.range(after.saturating_add(1)..).map_err(storage)? {
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(parse_stored(row.map_err(storage)?.1.value())?);
        }
        Ok((out, more))
    }

    /// Builds the receipt of entry `seq` of `shard_id`.
    pub(crate) async fn receipt(
        &self,
        shard_id: u32,
        seq: u64,
    ) -> Result<Option<(Receipt, Arc<Issued>)>, IssueError> {
        let shard = &self.ledger.shards[shard_id as usize];
        let Some(event) = shard.event(seq, shard::engine::Personal::Load).await? else {
            return Ok(None);
        };
        let issued = self.covering(shard_id, seq).await?;
        let head = issued.checkpoint.shards[shard_id as usize];
        let proof = shard.inclusion_proof(seq, head.size).await?;
        if proof.root != head.root {
            return Err(IssueError::NotAnExtension {
                shard: shard_id,
                reason: "shard root at the checkpoint's size differs from the signed one".into(),
            });
        }
        let tree = issued.checkpoint.combined_tree();
        let combined = inclusion_proof(&Blake3Tree, &tree, u64::from(shard_id), tree.size())
            .map_err(|e| IssueError::Storage(e.to_string()))?;
        let hex = |v: &[shard::hash::Hash]| v.iter().map(|h| h.to_hex()).collect();
        let receipt = Receipt {
            version: RECEIPT_VERSION,
            event_id: event_id(shard_id, seq),
            entry: B64.encode(&event.entry_bytes),
            personal: event.personal.map(|p| ReceiptPersonal {
                salt: B64.encode(p.salt),
                record: B64.encode(p.record.encode()),
            }),
            shard_proof: ReceiptShardProof {
                shard_id,
                seq,
                tree_size: head.size,
                path: hex(&proof.path),
            },
            combined_proof: ReceiptCombinedProof {
                leaf_index: u64::from(shard_id),
                tree_size: tree.size(),
                path: hex(&combined),
            },
            checkpoint: issued.note.clone(),
        };
        Ok(Some((receipt, issued)))
    }
}

fn store(db: &Database, number: u64, note: &str) -> Result<(), IssueError> {
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut table = txn.open_table(CHECKPOINTS).map_err(storage)?;
        if table.get(number).map_err(storage)?.is_some() {
            return Err(IssueError::Storage(format!(
                "checkpoint {number} already exists"
            )));
        }
        table.insert(number, note).map_err(storage)?;
    }
    txn.commit().map_err(storage)
}

fn parse_stored(note: &str) -> Result<Issued, IssueError> {
    let (checkpoint, _) = open_checkpoint(note, None).map_err(storage)?;
    Ok(Issued {
        checkpoint,
        note: note.to_string(),
    })
}

fn load_latest(db: &Database) -> Result<Option<Issued>, IssueError> {
    let txn = db.begin_read().map_err(storage)?;
    let table = txn.open_table(CHECKPOINTS).map_err(storage)?;
    match table.last().map_err(storage)? {
        Some((_, v)) => parse_stored(v.value()).map(Some),
        None => Ok(None),
    }
}
