//! The last hour of the queue, sampled by the dashboard process: depths every [`STEP`], and the
//! enqueue and completion rates between samples.
//!
//! The completion rate comes from the queue's own `done` count (the `counts` hash that
//! wa-queue's run loop keeps). Nothing counts enqueues, so that rate is worked out: every job
//! that entered is still in the queue (pending, delayed, in hand, dead), or was acknowledged, or
//! was purged; so entered = growth of the four depths + acknowledged + purged. Purges by this
//! dashboard are counted; a purge by anything else in the same interval makes that interval's
//! figure low by as many jobs.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;
use wa_queue::{Admin, Stats};

/// Time between samples.
pub const STEP: Duration = Duration::from_secs(5);
/// Samples kept: one hour.
const KEEP: usize = 3600 / 5;

/// One sample of the queue.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Redis's clock, ms since the epoch
    at_ms: u64,
    /// pending + delayed + in hand + dead
    held: u64,
    /// the queue's `done` count, when a consumer keeps it
    done: Option<u64>,
    /// jobs this dashboard purged so far
    purged: u64,
}

/// One point of the chart: rates over the interval that ends at `t`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Point {
    /// end of the interval, ms since the epoch
    pub t: u64,
    /// jobs that entered the queue per second (`None` without a `done` count)
    pub enqueued: Option<f64>,
    /// jobs acknowledged per second (`None` without a `done` count)
    pub completed: Option<f64>,
}

/// The samples of the last hour, and the dashboard's own purges.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    purged: AtomicU64,
}

fn held(s: &Stats) -> u64 {
    let in_hand: u64 = s.processing.iter().map(|(_, n)| n).sum();
    s.pending + s.delayed + in_hand + s.dead
}

impl History {
    /// Counts jobs this dashboard purged (they left the queue without being acknowledged).
    pub fn add_purged(&self, n: u64) {
        self.purged.fetch_add(n, Relaxed);
    }

    /// Records a sample.
    pub fn record(&self, s: &Stats) {
        let sample = Sample {
            at_ms: s.server_time_ms,
            held: held(s),
            done: s.done,
            purged: self.purged.load(Relaxed),
        };
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == KEEP {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The chart: one point per pair of neighbouring samples, oldest first.
    pub fn points(&self) -> Vec<Point> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .filter_map(|(a, b)| rates(a, b))
            .collect()
    }
}

/// The rates between two samples; `None` when the clock did not move forward.
fn rates(a: &Sample, b: &Sample) -> Option<Point> {
    let secs = b.at_ms.checked_sub(a.at_ms).filter(|&ms| ms > 0)? as f64 / 1000.0;
    let done = match (a.done, b.done) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x)),
        (None, Some(y)) => Some(y),
        _ => None,
    };
    let entered = done.map(|d| {
        let grown = b.held as i128 - a.held as i128;
        let purged = i128::from(b.purged.saturating_sub(a.purged));
        (grown + i128::from(d) + purged).max(0) as f64
    });
    Some(Point {
        t: b.at_ms,
        enqueued: entered.map(|e| e / secs),
        completed: done.map(|d| d as f64 / secs),
    })
}

/// Samples the queue every [`STEP`] for as long as the dashboard runs.
pub async fn sample(admin: Admin, history: std::sync::Arc<History>) {
    let mut tick = tokio::time::interval(STEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match admin.stats().await {
            Ok(s) => history.record(&s),
            Err(e) => tracing::warn!(error = %e, "dashboard: sampling the queue failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_ms: u64, held: u64, done: Option<u64>, purged: u64) -> Sample {
        Sample {
            at_ms,
            held,
            done,
            purged,
        }
    }

    /// Entered = growth of what the queue holds + acknowledged + purged, per second.
    #[test]
    fn rates_from_counts() {
        let p = rates(&at(0, 100, Some(10), 0), &at(5000, 150, Some(60), 0)).unwrap();
        assert_eq!((p.enqueued, p.completed), (Some(20.0), Some(10.0)));
        // Purging 30 while nothing else happened is no enqueue.
        let p = rates(&at(0, 100, Some(10), 0), &at(1000, 70, Some(10), 30)).unwrap();
        assert_eq!((p.enqueued, p.completed), (Some(0.0), Some(0.0)));
    }

    /// Without a done count there is no rate; a clock that stands still gives no point.
    #[test]
    fn no_count_no_rate() {
        let p = rates(&at(0, 1, None, 0), &at(1000, 5, None, 0)).unwrap();
        assert_eq!((p.enqueued, p.completed), (None, None));
        assert!(rates(&at(1000, 1, None, 0), &at(1000, 5, None, 0)).is_none());
    }
}
