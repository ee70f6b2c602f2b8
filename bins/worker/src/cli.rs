//! The command line. Every flag also reads an environment variable, so the worker can be
//! configured entirely from its environment (containers, systemd units).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Takes WhatsApp webhook jobs off the Redis queue and runs a handler on each.
#[derive(Debug, Parser)]
#[command(name = "wa-worker", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags every subcommand shares (listed after a subcommand's own in its help).
#[derive(Debug, Args)]
#[command(next_display_order = 100)]
pub struct Global {
    #[command(flatten)]
    pub redis: wa_queue::cli::RedisArgs,
    /// Queue name
    #[arg(long, env = "WA_QUEUE", default_value = "whatsapp", global = true)]
    pub queue: String,
    /// Key prefix: keys are <prefix>:{<queue>}:...
    #[arg(long, env = "WA_PREFIX", default_value = "wa", global = true)]
    pub prefix: String,
    /// Threads running the worker (the stdout writer has its own); 1 is usually fastest
    #[arg(long, env = "WA_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256), global = true)]
    pub threads: u16,
    /// Log format on stderr (the level comes from RUST_LOG, default info)
    #[arg(long, env = "WA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a handler over the queue until SIGTERM/SIGINT (the default)
    Run(Box<RunArgs>),
    /// Queue depths and consumers
    Stats(StatsArgs),
    /// Dead letters: list, show, replay, purge
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Serve the queue's web dashboard (overview, consumers, dead letters and actions)
    Dashboard(DashboardArgs),
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to serve the dashboard on; anything but loopback needs --token
    #[arg(long, env = "WA_DASHBOARD_LISTEN", default_value = "127.0.0.1:9100")]
    pub listen: SocketAddr,
    /// Token to log in with (login form, or `Authorization: Bearer <token>`)
    #[arg(long, env = "WA_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub handler: HandlerArgs,
    /// A variable of the worker's environment to pass on to --exec handlers (repeatable; the
    /// environment variable takes a comma-separated list)
    #[arg(long, env = "WA_EXEC_ENV", value_name = "NAME", value_delimiter = ',')]
    pub exec_env: Vec<String>,
    /// Signs forwarded jobs with Standard Webhooks headers (webhook-id, webhook-timestamp,
    /// webhook-signature): `whsec_<base64>` (or a plain string, used as its bytes); a
    /// comma-separated list signs with each (rotation)
    #[arg(long, env = "WA_FORWARD_SECRET", hide_env_values = true)]
    pub forward_secret: Option<Secret>,
    /// PEM file of CA certificates trusted for an https:// --forward URL, besides the
    /// platform's roots (a private CA)
    #[arg(long, env = "WA_FORWARD_CA_CERT", value_name = "PEM")]
    pub forward_ca_cert: Option<std::path::PathBuf>,
    /// Handlers running at once [default: 1024 for --stdout/--discard, 64 for --forward, 16 for
    /// --exec]
    #[arg(long, env = "WA_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: Option<u32>,
    /// Deliveries before a failing job goes to dead
    #[arg(long, env = "WA_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Consumer lease: a worker silent this long is presumed dead and its jobs go back to pending
    #[arg(long, env = "WA_LEASE", default_value = "30s", value_parser = lease)]
    pub lease: Duration,
    /// A handler running longer than this is stopped and the job retried
    #[arg(long, env = "WA_HANDLER_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub handler_timeout: Duration,
    /// On SIGTERM/SIGINT, how long running handlers may still take
    #[arg(long, env = "WA_SHUTDOWN_GRACE", default_value = "30s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// Jobs moved from pending per Redis round trip at most (never more than free handler slots)
    #[arg(long, env = "WA_BATCH", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch: u32,
    /// Redis calls on the wire at once (each through its own consumer id and processing
    /// list): with 2, one call travels while the jobs of the other are handled
    #[arg(long, env = "WA_LANES", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub lanes: u8,
    /// In order per sender: one job of a sender at a time, in the order they reached the
    /// queue; a retrying job holds the sender's later jobs back until it is done or dead.
    /// Every worker of the queue must run with it; with --shards above 1 the ingress must
    /// route with --shard-by sender
    #[arg(long, env = "WA_ORDERED")]
    pub ordered: bool,
    /// First retry delay; doubles per attempt, with jitter
    #[arg(long, env = "WA_BACKOFF_BASE", default_value = "1s", value_parser = duration)]
    pub backoff_base: Duration,
    /// Longest retry delay
    #[arg(long, env = "WA_BACKOFF_MAX", default_value = "10m", value_parser = duration)]
    pub backoff_max: Duration,
    /// How long one fetch waits for work when the queue is empty
    #[arg(long, env = "WA_BLOCK", default_value = "2s", value_parser = duration, hide = true)]
    pub block: Duration,
    /// Serve Prometheus metrics at /metrics and liveness at /healthz on this address
    #[arg(long, env = "WA_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// How long a metrics connection may take to send its request head before it is closed
    #[arg(long, env = "WA_METRICS_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub metrics_header_timeout: Duration,
}

