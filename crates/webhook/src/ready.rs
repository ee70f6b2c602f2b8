//! `/readyz`: 503 while a strict [`wa_queue::Producer::watch_config`] check finds an
//! evicting `maxmemory-policy`; otherwise whether Redis answers, asked at most once per
//! [`READY_CACHE`] whatever the probe rate. An enqueue's outcome counts as an answer too, so a
//! failed enqueue turns readiness off at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;

use crate::Webhook;
use crate::reply::{Reply, text};

/// How long a `/readyz` answer about Redis is reused: at most one PING per this.
const READY_CACHE: Duration = Duration::from_secs(1);

/// The last word from Redis (a `/readyz` PING or an enqueue), shared by every clone.
#[derive(Debug, Default)]
pub(crate) struct RedisCheck {
    /// When Redis last answered or failed to, and which.
    last: Mutex<Option<(Instant, bool)>>,
    /// Held while `/readyz` PINGs, so concurrent probes send one PING.
    pinging: tokio::sync::Mutex<()>,
}

impl RedisCheck {
    /// What Redis last said, if it said it less than [`READY_CACHE`] ago.
    fn recent(&self) -> Option<bool> {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.filter(|(at, _)| at.elapsed() < READY_CACHE)
            .map(|(_, ok)| ok)
    }

    /// Records whether Redis just answered (a PING or an enqueue).
    pub(crate) fn note(&self, ok: bool) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), ok));
    }
}

impl Webhook {
    /// Answers `/readyz`. Probes that arrive during a PING wait for its answer.
    pub(crate) async fn ready(&self) -> Reply {
        if !self.inner.producer.config_health().ready() {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(b"redis maxmemory-policy evicts jobs\n"),
            );
        }
        if self.redis_answers().await {
            text(StatusCode::OK, Bytes::from_static(b"ready\n"))
        } else {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(b"redis unavailable\n"),
            )
        }
    }

    /// Whether Redis answered lately, or answers a PING now within the enqueue timeout.
    async fn redis_answers(&self) -> bool {
        let check = &self.inner.redis_check;
        if let Some(ok) = check.recent() {
            return ok;
        }
        let _one_ping = check.pinging.lock().await;
        if let Some(ok) = check.recent() {
            return ok; // another probe asked while this one waited
        }
        let ping = tokio::time::timeout(
            self.inner.config.enqueue_timeout,
            self.inner.producer.ping(),
        );
        let ok = matches!(ping.await, Ok(Ok(())));
        check.note(ok);
        ok
    }
}
