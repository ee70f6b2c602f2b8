//! What a handler answers ([`Outcome`], [`Handler`]) and the consumer's settings, with the
//! retry backoff they define.

use std::future::Future;
use std::time::Duration;

use crate::QueueError;
use crate::job::Job;

/// The most jobs one exchange call takes, and the most it removes by index: the exchange
/// script's own cap, so that one call stays short, read from `exchange.lua`'s
/// `local MAX_PER_CALL` at compile time (one number, in the script). Also the largest batch.
pub(crate) const MAX_PER_CALL: usize = crate::script::EXCHANGE_MAX_PER_CALL;

/// What a handler decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// done: acknowledge
    Done,
    /// failed: retry with backoff (dead after max attempts)
    Retry(String),
    /// failed, and the other side said when to try again: retry after this delay (at most
    /// the backoff maximum) instead of the backoff (dead after max attempts)
    RetryAfter(String, Duration),
    /// failed for good: dead at once
    Dead(String),
}

/// A job handler. `delivery` is 1 for the first delivery.
pub trait Handler: Send + Sync + 'static {
    /// Handles one job.
    fn handle(&self, job: &Job, delivery: u32) -> impl Future<Output = Outcome> + Send;
}

/// Consumer settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// lease length; renewed every third of it (default 30 s)
    pub lease: Duration,
    /// deliveries before a failing job goes to dead (default 5)
    pub max_attempts: u32,
    /// first retry delay; doubles each attempt, with jitter (default 1 s)
    pub backoff_base: Duration,
    /// longest retry delay (default 10 min)
    pub backoff_max: Duration,
    /// how long a blocking fetch waits for work (default 2 s); must be shorter than the lease
    pub block: Duration,
    /// jobs moved per fetch round trip at most (default 64, at most 1000)
    pub batch: usize,
    /// ids (each with its own processing list) [`run`](crate::run) exchanges with Redis
    /// through, one call on the wire per lane (default 2: one call is on the wire while the
    /// other's jobs are handled; 1 to 8). A lane registers only once used; fetching by hand
    /// uses the first.
    pub lanes: usize,
    /// every Redis call other than the blocking wait finishes or fails within this (default 5 s)
    pub op_timeout: Duration,
    /// "equal jitter" on retry delays (default true): the delay is drawn from
    /// [d/2, d] where d = base * 2^(delivery-1) capped at max, so delays still never shrink
    /// from one attempt to the next; false uses d exactly
    pub jitter: bool,
    /// in order per sender (default false): the jobs of one sender (`from`, else
    /// `from_user_id`) are handed out one at a time, in the order they reached their shard,
    /// and a retrying job holds its sender's later jobs back until it is acknowledged or dead
    /// (see `docs/operations.md`, Ordered mode). Every consumer of the queue must run ordered:
    /// the first records it (`<prefix>:{<name>}:ordered`), and a consumer of the other kind
    /// refuses to start ([`QueueError::OrderedQueue`], [`QueueError::UnorderedConsumers`]).
    /// With more than one shard, producers must route by sender ([`crate::ShardBy::Sender`]).
    pub ordered: bool,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            block: Duration::from_secs(2),
            batch: 64,
            lanes: 2,
            op_timeout: Duration::from_secs(5),
            jitter: true,
            ordered: false,
        }
    }
}

impl ConsumerOptions {
    /// The retry delay after failed delivery number `delivery` (1 for the first), before
    /// jitter: `backoff_base * 2^(delivery-1)`, at most `backoff_max`.
    pub fn backoff(&self, delivery: u32) -> Duration {
        let shift = delivery.saturating_sub(1).min(40);
        let ms = (self.backoff_base.as_millis() as u64).saturating_mul(1u64 << shift);
        Duration::from_millis(ms).min(self.backoff_max)
    }

    pub(super) fn jittered(&self, delivery: u32) -> Duration {
        let d = self.backoff(delivery);
        if !self.jitter {
            return d;
        }
        let half = d.as_millis() as u64 / 2;
        let extra = if half == 0 {
            0
        } else {
            rand::random_range(0..=half)
        };
        Duration::from_millis(d.as_millis() as u64 - half + extra)
    }

    pub(super) fn validate(&self) -> Result<(), QueueError> {
        let bad = |m: &str| Err(QueueError::Config(m.to_owned()));
        if self.lease < Duration::from_millis(100) {
            return bad("lease is under 100ms");
        }
        if self.block >= self.lease {
            return bad("block time must be shorter than the lease");
        }
        if self.max_attempts == 0 {
            return bad("max attempts is zero");
        }
        if self.lanes == 0 || self.lanes > 8 {
            return bad("lanes must be 1 to 8");
        }
        if self.batch == 0 || self.batch > MAX_PER_CALL {
            return bad(&format!("batch must be 1 to {MAX_PER_CALL}"));
        }
        if self.op_timeout.is_zero() {
            return bad("operation timeout is zero");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backoff doubles from the base and stops at the cap; jitter stays within [d/2, d].
    #[test]
    fn backoff_growth() {
        let o = ConsumerOptions {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..Default::default()
        };
        let d: Vec<u64> = (1..=6).map(|n| o.backoff(n).as_millis() as u64).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(o.backoff(u32::MAX), Duration::from_secs(1));
        for n in 1..=6 {
            for _ in 0..50 {
                let j = o.jittered(n);
                assert!(j <= o.backoff(n) && j >= o.backoff(n) / 2);
            }
        }
    }
}