/// The handler: exactly one; `--stdout` when none is given.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct HandlerArgs {
    /// Write each job as one JSON line on standard output (the default)
    #[arg(long)]
    pub stdout: bool,
    /// Run this command per job, in a process group of its own: job JSON on stdin; a clean
    /// environment of PATH, HOME, LANG, WA_JOB_ID, WA_JOB_KIND, WA_ATTEMPT and the --exec-env
    /// names; exit 0 = done, 65 = dead, anything else = retry. Split on whitespace with '…',
    /// "…" and \ quoting; no shell is involved (use `sh -c '…'` for one)
    #[arg(long, env = "WA_EXEC", value_name = "CMD ARGS")]
    pub exec: Option<String>,
    /// POST each job's JSON to this http:// or https:// URL; 2xx = done; 408, 429, 5xx,
    /// connection errors and timeouts = retry (429/503 after their Retry-After); other 4xx =
    /// dead
    #[arg(long, env = "WA_FORWARD_URL", value_name = "URL")]
    pub forward: Option<String>,
    /// Acknowledge every job without doing anything: DROPS JOBS (for benchmarks)
    #[arg(long)]
    pub discard: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead jobs, oldest first
    List {
        #[command(flatten)]
        filter: DeadFilterArgs,
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
        /// At most this many (the oldest that match)
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show dead jobs by job id or entry key: fields, attempts, last error, payload
    Show {
        /// A job id, or the key `dead list` prints for an entry
        id: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Move dead jobs back to pending with attempt 0: by ids, by filter, or --all
    Replay {
        #[command(flatten)]
        select: DeadSelect,
    },
    /// Delete dead jobs: by ids, or by filter or --all together with --yes
    Purge {
        #[command(flatten)]
        select: DeadSelect,
        /// Really delete what a filter or --all selects (without it: print the count, change
        /// nothing)
        #[arg(long)]
        yes: bool,
    },
}

/// Which dead jobs an action takes: ids (or entry keys), a filter, both (an id must also
/// match the filter), or every one.
#[derive(Debug, Args)]
pub struct DeadSelect {
    /// Every dead job
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Job ids or entry keys
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: DeadFilterArgs,
}

/// Conditions on dead jobs; every one given must hold.
#[derive(Debug, Args)]
pub struct DeadFilterArgs {
    /// Only jobs of this kind (message, status, error, change)
    #[arg(long)]
    pub kind: Option<String>,
    /// Only jobs for this phone_number_id
    #[arg(long, value_name = "ID")]
    pub phone_number_id: Option<String>,
    /// Only jobs whose last error contains this text (ignoring case)
    #[arg(long, value_name = "TEXT")]
    pub error: Option<String>,
    /// Only jobs that died more than this long ago ("1h", "2d")
    #[arg(long, value_name = "AGE", value_parser = duration)]
    pub older_than: Option<Duration>,
    /// Only jobs that died less than this long ago
    #[arg(long, value_name = "AGE", value_parser = duration)]
    pub newer_than: Option<Duration>,
}

/// A lease: at least 100ms (renewals happen every third of it).
fn lease(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_millis(100) {
        return Err("must be at least 100ms".into());
    }
    Ok(d)
}

/// Humantime durations ("500ms", "2s", "8d"), never zero.
fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

impl Cli {
    /// Parses the command line, with `run` as the default subcommand: `wa-worker`,
    /// `wa-worker --exec ./handle.sh` and `wa-worker run --exec ./handle.sh` are the same.
    pub fn parse_with_default(args: Vec<std::ffi::OsString>) -> Result<Self, clap::Error> {
        const NAMES: [&str; 5] = ["run", "stats", "dead", "dashboard", "help"];
        const INFO: [&str; 4] = ["-h", "--help", "-V", "--version"];
        let names_a_command = args.iter().skip(1).any(|a| {
            a.to_str()
                .is_some_and(|a| NAMES.contains(&a) || INFO.contains(&a))
        });
        let with_run = |args: &[std::ffi::OsString]| {
            let mut v = args.to_vec();
            v.insert(1.min(v.len()), "run".into());
            v
        };
        let cli = if names_a_command {
            Self::try_parse_from(&args)?
        } else {
            Self::try_parse_from(with_run(&args))?
        };
        match cli.command {
            Some(_) => Ok(cli),
            // A flag value happened to spell a subcommand name (`--queue stats`).
            None => Self::try_parse_from(with_run(&args)),
        }
    }
}

/// A clap error as the one line the worker prints for exit 64: clap's own first line, plus the
/// environment variable of the flag at fault, since the value may have come from there.
pub fn error_line(e: &clap::Error) -> String {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    // The message proper runs up to clap's first blank line (usage and hints follow).
    let text = e.to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let mut line = message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_owned();
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return line;
    };
    let Some(long) = arg
        .split_whitespace()
        .next()
        .and_then(|a| a.strip_prefix("--"))
    else {
        return line;
    };
    let cmd = Cli::command();
    let env = std::iter::once(&cmd)
        .chain(cmd.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned());
    if let Some(env) = env {
        line.push_str(&format!(" (flag --{long} or variable {env})"));
    }
    line
}

/// A configuration error: the worker exits 64 (EX_USAGE) with this one line.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A value that must not be shown: the forward secret. `Debug` prints a placeholder, and there is no `Display`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}
