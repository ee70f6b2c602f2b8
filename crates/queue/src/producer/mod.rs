//! Atomic dedup enqueue, with concurrent callers coalesced into shared round trips.
//!
//! # Why one multiplexed connection and a coalescing task
//!
//! The ingress calls [`Producer::enqueue`] from every request task at once. A pool would give
//! each caller its own connection and round trip; a multiplexed connection (redis-rs
//! `ConnectionManager`: one socket, requests pipelined, reconnects by itself) already shares
//! the socket. We go one step further: a dispatcher task takes every request waiting at that
//! moment (up to `max_batch` jobs) and sends them as ONE script call, while up to
//! `max_in_flight` earlier batches are still on the wire. Under load this turns thousands of
//! small EVALSHAs into a few large ones: far fewer syscalls on both sides and far less
//! per-call script overhead in Redis, which is the shared, single-threaded resource. There is
//! no timer: a lone request is sent at once, so an idle producer adds no latency; batches only
//! grow while earlier round trips are in flight.
//!
//! # Shards
//!
//! A queue of N shards has one dispatcher per shard: a call's jobs are split by shard
//! ([`ShardBy`]), each part goes to its shard's dispatcher (and so into one script call in
//! that shard's slot, marker and push together), the parts travel concurrently, and the call
//! answers once every part has. Before its first write a producer compares its shard count
//! with the one recorded in Redis (see `shard.rs`).

mod dispatch;
mod options;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::check::{CheckMode, ConfigHealth};
use crate::conn::{Conn, IntoRedisOptions, RedisOptions, bounded};
use crate::dedup::Marker;
use crate::job::NewJob;
use crate::script::{LEGACY, redis_err};
use crate::shard::check_shard_count;
use crate::{QueueError, QueueName, RedisFailure};

use dispatch::{
    DISPATCH_QUEUE, Reply, Request, args_size, call_enqueue, dispatch, job_args, outcomes,
};
pub use options::{Enqueued, ProducerOptions};

/// Enqueues jobs: one round trip per call, atomic per job.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    queue: QueueName,
    /// each shard's keys, in shard order
    shards: Vec<ShardKeys>,
    opts: ProducerOptions,
    redis: RedisOptions,
    /// the Redis configuration check's verdict, once [`Producer::watch_config`] ran
    health: OnceLock<ConfigHealth>,
    /// Connection and dispatcher, made on first use: both need a Tokio runtime, and
    /// [`Producer::new`] may run before one exists.
    started: OnceLock<Result<Started, QueueError>>,
    /// set once the shard count recorded in Redis matched this producer's
    layout: tokio::sync::OnceCell<()>,
}

/// The keys one shard's enqueue script names.
struct ShardKeys {
    pending: String,
    /// where the dedup markers' buckets live
    dedup: String,
    /// the record of when no `seen:` key of the shard can be left
    seen_until: String,
}

