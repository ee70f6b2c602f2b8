//! The dedup markers' buckets: old-layout markers honoured, bursts that stay listpacks, paths
//! that live as long as the markers under them, the window of jobs without a timestamp, the
//! queue's hash tag on every bucket.

use std::time::{Duration, Instant};

use ring::digest::{SHA256, digest};
use wa_queue::{Enqueued, NewJob, Producer, ProducerOptions, QueueName, SCRIPTS};

use crate::support::{
    cleanup, clock_slot, conn, job, keys, markers, payload, queue, redis_now, redis_url,
};

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

/// A job without a timestamp is looked for in every slot its TTL reaches back to (here 8 days
/// in slots of a day), and in none further back.
#[tokio::test]
async fn jobs_without_a_timestamp_are_looked_for_back_to_their_ttl() {
    let url = redis_url();
    let q = queue("clockslots");
    let ttl = ProducerOptions::default().dedup_ttl.as_secs();
    let now = redis_now(&url).await;
    let mut c = conn(&url).await;
    for (id, back) in [("event.oldest", 8), ("event.older", 9)] {
        let _: () = redis::cmd("HSET")
            .arg(format!("{}{}:", q.dedup(), clock_slot(ttl, now, back)))
            .arg(digest_and_route(id).0)
            .arg("1")
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let p = payload(1);
    let out = producer(&q)
        .enqueue(&[
            job("event.oldest".into(), &p),
            job("event.older".into(), &p),
            job("event.new".into(), &p),
        ])
        .await
        .unwrap();
    assert_eq!(out, [Enqueued::Duplicate, Enqueued::New, Enqueued::New]);
    cleanup(&url, &q).await;
}

/// A job without a timestamp and with a short TTL is a duplicate while its marker is at most
/// TTL seconds old and new again once it is TTL + step old (Redis's clock, step = ceil(TTL / 8)),
/// although other such jobs are marked in the same buckets all along: their markers do not
/// stretch its window.
#[tokio::test]
async fn jobs_without_a_timestamp_count_again_after_ttl_and_a_step() {
    const TTL: u64 = 4;
    const STEP: u64 = 1;
    let url = redis_url();
    let q = queue("eventwindow");
    let producer = producer(&q);
    let p = payload(1);
    let event = |id: String| {
        let mut j = job(id, &p);
        j.dedup_ttl = Some(Duration::from_secs(TTL));
        j
    };
    let once = |id: String| {
        let producer = producer.clone();
        let j = event(id);
        async move { producer.enqueue(&[j]).await.unwrap()[0] }
    };
    let marked_from = redis_now(&url).await;
    assert_eq!(once("event.repeat".into()).await, Enqueued::New);
    let marked_to = redis_now(&url).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut within = 0;
    for other in 0.. {
        assert_eq!(once(format!("event.other{other}")).await, Enqueued::New);
        let from = redis_now(&url).await;
        let out = once("event.repeat".into()).await;
        let to = redis_now(&url).await;
        if to - marked_from <= TTL {
            assert_eq!(out, Enqueued::Duplicate, "{}s after", to - marked_from);
            within += 1;
        }
        if from - marked_to >= TTL + STEP {
            assert_eq!(out, Enqueued::New, "{}s after", from - marked_to);
        }
        if out == Enqueued::New {
            break;
        }
        assert!(Instant::now() < deadline, "still a duplicate after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(within > 0, "no repeat was tried within the TTL");
    cleanup(&url, &q).await;
}

/// The script builds the buckets' names from the base it is given, so it refuses a base
/// without pending's hash tag (in Redis Cluster its buckets would live in another slot) and
/// writes nothing.
#[tokio::test]
async fn a_dedup_base_without_the_queues_hash_tag_is_refused() {
    let url = redis_url();
    let q = queue("tagless");
    let other = queue("tagless-other");
    let (digest, route) = digest_and_route("wamid.1");
    let enqueue = SCRIPTS
        .iter()
        .find(|(name, _)| *name == "enqueue.lua")
        .map(|(_, src)| *src)
        .unwrap();
    let mut c = conn(&url).await;
    for base in ["wa:dedup:".to_owned(), other.dedup()] {
        let e = redis::cmd("EVAL")
            .arg(enqueue)
            .arg(2)
            .arg(q.pending())
            .arg(q.seen("wamid.1"))
            .arg(&base)
            .arg("{}")
            .arg(60)
            .arg("m1")
            .arg(&route)
            .arg(&digest)
            .query_async::<Vec<i64>>(&mut c)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("hash tag"), "{base}: {e}");
    }
    assert!(keys(&url, &q).await.is_empty());
    assert!(keys(&url, &other).await.is_empty());
}
