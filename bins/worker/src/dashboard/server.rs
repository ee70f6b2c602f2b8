//! The dashboard's HTTP/1.1 server: at most [`MAX_CONNECTIONS`] connections at once (more are
//! closed as they arrive), request heads within [`HEADER_TIMEOUT`], bodies up to
//! [`MAX_BODY`]; stops accepting when `shutdown` resolves.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::routes::{App, plain};

/// Connections served at once; a browser opens about six.
const MAX_CONNECTIONS: usize = 64;
/// A request head must arrive within this (slow-loris guard).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body (an action names at most a page of keys, or a filter).
const MAX_BODY: usize = 256 * 1024;

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // over the cap: dropping the stream closes it
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(app.clone(), req));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

/// Reads the body (bounded) and hands the request to the routes.
async fn answer(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ));
        }
    };
    Ok(app.route(Request::from_parts(parts, body)).await)
}
