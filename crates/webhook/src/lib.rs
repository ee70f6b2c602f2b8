//! The WhatsApp Business (Cloud API) webhook endpoint as a reusable hyper/tower service.
//!
//! A [`Webhook`] answers Meta's GET handshake and turns every signed POST into jobs of the
//! wa-queue contract, one per message, status, value-level error or other change, handed to
//! Redis in one round trip. It answers 200 only once Redis has confirmed every job (or knew it
//! already: deduplication), and 503 when Redis is down or slower than
//! [`Config::enqueue_timeout`], so Meta delivers again and nothing acknowledged is lost.
//!
//! # Getting started
//!
//! Build the four parts, then [`serve`] them on a listener until a shutdown future resolves:
//!
//! ```no_run
//! use wa_webhook::{Challenge, Config, Producer, ProducerOptions, QueueName, Verifier, Webhook};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::default(); // path /api/whatsapp/webhook, 4 MiB, 2 s, all kinds
//! let verifier = Verifier::from_list("app-secret")?; // a comma list verifies against any
//! let challenge = Challenge::new("verify-token")?;
//! let mut options = ProducerOptions::default();
//! options.timeout = config.enqueue_timeout;
//! let producer = Producer::new("redis://127.0.0.1:6379", QueueName::new("whatsapp")?, options)?;
//! let webhook = Webhook::new(config, verifier, challenge, producer);
//!
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! wa_webhook::serve(listener, webhook, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await;
//! # Ok(())
//! # }
//! ```
//!
//! [`serve`] speaks HTTP/1.1 with keep-alive and HTTP/2 (also cleartext with prior knowledge),
//! caps open connections ([`Config::max_connections`]), closes any connection that goes
//! [`Config::header_read_timeout`] without a complete request head (whatever its protocol,
//! keep-alive idle time included), and on shutdown stops accepting, closes idle connections and
//! lets in-flight requests finish for up to [`Config::shutdown_grace`]. [`Server::admin`] moves
//! the probes to a listener of their own.
//!
//! # HTTPS
//!
//! [`Server::tls`] makes the public listener speak HTTPS with a [`Tls`] loaded from PEM files
//! (rustls on ring, HTTP/2 and HTTP/1.1 by ALPN). The files are polled for changes while the
//! server runs and can be reloaded on demand ([`Tls::reload`], or SIGHUP with
//! [`Tls::reload_on_hangup`]); new connections get the new certificate, open ones keep theirs,
//! and unusable new files leave the certificate in use in place. With [`ClientAuth`] the
//! handshake requires a client certificate chained to a CA bundle and naming a subject (CN or
//! DNS SAN), such as Meta's ([`ClientAuth::meta`]):
//!
//! ```no_run
//! use wa_webhook::{ClientAuth, Server, Tls, TlsOptions};
//!
//! # async fn run(webhook: wa_webhook::Webhook) -> Result<(), Box<dyn std::error::Error>> {
//! let mut options = TlsOptions::new("fullchain.pem", "privkey.pem");
//! options.client_auth = Some(ClientAuth::meta("meta-ca.pem"));
//! let tls = Tls::load(options)?; // checks the files now: an error names the file
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
//! Server::new(listener)
//!     .tls(tls)
//!     .serve(webhook, async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await;
//! # Ok(())
//! # }
//! ```
//!
//! # Mounting in your own server
//!
//! [`Webhook`] is a cheap `Clone` (an `Arc` inside) and a tower `Service` over any request body
//! that never fails (`Error = Infallible`). In axum:
//!
//! ```no_run
//! # fn mount(webhook: wa_webhook::Webhook) -> axum::Router {
//! axum::Router::new()
//!     .route_service("/api/whatsapp/webhook", webhook.clone())
//!     .route_service("/metrics", webhook)
//! # }
//! ```
//!
//! With plain hyper, per accepted connection:
//!
//! ```no_run
//! # async fn conn(stream: tokio::net::TcpStream, webhook: wa_webhook::Webhook) {
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto::Builder;
//! use hyper_util::service::TowerToHyperService;
//!
//! let service = TowerToHyperService::new(webhook);
//! let _ = Builder::new(TokioExecutor::new())
//!     .serve_connection(TokioIo::new(stream), service)
//!     .await;
//! # }
//! ```
//!
//! Or call [`Webhook::handle`] yourself with any `http::Request` whose body implements
//! `http_body::Body`; that is how the tests drive it without a socket. The webhook routes by
//! path itself: [`Config::path`], `/healthz` (live), `/readyz` (Redis answered a PING or an
//! enqueue within the last second, or answers a PING now within the enqueue timeout) and
//! `/metrics` (Prometheus text); any other path is 404.
//! `/readyz` is also 503 while a strict [`Producer::watch_config`] check finds an evicting
//! `maxmemory-policy`. Mount the paths you want it to see.
//!
//! # What a POST goes through
//!
//! 1. A `Content-Length` over [`Config::max_body`] is 413 before any byte is read.
//! 2. `X-Hub-Signature-256` is looked at before the body: absent is 401 `Missing Signature`,
//!    malformed is 403 `Invalid Signature`, more than one is 400; each with
//!    `Connection: close`, and the body is never read.
//! 3. The body is read under the limit (a chunked body is 413 as soon as it passes it),
//!    charged to the budget of unverified bodies, and cut with 408 when it arrives slower than
//!    [`MIN_BODY_RATE`] (measured over [`BODY_RATE_WINDOW`]s, after the first) or takes longer
//!    than [`Config::request_timeout`].
//! 4. The signature is checked over exactly the bytes received: wrong is 403
//!    `Invalid Signature`. A verified body moves to the budget of verified bodies.
//! 5. The body is walked with wa-payload: not a JSON object is 400, more than
//!    [`Config::max_items`] parts is 413; an `object` other than `whatsapp_business_account`
//!    is 200 with nothing enqueued (counted in `/metrics`).
//! 6. One job per notification whose kind is in [`Config::accept`], all in one enqueue call;
//!    none at all is 200 without asking Redis. Jobs whose JSON would pass
//!    [`JOB_BYTES_PER_BODY_BYTE`] times the body (plus [`JOB_BYTES_SLACK`]) are 413.
//! 7. 200 once Redis confirmed every job as new or duplicate; 503 on a Redis error or timeout.
//!
//! # The jobs
//!
//! Every field of the contract's envelope is taken from the notification; `payload` is the
//! message, status, error or value object sliced out of the body byte for byte (never parsed
//! and encoded again, so Meta's `\uXXXX` and `\/` escapes stay as sent). `received_at` is read
//! once per request. The dedup `id` is:
//!
//! - a message: its wamid;
//! - a status: `<wamid>:<status>` (so `sent`, `delivered` and `read` are three jobs);
//! - an error, a change, or a message or status without an id: [`content_id`], the lowercase
//!   hex SHA-256 of `waba_id` `\n` `entry_time` `\n` `field` `\n` raw bytes, where an absent
//!   part is empty and the entry time is written in decimal. The raw bytes identify the event;
//!   the account, field and time (when Meta sends one) keep two distinct events with the same
//!   value apart, while a redelivery of the same body hashes the same. Without an entry time
//!   (value-level errors) the hash cannot tell a redelivery from the same event happening
//!   again, so such a job's marker lives [`Config::event_dedup_ttl`] (1 h) instead of the
//!   producer's full dedup TTL.
//!
//! # Memory
//!
//! Nothing is buffered beyond the requests in flight: each holds its body (at most
//! [`Config::max_body`]) and its jobs, which borrow from the body, until Redis answers or the
//! enqueue timeout passes; nothing is kept for later. Bodies being read (not yet verified) share
//! one budget of [`Config::max_buffered`] bytes (256 MiB by default), verified bodies waiting for
//! Redis another of the same size, so unverified traffic can never crowd out verified work: a
//! request that would pass its budget is answered 503 at once, so memory stays bounded (about
//! the two budgets plus the encoded jobs) whatever the clients send and however long Redis is
//! away. With [`serve`],
//! connections are also capped ([`Config::max_connections`]).
//!
//! # Metrics
//!
//! `/metrics` (and [`Metrics::render`]) gives, in the Prometheus text format:
//!
//! | family | labels | meaning |
//! |---|---|---|
//! | `wa_webhook_requests_total` | `outcome` | answers: `accepted`, `ignored`, `missing_signature`, `invalid_signature`, `too_large`, `bad_request`, `unavailable`, `overloaded`, `timeout`, `challenge_ok`, `challenge_bad_request`, `challenge_forbidden`, `method_not_allowed`, `not_found`, `probe` |
//! | `wa_webhook_signature_failures_total` | `reason` | `missing`, `malformed`, `mismatch`, `duplicate` (more than one header) |
//! | `wa_webhook_notifications_total` | `kind`, `result` | per kind: `enqueued`, `duplicate` (dedup marker existed), `filtered` (not in accept) |
//! | `wa_webhook_enqueue_duration_seconds` | histogram | one enqueue round trip, 250 µs to 2.5 s buckets |
//! | `wa_webhook_redis_errors_total` | | enqueue calls that failed or timed out |
//! | `wa_webhook_ignored_objects_total` | | signed bodies for another `object` |
//! | `wa_webhook_in_flight_requests` | gauge | requests being handled |
//! | `wa_webhook_open_connections` | gauge | connections open ([`serve`] only) |
//! | `wa_webhook_client_cert_refusals_total` | `reason` | with [`ClientAuth`]: handshakes refused on the client's certificate: `no_certificate`, `untrusted`, `expired`, `wrong_subject` |
//! | `wa_webhook_tls_handshake_failures_total` | `reason` | with [`Server::tls`]: other failed handshakes: `timeout`, `error` |
//!
//! # Logs
//!
//! One `request` span per request at debug level (method, path, route, status, notification
//! count, duration); enqueue failures at warn. Neither the body, the query string (it holds the
//! verify token), the secret nor any header value is ever logged.

mod body;
mod config;
mod jobs;
mod metrics;
mod post;
mod server;
mod tls;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::Full;
use tracing::Instrument;

pub use body::{BODY_RATE_WINDOW, MIN_BODY_RATE};
pub use config::{
    Accept, Config, DEFAULT_EVENT_DEDUP_TTL, DEFAULT_MAX_BODY, DEFAULT_MAX_ITEMS, DEFAULT_PATH,
};
pub use jobs::content_id;
pub use metrics::Metrics;
pub use post::{JOB_BYTES_PER_BODY_BYTE, JOB_BYTES_SLACK};
pub use server::{ADMIN_MAX_CONNECTIONS, Server, serve};
pub use tls::{
    ClientAuth, DEFAULT_POLL_INTERVAL, META_CLIENT_SUBJECT, Tls, TlsFile, TlsOptions, TlsProblem,
};
pub use wa_challenge::Challenge;
pub use wa_queue::{JobKind, Producer, ProducerOptions, QueueName};
pub use wa_signature::Verifier;

use metrics::Outcome;

/// Errors of this crate (configuration only: the endpoint itself answers every request).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// a word of the accept list is not `message`, `status`, `error`, `change` or `all`
    #[error("unknown notification kind {0:?} (expected message, status, error, change or all)")]
    UnknownKind(String),
    /// the accept list names no kind
    #[error("the accept list is empty")]
    EmptyAccept,
    /// a TLS file (certificate chain, private key, client CA bundle) cannot be read or used
    #[error("{file} {}: {problem}", path.display())]
    TlsFile {
        /// which file
        file: TlsFile,
        /// where it was read from
        path: std::path::PathBuf,
        /// what is wrong with it
        problem: TlsProblem,
        /// the underlying error, when there is one
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// the name a client certificate must carry is empty
    #[error("the client certificate subject is empty")]
    EmptyClientSubject,
}

/// The webhook endpoint: a handler, a tower `Service`, and what [`serve`] runs.
///
/// Cloning is cheap (an `Arc`); every clone shares the producer and the metrics.
#[derive(Clone)]
pub struct Webhook {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// The budget of bodies being read, not yet verified, in KiB (see [`Config::max_buffered`]).
    unverified: tokio::sync::Semaphore,
    /// The budget of verified bodies waiting for Redis, in KiB (see [`Config::max_buffered`]).
    verified: tokio::sync::Semaphore,
    verifier: Verifier,
    challenge: Challenge,
    producer: Producer,
    metrics: Metrics,
    /// The last word from Redis (a `/readyz` PING or an enqueue): when, and whether it answered.
    redis_check: std::sync::Mutex<Option<(Instant, bool)>>,
    /// Held while `/readyz` PINGs, so concurrent probes send one PING.
    pinging: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Webhook {
    // The verifier and challenge hold secrets; their own Debug redacts them, and the config
    // holds none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Where a request goes, decided from its path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Webhook,
    Healthz,
    Readyz,
    Metrics,
    NotFound,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Webhook => "webhook",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::NotFound => "not_found",
        }
    }
}

