//! The accept loops: HTTP/1.1 + HTTP/2 on hyper-util, connection caps, the per-connection idle
//! deadline, graceful stop, and the optional admin listener.
//!
//! # Why a deadline of our own on every connection
//!
//! hyper's `header_read_timeout` only runs once hyper knows the connection speaks HTTP/1 and
//! has seen a byte of a head. Before that, hyper-util reads the first bytes to tell HTTP/1 from
//! HTTP/2 prior knowledge, and an HTTP/2 connection waits for its first HEADERS frame: a socket
//! that sends nothing, half a preface, or a preface and an empty SETTINGS frame held its slot
//! for ever. So each connection carries an `Activity` (in `connection`) that the service updates: while no
//! request is in the service, the connection must produce a complete request head within
//! [`ServeOptions::header_read_timeout`] of the moment it became idle (its accept, or the end of its
//! last request), whatever the protocol; past it the connection is dropped, which closes the
//! socket. This deadline is the only one on a request head: hyper's own is turned off, since
//! it was boxed and armed anew for every request and this one covers what it did. Requests
//! only note their start and end in the `Activity`; one timer per connection, re-armed only
//! when it fires, reads it, so a request costs no timer and no wake-up. The same idleness
//! decides shutdown: an idle connection is closed at once, a busy one
//! is told to finish (HTTP/1 stops keep-alive, HTTP/2 sends GOAWAY) and closes after its last
//! answer.

mod connection;
mod options;

use std::future::Future;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Webhook;
use crate::route::Surface;
use crate::tls::Tls;
use connection::{Loop, Shared};
pub use options::ServeOptions;

/// Connections the admin listener serves at once (probes and scrapes are few and short).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Serves `webhook` on `listener` until `shutdown` resolves, then drains and returns.
///
/// The same as [`Server::new(listener)`](Server::new)`.serve(webhook, shutdown)`: one listener
/// for the webhook path and the probes, with the default [`ServeOptions`].
pub async fn serve(listener: TcpListener, webhook: Webhook, shutdown: impl Future<Output = ()>) {
    Server::new(listener).serve(webhook, shutdown).await;
}

/// The ingress's listeners: the public one and, optionally, an admin one for the probes.
///
/// - HTTP/1.1 with keep-alive, and HTTP/2 (TLS-less, with prior knowledge) on the same port;
/// - at most [`ServeOptions::max_connections`] public connections at once (and
///   [`ADMIN_MAX_CONNECTIONS`] admin ones): beyond that the loop stops accepting and new
///   clients wait in the kernel's backlog;
/// - every connection, whatever its protocol, must deliver a complete request head within
///   [`ServeOptions::header_read_timeout`] of being accepted or of finishing its previous request,
///   or it is closed; HTTP/2 connections also get keep-alive PINGs at that interval and are
///   closed when one goes unanswered for as long; bodies are bounded by
///   [`Config::request_timeout`](crate::Config::request_timeout) and a floor rate, the enqueue
///   by [`Config::enqueue_timeout`](crate::Config::enqueue_timeout);
/// - on shutdown: the listeners close at once, idle connections are closed at once, requests
///   in flight finish (their 200 means their jobs are in Redis) for up to
///   [`ServeOptions::shutdown_grace`]; connections still open then are abandoned. Shutdown takes as
///   long as the slowest request in flight, not the grace period.
///
/// With [`Server::admin`], `/healthz`, `/readyz` and `/metrics` are served on the admin
/// listener only (404 on the public one), and the admin listener serves nothing else.
///
/// With [`Server::tls`], the public listener speaks HTTPS (the admin one stays plain HTTP).
///
/// Accept errors (a client that went away, no file descriptors left) are logged and retried:
/// the loops end only with `shutdown`.
#[derive(Debug)]
pub struct Server {
    public: TcpListener,
    admin: Option<TcpListener>,
    tls: Option<Tls>,
    options: ServeOptions,
}

impl Server {
    /// A server on `listener` that answers the webhook path and the probes.
    pub fn new(listener: TcpListener) -> Self {
        Self {
            public: listener,
            admin: None,
            tls: None,
            options: ServeOptions::default(),
        }
    }

    /// Serves with `options` instead of the defaults.
    pub fn options(mut self, options: ServeOptions) -> Self {
        self.options = options;
        self
    }

    /// Moves `/healthz`, `/readyz` and `/metrics` to `listener`.
    pub fn admin(mut self, listener: TcpListener) -> Self {
        self.admin = Some(listener);
        self
    }

    /// Serves HTTPS on the public listener: every accepted connection first completes a TLS
    /// handshake with the configuration `tls` holds at that moment, within
    /// [`ServeOptions::header_read_timeout`], then speaks HTTP/1.1 or HTTP/2 as ALPN chose. The
    /// files are polled for changes ([`Tls::watch`]) for as long as this serves.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn serve(self, webhook: Webhook, shutdown: impl Future<Output = ()>) {
        let watching = self.tls.clone().map(|tls| tokio::spawn(tls.watch()));
        let options = self.options;
        let builder = Arc::new(http_builder(&options));
        let (stop_tx, stop_rx) = watch::channel(false);
        let surface = if self.admin.is_some() {
            Surface::Public
        } else {
            Surface::All
        };
        let public = Loop::new(surface, options.max_connections, self.tls);
        let admin = Loop::new(Surface::Probes, ADMIN_MAX_CONNECTIONS, None);
        {
            let shared = Shared {
                webhook: &webhook,
                builder: &builder,
                stop: &stop_rx,
                header_timeout: options.header_read_timeout,
            };
            let accepting = async {
                match self.admin {
                    Some(listener) => {
                        tokio::join!(
                            public.accept(self.public, &shared),
                            admin.accept(listener, &shared)
                        );
                    }
                    None => public.accept(self.public, &shared).await,
                }
            };
            // The listeners live in `accepting`: leaving this block closes them.
            tokio::select! {
                () = shutdown => {}
                () = accepting => {}
            }
        }
        let _ = stop_tx.send(true);
        if let Some(watching) = watching {
            watching.abort();
        }
        let open = public.open() + admin.open();
        tracing::info!(open, "shutting down: finishing requests in flight");
        let drained = async {
            public.drained().await;
            admin.drained().await;
        };
        if tokio::time::timeout(options.shutdown_grace, drained)
            .await
            .is_err()
        {
            tracing::warn!(grace = ?options.shutdown_grace, "grace period over; closing the connections left");
        }
    }
}

/// The HTTP/1 + HTTP/2 settings every connection gets.
fn http_builder(options: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No HTTP/1 header-read timer of hyper's: every connection's own deadline (see the module
    // doc) already bounds the time to a complete head, from an earlier moment, and hyper's
    // would cost a boxed timer armed and dropped per request (hyper arms 30 s by default once
    // a timer is set, hence the explicit `None`).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.max_streams_per_connection)
        .keep_alive_interval(Some(options.header_read_timeout))
        .keep_alive_timeout(options.header_read_timeout);
    builder
}
