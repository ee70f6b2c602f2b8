//! wa-worker: takes jobs off the wa-webhook Redis queue and runs a handler on each (stdout,
//! exec, forward), with retries, dead letters and the commands to look after them.
//!
//! Exit codes: 0 done (including a stop by SIGTERM/SIGINT), 64 configuration error (a shard
//! count other than the one the queue was set up with included),
//! 78 Redis configured to lose data (`--redis-check strict`), 1 anything else (Redis
//! unreachable at start, ...).

mod admin;
mod cli;
mod dashboard;
mod handler;
mod http;
mod metrics;
mod run;

use std::process::ExitCode;

use anyhow::Context;
use wa_queue::{Admin, QueueError, QueueName};

use cli::{Cli, Command, Global, LogFormat, Usage};

// The run loop allocates a few small strings per job (the parsed job, its JSON for the handler);
// mimalloc serves those markedly cheaper than the system allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::parse_with_default(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            eprintln!("wa-worker: {}", cli::error_line(&e));
            return ExitCode::from(64);
        }
        Err(e) => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    init_logging(cli.global.log_format);
    let rt = match cli.global.threads {
        // One thread by default: the worker's own work per job is a few microseconds, and on a
        // machine it shares with Redis one thread spends far less CPU per job (no cross-thread
        // wake-ups) than a pool competing with Redis for the same cores.
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.into())
            .enable_all()
            .build(),
    };
    let result = rt
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(dispatch(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Usage>() || matches!(e.downcast_ref(), Some(QueueError::Config(_))) => {
            eprintln!("wa-worker: {e:#}");
            ExitCode::from(64)
        }
        Err(e) if matches!(e.downcast_ref(), Some(QueueError::ShardCount { .. })) => {
            eprintln!("wa-worker: {e:#} (--shards/WA_SHARDS)");
            ExitCode::from(64)
        }
        Err(e)
            if matches!(
                e.downcast_ref(),
                Some(QueueError::OrderedQueue { .. } | QueueError::UnorderedConsumers { .. })
            ) =>
        {
            eprintln!("wa-worker: {e:#} (--ordered/WA_ORDERED)");
            ExitCode::from(64)
        }
        Err(e) if matches!(e.downcast_ref(), Some(QueueError::LosesData(_))) => {
            eprintln!("wa-worker: {e} (or start with --redis-check warn)");
            ExitCode::from(78)
        }
        Err(e) => {
            eprintln!("wa-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    let queue = g.redis.queue(&g.prefix, &g.queue).map_err(Usage)?;
    match cli.command {
        Some(Command::Run(args)) => run::run(&g, queue, *args).await,
        Some(Command::Stats(args)) => {
            admin::stats(&connect_admin(&g, queue).await?, &g.queue, &args).await
        }
        Some(Command::Dead(cmd)) => admin::dead(&connect_admin(&g, queue).await?, &cmd).await,
        Some(Command::Dashboard(args)) => dashboard::run(&g, queue, args).await,
        None => unreachable!("parse_with_default always yields a command"),
    }
}

pub(crate) async fn connect_admin(g: &Global, queue: QueueName) -> anyhow::Result<Admin> {
    Admin::connect(g.redis.options().map_err(Usage)?, queue)
        .await
        .map_err(connecting)
}

/// A failure to connect, named after the flag to check when it is one of reaching Redis; a
/// refusal that Redis's answer caused (another shard count, ordered mode) is not about the
/// URL and keeps its own words, which name their flag.
pub(crate) fn connecting(e: QueueError) -> anyhow::Error {
    match e {
        QueueError::Redis(_) | QueueError::Timeout(_) => {
            anyhow::Error::new(e).context("connecting to Redis (--redis-url/REDIS_URL)")
        }
        other => other.into(),
    }
}
