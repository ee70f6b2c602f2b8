//! The tasks beside the run loop: lease renewal on a schedule of its own, and the promoter,
//! the reaper and the queue's `done` count every `housekeeping`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::Counters;
use crate::consumer::PROMOTE_BATCH;
use crate::{Consumer, QueueError};

/// Lease renewal every third of the lease, on a schedule of its own: promoting a large backlog
/// of retries or reaping must never delay it past the lease.
pub(super) async fn renew_leases(consumer: Arc<Consumer>, counters: Arc<Counters>) {
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
pub(super) async fn publish_done(
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
pub(super) async fn housekeeping(
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
