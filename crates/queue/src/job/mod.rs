//! The job envelope: encoding (producer side), decoding (consumer side), and the rewrites a job
//! goes through (retry, dead, replay) that must keep `payload` byte for byte and keep fields
//! this version does not know.
//!
//! `new` is the producer's side ([`NewJob`]), `read` the consumer's ([`Job`], read in
//! place), `rewrite` the rewrites of a job's JSON that keep every field.

mod new;
mod read;
mod rewrite;
mod scan;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

pub use new::NewJob;
pub use read::Job;
pub(crate) use rewrite::{dead_fields, received_at, rewrite_dead, rewrite_replay, rewrite_retry};

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
