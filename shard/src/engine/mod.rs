//! Storage and concurrency: the redb shard file and the actix actor that owns it.
//!
//! Nothing here knows HTTP or GraphQL; the gateway reaches a shard only through the
//! messages of [`actor`].

mod actor;
mod erase;
mod error;
mod index;
mod reader;
mod scrub;
mod state_check;
mod store;
mod tables;

pub use actor::{
    Append, AppendReply, CommitObserver, CommitReport, Erase, GetConsistencyProof, GetCurrentState,
    GetCustomerEvents, GetDailyCounts, GetEvent, GetHead, GetHistory, GetInclusionProof,
    GetWriteStats, INDEX_DELAY_MS, IndexUpTo, MAILBOX_CAPACITY, Published, Scrub, ShardActor,
    ShardHandle, Stop, Submit,
};
pub use erase::{Erased, ErasureRequest, ErasureTarget};
pub use error::{
    AppendError, ErasureError, OpenError, QueryError, StorageError, VerifyJournalError,
};
pub use index::{PurposeState, apply_to_state};
pub use reader::{
    AuditOpen, ConsistencyProof, DailyCount, Expiring, ExpiryCursor, InclusionProof, IndexMismatch,
    IndexReport, MAX_PAGE_SIZE, Order, Page, ShardReader, StoredEvent, StoredPersonal,
};
pub use scrub::ScrubReport;
pub use store::{
    Appended, MAX_INDEX_LAG_ENTRIES, SHARD_CACHE_BYTES, STORE_FORMAT_VERSION, Store, WriteStats,
};
