//! The queue contract v1 on Redis lists (skeleton: API agreed, bodies being written).
//!
//! Module layout the implementation fills in: `keys` (key layout), `job` (envelope),
//! `producer` (atomic dedup enqueue), `consumer` (reliable fetch/ack/retry/dead, lease,
//! reaper, promoter), `admin` (stats, dead list/replay/purge), `run` (Handler + run loop).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The contract version this crate reads and writes (`v` of every job).
pub const CONTRACT_VERSION: u32 = 1;

/// Errors of queue operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Redis could not be reached or answered with an error
    #[error("redis error: {0}")]
    Redis(String),
    /// the operation did not finish within its timeout
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// a job could not be encoded or decoded
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// the configuration is unusable (bad URL, empty queue name, ...)
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Where a queue lives: key prefix (default `wa`) and queue name (default `whatsapp`).
/// All keys are `<prefix>:{<name>}:...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueName {
    prefix: String,
    name: String,
}

impl QueueName {
    /// A queue named `name` under the default prefix `wa`.
    pub fn new(name: impl Into<String>) -> Result<Self, QueueError> {
        Self::with_prefix("wa", name)
    }

    /// A queue named `name` under `prefix`.
    pub fn with_prefix(prefix: impl Into<String>, name: impl Into<String>) -> Result<Self, QueueError> {
        Ok(Self { prefix: prefix.into(), name: name.into() })
    }

    /// `<prefix>:{<name>}:pending`
    pub fn pending(&self) -> String {
        format!("{}:{{{}}}:pending", self.prefix, self.name)
    }
}

/// The four kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// one message
    Message,
    /// one status update
    Status,
    /// one value-level error
    Error,
    /// one change of another field
    Change,
}

/// A job as a producer builds it: borrowed, serialised straight to the contract's JSON
/// (`v` = 1 and `attempt` = 0 are written by the encoder). `payload` is embedded verbatim.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// dedup id
    pub id: Cow<'a, str>,
    /// kind
    pub kind: JobKind,
    /// wamid
    pub wamid: Option<Cow<'a, str>>,
    /// sender (recipient for a status)
    pub from: Option<Cow<'a, str>>,
    /// business-scoped user id of the sender/recipient
    pub from_user_id: Option<Cow<'a, str>>,
    /// message type, status value or field name
    pub type_: Option<Cow<'a, str>>,
    /// text body of text messages
    pub text: Option<Cow<'a, str>>,
    /// timestamp as sent
    pub timestamp: Option<Cow<'a, str>>,
    /// profile name of the sender's contact
    pub contact_name: Option<Cow<'a, str>>,
    /// metadata.phone_number_id
    pub phone_number_id: Option<Cow<'a, str>>,
    /// metadata.display_phone_number
    pub display_phone_number: Option<Cow<'a, str>>,
    /// entry id
    pub waba_id: Option<Cow<'a, str>>,
    /// when the ingress received it, ms since the epoch
    pub received_at: u64,
    /// the object exactly as Meta sent it
    pub payload: &'a RawValue,
}

/// A job as a consumer reads it. Unknown top-level fields are kept when the job is rewritten
/// (retry, dead, replay), and `payload` stays byte for byte as enqueued.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Job {
    /// contract version
    pub v: u32,
    /// dedup id
    pub id: String,
    /// kind as written (a string, so an unknown kind still reaches the handler)
    pub kind: String,
    /// wamid
    pub wamid: Option<String>,
    /// sender / recipient
    pub from: Option<String>,
    /// business-scoped user id
    pub from_user_id: Option<String>,
    /// type
    pub type_: Option<String>,
    /// text
    pub text: Option<String>,
    /// timestamp as sent
    pub timestamp: Option<String>,
    /// contact profile name
    pub contact_name: Option<String>,
    /// phone number id
    pub phone_number_id: Option<String>,
    /// display phone number
    pub display_phone_number: Option<String>,
    /// WABA id
    pub waba_id: Option<String>,
    /// received at, ms
    pub received_at: Option<u64>,
    /// deliveries before this one (0 when first enqueued)
    pub attempt: u32,
    /// the embedded object, verbatim
    pub payload: Box<RawValue>,
}

