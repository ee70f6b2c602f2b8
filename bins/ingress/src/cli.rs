//! The flags (each with its environment variable) and the one-line usage errors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use wa_queue::ShardBy;
use wa_queue::cli::RedisArgs;
use wa_webhook::Accept;

/// Receives WhatsApp Cloud API webhooks, verifies them and enqueues one job per notification.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// App secret(s) for X-Hub-Signature-256; a comma-separated list verifies against any
    #[arg(long, env = "WHATSAPP_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// Token Meta's GET handshake must present
    #[arg(long, env = "WHATSAPP_VERIFY_TOKEN", hide_env_values = true)]
    pub verify_token: Option<String>,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Answer 200 only once this many replicas hold the jobs (WAIT after the enqueue), else 503
    #[arg(long, env = "WA_MIN_REPLICAS", default_value_t = 0)]
    pub min_replicas: u32,
    /// Address to listen on
    #[arg(long, env = "WA_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of the admin listener: when set, /healthz, /readyz and /metrics move there
    /// (and answer 404 on --listen)
    #[arg(long, env = "WA_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Path of the webhook
    #[arg(long, env = "WA_WEBHOOK_PATH", default_value = wa_webhook::DEFAULT_PATH)]
    pub path: String,
    /// Queue name
    #[arg(long, env = "WA_QUEUE", default_value = "whatsapp")]
    pub queue: String,
    /// Key prefix of the queue
    #[arg(long, env = "WA_PREFIX", default_value = "wa")]
    pub prefix: String,
    /// How a job's shard is chosen with --shards above 1: by its id (even spread) or by its
    /// sender (one sender's jobs in one shard, for wa-worker run --ordered)
    #[arg(long, env = "WA_SHARD_BY", default_value = "id", value_parser = ShardBy::NAMES)]
    pub shard_by: String,
    /// How long a dedup marker lives (Meta retries for 7 days)
    #[arg(long, env = "WA_DEDUP_TTL", default_value = "8d", value_parser = humantime::parse_duration)]
    pub dedup_ttl: Duration,
    /// Dedup window of events whose id is a content hash without an entry time (value-level
    /// errors): long enough for Meta's quick retries, short enough that a genuine repeat counts
    #[arg(long, env = "WA_EVENT_DEDUP_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub event_dedup_ttl: Duration,
    /// Kinds to enqueue: comma list of message, status, error, change, or all
    #[arg(long, env = "WA_ACCEPT", default_value = "all")]
    pub accept: Accept,
    /// Largest accepted body, in bytes
    #[arg(long, env = "WA_MAX_BODY", default_value_t = wa_webhook::DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Most parts of a body (entries, changes, contacts and notifications together); 413 past it
    #[arg(long, env = "WA_MAX_ITEMS", default_value_t = wa_webhook::DEFAULT_MAX_ITEMS)]
    pub max_items: usize,
    /// Body bytes all requests may hold at once; past it new requests get 503
    #[arg(long, env = "WA_MAX_BUFFERED", default_value_t = 256 * 1024 * 1024)]
    pub max_buffered: usize,
    /// Longest wait for Redis before answering 503
    #[arg(long, env = "WA_ENQUEUE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub enqueue_timeout: Duration,
    /// Connections open at once
    #[arg(long, env = "WA_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Longest time a client may take to send request headers (and stay idle between requests)
    #[arg(long, env = "WA_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Longest time for a request body to arrive (408 past it)
    #[arg(long, env = "WA_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// How long in-flight requests may take after SIGTERM
    #[arg(long, env = "WA_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// PEM certificate chain, the server's certificate first: serve HTTPS (with --tls-key);
    /// re-read on SIGHUP and when it changes
    #[arg(long, env = "WA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "WA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of the CAs a client certificate must chain to: require one (mutual TLS,
    /// with --tls-cert)
    #[arg(long, env = "WA_MTLS_CA", requires = "tls_cert")]
    pub mtls_ca: Option<PathBuf>,
    /// Name the client certificate must carry as subject CN or DNS SAN (with --mtls-ca)
    #[arg(long, env = "WA_MTLS_SUBJECT", default_value = wa_webhook::META_CLIENT_SUBJECT)]
    pub mtls_subject: String,
    /// Runtime threads: 1 (the default) runs everything on one thread; N > 1 a pool of N
    /// workers; 0 one worker per CPU
    #[arg(long, env = "WA_THREADS")]
    pub threads: Option<usize>,
    /// Log format
    #[arg(long, env = "WA_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// clap's first error line, plus the environment variable behind the flag it names.
pub fn usage_line(e: &clap::Error) -> String {
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
