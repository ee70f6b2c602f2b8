//! The Redis flags of `wa-ingress` and `wa-worker` (feature `cli`), so both read them the
//! same way: where Redis is (`REDIS_URL`, Sentinel or a Redis Cluster), TLS material, and the configuration
//! check, and the queue's shard count. Flatten [`RedisArgs`] into a clap parser and call [`RedisArgs::options`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{CheckMode, QueueError, QueueName, RedisOptions};

/// The Redis flags. Every one also reads an environment variable; the values of those that
/// may hold a secret are hidden from `--help`, and `Debug` prints none of them.
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Redis")]
pub struct RedisArgs {
    /// Redis URL: redis:// or rediss:// (TLS), with user, password and database. With
    /// --redis-sentinel only its scheme, user, password and database are used (never logged)
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true,
        hide_default_value = true,
        global = true
    )]
    pub redis_url: String,
    /// PEM file of the CA that signed Redis's certificate (instead of the system's roots)
    #[arg(long, env = "WA_REDIS_CA_CERT", value_name = "PEM", global = true)]
    pub redis_ca_cert: Option<PathBuf>,
    /// PEM file of a client certificate, for a Redis with tls-auth-clients yes
    #[arg(
        long,
        env = "WA_REDIS_CLIENT_CERT",
        value_name = "PEM",
        requires = "redis_client_key",
        global = true
    )]
    pub redis_client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key
    #[arg(
        long,
        env = "WA_REDIS_CLIENT_KEY",
        value_name = "PEM",
        requires = "redis_client_cert",
        global = true
    )]
    pub redis_client_key: Option<PathBuf>,
    /// Find the master through these sentinels: host:port,host:port,...
    #[arg(
        long,
        env = "WA_REDIS_SENTINEL",
        value_name = "HOST:PORT,...",
        requires = "redis_master",
        global = true
    )]
    pub redis_sentinel: Option<String>,
    /// The master's name in Sentinel
    #[arg(
        long,
        env = "WA_REDIS_MASTER",
        value_name = "NAME",
        requires = "redis_sentinel",
        global = true
    )]
    pub redis_master: Option<String>,
    /// Use a Redis Cluster found through these seed nodes: host:port,host:port,... (REDIS_URL
    /// then lends only its scheme, user and password)
    #[arg(
        long,
        env = "WA_REDIS_CLUSTER",
        value_name = "HOST:PORT,...",
        conflicts_with = "redis_sentinel",
        global = true
    )]
    pub redis_cluster: Option<String>,
    /// The sentinels' own password (requirepass in sentinel.conf), if they have one
    #[arg(
        long,
        env = "WA_REDIS_SENTINEL_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub redis_sentinel_password: Option<String>,
    /// Spread the queue over this many shards (hash tags {<queue>:s}, one slot each, spread
    /// over a cluster's masters); 1 keeps the single-slot layout. Every producer and consumer
    /// of a queue must use the same count: another refuses to start (exit 64)
    #[arg(long, env = "WA_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=i64::from(crate::MAX_SHARDS)), global = true)]
    pub shards: u16,
    /// Redis's maxmemory-policy must be noeviction: strict refuses to start (exit 78) and
    /// reports not ready if it changes; warn only warns; off does not look
    #[arg(long, env = "WA_REDIS_CHECK", default_value = "strict", value_parser = ["strict", "warn", "off"], global = true)]
    pub redis_check: String,
    /// How often the Redis configuration is checked again
    #[arg(long, env = "WA_REDIS_CHECK_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration, hide = true, global = true)]
    pub redis_check_interval: Duration,
}

impl std::fmt::Debug for RedisArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisArgs")
            .field("redis_url", &"<redacted>")
            .field("redis_ca_cert", &self.redis_ca_cert)
            .field("redis_client_cert", &self.redis_client_cert)
            .field("redis_client_key", &self.redis_client_key)
            .field("redis_sentinel", &self.redis_sentinel)
            .field("redis_master", &self.redis_master)
            .field("redis_cluster", &self.redis_cluster)
            .field(
                "redis_sentinel_password",
                &self.redis_sentinel_password.as_ref().map(|_| "<redacted>"),
            )
            .field("shards", &self.shards)
            .field("redis_check", &self.redis_check)
            .finish()
    }
}

impl RedisArgs {
    /// The connection options; the error names the flag and variable to fix (never a value
    /// that may be secret).
    pub fn options(&self) -> Result<RedisOptions, String> {
        let mut opts =
            RedisOptions::new(&self.redis_url).map_err(named("redis-url", "REDIS_URL"))?;
        if let (Some(sentinels), Some(master)) = (&self.redis_sentinel, &self.redis_master) {
            opts = opts
                .sentinel(sentinels, master, self.redis_sentinel_password.as_deref())
                .map_err(named("redis-sentinel", "WA_REDIS_SENTINEL"))?;
        }
        if let Some(seeds) = &self.redis_cluster {
            opts = opts
                .cluster(seeds)
                .map_err(named("redis-cluster", "WA_REDIS_CLUSTER"))?;
        }
        if let Some(path) = &self.redis_ca_cert {
            let pem = read(path, "redis-ca-cert", "WA_REDIS_CA_CERT")?;
            opts = opts
                .ca_pem(pem)
                .map_err(named("redis-ca-cert", "WA_REDIS_CA_CERT"))?;
        }
        if let (Some(cert), Some(key)) = (&self.redis_client_cert, &self.redis_client_key) {
            let cert = read(cert, "redis-client-cert", "WA_REDIS_CLIENT_CERT")?;
            let key = read(key, "redis-client-key", "WA_REDIS_CLIENT_KEY")?;
            opts = opts
                .client_pem(cert, key)
                .map_err(named("redis-client-cert", "WA_REDIS_CLIENT_CERT"))?;
        }
        Ok(opts)
    }

    /// The queue `<prefix>:{<name>}` with `--shards` shards; the error names the flags to fix.
    pub fn queue(&self, prefix: &str, name: &str) -> Result<QueueName, String> {
        QueueName::with_prefix(prefix, name)
            .map_err(|e| format!("--queue/WA_QUEUE or --prefix/WA_PREFIX: {e}"))?
            .with_shards(self.shards)
            .map_err(named("shards", "WA_SHARDS"))
    }

    /// The `--redis-check` mode.
    pub fn check(&self) -> CheckMode {
        self.redis_check.parse().unwrap_or_default()
    }
}

/// Prefixes an error with the flag and variable it came from.
fn named(flag: &'static str, env: &'static str) -> impl Fn(QueueError) -> String {
    move |e| format!("--{flag}/{env}: {e}")
}

fn read(path: &Path, flag: &str, env: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("--{flag}/{env}: cannot read {}: {e}", path.display()))
}
