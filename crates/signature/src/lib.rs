//! Verify (and produce) Meta's `X-Hub-Signature-256` webhook signatures.
//!
//! Every webhook POST from the WhatsApp Cloud API carries
//! `X-Hub-Signature-256: sha256=<64 hex>`: the HMAC-SHA256 of the request body, keyed with the
//! app secret. This crate answers one question about a request — did someone holding one of
//! our app secrets produce exactly these bytes? — and nothing else: no HTTP types, no I/O.
//!
//! # Getting started
//!
//! ```
//! use wa_signature::{sign, SignatureError, Verifier};
//!
//! // One secret, or several separated by commas while rotating (the WHATSAPP_APP_SECRET form).
//! let verifier = Verifier::from_list("new_app_secret, old_app_secret")?;
//!
//! // What Meta (or a test, or the `sign_payload` example) sends.
//! let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
//! let header = sign(b"old_app_secret", body);
//! assert!(header.starts_with("sha256="));
//!
//! // The endpoint passes the header value (None when absent) and the body bytes as received.
//! assert_eq!(verifier.verify(Some(header.as_bytes()), body), Ok(()));
//!
//! // Refusals are typed, so the endpoint can answer 401 for a missing header, 403 otherwise.
//! let status = |r: Result<(), SignatureError>| match r {
//!     Ok(()) => 200,
//!     Err(e) if e.is_missing() => 401,
//!     Err(_) => 403,
//! };
//! assert_eq!(status(verifier.verify(None, body)), 401);
//! assert_eq!(status(verifier.verify(Some(b"sha256=00"), body)), 403);
//! assert_eq!(status(verifier.verify(Some(header.as_bytes()), b"{}")), 403);
//! # Ok::<(), SignatureError>(())
//! ```
//!
//! # Hash the bytes as received, nothing else
//!
//! The MAC covers the body exactly as Meta serialised it: non-ASCII text escaped as `\uXXXX`,
//! `/` as `\/`, Meta's key order and whitespace. Parsing the JSON and serialising it again
//! (with serde_json or anything else) yields the same data but different bytes, and the
//! signature no longer matches. Verify over the raw body, and keep the raw body (never a
//! re-encoded copy) wherever it is stored; the test `reserialised_body_no_longer_verifies`
//! shows the trap on a fixture.
//!
//! # Errors
//!
//! [`SignatureError`] is the one error type:
//!
//! | variant | when | endpoint answer |
//! |---|---|---|
//! | [`Missing`](SignatureError::Missing) | no header | 401 |
//! | [`Malformed`](SignatureError::Malformed) | not `sha256=<64 hex>`; the reason is one of [`MalformedReason`] | 403 |
//! | [`Mismatch`](SignatureError::Mismatch) | well-formed, but no configured secret produced it | 403 |
//! | [`EmptySecret`](SignatureError::EmptySecret) | construction: a secret (or list entry) is empty | start-up error |
//! | [`NoSecret`](SignatureError::NoSecret) | construction: no secret at all | start-up error |
//!
//! No error, `Debug` or `Display` ever contains a secret: [`Verifier`] keeps only
//! precomputed HMAC keys and prints how many it holds.
//!
//! # Rotation
//!
//! A [`Verifier`] holds one or more secrets and accepts a signature made with any of them, so an
//! app secret can be rotated without dropping deliveries: deploy `new,old`, reset the secret in
//! Meta's dashboard, then deploy `new`. Secrets are tried in the order given and the first match
//! wins; a mismatch costs one HMAC pass over the body per secret, so put the current one first
//! and remove the old one when rotation is done. Repeated secrets are kept once.
//!
//! # Security and cost
//!
//! - The comparison is `ring::hmac::verify`, constant time in the MAC; how long parsing takes
//!   depends only on the header the sender chose.
//! - The `ring::hmac::Key` of each secret is computed once, at construction (HMAC key
//!   schedule), not per request.
//! - Verifying allocates nothing: the header's hex is decoded into a 32-byte array on the stack
//!   ([`Signature`]), through a branch-free fast path for well-formed values; only a malformed
//!   header pays for finding its exact reason. The test `tests/no_alloc.rs` counts heap
//!   allocations across good, forged and malformed verifications and requires zero.
//! - Measured against raw `ring::hmac::verify` over the same bytes
//!   (`cargo bench -p wa-signature --bench verify`, paired rounds on a shared 2-core machine):
//!   the wrapper costs about 1.5% at 1 KB (0.865 µs against 0.853 µs; the ~25 ns header parse)
//!   and nothing measurable at 3 MB (2.002 ms against 2.006 ms). Details and method in
//!   `docs/performance-signature.md`.
//!
//! This crate has no features.

