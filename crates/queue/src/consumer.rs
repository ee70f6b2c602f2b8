//! Reliable consumption: a consumer's own processing list, lease, settle (ack / retry / dead),
//! promoter and reaper.
//!
//! # Why two kinds of connection
//!
//! A blocking `BLMOVE` holds its connection until a job arrives or the block time ends: Redis
//! answers one client's commands in order, so anything sent behind it on the same socket would
//! wait too. Blocking fetches therefore take a connection of their own from a small
//! deadpool-redis pool (recycled with a PING, so a connection broken by a Redis restart is
//! replaced), configured with a response timeout longer than the block time (redis-rs 1.x
//! times responses out after 500 ms by default). Everything else (the non-blocking fetch
//! script, settle, lease, promoter, reaper) goes over one multiplexed `ConnectionManager`,
//! which pipelines concurrent calls and reconnects by itself. Under load the blocking path is
//! never taken: the fetch script finds work and the pool stays idle.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::job::{Job, now_ms, rewrite_dead, rewrite_retry};
use crate::producer::open_client;
use crate::script::{EXPIRED, FETCH, LEASE, PROMOTE, RELEASE, SETTLE, redis_err};
use crate::{QueueError, QueueName};

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
    /// how long a blocking fetch waits for work (default 2 s); must be shorter than the lease
    pub block: Duration,
    /// jobs moved per fetch round trip at most (default 64, at most 1000)
    pub batch: usize,
    /// every Redis call other than the blocking wait finishes or fails within this (default 5 s)
    pub op_timeout: Duration,
    /// "equal jitter" on retry delays (default true): the delay is drawn from
    /// [d/2, d] where d = base * 2^(delivery-1) capped at max, so delays still never shrink
    /// from one attempt to the next; false uses d exactly
    pub jitter: bool,
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
            op_timeout: Duration::from_secs(5),
            jitter: true,
        }
    }
}

impl ConsumerOptions {
    /// The retry delay after failed delivery number `delivery` (1 for the first), before
    /// jitter: `backoff_base * 2^(delivery-1)`, at most `backoff_max`.
    pub fn backoff(&self, delivery: u32) -> Duration {
        let shift = delivery.saturating_sub(1).min(40);
        let ms = (self.backoff_base.as_millis() as u64).saturating_mul(1u64 << shift);
        Duration::from_millis(ms).min(self.backoff_max)
    }

    fn jittered(&self, delivery: u32) -> Duration {
        let d = self.backoff(delivery);
        if !self.jitter {
            return d;
        }
        let half = d.as_millis() as u64 / 2;
        let extra = if half == 0 {
            0
        } else {
            rand::random_range(0..=half)
        };
        Duration::from_millis(d.as_millis() as u64 - half + extra)
    }

