//! The one place engine errors become GraphQL errors with `extensions.code`.

use async_graphql::{Error, ErrorExtensions};
use shard::engine::{AppendError, ErasureError, QueryError, StorageError};

/// Every `extensions.code` the API produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    BadUserInput,
    NotFound,
    IdempotencyConflict,
    PayloadTooLarge,
    Overloaded,
    Unauthenticated,
    Forbidden,
    RateLimited,
    StorageFailed,
    InsufficientStorage,
    Internal,
}

impl Code {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::NotFound => "NOT_FOUND",
            Code::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::Overloaded => "OVERLOADED",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::RateLimited => "RATE_LIMITED",
            Code::StorageFailed => "STORAGE_FAILED",
            Code::InsufficientStorage => "INSUFFICIENT_STORAGE",
            Code::Internal => "INTERNAL",
        }
    }
}

/// A GraphQL error with `extensions.code`.
pub(crate) fn err(code: Code, message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, e| e.set("code", code.as_str()))
}

/// A request-level error with `extensions.code`, for errors raised outside resolvers
/// (transport, access control).
pub(crate) fn server_error(code: Code, message: impl Into<String>) -> async_graphql::ServerError {
    let mut e = async_graphql::ServerError::new(message, None);
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
    e
}

/// Shorthand for `BAD_USER_INPUT`.
pub(crate) fn bad_input(message: impl Into<String>) -> Error {
    err(Code::BadUserInput, message)
}

/// A failure talking to a shard.
///
/// Deliberately not `Display`: async-graphql converts any `Display` type into an error
/// without a code, so this type can only become a GraphQL error through the mapping below.
#[derive(Debug)]
pub(crate) enum ShardCallError {
    Append(AppendError),
    Query(QueryError),
    Storage(StorageError),
    Erasure(ErasureError),
    Overloaded(u32),
}

impl ShardCallError {
    /// The message for logs and clients.
    pub(crate) fn message(&self) -> String {
        match self {
            ShardCallError::Append(e) => e.to_string(),
            ShardCallError::Query(e) => e.to_string(),
            ShardCallError::Storage(e) => e.to_string(),
            ShardCallError::Erasure(e) => e.to_string(),
            ShardCallError::Overloaded(id) => format!("shard {id} is overloaded; retry shortly"),
        }
    }

    /// The storage error inside, if this is one.
    fn storage(&self) -> Option<&StorageError> {
        match self {
            ShardCallError::Append(AppendError::Storage(e))
            | ShardCallError::Query(QueryError::Storage(e))
            | ShardCallError::Erasure(ErasureError::Storage(e))
            | ShardCallError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<AppendError> for ShardCallError {
    fn from(e: AppendError) -> Self {
        ShardCallError::Append(e)
    }
}

impl From<QueryError> for ShardCallError {
    fn from(e: QueryError) -> Self {
        ShardCallError::Query(e)
    }
}

impl From<ErasureError> for ShardCallError {
    fn from(e: ErasureError) -> Self {
        ShardCallError::Erasure(e)
    }
}

impl From<StorageError> for ShardCallError {
    fn from(e: StorageError) -> Self {
        ShardCallError::Storage(e)
    }
}

impl From<ShardCallError> for Error {
    fn from(e: ShardCallError) -> Error {
        if let Some(failed) = e.storage().filter(|s| s.is_io_failure()) {
            return storage_failed(failed);
        }
        let code = match &e {
            ShardCallError::Append(AppendError::Invalid { .. })
            | ShardCallError::Append(AppendError::BatchSize { .. })
            | ShardCallError::Append(AppendError::MixedCustomers { .. })
            | ShardCallError::Query(QueryError::OutOfRange(_))
            | ShardCallError::Erasure(ErasureError::ReasonTooLong { .. })
            | ShardCallError::Erasure(ErasureError::BadSubject { .. }) => Code::BadUserInput,
            ShardCallError::Append(AppendError::IdempotencyConflict { .. })
            | ShardCallError::Append(AppendError::IdempotencyErased { .. }) => {
                Code::IdempotencyConflict
            }
            ShardCallError::Erasure(ErasureError::NothingToErase) => Code::NotFound,
            ShardCallError::Storage(StorageError::DiskSpace { .. }) => Code::InsufficientStorage,
            ShardCallError::Overloaded(_)
            | ShardCallError::Append(AppendError::ShardStopped)
            | ShardCallError::Query(QueryError::ShardStopped)
            | ShardCallError::Erasure(ErasureError::ShardStopped) => Code::Overloaded,
            _ => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %e.message(), "internal error");
            return err(code, "internal error; the operator's log has the details");
        }
        err(code, e.message())
    }
}

/// `STORAGE_FAILED`: a shard's file failed on I/O (a full disk, a failing device) and the
/// shard refuses writes until the server restarts. The message names the OS error, which
/// holds nothing of a request.
fn storage_failed(e: &StorageError) -> Error {
    let message = match e {
        StorageError::Failed { .. } => e.to_string(),
        other => format!(
            "the shard's storage failed ({other}); fix the cause (free disk space, check the device) and restart the server"
        ),
    };
    err(Code::StorageFailed, message)
}
