//! The run loop (skeleton, being written).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::{Consumer, Handler, QueueError};

/// Settings of [`run`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunOptions {
    /// handlers running at once (default 16)
    pub concurrency: usize,
    /// a handler running longer is treated as a retry (default 30 s)
    pub handler_timeout: Duration,
    /// after shutdown is asked, how long running handlers may still take (default 30 s)
    pub shutdown_grace: Duration,
    /// live counts the embedding program can read while [`run`] goes on (for metrics)
    pub counters: Arc<Counters>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            handler_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            counters: Arc::default(),
        }
    }
}

/// Live counters of a [`run`], updated as jobs finish (relaxed atomics).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Counters {
    /// jobs acknowledged
    pub done: AtomicU64,
    /// jobs scheduled for a retry
    pub retried: AtomicU64,
    /// jobs moved to dead (by the handler, after max attempts, or unreadable)
    pub dead: AtomicU64,
    /// jobs returned to pending at shutdown
    pub returned: AtomicU64,
    /// failed Redis calls (each followed by a reconnect with backoff)
    pub redis_errors: AtomicU64,
}

/// Counts of a finished [`run`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// acknowledged
    pub done: u64,
    /// scheduled for retry
    pub retried: u64,
    /// moved to dead
    pub dead: u64,
    /// returned to pending at shutdown
    pub returned: u64,
}

/// Runs `handler` over the queue until `shutdown` resolves: fetches in batches, runs up to
/// `concurrency` handlers, renews the lease, promotes due delayed jobs, reaps dead consumers,
/// reconnects after Redis restarts, and on shutdown returns unfinished jobs to pending.
pub async fn run<H: Handler>(
    _consumer: Consumer,
    _handler: H,
    _opts: RunOptions,
    _shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, QueueError> {
    unimplemented!()
}
