use tonic::Code;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a call. Server errors keep the gRPC status code and the server's message,
/// which says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{code:?}: {message}")]
    Server { code: Code, message: String },
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("Arrow data: {0}")]
    Data(String),
    #[error("the call timed out after {0:?}")]
    Timeout(std::time::Duration),
}

impl Error {
    /// The gRPC status code, for server errors and timeouts.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Server { code, .. } => Some(*code),
            Error::Timeout(_) => Some(Code::DeadlineExceeded),
            Error::Connect(_) => Some(Code::Unavailable),
            Error::Data(_) => None,
        }
    }

    /// Transient: worth retrying with backoff.
    pub fn is_retryable(&self) -> bool {
        self.code() == Some(Code::Unavailable)
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Server {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

impl From<tonic::transport::Error> for Error {
    fn from(e: tonic::transport::Error) -> Self {
        use std::error::Error as _;
        let mut msg = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        Error::Connect(msg)
    }
}

impl From<polars::error::PolarsError> for Error {
    fn from(e: polars::error::PolarsError) -> Self {
        Error::Data(e.to_string())
    }
}
