//! HTTPS for [`Server::tls`](crate::Server::tls): the server certificate, its reload, and Meta's
//! client certificate (mutual TLS).
//!
//! A [`Tls`] holds the rustls configuration built from PEM files and swaps in a new one when
//! the files change (polled by [`Tls::watch`]) or on request ([`Tls::reload`], wired to SIGHUP
//! by [`Tls::reload_on_hangup`]). Each accepted connection takes the configuration current at
//! that moment, so new connections see a new certificate while open ones go on with the one
//! they started with. New files that cannot be used are refused as a whole and the
//! configuration in use stays: an ACME client that writes the certificate a moment before the
//! key costs one logged refusal, then the next poll takes both.
//!
//! With [`ClientAuth`], the handshake requires a client certificate that chains to the given CA
//! bundle and names the given subject (CN or DNS SAN); anything else fails the handshake, so no
//! request of that client is ever read. Refusals are counted by reason in
//! `wa_webhook_client_cert_refusals_total`.

mod build;
mod client;
mod options;
mod subject;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{Metrics, WebhookError};

use build::{Files, build};
pub(crate) use client::Refusal;
pub use options::{ClientAuth, TlsFile, TlsOptions, TlsProblem};

/// The subject Meta's webhook client certificate carries (CN and DNS SAN).
pub const META_CLIENT_SUBJECT: &str = "client.webhooks.fbclientcerts.com";

/// How often [`Tls::watch`] reads the files by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Why a TLS handshake failed, when not on the client's certificate: the `reason` label of
/// `wa_webhook_tls_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// not finished within the header-read timeout
    Timeout,
    /// a protocol error: plain HTTP on the TLS port, no common cipher suite, a reset
    Error,
}

impl HandshakeFailure {
    pub(crate) const ALL: [HandshakeFailure; 2] =
        [HandshakeFailure::Timeout, HandshakeFailure::Error];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Error => "error",
        }
    }
}

/// The server side of TLS: the configuration in use, swapped when the files change.
///
/// Cloning is cheap; clones share the configuration.
#[derive(Clone)]
pub struct Tls {
    shared: Arc<Shared>,
}

struct Shared {
    options: TlsOptions,
    /// What new connections get.
    current: RwLock<Arc<ServerConfig>>,
    /// SHA-256 of the files as last read (`None`: they could not be read), so that a change is
    /// acted on, and logged, once.
    seen: Mutex<Option<[u8; 32]>>,
}

impl fmt::Debug for Tls {
    // Paths and the subject only: the key stays out of every log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads and checks the files; an error names the file and what is wrong with it.
    pub fn load(options: TlsOptions) -> Result<Tls, WebhookError> {
        if let Some(auth) = &options.client_auth
            && auth.subject.trim().is_empty()
        {
            return Err(WebhookError::EmptyClientSubject);
        }
        let files = Files::read(&options)?;
        let config = build(&options, &files)?;
        Ok(Tls {
            shared: Arc::new(Shared {
                current: RwLock::new(config),
                seen: Mutex::new(Some(files.digest())),
                options,
            }),
        })
    }

    /// The options this was loaded with.
    pub fn options(&self) -> &TlsOptions {
        &self.shared.options
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificate(&self) -> bool {
        self.shared.options.client_auth.is_some()
    }

    /// Reads the files again and, if they are usable, serves them to new connections; if not,
    /// the configuration in use stays and the error says why.
    pub fn reload(&self) -> Result<(), WebhookError> {
        let files = Files::read(&self.shared.options);
        *lock(&self.shared.seen) = files.as_ref().ok().map(Files::digest);
        self.install(&files?)
    }

    /// Polls the files every [`TlsOptions::poll_interval`] and reloads when their content
    /// changed; logs each reload and each refused change once. Runs until dropped.
    /// [`Server::serve`](crate::Server::serve) runs it for as long as it serves.
    pub async fn watch(self) {
        let mut ticks = tokio::time::interval(self.shared.options.poll_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate; the files were just loaded
        loop {
            ticks.tick().await;
            self.reload_if_changed();
        }
    }

    /// Reloads on every SIGHUP, logging the outcome. The signal handler is installed before
    /// this returns, so a SIGHUP sent afterwards never takes the process's default action
    /// (exit); run the returned future for as long as the process serves.
    #[cfg(unix)]
    pub fn reload_on_hangup(&self) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        let tls = self.clone();
        Ok(async move {
            while hangups.recv().await.is_some() {
                tls.log_reload("SIGHUP", tls.reload());
            }
        })
    }

    /// The acceptor for a connection accepted now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let current = self
            .shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(&current))
    }

    // The files are a few kilobytes, read with blocking calls every few seconds: microseconds
    // of a runtime thread, not worth a blocking-pool hop.
    fn reload_if_changed(&self) {
        let files = Files::read(&self.shared.options);
        let digest = files.as_ref().ok().map(Files::digest);
        {
            let mut seen = lock(&self.shared.seen);
            if *seen == digest {
                return;
            }
            *seen = digest;
        }
        let outcome = files.and_then(|files| self.install(&files));
        self.log_reload("file change", outcome);
    }

    fn install(&self, files: &Files) -> Result<(), WebhookError> {
        let config = build(&self.shared.options, files)?;
        *self
            .shared
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    fn log_reload(&self, cause: &'static str, outcome: Result<(), WebhookError>) {
        match outcome {
            Ok(()) => tracing::info!(cause, "TLS files reloaded; new connections use them"),
            Err(e) => tracing::error!(
                cause,
                error = %with_causes(&e),
                "new TLS files refused; the certificate in use stays"
            ),
        }
    }
}

