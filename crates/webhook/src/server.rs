//! The accept loops: HTTP/1.1 + HTTP/2 on hyper-util, connection caps, the per-connection idle
//! deadline, graceful stop, and the optional admin listener.
//!
//! # Why a deadline of our own on every connection
//!
//! hyper's `header_read_timeout` only runs once hyper knows the connection speaks HTTP/1 and
//! has seen a byte of a head. Before that, hyper-util reads the first bytes to tell HTTP/1 from
//! HTTP/2 prior knowledge, and an HTTP/2 connection waits for its first HEADERS frame: a socket
//! that sends nothing, half a preface, or a preface and an empty SETTINGS frame held its slot
//! for ever. So each connection carries an [`Activity`] that the service updates: while no
//! request is in the service, the connection must produce a complete request head within
//! [`Config::header_read_timeout`] of the moment it became idle (its accept, or the end of its
//! last request), whatever the protocol; past it the connection is dropped, which closes the
//! socket. The same idleness decides shutdown: an idle connection is closed at once, a busy one
//! is told to finish (HTTP/1 stops keep-alive, HTTP/2 sends GOAWAY) and closes after its last
//! answer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::route::Surface;
use crate::tls::{self, Tls};
use crate::{Config, Webhook};

/// How long the accept loop waits after an accept error (out of file descriptors, say) before
/// trying again, so such a state does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Connections the admin listener serves at once (probes and scrapes are few and short).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// After shutdown began, how long a connection that has answered its last request may take
/// to write that answer out before it is dropped.
const STOP_LINGER: Duration = Duration::from_secs(1);

/// Serves `webhook` on `listener` until `shutdown` resolves, then drains and returns.
///
/// The same as [`Server::new(listener)`](Server::new)`.serve(webhook, shutdown)`: one listener
/// for the webhook path and the probes.
pub async fn serve(listener: TcpListener, webhook: Webhook, shutdown: impl Future<Output = ()>) {
    Server::new(listener).serve(webhook, shutdown).await;
}

/// The ingress's listeners: the public one and, optionally, an admin one for the probes.
///
/// - HTTP/1.1 with keep-alive, and HTTP/2 (TLS-less, with prior knowledge) on the same port;
/// - at most [`Config::max_connections`] public connections at once (and
///   [`ADMIN_MAX_CONNECTIONS`] admin ones): beyond that the loop stops accepting and new
///   clients wait in the kernel's backlog;
/// - every connection, whatever its protocol, must deliver a complete request head within
///   [`Config::header_read_timeout`] of being accepted or of finishing its previous request,
///   or it is closed; HTTP/2 connections also get keep-alive PINGs at that interval and are
///   closed when one goes unanswered for as long; bodies are bounded by
///   [`Config::request_timeout`] and a floor rate, the enqueue by [`Config::enqueue_timeout`];
/// - on shutdown: the listeners close at once, idle connections are closed at once, requests
///   in flight finish (their 200 means their jobs are in Redis) for up to
///   [`Config::shutdown_grace`]; connections still open then are abandoned. Shutdown takes as
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
}

impl Server {
    /// A server on `listener` that answers the webhook path and the probes.
    pub fn new(listener: TcpListener) -> Self {
        Self {
            public: listener,
            admin: None,
            tls: None,
        }
    }

    /// Moves `/healthz`, `/readyz` and `/metrics` to `listener`.
    pub fn admin(mut self, listener: TcpListener) -> Self {
        self.admin = Some(listener);
        self
    }

    /// Serves HTTPS on the public listener: every accepted connection first completes a TLS
    /// handshake with the configuration `tls` holds at that moment, within
    /// [`Config::header_read_timeout`], then speaks HTTP/1.1 or HTTP/2 as ALPN chose. The
    /// files are polled for changes ([`Tls::watch`]) for as long as this serves.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn serve(self, webhook: Webhook, shutdown: impl Future<Output = ()>) {
        let watching = self.tls.clone().map(|tls| tokio::spawn(tls.watch()));
        let config = webhook.config().clone();
        let builder = Arc::new(http_builder(&config));
        let (stop_tx, stop_rx) = watch::channel(false);
        let public = Loop {
            surface: if self.admin.is_some() {
                Surface::Public
            } else {
                Surface::All
            },
            slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
            cap: config.max_connections.max(1),
            tls: self.tls,
        };
        let admin = Loop {
            surface: Surface::Probes,
            slots: Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS)),
            cap: ADMIN_MAX_CONNECTIONS,
            tls: None,
        };
        {
            let shared = Shared {
                webhook: &webhook,
                builder: &builder,
                stop: &stop_rx,
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
        if tokio::time::timeout(config.shutdown_grace, drained)
            .await
            .is_err()
        {
            tracing::warn!(grace = ?config.shutdown_grace, "grace period over; closing the connections left");
        }
    }
}

