use std::time::Duration;

use wa_queue::{Enqueued, Job, Producer, ProducerOptions, QueueError};

use crate::support::{
    self, bucket_ttl, cleanup, clock_slot, conn, job, markers, payload, queue, redis_now, redis_url,
};

/// 64 producers enqueueing the same 200 ids at once push each id exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_under_64_concurrent_producers() {
    let url = redis_url();
    let q = queue("dedup64");
    for coalesce in [true, false] {
        let mut opts = ProducerOptions::default();
        opts.coalesce = coalesce;
        opts.timeout = Duration::from_secs(10);
        let producer = Producer::new(&url, q.clone(), opts).unwrap();
        let prefix = format!("c{coalesce}-");
        let mut tasks = Vec::new();
        for t in 0..64usize {
            let producer = producer.clone();
            let prefix = prefix.clone();
            tasks.push(tokio::spawn(async move {
                let p = payload(t);
                let mut news = vec![0u32; 200];
                // Each producer walks the ids in its own order, in small calls.
                let ids: Vec<usize> = (0..200).map(|i| (i + t * 7) % 200).collect();
                for chunk in ids.chunks(5) {
                    let jobs: Vec<_> = chunk
                        .iter()
                        .map(|i| job(format!("{prefix}{i}"), &p))
                        .collect();
                    let out = producer.enqueue(&jobs).await.unwrap();
                    for (i, o) in chunk.iter().zip(out) {
                        if o == Enqueued::New {
                            news[*i] += 1;
                        }
                    }
                }
                news
            }));
        }
        let mut total = vec![0u32; 200];
        for t in tasks {
            for (i, n) in t.await.unwrap().into_iter().enumerate() {
                total[i] += n;
            }
        }
        assert!(
            total.iter().all(|&n| n == 1),
            "coalesce={coalesce}: {total:?}"
        );
    }
    let mut c = conn(&url).await;
    let len: usize = redis::cmd("LLEN")
        .arg(q.pending())
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(len, 400);
    cleanup(&url, &q).await;
}

/// What lands in pending is the contract JSON, payload byte for byte, with a TTL'd marker.
#[tokio::test]
async fn pending_holds_contract_json() {
    let url = redis_url();
    let q = queue("json");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    producer.ping().await.unwrap();
    let p = payload(1);
    let j = job("wamid.1".into(), &p);
    assert_eq!(
        producer.enqueue(std::slice::from_ref(&j)).await.unwrap(),
        vec![Enqueued::New]
    );
    assert_eq!(
        producer.enqueue(std::slice::from_ref(&j)).await.unwrap(),
        vec![Enqueued::Duplicate]
    );
    let mut c = conn(&url).await;
    let raw: String = redis::cmd("LINDEX")
        .arg(q.pending())
        .arg(0)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(raw, j.to_json().unwrap());
    assert_eq!(Job::from_json(&raw).unwrap().payload().get(), p.get());
    let slot = clock_slot(
        ProducerOptions::default().dedup_ttl.as_secs(),
        redis_now(&url).await,
        0,
    );
    let ttl = bucket_ttl(&url, &q, &slot).await;
    assert!(ttl > 7 * 24 * 3600, "ttl {ttl}");
    assert_eq!(markers(&url, &q).await, 1);
    cleanup(&url, &q).await;
}

/// Duplicates inside one call: the first is new, the rest are duplicates.
#[tokio::test]
async fn duplicates_within_one_call() {
    let url = redis_url();
    let q = queue("dupcall");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let p = payload(1);
    let jobs = vec![
        job("a".into(), &p),
        job("b".into(), &p),
        job("a".into(), &p),
    ];
    let out = producer.enqueue(&jobs).await.unwrap();
    assert_eq!(out, vec![Enqueued::New, Enqueued::New, Enqueued::Duplicate]);
    // A call bigger than one coalesced batch still works (it goes alone).
    let many: Vec<_> = (0..1500).map(|i| job(format!("m{i}"), &p)).collect();
    let out = producer.enqueue(&many).await.unwrap();
    assert!(out.iter().all(|o| *o == Enqueued::New));
    cleanup(&url, &q).await;
}

