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

use std::borrow::Cow;
use std::collections::HashSet;

use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Deserialize;

use crate::admin::{Admin, TIMEOUT};
use crate::conn::bounded;
use crate::job::{dead_fields, now_ms, rewrite_replay};
use crate::script::DEAD;
use crate::{Job, QueueError};

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

/// Which dead jobs: every condition set must hold (an empty filter matches every entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadFilter {
    /// `kind` equals this
    pub kind: Option<String>,
    /// `phone_number_id` equals this
    pub phone_number_id: Option<String>,
    /// the last error contains this text (ignoring case)
    pub error: Option<String>,
    /// died at or after this time, ms since the epoch
    pub died_after: Option<u64>,
    /// died at or before this time, ms since the epoch
    pub died_before: Option<u64>,
    /// the job's `id` or the entry's key is one of these (when not empty)
    pub ids: Vec<String>,
}

impl DeadFilter {
    /// True when it matches every entry.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `kind` equals `kind`.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// `phone_number_id` equals `id`.
    pub fn phone_number_id(mut self, id: impl Into<String>) -> Self {
        self.phone_number_id = Some(id.into());
        self
    }

    /// The last error contains `text`, ignoring case.
    pub fn error_contains(mut self, text: impl Into<String>) -> Self {
        self.error = Some(text.into());
        self
    }

    /// Died within these times (ms since the epoch, both ends included).
    pub fn died_between(mut self, after: Option<u64>, before: Option<u64>) -> Self {
        self.died_after = after;
        self.died_before = before;
        self
    }

    /// The job's `id` or the entry's key is one of `ids`.
    pub fn ids(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.ids = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Died more than `age` ago (by this machine's clock).
    pub fn older_than(mut self, age: std::time::Duration) -> Self {
        self.died_before = Some(now_ms().saturating_sub(age.as_millis() as u64));
        self
    }

    /// Died less than `age` ago (by this machine's clock).
    pub fn newer_than(mut self, age: std::time::Duration) -> Self {
        self.died_after = Some(now_ms().saturating_sub(age.as_millis() as u64));
        self
    }

    fn matcher(&self) -> Matcher<'_> {
        Matcher {
            filter: self,
            error: self.error.as_deref().map(str::to_lowercase),
            ids: self.ids.iter().map(String::as_str).collect(),
        }
    }
}

/// A filter made ready to test many entries.
struct Matcher<'f> {
    filter: &'f DeadFilter,
    error: Option<String>,
    ids: HashSet<&'f str>,
}

/// The fields of a dead entry a filter looks at; the rest (the payload) is skipped unread.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    phone_number_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
    died_at: Option<u64>,
}

impl Matcher<'_> {
    fn matches(&self, raw: &str) -> bool {
        let f = self.filter;
        if f.is_empty() {
            return true;
        }
        let Ok(p) = serde_json::from_str::<Probe<'_>>(raw) else {
            return false;
        };
        let same = |want: &Option<String>, got: &Option<Cow<'_, str>>| match want {
            Some(w) => got.as_deref() == Some(w.as_str()),
            None => true,
        };
        let in_range = match (f.died_after, f.died_before, p.died_at) {
            (None, None, _) => true,
            (_, _, None) => false,
            (after, before, Some(t)) => {
                after.is_none_or(|a| t >= a) && before.is_none_or(|b| t <= b)
            }
        };
        let error_ok = match &self.error {
            Some(needle) => p
                .error
                .as_deref()
                .is_some_and(|e| e.to_lowercase().contains(needle.as_str())),
            None => true,
        };
        let id_ok = self.ids.is_empty()
            || p.id.as_deref().is_some_and(|id| self.ids.contains(id))
            || self.ids.contains(entry_key(raw).as_str());
        same(&f.kind, &p.kind)
            && same(&f.phone_number_id, &p.phone_number_id)
            && in_range
            && error_ok
            && id_ok
    }
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

/// A matching entry and where it was: its index from the right end (negative).
struct Found {
    at: i64,
    raw: String,
}