/// Which routes a listener offers: all of them, or (with an admin listener) the webhook path on
/// the public listener and the probes on the admin one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    All,
    Public,
    Admin,
}

impl Surface {
    /// Whether `route` is served here; a route that is not answers 404.
    fn offers(self, route: Route) -> bool {
        match (self, route) {
            (Surface::All, _) | (_, Route::NotFound) => true,
            (Surface::Public, r) => r == Route::Webhook,
            (Surface::Admin, r) => r != Route::Webhook,
        }
    }
}

type Reply = Response<Full<Bytes>>;

impl Webhook {
    /// Assembles an endpoint. The producer's own timeout should not exceed
    /// [`Config::enqueue_timeout`]; the endpoint enforces the latter in any case.
    pub fn new(
        config: Config,
        verifier: Verifier,
        challenge: Challenge,
        producer: Producer,
    ) -> Self {
        let budget = config.max_buffered.div_ceil(1024).max(1);
        Self {
            inner: Arc::new(Inner {
                unverified: tokio::sync::Semaphore::new(budget),
                verified: tokio::sync::Semaphore::new(budget),
                config,
                verifier,
                challenge,
                producer,
                metrics: Metrics::default(),
                redis_check: std::sync::Mutex::new(None),
                pinging: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The settings this endpoint was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The live counters (what `/metrics` renders).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The producer jobs go through (for [`Producer::watch_config`], whose verdict `/readyz`
    /// and `/metrics` report).
    pub fn producer(&self) -> &Producer {
        &self.inner.producer
    }

    /// Answers one request. Never fails: every problem has its status code.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: HttpBody,
    {
        self.handle_on(req, Surface::All).await
    }

    /// [`handle`](Self::handle) for a listener that offers only some routes.
    pub(crate) async fn handle_on<B>(&self, req: Request<B>, surface: Surface) -> Reply
    where
        B: HttpBody,
    {
        let inner = &*self.inner;
        let _in_flight = inner.metrics.in_flight();
        let route = Some(self.route_of(req.uri().path()))
            .filter(|r| surface.offers(*r))
            .unwrap_or(Route::NotFound);
        let span = tracing::debug_span!(
            "request",
            method = %req.method(),
            // The path only: the query string of a handshake holds the verify token.
            path = req.uri().path(),
            route = route.name(),
            status = tracing::field::Empty,
            notifications = tracing::field::Empty,
        );
        // The clock is read only for a span that is recorded.
        let started = (!span.is_disabled()).then(Instant::now);
        let mut notifications = 0usize;
        let response = self
            .dispatch(req, route, &mut notifications)
            .instrument(span.clone())
            .await;
        if let Some(started) = started {
            span.record("status", response.status().as_u16());
            span.record("notifications", notifications);
            span.in_scope(|| {
                tracing::debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "answered"
                );
            });
        }
        response
    }

    fn route_of(&self, path: &str) -> Route {
        if path == self.inner.config.path {
            Route::Webhook
        } else {
            match path {
                "/healthz" => Route::Healthz,
                "/readyz" => Route::Readyz,
                "/metrics" => Route::Metrics,
                _ => Route::NotFound,
            }
        }
    }

    async fn dispatch<B: HttpBody>(
        &self,
        req: Request<B>,
        route: Route,
        count: &mut usize,
    ) -> Reply {
        let metrics = &self.inner.metrics;
        match (route, req.method()) {
            (Route::Webhook, &Method::POST) => self.post(req, count).await,
            (Route::Webhook, &Method::GET) => self.handshake(req.uri().query().unwrap_or("")),
            (Route::Webhook, _) => {
                metrics.request(Outcome::MethodNotAllowed);
                with_allow(reply(StatusCode::METHOD_NOT_ALLOWED, ""), "GET, POST")
            }
            (Route::NotFound, _) => {
                metrics.request(Outcome::NotFound);
                reply(StatusCode::NOT_FOUND, "")
            }
            (_, m) if m != Method::GET => {
                metrics.request(Outcome::MethodNotAllowed);
                with_allow(reply(StatusCode::METHOD_NOT_ALLOWED, ""), "GET")
            }
            (Route::Healthz, _) => {
                metrics.request(Outcome::Probe);
                text(StatusCode::OK, Bytes::from_static(b"ok\n"))
            }
            (Route::Readyz, _) => {
                metrics.request(Outcome::Probe);
                self.ready().await
            }
            (Route::Metrics, _) => {
                metrics.request(Outcome::Probe);
                let mut text = metrics.render();
                self.inner.producer.config_health().render(&mut text);
                let mut r = Response::new(Full::new(Bytes::from(text)));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
        }
    }

    fn handshake(&self, query: &str) -> Reply {
        let metrics = &self.inner.metrics;
        match self.inner.challenge.decide(query) {
            Ok(challenge) => {
                metrics.request(Outcome::ChallengeOk);
                text(StatusCode::OK, Bytes::from(challenge))
            }
            Err(e) if e.is_bad_request() => {
                metrics.request(Outcome::ChallengeBadRequest);
                reply(StatusCode::BAD_REQUEST, "")
            }
            Err(_) => {
                metrics.request(Outcome::ChallengeForbidden);
                reply(StatusCode::FORBIDDEN, "")
            }
        }
    }

    /// `/readyz`: whether Redis answered, asked at most once per [`READY_CACHE`] whatever the
    /// probe rate. An enqueue's outcome counts as an answer too, so a failed enqueue turns
    /// readiness off at once. Probes that arrive during a PING wait for its answer.
    async fn ready(&self) -> Reply {
        if !self.inner.producer.config_health().ready() {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(b"redis maxmemory-policy evicts jobs\n"),
            );
        }
        let ok = match self.recent_redis_check() {
            Some(ok) => ok,
            None => {
                let _one_ping = self.inner.pinging.lock().await;
                match self.recent_redis_check() {
                    Some(ok) => ok, // another probe asked while this one waited
                    None => {
                        let ping = tokio::time::timeout(
                            self.inner.config.enqueue_timeout,
                            self.inner.producer.ping(),
                        );
                        let ok = matches!(ping.await, Ok(Ok(())));
                        self.note_redis(ok);
                        ok
                    }
                }
            }
        };
        if ok {
            text(StatusCode::OK, Bytes::from_static(b"ready\n"))
        } else {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(b"redis unavailable\n"),
            )
        }
    }

    /// What Redis last said, if it said it less than [`READY_CACHE`] ago.
    fn recent_redis_check(&self) -> Option<bool> {
        let last = *self
            .inner
            .redis_check
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        last.filter(|(at, _)| at.elapsed() < READY_CACHE)
            .map(|(_, ok)| ok)
    }

    /// Records whether Redis just answered (a PING or an enqueue).
    fn note_redis(&self, ok: bool) {
        *self
            .inner
            .redis_check
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), ok));
    }
}

fn reply(status: StatusCode, body: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

fn text(status: StatusCode, body: Bytes) -> Reply {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn with_allow(mut r: Reply, allow: &'static str) -> Reply {
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<B> tower_service::Service<Request<B>> for Webhook
where
    B: HttpBody + Send + 'static,
    B::Data: Send,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// How long a `/readyz` answer about Redis is reused: at most one PING per this.
const READY_CACHE: Duration = Duration::from_secs(1);

/// How long [`serve`] waits after an accept error (out of file descriptors, say) before trying
/// again, so such a state does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests;
