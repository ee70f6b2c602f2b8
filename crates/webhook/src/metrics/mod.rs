//! Counters on relaxed atomics, rendered by hand in the Prometheus text format.
//!
//! A metrics registry would cost a lookup (and often a lock) per update; these are fixed
//! arrays indexed by enums, so recording is one `fetch_add`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use wa_queue::JobKind;

use crate::tls::{HandshakeFailure, Refusal};

mod labels;

pub(crate) use labels::{Fate, RequestOutcome, SigFailure, Tally};

/// Upper bounds of the enqueue latency buckets, in microseconds.
const BUCKETS_US: [u64; 13] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000,
];

/// The endpoint's counters. Read them as Prometheus text with [`Metrics::render`].
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [AtomicU64; RequestOutcome::ALL.len()],
    signature_failures: [AtomicU64; SigFailure::ALL.len()],
    notifications: [[AtomicU64; Fate::ALL.len()]; JobKind::ALL.len()],
    enqueue_buckets: [AtomicU64; BUCKETS_US.len()],
    enqueue_count: AtomicU64,
    enqueue_sum_us: AtomicU64,
    redis_errors: AtomicU64,
    in_flight: AtomicI64,
    connections: AtomicI64,
    ignored_objects: AtomicU64,
    client_cert_refusals: [AtomicU64; Refusal::ALL.len()],
    tls_handshake_failures: [AtomicU64; HandshakeFailure::ALL.len()],
}

