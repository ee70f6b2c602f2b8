//! The worker's small HTTP/1.1 servers (`--metrics-listen`, `wa-worker dashboard`): at most
//! [`MAX_CONNECTIONS`] connections at once, one request each, and a connection that has not
//! delivered its request head within `header_timeout` of its accept is closed, so silent or
//! half-sent connections cannot hold the slots.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

/// Connections served at once; further connections wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;

/// Serves `handle` on `listener` until `shutdown` resolves (`what` names the server in logs).
///
/// One request per connection (no keep-alive): a scraper or a browser simply reconnects, and a
/// slot is never held by an idle connection.
pub async fn serve<H, F>(
    what: &'static str,
    listener: TcpListener,
    header_timeout: Duration,
    handle: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(false);
    let http = Arc::new(http);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &slots, what) => accepted,
            () = &mut shutdown => return,
        };
        let Some((stream, slot)) = accepted else {
            continue;
        };
        let (http, handle) = (http.clone(), handle.clone());
        tokio::spawn(async move {
            let head = Arc::new(Notify::new());
            let service = {
                let head = head.clone();
                service_fn(move |req| {
                    head.notify_one();
                    handle(req)
                })
            };
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            // hyper's own header timeout starts with the first byte; this one with the accept.
            let answered = tokio::select! {
                _ = conn.as_mut() => true,
                () = head.notified() => false,
                () = tokio::time::sleep(header_timeout) => {
                    tracing::debug!("{what}: no request head in time; closing");
                    true
                }
            };
            if !answered {
                let _ = conn.await;
            }
            drop(slot);
        });
    }
}

/// Waits for a free slot, then for a connection; `None` after a failed accept.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    what: &str,
) -> Option<(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    // The semaphore is ours and never closed.
    let slot = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, _)) => Some((stream, slot)),
        Err(e) => {
            // Out of file descriptors and the like: pause rather than spin.
            tracing::warn!(error = %e, "{what}: accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}
