//! One shard's dead list: read in chunks from its old end, and entries taken out by their
//! exact bytes.

use futures_util::{StreamExt, TryStreamExt, stream};

use crate::QueueError;
use crate::admin::{Admin, TIMEOUT};
use crate::conn::bounded;
use crate::job::rewrite_replay;
use crate::script::DEAD;

use super::{CHUNK, CHUNKS_IN_FLIGHT, DeadFilter, DeadJob, DeadPage, TAKE_BATCH};

/// A matching entry and where it was: its index from the right end (negative).
pub(super) struct Found {
    at: i64,
    raw: String,
}

impl Admin {
    /// Up to `limit` dead jobs of this shard, oldest first.
    pub(super) async fn dead_list_here(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        // Dead is LPUSHed: the oldest are at the right end.
        let mut raws: Vec<String> = bounded(
            TIMEOUT,
            redis::cmd("LRANGE")
                .arg(self.queue.dead())
                .arg(-(limit.min(i64::MAX as usize) as i64))
                .arg(-1)
                .query_async(&mut c),
        )
        .await?;
        raws.reverse();
        Ok(raws.into_iter().map(DeadJob::new).collect())
    }

    /// The dead jobs `filter` matches, newest first: `limit` of them from `offset` on, and how
    /// many match in all.
    ///
    /// Without a filter this reads only the page (one `LLEN` and one `LRANGE`); with one it
    /// scans the whole list in chunks (see the module docs).
    pub(super) async fn dead_page_here(
        &self,
        filter: &DeadFilter,
        offset: u64,
        limit: usize,
    ) -> Result<DeadPage, QueueError> {
        if filter.is_empty() {
            return self.dead_page_unfiltered(offset, limit).await;
        }
        let mut total = 0u64;
        let mut jobs = Vec::with_capacity(limit.min(1000));
        let end = offset.saturating_add(limit as u64);
        self.scan(filter, |found| {
            if (offset..end).contains(&total) {
                jobs.push(DeadJob::new(found.raw));
            }
            total += 1;
        })
        .await?;
        Ok(DeadPage { total, jobs })
    }

    pub(super) async fn dead_page_unfiltered(
        &self,
        offset: u64,
        limit: usize,
    ) -> Result<DeadPage, QueueError> {
        let mut c = self.conn.clone();
        let start = offset.min(i64::MAX as u64) as i64;
        let stop = start.saturating_add(limit as i64) - 1;
        let (total, raws): (u64, Vec<String>) = if limit == 0 {
            (
                bounded(
                    TIMEOUT,
                    redis::cmd("LLEN")
                        .arg(self.queue.dead())
                        .query_async(&mut c),
                )
                .await?,
                Vec::new(),
            )
        } else {
            bounded(
                TIMEOUT,
                redis::pipe()
                    .llen(self.queue.dead())
                    .lrange(self.queue.dead(), start as isize, stop as isize)
                    .query_async(&mut c),
            )
            .await?
        };
        Ok(DeadPage {
            total,
            jobs: raws.into_iter().map(DeadJob::new).collect(),
        })
    }

    /// Every dead entry `filter` matches, newest first (the whole list is read: a selective
    /// filter keeps this cheap in memory, not in time).
    pub(super) async fn dead_find_here(
        &self,
        filter: &DeadFilter,
    ) -> Result<Vec<DeadJob>, QueueError> {
        let mut jobs = Vec::new();
        self.scan(filter, |found| jobs.push(DeadJob::new(found.raw)))
            .await?;
        Ok(jobs)
    }

