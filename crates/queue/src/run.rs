//! The run loop: fetch in batches, run handlers under a concurrency limit, settle in batches,
//! keep the lease, promote, reap, reconnect, stop gracefully.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::consumer::{Exchanged, PROMOTE_BATCH, Settled};
use crate::{Consumer, Delivery, Handler, Outcome, QueueError};

/// Settings of [`run`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunOptions {
    /// handlers running at once (default 16)
    pub concurrency: usize,
    /// a handler running longer is treated as a retry (default 30 s)
    pub handler_timeout: Duration,
    /// after shutdown is asked, how long running handlers may still take (default 30 s)
    pub shutdown_grace: Duration,
    /// live counts the embedding program can read while [`run`] goes on: see
    /// [`counters`](Self::counters)
    counters: Arc<Counters>,
    /// how often due retries are promoted and lapsed consumers reaped (default 1 s)
    pub housekeeping: Duration,
}

impl RunOptions {
    /// The live counts of the runs given these options, to read while they go on (for
    /// metrics); clone the `Arc` to keep them.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// These options counting into `counters` (shared with, say, a metrics endpoint set up
    /// before the options).
    pub fn with_counters(mut self, counters: Arc<Counters>) -> Self {
        self.counters = counters;
        self
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            handler_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            counters: Arc::default(),
            housekeeping: Duration::from_secs(1),
        }
    }
}

/// Live counters of a [`run`], updated as jobs finish (relaxed atomics, read through the
/// methods: only the run loop counts).
#[derive(Debug, Default)]
pub struct Counters {
    done: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    returned: AtomicU64,
    redis_errors: AtomicU64,
    leases_lost: AtomicU64,
    lost_outcomes: AtomicU64,
}

impl Counters {
    /// jobs acknowledged
    pub fn done(&self) -> u64 {
        self.done.load(Relaxed)
    }

    /// jobs scheduled for a retry
    pub fn retried(&self) -> u64 {
        self.retried.load(Relaxed)
    }

    /// jobs moved to dead (by the handler, after max attempts, or unreadable)
    pub fn dead(&self) -> u64 {
        self.dead.load(Relaxed)
    }

    /// jobs returned to pending at shutdown
    pub fn returned(&self) -> u64 {
        self.returned.load(Relaxed)
    }

    /// failed Redis calls (each followed by a reconnect with backoff)
    pub fn redis_errors(&self) -> u64 {
        self.redis_errors.load(Relaxed)
    }

    /// leases found lost (a reaper gave this worker's jobs in hand to others), once each
    pub fn leases_lost(&self) -> u64 {
        self.leases_lost.load(Relaxed)
    }

    /// outcomes of jobs this worker no longer held when they finished (not settled)
    pub fn lost_outcomes(&self) -> u64 {
        self.lost_outcomes.load(Relaxed)
    }
}

/// Counts of a finished [`run`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// acknowledged
    pub done: u64,
    /// scheduled for retry
    pub retried: u64,
    /// moved to dead
    pub dead: u64,
    /// returned to pending at shutdown
    pub returned: u64,
}

