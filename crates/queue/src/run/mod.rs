//! The run loop: fetch in batches, run handlers under a concurrency limit, settle in batches,
//! keep the lease, promote, reap, reconnect, stop gracefully.
//!
//! This module holds the settings and counts of a run and [`run`] itself; `run_loop` the loop
//! as a type whose steps are named methods; `pause` its backoff after failed calls; `handle`
//! one handler's guarded run; `deadlines` the handlers' time limit on a one-thread runtime (one
//! deadline per batch); `housekeeping` the tasks beside the loop (lease renewal,
//! promoter, reaper, the queue's `done` count).

mod deadlines;
mod handle;
mod housekeeping;
mod pause;
mod run_loop;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::consumer::{Exchanged, Settled};
use crate::{Consumer, Handler, QueueError};

use housekeeping::{housekeeping, publish_done, renew_leases};
use run_loop::RunLoop;

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

/// Declares [`Counters`]: each counter once, with its doc, as a private atomic only the run
/// loop adds to and the public method that reads it.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        /// Live counters of a [`run`], updated as jobs finish (relaxed atomics, read through the
        /// methods: only the run loop counts).
        #[derive(Debug, Default)]
        pub struct Counters {
            $($name: AtomicU64,)*
        }

        impl Counters {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> u64 {
                    self.$name.load(Relaxed)
                }
            )*
        }
    };
}

counters! {
    /// jobs acknowledged
    done;
    /// jobs scheduled for a retry
    retried;
    /// jobs moved to dead (by the handler, after max attempts, or unreadable)
    dead;
    /// jobs returned to pending at shutdown
    returned;
    /// failed Redis calls (each followed by a reconnect with backoff)
    redis_errors;
    /// leases found lost (a reaper gave this worker's jobs in hand to others), once each
    leases_lost;
    /// outcomes of jobs this worker no longer held when they finished (not settled)
    lost_outcomes;
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
/// - on a multi-thread runtime each handler runs as a task of its own. On a one-thread
///   runtime the loop polls it once itself: a handler that finishes right away (a no-op, one
///   that only updates memory) is done there, its outcome going out with the lane's next call,
///   which finds the processing list empty and takes the next jobs in the way that costs Redis
///   least; one that waits joins the set of handlers the loop polls within its own task (no
///   task per job), and its time limit is its batch's (one deadline for the handlers started
///   from one answer, not a timer per job);
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
    let counters = opts.counters().clone();
    let start = counters.summary();
    let renewer = tokio::spawn(renew_leases(consumer.clone(), counters.clone()));
    let published = Arc::new(AtomicU64::new(start.done));
    let housekeeper = tokio::spawn(housekeeping(
        consumer.clone(),
        counters.clone(),
        published.clone(),
        opts.housekeeping,
    ));
    let mut looping = RunLoop::new(consumer.clone(), handler, &opts);
    looping.drive(shutdown).await;
    housekeeper.abort();
    renewer.abort();
    let returned = looping.finish().await?;
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

/// Counts what one exchange settled and found.
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
