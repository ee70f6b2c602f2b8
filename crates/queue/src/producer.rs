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

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::check::{CheckMode, ConfigHealth};
use crate::conn::{Conn, IntoRedisOptions, RedisOptions};
use crate::dedup::Marker;
use crate::error::Unexpected;
use crate::job::NewJob;
use crate::script::{ENQUEUE, redis_err};
use crate::shard::{ShardBy, check_shard_count};
use crate::{QueueError, QueueName, RedisFailure};

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
    /// call fail with [`QueueError::NotReplicated`]
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
    /// `<base>`, the start of the shard's `seen:` keys
    base: String,
    pending: String,
    /// where the dedup markers' buckets live
    dedup: String,
}

struct Started {
    conn: Conn,
    /// each shard's dispatcher
    txs: Vec<mpsc::Sender<Request>>,
}

/// Requests a shard's dispatcher holds at most before callers wait.
const DISPATCH_QUEUE: usize = 4096;

/// Where a [`Request`]'s answer arrives.
type Reply = oneshot::Receiver<Result<Vec<Enqueued>, QueueError>>;

/// One shard's part of an `enqueue` call, encoded, waiting for the dispatcher.
struct Request {
    keys: Vec<String>,
    jobs: Vec<Vec<u8>>,
    /// each job's marker TTL, seconds
    ttls: Vec<u64>,
    marks: Vec<Marker>,
    bytes: usize,
    reply: oneshot::Sender<Result<Vec<Enqueued>, QueueError>>,
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
                        base: q.base(),
                        pending: q.pending(),
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
        let mut parts = Vec::new();
        for (shard, at) in self.split(jobs) {
            let (request, reply) = self.encode(shard, at.iter().map(|&i| (&jobs[i], ttls[i])))?;
            parts.push((shard, at, request, reply));
        }
        let timeout = self.inner.opts.timeout;
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

