//! What the examples share, so that each one reads as what it shows: the endpoint configured
//! from the variables wa-ingress reads, a file signed with the app secret, and `main`'s exit
//! with the error's whole chain. Each example uses a part of it.

#![allow(dead_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use wa_webhook::{Challenge, Config, Producer, QueueName, Verifier, Webhook};

/// The endpoint, configured from the same variables as wa-ingress: `WHATSAPP_APP_SECRET`,
/// `WHATSAPP_VERIFY_TOKEN`, `REDIS_URL` (default `redis://127.0.0.1:6379`) and `WA_QUEUE`
/// (default `whatsapp`).
pub fn webhook_from_env() -> anyhow::Result<Webhook> {
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

/// Where the embedding examples listen.
pub const LISTEN: &str = "127.0.0.1:3000";

/// A listener on [`LISTEN`].
pub async fn listen() -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(LISTEN)
        .await
        .with_context(|| format!("cannot listen on {LISTEN}"))
}

/// The bytes of the file at `path` and the `X-Hub-Signature-256` value Meta would send with
/// them, signed with `WHATSAPP_APP_SECRET`; or, having said why, the exit code: 64 without
/// the secret, 66 when the file cannot be read.
pub fn signed_file(path: &str) -> Result<(Vec<u8>, String), ExitCode> {
    let Ok(secret) = std::env::var("WHATSAPP_APP_SECRET") else {
        eprintln!("set WHATSAPP_APP_SECRET to the app secret to sign with");
        return Err(ExitCode::from(64));
    };
    let body = match std::fs::read(path) {
        Ok(body) => body,
        Err(err) => {
            eprintln!("cannot read {path}: {err}");
            return Err(ExitCode::from(66));
        }
    };
    let signature = wa_signature::sign(secret.as_bytes(), &body);
    Ok((body, signature))
}

/// `main`'s exit: success, or failure after printing the error with its causes on one line
/// (`{:#}`: "cannot reach Redis (REDIS_URL): ...").
pub fn exit(example: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{example}: {err:#}");
            ExitCode::FAILURE
        }
    }
}
