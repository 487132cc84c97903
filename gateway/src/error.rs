//! The gateway's errors and their one mapping to gRPC: every failure becomes a trailers-only gRPC
//! response (HTTP 200, `grpc-status`, `grpc-message`), never a bare HTTP error.

use std::time::Duration;

use http::Response;
use tonic::body::Body;
use tonic::{Code, Status};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("rate limit exceeded for {identity}; retry in {} ms", retry_after.as_millis())]
    RateLimited {
        identity: String,
        retry_after: Duration,
    },
    /// Too many calls of one identity in progress.
    #[error("{0}")]
    Busy(String),
    #[error("deadline exceeded at the gateway")]
    DeadlineExceeded,
    #[error("no healthy backend: {0}")]
    NoBackend(String),
    /// The backend failed before sending response headers (connect refused, reset, ...).
    #[error("backend {backend} unavailable: {}", causes(source.as_ref()))]
    Upstream { backend: String, source: BoxError },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Internal(String),
}

/// An error and its sources, `outer: inner: ...` (hyper's own text stops at the outermost).
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = s.source();
    }
    text
}

impl From<polarway_access::AccessError> for GatewayError {
    fn from(e: polarway_access::AccessError) -> Self {
        match e {
            polarway_access::AccessError::Unauthenticated(m) => Self::Unauthenticated(m),
            polarway_access::AccessError::PermissionDenied(m) => Self::PermissionDenied(m),
        }
    }
}

impl GatewayError {
    pub fn code(&self) -> Code {
        match self {
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::RateLimited { .. } | Self::Busy(_) => Code::ResourceExhausted,
            Self::DeadlineExceeded => Code::DeadlineExceeded,
            Self::NoBackend(_) | Self::Upstream { .. } => Code::Unavailable,
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::Internal(_) => Code::Internal,
        }
    }

    pub fn into_status(self) -> Status {
        let mut status = Status::new(self.code(), self.to_string());
        if let Self::RateLimited { retry_after, .. } = &self {
            // Both the plain header clients read and gRPC's own pushback header.
            let ms = retry_after.as_millis().max(1).to_string();
            if let Ok(v) = ms.parse() {
                status.metadata_mut().insert("retry-after-ms", v);
            }
            if let Ok(v) = ms.parse() {
                status.metadata_mut().insert("grpc-retry-pushback-ms", v);
            }
        }
        status
    }

    /// A trailers-only gRPC response carrying this error.
    pub fn into_response(self) -> Response<Body> {
        self.into_status().into_http()
    }
}

pub use polarway_telemetry::header_status;
