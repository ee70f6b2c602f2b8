//! Posts a webhook body, signed with the app secret, to a running ingress and prints the answer.
//!
//! Run with:
//! `WHATSAPP_APP_SECRET=dev-app-secret cargo run --example send_webhook -- http://127.0.0.1:8080/api/whatsapp/webhook tests/fixtures/webhooks/01_text.json`
//!
//! Exits 0 when the ingress answers 200, 1 on any other answer, 69 when it cannot be reached.

use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

mod common;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: send_webhook URL FILE   (the secret comes from WHATSAPP_APP_SECRET)");
        return ExitCode::from(64);
    };
    let (body, signature) = match common::signed_file(&path) {
        Ok(signed) => signed,
        Err(code) => return code,
    };
    let request = match http::Request::post(url.as_str())
        .header("content-type", "application/json")
        .header(wa_signature::HEADER_NAME, signature)
        .body(Full::new(Bytes::from(body)))
    {
        Ok(request) => request,
        Err(err) => {
            eprintln!("bad URL {url}: {err}");
            return ExitCode::from(64);
        }
    };
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(err) => {
            eprintln!("cannot reach {url}: {err}");
            return ExitCode::from(69);
        }
    };
    let status = response.status();
    let text = match response.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    println!(
        "{} {}{}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        if text.is_empty() {
            String::new()
        } else {
            format!(" {text}")
        }
    );
    if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
