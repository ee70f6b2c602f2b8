//! Operations on a queue: stats here, dead letters in `dead.rs`.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::conn::{Conn, IntoRedisOptions, bounded};
use crate::job::{now_ms, received_at};
use crate::keys::DONE_FIELD;
use crate::{QueueError, QueueName};

/// How long one admin call to Redis may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// LLEN pending, ZCARD delayed, LLEN dead, consumers with expiry, rightmost pending, TIME,
/// the `done` count.
type StatsReply = (
    u64,
    u64,
    u64,
    Vec<(String, f64)>,
    Option<String>,
    (u64, u64),
    Option<u64>,
);

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
    /// lease expiry per consumer id (ms since the epoch, by Redis's clock), in the order of
    /// `processing`
    pub leases: Vec<u64>,
    /// Redis's clock when the stats were read, ms since the epoch
    pub server_time_ms: u64,
    /// jobs acknowledged so far, as counted by the queue's `counts` hash (`None` when no
    /// consumer has written it: wa-queue's run loop does, once a second)
    pub done: Option<u64>,
}

/// Operations on a queue: stats, dead letters.
#[derive(Clone)]
pub struct Admin {
    pub(crate) queue: QueueName,
    pub(crate) conn: Conn,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Connects.
    pub async fn connect(
        redis: impl IntoRedisOptions,
        queue: QueueName,
    ) -> Result<Self, QueueError> {
        let conn = redis.into_redis_options()?.connect(TIMEOUT).await?;
        Ok(Self { queue, conn })
    }

    /// Queue depths and consumers.
    ///
    /// `processing` lists every consumer in the consumers zset (live or lapsed but not yet
    /// reaped) with the length of its processing list.
    pub async fn stats(&self) -> Result<Stats, QueueError> {
        let q = &self.queue;
        let mut c = self.conn.clone();
        let (pending, delayed, dead, consumers, oldest, time, done): StatsReply = bounded(
            TIMEOUT,
            redis::pipe()
                .llen(q.pending())
                .zcard(q.delayed())
                .llen(q.dead())
                .zrange_withscores(q.consumers(), 0, -1)
                .lindex(q.pending(), -1)
                .cmd("TIME")
                .hget(q.counts(), DONE_FIELD)
                .query_async(&mut c),
        )
        .await?;
        let server_now = time.0 * 1000 + time.1 / 1000;
        let live_consumers = consumers
            .iter()
            .filter(|(_, exp)| *exp as u64 >= server_now)
            .count();
        let leases = consumers.iter().map(|(_, exp)| *exp as u64).collect();
        let mut processing = Vec::with_capacity(consumers.len());
        if !consumers.is_empty() {
            let mut p = redis::pipe();
            for (id, _) in &consumers {
                p.llen(q.processing(id));
            }
            let lens: Vec<u64> = bounded(TIMEOUT, p.query_async(&mut c)).await?;
            processing = consumers.into_iter().map(|(id, _)| id).zip(lens).collect();
        }
        let oldest_pending_ms = oldest
            .as_deref()
            .and_then(received_at)
            .map(|r| now_ms().saturating_sub(r));
        Ok(Stats {
            pending,
            delayed,
            dead,
            processing,
            live_consumers: live_consumers as u64,
            oldest_pending_ms,
            leases,
            server_time_ms: server_now,
            done,
        })
    }
}
