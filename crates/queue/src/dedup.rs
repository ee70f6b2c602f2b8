//! Where a job's dedup marker goes: an 8-byte digest in a small hash (a "bucket").
//!
//! # Why buckets
//!
//! A marker used to be a key of its own (`seen:<id>`, `SET NX EX`): about 165 bytes of Redis
//! memory for 8 days per notification, most of it the key's bookkeeping. Many digests in one
//! small hash cost a few bytes each: Redis keeps a hash of up to `hash-max-listpack-entries`
//! (default 128) short fields as one compact listpack, with one expiry for all of them.
//!
//! A bucket is named by the job's **slot** and a prefix of its **route** (hex digits of the id's
//! hash). The slot of a job with a timestamp is the minute of the notification's own time, which
//! a redelivery carries unchanged. A job without one (a content-hashed event) is filed by Redis's
//! clock, in slots an eighth of its TTL wide that `enqueue.lua` names and searches back to the
//! TTL: its window must follow that TTL however much else is marked meanwhile, not a calendar
//! day. Level 0 of a slot is one bucket, level 1 sixteen, level 2 256, ...: a marker goes into
//! the first bucket on its path with room, so buckets fill up at any rate and stay listpacks.
//! `enqueue.lua` walks the path and makes every bucket on a new marker's path live as long as
//! the marker must, so the marker is found for its whole window, as the key was.
//!
//! The digest and the route come from different bytes of the id's SHA-256, so ids that share a
//! bucket share no digest bits by construction; see `docs/queue-contract.md` for the chance of
//! a false duplicate.

use ring::digest::{SHA256, digest};

use crate::job::NewJob;

/// Seconds per slot of a job with a timestamp.
pub(crate) const SLOT_SECONDS: u64 = 60;

/// A job's marker as `enqueue.lua` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    /// `m<minute>`, or empty for a job without a timestamp (the script picks its slot)
    pub(crate) slot: String,
    /// 16 hex digits: bytes 8..16 of the id's SHA-256
    pub(crate) route: String,
    /// bytes 0..8 of the id's SHA-256: the marker itself
    pub(crate) digest: [u8; 8],
}

impl Marker {
    /// The marker of `job`, from its id and timestamp.
    pub(crate) fn of(job: &NewJob<'_>) -> Self {
        let hash = digest(&SHA256, job.id.as_bytes());
        let hash = hash.as_ref();
        let mut digest = [0; 8];
        digest.copy_from_slice(&hash[..8]);
        let route = hash[8..16].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            slot: slot(job.timestamp.as_deref()),
            route,
            digest,
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

    /// Digest and route are fixed bytes of the id's SHA-256 (a port must compute the same).
    #[test]
    fn digest_and_route_of_an_id() {
        let payload = RawValue::from_string("{}".into()).unwrap();
        let mut job = NewJob::new("abc", JobKind::Message, &payload);
        job.timestamp = Some("120".into());
        let m = Marker::of(&job);
        // SHA-256("abc") = ba7816bf8f01cfea 414140de5dae2223 ...
        assert_eq!(m.digest, [0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea]);
        assert_eq!(m.route, "414140de5dae2223");
        assert_eq!(m.slot, "m2");
    }
}
