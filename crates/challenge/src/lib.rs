//! The webhook verification handshake (`GET ?hub.mode=subscribe&...`) as a pure decision.
//!
//! When a callback URL is saved in Meta's dashboard, Meta sends
//! `GET <url>?hub.mode=subscribe&hub.verify_token=<T>&hub.challenge=<C>` and expects `200`
//! with `C` as a `text/plain` body, byte for byte, if `T` is the verify token configured on
//! both sides. This crate takes the raw query string and returns the body to send, or why not;
//! it knows nothing of HTTP servers.
//!
//! # Getting started
//!
//! ```
//! use wa_challenge::{Challenge, ChallengeError};
//!
//! let handshake = Challenge::new("my-verify-token")?;
//!
//! // The query string as received, without the leading `?`.
//! let query = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=my-verify-token";
//! assert_eq!(handshake.decide(query).as_deref(), Ok("1158201444"));
//!
//! // Refusals say which status to answer.
//! let status = |query: &str| match handshake.decide(query) {
//!     Ok(_) => 200,
//!     Err(e) if e.is_bad_request() => 400,
//!     Err(_) => 403,
//! };
//! assert_eq!(status("hub.mode=subscribe&hub.challenge=1"), 400); // token missing
//! assert_eq!(status("hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1"), 403);
//! assert_eq!(status("hub.mode=unsubscribe&hub.verify_token=my-verify-token&hub.challenge=1"), 403);
//! # Ok::<(), ChallengeError>(())
//! ```
//!
//! # The decision
//!
//! Checks run in this order; the first that fails decides.
//!
//! | step | refusal | status |
//! |---|---|---|
//! | each of `hub.mode`, `hub.verify_token`, `hub.challenge` appears | [`Missing`](ChallengeError::Missing) | 400 |
//! | none of them appears twice | [`Repeated`](ChallengeError::Repeated) | 400 |
//! | the decoded challenge is at most [`MAX_CHALLENGE_LEN`] bytes | [`ChallengeTooLong`](ChallengeError::ChallengeTooLong) | 400 |
//! | the decoded challenge is UTF-8 | [`ChallengeNotUtf8`](ChallengeError::ChallengeNotUtf8) | 400 |
//! | `hub.mode` is exactly `subscribe` | [`WrongMode`](ChallengeError::WrongMode) | 403 |
//! | `hub.verify_token` is exactly the configured token | [`TokenMismatch`](ChallengeError::TokenMismatch) | 403 |
//!
//! Then `Ok(challenge)`: send it with status 200 and `Content-Type: text/plain`. It is whatever
//! the caller put there (Meta sends digits), so serve it as text only, never as HTML.
//!
//! Other parameters are ignored. A parameter is present when its name appears, even with an
//! empty value (`hub.challenge=` or a bare `hub.challenge`): an empty token is then simply wrong
//! (403), and an empty challenge is echoed as an empty body.
//!
//! # Decoding, exactly once
//!
//! The query is `application/x-www-form-urlencoded`, decoded as the WHATWG URL standard (and so
//! browsers, the `url` crate and most servers) does:
//!
//! - pairs are separated by `&` (not `;`); empty pairs are skipped; a pair is split at its
//!   first `=`, so a value may contain `=`;
//! - names and values are decoded: `+` becomes a space and `%XX` the byte `XX` (either case);
//!   a `%` not followed by two hex digits is **kept literally** (`%zz` stays `%zz`, a trailing
//!   `%` stays `%`). Keeping it, rather than answering 400, is what every standard parser does,
//!   so the challenge we echo is the one any other layer would have read from the same URL;
//! - decoding happens once: `%2541` is `%41`, not `A`, and `%2B` is a literal `+`.
//!
//! # Repeated parameters
//!
//! A `hub.*` parameter that appears twice is refused with 400, even if both values agree. Meta
//! sends each once; when a query has two, frameworks disagree on which one wins (first, last,
//! or a list), so a proxy, a log and this code could each see a different token. Refusing
//! removes the ambiguity at no cost to real traffic.
//!
//! # Constant-time token check
//!
//! The configured token is never compared directly. At construction we compute
//! `HMAC-SHA256(key = token, data = token)`; a request's token `t` is accepted when
//! `HMAC-SHA256(key = token, data = t)` equals it, checked with `ring::hmac::verify` (a
//! constant-time comparison of two 32-byte tags). The time taken depends only on the length of
//! the request's own token, never on how many bytes of it were right nor on the length of the
//! real token, and no byte-by-byte comparison of secret data happens at all. Two different
//! tokens passing would need an HMAC-SHA256 collision. A hand-written "compare every byte"
//! loop would also work, but must be guarded against compilers turning it into an early exit
//! and still leaks the token's length; ring's tag comparison is audited code we already depend on.
//!
//! The token appears in no `Debug`, `Display` or error: [`Challenge`] keeps only the HMAC key and
//! tag, and its `Debug` is redacted.
//!
//! This crate has no features.

use std::fmt;

/// Longest challenge echoed, in bytes after decoding. Meta's are about ten digits; the cap
/// bounds what an unauthenticated request can make us allocate and send back.
pub const MAX_CHALLENGE_LEN: usize = 1024;

/// The query parameter carrying the mode (`subscribe`).
pub const PARAM_MODE: &str = "hub.mode";
/// The query parameter carrying the verify token.
pub const PARAM_VERIFY_TOKEN: &str = "hub.verify_token";
/// The query parameter carrying the challenge to echo.
pub const PARAM_CHALLENGE: &str = "hub.challenge";

/// The only mode accepted.
const SUBSCRIBE: &[u8] = b"subscribe";

