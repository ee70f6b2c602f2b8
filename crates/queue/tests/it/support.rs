//! Helpers: unique queue names, key cleanup, jobs to enqueue. The shared Redis, connections
//! and private servers come from wa-testkit.

use serde_json::value::RawValue;
use wa_queue::{JobKind, NewJob, QueueName};
pub use wa_testkit::connect as conn;
pub use wa_testkit::{RedisServer, ServerOptions, redis_url};

/// A queue name no other test (or run) uses.
pub fn queue(test: &str) -> QueueName {
    QueueName::new(wa_testkit::unique(test)).unwrap()
}

/// Every key of `q` (seen markers included).
pub async fn keys(url: &str, q: &QueueName) -> Vec<String> {
    let mut c = conn(url).await;
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!(
                "{}*",
                q.base().replace('{', "\\{").replace('}', "\\}")
            ))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        out.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out.sort();
    out
}

/// Consumer settings for tests: a 2 s lease, 100 ms blocking waits, quick retries without
/// jitter.
pub fn fast_opts() -> wa_queue::ConsumerOptions {
    let mut o = wa_queue::ConsumerOptions::default();
    o.lease = std::time::Duration::from_millis(2000);
    o.block = std::time::Duration::from_millis(100);
    o.backoff_base = std::time::Duration::from_millis(20);
    o.backoff_max = std::time::Duration::from_millis(200);
    o.jitter = false;
    o
}

/// Whether `key` holds dedup markers: a slot's header or bucket (`dedup:`) or an old-layout
/// `seen:` key.
pub fn is_marker_key(key: &str) -> bool {
    key.contains(":dedup:") || key.contains(":seen:")
}

/// `q`'s dedup buckets (`dedup:<slot>/<b>`, sets), without the slots' headers (`dedup:<slot>`).
pub async fn buckets(url: &str, q: &QueueName) -> Vec<String> {
    let dedup = q.dedup();
    keys(url, q)
        .await
        .into_iter()
        .filter(|k| {
            k.strip_prefix(&dedup)
                .is_some_and(|rest| rest.contains('/'))
        })
        .collect()
}

/// The dedup markers `q` holds: members of its buckets (less the 0 each keeps) plus
/// old-layout `seen:` keys.
pub async fn markers(url: &str, q: &QueueName) -> usize {
    let mut c = conn(url).await;
    let mut n = 0;
    for b in buckets(url, q).await {
        let len: usize = redis::cmd("SCARD")
            .arg(&b)
            .query_async(&mut c)
            .await
            .unwrap();
        n += len - 1;
    }
    let seen = keys(url, q).await;
    n + seen.iter().filter(|k| k.contains(":seen:")).count()
}

/// Redis's clock, whole seconds (`TIME`): what `enqueue.lua` files jobs without a timestamp by.
pub async fn redis_now(url: &str) -> u64 {
    let (secs, _): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut conn(url).await)
        .await
        .unwrap();
    secs
}

/// The slot `enqueue.lua` files a job without a timestamp and with marker TTL `ttl` seconds
/// under at `now` (Redis's clock) shifted by `back` slots: `s<step>.<index>`, step =
/// ceil(ttl / 8), as the contract defines it.
pub fn clock_slot(ttl: u64, now: u64, back: u64) -> String {
    let step = ttl.div_ceil(8);
    format!("s{step}.{}", now / step - back)
}

/// The TTL, in seconds, of `q`'s bucket 0 of `slot` (`m<minute>` or `s<step>.<index>`); -2
/// when it does not exist.
pub async fn bucket_ttl(url: &str, q: &QueueName, slot: &str) -> i64 {
    redis::cmd("TTL")
        .arg(format!("{}{slot}/0", q.dedup()))
        .query_async(&mut conn(url).await)
        .await
        .unwrap()
}

/// Asserts that `q` has no key left but dedup markers and the `counts` hash (nothing in hand,
/// no consumer, nothing pending, delayed or dead), then deletes every key of `q`.
pub async fn assert_only_markers_left(url: &str, q: &QueueName) {
    let left: Vec<String> = keys(url, q)
        .await
        .into_iter()
        .filter(|k| !is_marker_key(k) && *k != q.counts())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    cleanup(url, q).await;
}

/// Deletes every key of `q`.
pub async fn cleanup(url: &str, q: &QueueName) {
    wa_testkit::delete_matching(url, &format!("{}*", q.base()));
}

pub fn payload(n: usize) -> Box<RawValue> {
    RawValue::from_string(format!(
        r#"{{"n":{n},"text":{{"body":"caf\u00e9 \/ {n}"}}}}"#
    ))
    .unwrap()
}

pub fn job<'a>(id: String, p: &'a RawValue) -> NewJob<'a> {
    let mut j = NewJob::new(id, JobKind::Message, p);
    j.envelope.wamid = Some(j.id.clone());
    j
}

/// A redis-server of this test's own with an fsync-always AOF, so a killed and restarted
/// server still has everything it acknowledged.
pub fn private_redis() -> RedisServer {
    RedisServer::start(ServerOptions {
        aof: true,
        ..ServerOptions::default()
    })
}
