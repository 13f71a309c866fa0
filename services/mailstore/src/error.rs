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
    /// A value is larger than the mailstore keeps.
    #[error("{0}")]
    OutOfRange(String),
    #[error("invalid username or password")]
    Unauthenticated,
    #[error("{0}")]
    PermissionDenied(String),
    /// A concurrent change got in the way; retrying the operation is safe.
    #[error("{0}")]
    Conflict(String),
    /// The database could not be reached; the operation may be retried.
    #[error("database unavailable: {0}")]
    Database(sqlx::Error),
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

impl From<sqlx::Error> for Error {
    /// Sorts database errors by what the client should do: a unique-key clash will not go away
    /// by retrying, a deadlock or serialization failure will, a lost connection may, and a
    /// decoding error is a bug.
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::AlreadyExists(format!("already exists: {}", db.message()))
            }
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // PostgreSQL serialization failure and deadlock; SQLite busy and locked.
                Some("40001" | "40P01" | "5" | "6") => {
                    Error::Conflict(format!("concurrent change, retry: {}", db.message()))
                }
                // PostgreSQL connection exceptions (08), insufficient resources (53), operator
                // intervention such as a shutdown (57).
                Some(code) if code.starts_with("08") || code.starts_with("53") || code.starts_with("57") => {
                    Error::Database(error)
                }
                _ => Error::Internal(format!("database: {}", db.message())),
            },
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Error::Database(error),
            _ => Error::Internal(format!("database: {error}")),
        }
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
            Error::OutOfRange(_) => Code::OutOfRange,
            Error::Conflict(_) => Code::Aborted,
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
