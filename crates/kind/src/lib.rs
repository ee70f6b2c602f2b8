//! The kind of a WhatsApp webhook notification, which is also the kind of the job made of it.
//!
//! One enum, [`JobKind`], for the three crates that speak of kinds: `wa-payload` sorts every
//! notification of a body into one, `wa-webhook` filters and counts by it, and `wa-queue`
//! writes it into each job as `kind` and reads it back. It lives in a crate of its own, with no
//! dependencies, because the worker shares only the queue contract with the ingress: it must
//! not pull in the payload crate to name a kind.
//!
//! # Getting started
//!
//! ```
//! use wa_kind::JobKind;
//!
//! assert_eq!(JobKind::parse("status"), JobKind::Status);
//! assert_eq!(JobKind::Status.as_str(), "status");
//! // A kind a newer producer writes is kept, name and all, and written back as it came.
//! let newer = JobKind::parse("reaction");
//! assert_eq!(newer, JobKind::Other("reaction".into()));
//! assert_eq!(newer.to_string(), "reaction");
//! // Tables by kind: the four this version knows, each with its place.
//! assert_eq!(JobKind::ALL.map(|k| k.index()), [0, 1, 2, 3]);
//! ```

use std::fmt;

/// What a notification is, and so what its job is: one job is made per notification.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobKind {
    /// one `messages[]` item
    Message,
    /// one `statuses[]` item
    Status,
    /// one value-level `errors[]` item
    Error,
    /// the value of a change of any field other than `messages`
    Change,
    /// a kind this version has no name for, as a newer producer wrote it; never made by this
    /// version's payload crate, which sorts whatever it does not know into [`Change`](Self::Change)
    Other(Box<str>),
}

impl JobKind {
    /// The kinds this version knows, in the order of [`index`](Self::index).
    pub const ALL: [JobKind; 4] = [
        JobKind::Message,
        JobKind::Status,
        JobKind::Error,
        JobKind::Change,
    ];

    /// The kind's place in [`ALL`](Self::ALL), for tables indexed by kind. An
    /// [`Other`](Self::Other) kind has the place of [`Change`](Self::Change): the kind for
    /// what this version has no name of its own for.
    pub fn index(&self) -> usize {
        match self {
            JobKind::Message => 0,
            JobKind::Status => 1,
            JobKind::Error => 2,
            JobKind::Change | JobKind::Other(_) => 3,
        }
    }

    /// The name in jobs and filters: `message`, `status`, `error`, `change`, or an
    /// [`Other`](Self::Other) kind's own.
    pub fn as_str(&self) -> &str {
        match self {
            JobKind::Message => "message",
            JobKind::Status => "status",
            JobKind::Error => "error",
            JobKind::Change => "change",
            JobKind::Other(name) => name,
        }
    }

    /// The kind named `s`: one of [`ALL`](Self::ALL) by its name, any other name as
    /// [`Other`](Self::Other).
    pub fn parse(s: &str) -> JobKind {
        Self::known(s).unwrap_or_else(|| JobKind::Other(s.into()))
    }

    /// The kind named `s` if this version knows it.
    pub fn known(s: &str) -> Option<JobKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every known kind's name parses back to it, and its place is its place in `ALL`.
    #[test]
    fn names_and_places_round_trip() {
        for (i, kind) in JobKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(JobKind::parse(kind.as_str()), kind);
            assert_eq!(JobKind::known(kind.as_str()), Some(kind));
        }
    }

    /// An unknown name is kept as it came; names are case-sensitive, as on the wire.
    #[test]
    fn unknown_names_are_kept() {
        assert_eq!(JobKind::parse("Message").as_str(), "Message");
        assert_eq!(JobKind::known("Message"), None);
        assert_eq!(JobKind::parse("").as_str(), "");
        assert_eq!(JobKind::parse("reaction").index(), JobKind::Change.index());
    }
}
