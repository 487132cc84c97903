//! The worker's error type and its one mapping to gRPC status codes.

use tonic::Status;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Aborted(String),
    /// Refused by a rule: `reason` says which kind (`method`, `dataset`, `statement`, `path`,
    /// `sandbox`) for the `polarway_authz_denied_total` series.
    #[error("{message}")]
    PermissionDenied {
        reason: &'static str,
        message: String,
    },
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// A status from the transport (e.g. the client cancelled), passed through as it is.
    #[error("{0}")]
    Status(#[from] tonic::Status),
}

impl Error {
    pub fn denied(reason: &'static str, message: impl Into<String>) -> Self {
        Error::PermissionDenied {
            reason,
            message: message.into(),
        }
    }

    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        Error::Internal(format!("{context}: {err}"))
    }
}

impl Error {
    /// A failed disk or store operation. A full disk is RESOURCE_EXHAUSTED: nothing was stored,
    /// and retrying will not help until space is freed. Anything else is UNAVAILABLE, retriable
    /// from the client's point of view.
    pub fn storage(err: &std::io::Error) -> Self {
        use std::io::ErrorKind::{QuotaExceeded, StorageFull};
        // ENOSPC and EDQUOT.
        if matches!(err.kind(), StorageFull | QuotaExceeded) {
            Error::ResourceExhausted(format!(
                "the worker's disk is full ({err}); nothing was stored: free space in its data directory (or its staging directory), or store less"
            ))
        } else {
            Error::Unavailable(format!("storage I/O failed: {err}"))
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::storage(&err)
    }
}

impl From<polarway_access::AccessError> for Error {
    fn from(err: polarway_access::AccessError) -> Self {
        match err {
            polarway_access::AccessError::Unauthenticated(m) => {
                Error::Status(Status::unauthenticated(m))
            }
            // A grant refuses either the method or a dataset; the message names which.
            polarway_access::AccessError::PermissionDenied(m) => Error::denied("grant", m),
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(err: tokio::task::JoinError) -> Self {
        Error::internal("worker task failed", err)
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        tracing::debug!(error = %err, "call failed");
        match err {
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::Aborted(m) => Status::aborted(m),
            Error::PermissionDenied { message, .. } => Status::permission_denied(message),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            Error::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::Status(s) => s,
            Error::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal(m)
            }
        }
    }
}
