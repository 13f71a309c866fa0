//! The mailstore's error type and its mapping to gRPC status codes.

use tonic::{Code, Status};

/// Everything a mailstore operation can answer besides success. Each variant is one gRPC
/// status code; the message is meant for the client (and, through it, for a person).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A quota would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("invalid username or password")]
    Unauthenticated,
    #[error("{0}")]
    PermissionDenied(String),
    /// The database could not be reached or failed; the operation may be retried.
    #[error("database unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The service could not start (a port is taken, NATS is unreachable).
    #[error("{0}")]
    Startup(String),
    /// A bug: an invariant the code relies on did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = match &error {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::QuotaExceeded(_) => Code::ResourceExhausted,
            Error::Unauthenticated => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Database(_) | Error::Migrate(_) | Error::Startup(_) => Code::Unavailable,
            Error::Internal(_) => Code::Internal,
        };
        if code == Code::Unavailable || code == Code::Internal {
            tracing::error!(%error, "mailstore request failed");
        }
        Status::new(code, error.to_string())
    }
}
