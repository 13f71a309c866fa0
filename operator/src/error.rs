//! The operator's errors, and which of them a changed spec rather than time will fix.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("mailstore: {0}")]
    Mailstore(#[from] tonic::Status),
    #[error("cannot reach the mailstore at {url}: {message}")]
    MailstoreUnreachable { url: String, message: String },
    #[error("key material: {0}")]
    Key(String),
    /// The spec asks for something that cannot be done; only a change to it helps.
    #[error("{0}")]
    Invalid(String),
    #[error("serialising an object: {0}")]
    Serialize(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
