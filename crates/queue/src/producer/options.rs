//! What a producer is told, and what it answers per job.

use std::time::Duration;

use crate::shard::ShardBy;

/// Outcome of enqueueing one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// the marker was new and the job was pushed
    New,
    /// the marker existed: not pushed
    Duplicate,
}

/// Producer settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProducerOptions {
    /// how long a dedup marker lives (default 8 days)
    pub dedup_ttl: Duration,
    /// every call finishes or fails within this (default 2 s)
    pub timeout: Duration,
    /// share round trips between concurrent callers (default true); false sends one script
    /// call per `enqueue` (for comparison in benchmarks)
    pub coalesce: bool,
    /// most jobs in one coalesced script call (default 512); one `enqueue` call is never
    /// split, so a bigger call goes alone
    pub max_batch: usize,
    /// most JSON bytes in one coalesced script call (default 1 MiB), same rule
    pub max_batch_bytes: usize,
    /// coalesced calls on the wire at once (default 2: one on the wire while the next fills)
    pub max_in_flight: usize,
    /// replicas that must hold every write before a call succeeds (default 0: the primary's
    /// answer is enough). With N > 0 each script call is followed, on the same connection and
    /// in the same round trip, by `WAIT N <3/4 of timeout>`; fewer than N acknowledgements make the
    /// call fail with [`QueueError::NotReplicated`](crate::QueueError::NotReplicated)
    pub min_replicas: u32,
    /// how a job's shard is chosen when the queue has more than one (default by id)
    pub shard_by: ShardBy,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            dedup_ttl: Duration::from_secs(8 * 24 * 3600),
            timeout: Duration::from_secs(2),
            coalesce: true,
            max_batch: 512,
            max_batch_bytes: 1 << 20,
            max_in_flight: 2,
            min_replicas: 0,
            shard_by: ShardBy::Id,
        }
    }
}
