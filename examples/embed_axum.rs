//! The webhook endpoint inside an axum application, next to its own routes:
//! [`Webhook::endpoint`](wa_webhook::Webhook::endpoint) mounts with `route_service` at the path
//! you give Meta (it answers on whatever path it is mounted at) and
//! [`Webhook::probes`](wa_webhook::Webhook::probes) with `nest_service` under a prefix of your
//! choice. Ctrl-C stops accepting and lets requests in flight finish.
//!
//! Run with:
//! `WHATSAPP_APP_SECRET=dev-app-secret WHATSAPP_VERIFY_TOKEN=dev-verify-token cargo run --example embed_axum`
//!
//! It listens on 127.0.0.1:3000 and enqueues to Redis at `REDIS_URL` (default
//! `redis://127.0.0.1:6379`), queue `WA_QUEUE` (default `whatsapp`). Then try
//! `curl http://127.0.0.1:3000/hello`, `curl http://127.0.0.1:3000/wa/readyz`, and post a signed
//! fixture with
//! `WHATSAPP_APP_SECRET=dev-app-secret cargo run --example send_webhook -- http://127.0.0.1:3000/api/whatsapp/webhook tests/fixtures/webhooks/01_text.json`.

use std::process::ExitCode;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use wa_webhook::Webhook;

mod common;

/// Where Meta posts: any path of your router (this one is wa-ingress's default).
const WEBHOOK_PATH: &str = "/api/whatsapp/webhook";

/// Your application's routes, with the webhook mounted among them.
fn app(webhook: &Webhook) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello from your service\n" }))
        // GET (handshake) and POST (notifications); 405 with `Allow` for any other method.
        .route_service(WEBHOOK_PATH, webhook.endpoint())
        // /wa/healthz, /wa/readyz, /wa/metrics; one set of counters for both services.
        .nest_service("/wa", webhook.probes())
}

#[tokio::main]
async fn main() -> ExitCode {
    common::exit("embed_axum", run().await)
}

async fn run() -> anyhow::Result<()> {
    let webhook = common::webhook_from_env()?;
    let listener = common::listen().await?;
    eprintln!("listening on http://127.0.0.1:3000 (/hello, /api/whatsapp/webhook, /wa/metrics)");

    axum::serve(listener, app(&webhook))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping: finishing requests in flight");
        })
        .await
        .context("server failed")?;
    Ok(())
}
