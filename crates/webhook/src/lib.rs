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
//! use wa_webhook::{Challenge, Config, Producer, QueueName, Verifier, Webhook};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::default(); // path /api/whatsapp/webhook, 4 MiB, 2 s, all kinds
//! let verifier = Verifier::from_list("app-secret")?; // a comma list verifies against any
//! let challenge = Challenge::new("verify-token")?;
//! // The producer's timeout is the endpoint's enqueue timeout, set in `Config` only.
//! let options = config.producer_options();
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
//! caps open connections ([`ServeOptions::max_connections`]), closes any connection that goes
//! [`ServeOptions::header_read_timeout`] without a complete request head (whatever its
//! protocol, keep-alive idle time included), and on shutdown stops accepting, closes idle
//! connections and lets in-flight requests finish for up to [`ServeOptions::shutdown_grace`].
//! [`Server::options`] sets those; [`Server::admin`] moves the probes to a listener of their
//! own. [`Config`] holds only what the handler itself needs, wherever it is mounted.
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
//! that never fails (`Error = Infallible`). Mount its parts where your router wants them:
//! [`Webhook::endpoint`] is the webhook alone (GET handshake, POST notifications) on whatever
//! path it is mounted at, and [`Webhook::probes`] is `/healthz`, `/readyz` (Redis answered a
//! PING or an enqueue within the last second, or answers a PING now within the enqueue
//! timeout; 503 too while a strict [`Producer::watch_config`] check finds an evicting
//! `maxmemory-policy`) and `/metrics` (Prometheus text). In axum:
//!
//! ```no_run
//! # fn mount(webhook: wa_webhook::Webhook) -> axum::Router {
//! axum::Router::new()
//!     .route_service("/hooks/whatsapp", webhook.endpoint())
//!     .nest_service("/wa", webhook.probes()) // /wa/healthz, /wa/readyz, /wa/metrics
//! # }
//! ```
//!
//! With plain hyper, per accepted connection (the whole [`Webhook`] routes by path itself:
//! [`Config::path`] and the probes, 404 for any other path):
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
//! Or call [`Webhook::handle`] (or [`Routes::handle`]) yourself with any `http::Request` whose
//! body implements `http_body::Body`; that is how the tests drive it without a socket.
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
//! away. With [`serve`], connections are also capped ([`ServeOptions::max_connections`]).
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
mod error;
mod jobs;
mod metrics;
mod post;
mod ready;
mod reply;
mod route;
mod server;
mod tls;
mod webhook;

pub use body::{BODY_RATE_WINDOW, MIN_BODY_RATE};
pub use config::{
    Accept, Config, DEFAULT_EVENT_DEDUP_TTL, DEFAULT_MAX_BODY, DEFAULT_MAX_ITEMS, DEFAULT_PATH,
};
pub use error::WebhookError;
pub use jobs::content_id;
pub use metrics::Metrics;
pub use post::{JOB_BYTES_PER_BODY_BYTE, JOB_BYTES_SLACK};
pub use server::{ADMIN_MAX_CONNECTIONS, ServeOptions, Server, serve};
pub use tls::{
    ClientAuth, DEFAULT_POLL_INTERVAL, META_CLIENT_SUBJECT, Tls, TlsFile, TlsOptions, TlsProblem,
};
pub use wa_challenge::Challenge;
pub use wa_queue::{JobKind, Producer, ProducerOptions, QueueName};
pub use wa_signature::Verifier;
pub use webhook::{Routes, Webhook};

#[cfg(test)]
mod tests;