    /// The jobs' positions grouped by shard, in shard order (one group for one shard).
    fn split(&self, jobs: &[NewJob<'_>]) -> Vec<(usize, Vec<usize>)> {
        let n = self.inner.shards.len();
        if n == 1 {
            return vec![(0, (0..jobs.len()).collect())];
        }
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
        shard: usize,
        jobs: impl ExactSizeIterator<Item = (&'j NewJob<'p>, u64)>,
    ) -> Result<(Request, Reply), QueueError> {
        let base = &self.inner.shards[shard].base;
        let mut keys = Vec::with_capacity(jobs.len());
        let mut encoded = Vec::with_capacity(jobs.len());
        let mut marks = Vec::with_capacity(jobs.len());
        let mut ttls = Vec::with_capacity(jobs.len());
        let mut bytes = 0;
        for (job, ttl) in jobs {
            if job.id.is_empty() {
                return Err(QueueError::InvalidJob("empty job id".into()));
            }
            keys.push(format!("{base}seen:{}", job.id));
            marks.push(Marker::of(job));
            ttls.push(ttl);
            let mut buf = Vec::with_capacity(256 + job.payload.get().len());
            job.write_json(&mut buf)?;
            bytes += buf.len();
            encoded.push(buf);
        }
        let (reply, rx) = oneshot::channel();
        let request = Request {
            keys,
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
            c.arg(&keys.pending).arg(&request.keys).arg(&keys.dedup);
            job_args(c, &request.jobs, &request.ttls, &request.marks);
        };
        let n = request.jobs.len();
        let out = call_enqueue(&mut conn, &self.inner.opts, 1 + n, fill).await?;
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

/// `enqueue.lua`'s four arguments per job: JSON, marker TTL, slot, marker.
fn job_args(c: &mut redis::Cmd, jobs: &[Vec<u8>], ttls: &[u64], marks: &[Marker]) {
    for ((json, ttl), mark) in jobs.iter().zip(ttls).zip(marks) {
        c.arg(json).arg(ttl).arg(&mark.slot).arg(&mark.digest);
    }
}

fn outcomes(out: &[i64], expected: usize) -> Result<Vec<Enqueued>, QueueError> {
    if out.len() != expected {
        return Err(RedisFailure::unexpected(Unexpected::EnqueueCount {
            got: out.len(),
            expected,
        })
        .into());
    }
    Ok(out
        .iter()
        .map(|&n| {
            if n == 1 {
                Enqueued::New
            } else {
                Enqueued::Duplicate
            }
        })
        .collect())
}

/// The dispatcher: take what is waiting now, send it as one call, repeat; at most
/// `max_in_flight` calls outstanding. Ends when every `Producer` clone is gone.
async fn dispatch(
    mut rx: mpsc::Receiver<Request>,
    conn: Conn,
    [pending, dedup]: [String; 2],
    opts: ProducerOptions,
) {
    let in_flight = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
    let pending: Arc<str> = pending.into();
    let dedup: Arc<str> = dedup.into();
    let mut carry: Option<Request> = None;
    loop {
        // Waiting for a free slot first lets requests pile up meanwhile: that is the batching.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let first = match carry.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        let (mut jobs, mut bytes) = (first.jobs.len(), first.bytes);
        let mut batch = vec![first];
        while jobs < opts.max_batch && bytes < opts.max_batch_bytes {
            match rx.try_recv() {
                Ok(r) => {
                    if jobs + r.jobs.len() > opts.max_batch
                        || bytes + r.bytes > opts.max_batch_bytes
                    {
                        carry = Some(r);
                        break;
                    }
                    jobs += r.jobs.len();
                    bytes += r.bytes;
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let conn = conn.clone();
        let pending = pending.clone();
        let dedup = dedup.clone();
        let opts = opts.clone();
        tokio::spawn(async move {
            send_batch(conn, [&pending, &dedup], &opts, batch).await;
            drop(permit);
        });
    }
}

async fn send_batch(
    mut conn: Conn,
    [pending, dedup]: [&str; 2],
    opts: &ProducerOptions,
    mut batch: Vec<Request>,
) {
    // A caller that gave up (timed out, request cancelled) already answered its client: do
    // not enqueue its jobs behind its back.
    batch.retain(|r| !r.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let total: usize = batch.iter().map(|r| r.jobs.len()).sum();
    let fill = |c: &mut redis::Cmd| {
        c.arg(pending);
        for r in &batch {
            c.arg(&r.keys);
        }
        c.arg(dedup);
        for r in &batch {
            job_args(c, &r.jobs, &r.ttls, &r.marks);
        }
    };
    let result = call_enqueue(&mut conn, opts, 1 + total, fill).await;
    match result {
        Ok(out) if out.len() == total => {
            let mut at = 0;
            for r in batch {
                let n = r.jobs.len();
                let _ = r.reply.send(outcomes(&out[at..at + n], n));
                at += n;
            }
        }
        Ok(out) => {
            for r in batch {
                let _ = r.reply.send(outcomes(&out, total));
            }
        }
        Err(e) => {
            for r in batch {
                let _ = r.reply.send(Err(e.clone()));
            }
        }
    }
}

/// One enqueue script call; with `min_replicas` > 0, `WAIT` right behind it on the same
/// connection (one round trip), and an error unless enough replicas acknowledged.
///
/// `WAIT` counts the replicas that hold every write this connection made so far, so it also
/// covers a duplicate whose original write went out earlier on this connection, and an answer
/// of 0 after a failover (a new connection, no write yet) asks for nothing stale.
async fn call_enqueue(
    conn: &mut Conn,
    opts: &ProducerOptions,
    nkeys: usize,
    fill: impl Fn(&mut redis::Cmd),
) -> Result<Vec<i64>, QueueError> {
    if opts.min_replicas == 0 {
        return ENQUEUE.call(conn, nkeys, fill).await.map_err(redis_err);
    }
    // Within the call's own timeout, so that too few replicas read as such, not as a timeout.
    let wait = redis::cmd("WAIT")
        .arg(opts.min_replicas)
        .arg((opts.timeout * 3 / 4).as_millis().max(1) as u64)
        .to_owned();
    let (answer, replicas): (redis::Value, u32) = ENQUEUE
        .call_then(conn, nkeys, fill, &wait)
        .await
        .map_err(redis_err)?;
    if replicas < opts.min_replicas {
        return Err(QueueError::NotReplicated {
            wanted: opts.min_replicas,
            got: replicas,
        });
    }
    redis::from_redis_value(answer).map_err(|e| RedisFailure::enqueue_answer(e).into())
}
