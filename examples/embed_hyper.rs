//! The webhook endpoint inside a hyper server you already have, next to its own routes: the
//! service below answers `/hello` itself, hands the path Meta posts to to
//! [`Webhook::endpoint`](wa_webhook::Webhook::endpoint) and every other request to
//! [`Webhook::probes`](wa_webhook::Webhook::probes) (`/healthz`, `/readyz`, `/metrics`, 404 for
//! the rest). Ctrl-C stops accepting and lets requests in flight finish.
//!
//! Run with:
//! `WHATSAPP_APP_SECRET=dev-app-secret WHATSAPP_VERIFY_TOKEN=dev-verify-token cargo run --example embed_hyper`
//!
//! It listens on 127.0.0.1:3000 and enqueues to Redis at `REDIS_URL` (default
//! `redis://127.0.0.1:6379`), queue `WA_QUEUE` (default `whatsapp`). Then try
//! `curl http://127.0.0.1:3000/hello`, and post a signed fixture with
//! `WHATSAPP_APP_SECRET=dev-app-secret cargo run --example send_webhook -- http://127.0.0.1:3000/api/whatsapp/webhook tests/fixtures/webhooks/01_text.json`.

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use wa_webhook::Webhook;

mod common;

/// Where Meta posts: any path of your router (this one is wa-ingress's default).
const WEBHOOK_PATH: &str = "/api/whatsapp/webhook";

/// Your service's router: its own routes, the webhook at its path, the probes for the rest.
async fn route(webhook: Webhook, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/hello" => Response::new(Full::new(Bytes::from_static(b"hello from your service\n"))),
        WEBHOOK_PATH => webhook.endpoint().handle(req).await,
        _ => webhook.probes().handle(req).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    common::exit("embed_hyper", run().await)
}

async fn run() -> anyhow::Result<()> {
    let webhook = common::webhook_from_env()?;
    let listener = common::listen().await?;
    eprintln!("listening on http://127.0.0.1:3000 (/hello, /api/whatsapp/webhook); Ctrl-C stops");

    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let stream = tokio::select! {
            _ = &mut ctrl_c => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    eprintln!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let webhook = webhook.clone();
        let service = service_fn(move |req| {
            let webhook = webhook.clone();
            async move { Ok::<_, Infallible>(route(webhook, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                eprintln!("connection closed with an error: {err}");
            }
        });
    }

    // Stop accepting, then give requests in flight (whose 200 means "in Redis") time to finish.
    drop(listener);
    eprintln!("stopping: finishing requests in flight");
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("requests still open after 10 s: closing them");
    }
    Ok(())
}
