//! Where a job's dedup marker goes: a 64-bit digest of its id in a small set (a "bucket").
//!
//! # Why buckets
//!
//! A marker used to be a key of its own (`seen:<id>`, `SET NX EX`): about 165 bytes of Redis
//! memory for 8 days per notification, most of it the key's bookkeeping. Many 64-bit integers
//! in one small set cost 8 bytes each: Redis keeps a set of up to `set-max-intset-entries`
//! (default 512) integers as one sorted array, an intset, with one expiry for all of them, and
//! finds or adds one by binary search.
//!
//! A marker is filed under a **slot**: for a job with a timestamp, the minute of the
//! notification's own time, which a redelivery carries unchanged; for a job without one (a
//! content-hashed event), slots of Redis's clock an eighth of its TTL wide, which
//! `enqueue.lua` names and searches back to the TTL, so that its window follows that TTL
//! however much else is marked meanwhile. The buckets of a slot form a linear hash table on
//! the marker's last digits: a marker is always in the one bucket they name, and a bucket is
//! split in two as the slot grows, so a lookup is one `SADD` at any rate and every bucket stays
//! an intset. `enqueue.lua` keeps a small header per slot (bucket count, markers, expiry) and
//! makes every bucket of a slot live as long as its newest marker must.
//!
//! A false duplicate needs another id of the same slot with the same 64-bit digest; see
//! `docs/queue-contract.md` for the chance.

use ring::digest::{SHA256, digest};

use crate::job::NewJob;

/// Seconds per slot of a job with a timestamp.
pub(crate) const SLOT_SECONDS: u64 = 60;

/// A job's marker as `enqueue.lua` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    /// `m<minute>`, or empty for a job without a timestamp (the script picks its slot)
    pub(crate) slot: String,
    /// bytes 0..8 of the id's SHA-256 as a signed big-endian integer, 0 taken as 1 (the
    /// script keeps 0 in every bucket), in decimal: the marker itself
    pub(crate) digest: String,
}

impl Marker {
    /// The marker of `job`, from its id and timestamp.
    pub(crate) fn of(job: &NewJob<'_>) -> Self {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&digest(&SHA256, job.id.as_bytes()).as_ref()[..8]);
        let digest = match i64::from_be_bytes(bytes) {
            0 => 1,
            d => d,
        };
        Self {
            slot: slot(job.envelope.timestamp.as_deref()),
            digest: digest.to_string(),
        }
    }
}

/// `m<minute>` for a timestamp of whole seconds as Meta sends it, empty otherwise.
fn slot(timestamp: Option<&str>) -> String {
    match timestamp.and_then(|t| t.parse::<u64>().ok()) {
        Some(secs) => format!("m{}", secs / SLOT_SECONDS),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    use crate::JobKind;

    /// The slot is the timestamp's minute; a job without a usable timestamp has none.
    #[test]
    fn slots() {
        assert_eq!(slot(Some("1717000000")), "m28616666");
        assert_eq!(slot(Some("1717000019")), "m28616666");
        assert_eq!(slot(Some("-5")), "");
        assert_eq!(slot(Some("17x")), "");
        assert_eq!(slot(None), "");
    }

    /// The digest is the first 8 bytes of the id's SHA-256, signed, in decimal (a port must
    /// compute the same).
    #[test]
    fn digest_of_an_id() {
        let payload = RawValue::from_string("{}".into()).unwrap();
        let mut job = NewJob::new("abc", JobKind::Message, &payload);
        job.envelope.timestamp = Some("120".into());
        let m = Marker::of(&job);
        // SHA-256("abc") = ba7816bf8f01cfea ..., as i64: -5010229573455851542
        assert_eq!(m.digest, "-5010229573455851542");
        assert_eq!(m.slot, "m2");
    }
}
