//! The dedup markers' buckets: old-layout markers honoured until none can be left, busy
//! minutes that stay intsets with every marker in the bucket its route names, slots renewed
//! whole, the window of jobs without a timestamp, shards, the queue's hash tag on every bucket.
//!
//! Over 500 lines: ten independent tests of one layout, each on a queue of its own, sharing
//! the helpers that check a slot against the contract.

use std::time::{Duration, Instant};

use ring::digest::{SHA256, digest};
use wa_queue::{Enqueued, NewJob, Producer, ProducerOptions, QueueName, SCRIPTS};

use crate::support::{
    buckets, cleanup, clock_slot, conn, job, keys, markers, payload, queue, redis_now, redis_url,
};

/// A marker as the contract defines it: bytes 0..8 of the id's SHA-256, a signed big-endian
/// integer (0 taken as 1), in decimal.
fn marker(id: &str) -> String {
    let hash = digest(&SHA256, id.as_bytes());
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&hash.as_ref()[..8]);
    match i64::from_be_bytes(bytes) {
        0 => "1".into(),
        d => d.to_string(),
    }
}

/// A marker's route as the contract defines it: |marker| mod 10^6, mod 2^15.
fn route(marker: &str) -> u64 {
    marker.trim_start_matches('-').parse::<u64>().unwrap() % 1_000_000 % 32_768
}

/// The bucket of a slot of `n` buckets that a route names (linear hashing).
fn bucket_of(route: u64, n: u64) -> u64 {
    let low = 1u64 << (63 - n.leading_zeros());
    let b = route % (2 * low);
    if b >= n { b - low } else { b }
}

/// A slot's header: (buckets, markers, expiry).
async fn header(q: &QueueName, slot: &str) -> (u64, u64, u64) {
    let head: String = redis::cmd("GET")
        .arg(format!("{}{slot}", q.dedup()))
        .query_async(&mut conn(&redis_url()).await)
        .await
        .unwrap();
    let f: Vec<u64> = head.split(' ').map(|x| x.parse().unwrap()).collect();
    (f[0], f[1], f[2])
}

/// Checks every bucket of `q`'s `slot` against its header: no more buckets than it says (a
/// bucket is made when its first marker lands), each an intset of at most 512 holding 0 and
/// only markers whose route names it, as many markers as it says, and every key of the slot
/// with a TTL above `min_ttl` seconds.
async fn check_slot(q: &QueueName, slot: &str, min_ttl: i64) {
    let url = redis_url();
    let mut c = conn(&url).await;
    let (n, count, _) = header(q, slot).await;
    let prefix = format!("{}{slot}/", q.dedup());
    let mine: Vec<String> = buckets(&url, q)
        .await
        .into_iter()
        .filter(|b| b.starts_with(&prefix))
        .collect();
    assert!(
        mine.len() as u64 <= n,
        "{slot}: {} buckets of {n}",
        mine.len()
    );
    let mut total = 0;
    for key in mine {
        let b: u64 = key[prefix.len()..].parse().unwrap();
        assert!(b < n, "{key} beyond the slot's {n} buckets");
        let (members, encoding, ttl): (Vec<String>, String, i64) = redis::pipe()
            .cmd("SMEMBERS")
            .arg(&key)
            .cmd("OBJECT")
            .arg("ENCODING")
            .arg(&key)
            .cmd("TTL")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(
            members.len() <= 512 && encoding == "intset",
            "{key}: {} {encoding}",
            members.len()
        );
        assert!(ttl > min_ttl, "{key}: ttl {ttl}");
        assert!(members.iter().any(|m| m == "0"), "{key} lacks its 0");
        for m in members.iter().filter(|m| *m != "0") {
            assert_eq!(bucket_of(route(m), n), b, "{m} in {key}");
        }
        total += members.len() as u64 - 1;
    }
    assert_eq!(total, count, "{slot}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{}{slot}", q.dedup()))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > min_ttl, "{slot} header: ttl {ttl}");
}

/// A job stamped at `timestamp` (seconds, as Meta sends it).
fn at<'a>(id: String, timestamp: u64, p: &'a serde_json::value::RawValue) -> NewJob<'a> {
    let mut j = job(id, p);
    j.envelope.timestamp = Some(timestamp.to_string().into());
    j
}

