//! The rustls configuration built from the PEM files: read together, parsed, checked against
//! each other, with the client verifier of [`ClientAuth`](super::ClientAuth) when one is set.
//! An error names the file and what is wrong with it, never its content.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::{ClientAuth, TlsFile, TlsOptions, TlsProblem};
use crate::WebhookError;

/// ALPN protocols offered, in order of preference; hyper-util's auto builder serves both.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The files' bytes as read together.
pub(super) struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Option<Vec<u8>>,
}

impl Files {
    pub(super) fn read(options: &TlsOptions) -> Result<Files, WebhookError> {
        let read = |file, path: &Path| {
            std::fs::read(path)
                .map_err(|e| file_error(options, file, TlsProblem::Unreadable, Some(Box::new(e))))
        };
        Ok(Files {
            cert: read(TlsFile::Certificate, &options.cert)?,
            key: read(TlsFile::Key, &options.key)?,
            ca: match &options.client_auth {
                Some(auth) => Some(read(TlsFile::ClientCa, &auth.ca)?),
                None => None,
            },
        })
    }

    /// One digest over all three, each prefixed by its length so no two sets collide.
    pub(super) fn digest(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [Some(&self.cert), Some(&self.key), self.ca.as_ref()] {
            let part = part.map_or(&[][..], Vec::as_slice);
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// The rustls configuration for `files`: ring, TLS 1.2 and 1.3, ALPN h2 and http/1.1, and the
/// client verifier when [`TlsOptions::client_auth`] asks for one.
pub(super) fn build(
    options: &TlsOptions,
    files: &Files,
) -> Result<Arc<ServerConfig>, WebhookError> {
    let fail = |file, problem, source: Option<BoxError>| file_error(options, file, problem, source);
    let chain = CertificateDer::pem_slice_iter(&files.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(TlsFile::Certificate, TlsProblem::NotPem, Some(Box::new(e))))?;
    if chain.is_empty() {
        return Err(fail(TlsFile::Certificate, TlsProblem::NoCertificate, None));
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key).map_err(|e| match e {
        pem::Error::NoItemsFound => fail(TlsFile::Key, TlsProblem::NoKey, None),
        e => fail(TlsFile::Key, TlsProblem::NotPem, Some(Box::new(e))),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Cannot fail with ring's provider, which has suites for both versions; mapped rather than
    // unwrapped so that it could never become a panic.
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(TlsFile::Key, TlsProblem::KeyMismatch, Some(Box::new(e))))?;
    let builder = match (&options.client_auth, &files.ca) {
        (Some(auth), Some(ca)) => {
            builder.with_client_cert_verifier(client_verifier(options, auth, ca, provider)?)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| fail(TlsFile::Key, TlsProblem::KeyMismatch, Some(Box::new(e))))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// WebPKI chain verification against the CA bundle `ca`, then the subject check.
fn client_verifier(
    options: &TlsOptions,
    auth: &ClientAuth,
    ca: &[u8],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<super::client::SubjectVerifier>, WebhookError> {
    let fail =
        |problem, source: Option<BoxError>| file_error(options, TlsFile::ClientCa, problem, source);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|e| fail(TlsProblem::NotPem, Some(Box::new(e))))?;
        roots
            .add(cert)
            .map_err(|e| fail(TlsProblem::BadCa, Some(Box::new(e))))?;
    }
    if roots.is_empty() {
        return Err(fail(TlsProblem::NoCertificate, None));
    }
    let chain = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| fail(TlsProblem::BadCa, Some(Box::new(e))))?;
    Ok(Arc::new(super::client::SubjectVerifier::new(
        chain,
        auth.subject.trim().to_owned(),
    )))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn file_error(
    options: &TlsOptions,
    file: TlsFile,
    problem: TlsProblem,
    source: Option<BoxError>,
) -> WebhookError {
    let path = match file {
        TlsFile::Certificate => options.cert.clone(),
        TlsFile::Key => options.key.clone(),
        TlsFile::ClientCa => options
            .client_auth
            .as_ref()
            .map(|a| a.ca.clone())
            .unwrap_or_default(),
    };
    WebhookError::TlsFile {
        file,
        path,
        problem,
        source,
    }
}
