//! Mutual TLS: the client certificate must chain to the configured CA and name the configured
//! subject; a handshake that fails on the client's certificate is classified for the metric.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};
use rustls::{Error as TlsError, SignatureScheme};

use super::subject;

/// Why a client's certificate was refused: the `reason` label of
/// `wa_webhook_client_cert_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// the client sent no certificate
    NoCertificate,
    /// the certificate does not chain to the CA bundle (or is malformed, or revoked)
    Untrusted,
    /// the certificate (or one above it) is expired or not valid yet
    Expired,
    /// the chain is trusted but the leaf names neither CN nor DNS SAN the configured subject
    WrongSubject,
}

impl Refusal {
    pub(crate) const ALL: [Refusal; 4] = [
        Refusal::NoCertificate,
        Refusal::Untrusted,
        Refusal::Expired,
        Refusal::WrongSubject,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no_certificate",
            Refusal::Untrusted => "untrusted",
            Refusal::Expired => "expired",
            Refusal::WrongSubject => "wrong_subject",
        }
    }

    /// The refusal behind a failed handshake, or `None` when it failed for another reason
    /// (a plain-HTTP client, a scanner, no shared cipher suite).
    pub(crate) fn of(error: &TlsError) -> Option<Refusal> {
        match error {
            TlsError::NoCertificatesPresented => Some(Refusal::NoCertificate),
            TlsError::InvalidCertificate(e) => Some(match e {
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => Refusal::Expired,
                CertificateError::Other(other) if other.0.is::<WrongSubject>() => {
                    Refusal::WrongSubject
                }
                _ => Refusal::Untrusted,
            }),
            _ => None,
        }
    }
}

/// The error a trusted certificate with the wrong name fails the handshake with.
#[derive(Debug, thiserror::Error)]
#[error("the client certificate names neither CN nor DNS SAN the required subject")]
struct WrongSubject;

/// rustls's WebPKI client verifier (chain, validity, signatures), plus the subject check.
pub(crate) struct SubjectVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    subject: String,
}

impl SubjectVerifier {
    pub(crate) fn new(chain: Arc<dyn ClientCertVerifier>, subject: String) -> Self {
        Self { chain, subject }
    }
}

impl fmt::Debug for SubjectVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectVerifier")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for SubjectVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        // The chain first: a name means something only on a certificate the CA vouches for.
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        if subject::names(end_entity, &self.subject) {
            Ok(verified)
        } else {
            Err(TlsError::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(WrongSubject)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label table follows the enum's order, so `index()` addresses it.
    #[test]
    fn refusal_table_order() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    /// Each handshake error maps to its reason; errors unrelated to the client's certificate
    /// map to none.
    #[test]
    fn classifies_handshake_errors() {
        let cert = |e| TlsError::InvalidCertificate(e);
        let wrong = cert(CertificateError::Other(OtherError(Arc::new(WrongSubject))));
        let cases = [
            (
                TlsError::NoCertificatesPresented,
                Some(Refusal::NoCertificate),
            ),
            (
                cert(CertificateError::UnknownIssuer),
                Some(Refusal::Untrusted),
            ),
            (
                cert(CertificateError::BadSignature),
                Some(Refusal::Untrusted),
            ),
            (cert(CertificateError::Expired), Some(Refusal::Expired)),
            (cert(CertificateError::NotValidYet), Some(Refusal::Expired)),
            (wrong, Some(Refusal::WrongSubject)),
            (TlsError::HandshakeNotComplete, None),
        ];
        for (error, want) in cases {
            assert_eq!(Refusal::of(&error), want, "{error}");
        }
    }
}
