//! Deliveries lost with their worker: the reaper counts them in the job's `lost` field, they
//! count towards `max_attempts`, and a job lost too often goes to dead (poison jobs).

use std::time::Duration;

use wa_queue::{Admin, Consumer, DeadJob, Outcome, Producer, ProducerOptions, QueueName};

use crate::support::{assert_only_markers_left, conn, fast_opts, job, payload, queue, redis_url};

/// Lease of the consumers that "crash" in these tests.
const SHORT_LEASE: Duration = Duration::from_millis(300);

/// Takes the one pending job with a consumer that then vanishes (no ack, no shutdown), and has
/// `reaper` reap it once the lease lapsed; returns the delivery number the lost one was told.
async fn lose_once(url: &str, q: &QueueName, reaper: &Consumer) -> u32 {
    let mut o = fast_opts();
    o.lease = SHORT_LEASE;
    o.block = Duration::from_millis(50);
    o.max_attempts = reaper.options().max_attempts;
    let doomed = Consumer::connect(url, q.clone(), o).await.unwrap();
    let taken = doomed.fetch(1).await.unwrap();
    assert_eq!(taken.len(), 1);
    let number = taken[0].number();
    drop(doomed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while reaper.reap_expired().await.unwrap() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never reaped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    number
}

/// The single element of a list.
async fn only(url: &str, list: &str) -> String {
    let mut c = conn(url).await;
    let all: Vec<String> = redis::cmd("LRANGE")
        .arg(list)
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{list}: {all:?}");
    all.into_iter().next().unwrap()
}

/// The single entry of the dead list.
async fn only_dead(url: &str, q: &QueueName) -> DeadJob {
    let admin = Admin::connect(url, q.clone()).await.unwrap();
    let mut dead = admin.dead_list(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    dead.remove(0)
}

/// Purges the dead list, then asserts nothing but dedup markers is left.
async fn purge_then_nothing_left(url: &str, q: &QueueName) {
    let admin = Admin::connect(url, q.clone()).await.unwrap();
    admin.purge_dead().await.unwrap();
    assert_only_markers_left(url, q).await;
}

async fn enqueue_one(url: &str, q: &QueueName, id: &str) -> String {
    let p = payload(7);
    let producer = Producer::new(url, q.clone(), ProducerOptions::default()).unwrap();
    producer.enqueue(&[job(id.into(), &p)]).await.unwrap();
    only(url, &q.pending()).await
}

/// A job whose worker dies with it every time is told delivery numbers 1, 2, 3, and after
/// the third loss (max 3) the reaper moves it to dead, saying it was lost with its worker 3
/// times; the job's text is kept byte for byte behind the `lost` prefix.
#[tokio::test]
async fn a_job_lost_with_its_worker_too_often_goes_to_dead() {
    let url = redis_url();
    let q = queue("poison");
    let original = enqueue_one(&url, &q, "poison-1").await;
    let mut o = fast_opts();
    o.max_attempts = 3;
    let reaper = Consumer::connect(&url, q.clone(), o).await.unwrap();
    let mut numbers = Vec::new();
    for _ in 0..3 {
        numbers.push(lose_once(&url, &q, &reaper).await);
    }
    assert_eq!(numbers, [1, 2, 3]);
    let entry = only(&url, &q.dead()).await;
    assert!(entry.starts_with(r#"{"lost":3,"v":1,"#), "{entry}");
    assert!(entry.contains(&original[1..original.len() - 1]), "{entry}");
    let dead = only_dead(&url, &q).await;
    assert_eq!(dead.error.as_deref(), Some("lost with its worker 3 times"));
    assert_eq!(dead.job().unwrap().lost, 3);
    reaper.shutdown().await.unwrap();
    purge_then_nothing_left(&url, &q).await;
}

/// A lost delivery counts towards `max_attempts` for a failing handler too: lost once, then
/// two failed deliveries (numbers 2 and 3) reach the maximum of 3; the retry keeps `lost` as
/// the first field, and the dead entry says how many deliveries were lost.
#[tokio::test]
async fn lost_deliveries_count_towards_retries() {
    let url = redis_url();
    let q = queue("lost-retry");
    enqueue_one(&url, &q, "lr-1").await;
    let mut o = fast_opts();
    o.max_attempts = 3;
    let c = Consumer::connect(&url, q.clone(), o).await.unwrap();
    assert_eq!(lose_once(&url, &q, &c).await, 1);
    let second = c.fetch(1).await.unwrap();
    assert_eq!(second[0].number(), 2);
    c.retry(&second[0], "boom").await.unwrap();
    let retried: String = {
        let mut conn = conn(&url).await;
        let all: Vec<String> = redis::cmd("ZRANGE")
            .arg(q.delayed())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        all.into_iter().next().expect("a delayed retry")
    };
    assert!(retried.starts_with(r#"{"lost":1,"#), "{retried}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let third = loop {
        c.promote_due().await.unwrap();
        let got = c.fetch(1).await.unwrap();
        if !got.is_empty() {
            break got;
        }
        assert!(tokio::time::Instant::now() < deadline, "retry never due");
    };
    assert_eq!(third[0].number(), 3);
    let j = third[0].job().unwrap();
    assert_eq!((j.attempt, j.lost), (1, 1));
    c.settle(&[(&third[0], &Outcome::Retry("boom".into()))])
        .await
        .unwrap();
    let dead = only_dead(&url, &q).await;
    assert_eq!(
        dead.error.as_deref(),
        Some("boom (after 3 deliveries, 1 lost with their worker)")
    );
    c.shutdown().await.unwrap();
    purge_then_nothing_left(&url, &q).await;
}
