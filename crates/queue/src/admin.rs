//! Stats and dead letters (skeleton, being written).

use std::fmt;

use serde::Serialize;

use crate::{Job, QueueError, QueueName};

/// Queue depths and consumers.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// jobs waiting
    pub pending: u64,
    /// jobs waiting for a retry time
    pub delayed: u64,
    /// dead jobs
    pub dead: u64,
    /// jobs in hand per consumer id
    pub processing: Vec<(String, u64)>,
    /// consumers whose lease is live
    pub live_consumers: u64,
    /// age of the oldest pending job, ms (from its `received_at`)
    pub oldest_pending_ms: Option<u64>,
}

/// A dead job with why it died.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadJob {
    /// the job (`Err` with the raw text when it does not parse)
    pub job: Result<Job, String>,
    /// last error
    pub error: Option<String>,
    /// when it died, ms since the epoch
    pub died_at: Option<u64>,
    /// exact element in the dead list
    pub raw: String,
}

/// Operations on a queue: stats, dead letters.
#[derive(Clone)]
pub struct Admin {
    _queue: QueueName,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// Connects.
    pub async fn connect(_redis_url: &str, _queue: QueueName) -> Result<Self, QueueError> {
        unimplemented!()
    }

    /// Queue depths and consumers.
    pub async fn stats(&self) -> Result<Stats, QueueError> {
        unimplemented!()
    }

    /// Up to `limit` dead jobs, oldest first.
    pub async fn dead_list(&self, _limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        unimplemented!()
    }

    /// Moves the dead jobs with these ids back to pending with attempt 0; returns how many.
    pub async fn replay(&self, _ids: &[String]) -> Result<usize, QueueError> {
        unimplemented!()
    }

    /// Moves every dead job back to pending; returns how many.
    pub async fn replay_all(&self) -> Result<usize, QueueError> {
        unimplemented!()
    }

    /// Deletes every dead job; returns how many.
    pub async fn purge_dead(&self) -> Result<usize, QueueError> {
        unimplemented!()
    }
}
