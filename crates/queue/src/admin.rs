//! Operations on a queue: stats here, dead letters in `dead.rs`.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::conn::{Conn, IntoRedisOptions, bounded};
use crate::job::{now_ms, received_at};
use crate::keys::DONE_FIELD;
use crate::shard::check_shard_count;
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
    u64,
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
    /// senders held in ordered mode (each has a job in progress, and maybe later jobs waiting
    /// behind it, which `pending` does not count); 0 for a queue that does not keep order
    pub held_senders: u64,
    /// jobs acknowledged so far, as counted by the queue's `counts` hash (`None` when no
    /// consumer has written it: wa-queue's run loop does, once a second)
    pub done: Option<u64>,
    /// with more than one shard, each shard's own figures in shard order (their `done` is
    /// `None`: the count is kept for the queue as a whole); the fields above are their sums
    /// (`oldest_pending_ms` the oldest of all). Empty for one shard.
    pub shards: Vec<Stats>,
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
        check_shard_count(&conn, &queue, TIMEOUT).await?;
        Ok(Self { queue, conn })
    }

    /// Each shard as an `Admin` of its own (the queue itself for one shard).
    pub(crate) fn views(&self) -> Vec<Admin> {
        self.queue
            .shard_names()
            .into_iter()
            .map(|queue| Admin {
                queue,
                conn: self.conn.clone(),
            })
            .collect()
    }

    /// Queue depths and consumers.
    ///
    /// `processing` lists every consumer in the consumers zset (live or lapsed but not yet
    /// reaped) with the length of its processing list.
    pub async fn stats(&self) -> Result<Stats, QueueError> {
        if self.queue.shards() == 1 {
            return self.stats_here().await;
        }
        let shards =
            futures_util::future::try_join_all(self.views().iter().map(Admin::stats_here)).await?;
        let mut c = self.conn.clone();
        let done: Option<u64> = bounded(
            TIMEOUT,
            redis::cmd("HGET")
                .arg(self.queue.counts())
                .arg(DONE_FIELD)
                .query_async(&mut c),
        )
        .await?;
        let mut total = Stats {
            done,
            ..Stats::default()
        };
        for s in &shards {
            total.pending += s.pending;
            total.delayed += s.delayed;
            total.dead += s.dead;
            total.processing.extend(s.processing.iter().cloned());
            total.leases.extend(s.leases.iter().copied());
            total.live_consumers += s.live_consumers;
            total.held_senders += s.held_senders;
            total.oldest_pending_ms = total.oldest_pending_ms.max(s.oldest_pending_ms);
            total.server_time_ms = total.server_time_ms.max(s.server_time_ms);
        }
        total.shards = shards;
        Ok(total)
    }

    /// [`stats`](Self::stats) of this shard alone.
    async fn stats_here(&self) -> Result<Stats, QueueError> {
        let q = &self.queue;
        let mut c = self.conn.clone();
        let (pending, delayed, dead, consumers, oldest, time, done, held_senders): StatsReply =
            bounded(
                TIMEOUT,
                redis::pipe()
                    .llen(q.pending())
                    .zcard(q.delayed())
                    .llen(q.dead())
                    .zrange_withscores(q.consumers(), 0, -1)
                    .lindex(q.pending(), -1)
                    .cmd("TIME")
                    .hget(q.counts(), DONE_FIELD)
                    .hlen(q.holders())
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
            held_senders,
            leases,
            server_time_ms: server_now,
            done,
            shards: Vec::new(),
        })
    }
}
