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
use wa_webhook::{Challenge, Config, Producer, QueueName, Verifier, Webhook};

/// Where Meta posts: any path of your router (this one is wa-ingress's default).
const WEBHOOK_PATH: &str = "/api/whatsapp/webhook";

/// The endpoint, configured from the same variables as wa-ingress.
fn webhook_from_env() -> anyhow::Result<Webhook> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("set {name}"));
    let secrets = var("WHATSAPP_APP_SECRET")?;
    let token = var("WHATSAPP_VERIFY_TOKEN")?;
    let redis_url = var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let queue = var("WA_QUEUE").unwrap_or_else(|_| "whatsapp".to_owned());

    let config = Config::default();
    let queue = QueueName::new(queue).context("WA_QUEUE")?;
    let producer =
        Producer::new(&redis_url, queue, config.producer_options()).context("REDIS_URL")?;
    let verifier = Verifier::from_list(&secrets).context("WHATSAPP_APP_SECRET")?;
    let challenge = Challenge::new(&token).context("WHATSAPP_VERIFY_TOKEN")?;
    Ok(Webhook::new(config, verifier, challenge, producer))
}

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
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}`: the whole chain on one line ("cannot reach Redis (REDIS_URL): ...").
            eprintln!("embed_axum: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let webhook = webhook_from_env()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await
        .context("cannot listen on 127.0.0.1:3000")?;
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
