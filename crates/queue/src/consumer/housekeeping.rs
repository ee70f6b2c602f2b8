//! Leases, the promoter of due retries, the reaper of lapsed consumers, and giving a
//! consumer's jobs back (release, close, shutdown).

use std::sync::Arc;

use crate::conn::bounded;
use crate::error::Unexpected;
use crate::keys::DONE_FIELD;
use crate::script::{EXPIRED, LEASE, PROMOTE, RELEASE};
use crate::{QueueError, RedisFailure};

use super::Consumer;

/// What releasing a consumer's processing list did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Released {
    /// jobs returned to pending
    pub(super) returned: usize,
    /// jobs lost with their worker once too often, moved to dead (by a reaper only)
    pub(super) dead: usize,
}

/// Due retries moved from delayed to pending per shard and promoter call at most.
pub(crate) const PROMOTE_BATCH: usize = 1000;

impl Consumer {
    pub(super) async fn lease(
        &self,
        shard: usize,
        id: &str,
        mode: &str,
    ) -> Result<i64, QueueError> {
        let mut c = self.conn.clone();
        let lease_ms = self.opts.lease.as_millis() as u64;
        bounded(
            self.opts.op_timeout,
            LEASE.call::<i64>(&mut c, 1, |c| {
                c.arg(&self.shards[shard].consumers)
                    .arg(id)
                    .arg(lease_ms)
                    .arg(mode);
            }),
        )
        .await
    }

    /// Renews the lease (every exchange with Redis does too). [`run`](crate::run) calls this
    /// every third of the lease; a program driving a consumer by hand must as well while
    /// handlers run, or the reaper gives its jobs away. If the lease is gone already (a
    /// reaper released this consumer), nothing is renewed and the loss is logged: the next
    /// fetch or settle takes nothing under the lost id and carries on under a new one.
    pub async fn renew_lease(&self) -> Result<(), QueueError> {
        self.renew_leases().await.map(drop)
    }

    /// [`renew_lease`](Self::renew_lease); returns how many lanes were found to have lost
    /// their lease (each loss counted once).
    pub(crate) async fn renew_leases(&self) -> Result<usize, QueueError> {
        let mut lost = 0;
        for lane in 0..self.lanes.len() {
            let current = self.current(lane);
            if !current.registered {
                continue;
            }
            let gone = self
                .lease(self.lane_shard(lane), &current.id, "renew")
                .await?
                == 0;
            // the lane may have given the id up itself meanwhile (a stop, a failed call)
            if gone
                && self.current_id(lane) == current.id
                && self.report_lost_lease(lane, &current.id)
            {
                lost += 1;
            }
        }
        Ok(lost)
    }

    /// Moves retries that are due from delayed to the back of pending (up to 1000 per shard
    /// and call), earliest due first; returns how many.
    pub async fn promote_due(&self) -> Result<usize, QueueError> {
        let mut total = 0;
        for keys in &self.shards {
            let mut c = self.conn.clone();
            total += bounded(
                self.opts.op_timeout,
                PROMOTE.call::<usize>(&mut c, 2, |c| {
                    c.arg(&keys.delayed).arg(&keys.pending).arg(PROMOTE_BATCH);
                }),
            )
            .await?;
        }
        Ok(total)
    }

    /// Adds `n` to the queue's count of acknowledged jobs (`done` in the `counts` hash), which
    /// dashboards turn into a completion rate. Nothing is sent for 0.
    pub async fn count_done(&self, n: u64) -> Result<(), QueueError> {
        if n == 0 {
            return Ok(());
        }
        let mut c = self.conn.clone();
        bounded(
            self.opts.op_timeout,
            redis::cmd("HINCRBY")
                .arg(&self.counts)
                .arg(DONE_FIELD)
                .arg(n)
                .query_async::<()>(&mut c),
        )
        .await
    }

    /// Returns the jobs of every consumer whose lease has lapsed to pending; returns how many
    /// jobs. Safe to run from any number of consumers at once: the release script re-checks
    /// each lease atomically.
    pub async fn reap_expired(&self) -> Result<usize, QueueError> {
        let mine: Vec<Arc<str>> = (0..self.lanes.len()).map(|l| self.current_id(l)).collect();
        let mut total = 0;
        for (shard, keys) in self.shards.iter().enumerate() {
            let mut c = self.conn.clone();
            let ids: Vec<String> = bounded(
                self.opts.op_timeout,
                EXPIRED.call(&mut c, 1, |c| {
                    c.arg(&keys.consumers).arg(100);
                }),
            )
            .await?;
            for id in ids
                .iter()
                .filter(|id| !mine.iter().any(|m| **m == *id.as_str()))
            {
                let Some(r) = self.release(shard, id, false).await? else {
                    continue;
                };
                if r.dead > 0 {
                    tracing::warn!(consumer = %id, jobs = r.dead, "jobs lost with their worker too often went to dead");
                }
                total += r.returned + r.dead;
            }
        }
        Ok(total)
    }

    /// Returns `id`'s jobs in hand to pending and removes its lease; `None` if a reaper
    /// (`force` false) found the lease live. A reaper counts each job's lost delivery, and
    /// sends to dead the jobs whose deliveries reach `max_attempts` (see `release.lua`).
    pub(super) async fn release(
        &self,
        shard: usize,
        id: &str,
        force: bool,
    ) -> Result<Option<Released>, QueueError> {
        let mut c = self.conn.clone();
        let keys = &self.shards[shard];
        let processing = keys.name.processing(id);
        let nkeys = if keys.order.is_some() { 6 } else { 4 };
        let answer: Vec<i64> = bounded(
            self.opts.op_timeout,
            RELEASE.call(&mut c, nkeys, |c| {
                c.arg(&keys.consumers)
                    .arg(&keys.pending)
                    .arg(&processing)
                    .arg(&keys.dead);
                keys.order_keys(c);
                c.arg(id)
                    .arg(if force { "1" } else { "0" })
                    .arg(self.opts.max_attempts);
            }),
        )
        .await?;
        match answer[..] {
            [returned, dead] if returned >= 0 && dead >= 0 => Ok(Some(Released {
                returned: returned as usize,
                dead: dead as usize,
            })),
            [-1] => Ok(None),
            _ => Err(RedisFailure::unexpected(Unexpected::ReleaseShape).into()),
        }
    }

    /// Settles what is finished, then returns every job still in hand to pending and removes
    /// the lease; returns how many jobs went back. The consumer can be used again: it then
    /// registers under a new id.
    pub(crate) async fn close(&self) -> Result<usize, QueueError> {
        let mut returned = 0;
        for cell in &self.lanes {
            let mut lane = cell.lane.lock().await;
            if lane.sync && lane.held.iter().any(|h| h.done.is_some()) {
                let flushed = self.exchange_locked(&mut lane, 0, 0).await;
                if let Err(e) = flushed {
                    tracing::warn!(error = %e, "could not settle finished jobs; they go back to pending");
                }
            }
            self.rotate(&mut lane);
            while let Some(old) = lane.abandoned.last().cloned() {
                returned += self
                    .release(lane.shard, &old, true)
                    .await?
                    .map_or(0, |r| r.returned);
                lane.abandoned.pop();
            }
        }
        Ok(returned)
    }

    /// Returns every job still in hand to pending and removes the lease (graceful stop).
    pub async fn shutdown(self) -> Result<usize, QueueError> {
        self.close().await
    }
}
