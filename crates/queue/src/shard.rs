//! Which shard a job goes to, and the shard count a queue was set up with.
//!
//! # Why a recorded shard count
//!
//! A job's shard decides where its dedup marker lives. A producer that counted shards
//! differently would file a redelivery under another shard, where its marker is not, and
//! enqueue it again; a consumer that counted differently would leave shards undrained. So the
//! first process with more than one shard records the count under `<prefix>:{<name>}:shards`,
//! and every producer and consumer compares its own count with it before its first write:
//! another count is refused ([`QueueError::ShardCount`]) rather than silently splitting the
//! queue. A queue of one shard (the v1 layout) writes no record, so its keys stay exactly as
//! they were; it still refuses to run against a queue recorded with more.
//!
//! # Routing
//!
//! The shard of a job is `crc32(key) mod N`, CRC-32 as zlib computes it (IEEE 802.3), over the
//! job's id (`--shard-by id`, the default: jobs spread evenly) or its sender (`--shard-by
//! sender`: `from`, else `from_user_id`, else the id; every job of one sender lands in one
//! shard, which per-sender order needs). A port in another language routes the same way with
//! its standard library's CRC-32.

use std::str::FromStr;

use crate::conn::{Conn, bounded};
use crate::job::NewJob;
use crate::{QueueError, QueueName};

/// How a producer picks a job's shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardBy {
    /// by the job's id: jobs spread evenly over the shards
    #[default]
    Id,
    /// by the sender (`from`, else `from_user_id`, else the id): one sender's jobs share a
    /// shard
    Sender,
}

impl ShardBy {
    /// The names the flag takes, in [`ShardBy`]'s order.
    pub const NAMES: [&'static str; 2] = ["id", "sender"];

    /// The key a job is routed by.
    pub fn key<'j>(self, job: &'j NewJob<'_>) -> &'j str {
        match self {
            ShardBy::Id => &job.id,
            ShardBy::Sender => job
                .envelope
                .from
                .as_deref()
                .or(job.envelope.from_user_id.as_deref())
                .unwrap_or(&job.id),
        }
    }

    /// The shard of `job` among `shards`.
    pub fn shard(self, job: &NewJob<'_>, shards: usize) -> usize {
        shard_of(self.key(job), shards)
    }
}

impl FromStr for ShardBy {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "id" => Ok(ShardBy::Id),
            "sender" => Ok(ShardBy::Sender),
            _ => Err(QueueError::Config(format!(
                "shard by {s:?}: expected id or sender"
            ))),
        }
    }
}

/// The shard of a routing key among `shards`: `crc32(key) mod shards`.
pub fn shard_of(key: &str, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    (crc32(key.as_bytes()) as usize) % shards
}

/// The reflected polynomial of CRC-32 (IEEE 802.3, as in zlib).
const CRC32_POLY: u32 = 0xEDB8_8320;

/// CRC-32 as zlib computes it, a bit at a time: routing keys are a few dozen bytes, so a table
/// would buy nothing measurable.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CRC32_POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Compares `queue`'s shard count with the one recorded in Redis, recording it first if the
/// queue has more than one shard and no record yet. One shard writes nothing.
pub(crate) async fn check_shard_count(
    conn: &Conn,
    queue: &QueueName,
    timeout: std::time::Duration,
) -> Result<(), QueueError> {
    let key = queue.shard_count_key();
    let mut c = conn.clone();
    let recorded: Option<String> = if queue.shards() == 1 {
        bounded(timeout, redis::cmd("GET").arg(&key).query_async(&mut c)).await?
    } else {
        let (recorded,): (Option<String>,) = bounded(
            timeout,
            redis::pipe()
                .cmd("SET")
                .arg(&key)
                .arg(queue.shards())
                .arg("NX")
                .ignore()
                .cmd("GET")
                .arg(&key)
                .query_async(&mut c),
        )
        .await?;
        recorded
    };
    match recorded {
        None => Ok(()),
        Some(n) if n == queue.shards().to_string() => Ok(()),
        Some(recorded) => Err(QueueError::ShardCount {
            recorded,
            configured: queue.shards(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    use crate::JobKind;

    /// CRC-32 matches zlib's check value and a Python `zlib.crc32` answer.
    #[test]
    fn crc32_known_answers() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        // python3 -c 'import zlib; print(zlib.crc32(b"wamid.X"))'
        assert_eq!(crc32(b"wamid.X"), 1_911_444_807);
    }

    /// One shard is always shard 0; routing by sender keeps a sender's jobs together and
    /// falls back to the user id, then the id.
    #[test]
    fn routing() {
        let payload = RawValue::from_string("{}".into()).unwrap();
        let mut a = NewJob::new("wamid.A", JobKind::Message, &payload);
        let mut b = NewJob::new("wamid.B", JobKind::Message, &payload);
        assert_eq!(ShardBy::Id.shard(&a, 1), 0);
        a.envelope.from = Some("15551234567".into());
        b.envelope.from = Some("15551234567".into());
        assert_eq!(ShardBy::Sender.shard(&a, 16), ShardBy::Sender.shard(&b, 16));
        assert_eq!(ShardBy::Sender.key(&a), "15551234567");
        a.envelope.from = None;
        a.envelope.from_user_id = Some("US.1".into());
        assert_eq!(ShardBy::Sender.key(&a), "US.1");
        a.envelope.from_user_id = None;
        assert_eq!(ShardBy::Sender.key(&a), "wamid.A");
        assert_eq!(ShardBy::Id.key(&b), "wamid.B");
        let spread: std::collections::HashSet<usize> = (0..200)
            .map(|n| shard_of(&format!("wamid.{n}"), 16))
            .collect();
        assert_eq!(spread.len(), 16);
        assert!("sender".parse::<ShardBy>().is_ok() && "x".parse::<ShardBy>().is_err());
    }
}