/// The HTTP/1 + HTTP/2 settings every connection gets.
fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_streams_per_connection)
        .keep_alive_interval(Some(config.header_read_timeout))
        .keep_alive_timeout(config.header_read_timeout);
    builder
}

/// What every connection task of one server shares.
struct Shared<'a> {
    webhook: &'a Webhook,
    builder: &'a Arc<auto::Builder<TokioExecutor>>,
    stop: &'a watch::Receiver<bool>,
}

/// One listener's accept loop and its connection cap.
struct Loop {
    surface: Surface,
    /// HTTPS on this listener.
    tls: Option<Tls>,
    slots: Arc<Semaphore>,
    cap: usize,
}

impl Loop {
    /// Accepts for ever (the caller drops this future at shutdown).
    async fn accept(&self, listener: TcpListener, shared: &Shared<'_>) {
        if let Ok(addr) = listener.local_addr() {
            tracing::debug!(%addr, surface = ?self.surface, "accepting connections");
        }
        loop {
            let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else {
                return; // the semaphore is ours and never closed
            };
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    drop(permit);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            // Small answers: send them now rather than wait for more to coalesce.
            let _ = stream.set_nodelay(true);
            let conn = Connection {
                webhook: shared.webhook.clone(),
                surface: self.surface,
                builder: Arc::clone(shared.builder),
                stop: shared.stop.clone(),
                _slot: permit,
            };
            match &self.tls {
                None => drop(tokio::spawn(conn.run(stream))),
                Some(tls) => drop(tokio::spawn(conn.run_tls(tls.acceptor(), stream, peer))),
            }
        }
    }

    /// Connections open now.
    fn open(&self) -> usize {
        self.cap - self.slots.available_permits()
    }

    /// Resolves once every connection of this loop has closed (each holds a slot).
    async fn drained(&self) {
        let cap = u32::try_from(self.cap).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(cap).await;
    }
}

/// One accepted connection: serves requests until the client leaves, the idle deadline passes,
/// or shutdown finds it idle.
struct Connection {
    webhook: Webhook,
    surface: Surface,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
    /// Returned to the loop's cap when the connection ends.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    /// [`run`](Self::run) after a TLS handshake, which must finish within the header-read
    /// timeout (and is abandoned at shutdown).
    async fn run_tls(mut self, acceptor: TlsAcceptor, stream: TcpStream, peer: SocketAddr) {
        let limit = self.webhook.config().header_read_timeout;
        let metrics = self.webhook.metrics();
        let handshake = tls::handshake(acceptor, stream, peer, limit, metrics);
        let stream = tokio::select! {
            stream = handshake => stream,
            _ = self.stop.changed() => None,
        };
        if let Some(stream) = stream {
            self.run(stream).await;
        }
    }

    async fn run<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let _open = self.webhook.metrics().connection();
        let header_timeout = self.webhook.config().header_read_timeout;
        let activity = Arc::new(Activity::new());
        let service = {
            let webhook = self.webhook.clone();
            let activity = Arc::clone(&activity);
            let surface = self.surface;
            service_fn(move |req| {
                let busy = activity.begin();
                let webhook = webhook.clone();
                async move {
                    let answer = webhook.handle_on(req, surface).await;
                    drop(busy);
                    Ok::<_, Infallible>(answer)
                }
            })
        };
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let mut stopping = false;
        loop {
            let linger = if stopping {
                STOP_LINGER
            } else {
                header_timeout
            };
            let deadline = activity.idle_deadline(linger);
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                    return;
                }
                () = activity.changed.notified() => {}
                () = sleep_until(deadline) => {
                    if activity.idle_deadline(linger).is_some_and(|d| d <= Instant::now()) {
                        tracing::debug!(stopping, "connection idle past its deadline; closing it");
                        return;
                    }
                }
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if activity.idle_deadline(linger).is_some() {
                        return; // idle: nothing to finish
                    }
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Whether a connection has a request in the service, and since when it has had none.
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken on every change; one waiter (the connection task), so a permit is never lost.
    changed: Notify,
}

struct ActivityState {
    in_flight: usize,
    idle_since: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    /// A request head arrived: the connection is busy until the guard is dropped.
    fn begin(self: &Arc<Self>) -> Busy {
        self.update(|s| s.in_flight += 1);
        Busy(Arc::clone(self))
    }

    /// When an idle connection must have started its next request (`None` while busy).
    fn idle_deadline(&self, linger: Duration) -> Option<Instant> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.in_flight == 0).then(|| s.idle_since + linger)
    }

    fn update(&self, f: impl FnOnce(&mut ActivityState)) {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
        }
        self.changed.notify_one();
    }
}

/// A request in the service; dropping it (answered, or cancelled) may make the connection idle.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|s| {
            s.in_flight -= 1;
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
            }
        });
    }
}
