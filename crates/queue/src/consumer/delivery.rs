//! A job in hand ([`Delivery`]) and how its outcome was settled ([`Settled`]).

use crate::job::Job;

/// A job in hand: the parsed job (or why it did not parse) and the exact bytes held in the
/// processing list.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// the job, or the reason it could not be read (such a delivery can only go to dead)
    pub(super) job: Result<Job, String>,
    /// exact element in the processing list
    pub(super) raw: String,
    /// the lane it was taken by
    pub(super) lane: usize,
    /// the registration (consumer id) it was taken under
    pub(super) epoch: u64,
    /// its place in the order of taking
    pub(super) seq: u64,
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