impl Counters {
    /// The counts that a [`RunSummary`] reports.
    fn summary(&self) -> RunSummary {
        RunSummary {
            done: self.done.load(Relaxed),
            retried: self.retried.load(Relaxed),
            dead: self.dead.load(Relaxed),
            returned: self.returned.load(Relaxed),
        }
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One exchange on the wire: its lane, the slots it asked for, and its answer.
type Call = Pin<Box<dyn Future<Output = (usize, usize, Result<Exchanged, QueueError>)> + Send>>;

fn next_backoff(b: Duration) -> Duration {
    (b * 2).min(BACKOFF_MAX)
}

/// Runs `handler` over the queue until `shutdown` resolves: fetches in batches, runs up to
/// `concurrency` handlers, renews the lease, promotes due delayed jobs, reaps dead consumers,
/// reconnects after Redis restarts, and on shutdown returns unfinished jobs to pending.
///
/// Details:
/// - the handler is told the delivery number (`attempt` + 1); a handler that panics or runs
///   past `handler_timeout` counts as `Retry`; `Retry` on the last allowed delivery is dead;
/// - one call to Redis per lane ([`ConsumerOptions::lanes`](crate::ConsumerOptions)) at a
///   time does all the talking: it settles whatever of that lane finished while its previous
///   call was on the wire, renews the lease and takes as many jobs as there are free handler
///   slots (up to the batch size); when pending is empty, a blocking wait (which
///   moves nothing) wakes the loop as soon as work arrives;
/// - each handler runs as a task of its own; on a one-thread runtime the loop first polls it
///   once itself, and a handler that finishes right away (a no-op, one that only updates
///   memory) needs no task. Its outcome then goes out with the lane's next call, which finds
///   the processing list empty and takes the next jobs in the way that costs Redis least;
/// - when Redis fails, the loop counts the error, waits (100 ms doubling to 5 s) and goes on.
///   Since the failed call's outcome is unknown, the consumer returns its whole processing
///   list to pending (as soon as Redis answers again) and goes on under a new id: jobs it held,
///   including finished ones whose acknowledgement was in that call, are delivered again (at
///   least once, never lost). Handlers still running for the old id finish, and their outcomes
///   are not settled: each is logged (job id, outcome) and counted in
///   [`Counters::lost_outcomes`];
/// - the lease is renewed every third of it by a task of its own, apart from the promoter and
///   reaper (every `housekeeping`). A consumer that finds its lease gone (it was paused or cut
///   off longer than the lease, and a reaper gave its jobs to others) takes nothing more under
///   that id, logs it once, counts it in [`Counters::leases_lost`], and registers a new id; the
///   outcomes of the jobs it lost are reported as above;
/// - on shutdown: no new jobs are taken, running handlers get `shutdown_grace`, their
///   outcomes are settled, and every job still in hand goes back to the consumers' end of
///   pending; then the lease is removed.
///
/// Returns the counts of this run (the `counters` keep accumulating across runs).
pub async fn run<H: Handler>(
    consumer: Consumer,
    handler: H,
    opts: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, QueueError> {
    let consumer = Arc::new(consumer);
    let handler = Arc::new(handler);
    let counters = opts.counters.clone();
    let start = counters.summary();
    let concurrency = opts.concurrency.max(1);
    let batch = consumer.options().batch.max(1);
    // Finished jobs wait for older ones still running (to be dropped from the list's end by
    // count) until the list holds this many; beyond, they are removed by index.
    let eager = concurrency + batch;
    let (tx, mut rx) = mpsc::unbounded_channel::<(Box<Delivery>, Outcome)>();
    let renewer = tokio::spawn(renew_leases(consumer.clone(), counters.clone()));
    let published = Arc::new(AtomicU64::new(start.done));
    let housekeeper = tokio::spawn(housekeeping(
        consumer.clone(),
        counters.clone(),
        published.clone(),
        opts.housekeeping,
    ));
    let mut tasks = JoinSet::new();
    let one_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    // handlers started whose outcome has not come back yet
    let mut running = 0usize;
    let lanes = consumer.lanes();
    // outcomes waiting for their lane's next call
    let mut finished: Vec<Vec<(Box<Delivery>, Outcome)>> = (0..lanes).map(|_| Vec::new()).collect();
    // one call on the wire per lane at most; `reserved` handler slots are asked for by them
    let mut busy = vec![false; lanes];
    let mut reserved = 0usize;
    let mut calls = FuturesUnordered::new();
    let mut backoff = BACKOFF_MIN;
    // after a failed call, no new call before this
    let mut paused_until: Option<Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut stopping = false;
    let mut grace_end = None;
    let mut failures_stopping = 0;
    // per shard: the last call found its pending empty: take nothing there until its
    // blocking wait says otherwise
    let shards = consumer.shards();
    let mut idle = vec![false; shards];
    // the blocking waits on the wire, and which shards have one
    let mut waits = FuturesUnordered::new();
    let mut waiting = vec![false; shards];
    // shards are offered free slots in turn from here, so that none starves (the lanes of one
    // shard in their order, as without shards: the second only while the first is busy)
    let mut first_shard = 0;
    let per_shard = lanes / shards;
    loop {
        while let Ok(f) = rx.try_recv() {
            running -= 1;
            finished[f.0.lane()].push(f);
        }
        while tasks.try_join_next().is_some() {}
        if paused_until.is_some_and(|t| Instant::now() >= t) {
            paused_until = None;
        }
        let order = (first_shard..first_shard + shards)
            .flat_map(|s| (0..per_shard).map(move |k| k * shards + s % shards));
        for lane in order {
            if busy[lane] || paused_until.is_some() {
                continue;
            }
            let take = if stopping || idle[consumer.lane_shard(lane)] {
                0
            } else {
                concurrency.saturating_sub(running + reserved).min(batch)
            };
            if take == 0 && finished[lane].is_empty() {
                continue;
            }
            // With a call on the wire already, let work pile up for this one: a call per
            // handful of jobs would cost more round trips than it saves waiting. Half a batch
            // (or half of all the slots, when there are fewer) is worth a call of its own.
            let worth = take.max(finished[lane].len()) >= batch.min(concurrency).div_ceil(2);
            if !calls.is_empty() && !worth && !stopping {
                continue;
            }
            busy[lane] = true;
            first_shard = consumer.lane_shard(lane) + 1;
            reserved += take;
            let outcomes = std::mem::take(&mut finished[lane]);
            let c = consumer.clone();
            let mut call: Call = Box::pin(async move {
                let r = c.exchange(lane, outcomes, take, eager).await;
                (lane, take, r)
            });
            // Poll it once now, so its request is on the wire before this task goes on to
            // the other lane's answer (turning that into deliveries takes a while). The
            // set polls it again with its own waker.
            match poll_now(call.as_mut()) {
                Poll::Pending => calls.push(call),
                Poll::Ready(done) => calls.push(Box::pin(std::future::ready(done))),
            }
        }
        if stopping && running == 0 && calls.is_empty() && finished.iter().all(Vec::is_empty) {
            break;
        }
        // Wait for a call's answer, a handler to finish, shutdown, the end of a pause or of
        // the grace period, or (with free slots and a shard found empty) for work there.
        if stopping {
            waits.clear();
            waiting.fill(false);
        } else if paused_until.is_none() && running < concurrency {
            for shard in 0..shards {
                let shard_busy = (0..lanes).any(|l| busy[l] && consumer.lane_shard(l) == shard);
                if idle[shard] && !waiting[shard] && !shard_busy {
                    waiting[shard] = true;
                    let c = consumer.clone();
                    waits.push(Box::pin(
                        async move { (shard, c.wait_for_work(shard).await) },
                    ));
                }
            }
        }
        let grace = async {
            match grace_end {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let pause = async {
            match paused_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut shutdown, if !stopping => {
                stopping = true;
                grace_end = Some(Instant::now() + opts.shutdown_grace);
            }
            Some((lane, take, r)) = calls.next() => {
                busy[lane] = false;
                reserved -= take;
                match r {
                    Ok(x) => {
                        backoff = BACKOFF_MIN;
                        count(&counters, &x);
                        if take > 0 {
                            idle[consumer.lane_shard(lane)] = x.taken.len() < take;
                        }
                        for d in x.taken {
                            if let Err(why) = d.job() {
                                let why = why.to_owned();
                                finished[lane].push((Box::new(d), Outcome::Dead(why)));
                                continue;
                            }
                            running += 1;
                            let d = Box::new(d);
                            let mut job =
                                Box::pin(handle(handler.clone(), d, opts.handler_timeout, tx.clone()));
                            // On one thread, a handler that finishes on its first poll (a
                            // no-op, one that only updates memory) is run right here: no task
                            // to set up, and its outcome goes out with this lane's next call,
                            // so that call leaves the list empty and takes the cheap way (see
                            // exchange.lua). With more threads, handlers spread over them.
                            if one_thread && poll_now(job.as_mut()).is_ready() {
                                continue;
                            }
                            tasks.spawn(job);
                        }
                        // Let the new handlers start before looking at the other lane's
                        // answer: quick ones finish now, and their outcomes go out with this
                        // lane's next call while Redis still has the other lane's to answer.
                        tokio::task::yield_now().await;
                    }
                    Err(e) => {
                        counters.redis_errors.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, retry_in = ?backoff, "call to redis failed");
                        if stopping {
                            failures_stopping += 1;
                            if failures_stopping >= 3 {
                                tracing::warn!("giving up settling; jobs in hand go back to pending");
                                break;
                            }
                        }
                        paused_until = Some(Instant::now() + backoff);
                        backoff = next_backoff(backoff);
                    }
                }
            }
            Some(f) = rx.recv() => {
                running -= 1;
                finished[f.0.lane()].push(f);
            }
            Some((shard, r)) = waits.next(), if !waits.is_empty() => {
                waiting[shard] = false;
                idle[shard] = false;
                if let Err(e) = r {
                    counters.redis_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, retry_in = ?backoff, "waiting for work failed");
                    paused_until = Some(Instant::now() + backoff);
                    backoff = next_backoff(backoff);
                }
            }
            _ = pause => {}
            _ = grace => {
                tracing::warn!(still_running = running, "shutdown grace over; abandoning handlers");
                tasks.abort_all();
                break;
            }
        }
    }
    drop(waits);
    drop(calls);
    housekeeper.abort();
    renewer.abort();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // Outcomes that came in last (or were left by an abandoned loop): settle what can be.
    while let Ok(f) = rx.try_recv() {
        finished[f.0.lane()].push(f);
    }
    for (lane, outcomes) in finished.into_iter().enumerate() {
        if outcomes.is_empty() {
            continue;
        }
        match consumer.exchange(lane, outcomes, 0, 0).await {
            Ok(x) => count(&counters, &x),
            Err(e) => {
                counters.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "could not settle the last outcomes; those jobs go back to pending");
            }
        }
    }
    let returned = match consumer.close().await {
        Ok(n) => n,
        Err(e) => {
            counters.redis_errors.fetch_add(1, Relaxed);
            return Err(e);
        }
    };
    counters.returned.fetch_add(returned as u64, Relaxed);
    if let Err(e) = publish_done(&consumer, &counters, &published).await {
        tracing::warn!(error = %e, "could not add the last acknowledged jobs to the queue's count");
    }
    let end = counters.summary();
    Ok(RunSummary {
        done: end.done - start.done,
        retried: end.retried - start.retried,
        dead: end.dead - start.dead,
        returned: end.returned - start.returned,
    })
}

/// Polls `f` once, with a waker that does nothing. A future still pending must then be polled
/// again by someone who will be woken (it goes into the set of calls, or is spawned).
fn poll_now<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// Runs one handler (a panic or a timeout is a retry) and reports the outcome.
async fn handle<H: Handler>(
    handler: Arc<H>,
    d: Box<Delivery>,
    limit: Duration,
    tx: mpsc::UnboundedSender<(Box<Delivery>, Outcome)>,
) {
    let outcome = match d.job() {
        Ok(j) => {
            // the handler is called inside the guarded future, so that a panic while it makes
            // its future (not only while that runs) is caught too
            let call =
                AssertUnwindSafe(async { handler.handle(j, d.number()).await }).catch_unwind();
            match tokio::time::timeout(limit, call).await {
                Ok(Ok(o)) => o,
                Ok(Err(_)) => Outcome::Retry("handler panicked".into()),
                Err(_) => Outcome::Retry(format!("handler timed out after {limit:?}")),
            }
        }
        Err(why) => Outcome::Dead(why.to_owned()),
    };
    let _ = tx.send((d, outcome));
}

fn count(counters: &Counters, x: &Exchanged) {
    if x.lease_lost {
        counters.leases_lost.fetch_add(1, Relaxed);
    }
    counters
        .lost_outcomes
        .fetch_add(x.not_owned as u64, Relaxed);
    for (_, s) in &x.settled {
        let c = match s {
            Settled::Acked => &counters.done,
            Settled::Retried => &counters.retried,
            Settled::Dead => &counters.dead,
            _ => continue,
        };
        c.fetch_add(1, Relaxed);
    }
}

/// Lease renewal every third of the lease, on a schedule of its own: promoting a large backlog
/// of retries or reaping must never delay it past the lease.
async fn renew_leases(consumer: Arc<Consumer>, counters: Arc<Counters>) {
    let every = (consumer.options().lease / 3).max(Duration::from_millis(10));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match consumer.renew_leases().await {
            Ok(lost) => {
                counters.leases_lost.fetch_add(lost as u64, Relaxed);
            }
            Err(e) => {
                counters.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "lease renewal failed");
            }
        }
    }
}

/// Adds the jobs acknowledged since the last call (`published` of them were counted) to the
/// queue's `done` count.
async fn publish_done(
    consumer: &Consumer,
    counters: &Counters,
    published: &AtomicU64,
) -> Result<(), QueueError> {
    let done = counters.done.load(Relaxed);
    consumer
        .count_done(done.saturating_sub(published.load(Relaxed)))
        .await?;
    published.store(done, Relaxed);
    Ok(())
}

/// Promoter, reaper and the queue's `done` count every `every`.
async fn housekeeping(
    consumer: Arc<Consumer>,
    counters: Arc<Counters>,
    published: Arc<AtomicU64>,
    every: Duration,
) {
    let mut interval = tokio::time::interval(every.max(Duration::from_millis(10)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let chores = async {
            while consumer.promote_due().await? >= PROMOTE_BATCH {}
            let reaped = consumer.reap_expired().await?;
            if reaped > 0 {
                tracing::info!(jobs = reaped, "took back the jobs of lapsed consumers");
            }
            publish_done(&consumer, &counters, &published).await?;
            Ok::<_, QueueError>(())
        };
        if let Err(e) = chores.await {
            counters.redis_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "promote/reap failed");
        }
    }
}
