//! `wa-ingress`: verifies WhatsApp webhooks and enqueues them in Redis. Flags, logging, wiring;
//! the endpoint itself is `wa_webhook`.
//!
//! Exit codes: 0 after a graceful shutdown (SIGTERM/SIGINT), 64 for a configuration error,
//! 78 when Redis is configured to lose data (`--redis-check strict`), 1 when the listen
//! address cannot be bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use wa_queue::cli::RedisArgs;
use wa_queue::{QueueError, ShardBy};
use wa_webhook::{
    Accept, Challenge, ClientAuth, Config, Producer, ServeOptions, Tls, TlsFile, TlsOptions,
    Verifier, Webhook, WebhookError,
};

/// Receives WhatsApp Cloud API webhooks, verifies them and enqueues one job per notification.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// App secret(s) for X-Hub-Signature-256; a comma-separated list verifies against any
    #[arg(long, env = "WHATSAPP_APP_SECRET", hide_env_values = true)]
    app_secret: Option<String>,
    /// Token Meta's GET handshake must present
    #[arg(long, env = "WHATSAPP_VERIFY_TOKEN", hide_env_values = true)]
    verify_token: Option<String>,
    #[command(flatten)]
    redis: RedisArgs,
    /// Answer 200 only once this many replicas hold the jobs (WAIT after the enqueue), else 503
    #[arg(long, env = "WA_MIN_REPLICAS", default_value_t = 0)]
    min_replicas: u32,
    /// Address to listen on
    #[arg(long, env = "WA_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of the admin listener: when set, /healthz, /readyz and /metrics move there
    /// (and answer 404 on --listen)
    #[arg(long, env = "WA_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Path of the webhook
    #[arg(long, env = "WA_WEBHOOK_PATH", default_value = wa_webhook::DEFAULT_PATH)]
    path: String,
    /// Queue name
    #[arg(long, env = "WA_QUEUE", default_value = "whatsapp")]
    queue: String,
    /// Key prefix of the queue
    #[arg(long, env = "WA_PREFIX", default_value = "wa")]
    prefix: String,
    /// How a job's shard is chosen with --shards above 1: by its id (even spread) or by its
    /// sender (one sender's jobs in one shard, for wa-worker run --ordered)
    #[arg(long, env = "WA_SHARD_BY", default_value = "id", value_parser = ShardBy::NAMES)]
    shard_by: String,
    /// How long a dedup marker lives (Meta retries for 7 days)
    #[arg(long, env = "WA_DEDUP_TTL", default_value = "8d", value_parser = humantime::parse_duration)]
    dedup_ttl: Duration,
    /// Dedup window of events whose id is a content hash without an entry time (value-level
    /// errors): long enough for Meta's quick retries, short enough that a genuine repeat counts
    #[arg(long, env = "WA_EVENT_DEDUP_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    event_dedup_ttl: Duration,
    /// Kinds to enqueue: comma list of message, status, error, change, or all
    #[arg(long, env = "WA_ACCEPT", default_value = "all")]
    accept: Accept,
    /// Largest accepted body, in bytes
    #[arg(long, env = "WA_MAX_BODY", default_value_t = wa_webhook::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Most parts of a body (entries, changes, contacts and notifications together); 413 past it
    #[arg(long, env = "WA_MAX_ITEMS", default_value_t = wa_webhook::DEFAULT_MAX_ITEMS)]
    max_items: usize,
    /// Body bytes all requests may hold at once; past it new requests get 503
    #[arg(long, env = "WA_MAX_BUFFERED", default_value_t = 256 * 1024 * 1024)]
    max_buffered: usize,
    /// Longest wait for Redis before answering 503
    #[arg(long, env = "WA_ENQUEUE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    enqueue_timeout: Duration,
    /// Connections open at once
    #[arg(long, env = "WA_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Longest time a client may take to send request headers (and stay idle between requests)
    #[arg(long, env = "WA_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// Longest time for a request body to arrive (408 past it)
    #[arg(long, env = "WA_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// How long in-flight requests may take after SIGTERM
    #[arg(long, env = "WA_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// PEM certificate chain, the server's certificate first: serve HTTPS (with --tls-key);
    /// re-read on SIGHUP and when it changes
    #[arg(long, env = "WA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "WA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM bundle of the CAs a client certificate must chain to: require one (mutual TLS,
    /// with --tls-cert)
    #[arg(long, env = "WA_MTLS_CA", requires = "tls_cert")]
    mtls_ca: Option<PathBuf>,
    /// Name the client certificate must carry as subject CN or DNS SAN (with --mtls-ca)
    #[arg(long, env = "WA_MTLS_SUBJECT", default_value = wa_webhook::META_CLIENT_SUBJECT)]
    mtls_subject: String,
    /// Runtime worker threads (default: one per CPU)
    #[arg(long, env = "WA_THREADS")]
    threads: Option<usize>,
    /// Log format
    #[arg(long, env = "WA_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// EX_USAGE from sysexits.h.
