//! Measures the Redis memory a dedup marker costs (`INFO memory`), in the layout the producer
//! writes (buckets and their slots' headers) and, for comparison, as the old layout's `SET NX EX`
//! keys. A benchmark, not a test: it prints figures.
//!
//! Run with (release build; use a Redis of its own, the figure is the change of `used_memory`):
//!     cargo run -p wa-queue --release --example dedup_memory -- [markers] [per-second]...
//! `bench/dedup-memory.sh` starts a private redis-server and runs it for a few rates.
//!
//! The jobs carry timestamps `per-second` apart at the given rate, as Meta's notifications
//! do, and are enqueued through the real [`Producer`] in calls of 100; pending is emptied
//! after each call, so only the markers remain. Every key is deleted at the end.

use std::time::Duration;

use serde_json::value::RawValue;
use wa_queue::{JobKind, NewJob, Producer, ProducerOptions, QueueName};

/// Jobs per enqueue call.
const CALL: usize = 100;
/// Timestamp of the first job (seconds).
const START: u64 = 1_717_000_000;

async fn used_memory(c: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(c)
        .await
        .expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

/// Deletes every key under `pattern`.
async fn delete(c: &mut redis::aio::MultiplexedConnection, pattern: &str) {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(c)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(keys)
                .query_async(c)
                .await
                .expect("UNLINK");
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// The same wamid shape as Meta's, numbered.
fn wamid(i: usize) -> String {
    format!("wamid.HBgLMTY1MDM4NzQzMzIVAgASGBQzQTRBNjU5OUFFRTAz{i:010}")
}

/// Bytes per marker in the bucket layout, and how many buckets it made.
async fn buckets(
    url: &str,
    c: &mut redis::aio::MultiplexedConnection,
    n: usize,
    rate: f64,
) -> (f64, usize) {
    let q = QueueName::new(format!("bench-dedup-{:08x}", rand::random::<u32>())).unwrap();
    let mut opts = ProducerOptions::default();
    opts.timeout = Duration::from_secs(30);
    let producer = Producer::new(url, q.clone(), opts).unwrap();
    let payload = RawValue::from_string("{}".into()).unwrap();
    let before = used_memory(c).await;
    for from in (0..n).step_by(CALL) {
        let ids: Vec<(String, String)> = (from..(from + CALL).min(n))
            .map(|i| (wamid(i), (START + (i as f64 / rate) as u64).to_string()))
            .collect();
        let jobs: Vec<NewJob<'_>> = ids
            .iter()
            .map(|(id, ts)| {
                let mut j = NewJob::new(id.as_str(), JobKind::Message, &payload);
                j.envelope.timestamp = Some(ts.as_str().into());
                j
            })
            .collect();
        producer.enqueue(&jobs).await.expect("enqueue");
        let _: () = redis::cmd("DEL")
            .arg(q.pending())
            .query_async(c)
            .await
            .unwrap();
    }
    let after = used_memory(c).await;
    // The buckets (`dedup:<slot>/<b>`), not the slots' headers.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*/*", q.dedup()))
        .query_async(c)
        .await
        .unwrap();
    delete(
        c,
        &format!("{}*", q.base().replace('{', "\\{").replace('}', "\\}")),
    )
    .await;
    ((after - before) as f64 / n as f64, keys.len())
}

/// Bytes per marker as the old layout's keys (`SET <prefix>:{Q}:seen:<id> 1 NX EX <8 days>`).
async fn keys(c: &mut redis::aio::MultiplexedConnection, n: usize) -> f64 {
    let q = QueueName::new(format!("bench-seen-{:08x}", rand::random::<u32>())).unwrap();
    let before = used_memory(c).await;
    for from in (0..n).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in from..(from + 1000).min(n) {
            pipe.cmd("SET")
                .arg(q.seen(&wamid(i)))
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(691_200)
                .ignore();
        }
        let _: () = pipe.query_async(c).await.expect("SET");
    }
    let after = used_memory(c).await;
    delete(
        c,
        &format!("{}*", q.base().replace('{', "\\{").replace('}', "\\}")),
    )
    .await;
    (after - before) as f64 / n as f64
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("markers"));
    let mut rates: Vec<f64> = args.map(|a| a.parse().expect("per-second rate")).collect();
    if rates.is_empty() {
        rates = vec![100.0];
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let old = keys(&mut c, n).await;
    println!("old layout (SET NX EX keys): {n} markers, {old:.1} B each");
    for rate in rates {
        let (bytes, count) = buckets(&url, &mut c, n, rate).await;
        println!(
            "buckets, timestamps at {rate}/s: {n} markers, {bytes:.1} B each, {count} buckets ({:.0} markers per bucket)",
            n as f64 / count as f64
        );
    }
}
