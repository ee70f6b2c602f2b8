//! `wa-ingress`: verifies WhatsApp webhooks and enqueues them in Redis. Flags, logging, wiring;
//! the endpoint itself is `wa_webhook`.
//!
//! Exit codes: 0 after a graceful shutdown (SIGTERM/SIGINT), 64 for a configuration error,
//! 78 when Redis is configured to lose data (`--redis-check strict`), 1 when the listen
//! address cannot be bound.
//!
//! `cli` holds the flags, `config` turns them into the endpoint and its settings, `serve`
//! checks Redis, binds and serves.

mod cli;
mod config;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Args, usage_line};

/// EX_USAGE from sysexits.h.
pub(crate) const EX_USAGE: u8 = 64;
/// EX_CONFIG from sysexits.h: Redis is configured to lose data.
pub(crate) const EX_CONFIG: u8 = 78;

// The system allocator: mimalloc saved no measurable CPU per request here and tripled the
// peak RSS under load (docs/performance.md, "Ingress CPU per request", the allocator).

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", usage_line(&e));
            return ExitCode::from(EX_USAGE);
        }
    };
    init_logging(&args.log_format);
    let (webhook, tls) = match config::build(&args).and_then(|w| Ok((w, config::build_tls(&args)?)))
    {
        Ok(built) => built,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let mut runtime = match args.threads {
        // One thread by default, as wa-worker's: everything on the thread that accepts, with no
        // worker to hand tasks to and wake. On a machine the ingress shares with Redis that
        // spent about a fifth less CPU per request than two workers, for the same requests per
        // second (docs/performance.md, "Ingress CPU per request").
        None | Some(1) => tokio::runtime::Builder::new_current_thread(),
        // 0: one worker per CPU
        Some(0) => tokio::runtime::Builder::new_multi_thread(),
        Some(n) => {
            let mut pool = tokio::runtime::Builder::new_multi_thread();
            pool.worker_threads(n);
            pool
        }
    };
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve::run(&args, webhook, tls))
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal; files and log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
