//! Counters on relaxed atomics, rendered by hand in the Prometheus text format.
//!
//! A metrics registry would cost a lookup (and often a lock) per update; these are fixed
//! arrays indexed by enums, so recording is one `fetch_add`.

use std::fmt::{self, Write as _};
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

    fn render_into(&self, out: &mut String) -> fmt::Result {
        let count = |counter: &AtomicU64| counter.load(Relaxed);
        by_label(
            out,
            "wa_webhook_requests_total",
            "Requests answered, by outcome.",
            "outcome",
            RequestOutcome::ALL.map(|o| (o.as_str(), count(&self.requests[o.index()]))),
        )?;
        by_label(
            out,
            "wa_webhook_signature_failures_total",
            "Refused signatures, by reason.",
            "reason",
            SigFailure::ALL.map(|r| (r.as_str(), count(&self.signature_failures[r.index()]))),
        )?;
        self.render_notifications(out)?;
        self.render_enqueue_duration(out)?;
        by_label(
            out,
            "wa_webhook_client_cert_refusals_total",
            "TLS handshakes refused on the client's certificate (mutual TLS), by reason.",
            "reason",
            Refusal::ALL.map(|r| (r.as_str(), count(&self.client_cert_refusals[r.index()]))),
        )?;
        by_label(
            out,
            "wa_webhook_tls_handshake_failures_total",
            "TLS handshakes that failed for another reason than the client's certificate.",
            "reason",
            HandshakeFailure::ALL
                .map(|f| (f.as_str(), count(&self.tls_handshake_failures[f.index()]))),
        )?;
        self.render_unlabelled(out)
    }

    /// `wa_webhook_notifications_total`, by kind and fate.
    fn render_notifications(&self, out: &mut String) -> fmt::Result {
        let name = "wa_webhook_notifications_total";
        let help = "Notifications seen in accepted bodies, by kind and fate.";
        header(out, name, "counter", help)?;
        for kind in JobKind::ALL {
            let counters = &self.notifications[kind.index()];
            for fate in Fate::ALL {
                let (kind, result) = (kind.as_str(), fate.as_str());
                let v = counters[fate.index()].load(Relaxed);
                writeln!(out, "{name}{{kind=\"{kind}\",result=\"{result}\"}} {v}")?;
            }
        }
        Ok(())
    }

    /// `wa_webhook_enqueue_duration_seconds`: the histogram, its buckets cumulative.
    fn render_enqueue_duration(&self, out: &mut String) -> fmt::Result {
        let name = "wa_webhook_enqueue_duration_seconds";
        let help = "Time of one enqueue round trip to Redis.";
        header(out, name, "histogram", help)?;
        let mut cumulative = 0;
        for (bucket, le) in self.enqueue_buckets.iter().zip(BUCKETS_US) {
            cumulative += bucket.load(Relaxed);
            let le = le as f64 / 1e6;
            writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}")?;
        }
        let count = self.enqueue_count.load(Relaxed);
        let sum = self.enqueue_sum_us.load(Relaxed) as f64 / 1e6;
        writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}")?;
        writeln!(out, "{name}_sum {sum}")?;
        writeln!(out, "{name}_count {count}")
    }

    /// The families of one value each.
    fn render_unlabelled(&self, out: &mut String) -> fmt::Result {
        let families: [(&str, &str, &str, i64); 4] = [
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
        for (name, kind, help, v) in families {
            header(out, name, kind, help)?;
            writeln!(out, "{name} {v}")?;
        }
        Ok(())
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
fn header(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// A counter family with one label: a line per label value, in the order given.
fn by_label<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    header(out, name, "counter", help)?;
    for (value, v) in values {
        writeln!(out, "{name}{{{label}=\"{value}\"}} {v}")?;
    }
    Ok(())
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
            tally.add(&JobKind::Status, Fate::Duplicate);
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
