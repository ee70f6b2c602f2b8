//! A worker of your own in a few lines: a [`wa_queue::Handler`] that replies to each text message
//! (here by printing the reply; a real one would call the Cloud API), run by [`wa_queue::run`],
//! which brings the lease, retries with backoff, the dead-letter list and a graceful stop.
//!
//! Run with:
//! `cargo run --example custom_worker`
//!
//! It needs only Redis: `REDIS_URL` (default `redis://127.0.0.1:6379`) and `WA_QUEUE` (default
//! `whatsapp`), as the ingress. It stops on Ctrl-C, or after `WA_IDLE_EXIT` (e.g. `5s`) without a
//! job when that is set. `tests/it/custom_worker.rs` runs this handler against a real queue.

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wa_queue::{
    Consumer, ConsumerOptions, Counters, Handler, Job, JobKind, Outcome, QueueName, RunOptions,
};

mod common;

/// Replies to every text message by writing a line to `out`; acknowledges every other job
/// (statuses, media, ...) without a word.
#[derive(Debug)]
pub struct Replier<W> {
    out: Mutex<W>,
}

impl<W> Replier<W> {
    /// A replier that writes its replies to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }
}

impl<W: Write + Send + 'static> Handler for Replier<W> {
    async fn handle(&self, job: &Job, _delivery: u32) -> Outcome {
        let (JobKind::Message, Some(text)) = (job.kind(), job.text()) else {
            return Outcome::Done;
        };
        // Username users come without a phone number: reply to their business-scoped id.
        let to = job
            .from()
            .or(job.from_user_id())
            .unwrap_or("unknown sender");
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        match writeln!(out, "reply to {to}: you said {text:?}") {
            Ok(()) => Outcome::Done,
            // Failing to send a reply is worth another try later (with backoff), not a lost job.
            Err(err) => Outcome::Retry(format!("cannot write the reply: {err}")),
        }
    }
}

/// Resolves once no job has finished for `idle`: lets a script or a test stop the worker once
/// the queue has run dry.
pub async fn idle_for(counters: Arc<Counters>, idle: Duration) {
    let finished = || counters.done() + counters.retried() + counters.dead();
    let (mut seen, mut since) = (finished(), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = finished();
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() >= idle {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    common::exit("custom_worker", run().await)
}

async fn run() -> anyhow::Result<()> {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let queue = std::env::var("WA_QUEUE").unwrap_or_else(|_| "whatsapp".to_owned());
    let idle = match std::env::var("WA_IDLE_EXIT") {
        Ok(text) => {
            Some(humantime::parse_duration(&text).context("WA_IDLE_EXIT: try 5s or 500ms")?)
        }
        Err(_) => None,
    };

    let queue = QueueName::new(queue).context("WA_QUEUE")?;
    let consumer = Consumer::connect(&redis_url, queue, ConsumerOptions::default())
        .await
        .context("cannot reach Redis (REDIS_URL)")?;
    eprintln!(
        "custom_worker {} is waiting for jobs; Ctrl-C stops it",
        consumer.id()
    );

    let options = RunOptions::default();
    let counters = Arc::clone(options.counters());
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async {
                match idle {
                    Some(idle) => idle_for(counters, idle).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    };
    let summary = wa_queue::run(consumer, Replier::new(std::io::stdout()), options, stop).await?;
    eprintln!("custom_worker stopped: {summary:?}");
    Ok(())
}
