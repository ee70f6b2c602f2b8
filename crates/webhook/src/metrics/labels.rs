//! What the counters are counted by: a request's outcome, why a signature was refused, what
//! became of a notification. Each enum has `ALL` (its counters' order), `index()` (its
//! counter) and `as_str()` (its label value), written once here.

use wa_queue::JobKind;

/// What a request came to; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestOutcome {
    /// POST: every notification enqueued or a known duplicate (or none to enqueue)
    Accepted,
    /// POST: `object` other than `whatsapp_business_account`
    Ignored,
    /// POST without signature
    MissingSignature,
    /// POST with a malformed or wrong signature
    InvalidSignature,
    /// body over the limit
    TooLarge,
    /// body unreadable or not a JSON object
    BadRequest,
    /// Redis error or enqueue timeout
    Unavailable,
    /// the buffered-bytes budget was spent
    Overloaded,
    /// whole-request timeout
    Timeout,
    /// GET handshake answered with the challenge
    ChallengeOk,
    /// GET handshake with a missing parameter
    ChallengeBadRequest,
    /// GET handshake with a wrong mode or token
    ChallengeForbidden,
    /// other method on a known path
    MethodNotAllowed,
    /// unknown path
    NotFound,
    /// `/healthz`, `/readyz`, `/metrics`
    Probe,
}

impl RequestOutcome {
    /// Every outcome, in declaration order (so [`index`](Self::index) is the discriminant).
    pub(super) const ALL: [RequestOutcome; 15] = [
        RequestOutcome::Accepted,
        RequestOutcome::Ignored,
        RequestOutcome::MissingSignature,
        RequestOutcome::InvalidSignature,
        RequestOutcome::TooLarge,
        RequestOutcome::BadRequest,
        RequestOutcome::Unavailable,
        RequestOutcome::Overloaded,
        RequestOutcome::Timeout,
        RequestOutcome::ChallengeOk,
        RequestOutcome::ChallengeBadRequest,
        RequestOutcome::ChallengeForbidden,
        RequestOutcome::MethodNotAllowed,
        RequestOutcome::NotFound,
        RequestOutcome::Probe,
    ];

    /// The outcome's place in [`ALL`](Self::ALL) and in the counters.
    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// The `outcome` label.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Accepted => "accepted",
            RequestOutcome::Ignored => "ignored",
            RequestOutcome::MissingSignature => "missing_signature",
            RequestOutcome::InvalidSignature => "invalid_signature",
            RequestOutcome::TooLarge => "too_large",
            RequestOutcome::BadRequest => "bad_request",
            RequestOutcome::Unavailable => "unavailable",
            RequestOutcome::Overloaded => "overloaded",
            RequestOutcome::Timeout => "timeout",
            RequestOutcome::ChallengeOk => "challenge_ok",
            RequestOutcome::ChallengeBadRequest => "challenge_bad_request",
            RequestOutcome::ChallengeForbidden => "challenge_forbidden",
            RequestOutcome::MethodNotAllowed => "method_not_allowed",
            RequestOutcome::NotFound => "not_found",
            RequestOutcome::Probe => "probe",
        }
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigFailure {
    Missing,
    Malformed,
    Mismatch,
    Duplicate,
}

impl SigFailure {
    /// Every reason, in declaration order.
    pub(super) const ALL: [SigFailure; 4] = [
        SigFailure::Missing,
        SigFailure::Malformed,
        SigFailure::Mismatch,
        SigFailure::Duplicate,
    ];

    /// The reason's place in [`ALL`](Self::ALL) and in the counters.
    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// The `reason` label.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            SigFailure::Missing => "missing",
            SigFailure::Malformed => "malformed",
            SigFailure::Mismatch => "mismatch",
            SigFailure::Duplicate => "duplicate",
        }
    }
}

/// What became of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Enqueued,
    Duplicate,
    Filtered,
}

impl Fate {
    /// Every fate, in declaration order.
    pub(super) const ALL: [Fate; 3] = [Fate::Enqueued, Fate::Duplicate, Fate::Filtered];

    /// The fate's place in [`ALL`](Self::ALL) and in the counters.
    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// The `result` label.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Fate::Enqueued => "enqueued",
            Fate::Duplicate => "duplicate",
            Fate::Filtered => "filtered",
        }
    }
}

/// Notifications of one request counted by kind and fate, added to the metrics at once (one
/// `fetch_add` per non-zero cell rather than one per notification).
#[derive(Debug, Default)]
pub(crate) struct Tally(pub(super) [[u64; Fate::ALL.len()]; JobKind::ALL.len()]);

impl Tally {
    /// One more notification of `kind` came to `fate`.
    pub(crate) fn add(&mut self, kind: &JobKind, fate: Fate) {
        self.0[kind.index()][fate.index()] += 1;
    }
}
