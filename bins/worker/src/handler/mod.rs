//! The handlers a user picks on the command line, behind one [`wa_queue::Handler`].
//!
//! Every handler passes on the job's JSON exactly as it was queued ([`wa_queue::Job::json`]):
//! unknown top-level fields and the payload's bytes survive. None of them logs a job body, only
//! its id and delivery number.

mod exec;
mod forward;
mod signing;
mod stderr;
mod stdout;
mod tls;

use std::sync::Arc;
use std::time::Instant;

use wa_queue::{Handler, Job, Outcome};

pub use exec::ExecHandler;
pub use forward::{ForwardError, ForwardHandler};
pub use stdout::StdoutHandler;

use tokio::sync::watch;

use crate::cli::{RunArgs, Secret, Usage};
use crate::metrics::Histogram;

/// One of the handlers, plus an optional duration histogram (only kept when metrics are served).
#[derive(Debug)]
pub struct AnyHandler {
    chosen: Chosen,
    durations: Option<Arc<Histogram>>,
}

/// The handler the flags chose (not a job's kind: that is [`wa_queue::JobKind`]).
#[derive(Debug)]
pub enum Chosen {
    Stdout(StdoutHandler),
    Exec(ExecHandler),
    Forward(Box<ForwardHandler>),
    /// Acknowledges without doing anything; for measuring the queue alone.
    Discard,
}

impl Chosen {
    /// The handler the flags ask for (`--stdout` when none), and its default concurrency.
    ///
    /// The defaults were measured (bench/drain.sh): for in-process handlers 32 in hand drains
    /// faster than 64 to 1024, because every job in hand lengthens the processing list that
    /// each acknowledgement searches in Redis. HTTP requests wait on the network, so more of
    /// them overlap usefully; processes cost a fork each, so fewer.
    pub fn from_args(args: &RunArgs, stop: watch::Sender<bool>) -> Result<(Chosen, u32), Usage> {
        let h = &args.handler;
        let secret = args.forward_secret.as_ref().map(Secret::expose);
        if secret.is_some() && h.forward.is_none() {
            tracing::warn!("--forward-secret/WA_FORWARD_SECRET is set but only --forward uses it");
        }
        Ok(if let Some(cmd) = &h.exec {
            let exec = ExecHandler::new(cmd, args.handler_timeout, &args.exec_env)
                .map_err(|e| Usage(format!("--exec/WA_EXEC or --exec-env/WA_EXEC_ENV: {e}")))?;
            (Chosen::Exec(exec), 16)
        } else if let Some(url) = &h.forward {
            let ca = args.forward_ca_cert.as_deref();
            let fwd = ForwardHandler::new(url, secret, ca, args.handler_timeout).map_err(|e| {
                Usage(match e {
                    ForwardError::Url(e) => format!("--forward/WA_FORWARD_URL: {e}"),
                    ForwardError::Secret(e) => format!("--forward-secret/WA_FORWARD_SECRET: {e}"),
                    ForwardError::Tls(e) => format!("--forward-ca-cert/WA_FORWARD_CA_CERT: {e}"),
                })
            })?;
            (Chosen::Forward(Box::new(fwd)), 64)
        } else if h.discard {
            (Chosen::Discard, 1024)
        } else {
            let stdout = StdoutHandler::start(stop)
                .map_err(|e| Usage(format!("cannot use standard output: {e}")))?;
            (Chosen::Stdout(stdout), 1024)
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Chosen::Stdout(_) => "stdout",
            Chosen::Exec(_) => "exec",
            Chosen::Forward(_) => "forward",
            Chosen::Discard => "discard",
        }
    }
}

impl AnyHandler {
    pub fn new(chosen: Chosen, durations: Option<Arc<Histogram>>) -> Self {
        Self { chosen, durations }
    }
}

impl Handler for AnyHandler {
    async fn handle(&self, job: &Job, delivery: u32) -> Outcome {
        let started = self.durations.as_ref().map(|_| Instant::now());
        let outcome = match &self.chosen {
            Chosen::Stdout(h) => h.handle(job).await,
            // Boxed: their futures are large (a child process, an HTTP request), and inline
            // they would make every job's future as large, a quick handler's too.
            Chosen::Exec(h) => Box::pin(h.handle(job, delivery)).await,
            Chosen::Forward(h) => Box::pin(h.handle(job, delivery)).await,
            Chosen::Discard => Outcome::Done,
        };
        if let (Some(hist), Some(started)) = (&self.durations, started) {
            hist.observe(started.elapsed());
        }
        // The reasons are the handlers' own words (exit codes, statuses), never job content.
        match &outcome {
            Outcome::Done => {}
            Outcome::Retry(why) | Outcome::RetryAfter(why, _) => {
                tracing::info!(job_id = %job.id(), attempt = delivery, "job failed: {why}");
            }
            Outcome::Dead(why) => {
                tracing::warn!(job_id = %job.id(), attempt = delivery, "job refused for good: {why}");
            }
        }
        outcome
    }
}