/// Outcome of enqueueing one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// the marker was new and the job was pushed
    New,
    /// the marker existed: not pushed
    Duplicate,
}

/// Producer settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProducerOptions {
    /// how long a dedup marker lives (default 8 days)
    pub dedup_ttl: Duration,
    /// every call finishes or fails within this (default 2 s)
    pub timeout: Duration,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self { dedup_ttl: Duration::from_secs(8 * 24 * 3600), timeout: Duration::from_secs(2) }
    }
}

/// Enqueues jobs: one round trip per call, atomic per job.
#[derive(Clone)]
pub struct Producer {
    _queue: QueueName,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    /// Creates a producer; does not fail when Redis is down (calls will, until it is back).
    pub fn new(_redis_url: &str, _queue: QueueName, _opts: ProducerOptions) -> Result<Self, QueueError> {
        unimplemented!()
    }

    /// Enqueues `jobs`; returns one outcome per job, in order.
    pub async fn enqueue(&self, _jobs: &[NewJob<'_>]) -> Result<Vec<Enqueued>, QueueError> {
        unimplemented!()
    }

    /// PING within the timeout (for readiness).
    pub async fn ping(&self) -> Result<(), QueueError> {
        unimplemented!()
    }
}

/// What a handler decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// done: acknowledge
    Done,
    /// failed: retry with backoff (dead after max attempts)
    Retry(String),
    /// failed for good: dead at once
    Dead(String),
}

/// A job handler. `delivery` is 1 for the first delivery.
pub trait Handler: Send + Sync + 'static {
    /// Handles one job.
    fn handle(&self, job: &Job, delivery: u32) -> impl Future<Output = Outcome> + Send;
}

/// Consumer settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// lease length; renewed every third of it (default 30 s)
    pub lease: Duration,
    /// deliveries before a failing job goes to dead (default 5)
    pub max_attempts: u32,
    /// first retry delay; doubles each attempt, with jitter (default 1 s)
    pub backoff_base: Duration,
    /// longest retry delay (default 10 min)
    pub backoff_max: Duration,
    /// how long a blocking fetch waits for work (default 2 s)
    pub block: Duration,
    /// jobs moved per fetch round trip at most (default 64)
    pub batch: usize,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            block: Duration::from_secs(2),
            batch: 64,
        }
    }
}

/// A job in hand: the parsed job (or why it did not parse) and the exact bytes held in the
/// processing list.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// the job, or the reason it could not be read (such a delivery can only go to dead)
    pub job: Result<Job, String>,
    /// exact element in the processing list
    pub raw: String,
}

/// A reliable consumer with its own id, lease and processing list.
pub struct Consumer {
    _queue: QueueName,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer").finish_non_exhaustive()
    }
}

impl Consumer {
    /// Connects and registers a new unique consumer id with a lease.
    pub async fn connect(_redis_url: &str, _queue: QueueName, _opts: ConsumerOptions) -> Result<Self, QueueError> {
        unimplemented!()
    }

    /// This consumer's id.
    pub fn id(&self) -> &str {
        unimplemented!()
    }

    /// Moves up to `max` jobs from pending into this consumer's processing list, waiting up to
    /// the block time when pending is empty.
    pub async fn fetch(&self, _max: usize) -> Result<Vec<Delivery>, QueueError> {
        unimplemented!()
    }

    /// Acknowledges a finished job.
    pub async fn ack(&self, _delivery: &Delivery) -> Result<(), QueueError> {
        unimplemented!()
    }

    /// Schedules a retry with backoff, or moves to dead after max attempts.
    pub async fn retry(&self, _delivery: &Delivery, _error: &str) -> Result<(), QueueError> {
        unimplemented!()
    }

