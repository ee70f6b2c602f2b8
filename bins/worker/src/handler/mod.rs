//! The handlers a user picks on the command line, behind one [`wa_queue::Handler`].
//!
//! Every handler sees the job as the JSON object the contract defines (see [`job_json`]); none of
//! them logs a job body, only its id and delivery number.

mod exec;
mod forward;
mod stdout;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::value::RawValue;
use wa_queue::{Handler, Job, Outcome};

pub use exec::ExecHandler;
pub use forward::ForwardHandler;
pub use stdout::StdoutHandler;

use tokio::sync::watch;

use crate::cli::{RunArgs, Secret, Usage};
use crate::metrics::Histogram;

/// One of the handlers, plus an optional duration histogram (only kept when metrics are served).
#[derive(Debug)]
pub struct AnyHandler {
    kind: Kind,
    durations: Option<Arc<Histogram>>,
}

#[derive(Debug)]
pub enum Kind {
    Stdout(StdoutHandler),
    Exec(ExecHandler),
    Forward(Box<ForwardHandler>),
    /// Acknowledges without doing anything; for measuring the queue alone.
    Discard,
}

impl Kind {
    /// The handler the flags ask for (`--stdout` when none), and its default concurrency.
    ///
    /// The defaults were measured (bench/drain.sh): for in-process handlers 32 in hand drains
    /// faster than 64 to 1024, because every job in hand lengthens the processing list that
    /// each acknowledgement searches in Redis. HTTP requests wait on the network, so more of
    /// them overlap usefully; processes cost a fork each, so fewer.
    pub fn from_args(args: &RunArgs, stop: watch::Sender<bool>) -> Result<(Kind, u32), Usage> {
        let h = &args.handler;
        let secret = args.forward_secret.as_ref().map(Secret::expose);
        if secret.is_some() && h.forward.is_none() {
            tracing::warn!("--forward-secret/WA_FORWARD_SECRET is set but only --forward uses it");
        }
        Ok(if let Some(cmd) = &h.exec {
            let exec = ExecHandler::new(cmd, args.handler_timeout)
                .map_err(|e| Usage(format!("--exec/WA_EXEC: {e}")))?;
            (Kind::Exec(exec), 16)
        } else if let Some(url) = &h.forward {
            let fwd = ForwardHandler::new(url, secret, args.handler_timeout)
                .map_err(|e| Usage(format!("--forward/WA_FORWARD_URL: {e}")))?;
            (Kind::Forward(Box::new(fwd)), 64)
        } else if h.discard {
            (Kind::Discard, 32)
        } else {
            let stdout = StdoutHandler::start(stop)
                .map_err(|e| Usage(format!("cannot use standard output: {e}")))?;
            (Kind::Stdout(stdout), 32)
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::Stdout(_) => "stdout",
            Kind::Exec(_) => "exec",
            Kind::Forward(_) => "forward",
            Kind::Discard => "discard",
        }
    }
}

impl AnyHandler {
    pub fn new(kind: Kind, durations: Option<Arc<Histogram>>) -> Self {
        Self { kind, durations }
    }
}

impl Handler for AnyHandler {
    async fn handle(&self, job: &Job, delivery: u32) -> Outcome {
        let started = self.durations.as_ref().map(|_| Instant::now());
        let outcome = match &self.kind {
            Kind::Stdout(h) => h.handle(job).await,
            Kind::Exec(h) => h.handle(job, delivery).await,
            Kind::Forward(h) => h.handle(job, delivery).await,
            Kind::Discard => Outcome::Done,
        };
        if let (Some(hist), Some(started)) = (&self.durations, started) {
            hist.observe(started.elapsed());
        }
        // The reasons are the handlers' own words (exit codes, statuses), never job content.
        match &outcome {
            Outcome::Done => {}
            Outcome::Retry(why) => {
                tracing::info!(job_id = %job.id, attempt = delivery, "job failed: {why}");
            }
            Outcome::Dead(why) => {
                tracing::warn!(job_id = %job.id, attempt = delivery, "job refused for good: {why}");
            }
        }
        outcome
    }
}

/// The contract's JSON of a job, fields in the contract's order; `payload` is written back
/// byte for byte as it was enqueued.
///
/// wa-queue hands handlers a parsed [`Job`] rather than the element it read, so this
/// re-encodes the parsed fields. Top-level fields this version of the contract does not know
/// are therefore not passed on to handlers.
pub fn job_json(job: &Job) -> String {
    #[derive(Serialize)]
    struct Wire<'a> {
        v: u32,
        id: &'a str,
        kind: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        wamid: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        from_user_id: Option<&'a str>,
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        type_: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        timestamp: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        contact_name: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        phone_number_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        display_phone_number: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        waba_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        received_at: Option<u64>,
        attempt: u32,
        payload: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_error: Option<&'a str>,
    }
    let wire = Wire {
        v: job.v,
        id: &job.id,
        kind: &job.kind,
        wamid: job.wamid.as_deref(),
        from: job.from.as_deref(),
        from_user_id: job.from_user_id.as_deref(),
        type_: job.type_.as_deref(),
        text: job.text.as_deref(),
        timestamp: job.timestamp.as_deref(),
        contact_name: job.contact_name.as_deref(),
        phone_number_id: job.phone_number_id.as_deref(),
        display_phone_number: job.display_phone_number.as_deref(),
        waba_id: job.waba_id.as_deref(),
        received_at: job.received_at,
        attempt: job.attempt,
        payload: &job.payload,
        last_error: job.last_error.as_deref(),
    };
    // Serialising borrowed strings, integers and an already valid RawValue cannot fail.
    serde_json::to_string(&wire).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;
    use wa_queue::{Job, JobKind, NewJob};

    /// A job as the producer encodes it comes out of `job_json` byte for byte the same,
    /// escapes in the payload included.
    #[test]
    fn job_json_reproduces_the_queued_bytes() {
        let payload =
            RawValue::from_string(r#"{"text":{"body":"caf\u00e9 \/ \ud83d\ude00"}}"#.into())
                .unwrap();
        let mut new = NewJob::new("wamid.X", JobKind::Message, &payload);
        new.wamid = Some("wamid.X".into());
        new.from = Some("16505551234".into());
        new.type_ = Some("text".into());
        new.text = Some("café \"quoted\"\n".into());
        new.timestamp = Some("1700000000".into());
        new.contact_name = Some("Kerry".into());
        new.phone_number_id = Some("106540352242922".into());
        new.display_phone_number = Some("15550783881".into());
        new.waba_id = Some("102290129340398".into());
        new.received_at = 1_700_000_000_000;
        let queued = new.to_json().unwrap();
        let job = Job::from_json(&queued).unwrap();
        assert_eq!(super::job_json(&job), queued);
    }
}
