//! The key layout: every key of a queue shares the hash tag `{<name>}`; a queue of N > 1
//! shards is N such queues, shard s under the tag `{<name>:s}`.

use crate::QueueError;

/// Where a queue lives: key prefix (default `wa`) and queue name (default `whatsapp`).
/// All keys are `<prefix>:{<name>}:...`.
///
/// Both parts must be non-empty and free of `{` and `}`: the braces are the Redis Cluster hash
/// tag that keeps one queue in one slot, so a brace inside either part would break it.
///
/// A queue may be spread over several shards ([`with_shards`](Self::with_shards)): shard `s`
/// is then a queue of its own named `<name>:s`, with every key under the hash tag
/// `{<name>:s}`, so each shard's scripts stay in one slot while the shards spread over the
/// masters of a Redis Cluster. One shard (the default) is the v1 layout, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueName {
    prefix: String,
    name: String,
    shards: u16,
}

/// The most shards a queue may have.
pub const MAX_SHARDS: u16 = 1024;

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
        Ok(Self {
            prefix,
            name,
            shards: 1,
        })
    }

    /// The same queue spread over `shards` shards (1 to [`MAX_SHARDS`]; 1 is the v1 layout).
    pub fn with_shards(mut self, shards: u16) -> Result<Self, QueueError> {
        if shards == 0 || shards > MAX_SHARDS {
            return Err(QueueError::Config(format!(
                "the shard count must be 1 to {MAX_SHARDS}"
            )));
        }
        self.shards = shards;
        Ok(self)
    }

    /// How many shards the queue has.
    pub fn shards(&self) -> usize {
        usize::from(self.shards)
    }

    /// Shard `s` as a queue of its own (keys under `{<name>:s}`); with one shard, the queue
    /// itself.
    ///
    /// # Panics
    ///
    /// If `s` is not below [`shards`](Self::shards).
    pub fn shard(&self, s: usize) -> QueueName {
        assert!(s < self.shards(), "shard {s} of {}", self.shards);
        if self.shards == 1 {
            return self.clone();
        }
        QueueName {
            prefix: self.prefix.clone(),
            name: format!("{}:{s}", self.name),
            shards: 1,
        }
    }

    /// Every shard, in order (see [`shard`](Self::shard)).
    pub fn shard_names(&self) -> Vec<QueueName> {
        (0..self.shards()).map(|s| self.shard(s)).collect()
    }

    /// `<prefix>:{<name>}:shards`: the shard count the queue was set up with (written by the
    /// first process with more than one shard; see `docs/queue-contract.md`)
    pub fn shard_count_key(&self) -> String {
        format!("{}shards", self.base())
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

    /// `<prefix>:{<name>}:ordered`: recorded by the first consumer that keeps order per
    /// sender; a consumer that does not refuses to run while it exists (see
    /// `docs/queue-contract.md`, Order per sender)
    pub fn ordered_key(&self) -> String {
        format!("{}ordered", self.base())
    }

    /// `<prefix>:{<name>}:holders`: in ordered mode, a hash of sender -> id of the job that
    /// holds the sender (in hand, retrying in delayed, or back in pending)
    pub fn holders(&self) -> String {
        format!("{}holders", self.base())
    }

    /// `<prefix>:{<name>}:waiting:<sender>`: in ordered mode, the sender's later jobs, oldest
    /// first, waiting for its holder to settle
    pub fn waiting(&self, sender: &str) -> String {
        format!("{}waiting:{sender}", self.base())
    }

    /// `<prefix>:{<name>}:dedup:`, where the dedup markers live: each slot's header
    /// `dedup:<slot>` and buckets `dedup:<slot>/<b>` (see `docs/queue-contract.md`)
    pub fn dedup(&self) -> String {
        format!("{}dedup:", self.base())
    }

    /// `<prefix>:{<name>}:seen:<id>`: a dedup marker as versions before the buckets wrote
    /// it, honoured until it expires
    pub fn seen(&self, id: &str) -> String {
        format!("{}seen:{id}", self.base())
    }

    /// `<prefix>:{<name>}:seen-until`: the time (whole seconds, Redis's clock) after which no
    /// `seen:` key of the queue can be left, once a look through the keys has found it
    pub fn seen_until(&self) -> String {
        format!("{}seen-until", self.base())
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
        assert_eq!(q.seen_until(), "wa:{whatsapp}:seen-until");
        assert_eq!(q.ordered_key(), "wa:{whatsapp}:ordered");
        assert_eq!(q.holders(), "wa:{whatsapp}:holders");
        assert_eq!(q.waiting("1555"), "wa:{whatsapp}:waiting:1555");
        let q = QueueName::with_prefix("acme", "q").unwrap();
        assert_eq!(q.pending(), "acme:{q}:pending");
    }

    /// Shard s of a sharded queue carries the tag `{<name>:s}`; one shard is the queue itself;
    /// the shard count is bounded.
    #[test]
    fn shards() {
        let q = QueueName::new("whatsapp").unwrap();
        assert_eq!(q.shard(0), q);
        let q = q.with_shards(16).unwrap();
        assert_eq!(q.shards(), 16);
        assert_eq!(q.shard(3).pending(), "wa:{whatsapp:3}:pending");
        assert_eq!(q.shard(15).dead(), "wa:{whatsapp:15}:dead");
        assert_eq!(q.shard(15).shards(), 1);
        assert_eq!(q.shard_count_key(), "wa:{whatsapp}:shards");
        assert_eq!(q.shard_names().len(), 16);
        assert!(QueueName::new("q").unwrap().with_shards(0).is_err());
        assert!(
            QueueName::new("q")
                .unwrap()
                .with_shards(MAX_SHARDS + 1)
                .is_err()
        );
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
