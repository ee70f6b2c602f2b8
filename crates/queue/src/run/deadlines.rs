//! The handlers' time limit on a one-thread runtime: one deadline per batch of jobs taken,
//! instead of a tokio timer armed and dropped for every job.
//!
//! The handlers of one exchange's answer start together, so they share a deadline. Only the
//! oldest batch with handlers still running needs a timer, and one [`Sleep`] is reset to it
//! when that batch changes (once per batch, not per job). When it fires, every batch whose
//! deadline has passed is marked over time (see [`Overdue`]) and the loop polls its handlers
//! again, which then end as timeouts.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::handle::Overdue;

/// The instant `d` from now; a `d` too long to add (`--handler-timeout 500000years`) is about
/// thirty years, as `tokio::time::timeout` takes it, rather than a panic.
pub(super) fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
}

/// One batch whose handlers (some of them) still run in the loop's set.
struct Batch {
    number: u64,
    deadline: Instant,
    running: usize,
}

pub(super) struct Deadlines {
    /// oldest first, so numbers ascend (with gaps: a batch whose handlers all finished leaves
    /// once no older batch has handlers running)
    batches: VecDeque<Batch>,
    /// the number the next batch gets
    next: u64,
    /// batches up to this number are over time (0: none)
    through: Arc<AtomicU64>,
    timer: Pin<Box<Sleep>>,
    /// the batch `timer` is set to the deadline of
    armed: Option<u64>,
}

impl Deadlines {
    /// Needs a tokio runtime (for the timer).
    pub(super) fn new() -> Self {
        Self {
            batches: VecDeque::new(),
            next: 1,
            through: Arc::new(AtomicU64::new(0)),
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: None,
        }
    }

    /// A new batch whose handlers must finish by `deadline`; its number.
    pub(super) fn open(&mut self, deadline: Instant) -> u64 {
        let number = self.next;
        self.next += 1;
        self.batches.push_back(Batch {
            number,
            deadline,
            running: 0,
        });
        number
    }

    /// What a handler of `batch` carries to learn that its time is up.
    pub(super) fn overdue(&self, batch: u64) -> Overdue {
        Overdue {
            batch,
            through: self.through.clone(),
        }
    }

    /// A handler of the batch opened last joined the loop's set (it did not finish on its
    /// first poll).
    pub(super) fn joined(&mut self, batch: u64) {
        if let Some(b) = self.batches.back_mut().filter(|b| b.number == batch) {
            b.running += 1;
        }
    }

    /// A handler of `batch` in the loop's set finished (a batch already over time is gone).
    pub(super) fn finished(&mut self, batch: u64) {
        if let Ok(i) = self.batches.binary_search_by_key(&batch, |b| b.number) {
            self.batches[i].running -= 1;
            self.trim();
        }
    }

    /// Batches at the front with nothing running leave (after a batch was started, whose
    /// handlers may all have finished on their first poll).
    pub(super) fn trim(&mut self) {
        while self.batches.front().is_some_and(|b| b.running == 0) {
            self.batches.pop_front();
        }
    }

    /// Whether some batch has handlers running (and so a deadline to wait for).
    pub(super) fn any(&self) -> bool {
        !self.batches.is_empty()
    }

    /// Waits until the oldest batch with handlers running is over time (forever without one).
    pub(super) async fn passed(&mut self) {
        let Some(b) = self.batches.front() else {
            return std::future::pending().await;
        };
        if self.armed != Some(b.number) {
            self.timer.as_mut().reset(b.deadline);
            self.armed = Some(b.number);
        }
        self.timer.as_mut().await;
    }

    /// Marks every batch whose deadline is not after `now` over time; whether there was one
    /// (its handlers must then be polled again).
    pub(super) fn expire(&mut self, now: Instant) -> bool {
        let mut last = None;
        while let Some(b) = self.batches.front().filter(|b| b.deadline <= now) {
            last = Some(b.number);
            self.batches.pop_front();
        }
        if let Some(n) = last {
            self.through.store(n, Relaxed);
        }
        last.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit too long to add to the clock gives a far deadline, not a panic.
    #[tokio::test]
    async fn a_limit_too_long_is_far_away() {
        let far = after(Duration::MAX);
        assert!(far > Instant::now() + Duration::from_secs(20 * 365 * 86_400));
        let near = after(Duration::from_secs(1));
        assert!(near <= Instant::now() + Duration::from_secs(1));
    }

    /// Batches leave when their handlers finished and no older one runs, or when their
    /// deadline passes; only the batches whose deadline passed are marked over time.
    #[tokio::test]
    async fn batches_leave_and_expire_in_order() {
        let mut d = Deadlines::new();
        let t0 = Instant::now();
        let (a, b, c) = (
            d.open(t0 + Duration::from_secs(1)),
            d.open(t0 + Duration::from_secs(2)),
            d.open(t0 + Duration::from_secs(3)),
        );
        // two handlers of each still running
        d.batches.iter_mut().for_each(|x| x.running = 2);
        d.finished(b);
        d.finished(b);
        // an empty batch leaves once it is the oldest, not before
        assert_eq!(
            d.batches.iter().map(|x| x.number).collect::<Vec<_>>(),
            [a, b, c]
        );
        d.finished(a);
        assert!(!d.overdue(a).is_over());
        assert!(d.expire(t0 + Duration::from_millis(2500)));
        assert!(d.overdue(a).is_over() && d.overdue(b).is_over());
        assert!(!d.overdue(c).is_over());
        assert_eq!(d.batches.iter().map(|x| x.number).collect::<Vec<_>>(), [c]);
        // a handler of a batch already gone finishing changes nothing
        d.finished(a);
        assert!(!d.expire(t0 + Duration::from_millis(2600)));
        assert!(d.any());
        d.finished(c);
        d.finished(c);
        assert!(!d.any());
    }
}
