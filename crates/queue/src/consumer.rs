//! Reliable consumption: a consumer's own processing list, lease, settle (ack / retry / dead),
//! promoter and reaper.
//!
//! # Settling by position
//!
//! A consumer is the only one that changes its processing list, so it can mirror the list's
//! order: jobs it takes go in on the left, the oldest in hand sit on the right, and jobs mostly
//! finish in the order they were taken. One script call per round trip (`exchange.lua`)
//! drops the finished run at the right end by count, removes any other finished job by its
//! index, renews the lease and takes the next jobs. Acknowledging thus sends no job text back
//! and searches nothing; the script checks the list's length and the ends it drops first, and
//! the consumer's registration, and does nothing if any is off. Whenever the outcome of a call
//! is unknown (an error, a timeout, a cancelled call), the consumer does not guess: it returns
//! that id's whole list to pending and takes a new id (an id, once given up or reaped, is never
//! registered again, so a late call under it finds no registration and does nothing).
//!
//! The script takes jobs without their text passing through Lua (which hashes every byte of
//! each string it is handed) whenever it takes more than it has in hand: `SORT pending BY
//! nosort LIMIT .. STORE` copies them into the empty list, or into a scratch list that the jobs
//! in hand join before it replaces the list. [`run`](crate::run) makes that the usual case.
//!
//! # Why two kinds of connection
//!
//! A blocking `BLMOVE` holds its connection until a job arrives or the block time ends: Redis
//! answers one client's commands in order, so anything sent behind it on the same socket would
//! wait too. Blocking fetches therefore take a connection of their own from a small
//! deadpool-redis pool (recycled with a PING, so a connection broken by a Redis restart is
//! replaced), configured with a response timeout longer than the block time (redis-rs 1.x times
//! responses out after 500 ms by default). Everything else goes over multiplexed
//! `ConnectionManager`s, which pipeline concurrent calls and reconnect by themselves: one per
//! lane for its exchange calls, one for leases, releases, the promoter and the reaper. The
//! blocking wait moves nothing (a `BLMOVE` of pending onto itself, right end to right end,
//! returns as soon as pending has a job and leaves it there), so abandoning it strands no job.
//! Under load the blocking path is never taken and the pool stays idle.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::conn::{Conn, IntoRedisOptions, Waits, bounded};
use crate::error::Unexpected;
use crate::job::{Job, now_ms, rewrite_dead, rewrite_retry};
use crate::keys::DONE_FIELD;
use crate::order::check_order_mode;
use crate::script::{EXCHANGE, EXPIRED, LEASE, PROMOTE, RELEASE};
use crate::shard::check_shard_count;
use crate::{QueueError, QueueName, RedisFailure};

/// What a handler decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// done: acknowledge
    Done,
    /// failed: retry with backoff (dead after max attempts)
    Retry(String),
    /// failed, and the other side said when to try again: retry after this delay (at most
    /// the backoff maximum) instead of the backoff (dead after max attempts)
    RetryAfter(String, Duration),
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
    /// ids (each with its own processing list) [`run`](crate::run) exchanges with Redis
    /// through, one call on the wire per lane (default 2: one call is on the wire while the
    /// other's jobs are handled; 1 to 8). A lane registers only once used; fetching by hand
    /// uses the first.
    pub lanes: usize,
    /// every Redis call other than the blocking wait finishes or fails within this (default 5 s)
    pub op_timeout: Duration,
    /// "equal jitter" on retry delays (default true): the delay is drawn from
    /// [d/2, d] where d = base * 2^(delivery-1) capped at max, so delays still never shrink
    /// from one attempt to the next; false uses d exactly
    pub jitter: bool,
    /// in order per sender (default false): the jobs of one sender (`from`, else
    /// `from_user_id`) are handed out one at a time, in the order they reached their shard,
    /// and a retrying job holds its sender's later jobs back until it is acknowledged or dead
    /// (see `docs/operations.md`, Ordered mode). Every consumer of the queue must run ordered:
    /// the first records it (`<prefix>:{<name>}:ordered`), and a consumer of the other kind
    /// refuses to start ([`QueueError::OrderedQueue`], [`QueueError::UnorderedConsumers`]).
    /// With more than one shard, producers must route by sender ([`crate::ShardBy::Sender`]).
    pub ordered: bool,
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
            lanes: 2,
            op_timeout: Duration::from_secs(5),
            jitter: true,
            ordered: false,
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
        if self.lanes == 0 || self.lanes > 8 {
            return bad("lanes must be 1 to 8");
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
    job: Result<Job, String>,
    /// exact element in the processing list
    raw: String,
    /// the lane it was taken by
    lane: usize,
    /// the registration (consumer id) it was taken under
    epoch: u64,
    /// its place in the order of taking
    seq: u64,
}