/// After SCRIPT FLUSH (as after a restart) enqueue still works: NOSCRIPT falls back to EVAL.
#[tokio::test]
async fn noscript_after_script_flush() {
    let redis = support::private_redis();
    let q = queue("noscript");
    let producer = Producer::new(redis.url(), q.clone(), ProducerOptions::default()).unwrap();
    let p = payload(1);
    assert_eq!(
        producer.enqueue(&[job("a".into(), &p)]).await.unwrap(),
        vec![Enqueued::New]
    );
    let mut c = conn(&redis.url()).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        producer.enqueue(&[job("b".into(), &p)]).await.unwrap(),
        vec![Enqueued::New]
    );
    assert_eq!(
        producer.enqueue(&[job("b".into(), &p)]).await.unwrap(),
        vec![Enqueued::Duplicate]
    );
}

/// With nothing listening, Producer::new succeeds and enqueue fails within the timeout.
#[tokio::test]
async fn redis_down_is_a_quick_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut opts = ProducerOptions::default();
    opts.timeout = Duration::from_millis(500);
    let producer = Producer::new(&url, support::queue("down"), opts).unwrap();
    let p = payload(1);
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let e = producer.enqueue(&[job("a".into(), &p)]).await.unwrap_err();
        assert!(
            matches!(e, QueueError::Redis(_) | QueueError::Timeout(_)),
            "{e}"
        );
        assert!(producer.ping().await.is_err());
    }
    // Bounded, not a timing assertion on speed: six calls must not take 6 timeouts' worth.
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// A call that fails (a string where `pending` should be) leaves no marker behind, coalesced
/// or not; once the key is repaired the same jobs are enqueued as new.
#[tokio::test]
async fn failed_enqueue_leaves_no_marker() {
    let url = redis_url();
    let q = queue("nomarker");
    let p = payload(1);
    let jobs = vec![job("x".into(), &p), job("y".into(), &p)];
    let mut c = conn(&url).await;
    for coalesce in [true, false] {
        let mut opts = ProducerOptions::default();
        opts.coalesce = coalesce;
        let producer = Producer::new(&url, q.clone(), opts).unwrap();
        let _: () = redis::cmd("SET")
            .arg(q.pending())
            .arg("not a list")
            .query_async(&mut c)
            .await
            .unwrap();
        let e = producer.enqueue(&jobs).await.unwrap_err();
        assert!(matches!(e, QueueError::Redis(_)), "{e}");
        assert_eq!(markers(&url, &q).await, 0);
        let _: () = redis::cmd("DEL")
            .arg(q.pending())
            .query_async(&mut c)
            .await
            .unwrap();
        let out = producer.enqueue(&jobs).await.unwrap();
        assert_eq!(out, [Enqueued::New, Enqueued::New], "coalesce={coalesce}");
        cleanup(&url, &q).await;
    }
}

/// A job with a dedup TTL of its own gets it; the others in the same call (and in other
/// callers' requests coalesced with it) keep the producer's.
#[tokio::test]
async fn jobs_may_carry_their_own_marker_ttl() {
    let url = redis_url();
    let q = queue("ownttl");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let p = payload(1);
    // Each in a slot of its own (minutes 1, 2, 3), so each bucket's TTL is its marker's.
    let at = |id: &str, minute: u64| {
        let mut j = job(id.into(), &p);
        j.envelope.timestamp = Some((minute * 60).to_string().into());
        j
    };
    let mut short = at("short", 1);
    short.dedup_ttl = Some(Duration::from_secs(60));
    let pair = [short, at("plain", 2)];
    let alone = [at("alone", 3)];
    let (a, b) = tokio::join!(producer.enqueue(&pair), producer.enqueue(&alone));
    assert_eq!(a.unwrap(), [Enqueued::New, Enqueued::New]);
    assert_eq!(b.unwrap(), [Enqueued::New]);
    let mut ttls = Vec::new();
    for slot in ["m1", "m2", "m3"] {
        ttls.push(bucket_ttl(&url, &q, slot).await);
    }
    cleanup(&url, &q).await;
    // a bucket is given 1/64 of its TTL more (so that most calls need not renew it), from the
    // next whole second
    assert!((60..=62).contains(&ttls[0]), "{ttls:?}");
    assert!(
        ttls[1] > 7 * 24 * 3600 && ttls[2] > 7 * 24 * 3600,
        "{ttls:?}"
    );
    let mut zero = job("zero".into(), &p);
    zero.dedup_ttl = Some(Duration::from_millis(500));
    assert!(matches!(
        producer.enqueue(&[zero]).await,
        Err(QueueError::InvalidJob(_))
    ));
}
