//! Storage and concurrency: the redb shard file and the actix actor that owns it.
//!
//! Nothing here knows HTTP or GraphQL; the gateway reaches a shard only through the
//! messages of [`actor`].

mod actor;
mod error;
mod index;
mod reader;
mod store;
mod tables;

pub use actor::{
    Append, AppendReply, CommitObserver, CommitReport, GetConsistencyProof, GetCurrentState,
    GetCustomerEvents, GetDailyCounts, GetEvent, GetHead, GetHistory, GetInclusionProof,
    GetWriteStats, MAILBOX_CAPACITY, Published, ShardActor, ShardHandle, Stop, Submit,
};
pub use error::{AppendError, OpenError, QueryError, StorageError, VerifyJournalError};
pub use index::{PurposeState, apply_to_state};
pub use reader::{
    ConsistencyProof, DailyCount, InclusionProof, IndexMismatch, IndexReport, MAX_PAGE_SIZE, Order,
    Page, ShardReader, StoredEvent, StoredPersonal,
};
pub use store::{Appended, SHARD_CACHE_BYTES, STORE_FORMAT_VERSION, Store, WriteStats};