mod header;

use std::fmt;

pub use header::{MAC_LEN, MalformedReason, Signature};

/// The header Meta signs webhook POSTs with (lowercase, as `http` stores names).
pub const HEADER_NAME: &str = "x-hub-signature-256";

/// Why a signature was refused, or why a [`Verifier`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// the request carried no signature header
    #[error("missing signature")]
    Missing,
    /// the header is not `sha256=<64 hex>`, for the reason given
    #[error("malformed signature: {0}")]
    Malformed(MalformedReason),
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

impl SignatureError {
    /// True when the header was absent (the endpoint answers 401); every other refusal of a
    /// request is a 403.
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing)
    }

    /// The reason behind a [`Malformed`](Self::Malformed) error.
    pub fn malformed_reason(&self) -> Option<MalformedReason> {
        match self {
            Self::Malformed(reason) => Some(*reason),
            _ => None,
        }
    }
}

/// Holds one or more app secrets; any may match (rotation).
///
/// Cheap to clone (the keys are small fixed-size states) and `Send + Sync`, so one verifier
/// can serve every connection.
#[derive(Clone)]
pub struct Verifier {
    /// One precomputed HMAC key per distinct secret, in the order given. Never empty.
    keys: Vec<ring::hmac::Key>,
}

/// Redacted: shows how many secrets are configured, never their bytes.
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier from one or more secrets, tried in this order.
    ///
    /// Refuses an empty secret ([`SignatureError::EmptySecret`]: an empty HMAC key is valid
    /// cryptographically, but in configuration it means a variable was set to nothing) and an
    /// empty list ([`SignatureError::NoSecret`]). Secrets are raw bytes and are not trimmed;
    /// a secret repeated in the list is kept once.
    pub fn new<I, S>(secrets: I) -> Result<Self, SignatureError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let secrets: Vec<S> = secrets.into_iter().collect();
        let mut keys = Vec::with_capacity(secrets.len());
        for (i, secret) in secrets.iter().enumerate() {
            let secret = secret.as_ref();
            if secret.is_empty() {
                return Err(SignatureError::EmptySecret);
            }
            // A duplicate would only double the cost of every mismatch.
            if secrets[..i].iter().any(|s| s.as_ref() == secret) {
                continue;
            }
            keys.push(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret));
        }
        if keys.is_empty() {
            return Err(SignatureError::NoSecret);
        }
        Ok(Self { keys })
    }

    /// Builds a verifier from a comma-separated list (the `WHATSAPP_APP_SECRET` form).
    ///
    /// Whitespace around each entry is trimmed (`"new, old"` holds `new` and `old`). A list
    /// that is empty or only whitespace is [`SignatureError::NoSecret`]; an empty entry inside
    /// a list (`"a,,b"`, a trailing comma) is [`SignatureError::EmptySecret`], because it
    /// usually means a secret went missing while editing. A secret that itself contains a comma
    /// or needs surrounding whitespace cannot be written this way; use [`Verifier::new`].
    pub fn from_list(list: &str) -> Result<Self, SignatureError> {
        if list.trim().is_empty() {
            return Err(SignatureError::NoSecret);
        }
        Self::new(list.split(',').map(str::trim))
    }

    /// How many distinct secrets this verifier tries.
    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }

    /// Verifies a header value (`None` when the header is absent) over the exact body bytes.
    ///
    /// Allocates nothing. Returns [`SignatureError::Missing`], [`SignatureError::Malformed`] or
    /// [`SignatureError::Mismatch`].
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let signature = Signature::parse(header)?;
        self.verify_parsed(&signature, body)
    }

    /// Verifies an already parsed signature over the exact body bytes.
    ///
    /// Each secret is tried in order with `ring::hmac::verify`, which compares in constant
    /// time. Which secret matched is not secret, so stopping at the first match is fine.
    pub fn verify_parsed(&self, signature: &Signature, body: &[u8]) -> Result<(), SignatureError> {
        let matched = self
            .keys
            .iter()
            .any(|key| ring::hmac::verify(key, body, signature.as_bytes()).is_ok());
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Signs `body` with `secret`, returning the full header value `sha256=<hex>` (lowercase hex,
/// as Meta sends it).
///
/// For tests, tools and examples. Unlike [`Verifier::new`] it does not refuse an empty secret:
/// HMAC is defined for it, and a tool may want to show what such a signature looks like.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(tag.as_ref());
    Signature::from_mac(mac).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test_app_secret_0123456789abcdef";

    /// A body signed with the secret verifies; any other body does not.
    #[test]
    fn sign_then_verify() {
        let v = Verifier::new([SECRET]).unwrap();
        let header = sign(SECRET, b"hello");
        assert_eq!(v.verify(Some(header.as_bytes()), b"hello"), Ok(()));
        assert_eq!(
            v.verify(Some(header.as_bytes()), b"hellO"),
            Err(SignatureError::Mismatch)
        );
    }

    /// `sign` agrees with an independently computed HMAC-SHA256 (RFC 4231 test case 2).
    #[test]
    fn sign_matches_rfc4231() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// An absent header is `Missing`, the only error the endpoint answers with 401.
    #[test]
    fn absent_header_is_missing() {
        let v = Verifier::new([SECRET]).unwrap();
        let err = v.verify(None, b"{}").unwrap_err();
        assert_eq!(err, SignatureError::Missing);
        assert!(err.is_missing());
        assert!(!SignatureError::Mismatch.is_missing());
    }

    /// Construction refuses empty secrets and empty lists.
    #[test]
    fn construction_refusals() {
        assert_eq!(
            Verifier::new(Vec::<&[u8]>::new()).unwrap_err(),
            SignatureError::NoSecret
        );
        assert_eq!(
            Verifier::new([b"".as_slice()]).unwrap_err(),
            SignatureError::EmptySecret
        );
        assert_eq!(
            Verifier::new(["a", ""]).unwrap_err(),
            SignatureError::EmptySecret
        );
    }

    /// `from_list` trims entries, refuses empty entries, and treats a blank list as no secret.
    #[test]
    fn from_list_rules() {
        let v = Verifier::from_list(" new , old\t").unwrap();
        assert_eq!(v.secret_count(), 2);
        let body = b"{}";
        assert!(v.verify(Some(sign(b"new", body).as_bytes()), body).is_ok());
        assert!(v.verify(Some(sign(b"old", body).as_bytes()), body).is_ok());
        assert!(
            v.verify(Some(sign(b" old", body).as_bytes()), body)
                .is_err()
        );

        assert_eq!(Verifier::from_list("one").unwrap().secret_count(), 1);
        assert_eq!(Verifier::from_list("a,a").unwrap().secret_count(), 1);
        for bad in ["a,,b", "a,", ",a", "a, ,b"] {
            assert_eq!(
                Verifier::from_list(bad).unwrap_err(),
                SignatureError::EmptySecret,
                "{bad:?}"
            );
        }
        for blank in ["", "  ", "\n"] {
            assert_eq!(
                Verifier::from_list(blank).unwrap_err(),
                SignatureError::NoSecret,
                "{blank:?}"
            );
        }
    }

    /// Debug of a verifier shows the secret count and no secret bytes.
    #[test]
    fn debug_is_redacted() {
        let v = Verifier::from_list("s3cr3t-one,s3cr3t-two").unwrap();
        let text = format!("{v:?} {v:#?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("secrets: 2"), "{text}");
    }

    /// No error message, Display or Debug, mentions the secret the verifier was built with.
    #[test]
    fn errors_never_carry_secrets() {
        let secret = "topsecretvalue";
        let v = Verifier::from_list(secret).unwrap();
        let errors = [
            v.verify(None, b"x").unwrap_err(),
            v.verify(Some(b"sha256=zz"), b"x").unwrap_err(),
            v.verify(Some(sign(b"other", b"x").as_bytes()), b"x")
                .unwrap_err(),
            Verifier::from_list("topsecretvalue,").unwrap_err(),
        ];
        for e in errors {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(secret), "{text}");
        }
    }

    /// `malformed_reason` recovers the typed reason from the error.
    #[test]
    fn malformed_reason_round_trip() {
        for r in MalformedReason::ALL {
            assert_eq!(SignatureError::from(r).malformed_reason(), Some(r));
        }
        assert_eq!(SignatureError::Mismatch.malformed_reason(), None);
    }

    /// Verifier is shareable across threads (one per process serves every connection).
    #[test]
    fn verifier_is_send_sync() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Verifier>();
    }
}
