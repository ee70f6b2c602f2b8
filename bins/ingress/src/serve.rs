//! Start-up checks against Redis, the listeners and TLS, then serving until a signal.

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::TcpListener;
use wa_queue::QueueError;
use wa_webhook::{Producer, Server, Tls, Webhook};

use crate::cli::Args;
use crate::config::serve_options;
use crate::{EX_CONFIG, EX_USAGE, shutdown_signal};

/// Checks Redis's configuration and the shard count, binds the listeners and serves `webhook`
/// until SIGINT or SIGTERM; the exit code says how it ended.
pub async fn run(args: &Args, webhook: Webhook, tls: Option<Tls>) -> ExitCode {
    if let Err(code) = check_redis(args, webhook.producer()).await {
        return code;
    }
    let (server, addr) = match listen(args).await {
        Ok(bound) => bound,
        Err(code) => return code,
    };
    let scheme = match &tls {
        None => "http",
        Some(tls) if tls.requires_client_certificate() => "https+mtls",
        Some(_) => "https",
    };
    let server = match tls {
        Some(tls) => with_tls(args, server, tls),
        None => server,
    };
    tracing::info!(%addr, scheme, path = %args.path, queue = %args.queue, accept = %args.accept, "wa-ingress listening");
    server.serve(webhook, shutdown_signal()).await;
    tracing::info!("wa-ingress stopped");
    ExitCode::SUCCESS
}

/// Refuses to start on a Redis that would lose jobs (`--redis-check strict`) or that recorded
/// another shard count; a Redis that is down now is only warned about.
async fn check_redis(args: &Args, producer: &Producer) -> Result<(), ExitCode> {
    let check = producer.watch_config(args.redis.check(), args.redis.redis_check_interval);
    if let Err(QueueError::LosesData(line)) = check.await {
        eprintln!("error: {line} (or start with --redis-check warn)");
        return Err(ExitCode::from(EX_CONFIG));
    }
    // Until this look is over the enqueue script also looks for the dedup markers of v0.1.0
    // (seen:<id> keys); a look that fails now is done again at the next start.
    let retire = producer.clone();
    tokio::spawn(async move {
        match retire.retire_old_markers().await {
            Ok(()) => tracing::debug!("looked through Redis for v0.1.0 dedup markers"),
            Err(e) => {
                tracing::warn!(error = %e, "could not look through Redis for v0.1.0 dedup markers")
            }
        }
    });
    match producer.check_shards().await {
        Err(e @ QueueError::ShardCount { .. }) => {
            eprintln!("error: --shards/WA_SHARDS: {e}");
            Err(ExitCode::from(EX_USAGE))
        }
        // Redis unreachable now: every enqueue checks before its first write.
        Err(e) => {
            tracing::warn!(error = %e, "could not compare the shard count with Redis's record yet");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// The server on `--listen`, and on `--admin-listen` when set; the address it listens on.
async fn listen(args: &Args) -> Result<(Server, SocketAddr), ExitCode> {
    let listener = bind(args.listen, "WA_LISTEN (--listen)").await?;
    let addr = listener.local_addr().unwrap_or(args.listen);
    let mut server = Server::new(listener).options(serve_options(args));
    if let Some(admin) = args.admin_listen {
        let listener = bind(admin, "WA_ADMIN_LISTEN (--admin-listen)").await?;
        let admin = listener.local_addr().unwrap_or(admin);
        tracing::info!(%admin, "wa-ingress admin listening");
        server = server.admin(listener);
    }
    Ok((server, addr))
}

async fn bind(addr: SocketAddr, var: &str) -> Result<TcpListener, ExitCode> {
    TcpListener::bind(addr).await.map_err(|e| {
        eprintln!("error: {var} {addr}: cannot bind: {e}");
        ExitCode::FAILURE
    })
}

/// HTTPS on the server, its files reloaded on SIGHUP as well as when they change.
fn with_tls(args: &Args, server: Server, tls: Tls) -> Server {
    if tls.requires_client_certificate() && args.admin_listen.is_none() {
        tracing::warn!(
            "mutual TLS is on and WA_ADMIN_LISTEN (--admin-listen) is not set: /healthz, \
             /readyz and /metrics answer only clients with the required certificate; \
             set an admin listener for probes and scrapes"
        );
    }
    match tls.reload_on_hangup() {
        Ok(reloading) => drop(tokio::spawn(reloading)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; TLS files are still reloaded when they change")
        }
    }
    server.tls(tls)
}