impl Delivery {
    /// The job, or why it could not be read (such a delivery can only go to dead).
    pub fn job(&self) -> Result<&Job, &str> {
        self.job.as_ref().map_err(String::as_str)
    }

    /// The exact element held in the processing list.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub(crate) fn lane(&self) -> usize {
        self.lane
    }

    /// The delivery number a handler is told: the deliveries made before this one (the job's
    /// `attempt`, failed ones, plus `lost`, lost with their worker) + 1; 1 if unreadable.
    pub fn number(&self) -> u32 {
        self.job
            .as_ref()
            .map(|j| j.attempt.saturating_add(j.lost).saturating_add(1))
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
    /// it was no longer in hand (a reaper gave it back to pending meanwhile, or it was
    /// settled already): nothing done
    NotInHand,
}

/// What releasing a consumer's processing list did.
#[derive(Debug, Clone, Copy)]
struct Released {
    /// jobs returned to pending
    returned: usize,
    /// jobs lost with their worker once too often, moved to dead (by a reaper only)
    dead: usize,
}

/// How a finished job leaves the processing list.
enum Op {
    Ack,
    /// ordered mode: acknowledged, and the sender's hold released if this job has it
    Release {
        sender: String,
        id: String,
    },
    Retry {
        job: String,
        delay_ms: u64,
    },
    Dead {
        job: String,
    },
}

/// A finished job waiting to be settled: its exact element and what to do.
struct Finish {
    raw: Vec<u8>,
    op: Op,
}

/// One element of the processing list as the consumer knows it.
struct Held {
    seq: u64,
    done: Option<Box<Finish>>,
}

/// The consumer's registration and its processing list, mirrored: `held` lists every element
/// of the list, rightmost (oldest) first. Only this consumer changes its list, one exchange at
/// a time (the mutex around the lane), so the mirror stays exact; whenever a call's outcome
/// is unknown, the consumer gives the id up (its list goes back to pending) and takes a new
/// one rather than guess.
struct Lane {
    index: usize,
    /// the shard this lane takes from (its processing list lives there)
    shard: usize,
    epoch: u64,
    id: Arc<str>,
    processing: String,
    /// where the exchange script puts a take together (see `QueueName::taking`)
    taking: String,
    /// the current id holds a lease this consumer took
    registered: bool,
    /// `held` is known to match the list (false while a call is on the wire, and after a
    /// call failed or was cancelled)
    sync: bool,
    held: VecDeque<Held>,
    next_seq: u64,
    /// ids given up whose lists must still be returned to pending
    abandoned: Vec<Arc<str>>,
}

impl Lane {
    /// A lane of shard `shard` (`queue` names the shard) under a new, unregistered id,
    /// holding nothing.
    fn new(index: usize, shard: usize, epoch: u64, queue: &QueueName) -> Self {
        let id: Arc<str> = new_consumer_id().into();
        Self {
            index,
            shard,
            epoch,
            processing: queue.processing(&id),
            taking: queue.taking(&id),
            id,
            registered: false,
            sync: true,
            held: VecDeque::new(),
            next_seq: 0,
            abandoned: Vec::new(),
        }
    }
}

/// What one exchange did.
#[derive(Debug, Default)]
pub(crate) struct Exchanged {
    /// jobs taken, oldest first
    pub(crate) taken: Vec<Delivery>,
    /// settled by this call: (seq, how)
    pub(crate) settled: Vec<(u64, Settled)>,
    /// this call found the lane's lease lost (and that loss had not been reported yet)
    pub(crate) lease_lost: bool,
    /// outcomes handed in for jobs no longer in hand (reported, not settled)
    pub(crate) not_owned: usize,
}

/// An exchange's `eager` bound: finished jobs beyond the run at the list's old end are removed
/// by index once the list holds more than `eager` jobs (so a slow job at the old end cannot make
/// the list grow without bound). This value: never, only the run at the end is dropped.
const NEVER_EAGER: usize = usize::MAX;

/// Due retries moved from delayed to pending per shard and promoter call at most.
const PROMOTE_BATCH: usize = 1000;

/// A reliable consumer with its own id, lease and processing list (per lane, and per shard of
/// a sharded queue).
pub struct Consumer {
    queue: QueueName,
    /// each shard's keys, in shard order
    shards: Vec<ShardKeys>,
    /// the queue's `counts` hash (shard 0's)
    counts: String,
    /// where [`fetch`](Self::fetch) looks first next time, so that no shard starves
    next_shard: std::sync::atomic::AtomicUsize,
    opts: ConsumerOptions,
    conn: Conn,
    blocking: Waits,
    lanes: Vec<LaneCell>,
}

/// The keys of one shard a consumer names.
struct ShardKeys {
    name: QueueName,
    pending: String,
    consumers: String,
    delayed: String,
    dead: String,
    /// ordered mode only: the holders hash and the start of the waiting lists' names
    order: Option<[String; 2]>,
}

