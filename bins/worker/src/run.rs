//! `wa-worker run`: wires the handler, the metrics endpoint, the consumer and the signals to
//! wa-queue's run loop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use wa_queue::{ConfigHealth, Consumer, ConsumerOptions, Counters, QueueName, RunOptions};

use crate::cli::{Global, RunArgs, Usage};
use crate::handler::{AnyHandler, Chosen};
use crate::metrics;

pub async fn run(g: &Global, queue: QueueName, args: RunArgs) -> anyhow::Result<()> {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (chosen, default_concurrency) = Chosen::from_args(&args, stop_tx)?;
    let name = chosen.name();
    let concurrency = args.concurrency.unwrap_or(default_concurrency);
    let counters = Arc::new(Counters::default());
    let redis = g.redis.options().map_err(Usage)?;
    let health = ConfigHealth::new(g.redis.check());
    health.watch(&redis, g.redis.redis_check_interval).await?;
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
                admin: crate::connect_admin(g, queue.clone()).await?,
                health: health.clone(),
                queue: g.queue.clone(),
            };
            tokio::spawn(metrics::serve(
                listener,
                Arc::new(sources),
                args.metrics_header_timeout,
            ));
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
    copts.lanes = args.lanes.into();
    copts.ordered = args.ordered;
    let consumer = Consumer::connect(&redis, queue, copts)
        .await
        .map_err(crate::connecting)?;
    tracing::info!(queue = %g.queue, consumer = consumer.id(), handler = name, concurrency, ordered = args.ordered, "worker started");

    let mut ropts = RunOptions::default().with_counters(counters);
    ropts.concurrency = concurrency as usize;
    // exec and forward enforce the timeout themselves (killing the child, naming the cause);
    // the run loop's own limit is the backstop a little later.
    ropts.handler_timeout = args.handler_timeout + Duration::from_secs(2);
    ropts.shutdown_grace = args.shutdown_grace;
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
    let summary = wa_queue::run(
        consumer,
        AnyHandler::new(chosen, durations),
        ropts,
        shutdown,
    )
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