fn producer(q: &QueueName) -> Producer {
    let mut opts = ProducerOptions::default();
    opts.timeout = Duration::from_secs(10);
    Producer::new(redis_url(), q.clone(), opts).unwrap()
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

/// Sets `key` to 1 with `ttl` seconds to live, as v0.1.0 wrote its markers (`None`: no expiry).
async fn set_old_marker(url: &str, key: &str, ttl: Option<u64>) {
    let mut c = redis::cmd("SET");
    c.arg(key).arg("1");
    if let Some(ttl) = ttl {
        c.arg("EX").arg(ttl);
    }
    let _: () = c.query_async(&mut conn(url).await).await.unwrap();
}

/// `q`'s record of when no `seen:` key can be left, if any.
async fn seen_until(url: &str, q: &QueueName) -> Option<u64> {
    redis::cmd("GET")
        .arg(q.seen_until())
        .query_async(&mut conn(url).await)
        .await
        .unwrap()
}

/// A queue without any v0.1.0 marker: before the look through the keys the script looks for
/// them (one set meanwhile is honoured), and once the look has found none it stops at once (one
/// set afterwards, which no real version would write, is no longer looked for).
#[tokio::test]
async fn old_markers_are_no_longer_looked_for_once_none_can_be_left() {
    let url = redis_url();
    let q = queue("oldnone");
    let p = payload(1);
    let producer = producer(&q);
    assert_eq!(
        producer
            .enqueue(&[at("wamid.first".into(), 1_717_000_000, &p)])
            .await
            .unwrap(),
        [Enqueued::New]
    );
    assert_eq!(seen_until(&url, &q).await, None, "no record before a look");
    set_old_marker(&url, &q.seen("wamid.early"), Some(3600)).await;
    let out = producer
        .enqueue(&[at("wamid.early".into(), 1_717_000_000, &p)])
        .await
        .unwrap();
    assert_eq!(
        out,
        [Enqueued::Duplicate],
        "looked for while there is no record"
    );
    let _: () = redis::cmd("DEL")
        .arg(q.seen("wamid.early"))
        .query_async(&mut conn(&url).await)
        .await
        .unwrap();

    let before = redis_now(&url).await;
    producer.retire_old_markers().await.unwrap();
    let record = seen_until(&url, &q)
        .await
        .expect("the look writes a record");
    assert!(
        record >= before && record <= redis_now(&url).await,
        "none found: now"
    );
    set_old_marker(&url, &q.seen("wamid.late"), Some(3600)).await;
    let out = producer
        .enqueue(&[at("wamid.late".into(), 1_717_000_000, &p)])
        .await
        .unwrap();
    assert_eq!(out, [Enqueued::New], "no longer looked for");
    producer.retire_old_markers().await.unwrap();
    assert_eq!(
        seen_until(&url, &q).await,
        Some(record),
        "a record is never written again"
    );
    cleanup(&url, &q).await;
}

/// A queue with v0.1.0 markers: the look records a time no earlier than the last of them
/// expires, and until then they are honoured (one of an id the script must read from the job's
/// JSON, with a quote in it, too); a marker without an expiry leaves no record at all.
#[tokio::test]
async fn old_markers_are_looked_for_until_the_last_one_expires() {
    let url = redis_url();
    let q = queue("oldlive");
    let p = payload(1);
    let quoted = r#"wamid."quoted\"#;
    set_old_marker(&url, &q.seen("wamid.short"), Some(600)).await;
    set_old_marker(&url, &q.seen(quoted), Some(7200)).await;
    let producer = producer(&q);
    let before = redis_now(&url).await;
    producer.retire_old_markers().await.unwrap();
    let record = seen_until(&url, &q)
        .await
        .expect("the look writes a record");
    assert!(
        record > before + 7200,
        "after the last marker expires: {record}"
    );
    assert!(
        record <= redis_now(&url).await + 7202,
        "not much later: {record}"
    );
    let out = producer
        .enqueue(&[
            at("wamid.short".into(), 1_717_000_000, &p),
            at(quoted.into(), 1_717_000_000, &p),
            at("wamid.new".into(), 1_717_000_000, &p),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        [Enqueued::Duplicate, Enqueued::Duplicate, Enqueued::New]
    );

    let kept = queue("oldkept");
    set_old_marker(&url, &kept.seen("wamid.kept"), None).await;
    let producer = self::producer(&kept);
    producer.retire_old_markers().await.unwrap();
    assert_eq!(
        seen_until(&url, &kept).await,
        None,
        "a marker that never expires: no record"
    );
    let out = producer
        .enqueue(&[at("wamid.kept".into(), 1_717_000_000, &p)])
        .await
        .unwrap();
    assert_eq!(out, [Enqueued::Duplicate]);
    cleanup(&url, &q).await;
    cleanup(&url, &kept).await;
}

/// 20 000 notifications with the same timestamp, from concurrent callers: each is new once and
/// a duplicate when redelivered, the slot splits into buckets that all stay intsets, and every
/// marker is in the one bucket its route names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_minute_stays_in_intsets() {
    let url = redis_url();
    let q = queue("busy");
    let producer = producer(&q);
    let p = payload(1);
    let ids: Vec<String> = (0..20_000).map(|i| format!("wamid.{i}")).collect();
    for expect in [Enqueued::New, Enqueued::Duplicate] {
        let calls = ids.chunks(100).map(|chunk| {
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
    assert_eq!(markers(&url, &q).await, 20_000);
    let (n, count, _) = header(&q, "m28616666").await;
    assert_eq!(count, 20_000);
    assert!(n >= 20_000 / 200, "{n} buckets");
    check_slot(&q, "m28616666", 7 * 24 * 3600).await;
    cleanup(&url, &q).await;
}

/// A minute's slot starts with the buckets the minute before needed (ceil(markers / 200)), so
/// that a steady rate needs no split: its buckets are made as markers land in them, every
/// marker is where its route says, and redeliveries to both minutes are all duplicates.
#[tokio::test]
async fn a_minute_starts_with_the_buckets_the_minute_before_needed() {
    let url = redis_url();
    let q = queue("steady");
    let producer = producer(&q);
    let p = payload(1);
    let minutes = [(1_717_000_000, "m28616666"), (1_717_000_060, "m28616667")];
    for (stamp, slot) in minutes {
        let ids: Vec<String> = (0..3_000).map(|i| format!("wamid.{stamp}.{i}")).collect();
        let first = producer
            .enqueue(&[at(ids[0].clone(), stamp, &p)])
            .await
            .unwrap();
        assert_eq!(first, [Enqueued::New]);
        let (n, _, _) = header(&q, slot).await;
        if slot == "m28616667" {
            assert_eq!(n, 3_000 / 200, "sized from the minute before");
        } else {
            assert_eq!(n, 1, "no minute before");
        }
        for expect in [Enqueued::New, Enqueued::Duplicate] {
            for chunk in ids[1..].chunks(100) {
                let jobs: Vec<_> = chunk.iter().map(|id| at(id.clone(), stamp, &p)).collect();
                let out = producer.enqueue(&jobs).await.unwrap();
                assert!(out.iter().all(|o| *o == expect), "{slot} {expect:?}");
            }
            if expect == Enqueued::New {
                // (redeliveries may split further: a call splits as if all its jobs were new)
                let (n, count, _) = header(&q, slot).await;
                assert_eq!((n, count), (3_000 / 200, 3_000), "{slot}");
            }
        }
        check_slot(&q, slot, 7 * 24 * 3600).await;
    }
    assert_eq!(markers(&url, &q).await, 6_000);
    cleanup(&url, &q).await;
}

/// A marker that must live longer than its slot's expiry renews every bucket of the slot (a
/// split may have moved any marker into any of them), and the older markers stay duplicates.
#[tokio::test]
async fn a_late_marker_renews_its_whole_slot() {
    let url = redis_url();
    let q = queue("renew");
    let producer = producer(&q);
    let p = payload(1);
    let early: Vec<_> = (0..1000)
        .map(|i| at(format!("wamid.{i}"), 60, &p))
        .collect();
    assert!(
        producer
            .enqueue(&early)
            .await
            .unwrap()
            .iter()
            .all(|o| *o == Enqueued::New)
    );
    // As if the slot had been marked long ago: 100 s left on its header and every bucket.
    let (n, count, _) = header(&q, "m1").await;
    assert!(n > 1, "{n} buckets");
    let soon = redis_now(&url).await + 100;
    let mut c = conn(&url).await;
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(format!("{}m1", q.dedup()))
        .arg(format!("{n} {count} {soon}"))
        .arg("EXAT")
        .arg(soon)
        .ignore();
    for b in 0..n {
        pipe.cmd("EXPIREAT")
            .arg(format!("{}m1/{b}", q.dedup()))
            .arg(soon)
            .ignore();
    }
    let _: () = pipe.query_async(&mut c).await.unwrap();
    check_slot(&q, "m1", 90).await;
    assert_eq!(
        producer
            .enqueue(&[at("wamid.late".into(), 60, &p)])
            .await
            .unwrap(),
        [Enqueued::New]
    );
    check_slot(&q, "m1", 7 * 24 * 3600).await;
    assert!(
        producer
            .enqueue(&early)
            .await
            .unwrap()
            .iter()
            .all(|o| *o == Enqueued::Duplicate)
    );
    cleanup(&url, &q).await;
}

/// Four shards on one Redis, a busy minute: each shard's slot lives under its own hash tag,
/// stays intsets with every marker where its route says, and a redelivery of every id, routed
/// to the same shards, is all duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_minute_over_shards() {
    let url = redis_url();
    let q = queue("busyshards").with_shards(4).unwrap();
    let producer = producer(&q);
    let p = payload(1);
    let ids: Vec<String> = (0..8000).map(|i| format!("wamid.{i}")).collect();
    for expect in [Enqueued::New, Enqueued::Duplicate] {
        let calls = ids.chunks(200).map(|chunk| {
            let jobs: Vec<_> = chunk.iter().map(|id| at(id.clone(), 120, &p)).collect();
            let producer = producer.clone();
            async move { producer.enqueue(&jobs).await.unwrap() }
        });
        let outs = futures_util::future::join_all(calls).await;
        assert!(outs.iter().flatten().all(|o| *o == expect), "{expect:?}");
    }
    let mut total = 0;
    for shard in q.shard_names() {
        assert!(
            keys(&url, &shard)
                .await
                .iter()
                .any(|k| k.starts_with(&shard.dedup()))
        );
        check_slot(&shard, "m2", 7 * 24 * 3600).await;
        total += markers(&url, &shard).await;
    }
    assert_eq!(total, 8000);
    for shard in q.shard_names() {
        cleanup(&url, &shard).await;
    }
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
    // Each marker planted as a producer writes a new slot: a header and bucket 0.
    for (id, back) in [("event.oldest", 8), ("event.older", 9)] {
        let slot = format!("{}{}", q.dedup(), clock_slot(ttl, now, back));
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(&slot)
            .arg(format!("1 1 {}", now + 3600))
            .arg("EXAT")
            .arg(now + 3600)
            .cmd("SADD")
            .arg(format!("{slot}/0"))
            .arg("0")
            .arg(marker(id))
            .cmd("EXPIREAT")
            .arg(format!("{slot}/0"))
            .arg(now + 3600)
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
            .arg("1:60:m1")
            .arg("{}")
            .arg(marker("wamid.1"))
            .query_async::<String>(&mut c)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("hash tag"), "{base}: {e}");
    }
    assert!(keys(&url, &q).await.is_empty());
    assert!(keys(&url, &other).await.is_empty());
}

/// One call whose jobs change slot and TTL from one to the next, a slot coming back after
/// another and a job without a timestamp among them, goes to the script as runs: every job's
/// outcome is in its place (a repeat within the call and one of an earlier call are
/// duplicates), pending holds the new jobs in call order, and every slot checks out.
#[tokio::test]
async fn a_call_of_many_runs_answers_each_job_in_its_place() {
    let url = redis_url();
    let q = queue("runs");
    let producer = producer(&q);
    let p = payload(1);
    let before = [at("r.early".into(), 60, &p)];
    assert_eq!(producer.enqueue(&before).await.unwrap(), [Enqueued::New]);
    let mut short = at("r.short".into(), 60, &p);
    short.dedup_ttl = Some(Duration::from_secs(120));
    let jobs = [
        at("r.a".into(), 60, &p),
        at("r.b".into(), 61, &p),
        at("r.c".into(), 120, &p),
        at("r.a".into(), 60, &p),
        job("r.clock".into(), &p),
        at("r.early".into(), 60, &p),
        short,
        at("r.d".into(), 119, &p),
    ];
    let out = producer.enqueue(&jobs).await.unwrap();
    use Enqueued::{Duplicate, New};
    assert_eq!(out, [New, New, New, Duplicate, New, Duplicate, New, New]);
    let pending: Vec<String> = redis::cmd("LRANGE")
        .arg(q.pending())
        .arg(0)
        .arg(-1)
        .query_async(&mut conn(&url).await)
        .await
        .unwrap();
    // LPUSH: the newest on the left
    let ids: Vec<String> = pending
        .iter()
        .rev()
        .map(|j| {
            serde_json::from_str::<serde_json::Value>(j).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        ids,
        ["r.early", "r.a", "r.b", "r.c", "r.clock", "r.short", "r.d"]
    );
    for slot in ["m1", "m2"] {
        check_slot(&q, slot, 60).await;
    }
    assert_eq!(header(&q, "m1").await.1, 5);
    assert_eq!(header(&q, "m2").await.1, 1);
    assert_eq!(markers(&url, &q).await, 7);
    cleanup(&url, &q).await;
}