/// Completes the server side of a handshake within `limit`; a failure is counted (by reason
/// when it was the client's certificate), logged at debug, and gives `None`.
pub(crate) async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    limit: Duration,
    metrics: &Metrics,
) -> Option<TlsStream<TcpStream>> {
    let error = match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => return Some(stream),
        Ok(Err(error)) => error,
        Err(_) => {
            metrics.tls_handshake_failure(HandshakeFailure::Timeout);
            tracing::debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    let refusal = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(Refusal::of);
    match refusal {
        Some(refusal) => {
            metrics.client_cert_refusal(refusal);
            tracing::debug!(%peer, reason = refusal.as_str(), "client certificate refused");
        }
        None => {
            metrics.tls_handshake_failure(HandshakeFailure::Error);
            tracing::debug!(%peer, %error, "TLS handshake failed");
        }
    }
    None
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error and its causes on one line, for a log field.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A self-signed certificate and its key, as PEM.
    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    /// Writes `files` (name, content) into a new temporary directory.
    fn write(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let paths = files
            .iter()
            .map(|(name, content)| {
                let path = dir.path().join(name);
                std::fs::write(&path, content).unwrap();
                path
            })
            .collect();
        (dir, paths)
    }

    fn problem(result: Result<Tls, WebhookError>) -> (TlsFile, TlsProblem) {
        match result {
            Err(WebhookError::TlsFile { file, problem, .. }) => (file, problem),
            other => panic!("expected a TLS file error, got {other:?}"),
        }
    }

    /// Each way a file can be wrong is reported against that file; no message shows key bytes.
    #[test]
    fn load_names_the_file_and_the_problem() {
        let (cert, key) = pair("localhost");
        let (_, other_key) = pair("localhost");
        let key_body: String = key.lines().nth(1).unwrap().to_owned();
        let (_dir, p) = write(&[
            ("cert.pem", &cert),
            ("key.pem", &key),
            ("other-key.pem", &other_key),
            ("empty.pem", "no PEM here\n"),
            (
                "broken.pem",
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            ),
        ]);
        let (cert, key, other_key, empty, broken) = (&p[0], &p[1], &p[2], &p[3], &p[4]);
        let missing = cert.with_file_name("missing.pem");
        let load = |c: &PathBuf, k: &PathBuf| Tls::load(TlsOptions::new(c, k));
        use TlsFile::*;
        use TlsProblem::*;
        assert_eq!(problem(load(&missing, key)), (Certificate, Unreadable));
        assert_eq!(problem(load(cert, &missing)), (Key, Unreadable));
        assert_eq!(problem(load(empty, key)), (Certificate, NoCertificate));
        assert_eq!(problem(load(broken, key)), (Certificate, NotPem));
        assert_eq!(problem(load(cert, empty)), (Key, NoKey));
        assert_eq!(problem(load(cert, other_key)), (Key, KeyMismatch));
        let err = load(cert, other_key).unwrap_err();
        let text = format!("{err} {err:?} {}", with_causes(&err));
        assert!(
            !text.contains(&key_body) && text.contains("key file"),
            "{text}"
        );

        let with_ca = |ca: &PathBuf, subject: &str| {
            let mut options = TlsOptions::new(cert, key);
            options.client_auth = Some(ClientAuth::new(ca, subject));
            Tls::load(options)
        };
        assert_eq!(problem(with_ca(&missing, "x")), (ClientCa, Unreadable));
        assert_eq!(problem(with_ca(empty, "x")), (ClientCa, NoCertificate));
        assert!(matches!(
            with_ca(cert, " "),
            Err(WebhookError::EmptyClientSubject)
        ));
        assert!(with_ca(cert, "x").unwrap().requires_client_certificate());
        assert!(!load(cert, key).unwrap().requires_client_certificate());
    }

    /// A reload with broken files fails and leaves the configuration in use; a good one swaps
    /// it; a change noticed by the poll is acted on once.
    #[test]
    fn reload_keeps_the_old_configuration_on_error() {
        let (cert, key) = pair("localhost");
        let (_dir, p) = write(&[("cert.pem", &cert), ("key.pem", &key)]);
        let tls = Tls::load(TlsOptions::new(&p[0], &p[1])).unwrap();
        let config = |tls: &Tls| Arc::clone(&tls.shared.current.read().unwrap());
        let first = config(&tls);

        std::fs::write(&p[0], "-----BEGIN CERTIFICATE-----\n").unwrap();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&first, &config(&tls)));

        let (cert, key) = pair("localhost");
        std::fs::write(&p[0], cert).unwrap();
        std::fs::write(&p[1], key).unwrap();
        tls.reload_if_changed();
        let second = config(&tls);
        assert!(!Arc::ptr_eq(&first, &second));
        tls.reload_if_changed();
        assert!(
            Arc::ptr_eq(&second, &config(&tls)),
            "unchanged files reload nothing"
        );
        assert_eq!(
            second.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
