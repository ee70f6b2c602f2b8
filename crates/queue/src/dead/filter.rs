//! Which dead jobs: the filter, and the few fields of an entry it reads.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::Deserialize;

use crate::job::now_ms;

use super::entry_key;

/// Which dead jobs: every condition set must hold (an empty filter matches every entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadFilter {
    /// `kind` equals this
    pub kind: Option<String>,
    /// `phone_number_id` equals this
    pub phone_number_id: Option<String>,
    /// the last error contains this text (ignoring case)
    pub error: Option<String>,
    /// died at or after this time, ms since the epoch
    pub died_after: Option<u64>,
    /// died at or before this time, ms since the epoch
    pub died_before: Option<u64>,
    /// the job's `id` or the entry's key is one of these (when not empty)
    pub ids: Vec<String>,
}

impl DeadFilter {
    /// True when it matches every entry.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `kind` equals `kind`.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// `phone_number_id` equals `id`.
    pub fn phone_number_id(mut self, id: impl Into<String>) -> Self {
        self.phone_number_id = Some(id.into());
        self
    }

    /// The last error contains `text`, ignoring case.
    pub fn error_contains(mut self, text: impl Into<String>) -> Self {
        self.error = Some(text.into());
        self
    }

    /// Died within these times (ms since the epoch, both ends included).
    pub fn died_between(mut self, after: Option<u64>, before: Option<u64>) -> Self {
        self.died_after = after;
        self.died_before = before;
        self
    }

    /// The job's `id` or the entry's key is one of `ids`.
    pub fn ids(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.ids = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Died more than `age` ago (by this machine's clock).
    pub fn older_than(mut self, age: std::time::Duration) -> Self {
        self.died_before = Some(now_ms().saturating_sub(age.as_millis() as u64));
        self
    }

    /// Died less than `age` ago (by this machine's clock).
    pub fn newer_than(mut self, age: std::time::Duration) -> Self {
        self.died_after = Some(now_ms().saturating_sub(age.as_millis() as u64));
        self
    }

    pub(super) fn matcher(&self) -> Matcher<'_> {
        Matcher {
            filter: self,
            error: self.error.as_deref().map(str::to_lowercase),
            ids: self.ids.iter().map(String::as_str).collect(),
        }
    }
}

/// A filter made ready to test many entries.
pub(super) struct Matcher<'f> {
    filter: &'f DeadFilter,
    error: Option<String>,
    ids: HashSet<&'f str>,
}

/// The fields of a dead entry a filter looks at; the rest (the payload) is skipped unread.
#[derive(Deserialize)]
pub(super) struct Probe<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    phone_number_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
    died_at: Option<u64>,
}

impl Matcher<'_> {
    pub(super) fn matches(&self, raw: &str) -> bool {
        let f = self.filter;
        if f.is_empty() {
            return true;
        }
        let Ok(p) = serde_json::from_str::<Probe<'_>>(raw) else {
            return false;
        };
        let same = |want: &Option<String>, got: &Option<Cow<'_, str>>| match want {
            Some(w) => got.as_deref() == Some(w.as_str()),
            None => true,
        };
        let in_range = match (f.died_after, f.died_before, p.died_at) {
            (None, None, _) => true,
            (_, _, None) => false,
            (after, before, Some(t)) => {
                after.is_none_or(|a| t >= a) && before.is_none_or(|b| t <= b)
            }
        };
        let error_ok = match &self.error {
            Some(needle) => p
                .error
                .as_deref()
                .is_some_and(|e| e.to_lowercase().contains(needle.as_str())),
            None => true,
        };
        let id_ok = self.ids.is_empty()
            || p.id.as_deref().is_some_and(|id| self.ids.contains(id))
            || self.ids.contains(entry_key(raw).as_str());
        same(&f.kind, &p.kind)
            && same(&f.phone_number_id, &p.phone_number_id)
            && in_range
            && error_ok
            && id_ok
    }
}