const EX_USAGE: u8 = 64;
/// EX_CONFIG from sysexits.h: Redis is configured to lose data.
const EX_CONFIG: u8 = 78;

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
    let (webhook, tls) = match build(&args).and_then(|w| Ok((w, build_tls(&args)?))) {
        Ok(built) => built,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads.filter(|n| *n > 0) {
        runtime.worker_threads(n);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let producer = webhook.producer();
        let check = producer.watch_config(args.redis.check(), args.redis.redis_check_interval);
        if let Err(QueueError::LosesData(line)) = check.await {
            eprintln!("error: {line} (or start with --redis-check warn)");
            return ExitCode::from(EX_CONFIG);
        }
        match producer.check_shards().await {
            Err(e @ QueueError::ShardCount { .. }) => {
                eprintln!("error: --shards/WA_SHARDS: {e}");
                return ExitCode::from(EX_USAGE);
            }
            // Redis unreachable now: every enqueue checks before its first write.
            Err(e) => tracing::warn!(error = %e, "could not compare the shard count with Redis's record yet"),
            Ok(()) => {}
        }
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: WA_LISTEN (--listen) {}: cannot bind: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        let addr = listener.local_addr().unwrap_or(args.listen);
        let mut server = wa_webhook::Server::new(listener).options(serve_options(&args));
        if let Some(admin) = args.admin_listen {
            let listener = match tokio::net::TcpListener::bind(admin).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: WA_ADMIN_LISTEN (--admin-listen) {admin}: cannot bind: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let admin = listener.local_addr().unwrap_or(admin);
            tracing::info!(%admin, "wa-ingress admin listening");
            server = server.admin(listener);
        }
        let scheme = match &tls {
            None => "http",
            Some(tls) if tls.requires_client_certificate() => "https+mtls",
            Some(_) => "https",
        };
        if let Some(tls) = tls {
            if tls.requires_client_certificate() && args.admin_listen.is_none() {
                tracing::warn!(
                    "mutual TLS is on and WA_ADMIN_LISTEN (--admin-listen) is not set: /healthz, \
                     /readyz and /metrics answer only clients with the required certificate; \
                     set an admin listener for probes and scrapes"
                );
            }
            match tls.reload_on_hangup() {
                Ok(reloading) => drop(tokio::spawn(reloading)),
                Err(e) => tracing::warn!(error = %e, "cannot watch SIGHUP; TLS files are still reloaded when they change"),
            }
            server = server.tls(tls);
        }
        tracing::info!(%addr, scheme, path = %args.path, queue = %args.queue, accept = %args.accept, "wa-ingress listening");
        server.serve(webhook, shutdown_signal()).await;
        tracing::info!("wa-ingress stopped");
        ExitCode::SUCCESS
    })
}