    /// Moves a job to dead with `error`.
    pub async fn dead(&self, _delivery: &Delivery, _error: &str) -> Result<(), QueueError> {
        unimplemented!()
    }

    /// Returns every job still in hand to pending and removes the lease (graceful stop).
    pub async fn shutdown(self) -> Result<usize, QueueError> {
        unimplemented!()
    }
}

/// Settings of [`run`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunOptions {
    /// handlers running at once (default 16)
    pub concurrency: usize,
    /// a handler running longer is treated as a retry (default 30 s)
    pub handler_timeout: Duration,
    /// after shutdown is asked, how long running handlers may still take (default 30 s)
    pub shutdown_grace: Duration,
    /// live counts the embedding program can read while [`run`] goes on (for metrics)
    pub counters: Arc<Counters>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            handler_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            counters: Arc::default(),
        }
    }
}

/// Live counters of a [`run`], updated as jobs finish (relaxed atomics).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Counters {
    /// jobs acknowledged
    pub done: AtomicU64,
    /// jobs scheduled for a retry
    pub retried: AtomicU64,
    /// jobs moved to dead (by the handler, after max attempts, or unreadable)
    pub dead: AtomicU64,
    /// jobs returned to pending at shutdown
    pub returned: AtomicU64,
    /// failed Redis calls (each followed by a reconnect with backoff)
    pub redis_errors: AtomicU64,
}

/// Counts of a finished [`run`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// acknowledged
    pub done: u64,
    /// scheduled for retry
    pub retried: u64,
    /// moved to dead
    pub dead: u64,
    /// returned to pending at shutdown
    pub returned: u64,
}

/// Runs `handler` over the queue until `shutdown` resolves: fetches in batches, runs up to
/// `concurrency` handlers, renews the lease, promotes due delayed jobs, reaps dead consumers,
/// reconnects after Redis restarts, and on shutdown returns unfinished jobs to pending.
pub async fn run<H: Handler>(
    _consumer: Consumer,
    _handler: H,
    _opts: RunOptions,
    _shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, QueueError> {
    unimplemented!()
}

/// Queue depths and consumers.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// jobs waiting
    pub pending: u64,
    /// jobs waiting for a retry time
    pub delayed: u64,
    /// dead jobs
    pub dead: u64,
    /// jobs in hand per consumer id
    pub processing: Vec<(String, u64)>,
    /// consumers whose lease is live
    pub live_consumers: u64,
    /// age of the oldest pending job, ms (from its `received_at`)
    pub oldest_pending_ms: Option<u64>,
}

/// A dead job with why it died.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadJob {
    /// the job (`Err` with the raw text when it does not parse)
    pub job: Result<Job, String>,
    /// last error
    pub error: Option<String>,
    /// when it died, ms since the epoch
    pub died_at: Option<u64>,
    /// exact element in the dead list
    pub raw: String,
}

/// Operations on a queue: stats, dead letters.
#[derive(Clone)]
pub struct Admin {
    _queue: QueueName,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// Connects.
    pub async fn connect(_redis_url: &str, _queue: QueueName) -> Result<Self, QueueError> {
        unimplemented!()
    }

    /// Queue depths and consumers.
    pub async fn stats(&self) -> Result<Stats, QueueError> {
        unimplemented!()
    }

    /// Up to `limit` dead jobs, oldest first.
    pub async fn dead_list(&self, _limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        unimplemented!()
    }

    /// Moves the dead jobs with these ids back to pending with attempt 0; returns how many.
    pub async fn replay(&self, _ids: &[String]) -> Result<usize, QueueError> {
        unimplemented!()
    }

    /// Moves every dead job back to pending; returns how many.
    pub async fn replay_all(&self) -> Result<usize, QueueError> {
        unimplemented!()
    }

    /// Deletes every dead job; returns how many.
    pub async fn purge_dead(&self) -> Result<usize, QueueError> {
        unimplemented!()
    }
}