struct Started {
    conn: Conn,
    /// each shard's dispatcher
    txs: Vec<mpsc::Sender<Request>>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No URL: it may hold a password.
        f.debug_struct("Producer")
            .field("queue", &self.inner.queue)
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Creates a producer; does not fail when Redis is down (calls will, until it is back).
    pub fn new(
        redis: impl IntoRedisOptions,
        queue: QueueName,
        opts: ProducerOptions,
    ) -> Result<Self, QueueError> {
        if opts.timeout.is_zero() {
            return Err(QueueError::Config("producer timeout is zero".into()));
        }
        if opts.dedup_ttl.as_secs() == 0 {
            return Err(QueueError::Config("dedup ttl is under one second".into()));
        }
        let redis = redis.into_redis_options()?;
        redis.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                shards: queue
                    .shard_names()
                    .iter()
                    .map(|q| ShardKeys {
                        pending: q.pending(),
                        seen_until: q.seen_until(),
                        dedup: q.dedup(),
                    })
                    .collect(),
                queue,
                opts,
                redis,
                health: OnceLock::new(),
                started: OnceLock::new(),
                layout: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// The queue this producer writes to.
    pub fn queue(&self) -> &QueueName {
        &self.inner.queue
    }

    /// How long an [`enqueue`](Self::enqueue) may take before it fails with
    /// [`QueueError::Timeout`] ([`ProducerOptions::timeout`]).
    pub fn timeout(&self) -> Duration {
        self.inner.opts.timeout
    }

    fn started(&self) -> Result<&Started, QueueError> {
        let inner = &self.inner;
        inner
            .started
            .get_or_init(|| {
                let t = inner.opts.timeout;
                // No reconnect retries inside a call: while Redis is down each call fails at
                // once (and triggers the next attempt) instead of waiting out a backoff. The
                // connection's own timeouts sit a little beyond the caller's, so the caller
                // sees `Timeout` first, and a batch stuck on a hung Redis still frees its
                // in-flight slot soon after.
                let t = t + t / 10 + Duration::from_millis(10);
                let conn = inner.redis.lazy(t, 0)?;
                let txs = inner
                    .shards
                    .iter()
                    .map(|shard| {
                        let (tx, rx) = mpsc::channel(DISPATCH_QUEUE);
                        tokio::spawn(dispatch(
                            rx,
                            conn.clone(),
                            [shard.pending.clone(), shard.dedup.clone()],
                            inner.opts.clone(),
                        ));
                        tx
                    })
                    .collect();
                Ok(Started { conn, txs })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Enqueues `jobs`; returns one outcome per job, in order.
    ///
    /// Each job is atomic (marker and push together); the call as a whole is one round trip
    /// (shared with other callers' jobs when coalescing). On `Err` some jobs may still have
    /// been enqueued: calling again with the same ids is safe, they come back as duplicates.
    pub async fn enqueue(&self, jobs: &[NewJob<'_>]) -> Result<Vec<Enqueued>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ttls = self.marker_ttls(jobs)?;
        let timeout = self.inner.opts.timeout;
        if self.inner.shards.len() == 1 {
            // One shard, the usual queue: the call is its only part, sent as is.
            let (request, reply) = self.encode(jobs.iter().zip(ttls))?;
            let started = self.started()?;
            let work = async {
                self.check_shards().await?;
                self.send(started, 0, request, reply).await
            };
            return tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| QueueError::Timeout(timeout))?;
        }
        let mut parts = Vec::new();
        for (shard, at) in self.split(jobs) {
            let (request, reply) = self.encode(at.iter().map(|&i| (&jobs[i], ttls[i])))?;
            parts.push((shard, at, request, reply));
        }
        let started = self.started()?;
        let work = async {
            self.check_shards().await?;
            let sent = parts
                .into_iter()
                .map(|(shard, at, request, reply)| async move {
                    let out = self.send(started, shard, request, reply).await?;
                    Ok::<_, QueueError>((at, out))
                });
            let mut out = vec![Enqueued::Duplicate; jobs.len()];
            for (at, part) in futures_util::future::try_join_all(sent).await? {
                for (i, e) in at.into_iter().zip(part) {
                    out[i] = e;
                }
            }
            Ok(out)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| QueueError::Timeout(timeout))?
    }

    /// The jobs' positions grouped by shard, in shard order (for more than one shard).
    fn split(&self, jobs: &[NewJob<'_>]) -> Vec<(usize, Vec<usize>)> {
        let n = self.inner.shards.len();
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, job) in jobs.iter().enumerate() {
            by_shard[self.inner.opts.shard_by.shard(job, n)].push(i);
        }
        by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, at)| !at.is_empty())
            .collect()
    }

    /// One shard's part of a call, encoded for its enqueue script.
    fn encode<'j, 'p: 'j>(
        &self,
        jobs: impl ExactSizeIterator<Item = (&'j NewJob<'p>, u64)>,
    ) -> Result<(Request, Reply), QueueError> {
        let mut encoded = Vec::with_capacity(jobs.len());
        let mut marks = Vec::with_capacity(jobs.len());
        let mut ttls = Vec::with_capacity(jobs.len());
        let mut bytes = 0;
        for (job, ttl) in jobs {
            if job.id.is_empty() {
                return Err(QueueError::InvalidJob("empty job id".into()));
            }
            marks.push(Marker::of(job));
            ttls.push(ttl);
            let mut buf = Vec::with_capacity(job.likely_len());
            job.write_json(&mut buf)?;
            bytes += buf.len();
            encoded.push(buf);
        }
        let (reply, rx) = oneshot::channel();
        let request = Request {
            jobs: encoded,
            ttls,
            marks,
            bytes,
            reply,
        };
        Ok((request, rx))
    }

    /// Sends one shard's part: through its dispatcher, or as a script call of its own.
    async fn send(
        &self,
        started: &Started,
        shard: usize,
        request: Request,
        reply: Reply,
    ) -> Result<Vec<Enqueued>, QueueError> {
        let stopped = || QueueError::from(RedisFailure::stopped());
        if self.inner.opts.coalesce {
            started.txs[shard]
                .send(request)
                .await
                .map_err(|_| stopped())?;
            return reply.await.map_err(|_| stopped())?;
        }
        let keys = &self.inner.shards[shard];
        let mut conn = started.conn.clone();
        let fill = |c: &mut redis::Cmd| {
            c.arg(&keys.pending).arg(&keys.dedup);
            job_args(c, std::slice::from_ref(&request));
        };
        let n = request.jobs.len();
        let size = args_size(n, request.bytes);
        let out = call_enqueue(&mut conn, &self.inner.opts, 1, size, fill).await?;
        outcomes(&out, n)
    }

    /// Compares this producer's shard count with the one recorded in Redis (recording it for
    /// a new sharded queue): [`QueueError::ShardCount`] when they differ. Every producer does
    /// this before its first write; call it at start-up to refuse to start instead.
    pub async fn check_shards(&self) -> Result<(), QueueError> {
        let started = self.started()?;
        let timeout = self.inner.opts.timeout;
        self.inner
            .layout
            .get_or_try_init(|| check_shard_count(&started.conn, &self.inner.queue, timeout))
            .await
            .map(drop)
    }

    /// Looks through Redis's keys for the dedup markers of versions before the buckets
    /// (v0.1.0's `seen:<id>` keys), shard by shard, and records in each shard when none can be
    /// left (`<prefix>:{<queue>}:seen-until`: now if it found none, else the time the last one
    /// it found expires). The enqueue script looks for those keys until that time, so a look
    /// that runs late, or never, costs Redis CPU, not correctness. A look visits every key of
    /// the database in steps of about 1000 (one round trip each, `legacy.lua`); a shard that
    /// has its record is done at once. The ingress runs this in the background at start-up.
    pub async fn retire_old_markers(&self) -> Result<(), QueueError> {
        let started = self.started()?;
        let timeout = self.inner.opts.timeout;
        for shard in &self.inner.shards {
            let (mut cursor, mut latest) = ("0".to_owned(), "0".to_owned());
            loop {
                let mut conn = started.conn.clone();
                let step = LEGACY.call(&mut conn, 1, |c| {
                    c.arg(&shard.seen_until).arg(&cursor).arg(&latest);
                });
                (cursor, latest) = bounded(timeout, step).await?;
                if cursor == "0" {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Each job's marker TTL in whole seconds.
    fn marker_ttls(&self, jobs: &[NewJob<'_>]) -> Result<Vec<u64>, QueueError> {
        let default = self.inner.opts.dedup_ttl.as_secs();
        jobs.iter()
            .map(|j| match j.dedup_ttl.map(|t| t.as_secs()) {
                None => Ok(default),
                Some(0) => Err(QueueError::InvalidJob(
                    "dedup ttl is under one second".into(),
                )),
                Some(secs) => Ok(secs),
            })
            .collect()
    }

    /// Checks this producer's Redis now and every `interval` (see [`ConfigHealth::watch`]):
    /// `Err(QueueError::LosesData)` when `mode` is strict and Redis may evict jobs. Once
    /// called, [`config_health`](Self::config_health) reports the verdict.
    pub async fn watch_config(
        &self,
        mode: CheckMode,
        interval: Duration,
    ) -> Result<(), QueueError> {
        let health = self.inner.health.get_or_init(|| ConfigHealth::new(mode));
        health.watch(&self.inner.redis, interval).await
    }

    /// The Redis configuration check's verdict ([`ConfigHealth::unchecked`] until
    /// [`watch_config`](Self::watch_config) ran).
    pub fn config_health(&self) -> ConfigHealth {
        self.inner
            .health
            .get()
            .cloned()
            .unwrap_or_else(ConfigHealth::unchecked)
    }

    /// PING within the timeout (for readiness).
    pub async fn ping(&self) -> Result<(), QueueError> {
        let timeout = self.inner.opts.timeout;
        let mut conn = self.started()?.conn.clone();
        let ping = async {
            redis::cmd("PING")
                .query_async::<()>(&mut conn)
                .await
                .map_err(redis_err)
        };
        tokio::time::timeout(timeout, ping)
            .await
            .map_err(|_| QueueError::Timeout(timeout))?
    }
}