    fn validate(&self) -> Result<(), QueueError> {
        let bad = |m: &str| Err(QueueError::Config(m.to_owned()));
        if self.lease < Duration::from_millis(100) {
            return bad("lease is under 100ms");
        }
        if self.block >= self.lease {
            return bad("block time must be shorter than the lease");
        }
        if self.max_attempts == 0 {
            return bad("max attempts is zero");
        }
        if self.batch == 0 || self.batch > 1000 {
            return bad("batch must be 1 to 1000");
        }
        if self.op_timeout.is_zero() {
            return bad("operation timeout is zero");
        }
        Ok(())
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

impl Delivery {
    fn new(raw: String) -> Self {
        Self {
            job: Job::parse(&raw),
            raw,
        }
    }

    /// The delivery number a handler is told: the job's `attempt` + 1 (1 if unreadable).
    pub fn number(&self) -> u32 {
        self.job
            .as_ref()
            .map(|j| j.attempt.saturating_add(1))
            .unwrap_or(1)
    }
}

/// What settling one delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settled {
    /// removed from the processing list
    Acked,
    /// scheduled in delayed for another delivery
    Retried,
    /// moved to the dead list
    Dead,
    /// it was no longer in hand (a reaper gave it back to pending meanwhile): nothing done
    NotInHand,
}

/// A reliable consumer with its own id, lease and processing list.
pub struct Consumer {
    queue: QueueName,
    id: String,
    pending: String,
    processing: String,
    consumers: String,
    delayed: String,
    dead: String,
    opts: ConsumerOptions,
    conn: ConnectionManager,
    blocking: Pool,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue)
            .field("id", &self.id)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// `host-pid-random`: unique per process (the pid) and per consumer within it (the random
/// part), readable in `stats`. Only characters safe in a key name are kept.
fn new_consumer_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    let host = if host.is_empty() {
        "host".to_owned()
    } else {
        host
    };
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

pub(crate) async fn bounded<T>(
    t: Duration,
    f: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, QueueError> {
    match tokio::time::timeout(t, f).await {
        Ok(r) => r.map_err(redis_err),
        Err(_) => Err(QueueError::Timeout(t)),
    }
}

/// A multiplexed connection that reconnects by itself, connected now.
pub(crate) async fn manager(
    redis_url: &str,
    op_timeout: Duration,
) -> Result<ConnectionManager, QueueError> {
    let client = open_client(redis_url)?;
    let cfg = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(Some(op_timeout))
        .set_response_timeout(Some(op_timeout));
    let conn = ConnectionManager::new_lazy_with_config(client, cfg).map_err(redis_err)?;
    let mut c = conn.clone();
    bounded(op_timeout, redis::cmd("PING").query_async::<()>(&mut c)).await?;
    Ok(conn)
}

fn utf8_or_dead(raws: Vec<Vec<u8>>, bad: &mut Vec<Vec<u8>>) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(raws.len());
    for r in raws {
        match String::from_utf8(r) {
            Ok(s) => out.push(Delivery::new(s)),
            Err(e) => bad.push(e.into_bytes()),
        }
    }
    out
}

impl Consumer {
    /// Connects and registers a new unique consumer id with a lease.
    pub async fn connect(
        redis_url: &str,
        queue: QueueName,
        opts: ConsumerOptions,
    ) -> Result<Self, QueueError> {
        opts.validate()?;
        let conn = manager(redis_url, opts.op_timeout).await?;
        // The blocking connection must outlive the block: response timeout = block + op timeout.
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(opts.op_timeout))
            .set_response_timeout(Some(opts.block + opts.op_timeout));
        let mgr = Manager::new_with_config(redis_url, cfg)
            .map_err(|e| QueueError::Config(format!("invalid redis url ({})", e.category())))?;
        let blocking = Pool::builder(mgr)
            .max_size(2)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(opts.op_timeout))
            .create_timeout(Some(opts.op_timeout))
            .recycle_timeout(Some(opts.op_timeout))
            .build()
            .map_err(|e| QueueError::Config(format!("connection pool: {e}")))?;
        let id = new_consumer_id();
        let c = Self {
            pending: queue.pending(),
            processing: queue.processing(&id),
            consumers: queue.consumers(),
            delayed: queue.delayed(),
            dead: queue.dead(),
            queue,
            id,
            opts,
            conn,
            blocking,
        };
        c.renew_lease().await?;
        Ok(c)
    }

    /// This consumer's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The queue.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    /// The settings.
    pub fn options(&self) -> &ConsumerOptions {
        &self.opts
    }

    /// Renews the lease (the fetch script does too). [`run`](crate::run) calls this every
    /// third of the lease; a program driving a consumer by hand must as well while handlers
    /// run, or the reaper gives its jobs away.
    pub async fn renew_lease(&self) -> Result<(), QueueError> {
        let mut c = self.conn.clone();
        let lease_ms = self.opts.lease.as_millis() as u64;
        bounded(
            self.opts.op_timeout,
            LEASE.call::<i64>(&mut c, 1, |c| {
                c.arg(&self.consumers).arg(&self.id).arg(lease_ms);
            }),
        )
        .await
        .map(drop)
    }

    async fn fetch_now(&self, max: usize) -> Result<Vec<Vec<u8>>, QueueError> {
        let mut c = self.conn.clone();
        let lease_ms = self.opts.lease.as_millis() as u64;
        bounded(
            self.opts.op_timeout,
            FETCH.call(&mut c, 3, |c| {
                c.arg(&self.pending)
                    .arg(&self.processing)
                    .arg(&self.consumers)
                    .arg(max)
                    .arg(&self.id)
                    .arg(lease_ms);
            }),
        )
        .await
    }

    async fn fetch_blocking(&self) -> Result<Option<Vec<u8>>, QueueError> {
        // Renew first: the job BLMOVE takes must land under a live lease (block < lease).
        self.renew_lease().await?;
        let mut c = self
            .blocking
            .get()
            .await
            .map_err(|e| QueueError::Redis(e.to_string()))?;
        let secs = format!("{:.3}", self.opts.block.as_secs_f64().max(0.01));
        let cmd = redis::cmd("BLMOVE")
            .arg(&self.pending)
            .arg(&self.processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(secs)
            .to_owned();
        bounded(
            self.opts.block + self.opts.op_timeout,
            cmd.query_async(&mut *c),
        )
        .await
    }

    /// Moves up to `max` jobs from pending into this consumer's processing list, waiting up to
    /// the block time when pending is empty.
    ///
    /// Oldest first. An empty answer means the block time passed with no work. A job whose
    /// bytes are not UTF-8 is moved straight to dead (lossily decoded) and not returned.
    ///
    /// Do not cancel a fetch that may be blocking (e.g. in a `select!` against shutdown):
    /// Redis still completes the BLMOVE and the job would sit in this processing list unseen
    /// until [`shutdown`](Self::shutdown) or, if that ran first, forever. [`run`](crate::run)
    /// lets each fetch finish. Likewise a fetch that fails may have moved jobs whose reply
    /// was lost: they stay in this consumer's list until it is released (see the contract
    /// doc; [`run`](crate::run) recovers them by itself).
    pub async fn fetch(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut bad = Vec::new();
        let mut raws = self.fetch_now(max.min(self.opts.batch).min(1000)).await?;
        if raws.is_empty() {
            let Some(first) = self.fetch_blocking().await? else {
                return Ok(Vec::new());
            };
            raws.push(first);
            if max > 1 {
                raws.extend(
                    self.fetch_now((max - 1).min(self.opts.batch).min(999))
                        .await?,
                );
            }
        }
        let out = utf8_or_dead(raws, &mut bad);
        if !bad.is_empty() {
            self.dead_bytes(&bad).await?;
        }
        Ok(out)
    }

    async fn dead_bytes(&self, bad: &[Vec<u8>]) -> Result<(), QueueError> {
        let mut c = self.conn.clone();
        let died_at = now_ms();
        bounded(
            self.opts.op_timeout,
            SETTLE.call::<Vec<i64>>(&mut c, 3, |c| {
                c.arg(&self.processing).arg(&self.delayed).arg(&self.dead);
                c.arg("d".repeat(bad.len()));
                for raw in bad {
                    let text = String::from_utf8_lossy(raw);
                    let entry = rewrite_dead(&text, None, "job is not UTF-8", died_at);
                    c.arg(raw.as_slice()).arg(entry);
                }
            }),
        )
        .await
        .map(drop)
    }

    /// Settles many deliveries in one round trip: `Done` acknowledges, `Retry` schedules the
    /// next delivery after a backoff (or dead once `max_attempts` deliveries are used up),
    /// `Dead` moves to dead. An unreadable delivery always goes to dead.
    pub async fn settle(
        &self,
        items: &[(&Delivery, &Outcome)],
    ) -> Result<Vec<Settled>, QueueError> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(512) {
            out.extend(self.settle_chunk(chunk).await?);
        }
        Ok(out)
    }

    async fn settle_chunk(
        &self,
        items: &[(&Delivery, &Outcome)],
    ) -> Result<Vec<Settled>, QueueError> {
        let now = now_ms();
        // (op, new job text, delay ms) per item
        let mut ops: Vec<(char, String, u64)> = Vec::with_capacity(items.len());
        for (d, outcome) in items {
            let made = d.number();
            let dead = |error: &str| {
                let attempt = d.job.as_ref().ok().map(|_| made);
                ('d', rewrite_dead(&d.raw, attempt, error, now), 0)
            };
            ops.push(match (&d.job, outcome) {
                (Err(why), _) => dead(why),
                (Ok(_), Outcome::Done) => ('a', String::new(), 0),
                (Ok(_), Outcome::Dead(e)) => dead(e),
                (Ok(_), Outcome::Retry(e)) if made >= self.opts.max_attempts => {
                    dead(&format!("{e} (after {made} deliveries)"))
                }
                (Ok(_), Outcome::Retry(e)) => match rewrite_retry(&d.raw, made, e) {
                    Some(j) => ('r', j, self.opts.jittered(made).as_millis() as u64),
                    None => dead(e),
                },
            });
        }
        let letters: String = ops.iter().map(|(op, _, _)| *op).collect();
        let mut c = self.conn.clone();
        let res: Vec<i64> = bounded(
            self.opts.op_timeout,
            SETTLE.call(&mut c, 3, |c| {
                c.arg(&self.processing)
                    .arg(&self.delayed)
                    .arg(&self.dead)
                    .arg(&letters);
                for ((d, _), (op, job, delay)) in items.iter().zip(&ops) {
                    c.arg(&d.raw);
                    match op {
                        'r' => {
                            c.arg(job).arg(*delay);
                        }
                        'd' => {
                            c.arg(job);
                        }
                        _ => {}
                    }
                }
            }),
        )
        .await?;
        if res.len() != ops.len() {
            return Err(QueueError::Redis(
                "settle script answered a wrong count".into(),
            ));
        }
        Ok(ops
            .iter()
            .zip(res)
            .map(|((op, _, _), n)| match (n, *op) {
                (0, _) => Settled::NotInHand,
                (_, 'a') => Settled::Acked,
                (_, 'r') => Settled::Retried,
                _ => Settled::Dead,
            })
            .collect())
    }

    /// Acknowledges a finished job.
    pub async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.settle(&[(delivery, &Outcome::Done)]).await.map(drop)
    }

    /// Schedules a retry with backoff, or moves to dead after max attempts.
    pub async fn retry(&self, delivery: &Delivery, error: &str) -> Result<(), QueueError> {
        self.settle(&[(delivery, &Outcome::Retry(error.to_owned()))])
            .await
            .map(drop)
    }

    /// Moves a job to dead with `error`.
    pub async fn dead(&self, delivery: &Delivery, error: &str) -> Result<(), QueueError> {
        self.settle(&[(delivery, &Outcome::Dead(error.to_owned()))])
            .await
            .map(drop)
    }

    /// Moves retries that are due from delayed to the back of pending (up to 1000 per call),
    /// earliest due first; returns
    /// how many.
    pub async fn promote_due(&self) -> Result<usize, QueueError> {
        let mut c = self.conn.clone();
        bounded(
            self.opts.op_timeout,
            PROMOTE.call(&mut c, 2, |c| {
                c.arg(&self.delayed).arg(&self.pending).arg(1000);
            }),
        )
        .await
    }

    /// Returns the jobs of every consumer whose lease has lapsed to pending; returns how many
    /// jobs. Safe to run from any number of consumers at once: the release script re-checks
    /// each lease atomically.
    pub async fn reap_expired(&self) -> Result<usize, QueueError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = bounded(
            self.opts.op_timeout,
            EXPIRED.call(&mut c, 1, |c| {
                c.arg(&self.consumers).arg(100);
            }),
        )
        .await?;
        let mut total = 0;
        for id in ids.iter().filter(|id| **id != self.id) {
            let n = self.release(id, false).await?;
            total += n.max(0) as usize;
        }
        Ok(total)
    }

    async fn release(&self, id: &str, force: bool) -> Result<i64, QueueError> {
        let mut c = self.conn.clone();
        let processing = self.queue.processing(id);
        bounded(
            self.opts.op_timeout,
            RELEASE.call(&mut c, 3, |c| {
                c.arg(&self.consumers)
                    .arg(&self.pending)
                    .arg(&processing)
                    .arg(id)
                    .arg(if force { "1" } else { "0" });
            }),
        )
        .await
    }

    /// Returns every job in this consumer's processing list to pending and renews the lease:
    /// for when the list may hold jobs nobody is working on (a fetch whose reply was lost).
    pub(crate) async fn recover(&self) -> Result<usize, QueueError> {
        let n = self.release_all().await?;
        self.renew_lease().await?;
        Ok(n)
    }

    /// Returns every job in hand to pending and removes the lease, keeping this consumer.
    pub(crate) async fn release_all(&self) -> Result<usize, QueueError> {
        Ok(self.release(&self.id, true).await?.max(0) as usize)
    }

    /// Returns every job still in hand to pending and removes the lease (graceful stop).
    pub async fn shutdown(self) -> Result<usize, QueueError> {
        self.release_all().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backoff doubles from the base and stops at the cap; jitter stays within [d/2, d].
    #[test]
    fn backoff_growth() {
        let o = ConsumerOptions {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..Default::default()
        };
        let d: Vec<u64> = (1..=6).map(|n| o.backoff(n).as_millis() as u64).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(o.backoff(u32::MAX), Duration::from_secs(1));
        for n in 1..=6 {
            for _ in 0..50 {
                let j = o.jittered(n);
                assert!(j <= o.backoff(n) && j >= o.backoff(n) / 2);
            }
        }
    }

    /// Consumer ids are key-safe and differ between consumers of one process.
    #[test]
    fn ids() {
        let (a, b) = (new_consumer_id(), new_consumer_id());
        assert_ne!(a, b);
        assert!(!a.contains(['{', '}', ' ']));
        assert!(a.contains(&format!("-{}-", std::process::id())));
    }
}
