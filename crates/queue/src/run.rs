//! The run loop: fetch in batches, run handlers under a concurrency limit, settle in batches,
//! keep the lease, promote, reap, reconnect, stop gracefully.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::consumer::Settled;
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
    /// live counts the embedding program can read while [`run`] goes on (for metrics)
    pub counters: Arc<Counters>,
    /// how often due retries are promoted and lapsed consumers reaped (default 1 s)
    pub housekeeping: Duration,
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

/// Live counters of a [`run`], updated as jobs finish (relaxed atomics).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Counters {
    /// jobs acknowledged
    pub done: AtomicU64,
    /// jobs scheduled for a retry
    pub retried: AtomicU64,
    /// jobs moved to dead (by the handler, after max attempts, or unreadable)
    pub dead: AtomicU64,
    /// jobs returned to pending at shutdown
    pub returned: AtomicU64,
    /// failed Redis calls (each followed by a reconnect with backoff)
    pub redis_errors: AtomicU64,
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
    fn summary(&self) -> RunSummary {
        RunSummary {
            done: self.done.load(Relaxed),
            retried: self.retried.load(Relaxed),
            dead: self.dead.load(Relaxed),
            returned: self.returned.load(Relaxed),
        }
    }
}

/// Fetch round trips outstanding at once in [`run`].
const FETCHES_IN_FLIGHT: usize = 2;
/// Settle round trips outstanding at once in [`run`].
const SETTLES_IN_FLIGHT: usize = 4;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

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
/// - finished jobs are settled in batches (one round trip for all that finished meanwhile);
/// - when Redis fails, the loop counts the error, waits (100 ms doubling to 5 s) and goes on.
///   Jobs in hand stay in this consumer's processing list meanwhile; if the outage outlasts the
///   lease, another consumer may reap them and run them again (at least once, never lost).
///   After a failed fetch (whose reply may have been lost with jobs already moved), the loop
///   stops fetching until every job it knows of is settled, then returns whatever is left in
///   its processing list to pending and goes on;
/// - on shutdown: no new fetch (a blocking fetch already waiting is let finish, at most the
///   block time), running handlers get `shutdown_grace`, their outcomes are settled, and every
///   job still in hand goes back to the consumers' end of pending; then the lease is removed.
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
    let slots = Arc::new(Semaphore::new(concurrency));
    let (tx, settle_rx) = mpsc::unbounded_channel::<(Delivery, Outcome)>();
    // Outcomes sent but not yet settled (or given up on), for the recovery check below.
    let unsettled = Arc::new(AtomicUsize::new(0));
    let settle_tx = SettleTx {
        tx,
        unsettled: unsettled.clone(),
    };
    let settler = tokio::spawn(settle_loop(
        consumer.clone(),
        settle_rx,
        counters.clone(),
        unsettled.clone(),
    ));
    let housekeeper = tokio::spawn(housekeeping(
        consumer.clone(),
        counters.clone(),
        opts.housekeeping,
    ));
    let mut running = JoinSet::new();
    let mut backoff = BACKOFF_MIN;
    let mut shutdown = std::pin::pin!(shutdown);

    // Up to two fetches in flight: while one round trip is on the wire the previous batch is
    // being handled, so the loop is not bound by one fetch latency per batch.
    let mut fetches = FuturesUnordered::new();
    let mut spare: Option<OwnedSemaphorePermit> = None;
    let mut stopping = false;
    // Set when a fetch failed: the script may have run and moved jobs whose reply was lost
    // (Redis killed before answering, timeout). They sit in our processing list unseen, and
    // our lease, kept alive, stops any reaper from returning them. So once every job we know
    // of is finished and settled, give back whatever is left in the list, then go on.
    let mut needs_recovery = false;
    loop {
        while running.try_join_next().is_some() {}
        if needs_recovery && !stopping && fetches.is_empty() {
            let free = slots.available_permits() + usize::from(spare.is_some());
            if free == concurrency && unsettled.load(Relaxed) == 0 {
                match consumer.recover().await {
                    Ok(n) => {
                        needs_recovery = false;
                        if n > 0 {
                            tracing::info!(jobs = n, "returned unseen jobs in hand to pending");
                        }
                    }
                    Err(e) => {
                        counters.redis_errors.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, retry_in = ?backoff, "recovery failed");
                        tokio::select! {
                            biased;
                            _ = &mut shutdown => stopping = true,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = next_backoff(backoff);
                    }
                }
            } else {
                tokio::select! {
                    biased;
                    _ = &mut shutdown => stopping = true,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
            continue;
        }
        while !stopping && !needs_recovery && fetches.len() < FETCHES_IN_FLIGHT {
            let Some(first) = spare
                .take()
                .or_else(|| slots.clone().try_acquire_owned().ok())
            else {
                break;
            };
            let mut permits = vec![first];
            while permits.len() < batch {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let c = consumer.clone();
            // Never cancelled, not even by shutdown: a cancelled BLMOVE would still move a
            // job on the server. A fetch waits at most the block time.
            fetches.push(async move {
                let r = c.fetch(permits.len()).await;
                (r, permits)
            });
        }
        if fetches.is_empty() {
            if stopping {
                break;
            }
            if needs_recovery {
                continue;
            }
            // Every slot is busy: wait for one (or for shutdown).
            tokio::select! {
                biased;
                _ = &mut shutdown => stopping = true,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => spare = Some(p),
                    Err(_) => stopping = true,
                },
            }
            continue;
        }
        let (fetched, mut permits) = tokio::select! {
            biased;
            _ = &mut shutdown, if !stopping => {
                stopping = true;
                continue;
            }
            Some(done) = fetches.next() => done,
        };
        let deliveries = match fetched {
            Ok(d) => {
                backoff = BACKOFF_MIN;
                d
            }
            Err(e) => {
                counters.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, retry_in = ?backoff, "fetch failed");
                needs_recovery = true;
                drop(permits);
                if !stopping {
                    tokio::select! {
                        biased;
                        _ = &mut shutdown => stopping = true,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
                backoff = next_backoff(backoff);
                continue;
            }
        };
        if stopping {
            // Fetched after shutdown was asked: not started; they go back to pending with
            // the rest of what is in hand.
            continue;
        }
        for d in deliveries {
            let Some(permit) = permits.pop() else {
                // Cannot happen (fetch returns at most what was asked); settle it anyway.
                settle_tx.send((d, Outcome::Retry("no handler slot".into())));
                continue;
            };
            if let Err(why) = &d.job {
                let why = why.clone();
                settle_tx.send((d, Outcome::Dead(why)));
                continue;
            }
            let handler = handler.clone();
            let tx = settle_tx.clone();
            let limit = opts.handler_timeout;
            running.spawn(async move {
                let outcome = match &d.job {
                    Ok(j) => {
                        let call = AssertUnwindSafe(handler.handle(j, d.number())).catch_unwind();
                        match tokio::time::timeout(limit, call).await {
                            Ok(Ok(o)) => o,
                            Ok(Err(_)) => Outcome::Retry("handler panicked".into()),
                            Err(_) => Outcome::Retry(format!("handler timed out after {limit:?}")),
                        }
                    }
                    Err(why) => Outcome::Dead(why.clone()),
                };
                tx.send((d, outcome));
                drop(permit);
            });
        }
    }
    drop(spare);

    // Graceful stop: let running handlers finish within the grace period.
    let grace = tokio::time::timeout(opts.shutdown_grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if grace.is_err() {
        tracing::warn!(
            still_running = running.len(),
            "shutdown grace over; abandoning handlers"
        );
        running.abort_all();
        while running.join_next().await.is_some() {}
    }
    drop(settle_tx);
    // The settler ends once every outcome is sent (it gives up after a few failed tries).
    let _ = settler.await;
    housekeeper.abort();
    let returned = match consumer.release_all().await {
        Ok(n) => n,
        Err(e) => {
            counters.redis_errors.fetch_add(1, Relaxed);
            return Err(e);
        }
    };
    counters.returned.fetch_add(returned as u64, Relaxed);
    let end = counters.summary();
    Ok(RunSummary {
        done: end.done - start.done,
        retried: end.retried - start.retried,
        dead: end.dead - start.dead,
        returned: end.returned - start.returned,
    })
}

/// The sending side of the settle channel, counting what it sent.
#[derive(Clone)]
struct SettleTx {
    tx: mpsc::UnboundedSender<(Delivery, Outcome)>,
    unsettled: Arc<AtomicUsize>,
}

impl SettleTx {
    fn send(&self, item: (Delivery, Outcome)) {
        self.unsettled.fetch_add(1, Relaxed);
        if self.tx.send(item).is_err() {
            self.unsettled.fetch_sub(1, Relaxed);
        }
    }
}

/// Settles outcomes in batches: whatever finished while earlier calls were on the wire, with
/// up to [`SETTLES_IN_FLIGHT`] calls outstanding.
async fn settle_loop(
    consumer: Arc<Consumer>,
    mut rx: mpsc::UnboundedReceiver<(Delivery, Outcome)>,
    counters: Arc<Counters>,
    unsettled: Arc<AtomicUsize>,
) {
    let slots = Arc::new(Semaphore::new(SETTLES_IN_FLIGHT));
    let stopping = Arc::new(AtomicBool::new(false));
    let mut calls = JoinSet::new();
    while let Some(first) = rx.recv().await {
        // Waiting for a slot first lets outcomes pile up meanwhile: that is the batching.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut buf = Vec::with_capacity(64);
        buf.push(first);
        while buf.len() < 512 {
            match rx.try_recv() {
                Ok(x) => buf.push(x),
                Err(_) => break,
            }
        }
        while calls.try_join_next().is_some() {}
        let (consumer, counters, stopping) = (consumer.clone(), counters.clone(), stopping.clone());
        let unsettled = unsettled.clone();
        calls.spawn(async move {
            let n = buf.len();
            settle_batch(consumer, buf, counters, stopping, slot).await;
            unsettled.fetch_sub(n, Relaxed);
        });
    }
    stopping.store(true, Relaxed);
    while calls.join_next().await.is_some() {}
}

async fn settle_batch(
    consumer: Arc<Consumer>,
    buf: Vec<(Delivery, Outcome)>,
    counters: Arc<Counters>,
    stopping: Arc<AtomicBool>,
    _slot: OwnedSemaphorePermit,
) {
    let items: Vec<(&Delivery, &Outcome)> = buf.iter().map(|(d, o)| (d, o)).collect();
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0;
    loop {
        match consumer.settle(&items).await {
            Ok(res) => {
                for s in res {
                    let c = match s {
                        Settled::Acked => &counters.done,
                        Settled::Retried => &counters.retried,
                        Settled::Dead => &counters.dead,
                        _ => continue,
                    };
                    c.fetch_add(1, Relaxed);
                }
                return;
            }
            Err(e) => {
                counters.redis_errors.fetch_add(1, Relaxed);
                failures += 1;
                // While running, keep trying: the jobs stay in hand meanwhile. Once stopping,
                // give up after a few tries; the jobs then go back to pending with the rest
                // of what is in hand, or to a reaper.
                if stopping.load(Relaxed) && failures >= 3 {
                    tracing::warn!(error = %e, jobs = items.len(), "settle failed; leaving jobs in hand");
                    return;
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "settle failed");
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
            }
        }
    }
}

/// Lease renewal every third of the lease; promoter and reaper every `every`.
async fn housekeeping(consumer: Arc<Consumer>, counters: Arc<Counters>, every: Duration) {
    let lease = consumer.options().lease;
    let tick = every.min(lease / 3).max(Duration::from_millis(10));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_renew = tokio::time::Instant::now();
    let mut last_chores = tokio::time::Instant::now() - every;
    loop {
        interval.tick().await;
        if last_renew.elapsed() >= lease / 3 {
            match consumer.renew_lease().await {
                Ok(()) => last_renew = tokio::time::Instant::now(),
                Err(e) => {
                    counters.redis_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "lease renewal failed");
                }
            }
        }
        if last_chores.elapsed() >= every {
            last_chores = tokio::time::Instant::now();
            let chores = async {
                while consumer.promote_due().await? >= 1000 {}
                let reaped = consumer.reap_expired().await?;
                if reaped > 0 {
                    tracing::info!(jobs = reaped, "returned the jobs of lapsed consumers");
                }
                Ok::<_, QueueError>(())
            };
            if let Err(e) = chores.await {
                counters.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "promote/reap failed");
            }
        }
    }
}
