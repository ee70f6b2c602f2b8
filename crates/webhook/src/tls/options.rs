//! What a [`Tls`](super::Tls) is built from ([`TlsOptions`], [`ClientAuth`]) and how a file
//! that cannot be used is named in an error ([`TlsFile`], [`TlsProblem`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{DEFAULT_POLL_INTERVAL, META_CLIENT_SUBJECT};

/// Where the server's certificate and key are, and whether clients must present one.
///
/// ```
/// use wa_webhook::{ClientAuth, TlsOptions};
/// let mut options = TlsOptions::new("/etc/wa/fullchain.pem", "/etc/wa/privkey.pem");
/// options.client_auth = Some(ClientAuth::meta("/etc/wa/meta-ca.pem"));
/// assert_eq!(
///     options.client_auth.unwrap().subject,
///     "client.webhooks.fbclientcerts.com"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// PEM file with the certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Require a client certificate (mutual TLS); `None` accepts any client.
    pub client_auth: Option<ClientAuth>,
    /// How often [`Tls::watch`] reads the files for a change. Default 5 s.
    pub poll_interval: Duration,
}

impl TlsOptions {
    /// Serves the certificate chain in `cert` with the key in `key`, no client certificates.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            client_auth: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

/// What a client certificate must be: chained to a CA in `ca`, naming `subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientAuth {
    /// PEM bundle of the CAs a client certificate may chain to (several during a rotation).
    pub ca: PathBuf,
    /// The name the certificate must carry as its subject CN or as a DNS SAN (ASCII case
    /// ignored).
    pub subject: String,
}

impl ClientAuth {
    /// Clients must chain to `ca` and name `subject`.
    pub fn new(ca: impl Into<PathBuf>, subject: impl Into<String>) -> Self {
        Self {
            ca: ca.into(),
            subject: subject.into(),
        }
    }

    /// Meta's webhook client certificate: chained to `ca`, named [`META_CLIENT_SUBJECT`].
    pub fn meta(ca: impl Into<PathBuf>) -> Self {
        Self::new(ca, META_CLIENT_SUBJECT)
    }
}

/// Which file a [`WebhookError::TlsFile`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFile {
    /// the server's certificate chain ([`TlsOptions::cert`])
    Certificate,
    /// the server's private key ([`TlsOptions::key`])
    Key,
    /// the client CA bundle ([`ClientAuth::ca`])
    ClientCa,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFile::Certificate => "certificate file",
            TlsFile::Key => "key file",
            TlsFile::ClientCa => "client CA file",
        })
    }
}

/// What is wrong with a TLS file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsProblem {
    /// it cannot be read
    Unreadable,
    /// it is not valid PEM
    NotPem,
    /// it holds no certificate
    NoCertificate,
    /// it holds no private key
    NoKey,
    /// the key cannot be used, or does not belong to the certificate
    KeyMismatch,
    /// a certificate in the CA bundle cannot be used as a trust anchor
    BadCa,
}

impl fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsProblem::Unreadable => "cannot be read",
            TlsProblem::NotPem => "is not valid PEM",
            TlsProblem::NoCertificate => "holds no certificate",
            TlsProblem::NoKey => "holds no private key",
            TlsProblem::KeyMismatch => "holds a key that cannot be used with the certificate",
            TlsProblem::BadCa => "holds a CA certificate that cannot be used",
        })
    }
}
