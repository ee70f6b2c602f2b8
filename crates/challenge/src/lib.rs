//! The GET verification handshake (skeleton: API agreed, bodies being written).

use std::fmt;

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// a `hub.*` parameter is missing (answer 400)
    #[error("missing query parameter {0}")]
    Missing(&'static str),
    /// `hub.challenge` is longer than accepted (answer 400)
    #[error("challenge too long")]
    ChallengeTooLong,
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
        matches!(self, Self::Missing(_) | Self::ChallengeTooLong)
    }
}

/// Holds the verify token and decides handshakes.
#[derive(Clone)]
pub struct Challenge {
    _token: Box<[u8]>,
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenge").finish_non_exhaustive()
    }
}

impl Challenge {
    /// Builds a decider for `token`; an empty token is refused.
    pub fn new(_token: &str) -> Result<Self, ChallengeError> {
        unimplemented!()
    }

    /// Decides a handshake from the raw query string (without `?`): the challenge to echo, or why not.
    pub fn decide(&self, _query: &str) -> Result<String, ChallengeError> {
        unimplemented!()
    }
}
