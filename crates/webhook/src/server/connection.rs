//! One listener's accept loop and the connections it serves: the cap on open connections, the
//! idle deadline every connection carries whatever its protocol, and how a connection ends at
//! shutdown (see the [parent module](super) for why the deadline is our own).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::Webhook;
use crate::route::Surface;
use crate::tls::{self, Tls};

/// How long the accept loop waits after an accept error (out of file descriptors, say) before
/// trying again, so such a state does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// After shutdown began, how long a connection that has answered its last request may take
/// to write that answer out before it is dropped.
const STOP_LINGER: Duration = Duration::from_secs(1);

/// What every connection task of one server shares.
pub(super) struct Shared<'a> {
    pub(super) webhook: &'a Webhook,
    pub(super) builder: &'a Arc<auto::Builder<TokioExecutor>>,
    pub(super) stop: &'a watch::Receiver<bool>,
    /// [`ServeOptions::header_read_timeout`](super::ServeOptions::header_read_timeout).
    pub(super) header_timeout: Duration,
}

/// One listener's accept loop and its connection cap.
pub(super) struct Loop {
    surface: Surface,
    /// HTTPS on this listener.
    tls: Option<Tls>,
    slots: Arc<Semaphore>,
    cap: usize,
}

impl Loop {
    /// A loop for `surface` that serves at most `cap` connections at once (at least one).
    pub(super) fn new(surface: Surface, cap: usize, tls: Option<Tls>) -> Self {
        let cap = cap.max(1);
        Self {
            surface,
            tls,
            slots: Arc::new(Semaphore::new(cap)),
            cap,
        }
    }

    /// Accepts for ever (the caller drops this future at shutdown).
    pub(super) async fn accept(&self, listener: TcpListener, shared: &Shared<'_>) {
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
                header_timeout: shared.header_timeout,
                _slot: permit,
            };
            match &self.tls {
                None => drop(tokio::spawn(conn.run(stream))),
                Some(tls) => drop(tokio::spawn(conn.run_tls(tls.acceptor(), stream, peer))),
            }
        }
    }

    /// Connections open now.
    pub(super) fn open(&self) -> usize {
        self.cap - self.slots.available_permits()
    }

    /// Resolves once every connection of this loop has closed (each holds a slot).
    pub(super) async fn drained(&self) {
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
    header_timeout: Duration,
    /// Returned to the loop's cap when the connection ends.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    /// [`run`](Self::run) after a TLS handshake, which must finish within the header-read
    /// timeout (and is abandoned at shutdown).
    async fn run_tls(mut self, acceptor: TlsAcceptor, stream: TcpStream, peer: SocketAddr) {
        let limit = self.header_timeout;
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
        let header_timeout = self.header_timeout;
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
        // One timer for the connection's life, armed at most once per linger: requests do not
        // touch it. When it fires it looks at the activity: idle past the deadline closes the
        // connection; idle with time left sleeps until the deadline; busy looks again a
        // linger later (the deadline, once idle, is at least that far).
        let mut linger = header_timeout;
        let sleep = tokio::time::sleep_until(Instant::now() + linger);
        let mut sleep = std::pin::pin!(sleep);
        let mut stopping = false;
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                    return;
                }
                () = sleep.as_mut() => {
                    let now = Instant::now();
                    match activity.idle_deadline(linger) {
                        Some(deadline) if deadline <= now => {
                            tracing::debug!(stopping, "connection idle past its deadline; closing it");
                            return;
                        }
                        Some(deadline) => sleep.as_mut().reset(deadline),
                        None => sleep.as_mut().reset(now + linger),
                    }
                }
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    linger = STOP_LINGER;
                    if activity.idle_deadline(linger).is_some() {
                        return; // idle: nothing to finish
                    }
                    conn.as_mut().graceful_shutdown();
                    sleep.as_mut().reset(Instant::now() + linger);
                }
            }
        }
    }
}

/// Whether a connection has a request in the service, and since when it has had none. Nothing
/// is woken when it changes: the connection's timer reads it when it fires.
struct Activity {
    state: Mutex<ActivityState>,
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
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
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
