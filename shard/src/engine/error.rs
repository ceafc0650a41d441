//! Error types of the engine, one per operation.

use super::index_check::IndexMismatch;
use crate::format::InvalidEvent;
use crate::verify::ChainError;

/// The storage layer failed (I/O, corruption detected by redb, no randomness).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// redb reported an error.
    #[error("storage: {0}")]
    Db(#[from] redb::Error),
    /// A file operation outside redb failed (scrub: rename, directory sync).
    #[error("{what}: {source}")]
    File {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The OS random source failed (salts and keys cannot be made).
    #[error("random source unavailable: {0}")]
    Random(String),
    /// The file was not shut down cleanly (a crash, or a copy of a running server's file)
    /// and redb must repair it before it can be read; a read-only open does not.
    #[error(
        "the file was not shut down cleanly (a crash, or a copy taken while a server ran): redb must repair it before it can be read; audit a copy with --repair"
    )]
    NeedsRepair,
    /// A shard file of an older storage layout, which only a server migrates.
    #[error(
        "the shard file has storage layout {found}; this build reads layout {supported}: serve a copy of the data directory once (which migrates it), then audit that"
    )]
    OldLayout {
        /// Layout in the file.
        found: u32,
        /// Layout this build reads.
        supported: u32,
    },
    /// An index file of another index layout, which only a server rebuilds.
    #[error(
        "the index file has index layout {found}; this build reads layout {supported}: serve a copy of the data directory once (which rebuilds the index file from the journal), then audit that"
    )]
    OtherIndexLayout {
        /// Layout in the file (0: none recorded).
        found: u32,
        /// Layout this build reads.
        supported: u32,
    },
    /// The shard's index writer stopped or failed; its indexes no longer follow the
    /// journal until the shard is reopened (which rebuilds them).
    #[error("index writer: {0}")]
    IndexWriter(String),
    /// A stored value does not have the layout this build writes.
    #[error("corrupt stored value in {table}: {detail}")]
    Corrupt {
        /// Table holding the value.
        table: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A scrub would leave too little free disk space (checked before and during its
    /// copy); the files stay as they were.
    #[error(
        "not enough free disk space for a scrub of the shard: {free_bytes} bytes free, {needed_bytes} needed; nothing was changed. Free disk space (the erased bytes stay in freed pages until a scrub succeeds)"
    )]
    DiskSpace {
        /// Bytes free on the data directory's file system.
        free_bytes: u64,
        /// Bytes the scrub needs free.
        needed_bytes: u64,
    },
    /// Writing one of the shard's files failed earlier (a full disk, a file-size limit, a
    /// failing device). redb refuses a file after an I/O error until it is reopened, so the
    /// shard refuses writes from then on instead of failing each one deeper down.
    #[error(
        "shard {shard_id}: its storage failed ({cause}); nothing of this request was carried out. Fix the cause (free disk space, check the device) and restart the server: the shard then reopens and checks its files"
    )]
    Failed {
        /// The shard.
        shard_id: u32,
        /// The first I/O error, as redb reported it.
        cause: String,
    },
}

impl StorageError {
    /// Whether this is an I/O failure of a file, after which redb refuses the file until it
    /// is reopened (or the shard already refuses because of one).
    pub fn is_io_failure(&self) -> bool {
        matches!(
            self,
            StorageError::Db(redb::Error::Io(_) | redb::Error::PreviousIo)
                | StorageError::Failed { .. }
        )
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Why a shard file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Reading the file failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The file belongs to another shard (files were moved or renamed).
    #[error("the file holds shard {found}, not shard {expected}; check the data directory layout")]
    WrongShard {
        /// Shard id stored in the file.
        found: u32,
        /// Shard id asked for.
        expected: u32,
    },
    /// The file was written by a newer or older, incompatible Assent.
    #[error("storage format version {found} is not supported (this build reads {supported})")]
    UnsupportedFormat {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The stored head disagrees with the journal: the file was altered or damaged.
    #[error(
        "shard {shard_id} refuses to start: {detail}; run `assent audit` on a copy of the data directory"
    )]
    Inconsistent {
        /// Shard concerned.
        shard_id: u32,
        /// What disagrees.
        detail: String,
    },
}

