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

use tokio::time::{Instant, Sleep};

use super::handle::Overdue;

/// One batch whose handlers (some of them) still run in the loop's set.
struct Batch {
    number: u64,
    deadline: Instant,
    running: usize,
}

pub(super) struct Deadlines {
    /// oldest first, so numbers ascend (with gaps: batches whose handlers all finished leave)
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
