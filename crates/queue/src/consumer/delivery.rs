//! A job in hand ([`Delivery`]) and how its outcome was settled ([`Settled`]).

use crate::job::Job;

/// A job in hand: the parsed job (or why it did not parse) and the exact bytes held in the
/// processing list.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// the job (its JSON is the exact element in the processing list), or the element and
    /// the reason it could not be read (such a delivery can only go to dead)
    pub(super) job: Result<Job, Unreadable>,
    /// the lane it was taken by
    pub(super) lane: usize,
    /// the registration (consumer id) it was taken under
    pub(super) epoch: u64,
    /// its place in the order of taking
    pub(super) seq: u64,
}

/// A job that could not be read: the exact element and why.
#[derive(Debug, Clone)]
pub(super) struct Unreadable {
    pub(super) raw: String,
    pub(super) why: String,
}

impl Delivery {
    /// The job, or why it could not be read (such a delivery can only go to dead).
    pub fn job(&self) -> Result<&Job, &str> {
        self.job.as_ref().map_err(|u| u.why.as_str())
    }

    /// The exact element held in the processing list.
    pub fn raw(&self) -> &str {
        match &self.job {
            Ok(job) => job.json(),
            Err(u) => &u.raw,
        }
    }

    /// The exact element held in the processing list, taken out of the delivery (whose job
    /// is left empty: for a delivery about to be dropped).
    pub(super) fn take_raw(&mut self) -> Vec<u8> {
        match &mut self.job {
            Ok(job) => job.take_json().into_bytes(),
            Err(u) => std::mem::take(&mut u.raw).into_bytes(),
        }
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
