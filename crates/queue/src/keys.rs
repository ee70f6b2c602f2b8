//! The key layout: every key of a queue shares the hash tag `{<name>}`.

use crate::QueueError;

/// Where a queue lives: key prefix (default `wa`) and queue name (default `whatsapp`).
/// All keys are `<prefix>:{<name>}:...`.
///
/// Both parts must be non-empty and free of `{` and `}`: the braces are the Redis Cluster hash
/// tag that keeps one queue in one slot, so a brace inside either part would break it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueName {
    prefix: String,
    name: String,
}

fn check(what: &str, value: &str) -> Result<(), QueueError> {
    if value.is_empty() {
        return Err(QueueError::Config(format!("{what} is empty")));
    }
    if value.contains(['{', '}']) {
        return Err(QueueError::Config(format!("{what} contains a brace")));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(QueueError::Config(format!("{what} contains whitespace")));
    }
    Ok(())
}

/// The field of the `counts` hash that holds the jobs acknowledged so far.
pub(crate) const DONE_FIELD: &str = "done";

impl QueueName {
    /// A queue named `name` under the default prefix `wa`.
    pub fn new(name: impl Into<String>) -> Result<Self, QueueError> {
        Self::with_prefix("wa", name)
    }

    /// A queue named `name` under `prefix`.
    pub fn with_prefix(
        prefix: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<Self, QueueError> {
        let (prefix, name) = (prefix.into(), name.into());
        check("key prefix", &prefix)?;
        check("queue name", &name)?;
        Ok(Self { prefix, name })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The queue name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<prefix>:{<name>}:` — the start shared by every key of this queue.
    pub fn base(&self) -> String {
        format!("{}:{{{}}}:", self.prefix, self.name)
    }

    /// `<prefix>:{<name>}:pending`
    pub fn pending(&self) -> String {
        format!("{}pending", self.base())
    }

    /// `<prefix>:{<name>}:processing:<consumer>`
    pub fn processing(&self, consumer: &str) -> String {
        format!("{}processing:{consumer}", self.base())
    }

    /// `<prefix>:{<name>}:taking:<consumer>`: a list that exists only inside one run of the
    /// exchange script, where a take is put together (not under `processing:`, so that no
    /// consumer id can name it)
    pub(crate) fn taking(&self, consumer: &str) -> String {
        format!("{}taking:{consumer}", self.base())
    }

    /// `<prefix>:{<name>}:consumers`
    pub fn consumers(&self) -> String {
        format!("{}consumers", self.base())
    }

    /// `<prefix>:{<name>}:delayed`
    pub fn delayed(&self) -> String {
        format!("{}delayed", self.base())
    }

    /// `<prefix>:{<name>}:dead`
    pub fn dead(&self) -> String {
        format!("{}dead", self.base())
    }

    /// `<prefix>:{<name>}:counts`: a hash of running totals (`done`: jobs acknowledged)
    pub fn counts(&self) -> String {
        format!("{}counts", self.base())
    }

    /// `<prefix>:{<name>}:dedup:`, where the dedup markers' buckets live
    /// (`dedup:<slot>:<route prefix>`, see `docs/queue-contract.md`)
    pub fn dedup(&self) -> String {
        format!("{}dedup:", self.base())
    }

    /// `<prefix>:{<name>}:seen:<id>`: a dedup marker as versions before the buckets wrote
    /// it, honoured until it expires
    pub fn seen(&self, id: &str) -> String {
        format!("{}seen:{id}", self.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys follow the contract layout, hash tag included.
    #[test]
    fn layout() {
        let q = QueueName::new("whatsapp").unwrap();
        assert_eq!(q.pending(), "wa:{whatsapp}:pending");
        assert_eq!(q.processing("h-1-ab"), "wa:{whatsapp}:processing:h-1-ab");
        assert_eq!(q.consumers(), "wa:{whatsapp}:consumers");
        assert_eq!(q.delayed(), "wa:{whatsapp}:delayed");
        assert_eq!(q.dead(), "wa:{whatsapp}:dead");
        assert_eq!(q.counts(), "wa:{whatsapp}:counts");
        assert_eq!(q.dedup(), "wa:{whatsapp}:dedup:");
        assert_eq!(q.seen("wamid.X"), "wa:{whatsapp}:seen:wamid.X");
        let q = QueueName::with_prefix("acme", "q").unwrap();
        assert_eq!(q.pending(), "acme:{q}:pending");
    }

    /// Empty parts and braces are refused.
    #[test]
    fn validation() {
        assert!(QueueName::new("").is_err());
        assert!(QueueName::new("a{b").is_err());
        assert!(QueueName::new("a}b").is_err());
        assert!(QueueName::with_prefix("", "q").is_err());
        assert!(QueueName::with_prefix("w{a", "q").is_err());
        assert!(QueueName::new("a b").is_err());
    }
}
