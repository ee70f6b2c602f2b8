//! Reliable consumption (skeleton, being written).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::{Job, QueueError, QueueName};

/// What a handler decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// done: acknowledge
    Done,
    /// failed: retry with backoff (dead after max attempts)
    Retry(String),
    /// failed for good: dead at once
    Dead(String),
}

/// A job handler. `delivery` is 1 for the first delivery.
pub trait Handler: Send + Sync + 'static {
    /// Handles one job.
    fn handle(&self, job: &Job, delivery: u32) -> impl Future<Output = Outcome> + Send;
}

/// Consumer settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// lease length; renewed every third of it (default 30 s)
    pub lease: Duration,
    /// deliveries before a failing job goes to dead (default 5)
    pub max_attempts: u32,
    /// first retry delay; doubles each attempt, with jitter (default 1 s)
    pub backoff_base: Duration,
    /// longest retry delay (default 10 min)
    pub backoff_max: Duration,
    /// how long a blocking fetch waits for work (default 2 s)
    pub block: Duration,
    /// jobs moved per fetch round trip at most (default 64)
    pub batch: usize,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            block: Duration::from_secs(2),
            batch: 64,
        }
    }
}

/// A job in hand: the parsed job (or why it did not parse) and the exact bytes held in the
/// processing list.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// the job, or the reason it could not be read (such a delivery can only go to dead)
    pub job: Result<Job, String>,
    /// exact element in the processing list
    pub raw: String,
}

/// A reliable consumer with its own id, lease and processing list.
pub struct Consumer {
    _queue: QueueName,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer").finish_non_exhaustive()
    }
}

impl Consumer {
    /// Connects and registers a new unique consumer id with a lease.
    pub async fn connect(
        _redis_url: &str,
        _queue: QueueName,
        _opts: ConsumerOptions,
    ) -> Result<Self, QueueError> {
        unimplemented!()
    }

    /// This consumer's id.
    pub fn id(&self) -> &str {
        unimplemented!()
    }

    /// Moves up to `max` jobs from pending into this consumer's processing list, waiting up to
    /// the block time when pending is empty.
    pub async fn fetch(&self, _max: usize) -> Result<Vec<Delivery>, QueueError> {
        unimplemented!()
    }

    /// Acknowledges a finished job.
    pub async fn ack(&self, _delivery: &Delivery) -> Result<(), QueueError> {
        unimplemented!()
    }

    /// Schedules a retry with backoff, or moves to dead after max attempts.
    pub async fn retry(&self, _delivery: &Delivery, _error: &str) -> Result<(), QueueError> {
        unimplemented!()
    }

    /// Moves a job to dead with `error`.
    pub async fn dead(&self, _delivery: &Delivery, _error: &str) -> Result<(), QueueError> {
        unimplemented!()
    }

    /// Returns every job still in hand to pending and removes the lease (graceful stop).
    pub async fn shutdown(self) -> Result<usize, QueueError> {
        unimplemented!()
    }
}
