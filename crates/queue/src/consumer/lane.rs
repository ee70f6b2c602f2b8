//! Lanes: an id with its own processing list, mirrored by the consumer (`Lane`), the current
//! id as the lease renewal reads it, and the moves between ids (rotate, prepare).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::conn::Conn;
use crate::{QueueError, QueueName};

use super::Consumer;
use super::exchange::Finish;

/// One element of the processing list as the consumer knows it.
pub(super) struct Held {
    pub(super) seq: u64,
    pub(super) done: Option<Box<Finish>>,
}

/// The consumer's registration and its processing list, mirrored: `held` lists every element
/// of the list, rightmost (oldest) first. Only this consumer changes its list, one exchange at
/// a time (the mutex around the lane), so the mirror stays exact; whenever a call's outcome
/// is unknown, the consumer gives the id up (its list goes back to pending) and takes a new
/// one rather than guess.
pub(super) struct Lane {
    pub(super) index: usize,
    /// the shard this lane takes from (its processing list lives there)
    pub(super) shard: usize,
    pub(super) epoch: u64,
    pub(super) id: Arc<str>,
    pub(super) processing: String,
    /// where the exchange script puts a take together (see `QueueName::taking`)
    pub(super) taking: String,
    /// the current id holds a lease this consumer took
    pub(super) registered: bool,
    /// `held` is known to match the list (false while a call is on the wire, and after a
    /// call failed or was cancelled)
    pub(super) sync: bool,
    pub(super) held: VecDeque<Held>,
    pub(super) next_seq: u64,
    /// ids given up whose lists must still be returned to pending
    pub(super) abandoned: Vec<Arc<str>>,
}

impl Lane {
    /// A lane of shard `shard` (`queue` names the shard) under a new, unregistered id,
    /// holding nothing.
    pub(super) fn new(index: usize, shard: usize, epoch: u64, queue: &QueueName) -> Self {
        let id: Arc<str> = new_consumer_id().into();
        Self {
            index,
            shard,
            epoch,
            processing: queue.processing(&id),
            taking: queue.taking(&id),
            id,
            registered: false,
            sync: true,
            held: VecDeque::new(),
            next_seq: 0,
            abandoned: Vec::new(),
        }
    }
}

/// A lane: an id with its own processing list, exchanged with by one call at a time. A
/// consumer with two lanes has one call on the wire while it handles the other's answer.
pub(super) struct LaneCell {
    pub(super) lane: Mutex<Lane>,
    /// the lane's own connection: Redis answers one connection's calls in the order they
    /// came and holds a large answer back while it runs the next call in line, so lanes
    /// sharing one connection would take turns instead of overlapping
    pub(super) conn: Conn,
    /// the current id and whether it is registered, readable without waiting for a call on
    /// the wire
    pub(super) current: std::sync::Mutex<Current>,
    /// the last id whose lost lease was reported (so a loss is logged and counted once,
    /// whether the renewal or an exchange finds it)
    pub(super) lost_reported: std::sync::Mutex<Option<Arc<str>>>,
}

/// A lane's current id, as the lease renewal sees it.
#[derive(Clone)]
pub(super) struct Current {
    pub(super) id: Arc<str>,
    pub(super) registered: bool,
}

/// `host-pid-random`: unique per process (the pid) and per consumer within it (the random
/// part), readable in `stats`. Only characters safe in a key name are kept.
pub(super) fn new_consumer_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    let host = if host.is_empty() {
        "host".to_owned()
    } else {
        host
    };
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl Consumer {
    pub(super) fn current_id(&self, lane: usize) -> Arc<str> {
        self.current(lane).id
    }

    pub(super) fn current(&self, lane: usize) -> Current {
        self.lanes[lane]
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_current(&self, lane: &Lane) {
        *self.lanes[lane.index]
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Current {
            id: lane.id.clone(),
            registered: lane.registered,
        };
    }

    /// Reports that lane `lane` lost the lease of `id` (a reaper gave its jobs in hand to
    /// others): logged once per id, whoever finds it. True the first time.
    pub(super) fn report_lost_lease(&self, lane: usize, id: &Arc<str>) -> bool {
        let mut reported = self.lanes[lane]
            .lost_reported
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if reported.as_ref() == Some(id) {
            return false;
        }
        *reported = Some(id.clone());
        tracing::warn!(
            consumer = %id,
            "lease lost: a reaper gave this worker's jobs in hand to others; it takes no more \
             under this id, will not settle those jobs (their outcomes are reported), and \
             registers again under a new id"
        );
        true
    }

    /// Gives the current id up: its list is returned to pending (now or, if Redis cannot be
    /// reached, before the next call) and a new id is taken.
    pub(super) fn rotate(&self, lane: &mut Lane) {
        let mut abandoned = std::mem::take(&mut lane.abandoned);
        abandoned.push(lane.id.clone());
        *lane = Lane {
            abandoned,
            ..Lane::new(
                lane.index,
                lane.shard,
                lane.epoch + 1,
                &self.shards[lane.shard].name,
            )
        };
        self.set_current(lane);
    }

    /// Before a call: settles any doubt (a new id if the list is unknown), returns the lists
    /// of ids given up, and registers the current id.
    pub(super) async fn prepare(&self, lane: &mut Lane) -> Result<(), QueueError> {
        if !lane.sync {
            self.rotate(lane);
        }
        while let Some(old) = lane.abandoned.last().cloned() {
            let n = self
                .release(lane.shard, &old, true)
                .await?
                .map_or(0, |r| r.returned);
            if n > 0 {
                tracing::info!(consumer = %old, jobs = n, "returned the jobs of a given-up id to pending");
            }
            lane.abandoned.pop();
        }
        if !lane.registered {
            self.lease(lane.shard, &lane.id, "new").await?;
            lane.registered = true;
            self.set_current(lane);
        }
        Ok(())
    }

    /// Records an outcome for a delivery in hand (`finish` says how it leaves the list); false
    /// if it is not in hand (an earlier id's, or settled already).
    pub(super) fn mark(
        lane: &mut Lane,
        (epoch, seq): (u64, u64),
        finish: impl FnOnce() -> Finish,
    ) -> bool {
        if epoch != lane.epoch {
            return false;
        }
        let Ok(i) = lane.held.binary_search_by_key(&seq, |h| h.seq) else {
            return false;
        };
        if lane.held[i].done.is_some() {
            return false;
        }
        lane.held[i].done = Some(Box::new(finish()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Consumer ids are key-safe and differ between consumers of one process.
    #[test]
    fn ids() {
        let (a, b) = (new_consumer_id(), new_consumer_id());
        assert_ne!(a, b);
        assert!(!a.contains(['{', '}', ' ']));
        assert!(a.contains(&format!("-{}-", std::process::id())));
    }
}