/// Turns the flags into an endpoint; the error names the variable to fix (never its value).
fn build(args: &Args) -> Result<Webhook, String> {
    let secret = args.app_secret.as_deref().unwrap_or("");
    let verifier = Verifier::from_list(secret).map_err(|e| {
        format!("WHATSAPP_APP_SECRET (--app-secret) is required and must not be empty: {e}")
    })?;
    let token = args.verify_token.as_deref().unwrap_or("");
    let challenge = Challenge::new(token).map_err(|e| {
        format!("WHATSAPP_VERIFY_TOKEN (--verify-token) is required and must not be empty: {e}")
    })?;
    if !args.path.starts_with('/') {
        return Err("WA_WEBHOOK_PATH (--path) must start with '/'".into());
    }
    if args.max_body == 0 {
        return Err("WA_MAX_BODY (--max-body) must be at least 1".into());
    }
    if args.max_items == 0 {
        return Err("WA_MAX_ITEMS (--max-items) must be at least 1".into());
    }
    if args.event_dedup_ttl.as_secs() == 0 {
        return Err("WA_EVENT_DEDUP_TTL (--event-dedup-ttl) must be at least 1s".into());
    }
    let queue = args.redis.queue(&args.prefix, &args.queue)?;
    let mut config = Config::default();
    config.path.clone_from(&args.path);
    config.max_body = args.max_body;
    config.max_buffered = args.max_buffered;
    config.max_items = args.max_items;
    config.enqueue_timeout = args.enqueue_timeout;
    config.accept = args.accept;
    config.event_dedup_ttl = args.event_dedup_ttl;
    config.request_timeout = args.request_timeout;
    let mut options = config.producer_options();
    options.shard_by = args
        .shard_by
        .parse()
        .map_err(|e| format!("--shard-by/WA_SHARD_BY: {e}"))?;
    options.dedup_ttl = args.dedup_ttl;
    options.min_replicas = args.min_replicas;
    let redis = args.redis.options()?;
    // Does not connect: a Redis that is down now only makes /readyz and POSTs answer 503.
    let producer = Producer::new(redis, queue, options).map_err(|e| format!("REDIS_URL: {e}"))?;
    Ok(Webhook::new(config, verifier, challenge, producer))
}

/// The listeners' settings from the flags.
fn serve_options(args: &Args) -> ServeOptions {
    let mut options = ServeOptions::default();
    options.max_connections = args.max_connections;
    options.header_read_timeout = args.header_timeout;
    options.shutdown_grace = args.shutdown_grace;
    options
}

/// The HTTPS settings, loaded and checked now: `None` without `--tls-cert`. The error names
/// the variable whose file is wrong.
fn build_tls(args: &Args) -> Result<Option<Tls>, String> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None); // clap requires both or neither
    };
    let mut options = TlsOptions::new(cert, key);
    options.client_auth = args
        .mtls_ca
        .as_ref()
        .map(|ca| ClientAuth::new(ca, args.mtls_subject.trim()));
    Tls::load(options).map(Some).map_err(|e| {
        let var = match &e {
            WebhookError::TlsFile {
                file: TlsFile::Key, ..
            } => "WA_TLS_KEY (--tls-key)",
            WebhookError::EmptyClientSubject => "WA_MTLS_SUBJECT (--mtls-subject)",
            WebhookError::TlsFile {
                file: TlsFile::ClientCa,
                ..
            } => "WA_MTLS_CA (--mtls-ca)",
            _ => "WA_TLS_CERT (--tls-cert)",
        };
        // `{:#}` prints the causes too, on one line.
        format!("{var}: {:#}", anyhow::Error::from(e))
    })
}

/// clap's first error line, plus the environment variable behind the flag it names.
fn usage_line(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let text = e.to_string();
    let mut line = text
        .lines()
        .next()
        .unwrap_or("error: invalid arguments")
        .to_owned();
    let args = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => vec![arg.as_str()],
        // A missing argument (`--tls-cert` without `--tls-key`): the error's first line does
        // not name it, so name it here.
        Some(ContextValue::Strings(args)) => {
            for arg in args {
                line.push_str(&format!(" {arg}"));
            }
            args.iter().map(String::as_str).collect()
        }
        _ => Vec::new(),
    };
    let command = <Args as clap::CommandFactory>::command();
    for arg in args {
        let long = arg
            .trim_start_matches('-')
            .split([' ', '='])
            .next()
            .unwrap_or("");
        let env = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env());
        if let Some(env) = env {
            line.push_str(&format!(
                " (environment variable {})",
                env.to_string_lossy()
            ));
        }
    }
    line
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
async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The flag definitions pass clap's own consistency checks.
    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
    }

    /// Every flag also reads an environment variable, and the secrets' values are hidden.
    #[test]
    fn every_flag_has_an_env() {
        let command = Args::command();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let env = arg.get_env().unwrap_or_else(|| panic!("--{id} has no env"));
            let env = env.to_string_lossy();
            if [
                "WHATSAPP_APP_SECRET",
                "WHATSAPP_VERIFY_TOKEN",
                "REDIS_URL",
                "WA_REDIS_SENTINEL_PASSWORD",
            ]
            .contains(&env.as_ref())
            {
                assert!(arg.is_hide_env_values_set(), "{env} shows its value");
            }
        }
    }
}