impl ShardKeys {
    fn new(name: QueueName, ordered: bool) -> Self {
        Self {
            pending: name.pending(),
            consumers: name.consumers(),
            delayed: name.delayed(),
            dead: name.dead(),
            order: ordered.then(|| [name.holders(), name.waiting("")]),
            name,
        }
    }

    /// Appends the ordered mode's keys, if any; the number of keys appended.
    fn order_keys(&self, c: &mut redis::Cmd) -> usize {
        match &self.order {
            Some([holders, waiting]) => {
                c.arg(holders).arg(waiting);
                2
            }
            None => 0,
        }
    }
}

/// A lane: an id with its own processing list, exchanged with by one call at a time. A
/// consumer with two lanes has one call on the wire while it handles the other's answer.
struct LaneCell {
    lane: Mutex<Lane>,
    /// the lane's own connection: Redis answers one connection's calls in the order they
    /// came and holds a large answer back while it runs the next call in line, so lanes
    /// sharing one connection would take turns instead of overlapping
    conn: Conn,
    /// the current id and whether it is registered, readable without waiting for a call on
    /// the wire
    current: std::sync::Mutex<Current>,
    /// the last id whose lost lease was reported (so a loss is logged and counted once,
    /// whether the renewal or an exchange finds it)
    lost_reported: std::sync::Mutex<Option<Arc<str>>>,
}

/// A lane's current id, as the lease renewal sees it.
#[derive(Clone)]
struct Current {
    id: Arc<str>,
    registered: bool,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue)
            .field("id", &self.id())
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

/// The exchange script's answer: a status and how many jobs it took.
fn parse_exchange(v: &redis::Value) -> Result<(i64, usize), QueueError> {
    use redis::Value;
    let items = match v {
        Value::Array(items) => items.as_slice(),
        _ => &[],
    };
    match items {
        [Value::Int(status)] => Ok((*status, 0)),
        [Value::Int(status), Value::Int(n)] if *n >= 0 => Ok((*status, *n as usize)),
        _ => Err(RedisFailure::unexpected(Unexpected::ExchangeShape).into()),
    }
}

impl Consumer {
    /// Connects and registers a new unique consumer id with a lease.
    pub async fn connect(
        redis: impl IntoRedisOptions,
        queue: QueueName,
        opts: ConsumerOptions,
    ) -> Result<Self, QueueError> {
        opts.validate()?;
        let redis = redis.into_redis_options()?;
        let conn = redis.connect(opts.op_timeout).await?;
        // The blocking connection must outlive the block: response timeout = block + op timeout.
        let blocking = Waits::new(
            redis.clone(),
            &conn,
            [opts.op_timeout, opts.block + opts.op_timeout],
            queue.shards(),
        );
        let shards: Vec<ShardKeys> = queue
            .shard_names()
            .into_iter()
            .map(|name| ShardKeys::new(name, opts.ordered))
            .collect();
        // Lanes are numbered shard-fastest: lane i takes from shard i mod N and shares the
        // connection of every lane with the same i div N (one connection per lane of one
        // shard, as without shards; in a cluster each node still gets its own socket).
        let conns = (0..opts.lanes)
            .map(|i| {
                if i == 0 {
                    Ok(conn.clone())
                } else {
                    redis.lazy(opts.op_timeout, 1)
                }
            })
            .collect::<Result<Vec<_>, QueueError>>()?;
        let lanes = (0..opts.lanes * shards.len())
            .map(|index| {
                let shard = index % shards.len();
                let lane = Lane::new(index, shard, 0, &shards[shard].name);
                let id = lane.id.clone();
                LaneCell {
                    lane: Mutex::new(lane),
                    conn: conns[index / shards.len()].clone(),
                    current: std::sync::Mutex::new(Current {
                        id,
                        registered: false,
                    }),
                    lost_reported: std::sync::Mutex::new(None),
                }
            })
            .collect();
        check_shard_count(&conn, &queue, opts.op_timeout).await?;
        check_order_mode(&conn, &queue, opts.ordered, opts.op_timeout).await?;
        let c = Self {
            counts: queue.counts(),
            shards,
            next_shard: std::sync::atomic::AtomicUsize::new(0),
            queue,
            opts,
            conn,
            blocking,
            lanes,
        };
        {
            let mut lane = c.lanes[0].lane.lock().await;
            c.prepare(&mut lane).await?;
        }
        Ok(c)
    }

    /// This consumer's current id (its first lane's; [`run`](crate::run) also uses the
    /// others). It changes when the consumer had to give its id up: after a reaper released it
    /// (its lease lapsed) or after a call whose outcome is unknown.
    pub fn id(&self) -> String {
        self.current_id(0).to_string()
    }

    fn current_id(&self, lane: usize) -> Arc<str> {
        self.current(lane).id
    }