/// Why a batch was not appended. Nothing of the batch was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// An event breaks a validation rule.
    #[error("event {index}: {source}")]
    Invalid {
        /// Position of the event in the batch.
        index: u32,
        /// The rule broken.
        source: InvalidEvent,
    },
    /// An idempotency key was reused with different content.
    #[error(
        "event {index}: idempotency key {key:?} was already used for a different event; use a new key"
    )]
    IdempotencyConflict {
        /// Position of the event in the batch.
        index: u32,
        /// The key.
        key: String,
    },
    /// The idempotency key recorded an event whose personal record was since erased; a
    /// retry must not silently record the person again.
    #[error(
        "event {index}: idempotency key {key:?} belongs to an event that was erased; record a new event with a new key if the person consents again"
    )]
    IdempotencyErased {
        /// Position of the event in the batch.
        index: u32,
        /// The key.
        key: String,
    },
    /// A batch must hold 1..=MAX_BATCH_EVENTS events.
    #[error("a batch holds {count} events; it must hold between 1 and {max}")]
    BatchSize {
        /// Events sent.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// Events of one batch must share a customer (a customer lives on one shard).
    #[error("event {index}: all events of a batch must belong to the same customer")]
    MixedCustomers {
        /// First event with another customer.
        index: u32,
    },
    /// The commit failed; nothing of the batch is stored.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The shard is shutting down or has stopped.
    #[error("the shard is shutting down; retry against the restarted service")]
    ShardStopped,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A proof was asked for sizes or positions the shard does not have.
    #[error("{0}")]
    OutOfRange(String),
    /// Reading failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The shard is shutting down or has stopped.
    #[error("the shard is shutting down; retry against the restarted service")]
    ShardStopped,
}

/// Why a full journal verification failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyJournalError {
    /// The journal is inconsistent at a named sequence number.
    #[error("shard {shard_id}: {source}")]
    Chain {
        /// Shard concerned.
        shard_id: u32,
        /// First inconsistency.
        source: ChainError,
    },
    /// Reading failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a whole-shard audit ([`crate::engine::ShardReader::audit`]) failed: its first
/// problem, the journal's before the indexes'.
#[derive(Debug, thiserror::Error)]
pub enum ShardAuditError {
    /// The journal, its chain or its stored Merkle tree is inconsistent, or unreadable.
    #[error(transparent)]
    Journal(#[from] VerifyJournalError),
    /// An index disagrees with the journal.
    #[error("index: {0}")]
    Index(IndexMismatch),
}

impl From<StorageError> for ShardAuditError {
    fn from(e: StorageError) -> ShardAuditError {
        ShardAuditError::Journal(e.into())
    }
}

/// Why an erasure did not happen. Nothing was erased.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// The reason is longer than `MAX_ERASURE_REASON_BYTES`.
    #[error("reason: at most {max} bytes; give a ticket number or policy name, not a story")]
    ReasonTooLong {
        /// The limit.
        max: u64,
    },
    /// The subject id is empty or longer than `MAX_SUBJECT_ID_BYTES`.
    #[error("subjectId: must be 1..={max} bytes")]
    BadSubject {
        /// The limit.
        max: u64,
    },
    /// Nothing matched: the customer has no such subject (or it was erased already).
    #[error(
        "nothing to erase: no stored personal record matches (never recorded, or erased already)"
    )]
    NothingToErase,
    /// The commit failed; nothing was erased.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The shard is shutting down or has stopped.
    #[error("the shard is shutting down; retry against the restarted service")]
    ShardStopped,
}
