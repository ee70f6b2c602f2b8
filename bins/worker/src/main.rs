//! wa-worker: takes jobs off the wa-webhook Redis queue and runs a handler on each (stdout,
//! exec, forward), with retries, dead letters and the commands to look after them.
//!
//! Exit codes: 0 done (including a stop by SIGTERM/SIGINT), 64 configuration error,
//! 1 anything else (Redis unreachable at start, ...).

mod admin;
mod cli;
mod handler;
mod metrics;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use wa_queue::{Admin, Consumer, ConsumerOptions, Counters, QueueError, QueueName, RunOptions};

use cli::{Cli, Command, Global, LogFormat, RunArgs};
use handler::{AnyHandler, ExecHandler, ForwardHandler, Kind, StdoutHandler};

// The run loop allocates a few small strings per job (the parsed job, its JSON for the handler);
// mimalloc serves those markedly cheaper than the system allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A configuration error: exit 64 (EX_USAGE) with this one line.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

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
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    let queue = QueueName::with_prefix(&g.prefix, &g.queue)
        .map_err(|e| Usage(format!("--queue/WA_QUEUE or --prefix/WA_PREFIX: {e}")))?;
    match cli.command {
        Some(Command::Run(args)) => run(&g, queue, *args).await,
        Some(Command::Stats(args)) => {
            admin::stats(&connect_admin(&g, queue).await?, &g.queue, &args).await
        }
        Some(Command::Dead(cmd)) => admin::dead(&connect_admin(&g, queue).await?, &cmd).await,
        None => unreachable!("parse_with_default always yields a command"),
    }
}

async fn connect_admin(g: &Global, queue: QueueName) -> anyhow::Result<Admin> {
    Admin::connect(&g.redis_url, queue)
        .await
        .context("connecting to Redis (--redis-url/REDIS_URL)")
}

async fn run(g: &Global, queue: QueueName, args: RunArgs) -> anyhow::Result<()> {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let h = &args.handler;
    // In-process handlers are cheap: many at once means bigger fetch and settle batches, which is
    // what makes a drain fast. Processes and HTTP requests get a gentler default.
    let (kind, name, concurrency) = if let Some(cmd) = &h.exec {
        let exec = ExecHandler::new(cmd, args.handler_timeout)
            .map_err(|e| Usage(format!("--exec/WA_EXEC: {e}")))?;
        (Kind::Exec(exec), "exec", 16)
    } else if let Some(url) = &h.forward {
        let fwd = ForwardHandler::new(url, args.forward_secret.as_deref(), args.handler_timeout)
            .map_err(|e| Usage(format!("--forward/WA_FORWARD_URL: {e}")))?;
        (Kind::Forward(Box::new(fwd)), "forward", 64)
    } else if h.discard {
        (Kind::Discard, "discard", 256)
    } else {
        (
            Kind::Stdout(StdoutHandler::start(stop_tx).context("opening standard output")?),
            "stdout",
            256,
        )
    };
    if args.forward_secret.is_some() && h.forward.is_none() {
        tracing::warn!("--forward-secret/WA_FORWARD_SECRET is set but only --forward uses it");
    }
    let concurrency = args.concurrency.unwrap_or(concurrency);
    let counters = Arc::new(Counters::default());
    let durations = match args.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                Usage(format!(
                    "--metrics-listen/WA_METRICS_LISTEN: cannot listen on {addr}: {e}"
                ))
            })?;
            let durations = Arc::new(metrics::Histogram::default());
            let sources = metrics::Sources {
                counters: counters.clone(),
                durations: durations.clone(),
                admin: connect_admin(g, queue.clone()).await?,
                queue: g.queue.clone(),
            };
            tokio::spawn(metrics::serve(listener, Arc::new(sources)));
            tracing::info!(%addr, "serving /metrics and /healthz");
            Some(durations)
        }
        None => None,
    };
    let mut copts = ConsumerOptions::default();
    copts.lease = args.lease;
    copts.max_attempts = args.max_attempts;
    copts.backoff_base = args.backoff_base;
    copts.backoff_max = args.backoff_max;
    // wa-queue wants a blocking fetch shorter than the lease; a short lease (1s) shortens it.
    copts.block = args.block.min(args.lease / 3);
    copts.batch = args.batch as usize;
    let consumer = Consumer::connect(&g.redis_url, queue, copts)
        .await
        .context("connecting to Redis (--redis-url/REDIS_URL)")?;
    tracing::info!(queue = %g.queue, consumer = consumer.id(), handler = name, concurrency, "worker started");

    let mut ropts = RunOptions::default();
    ropts.concurrency = concurrency as usize;
    // exec and forward enforce the timeout themselves (killing the child, naming the cause);
    // the run loop's own limit is the backstop a little later.
    ropts.handler_timeout = args.handler_timeout + Duration::from_secs(2);
    ropts.shutdown_grace = args.shutdown_grace;
    ropts.counters = counters;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
            // Only the stdout handler asks to stop (its reader went away); with the others the
            // sender is gone at once, which must not read as a stop.
            Ok(_) = stop_rx.wait_for(|stop| *stop) => {}
        }
    };
    let summary = wa_queue::run(consumer, AnyHandler::new(kind, durations), ropts, shutdown)
        .await
        .context("running the queue")?;
    tracing::info!(
        done = summary.done,
        retried = summary.retried,
        dead = summary.dead,
        returned = summary.returned,
        "worker stopped"
    );
    Ok(())
}