/// Why a handshake was refused, or why a [`Challenge`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// a `hub.*` parameter is missing (answer 400)
    #[error("missing query parameter {0}")]
    Missing(&'static str),
    /// a `hub.*` parameter appears more than once (answer 400)
    #[error("query parameter {0} given more than once")]
    Repeated(&'static str),
    /// `hub.challenge` is longer than accepted (answer 400)
    #[error("challenge too long")]
    ChallengeTooLong,
    /// `hub.challenge` does not decode to UTF-8 text (answer 400)
    #[error("challenge is not utf-8")]
    ChallengeNotUtf8,
    /// `hub.mode` is not `subscribe` (answer 403)
    #[error("hub.mode is not subscribe")]
    WrongMode,
    /// the token does not match (answer 403)
    #[error("verify token mismatch")]
    TokenMismatch,
    /// the configured verify token is empty
    #[error("empty verify token")]
    EmptyToken,
}

impl ChallengeError {
    /// True for the errors the endpoint answers with 400; the rest are 403.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Self::Missing(_) | Self::Repeated(_) | Self::ChallengeTooLong | Self::ChallengeNotUtf8
        )
    }
}

/// Holds the verify token (as an HMAC key and tag, never in the clear) and decides handshakes.
///
/// Cheap to clone and `Send + Sync`.
#[derive(Clone)]
pub struct Challenge {
    /// HMAC-SHA256 keyed with the verify token.
    key: ring::hmac::Key,
    /// HMAC of the token under `key`: what a correct request token hashes to.
    expected: [u8; 32],
}

/// Redacted: the verify token never appears.
impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenge").finish_non_exhaustive()
    }
}

impl Challenge {
    /// Builds a decider for `token`; an empty token is refused. The token is used as given
    /// (not trimmed, not decoded).
    pub fn new(token: &str) -> Result<Self, ChallengeError> {
        if token.is_empty() {
            return Err(ChallengeError::EmptyToken);
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
        let mut expected = [0u8; 32];
        expected.copy_from_slice(ring::hmac::sign(&key, token.as_bytes()).as_ref());
        Ok(Self { key, expected })
    }

    /// Decides a handshake from the raw query string (without `?`): the challenge to echo, or why not.
    ///
    /// See the crate documentation for the order of checks and the decoding rules.
    pub fn decide(&self, query: &str) -> Result<String, ChallengeError> {
        let params = HubParams::scan(query)?;
        let mode = params.mode.ok_or(ChallengeError::Missing(PARAM_MODE))?;
        let token = params
            .token
            .ok_or(ChallengeError::Missing(PARAM_VERIFY_TOKEN))?;
        let challenge = params
            .challenge
            .ok_or(ChallengeError::Missing(PARAM_CHALLENGE))?;

        // Each decoded byte takes at most three raw ones (`%XX`), so a raw value over three
        // times the cap cannot fit: refuse it without decoding.
        if challenge.len() > 3 * MAX_CHALLENGE_LEN {
            return Err(ChallengeError::ChallengeTooLong);
        }
        let challenge = decode(challenge);
        if challenge.len() > MAX_CHALLENGE_LEN {
            return Err(ChallengeError::ChallengeTooLong);
        }
        let challenge =
            String::from_utf8(challenge).map_err(|_| ChallengeError::ChallengeNotUtf8)?;

        if decode(mode) != SUBSCRIBE {
            return Err(ChallengeError::WrongMode);
        }
        if !self.token_matches(&decode(token)) {
            return Err(ChallengeError::TokenMismatch);
        }
        Ok(challenge)
    }

    /// Constant-time token check (see the crate docs for why an HMAC comparison).
    fn token_matches(&self, candidate: &[u8]) -> bool {
        ring::hmac::verify(&self.key, candidate, &self.expected).is_ok()
    }
}

/// The raw (still encoded) values of the three `hub.*` parameters.
#[derive(Default)]
struct HubParams<'q> {
    mode: Option<&'q str>,
    token: Option<&'q str>,
    challenge: Option<&'q str>,
}

impl<'q> HubParams<'q> {
    /// One pass over the pairs; only names are decoded here, values wait until they are needed.
    fn scan(query: &'q str) -> Result<Self, ChallengeError> {
        let mut params = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (slot, param) = match name_of(name) {
                Some(Hub::Mode) => (&mut params.mode, PARAM_MODE),
                Some(Hub::Token) => (&mut params.token, PARAM_VERIFY_TOKEN),
                Some(Hub::Challenge) => (&mut params.challenge, PARAM_CHALLENGE),
                None => continue,
            };
            if slot.replace(value).is_some() {
                return Err(ChallengeError::Repeated(param));
            }
        }
        Ok(params)
    }
}

enum Hub {
    Mode,
    Token,
    Challenge,
}

/// Which `hub.*` parameter a raw name is, after decoding (`hub%2Emode` is `hub.mode`).
fn name_of(raw: &str) -> Option<Hub> {
    // Names longer than any of ours, even fully escaped, cannot match: skip decoding them.
    if raw.len() > 3 * PARAM_VERIFY_TOKEN.len() {
        return None;
    }
    let name = decode(raw);
    match name.as_slice() {
        n if n == PARAM_MODE.as_bytes() => Some(Hub::Mode),
        n if n == PARAM_VERIFY_TOKEN.as_bytes() => Some(Hub::Token),
        n if n == PARAM_CHALLENGE.as_bytes() => Some(Hub::Challenge),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space, `%XX` a
/// byte, and a `%` without two hex digits after it stays a literal `%`. One pass, so nothing is
/// decoded twice.
fn decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

const fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
