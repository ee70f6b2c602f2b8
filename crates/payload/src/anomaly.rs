//! What the walk skipped or could not read, with where it was.

use std::fmt;

/// Something odd in a body that did not stop the other notifications from being read.
///
/// The walk never fails on these: it records them, skips the odd part (or reads around it) and goes
/// on. `path` names the place in the body (`entry[0].changes[1].value.messages[3]`); it never
/// contains any text from the body, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Anomaly {
    /// where in the body, e.g. `entry[0].changes[1].value`
    pub path: String,
    /// what was wrong there
    pub problem: Problem,
}

/// What was wrong with a part of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Problem {
    /// a part the envelope needs is absent (`entry`, `changes`, a change's `value`); nothing was
    /// read from the place that lacks it
    Missing,
    /// expected an array; the part was skipped
    NotAnArray,
    /// expected an object; the part was skipped
    NotAnObject,
    /// expected a string (or a number); the field reads as absent
    NotAString,
    /// a key appears twice in one object; the first one was used, the later one skipped
    DuplicateKey,
    /// a part serde_json would not read as a value; skipped (not expected to happen: the walk
    /// checks the same grammar)
    Unreadable,
}

impl Problem {
    /// A short, stable name for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Missing => "missing",
            Problem::NotAnArray => "not_an_array",
            Problem::NotAnObject => "not_an_object",
            Problem::NotAString => "not_a_string",
            Problem::DuplicateKey => "duplicate_key",
            Problem::Unreadable => "unreadable",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::Missing => "missing",
            Problem::NotAnArray => "not an array",
            Problem::NotAnObject => "not an object",
            Problem::NotAString => "not a string",
            Problem::DuplicateKey => "duplicate key",
            Problem::Unreadable => "unreadable",
        })
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}
