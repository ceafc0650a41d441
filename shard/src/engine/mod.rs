//! Storage and concurrency: the redb shard file and the actix actor that owns it.
//!
//! Nothing here knows HTTP or GraphQL; the gateway reaches a shard only through the
//! messages of the `actor` module ([`ShardHandle`] and the messages it takes).

mod actor;
mod db;
mod erase;
mod error;
mod index;
mod index_check;
mod index_file;
mod index_writer;
mod memory;
mod node_cache;
mod reader;
mod scrub;
mod shard_audit;
mod state_check;
mod store;
mod subjects_walk;
mod tables;

pub use actor::{
    Append, AppendReply, BUSY_WINDOW_MS, CUSTOMER_INDEX_DELAY_MS, CommitObserver, CommitReport,
    Erase, GROUP_COMMIT_EARLY_EVENTS, GROUP_COMMIT_WAIT_US, GetConsistencyProof, GetCurrentState,
    GetCustomerEvents, GetDailyCounts, GetEvent, GetHead, GetHistory, GetInclusionProof,
    GetWriteStats, GroupCommit, INDEX_DELAY_MS, IndexUpTo, MAILBOX_CAPACITY, Published, Scrub,
    ShardActor, ShardHandle, Stop, Submit,
};
pub use erase::{Erased, ErasureRequest, ErasureTarget};
pub use error::{
    AppendError, ErasureError, OpenError, QueryError, ShardAuditError, StorageError,
    VerifyJournalError,
};
pub use index::{PurposeState, apply_to_state};
pub use index_check::{IndexMismatch, IndexReport};
pub use index_file::{INDEX_CACHE_BYTES, index_path};
pub use index_writer::{INDEX_RETRY_MS, IndexHold};
pub use memory::{MEMORY_RELEASE_INTERVAL_MS, release_memory, set_memory_release};
pub use node_cache::{CACHED_NODE_MIN_LEVEL, MAX_CACHED_NODES};
pub use reader::{
    AuditOpen, ConsistencyProof, DailyCount, Expiring, ExpiryCursor, InclusionProof, MAX_PAGE_SIZE,
    Order, Page, Personal, ShardReader, StoredEvent, StoredPersonal,
};
pub use scrub::{
    SCRUB_COPY_CACHE_BYTES, SCRUB_FREE_SPACE_PERCENT, SCRUB_MIN_FREE_BYTES, SCRUB_SPACING_FACTOR,
    ScrubCopy, ScrubJob, ScrubReport, ScrubSpace, ScrubStage,
};
pub use shard_audit::{AUDIT_BATCH_BYTES, AUDIT_BATCHES_IN_FLIGHT};
pub use state_check::{ClaimSpill, STATE_CLAIM_BYTES_PER_PASS};
pub use store::{
    Appended, IndexTier, MAX_INDEX_LAG_ENTRIES, SHARD_CACHE_BYTES, STORE_FORMAT_VERSION, Store,
    WriteStats,
};
pub use subjects_walk::SubjectsPass;
pub use tables::in_index_file;
