//! The wa-webhook queue contract v1 on Redis lists: atomic dedup enqueue and reliable
//! consumption.
//!
//! The ingress ([`Producer`]) and the worker ([`Consumer`], [`run`]) share nothing but this
//! contract; `docs/queue-contract.md` describes it for workers in other languages.
//!
//! # Getting started
//!
//! Produce:
//!
//! ```no_run
//! use serde_json::value::RawValue;
//! use wa_queue::{Enqueued, JobKind, NewJob, Producer, ProducerOptions, QueueName};
//!
//! # async fn demo() -> Result<(), wa_queue::QueueError> {
//! let producer = Producer::new(
//!     "redis://127.0.0.1:6379",
//!     QueueName::new("whatsapp")?,
//!     ProducerOptions::default(),
//! )?;
//! let payload = RawValue::from_string(r#"{"id":"wamid.X","type":"text"}"#.to_owned()).unwrap();
//! let job = NewJob::new("wamid.X", JobKind::Message, &payload);
//! // One round trip; a second call with the same id answers Duplicate.
//! assert_eq!(producer.enqueue(&[job]).await?, vec![Enqueued::New]);
//! # Ok(()) }
//! ```
//!
//! Jobs are encoded exactly as the contract says, payload byte for byte:
//!
//! ```
//! use serde_json::value::RawValue;
//! use wa_queue::{Job, JobKind, NewJob};
//!
//! let payload = RawValue::from_string(r#"{"text":{"body":"caf\u00e9"}}"#.to_owned()).unwrap();
//! let mut job = NewJob::new("wamid.X", JobKind::Message, &payload);
//! job.envelope.from = Some("15551234567".into()); // the optional text fields: wa_queue::Envelope
//! job.received_at = 1_700_000_000_000;
//! let json = job.to_json().unwrap();
//! assert_eq!(
//!     json,
//!     r#"{"v":1,"id":"wamid.X","kind":"message","from":"15551234567","received_at":1700000000000,"attempt":0,"payload":{"text":{"body":"caf\u00e9"}}}"#
//! );
//! let back = Job::from_json(&json).unwrap();
//! assert_eq!(back.payload().get(), payload.get());
//! ```
//!
//! Consume with a handler (what `wa-worker` does):
//!
//! ```no_run
//! use wa_queue::{Consumer, ConsumerOptions, Handler, Job, Outcome, QueueName, RunOptions};
//!
//! struct Print;
//!
//! impl Handler for Print {
//!     async fn handle(&self, job: &Job, delivery: u32) -> Outcome {
//!         println!("{} {} (delivery {delivery})", job.kind(), job.id());
//!         Outcome::Done // or Retry("why") for a backoff, or Dead("why")
//!     }
//! }
//!
//! # async fn demo() -> Result<(), wa_queue::QueueError> {
//! let consumer = Consumer::connect(
//!     "redis://127.0.0.1:6379",
//!     QueueName::new("whatsapp")?,
//!     ConsumerOptions::default(),
//! )
//! .await?;
//! let mut opts = RunOptions::default();
//! opts.concurrency = 32;
//! let stop = async { tokio::signal::ctrl_c().await.unwrap_or(()) };
//! let summary = wa_queue::run(consumer, Print, opts, stop).await?;
//! println!("{} done, {} returned to pending", summary.done, summary.returned);
//! # Ok(()) }
//! ```
//!
//! Or drive a [`Consumer`] by hand: [`Consumer::fetch`] a batch, then [`Consumer::settle`] the
//! outcomes in one round trip (or [`Consumer::ack`] / [`retry`](Consumer::retry) /
//! [`dead`](Consumer::dead) one by one), calling [`Consumer::renew_lease`],
//! [`Consumer::promote_due`] and [`Consumer::reap_expired`] now and then, and
//! [`Consumer::shutdown`] at the end. [`Admin`] gives stats and the dead-letter operations.
//!
//! # Guarantees
//!
//! - Enqueue is atomic per job (dedup marker and push in one script) and one round trip per
//!   call; concurrent calls of one [`Producer`] share round trips. Every call ends within
//!   [`ProducerOptions::timeout`], also when Redis is down or hung; [`Producer::new`] never
//!   needs Redis.
//! - Delivery is at least once: a consumer's jobs sit in its own processing list under a lease;
//!   when the lease lapses (crash, long outage) any consumer's reaper returns them to pending.
//!   A consumer settles by position (it mirrors its list's order; one script call per round
//!   trip drops finished jobs by count and takes the next batch); whenever a call's outcome is
//!   unknown it returns its whole list to pending and goes on under a new id, so every call,
//!   [`Consumer::fetch`] included, is safe to cancel.
//! - A failing job is retried with exponential backoff and jitter (or after the delay of
//!   [`Outcome::RetryAfter`]), then dead after [`ConsumerOptions::max_attempts`] deliveries; an
//!   unreadable job or unknown `v` goes to dead at once. Nothing is dropped; dead jobs can be
//!   listed, filtered ([`DeadFilter`]: kind, `phone_number_id`, error text, age), paged,
//!   replayed and purged through [`Admin`], each entry taken out by its exact bytes.
//! - A delivery lost with its worker (it died, or lost its lease) counts as a delivery: the
//!   reaper raises the job's `lost` count ([`Job::lost`]) and sends a job lost too often to dead,
//!   so a job that crashes every worker does not go round forever. A consumer that finds its
//!   lease gone logs it once, counts it ([`Counters::leases_lost`]) and takes a new id; the
//!   outcomes of the jobs it lost are logged and counted ([`Counters::lost_outcomes`]), never
//!   settled.
//! - Rewrites (retry, dead, replay) keep `payload` byte for byte and keep unknown fields.
//! - In order per sender, optionally ([`ConsumerOptions::ordered`]): one job of a sender at a
//!   time, in the order the jobs reached their shard; a retrying job holds its sender's later
//!   jobs back until it is acknowledged or dead, and so does a job whose worker died.
//!
//! # Keys
//!
//! [`QueueName`] builds every key: `<prefix>:{<name>}:pending`, `processing:<consumer>`,
//! `consumers`, `delayed`, `dead`, `counts`, and the dedup markers' buckets under `dedup:`
//! (`seen:<id>` markers of older versions are honoured until `seen-until`, the time after which
//! [`Producer::retire_old_markers`] found that none can be left). The braces are a Redis Cluster hash tag, so each
//! multi-key script touches one slot. The Lua scripts are in [`SCRIPTS`]; the whole contract,
//! for workers in other languages, is in `docs/queue-contract.md`.
//!
//! # Features
//!
//! None: Tokio, redis-rs (multiplexed `ConnectionManager`s, one per lane) and deadpool-redis
//! (blocking waits for work) are always on.

mod admin;
mod check;
#[cfg(feature = "cli")]
pub mod cli;
mod conn;
mod consumer;
mod dead;
mod dedup;
mod error;
mod job;
mod keys;
mod order;
mod producer;
mod run;
mod script;
mod shard;

pub use admin::{Admin, Stats};
pub use check::{CheckMode, ConfigHealth, RedisConfig, SAFE_POLICY, check_config};
pub use conn::{IntoRedisOptions, RedisOptions};
pub use consumer::{Consumer, ConsumerOptions, Delivery, Handler, Outcome, Settled};
pub use dead::{DeadFilter, DeadJob, DeadPage, entry_key};
pub use error::{QueueError, RedisFailure};
pub use job::{Job, NewJob, now_ms};
pub use keys::{MAX_SHARDS, QueueName};
pub use producer::{Enqueued, Producer, ProducerOptions};
pub use run::{Counters, RunOptions, RunSummary, run};
pub use script::SCRIPTS;
pub use shard::{ShardBy, shard_of};
pub use wa_kind::{Envelope, JobKind};

/// The contract version this crate reads and writes (`v` of every job).
pub const CONTRACT_VERSION: u32 = 1;