    fn current(&self, lane: usize) -> Current {
        self.lanes[lane]
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_current(&self, lane: &Lane) {
        *self.lanes[lane.index]
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Current {
            id: lane.id.clone(),
            registered: lane.registered,
        };
    }

    /// Reports that lane `lane` lost the lease of `id` (a reaper gave its jobs in hand to
    /// others): logged once per id, whoever finds it. True the first time.
    fn report_lost_lease(&self, lane: usize, id: &Arc<str>) -> bool {
        let mut reported = self.lanes[lane]
            .lost_reported
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if reported.as_ref() == Some(id) {
            return false;
        }
        *reported = Some(id.clone());
        tracing::warn!(
            consumer = %id,
            "lease lost: a reaper gave this worker's jobs in hand to others; it takes no more \
             under this id, will not settle those jobs (their outcomes are reported), and \
             registers again under a new id"
        );
        true
    }

    /// How many lanes this consumer has: [`ConsumerOptions::lanes`] per shard.
    pub(crate) fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// How many shards the queue has.
    pub(crate) fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The shard lane `lane` takes from.
    pub(crate) fn lane_shard(&self, lane: usize) -> usize {
        lane % self.shards.len()
    }

    /// The queue.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    /// The settings.
    pub fn options(&self) -> &ConsumerOptions {
        &self.opts
    }

    async fn lease(&self, shard: usize, id: &str, mode: &str) -> Result<i64, QueueError> {
        let mut c = self.conn.clone();
        let lease_ms = self.opts.lease.as_millis() as u64;
        bounded(
            self.opts.op_timeout,
            LEASE.call::<i64>(&mut c, 1, |c| {
                c.arg(&self.shards[shard].consumers)
                    .arg(id)
                    .arg(lease_ms)
                    .arg(mode);
            }),
        )
        .await
    }

    /// Renews the lease (every exchange with Redis does too). [`run`](crate::run) calls this
    /// every third of the lease; a program driving a consumer by hand must as well while
    /// handlers run, or the reaper gives its jobs away. If the lease is gone already (a
    /// reaper released this consumer), nothing is renewed and the loss is logged: the next
    /// fetch or settle takes nothing under the lost id and carries on under a new one.
    pub async fn renew_lease(&self) -> Result<(), QueueError> {
        self.renew_leases().await.map(drop)
    }

    /// [`renew_lease`](Self::renew_lease); returns how many lanes were found to have lost
    /// their lease (each loss counted once).
    pub(crate) async fn renew_leases(&self) -> Result<usize, QueueError> {
        let mut lost = 0;
        for lane in 0..self.lanes.len() {
            let current = self.current(lane);
            if !current.registered {
                continue;
            }
            let gone = self
                .lease(self.lane_shard(lane), &current.id, "renew")
                .await?
                == 0;
            // the lane may have given the id up itself meanwhile (a stop, a failed call)
            if gone
                && self.current_id(lane) == current.id
                && self.report_lost_lease(lane, &current.id)
            {
                lost += 1;
            }
        }
        Ok(lost)
    }

    /// Gives the current id up: its list is returned to pending (now or, if Redis cannot be
    /// reached, before the next call) and a new id is taken.
    fn rotate(&self, lane: &mut Lane) {
        let mut abandoned = std::mem::take(&mut lane.abandoned);
        abandoned.push(lane.id.clone());
        *lane = Lane {
            abandoned,
            ..Lane::new(
                lane.index,
                lane.shard,
                lane.epoch + 1,
                &self.shards[lane.shard].name,
            )
        };
        self.set_current(lane);
    }

    /// Before a call: settles any doubt (a new id if the list is unknown), returns the lists
    /// of ids given up, and registers the current id.
    async fn prepare(&self, lane: &mut Lane) -> Result<(), QueueError> {
        if !lane.sync {
            self.rotate(lane);
        }
        while let Some(old) = lane.abandoned.last().cloned() {
            let n = self
                .release(lane.shard, &old, true)
                .await?
                .map_or(0, |r| r.returned);
            if n > 0 {
                tracing::info!(consumer = %old, jobs = n, "returned the jobs of a given-up id to pending");
            }
            lane.abandoned.pop();
        }
        if !lane.registered {
            self.lease(lane.shard, &lane.id, "new").await?;
            lane.registered = true;
            self.set_current(lane);
        }
        Ok(())
    }

    /// Records an outcome for a delivery in hand (`finish` says how it leaves the list); false
    /// if it is not in hand (an earlier id's, or settled already).
    fn mark(lane: &mut Lane, (epoch, seq): (u64, u64), finish: impl FnOnce() -> Finish) -> bool {
        if epoch != lane.epoch {
            return false;
        }
        let Ok(i) = lane.held.binary_search_by_key(&seq, |h| h.seq) else {
            return false;
        };
        if lane.held[i].done.is_some() {
            return false;
        }
        lane.held[i].done = Some(Box::new(finish()));
        true
    }

    /// What an outcome means for the list: unreadable jobs and used-up retries go to dead.
    /// Deliveries lost with their worker count towards `max_attempts` like failed ones.
    fn op_for(&self, d: &Delivery, outcome: &Outcome) -> Op {
        let made = d.number();
        // `attempt` counts failed deliveries (this one included once it failed); `lost`
        // stays as the reaper left it
        let failed = d.job.as_ref().map_or(1, |j| j.attempt.saturating_add(1));
        let dead = |error: &str| {
            let attempt = d.job.as_ref().ok().map(|_| failed);
            Op::Dead {
                job: rewrite_dead(&d.raw, attempt, error, now_ms()),
            }
        };
        let (reason, delay) = match (&d.job, outcome) {
            (Err(why), _) => return dead(why),
            (Ok(job), Outcome::Done) => return self.ack_op(job),
            (Ok(_), Outcome::Dead(e)) => return dead(e),
            (Ok(_), Outcome::Retry(e)) => (e, self.opts.jittered(made)),
            (Ok(_), Outcome::RetryAfter(e, after)) => (e, (*after).min(self.opts.backoff_max)),
        };
        if made >= self.opts.max_attempts {
            let lost = made - failed;
            let plural = if made == 1 { "y" } else { "ies" };
            return dead(&if lost > 0 {
                format!("{reason} (after {made} deliver{plural}, {lost} lost with their worker)")
            } else {
                format!("{reason} (after {made} deliver{plural})")
            });
        }
        match rewrite_retry(&d.raw, failed, reason) {
            Some(job) => Op::Retry {
                job,
                delay_ms: delay.as_millis() as u64,
            },
            None => dead(reason),
        }
    }

    /// How an acknowledged job leaves: in ordered mode it hands its sender's hold on.
    fn ack_op(&self, job: &Job) -> Op {
        if !self.opts.ordered {
            return Op::Ack;
        }
        match job.from().or(job.from_user_id()) {
            Some(sender) => Op::Release {
                sender: sender.to_owned(),
                id: job.id().to_owned(),
            },
            None => Op::Ack,
        }
    }

    /// One round trip: settles the finished jobs at the old end of the list (and, once the list
    /// holds more than `eager` jobs, every other finished one by its index), renews the lease
    /// and takes up to `take` jobs. Jobs that are not UTF-8 are marked dead on arrival and
    /// settled by the next exchange.
    async fn exchange_locked(
        &self,
        lane: &mut Lane,
        take: usize,
        eager: usize,
    ) -> Result<Exchanged, QueueError> {
        self.prepare(lane).await?;
        let drop = lane.held.iter().take_while(|h| h.done.is_some()).count();
        let by_index: Vec<usize> = if lane.held.len() > eager {
            (drop..lane.held.len())
                .filter(|&i| lane.held[i].done.is_some())
                .take(1000)
                .collect()
        } else {
            Vec::new()
        };
        let take = take.min(1000);
        let mut out = Exchanged::default();
        if drop == 0 && by_index.is_empty() && take == 0 {
            return Ok(out);
        }
        let finish = |i: usize| lane.held[i].done.as_deref().expect("finished");
        let mut letters = String::with_capacity(1 + drop + 2 * by_index.len());
        if drop > 0 {
            letters.push('h');
        }
        for i in by_index.iter().copied() {
            letters.push('x');
            letters.push_str(op_letter(&finish(i).op));
        }
        for i in 0..drop {
            letters.push_str(op_letter(&finish(i).op));
        }
        // Until the answer is in, the list is unknown: a failed or cancelled call leaves it so,
        // and the next call gives this id up.
        lane.sync = false;
        let lease_ms = self.opts.lease.as_millis() as u64;
        let expected = lane.held.len();
        let keys = &self.shards[lane.shard];
        let nkeys = if keys.order.is_some() { 8 } else { 6 };
        let fill = |c: &mut redis::Cmd| {
            c.arg(&keys.pending)
                .arg(&lane.processing)
                .arg(&keys.consumers)
                .arg(&keys.delayed)
                .arg(&keys.dead)
                .arg(&lane.taking);
            keys.order_keys(c);
            c.arg(&*lane.id)
                .arg(lease_ms)
                .arg(expected)
                .arg(drop)
                .arg(take)
                .arg(&letters);
            if drop > 0 {
                c.arg(finish(0).raw.as_slice())
                    .arg(finish(drop - 1).raw.as_slice());
            }
            for i in by_index.iter().copied() {
                c.arg(i).arg(finish(i).raw.as_slice());
                op_args(c, &finish(i).op);
            }
            for i in 0..drop {
                op_args(c, &finish(i).op);
            }
        };
        let mut c = self.lanes[lane.index].conn.clone();
        let (answer, mut taken) = if take > 0 {
            // the jobs taken are read back with a plain LRANGE right behind the script
            let read = redis::cmd("LRANGE")
                .arg(&lane.processing)
                .arg(0)
                .arg(take - 1)
                .to_owned();
            let call = EXCHANGE.call_then::<Vec<Vec<u8>>>(&mut c, nkeys, fill, &read);
            bounded(self.opts.op_timeout, call).await?
        } else {
            let call = EXCHANGE.call::<redis::Value>(&mut c, nkeys, fill);
            (bounded(self.opts.op_timeout, call).await?, Vec::new())
        };
        let (status, n) = parse_exchange(&answer)?;
        if status == 1 && n > taken.len() {
            return Err(RedisFailure::unexpected(Unexpected::ShortProcessing).into());
        }
        // newest first as read; deliver (and mirror) oldest first
        taken.truncate(n);
        taken.reverse();
        match status {
            1 => {}
            0 => {
                let id = lane.id.clone();
                out.lease_lost = self.report_lost_lease(lane.index, &id);
                self.rotate(lane);
                return Ok(out);
            }
            _ => {
                tracing::warn!(consumer = %lane.id, "processing list is not as this consumer left it; returning it to pending and taking a new id");
                return Ok(out);
            }
        }
        for i in by_index.iter().rev().copied() {
            let h = lane.held.remove(i).expect("held");
            out.settled.push((h.seq, settled_as(h.done.as_deref())));
        }
        for h in lane.held.drain(..drop) {
            out.settled.push((h.seq, settled_as(h.done.as_deref())));
        }
        out.taken.reserve(taken.len());
        for raw in taken {
            let seq = lane.next_seq;
            lane.next_seq += 1;
            match String::from_utf8(raw) {
                Ok(raw) => {
                    lane.held.push_back(Held { seq, done: None });
                    out.taken.push(Delivery {
                        job: Job::parse(&raw),
                        raw,
                        lane: lane.index,
                        epoch: lane.epoch,
                        seq,
                    });
                }
                Err(e) => {
                    let raw = e.into_bytes();
                    let text = String::from_utf8_lossy(&raw);
                    let job = rewrite_dead(&text, None, "job is not UTF-8", now_ms());
                    let op = Op::Dead { job };
                    let done = Some(Box::new(Finish { raw, op }));
                    lane.held.push_back(Held { seq, done });
                }
            }
        }
        lane.sync = true;
        Ok(out)
    }

    /// For [`run`](crate::run): records `finished` outcomes and exchanges (see
    /// `exchange_locked`).
    pub(crate) async fn exchange(
        &self,
        lane: usize,
        finished: Vec<(Box<Delivery>, Outcome)>,
        take: usize,
        eager: usize,
    ) -> Result<Exchanged, QueueError> {
        let mut lane = self.lanes[lane].lane.lock().await;
        let mut not_owned = 0;
        for (mut d, outcome) in finished {
            let in_hand = Self::mark(&mut lane, (d.epoch, d.seq), || {
                let op = self.op_for(&d, &outcome);
                let raw = std::mem::take(&mut d.raw).into_bytes();
                Finish { raw, op }
            });
            if !in_hand {
                not_owned += 1;
                report_not_owned(&d, &outcome);
            }
        }
        let mut out = self.exchange_locked(&mut lane, take, eager).await?;
        out.not_owned = not_owned;
        Ok(out)
    }

    /// Waits until shard `shard`'s pending has work, at most the block time; true if it has.
    /// Moves nothing (a `BLMOVE` of pending onto itself, right to right), so it is safe to
    /// abandon.
    pub(crate) async fn wait_for_work(&self, shard: usize) -> Result<bool, QueueError> {
        let pending = &self.shards[shard].pending;
        let mut wait = self.blocking.get(pending).await?;
        let secs = format!("{:.3}", self.opts.block.as_secs_f64().max(0.01));
        let cmd = redis::cmd("BLMOVE")
            .arg(pending)
            .arg(pending)
            .arg("RIGHT")
            .arg("RIGHT")
            .arg(secs)
            .to_owned();
        let got = cmd.query_async::<Option<Vec<u8>>>(&mut wait.conn);
        let got = match tokio::time::timeout(self.opts.block + self.opts.op_timeout, got).await {
            Err(_) => return Err(QueueError::Timeout(self.opts.block + self.opts.op_timeout)),
            // The slot moved (a reshard or a failover in a cluster): look again through the
            // cluster connection, which follows it.
            Ok(Err(e)) if e.redirect_node().is_some() => return Ok(true),
            Ok(r) => r.map_err(crate::conn::redis_error)?,
        };
        self.blocking.put(wait);
        Ok(got.is_some())
    }

    /// Moves up to `max` jobs from pending into this consumer's processing list, waiting up to
    /// the block time when pending is empty.
    ///
    /// Oldest first. An empty answer means the block time passed with no work. A job whose
    /// bytes are not UTF-8 is moved straight to dead (lossily decoded) and not returned.
    /// Safe to cancel: if the answer is lost, the next call returns this consumer's whole
    /// list to pending and carries on under a new id.
    pub async fn fetch(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(self.opts.batch).min(1000);
        let n = self.shards.len();
        // Shards in turn, starting after the one that last gave jobs: none starves.
        let first = self.next_shard.load(std::sync::atomic::Ordering::Relaxed);
        for shard in (first..first + n).map(|s| s % n) {
            let got = self.take(shard, max).await?;
            if !got.is_empty() {
                self.next_shard
                    .store(shard + 1, std::sync::atomic::Ordering::Relaxed);
                return Ok(got);
            }
        }
        let waits = (0..n).map(|shard| Box::pin(self.wait_for_work(shard)));
        let (woke, _, _) = futures_util::future::select_all(waits).await;
        if !woke? {
            return Ok(Vec::new());
        }
        for shard in 0..n {
            let got = self.take(shard, max).await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
        Ok(Vec::new())
    }

    /// Takes up to `max` jobs through the first lane of `shard`.
    async fn take(&self, shard: usize, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let mut lane = self.lanes[shard].lane.lock().await;
        let x = self.exchange_locked(&mut lane, max, NEVER_EAGER).await?;
        if lane.held.iter().any(|h| h.done.is_some()) {
            // unreadable jobs: to dead now
            self.exchange_locked(&mut lane, 0, 0).await?;
        }
        Ok(x.taken)
    }

    /// Settles many deliveries in one round trip: `Done` acknowledges, `Retry` schedules the
    /// next delivery after a backoff (or dead once `max_attempts` deliveries are used up),
    /// `Dead` moves to dead. An unreadable delivery always goes to dead.
    pub async fn settle(
        &self,
        items: &[(&Delivery, &Outcome)],
    ) -> Result<Vec<Settled>, QueueError> {
        let mut out = vec![Settled::NotInHand; items.len()];
        for (index, cell) in self.lanes.iter().enumerate() {
            if !items.iter().any(|(d, _)| d.lane == index) {
                continue;
            }
            let mut lane = cell.lane.lock().await;
            let mut marked = Vec::new();
            for (at, (d, o)) in items
                .iter()
                .enumerate()
                .filter(|(_, (d, _))| d.lane == index)
            {
                let in_hand = Self::mark(&mut lane, (d.epoch, d.seq), || Finish {
                    raw: d.raw.clone().into_bytes(),
                    op: self.op_for(d, o),
                });
                if in_hand {
                    marked.push((at, d.seq));
                }
            }
            let mut settled = Vec::new();
            while lane.held.iter().any(|h| h.done.is_some()) {
                let before = lane.epoch;
                settled.extend(self.exchange_locked(&mut lane, 0, 0).await?.settled);
                if lane.epoch != before {
                    break;
                }
            }
            for (at, seq) in marked {
                if let Some((_, s)) = settled.iter().find(|(q, _)| *q == seq) {
                    out[at] = *s;
                }
            }
        }
        Ok(out)
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

    /// Moves retries that are due from delayed to the back of pending (up to 1000 per shard
    /// and call), earliest due first; returns how many.
    pub async fn promote_due(&self) -> Result<usize, QueueError> {
        let mut total = 0;
        for keys in &self.shards {
            let mut c = self.conn.clone();
            total += bounded(
                self.opts.op_timeout,
                PROMOTE.call::<usize>(&mut c, 2, |c| {
                    c.arg(&keys.delayed).arg(&keys.pending).arg(PROMOTE_BATCH);
                }),
            )
            .await?;
        }
        Ok(total)
    }

    /// Adds `n` to the queue's count of acknowledged jobs (`done` in the `counts` hash), which
    /// dashboards turn into a completion rate. Nothing is sent for 0.
    pub async fn count_done(&self, n: u64) -> Result<(), QueueError> {
        if n == 0 {
            return Ok(());
        }
        let mut c = self.conn.clone();
        bounded(
            self.opts.op_timeout,
            redis::cmd("HINCRBY")
                .arg(&self.counts)
                .arg(DONE_FIELD)
                .arg(n)
                .query_async::<()>(&mut c),
        )
        .await
    }

    /// Returns the jobs of every consumer whose lease has lapsed to pending; returns how many
    /// jobs. Safe to run from any number of consumers at once: the release script re-checks
    /// each lease atomically.
    pub async fn reap_expired(&self) -> Result<usize, QueueError> {
        let mine: Vec<Arc<str>> = (0..self.lanes.len()).map(|l| self.current_id(l)).collect();
        let mut total = 0;
        for (shard, keys) in self.shards.iter().enumerate() {
            let mut c = self.conn.clone();
            let ids: Vec<String> = bounded(
                self.opts.op_timeout,
                EXPIRED.call(&mut c, 1, |c| {
                    c.arg(&keys.consumers).arg(100);
                }),
            )
            .await?;
            for id in ids
                .iter()
                .filter(|id| !mine.iter().any(|m| **m == *id.as_str()))
            {
                let Some(r) = self.release(shard, id, false).await? else {
                    continue;
                };
                if r.dead > 0 {
                    tracing::warn!(consumer = %id, jobs = r.dead, "jobs lost with their worker too often went to dead");
                }
                total += r.returned + r.dead;
            }
        }
        Ok(total)
    }

    /// Returns `id`'s jobs in hand to pending and removes its lease; `None` if a reaper
    /// (`force` false) found the lease live. A reaper counts each job's lost delivery, and
    /// sends to dead the jobs whose deliveries reach `max_attempts` (see `release.lua`).
    async fn release(
        &self,
        shard: usize,
        id: &str,
        force: bool,
    ) -> Result<Option<Released>, QueueError> {
        let mut c = self.conn.clone();
        let keys = &self.shards[shard];
        let processing = keys.name.processing(id);
        let nkeys = if keys.order.is_some() { 6 } else { 4 };
        let answer: Vec<i64> = bounded(
            self.opts.op_timeout,
            RELEASE.call(&mut c, nkeys, |c| {
                c.arg(&keys.consumers)
                    .arg(&keys.pending)
                    .arg(&processing)
                    .arg(&keys.dead);
                keys.order_keys(c);
                c.arg(id)
                    .arg(if force { "1" } else { "0" })
                    .arg(self.opts.max_attempts);
            }),
        )
        .await?;
        match answer[..] {
            [returned, dead] if returned >= 0 && dead >= 0 => Ok(Some(Released {
                returned: returned as usize,
                dead: dead as usize,
            })),
            [-1] => Ok(None),
            _ => Err(RedisFailure::unexpected(Unexpected::ReleaseShape).into()),
        }
    }

    /// Settles what is finished, then returns every job still in hand to pending and removes
    /// the lease; returns how many jobs went back. The consumer can be used again: it then
    /// registers under a new id.
    pub(crate) async fn close(&self) -> Result<usize, QueueError> {
        let mut returned = 0;
        for cell in &self.lanes {
            let mut lane = cell.lane.lock().await;
            if lane.sync && lane.held.iter().any(|h| h.done.is_some()) {
                let flushed = self.exchange_locked(&mut lane, 0, 0).await;
                if let Err(e) = flushed {
                    tracing::warn!(error = %e, "could not settle finished jobs; they go back to pending");
                }
            }
            self.rotate(&mut lane);
            while let Some(old) = lane.abandoned.last().cloned() {
                returned += self
                    .release(lane.shard, &old, true)
                    .await?
                    .map_or(0, |r| r.returned);
                lane.abandoned.pop();
            }
        }
        Ok(returned)
    }

    /// Returns every job still in hand to pending and removes the lease (graceful stop).
    pub async fn shutdown(self) -> Result<usize, QueueError> {
        self.close().await
    }
}

/// A job finished after this consumer gave it up (its lease was lost, or a call's outcome was
/// unknown): it is back in pending or with another worker, so its outcome is not settled here.
fn report_not_owned(d: &Delivery, outcome: &Outcome) {
    let id = d.job.as_ref().map_or("(unreadable)", |j| j.id());
    let outcome = match outcome {
        Outcome::Done => "done",
        Outcome::Retry(..) | Outcome::RetryAfter(..) => "retry",
        Outcome::Dead(..) => "dead",
    };
    tracing::warn!(
        job_id = %id,
        attempt = d.number(),
        outcome,
        "finished a job this worker no longer holds (its lease was lost or given up): the \
         outcome is not settled here; the job went back to the queue"
    );
}

fn op_letter(op: &Op) -> &'static str {
    match op {
        Op::Ack => "",
        Op::Release { .. } => "o",
        Op::Retry { .. } => "r",
        Op::Dead { .. } => "d",
    }
}

fn op_args(c: &mut redis::Cmd, op: &Op) {
    match op {
        Op::Ack => {}
        Op::Release { sender, id } => {
            c.arg(sender).arg(id);
        }
        Op::Retry { job, delay_ms } => {
            c.arg(job).arg(*delay_ms);
        }
        Op::Dead { job } => {
            c.arg(job);
        }
    }
}

fn settled_as(done: Option<&Finish>) -> Settled {
    match done.map(|f| &f.op) {
        Some(Op::Ack | Op::Release { .. }) => Settled::Acked,
        Some(Op::Retry { .. }) => Settled::Retried,
        Some(Op::Dead { .. }) => Settled::Dead,
        None => Settled::NotInHand,
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
