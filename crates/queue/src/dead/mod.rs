//! Dead letters: finding them (filters, pages), reading one, and taking them out (replay or
//! purge) by their exact bytes.
//!
//! Where the scan runs: the dead list is read in chunks of [`CHUNK`] elements with `LRANGE`
//! (two chunks in flight) and filtered here, not in a Lua script. A script would send less over
//! the wire, but Redis runs one script at a time: decoding 100 000 jobs in Lua would stop every
//! producer and consumer of the server for the whole scan, while a chunk costs Redis about a
//! millisecond and other clients' commands run between chunks (docs/performance.md measures
//! both). The filter reads only the few fields it needs from each element.
//!
//! Chunks are addressed from the right end (negative indices): new dead jobs are pushed at the
//! left, so they never shift what a scan has still to read.
//!
//! This module holds [`DeadJob`], [`DeadPage`] and the operations over every shard; `filter`
//! the [`DeadFilter`] and how it tests an entry; `shard` the reading and taking out of one
//! shard's list.

mod filter;
mod shard;
#[cfg(test)]
mod tests;

use crate::admin::Admin;
use crate::job::dead_fields;
use crate::{Job, QueueError};

pub use filter::DeadFilter;

/// Elements per `LRANGE` of a scan.
const CHUNK: i64 = 1000;
/// Scan chunks on the wire at once: one travels while the other is filtered.
const CHUNKS_IN_FLIGHT: usize = 2;
/// Entries per call of the take-out script (each call is one atomic step on Redis).
const TAKE_BATCH: usize = 500;

/// A dead job with why it died.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadJob {
    /// the job, `None` when it does not parse (its text is [`raw`](Self::raw))
    job: Option<Job>,
    /// last error
    pub error: Option<String>,
    /// when it died, ms since the epoch
    pub died_at: Option<u64>,
    /// exact element in the dead list
    raw: String,
    /// a short name for this exact element ([`entry_key`]); unreadable entries have one too
    pub key: String,
}

impl DeadJob {
    pub(crate) fn new(raw: String) -> Self {
        let (error, died_at) = dead_fields(&raw);
        let job = Job::parse(&raw).ok();
        Self {
            job,
            error,
            died_at,
            key: entry_key(&raw),
            raw,
        }
    }

    /// The job, `Err` with its text when it does not parse.
    pub fn job(&self) -> Result<&Job, &str> {
        self.job.as_ref().ok_or(&self.raw)
    }

    /// The exact element in the dead list.
    pub fn raw(&self) -> &str {
        &self.raw
    }
}

/// The name of a dead entry: 16 hex digits of the FNV-1a hash of its exact bytes. Two entries
/// with different bytes have different keys (barring a 64-bit collision); an action by key
/// still takes out the entry by its bytes.
pub fn entry_key(raw: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = raw
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{hash:016x}")
}

/// One page of the dead jobs a filter matches, newest first.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DeadPage {
    /// how many entries match in all
    pub total: u64,
    /// the page's entries, newest first
    pub jobs: Vec<DeadJob>,
}

/// The dead-letter operations of a queue, over all its shards: each shard's list is read or
/// changed on its own (its entries live in its slot), and the answers are merged by the time
/// each job died.
impl Admin {
    /// Up to `limit` dead jobs, oldest first.
    pub async fn dead_list(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let mut jobs = Vec::new();
        for view in self.views() {
            jobs.extend(view.dead_list_here(limit).await?);
        }
        if self.queue.shards() > 1 {
            jobs.sort_by_key(|j| j.died_at);
            jobs.truncate(limit);
        }
        Ok(jobs)
    }

    /// The dead jobs `filter` matches, newest first: `limit` of them from `offset` on, and how
    /// many match in all.
    ///
    /// Without a filter this reads only the page (one `LLEN` and one `LRANGE` per shard; with
    /// several shards, `offset + limit` entries of each); with one it scans the whole list in
    /// chunks (see the module docs).
    pub async fn dead_page(
        &self,
        filter: &DeadFilter,
        offset: u64,
        limit: usize,
    ) -> Result<DeadPage, QueueError> {
        if self.queue.shards() == 1 {
            return self.dead_page_here(filter, offset, limit).await;
        }
        let wanted = (offset as usize).saturating_add(limit);
        let mut page = DeadPage::default();
        for view in self.views() {
            let part = view.dead_page_here(filter, 0, wanted).await?;
            page.total += part.total;
            page.jobs.extend(part.jobs);
        }
        newest_first(&mut page.jobs);
        page.jobs = page
            .jobs
            .into_iter()
            .skip(offset as usize)
            .take(limit)
            .collect();
        Ok(page)
    }

    /// Every dead entry `filter` matches, newest first (the whole list is read: a selective
    /// filter keeps this cheap in memory, not in time).
    pub async fn dead_find(&self, filter: &DeadFilter) -> Result<Vec<DeadJob>, QueueError> {
        let mut jobs = Vec::new();
        for view in self.views() {
            jobs.extend(view.dead_find_here(filter).await?);
        }
        if self.queue.shards() > 1 {
            newest_first(&mut jobs);
        }
        Ok(jobs)
    }

    /// Moves the dead jobs `filter` matches back to pending (oldest first, each to its own
    /// shard's pending) with attempt 0; returns how many.
    ///
    /// The replayed job is the dead entry without `error`, `died_at` and `last_error`, with
    /// `attempt` 0 and every other field (payload included) unchanged. It goes to the
    /// producers' end of pending, like a new job; its dedup marker is not consulted. Each
    /// entry is taken out by its exact bytes, so an entry replayed or purged by someone else
    /// meanwhile is skipped, never another one in its place.
    pub async fn dead_replay(&self, filter: &DeadFilter) -> Result<usize, QueueError> {
        let mut total = 0;
        for view in self.views() {
            total += view.dead_replay_here(filter).await?;
        }
        Ok(total)
    }

    /// Deletes the dead jobs `filter` matches (by their exact bytes); returns how many.
    pub async fn dead_purge(&self, filter: &DeadFilter) -> Result<usize, QueueError> {
        let mut total = 0;
        for view in self.views() {
            total += view.dead_purge_here(filter).await?;
        }
        Ok(total)
    }

    /// Deletes every dead job; returns how many.
    pub async fn purge_dead(&self) -> Result<usize, QueueError> {
        self.dead_purge(&DeadFilter::default()).await
    }

    /// Moves the dead jobs with these ids (or entry keys) back to pending; returns how many.
    pub async fn replay(&self, ids: &[String]) -> Result<usize, QueueError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.dead_replay(&DeadFilter::default().ids(ids.iter().cloned()))
            .await
    }

    /// Moves every dead job back to pending; returns how many.
    pub async fn replay_all(&self) -> Result<usize, QueueError> {
        self.dead_replay(&DeadFilter::default()).await
    }
}

/// Newest first by the time each job died (entries without one last), keeping the order of
/// equal times.
fn newest_first(jobs: &mut [DeadJob]) {
    jobs.sort_by_key(|j| std::cmp::Reverse(j.died_at));
}
