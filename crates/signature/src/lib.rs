//! X-Hub-Signature-256 verification (skeleton: API agreed, bodies being written).

use std::fmt;

/// The header Meta signs webhook POSTs with (lowercase, as `http` stores names).
pub const HEADER_NAME: &str = "x-hub-signature-256";

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// the request carried no signature header
    #[error("missing signature")]
    Missing,
    /// the header is not `sha256=<64 hex>`
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    /// well-formed, but no configured secret produced it
    #[error("signature mismatch")]
    Mismatch,
    /// a secret given to the verifier was empty
    #[error("empty app secret")]
    EmptySecret,
    /// the verifier was given no secret at all
    #[error("no app secret configured")]
    NoSecret,
}

/// Holds one or more app secrets; any may match (rotation).
#[derive(Clone)]
pub struct Verifier {
    _keys: Vec<ring::hmac::Key>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier from one or more secrets.
    pub fn new<I, S>(_secrets: I) -> Result<Self, SignatureError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        unimplemented!()
    }

    /// Builds a verifier from a comma-separated list (the `WHATSAPP_APP_SECRET` form).
    pub fn from_list(_list: &str) -> Result<Self, SignatureError> {
        unimplemented!()
    }

    /// Verifies a header value (`None` when the header is absent) over the exact body bytes.
    pub fn verify(&self, _header: Option<&[u8]>, _body: &[u8]) -> Result<(), SignatureError> {
        unimplemented!()
    }
}

/// Signs `body` with `secret`, returning the full header value `sha256=<hex>`.
pub fn sign(_secret: &[u8], _body: &[u8]) -> String {
    unimplemented!()
}
