//! The accept loop: HTTP/1.1 + HTTP/2 on hyper-util, connection cap, timeouts, graceful stop.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::{ACCEPT_BACKOFF, Webhook};

/// Serves `webhook` on `listener` until `shutdown` resolves, then drains and returns.
///
/// - HTTP/1.1 with keep-alive, and HTTP/2 (TLS-less, with prior knowledge) on the same port;
/// - at most [`Config::max_connections`](crate::Config::max_connections) connections at once:
///   beyond that the loop stops accepting and new clients wait in the kernel's backlog;
/// - HTTP/1 headers (and idle keep-alive time) bounded by
///   [`Config::header_read_timeout`](crate::Config::header_read_timeout), bodies by
///   [`Config::request_timeout`](crate::Config::request_timeout), the enqueue by
///   [`Config::enqueue_timeout`](crate::Config::enqueue_timeout);
/// - on shutdown: the listener is closed at once, idle connections are closed, requests in
///   flight finish (their 200 means their jobs are in Redis) for up to
///   [`Config::shutdown_grace`](crate::Config::shutdown_grace); connections still open then are
///   abandoned.
///
/// Accept errors (a client that went away, no file descriptors left) are logged and retried:
/// the loop ends only with `shutdown`.
pub async fn serve(listener: TcpListener, webhook: Webhook, shutdown: impl Future<Output = ()>) {
    let config = webhook.config().clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_streams_per_connection);

    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    if let Ok(addr) = listener.local_addr() {
        tracing::debug!(%addr, "accepting connections");
    }
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is ours and never closed
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                drop(permit);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        // Small answers: send them now rather than wait for more to coalesce.
        let _ = stream.set_nodelay(true);

        let per_request = webhook.clone();
        let service = service_fn(move |req| {
            let webhook = per_request.clone();
            async move { Ok::<_, Infallible>(webhook.handle(req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        let holder = webhook.clone();
        tokio::spawn(async move {
            let _open = holder.metrics().connection();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }

    // Refuse new connections from now on.
    drop(listener);
    let open = graceful.count();
    tracing::info!(open, "shutting down: finishing requests in flight");
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?config.shutdown_grace, "grace period over; closing the connections left");
    }
}
