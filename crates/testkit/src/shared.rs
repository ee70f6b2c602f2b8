//! The shared Redis every suite uses (`REDIS_URL`), and names no other test uses in it.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::time::{Duration, Instant};

/// How long a connection to a Redis may take before the test fails.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// Keys deleted per `DEL` when a test cleans up after itself.
const DELETE_CHUNK: usize = 500;

/// The Redis the suites share (`REDIS_URL`, default `redis://127.0.0.1:6379`).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A name no other test (or run) uses: `t-<what>-<random hex>`, for queue names and prefixes
/// in the shared Redis.
pub fn unique(what: &str) -> String {
    let r = RandomState::new().hash_one((what, std::process::id(), Instant::now()));
    format!("t-{what}-{r:016x}")
}

/// An async connection to `url` that has answered a PING. Panics with a clear message when
/// Redis does not answer: these tests need a real Redis and never skip to green.
pub async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("bad Redis URL {url}: {e}"));
    let mut conn = tokio::time::timeout(CONNECT_LIMIT, client.get_multiplexed_async_connection())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "Redis at {url} did not answer in {CONNECT_LIMIT:?}: these tests need a real Redis"
            )
        })
        .unwrap_or_else(|e| {
            panic!("cannot reach Redis at {url} ({e}): these tests need a real Redis")
        });
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} refused PING: {e}"));
    assert_eq!(pong, "PONG");
    conn
}

/// Deletes every key of the Redis at `url` that matches `pattern` (a `SCAN MATCH` pattern, such
/// as `wa:{<queue>}:*`), in chunks. Blocking and best effort: for a test's `Drop`, which must
/// not panic, so a Redis that is gone is left as it is.
pub fn delete_matching(url: &str, pattern: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(CONNECT_LIMIT) else {
        return;
    };
    let keys: Vec<String> = match redis::Commands::scan_match::<_, String>(&mut conn, pattern) {
        Ok(iter) => iter.filter_map(Result::ok).collect(),
        Err(_) => return,
    };
    for chunk in keys.chunks(DELETE_CHUNK) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
    }
}