impl Metrics {
    pub(crate) fn request(&self, outcome: RequestOutcome) {
        self.requests[outcome.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn signature_failure(&self, why: SigFailure) {
        self.signature_failures[why.index()].fetch_add(1, Relaxed);
    }

    /// Adds one request's notifications.
    pub(crate) fn notifications(&self, tally: &Tally) {
        for (counters, counts) in self.notifications.iter().zip(&tally.0) {
            for (counter, n) in counters.iter().zip(counts) {
                if *n > 0 {
                    counter.fetch_add(*n, Relaxed);
                }
            }
        }
    }

    pub(crate) fn enqueue_latency(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|b| us <= *b) {
            self.enqueue_buckets[i].fetch_add(1, Relaxed);
        }
        self.enqueue_count.fetch_add(1, Relaxed);
        self.enqueue_sum_us.fetch_add(us, Relaxed);
    }

    pub(crate) fn redis_error(&self) {
        self.redis_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn ignored_object(&self) {
        self.ignored_objects.fetch_add(1, Relaxed);
    }

    pub(crate) fn client_cert_refusal(&self, why: Refusal) {
        self.client_cert_refusals[why.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn tls_handshake_failure(&self, why: HandshakeFailure) {
        self.tls_handshake_failures[why.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn in_flight(&self) -> Gauge<'_> {
        Gauge::new(&self.in_flight)
    }

    pub(crate) fn connection(&self) -> Gauge<'_> {
        Gauge::new(&self.connections)
    }

    /// Requests answered so far with the given outcome label (see [`Metrics::render`]).
    pub fn requests(&self, outcome: &str) -> u64 {
        RequestOutcome::ALL
            .iter()
            .find(|o| o.as_str() == outcome)
            .map_or(0, |o| self.requests[o.index()].load(Relaxed))
    }

    /// Handshakes refused on the client's certificate so far, by reason label (`no_certificate`,
    /// `untrusted`, `expired`, `wrong_subject`; see [`Metrics::render`]).
    pub fn client_cert_refusals(&self, reason: &str) -> u64 {
        Refusal::ALL
            .iter()
            .find(|r| r.as_str() == reason)
            .map_or(0, |r| self.client_cert_refusals[r.index()].load(Relaxed))
    }

    /// TLS handshakes that failed for another reason than the client's certificate, by reason
    /// label (`timeout`, `error`; see [`Metrics::render`]).
    pub fn tls_handshake_failures(&self, reason: &str) -> u64 {
        HandshakeFailure::ALL
            .iter()
            .find(|f| f.as_str() == reason)
            .map_or(0, |f| self.tls_handshake_failures[f.index()].load(Relaxed))
    }

    /// The counters in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) -> std::fmt::Result {
        out.push_str("# HELP wa_webhook_requests_total Requests answered, by outcome.\n");
        out.push_str("# TYPE wa_webhook_requests_total counter\n");
        for o in RequestOutcome::ALL {
            let (v, name) = (self.requests[o.index()].load(Relaxed), o.as_str());
            writeln!(out, "wa_webhook_requests_total{{outcome=\"{name}\"}} {v}")?;
        }
        out.push_str("# HELP wa_webhook_signature_failures_total Refused signatures, by reason.\n");
        out.push_str("# TYPE wa_webhook_signature_failures_total counter\n");
        for r in SigFailure::ALL {
            let (v, name) = (self.signature_failures[r.index()].load(Relaxed), r.as_str());
            writeln!(
                out,
                "wa_webhook_signature_failures_total{{reason=\"{name}\"}} {v}"
            )?;
        }
        out.push_str(
            "# HELP wa_webhook_notifications_total Notifications seen in accepted bodies, by kind and fate.\n",
        );
        out.push_str("# TYPE wa_webhook_notifications_total counter\n");
        for kind in JobKind::ALL {
            let (k, kind) = (kind.index(), kind.as_str());
            for f in Fate::ALL {
                let (v, fate) = (self.notifications[k][f.index()].load(Relaxed), f.as_str());
                writeln!(
                    out,
                    "wa_webhook_notifications_total{{kind=\"{kind}\",result=\"{fate}\"}} {v}"
                )?;
            }
        }
        out.push_str(
            "# HELP wa_webhook_enqueue_duration_seconds Time of one enqueue round trip to Redis.\n",
        );
        out.push_str("# TYPE wa_webhook_enqueue_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, le) in BUCKETS_US.iter().enumerate() {
            cumulative += self.enqueue_buckets[i].load(Relaxed);
            let le = *le as f64 / 1e6;
            writeln!(
                out,
                "wa_webhook_enqueue_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            )?;
        }
        let count = self.enqueue_count.load(Relaxed);
        let sum = self.enqueue_sum_us.load(Relaxed) as f64 / 1e6;
        writeln!(
            out,
            "wa_webhook_enqueue_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        )?;
        writeln!(out, "wa_webhook_enqueue_duration_seconds_sum {sum}")?;
        writeln!(out, "wa_webhook_enqueue_duration_seconds_count {count}")?;
        out.push_str(
            "# HELP wa_webhook_client_cert_refusals_total TLS handshakes refused on the client's certificate (mutual TLS), by reason.\n",
        );
        out.push_str("# TYPE wa_webhook_client_cert_refusals_total counter\n");
        for r in Refusal::ALL {
            let v = self.client_cert_refusals[r.index()].load(Relaxed);
            let name = r.as_str();
            writeln!(
                out,
                "wa_webhook_client_cert_refusals_total{{reason=\"{name}\"}} {v}"
            )?;
        }
        out.push_str(
            "# HELP wa_webhook_tls_handshake_failures_total TLS handshakes that failed for another reason than the client's certificate.\n",
        );
        out.push_str("# TYPE wa_webhook_tls_handshake_failures_total counter\n");
        for f in HandshakeFailure::ALL {
            let v = self.tls_handshake_failures[f.index()].load(Relaxed);
            let name = f.as_str();
            writeln!(
                out,
                "wa_webhook_tls_handshake_failures_total{{reason=\"{name}\"}} {v}"
            )?;
        }
        let gauges_and_counters: [(&str, &str, &str, i64); 4] = [
            (
                "wa_webhook_redis_errors_total",
                "counter",
                "Enqueue calls that failed or timed out.",
                self.redis_errors.load(Relaxed) as i64,
            ),
            (
                "wa_webhook_ignored_objects_total",
                "counter",
                "Signed bodies whose object is not whatsapp_business_account.",
                self.ignored_objects.load(Relaxed) as i64,
            ),
            (
                "wa_webhook_in_flight_requests",
                "gauge",
                "Requests being handled now.",
                self.in_flight.load(Relaxed),
            ),
            (
                "wa_webhook_open_connections",
                "gauge",
                "Connections open now (serve only).",
                self.connections.load(Relaxed),
            ),
        ];
        for (name, kind, help, v) in gauges_and_counters {
            writeln!(out, "# HELP {name} {help}")?;
            writeln!(out, "# TYPE {name} {kind}")?;
            writeln!(out, "{name} {v}")?;
        }
        Ok(())
    }
}

/// Increments a gauge now and decrements it when dropped (also when a request is cancelled).
#[derive(Debug)]
pub(crate) struct Gauge<'a>(&'a AtomicI64);

impl<'a> Gauge<'a> {
    fn new(g: &'a AtomicI64) -> Self {
        g.fetch_add(1, Relaxed);
        Gauge(g)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded values appear in the text, histogram buckets are cumulative and end at +Inf.
    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.request(RequestOutcome::Accepted);
        m.request(RequestOutcome::Accepted);
        m.signature_failure(SigFailure::Mismatch);
        let mut tally = Tally::default();
        for _ in 0..3 {
            tally.add(JobKind::Status, Fate::Duplicate);
        }
        m.notifications(&tally);
        m.enqueue_latency(Duration::from_micros(400));
        m.enqueue_latency(Duration::from_secs(10));
        let _g = m.in_flight();
        m.client_cert_refusal(Refusal::WrongSubject);
        m.tls_handshake_failure(HandshakeFailure::Timeout);
        let text = m.render();
        assert!(text.contains("wa_webhook_requests_total{outcome=\"accepted\"} 2\n"));
        assert!(text.contains("wa_webhook_signature_failures_total{reason=\"mismatch\"} 1\n"));
        assert!(
            text.contains(
                "wa_webhook_notifications_total{kind=\"status\",result=\"duplicate\"} 3\n"
            )
        );
        assert!(text.contains("wa_webhook_enqueue_duration_seconds_bucket{le=\"0.00025\"} 0\n"));
        assert!(text.contains("wa_webhook_enqueue_duration_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("wa_webhook_enqueue_duration_seconds_bucket{le=\"2.5\"} 1\n"));
        assert!(text.contains("wa_webhook_enqueue_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("wa_webhook_enqueue_duration_seconds_count 2\n"));
        assert!(text.contains("wa_webhook_in_flight_requests 1\n"));
        assert!(
            text.contains("wa_webhook_client_cert_refusals_total{reason=\"wrong_subject\"} 1\n")
        );
        assert!(text.contains("wa_webhook_client_cert_refusals_total{reason=\"untrusted\"} 0\n"));
        assert!(text.contains("wa_webhook_tls_handshake_failures_total{reason=\"timeout\"} 1\n"));
        assert_eq!(m.requests("accepted"), 2);
        assert_eq!(m.client_cert_refusals("wrong_subject"), 1);
        assert_eq!(m.tls_handshake_failures("timeout"), 1);
        // every line is a comment or `name{labels} value`
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            v.parse::<f64>().unwrap();
        }
    }

    /// Each `ALL` table is in the order of its enum, so `index()` finds a value's place in it.
    #[test]
    fn outcome_table_order() {
        for (i, o) in RequestOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
        for (i, r) in SigFailure::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, f) in Fate::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
    }

    /// The in-flight gauge goes back down when its guard drops.
    #[test]
    fn gauge_guard() {
        let m = Metrics::default();
        {
            let _a = m.in_flight();
            let _b = m.in_flight();
            assert_eq!(m.in_flight.load(Relaxed), 2);
        }
        assert_eq!(m.in_flight.load(Relaxed), 0);
    }
}
