//! The dashboard's HTTP server: the worker's bounded HTTP/1.1 loop ([`crate::http::serve`]: 64
//! connections, one request each, a request head within [`HEADER_TIMEOUT`] of the accept), and
//! request bodies up to [`MAX_BODY`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::routes::{App, plain};

/// A request head must arrive within this of the accept (slow-loris guard).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body (an action names at most a page of keys, or a filter).
const MAX_BODY: usize = 256 * 1024;

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let handle = move |req| answer(app.clone(), req);
    crate::http::serve("dashboard", listener, HEADER_TIMEOUT, handle, shutdown).await;
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
