//! Signs a file the way Meta signs a webhook and prints the `X-Hub-Signature-256` header, plus a
//! curl line that posts the file to a running ingress.
//!
//! Run with:
//! `WHATSAPP_APP_SECRET=dev-app-secret cargo run --example sign_payload -- tests/fixtures/webhooks/01_text.json`
//!
//! The signature covers the file's bytes exactly as they are on disk: send it with
//! `--data-binary @FILE` (curl's `-d` would strip newlines and break it).

use std::process::ExitCode;

mod common;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: sign_payload FILE   (the secret comes from WHATSAPP_APP_SECRET)");
        return ExitCode::from(64);
    };
    let header = match common::signed_file(&path) {
        Ok((_, header)) => header,
        Err(code) => return code,
    };
    println!("X-Hub-Signature-256: {header}");
    println!();
    println!(
        "curl -i -X POST http://127.0.0.1:8080/api/whatsapp/webhook \\\n  \
         -H 'Content-Type: application/json' \\\n  \
         -H 'X-Hub-Signature-256: {header}' \\\n  \
         --data-binary @{path}"
    );
    ExitCode::SUCCESS
}
