//! The runtime's error type.

/// Errors of the transport implementations and the service plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker or the local store cannot be reached or refused the operation; the caller
    /// should answer a temporary failure (SMTP 451 4.3.0, gRPC UNAVAILABLE) and retry later.
    #[error("{what} unavailable: {detail}")]
    Unavailable { what: &'static str, detail: String },
    /// Stored data could not be decoded.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// The caller passed a value the transports cannot carry (a subject with a space, a header
    /// value with a line break, an empty message id). Retrying the same call cannot succeed.
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn unavailable(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Error::Unavailable { what, detail: detail.to_string() }
    }

    pub fn invalid(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Error::Invalid { what, detail: detail.to_string() }
    }
}
