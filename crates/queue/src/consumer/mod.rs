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
//!
//! # Layout
//!
//! This module holds [`Consumer`] and its public calls (connect, fetch, settle, ack, retry,
//! dead); `options` what a handler answers and the consumer's settings; `delivery` a job in
//! hand; `lane` the lanes and their ids; `exchange` the exchange call and the letters it
//! sends; `housekeeping` leases, the promoter, the reaper and giving jobs back.

mod delivery;
mod exchange;
mod housekeeping;
mod lane;
mod options;

use std::fmt;

use tokio::sync::Mutex;

use crate::conn::{Conn, IntoRedisOptions, Waits};
use crate::order::check_order_mode;
use crate::shard::check_shard_count;
use crate::{QueueError, QueueName};

pub use delivery::{Delivery, Settled};
pub(crate) use exchange::Exchanged;
pub(crate) use housekeeping::PROMOTE_BATCH;
pub use options::{ConsumerOptions, Handler, Outcome};

use exchange::{Finish, NEVER_EAGER};
use lane::{Current, Lane, LaneCell};
use options::MAX_PER_CALL;

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

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue)
            .field("id", &self.id())
            .field("opts", &self.opts)
            .finish_non_exhaustive()
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
        let max = max.min(self.opts.batch).min(MAX_PER_CALL);
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
                    raw: d.raw().as_bytes().to_vec(),
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
}