    /// Calls `visit` with every entry `filter` matches, newest first, reading the list in
    /// chunks from the length it had when the scan began.
    pub(super) async fn scan(
        &self,
        filter: &DeadFilter,
        mut visit: impl FnMut(Found),
    ) -> Result<(), QueueError> {
        let matcher = filter.matcher();
        let mut c = self.conn.clone();
        let len: i64 = bounded(
            TIMEOUT,
            redis::cmd("LLEN")
                .arg(self.queue.dead())
                .query_async(&mut c),
        )
        .await?;
        let dead = self.queue.dead();
        let chunks = stream::iter((0..len).step_by(CHUNK as usize))
            .map(|from| {
                let mut c = self.conn.clone();
                let dead = dead.clone();
                async move {
                    // Rank r (0 = newest when the scan began) is index r - len from the right.
                    let (first, last) = (from - len, (from + CHUNK).min(len) - len - 1);
                    let raws: Vec<String> = bounded(
                        TIMEOUT,
                        redis::cmd("LRANGE")
                            .arg(&dead)
                            .arg(first)
                            .arg(last)
                            .query_async(&mut c),
                    )
                    .await?;
                    Ok::<_, QueueError>((first, raws))
                }
            })
            .buffered(CHUNKS_IN_FLIGHT);
        let mut chunks = std::pin::pin!(chunks);
        while let Some((first, raws)) = chunks.try_next().await? {
            for (i, raw) in raws.into_iter().enumerate() {
                if matcher.matches(&raw) {
                    visit(Found {
                        at: first + i as i64,
                        raw,
                    });
                }
            }
        }
        Ok(())
    }

    /// Moves the dead jobs `filter` matches back to pending (oldest first) with attempt 0;
    /// returns how many.
    ///
    /// The replayed job is the dead entry without `error`, `died_at` and `last_error`, with
    /// `attempt` 0 and every other field (payload included) unchanged. It goes to the
    /// producers' end of pending, like a new job; its dedup marker is not consulted. Each
    /// entry is taken out by its exact bytes, so an entry replayed or purged by someone else
    /// meanwhile is skipped, never another one in its place.
    pub(super) async fn dead_replay_here(&self, filter: &DeadFilter) -> Result<usize, QueueError> {
        self.take_out(filter, rewrite_replay).await
    }

    /// Deletes the dead jobs `filter` matches (by their exact bytes); returns how many.
    pub(super) async fn dead_purge_here(&self, filter: &DeadFilter) -> Result<usize, QueueError> {
        if filter.is_empty() {
            return self.purge_dead_here().await;
        }
        self.take_out(filter, |_| Some(String::new())).await
    }

    pub(super) async fn purge_dead_here(&self) -> Result<usize, QueueError> {
        let mut c = self.conn.clone();
        let (n,): (usize,) = bounded(
            TIMEOUT,
            redis::pipe()
                .atomic()
                .llen(self.queue.dead())
                .del(self.queue.dead())
                .ignore()
                .query_async(&mut c),
        )
        .await?;
        Ok(n)
    }

    /// Takes the matching entries out of dead, oldest first, pushing `job(raw)` to pending
    /// (`""`: push nothing; `None`: leave that entry where it is).
    pub(super) async fn take_out(
        &self,
        filter: &DeadFilter,
        job: impl Fn(&str) -> Option<String>,
    ) -> Result<usize, QueueError> {
        let mut found = Vec::new();
        self.scan(filter, |f| found.push(f)).await?;
        // Oldest (rightmost) first: a batch's removals then shift only the entries to their
        // left, all still to come, by exactly the count removed.
        found.reverse();
        let mut total = 0;
        let mut shift = 0i64;
        for batch in found.chunks(TAKE_BATCH) {
            let triples: Vec<(i64, &str, String)> = batch
                .iter()
                .filter_map(|f| job(&f.raw).map(|j| (f.at + shift, f.raw.as_str(), j)))
                .collect();
            if triples.is_empty() {
                continue;
            }
            let mut c = self.conn.clone();
            let n: usize = bounded(
                TIMEOUT,
                DEAD.call(&mut c, 2, |c| {
                    c.arg(self.queue.dead()).arg(self.queue.pending());
                    for (at, raw, job) in &triples {
                        c.arg(*at).arg(*raw).arg(job);
                    }
                }),
            )
            .await?;
            shift += n as i64;
            total += n;
        }
        Ok(total)
    }
}
