//! Operations on a queue: stats, dead letters (list, replay, purge).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::consumer::{bounded, manager};
use crate::job::{dead_fields, now_ms, received_at, rewrite_replay};
use crate::script::REPLAY;
use crate::{Job, QueueError, QueueName};

const TIMEOUT: Duration = Duration::from_secs(10);

/// LLEN pending, ZCARD delayed, LLEN dead, consumers with expiry, rightmost pending, TIME.
type StatsReply = (
    u64,
    u64,
    u64,
    Vec<(String, f64)>,
    Option<String>,
    (u64, u64),
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

impl DeadJob {
    fn new(raw: String) -> Self {
        let (error, died_at) = dead_fields(&raw);
        let job = Job::parse(&raw).map_err(|_| raw.clone());
        Self {
            job,
            error,
            died_at,
            raw,
        }
    }
}

/// Operations on a queue: stats, dead letters.
#[derive(Clone)]
pub struct Admin {
    queue: QueueName,
    conn: ConnectionManager,
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
    pub async fn connect(redis_url: &str, queue: QueueName) -> Result<Self, QueueError> {
        let conn = manager(redis_url, TIMEOUT).await?;
        Ok(Self { queue, conn })
    }

    /// Queue depths and consumers.
    ///
    /// `processing` lists every consumer in the consumers zset (live or lapsed but not yet
    /// reaped) with the length of its processing list.
    pub async fn stats(&self) -> Result<Stats, QueueError> {
        let q = &self.queue;
        let mut c = self.conn.clone();
        let (pending, delayed, dead, consumers, oldest, time): StatsReply = bounded(
            TIMEOUT,
            redis::pipe()
                .llen(q.pending())
                .zcard(q.delayed())
                .llen(q.dead())
                .zrange_withscores(q.consumers(), 0, -1)
                .lindex(q.pending(), -1)
                .cmd("TIME")
                .query_async(&mut c),
        )
        .await?;
        let server_now = time.0 * 1000 + time.1 / 1000;
        let live_consumers = consumers
            .iter()
            .filter(|(_, exp)| *exp as u64 >= server_now)
            .count();
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
        })
    }

    /// Up to `limit` dead jobs, oldest first.
    pub async fn dead_list(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        // Dead is LPUSHed: the oldest are at the right end.
        let mut raws: Vec<String> = bounded(
            TIMEOUT,
            redis::cmd("LRANGE")
                .arg(self.queue.dead())
                .arg(-(limit.min(i64::MAX as usize) as i64))
                .arg(-1)
                .query_async(&mut c),
        )
        .await?;
        raws.reverse();
        Ok(raws.into_iter().map(DeadJob::new).collect())
    }

    async fn all_dead(&self) -> Result<Vec<String>, QueueError> {
        let mut c = self.conn.clone();
        bounded(
            TIMEOUT,
            redis::cmd("LRANGE")
                .arg(self.queue.dead())
                .arg(0)
                .arg(-1)
                .query_async(&mut c),
        )
        .await
    }

    /// Replays these exact dead entries (oldest first), atomically per job.
    async fn replay_raws(&self, mut raws: Vec<String>) -> Result<usize, QueueError> {
        raws.reverse();
        let pairs: Vec<(String, String)> = raws
            .into_iter()
            .filter_map(|raw| rewrite_replay(&raw).map(|new| (raw, new)))
            .collect();
        let mut total = 0;
        for chunk in pairs.chunks(256) {
            let mut c = self.conn.clone();
            let n: usize = bounded(
                TIMEOUT,
                REPLAY.call(&mut c, 2, |c| {
                    c.arg(self.queue.dead()).arg(self.queue.pending());
                    for (raw, new) in chunk {
                        c.arg(raw).arg(new);
                    }
                }),
            )
            .await?;
            total += n;
        }
        Ok(total)
    }

    /// Moves the dead jobs with these ids back to pending with attempt 0; returns how many.
    ///
    /// The replayed job is the dead entry without `error`, `died_at` and `last_error`, with
    /// `attempt` 0 and every other field (payload included) unchanged. It goes to the
    /// producers' end of pending, like a new job; its dedup marker is not consulted.
    pub async fn replay(&self, ids: &[String]) -> Result<usize, QueueError> {
        let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let raws: Vec<String> = self
            .all_dead()
            .await?
            .into_iter()
            .filter(|raw| Job::parse(raw).is_ok_and(|j| want.contains(j.id.as_str())))
            .collect();
        self.replay_raws(raws).await
    }

    /// Moves every dead job back to pending; returns how many.
    pub async fn replay_all(&self) -> Result<usize, QueueError> {
        let raws = self.all_dead().await?;
        self.replay_raws(raws).await
    }

    /// Deletes every dead job; returns how many.
    pub async fn purge_dead(&self) -> Result<usize, QueueError> {
        let mut c = self.conn.clone();
        let (n,): (usize,) = bounded(
            TIMEOUT,
            redis::pipe()
                .atomic()
                .llen(self.queue.dead())
                .del(self.queue.dead())
                .ignore()
                .query_async(&mut c),
        )
        .await?;
        Ok(n)
    }
}
