//! The dedup markers' buckets: old-layout markers honoured, bursts that stay listpacks, paths
//! that live as long as the markers under them, jobs without a timestamp across midnight.

use std::time::Duration;

use ring::digest::{SHA256, digest};
use wa_queue::{Enqueued, NewJob, Producer, ProducerOptions, QueueName};

use crate::support::{cleanup, conn, job, keys, markers, payload, queue, redis_url};

/// A marker's digest (bytes 0..8 of the id's SHA-256) and route (bytes 8..16 in hex), as the
/// contract defines them.
fn digest_and_route(id: &str) -> (Vec<u8>, String) {
    let hash = digest(&SHA256, id.as_bytes());
    let hash = hash.as_ref();
    let route = hash[8..16].iter().map(|b| format!("{b:02x}")).collect();
    (hash[..8].to_vec(), route)
}

/// A job stamped at `timestamp` (seconds, as Meta sends it).
fn at<'a>(id: String, timestamp: u64, p: &'a serde_json::value::RawValue) -> NewJob<'a> {
    let mut j = job(id, p);
    j.timestamp = Some(timestamp.to_string().into());
    j
}

fn producer(q: &QueueName) -> Producer {
    let mut opts = ProducerOptions::default();
    opts.timeout = Duration::from_secs(10);
    Producer::new(redis_url(), q.clone(), opts).unwrap()
}

async fn ttl(key: &str) -> i64 {
    redis::cmd("TTL")
        .arg(key)
        .query_async(&mut conn(&redis_url()).await)
        .await
        .unwrap()
}

/// After an upgrade, a marker the old layout wrote (`seen:<id>`, SET EX) still makes a
/// redelivery a duplicate, and nothing is pushed for it.
#[tokio::test]
async fn old_layout_markers_are_honoured() {
    let url = redis_url();
    let q = queue("oldmarker");
    let mut c = conn(&url).await;
    let _: () = redis::cmd("SET")
        .arg(q.seen("wamid.before"))
        .arg("1")
        .arg("EX")
        .arg(3600)
        .query_async(&mut c)
        .await
        .unwrap();
    let p = payload(1);
    let out = producer(&q)
        .enqueue(&[
            at("wamid.before".into(), 1_717_000_000, &p),
            at("wamid.after".into(), 1_717_000_000, &p),
        ])
        .await
        .unwrap();
    assert_eq!(out, [Enqueued::Duplicate, Enqueued::New]);
    let len: usize = redis::cmd("LLEN")
        .arg(q.pending())
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(len, 1);
    cleanup(&url, &q).await;
}

/// 3 000 notifications with the same timestamp, from concurrent callers: each is new once and
/// a duplicate when redelivered, and every bucket stays within 128 entries, a listpack.
#[tokio::test]
async fn a_burst_in_one_minute_stays_in_listpacks() {
    let url = redis_url();
    let q = queue("burst");
    let producer = producer(&q);
    let p = payload(1);
    let ids: Vec<String> = (0..3000).map(|i| format!("wamid.{i}")).collect();
    for expect in [Enqueued::New, Enqueued::Duplicate] {
        let calls = ids.chunks(50).map(|chunk| {
            let jobs: Vec<_> = chunk
                .iter()
                .map(|id| at(id.clone(), 1_717_000_000, &p))
                .collect();
            let producer = producer.clone();
            async move { producer.enqueue(&jobs).await.unwrap() }
        });
        let outs = futures_util::future::join_all(calls).await;
        assert!(outs.iter().flatten().all(|o| *o == expect), "{expect:?}");
    }
    assert_eq!(markers(&url, &q).await, 3000);
    let mut c = conn(&url).await;
    let buckets: Vec<String> = keys(&url, &q)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&q.dedup()))
        .collect();
    assert!(buckets.len() > 3000 / 128, "{}", buckets.len());
    for b in &buckets {
        let (n, encoding): (usize, String) = redis::pipe()
            .cmd("HLEN")
            .arg(b)
            .cmd("OBJECT")
            .arg("ENCODING")
            .arg(b)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(n <= 128 && encoding == "listpack", "{b}: {n} {encoding}");
        assert!(ttl(b).await > 7 * 24 * 3600, "{b}");
    }
    cleanup(&url, &q).await;
}

/// A marker that goes below a full bucket renews that bucket too, so the walk that finds the
/// marker again is intact for the marker's whole TTL.
#[tokio::test]
async fn a_full_bucket_on_the_path_lives_as_long_as_the_marker() {
    let url = redis_url();
    let q = queue("path");
    let mut c = conn(&url).await;
    let top = format!("{}m1:", q.dedup());
    let mut fill = redis::cmd("HSET");
    fill.arg(&top);
    for i in 0..128u32 {
        fill.arg(format!("filler{i:02}")).arg("1");
    }
    let _: () = fill.query_async(&mut c).await.unwrap();
    let _: () = redis::cmd("EXPIRE")
        .arg(&top)
        .arg(100)
        .query_async(&mut c)
        .await
        .unwrap();
    let p = payload(1);
    let producer = producer(&q);
    let j = at("wamid.deep".into(), 60, &p);
    assert_eq!(
        producer.enqueue(std::slice::from_ref(&j)).await.unwrap(),
        [Enqueued::New]
    );
    let (digest, route) = digest_and_route("wamid.deep");
    let below = format!("{top}{}", &route[..1]);
    let there: bool = redis::cmd("HEXISTS")
        .arg(&below)
        .arg(&digest)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(there, "the marker is not in {below}");
    assert!(ttl(&top).await > 7 * 24 * 3600);
    assert_eq!(producer.enqueue(&[j]).await.unwrap(), [Enqueued::Duplicate]);
    cleanup(&url, &q).await;
}

/// A job without a timestamp is filed under today's slot, and a marker from yesterday's slot
/// (its TTL still covers it) makes it a duplicate: dedup does not stop at midnight.
#[tokio::test]
async fn jobs_without_a_timestamp_are_found_across_midnight() {
    let url = redis_url();
    let q = queue("midnight");
    let mut c = conn(&url).await;
    let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
    let (digest, _) = digest_and_route("event.1");
    let _: () = redis::cmd("HSET")
        .arg(format!("{}d{}:", q.dedup(), secs / 86_400 - 1))
        .arg(&digest)
        .arg("1")
        .query_async(&mut c)
        .await
        .unwrap();
    let p = payload(1);
    let out = producer(&q)
        .enqueue(&[job("event.1".into(), &p), job("event.2".into(), &p)])
        .await
        .unwrap();
    assert_eq!(out, [Enqueued::Duplicate, Enqueued::New]);
    cleanup(&url, &q).await;
}
