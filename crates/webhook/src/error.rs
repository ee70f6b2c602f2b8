//! The crate's one error type: configuration problems, found before anything is served.

use crate::{TlsFile, TlsProblem};

/// Errors of this crate (configuration only: the endpoint itself answers every request).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// a word of the accept list is not `message`, `status`, `error`, `change` or `all`
    #[error("unknown notification kind {0:?} (expected message, status, error, change or all)")]
    UnknownKind(String),
    /// the accept list names no kind
    #[error("the accept list is empty")]
    EmptyAccept,
    /// a TLS file (certificate chain, private key, client CA bundle) cannot be read or used
    #[error("{file} {}: {problem}", path.display())]
    TlsFile {
        /// which file
        file: TlsFile,
        /// where it was read from
        path: std::path::PathBuf,
        /// what is wrong with it
        problem: TlsProblem,
        /// the underlying error, when there is one
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// the name a client certificate must carry is empty
    #[error("the client certificate subject is empty")]
    EmptyClientSubject,
}