impl Admin {
    /// Up to `limit` dead jobs of this shard, oldest first.
    async fn dead_list_here(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
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
    async fn dead_page_here(
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

    async fn dead_page_unfiltered(
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
    async fn dead_find_here(&self, filter: &DeadFilter) -> Result<Vec<DeadJob>, QueueError> {
        let mut jobs = Vec::new();
        self.scan(filter, |found| jobs.push(DeadJob::new(found.raw)))
            .await?;
        Ok(jobs)
    }

    /// Calls `visit` with every entry `filter` matches, newest first, reading the list in
    /// chunks from the length it had when the scan began.
    async fn scan(
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
    async fn dead_replay_here(&self, filter: &DeadFilter) -> Result<usize, QueueError> {
        self.take_out(filter, rewrite_replay).await
    }

    /// Deletes the dead jobs `filter` matches (by their exact bytes); returns how many.
    async fn dead_purge_here(&self, filter: &DeadFilter) -> Result<usize, QueueError> {
        if filter.is_empty() {
            return self.purge_dead_here().await;
        }
        self.take_out(filter, |_| Some(String::new())).await
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

    async fn purge_dead_here(&self) -> Result<usize, QueueError> {
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
    async fn take_out(
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
}

/// Newest first by the time each job died (entries without one last), keeping the order of
/// equal times.
fn newest_first(jobs: &mut [DeadJob]) {
    jobs.sort_by_key(|j| std::cmp::Reverse(j.died_at));
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"{"v":1,"id":"wamid.1","kind":"message","phone_number_id":"111","attempt":5,"payload":{"x":1},"error":"Handler said NO","died_at":1000}"#;

    fn filter() -> DeadFilter {
        DeadFilter::default()
    }

    /// Each condition narrows; all must hold; an empty filter matches everything.
    #[test]
    fn filter_conditions() {
        let ok = |f: DeadFilter| f.matcher().matches(JOB);
        assert!(ok(filter()));
        assert!(ok(DeadFilter {
            kind: Some("message".into()),
            ..filter()
        }));
        assert!(!ok(DeadFilter {
            kind: Some("status".into()),
            ..filter()
        }));
        assert!(ok(DeadFilter {
            phone_number_id: Some("111".into()),
            ..filter()
        }));
        assert!(!ok(DeadFilter {
            phone_number_id: Some("11".into()),
            ..filter()
        }));
        assert!(ok(DeadFilter {
            error: Some("said no".into()),
            ..filter()
        }));
        assert!(!ok(DeadFilter {
            error: Some("yes".into()),
            ..filter()
        }));
        assert!(ok(DeadFilter {
            died_after: Some(1000),
            died_before: Some(1000),
            ..filter()
        }));
        assert!(!ok(DeadFilter {
            died_after: Some(1001),
            ..filter()
        }));
        assert!(!ok(DeadFilter {
            died_before: Some(999),
            ..filter()
        }));
        assert!(ok(DeadFilter {
            ids: vec!["wamid.1".into()],
            ..filter()
        }));
        assert!(ok(DeadFilter {
            ids: vec![entry_key(JOB)],
            ..filter()
        }));
        assert!(!ok(DeadFilter {
            ids: vec!["wamid.2".into()],
            ..filter()
        }));
        assert!(!ok(DeadFilter {
            kind: Some("message".into()),
            phone_number_id: Some("222".into()),
            ..filter()
        }));
    }

    /// An entry that is not JSON matches only the empty filter; one without `died_at` matches
    /// no age range.
    #[test]
    fn filter_on_odd_entries() {
        let kind = DeadFilter {
            kind: Some("message".into()),
            ..filter()
        };
        assert!(!kind.matcher().matches("not json"));
        assert!(filter().matcher().matches("not json"));
        let aged = DeadFilter {
            died_after: Some(0),
            ..filter()
        };
        assert!(
            !aged
                .matcher()
                .matches(r#"{"v":1,"id":"a","kind":"message"}"#)
        );
    }

    /// The key is a function of the exact bytes: one byte apart, another key.
    #[test]
    fn keys_follow_bytes() {
        assert_eq!(entry_key(JOB), entry_key(JOB));
        assert_eq!(entry_key(JOB).len(), 16);
        assert_ne!(entry_key(JOB), entry_key(&JOB.replace("1000", "1001")));
        // FNV-1a 64 of the empty string, as published.
        assert_eq!(entry_key(""), "cbf29ce484222325");
    }
}
