//! `--metrics-listen ADDR`: Prometheus text at `/metrics`, liveness at `/healthz`.
//!
//! Job counts come from the run loop's live [`Counters`]; handler durations from a histogram
//! the handler wrapper fills; queue depths are read from Redis at scrape time, so they are the
//! whole queue's, not this worker's. When Redis does not answer, the depths are left out and
//! `wa_queue_up` is 0.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use wa_queue::{Admin, ConfigHealth, Counters, Stats};

/// Upper bounds of the duration buckets, seconds.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A fixed-bucket histogram of handler durations, lock free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// per bucket (not cumulative); the last slot is +Inf
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        let _ = writeln!(out, "# HELP {name} Time handlers took per job.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Relaxed);
            match BUCKETS.get(i) {
                Some(b) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {total}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
                }
            }
        }
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {total}");
    }
}

/// What a scrape reads.
#[derive(Debug)]
pub struct Sources {
    pub counters: Arc<Counters>,
    pub durations: Arc<Histogram>,
    pub admin: Admin,
    pub queue: String,
    /// the Redis configuration check's verdict (`wa_redis_config_ok`)
    pub health: ConfigHealth,
}

/// Serves until the process ends (the worker's shutdown does not wait for scrapes), with the
/// limits of [`crate::http::serve`].
pub async fn serve(listener: TcpListener, sources: Arc<Sources>, header_timeout: Duration) {
    let handle = move |req| answer(req, sources.clone());
    crate::http::serve(
        "metrics",
        listener,
        header_timeout,
        handle,
        std::future::pending(),
    )
    .await;
}

async fn answer(
    req: Request<Incoming>,
    sources: Arc<Sources>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(&sources).await,
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    Ok(resp)
}

async fn render(s: &Sources) -> String {
    let mut out = String::with_capacity(4096);
    let c = &s.counters;
    for (name, help, v) in [
        (
            "wa_worker_jobs_done_total",
            "Jobs handled and acknowledged.",
            c.done(),
        ),
        (
            "wa_worker_jobs_retried_total",
            "Jobs scheduled for a retry.",
            c.retried(),
        ),
        (
            "wa_worker_jobs_dead_total",
            "Jobs moved to the dead list.",
            c.dead(),
        ),
        (
            "wa_worker_jobs_returned_total",
            "Jobs returned to pending at shutdown.",
            c.returned(),
        ),
        (
            "wa_worker_redis_errors_total",
            "Failed Redis calls.",
            c.redis_errors(),
        ),
        (
            "wa_worker_leases_lost_total",
            "Leases found lost: a reaper gave this worker's jobs in hand to others.",
            c.leases_lost(),
        ),
        (
            "wa_worker_lost_outcomes_total",
            "Outcomes of jobs this worker no longer held when they finished (not settled).",
            c.lost_outcomes(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v
        );
    }
    s.durations
        .render(&mut out, "wa_worker_handler_duration_seconds");
    s.health.render(&mut out);

    let q = escape(&s.queue);
    let stats = tokio::time::timeout(Duration::from_secs(2), s.admin.stats()).await;
    let up = matches!(stats, Ok(Ok(_)));
    let _ = writeln!(
        out,
        "# HELP wa_queue_up Whether Redis answered the stats query.\n# TYPE wa_queue_up gauge\nwa_queue_up{{queue=\"{q}\"}} {}",
        u8::from(up)
    );
    if let Ok(Ok(st)) = stats {
        for (name, help, value) in QUEUE_GAUGES {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{queue=\"{q}\"}} {}",
                value(&st)
            );
        }
        // A sharded queue: the same depths per shard, to spot a hot one.
        if !st.shards.is_empty() {
            for (name, help, value) in &QUEUE_GAUGES[..SHARD_GAUGES] {
                let name = name.replacen("wa_queue_", "wa_queue_shard_", 1);
                let _ = writeln!(out, "# HELP {name} {help} Per shard.\n# TYPE {name} gauge");
                for (shard, st) in st.shards.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{name}{{queue=\"{q}\",shard=\"{shard}\"}} {}",
                        value(st)
                    );
                }
            }
        }
    }
    out
}

/// The queue's gauges: name, help, value. The first [`SHARD_GAUGES`] are also given per
/// shard of a sharded queue.
type Gauge = (&'static str, &'static str, fn(&Stats) -> f64);
const QUEUE_GAUGES: [Gauge; 7] = [
    ("wa_queue_pending", "Jobs waiting.", |s| s.pending as f64),
    (
        "wa_queue_delayed",
        "Jobs waiting for their retry time.",
        |s| s.delayed as f64,
    ),
    ("wa_queue_dead", "Jobs in the dead list.", |s| s.dead as f64),
    ("wa_queue_in_hand", "Jobs held by consumers.", |s| {
        s.processing.iter().map(|(_, n)| *n).sum::<u64>() as f64
    }),
    (
        "wa_queue_held_senders",
        "Senders held in ordered mode: a job of theirs in progress, later ones waiting behind it \
         (0 for a queue that does not keep order).",
        |s| s.held_senders as f64,
    ),
    (
        "wa_queue_live_consumers",
        "Consumers with a live lease.",
        |s| s.live_consumers as f64,
    ),
    (
        "wa_queue_oldest_pending_seconds",
        "Age of the oldest pending job (0 when none).",
        |s| s.oldest_pending_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
    ),
];
/// Gauges also given per shard: pending, delayed, dead, in hand, held senders.
const SHARD_GAUGES: usize = 5;

/// Label values escape `\`, `"` and newlines.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets are cumulative, end with +Inf, and count every observation once.
    #[test]
    fn histogram_renders_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(120));
        let mut out = String::new();
        h.render(&mut out, "x");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"60\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_count 3\n"));
    }
}
