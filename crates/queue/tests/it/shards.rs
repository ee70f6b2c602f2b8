//! A queue spread over shards on one Redis: routing, dedup across calls, draining every shard
//! fairly, and the recorded shard count.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use wa_queue::{
    Admin, Consumer, Enqueued, Handler, Job, Outcome, Producer, ProducerOptions, QueueError,
    QueueName, RunOptions, ShardBy, shard_of,
};

use crate::support::{cleanup, fast_opts, is_marker_key, job, keys, payload, queue, redis_url};

/// Records the order jobs are handled in and wakes the test once `target` were.
struct Order {
    seen: Arc<Mutex<Vec<String>>>,
    target: usize,
    done: Arc<Notify>,
}

impl Handler for Order {
    async fn handle(&self, job: &Job, _delivery: u32) -> Outcome {
        tokio::task::yield_now().await;
        let mut seen = self.seen.lock().unwrap();
        seen.push(job.id().to_owned());
        if seen.len() >= self.target {
            self.done.notify_one();
        }
        Outcome::Done
    }
}

/// Runs `consumer` with `concurrency` handlers until `target` jobs were handled; the ids in
/// the order handled.
async fn handle_all(consumer: Consumer, concurrency: usize, target: usize) -> Vec<String> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Notify::new());
    let handler = Order {
        seen: seen.clone(),
        target,
        done: done.clone(),
    };
    let mut opts = RunOptions::default();
    opts.concurrency = concurrency;
    let stop = async move {
        tokio::time::timeout(Duration::from_secs(60), done.notified())
            .await
            .expect("every job handled within a minute");
    };
    wa_queue::run(consumer, handler, opts, stop).await.unwrap();
    seen.lock().unwrap().clone()
}

/// Deletes every key of every shard of `q`, and its own.
async fn cleanup_shards(url: &str, q: &QueueName) {
    for shard in q.shard_names() {
        cleanup(url, &shard).await;
    }
    cleanup(url, q).await;
}

/// Eight shards routed by sender: each sender's jobs land in one shard, a second enqueue of
/// the same ids (in another order, so other batches) is all duplicates, the run loop drains
/// every shard, and then only dedup markers, the counts and the recorded shard count are left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_shards_by_sender_on_one_redis() {
    let url = redis_url();
    let q = queue("shards8").with_shards(8).unwrap();
    let mut opts = ProducerOptions::default();
    opts.shard_by = ShardBy::Sender;
    let producer = Producer::new(&url, q.clone(), opts).unwrap();
    let p = payload(1);
    let senders: Vec<String> = (0..20).map(|s| format!("1555000{s:04}")).collect();
    let mut jobs = Vec::new();
    for n in 0..200 {
        let mut j = job(format!("wamid.{n}"), &p);
        j.envelope.from = Some(senders[n % senders.len()].as_str().into());
        jobs.push(j);
    }
    let first = producer.enqueue(&jobs).await.unwrap();
    assert!(first.iter().all(|e| *e == Enqueued::New));
    jobs.reverse();
    let again = producer.enqueue(&jobs).await.unwrap();
    assert!(again.iter().all(|e| *e == Enqueued::Duplicate));

    let admin = Admin::connect(&url, q.clone()).await.unwrap();
    let stats = admin.stats().await.unwrap();
    assert_eq!(stats.pending, 200);
    for (s, shard) in stats.shards.iter().enumerate() {
        let routed = (0..200)
            .filter(|n| shard_of(&senders[n % senders.len()], 8) == s)
            .count() as u64;
        assert_eq!(shard.pending, routed, "shard {s}");
    }

    let consumer = Consumer::connect(&url, q.clone(), fast_opts())
        .await
        .unwrap();
    let handled = handle_all(consumer, 8, 200).await;
    assert_eq!(handled.len(), 200);
    let stats = admin.stats().await.unwrap();
    assert_eq!((stats.pending, stats.delayed, stats.dead), (0, 0, 0));
    for shard in q.shard_names() {
        let left: Vec<String> = keys(&url, &shard)
            .await
            .into_iter()
            .filter(|k| !is_marker_key(k))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    let mut own = keys(&url, &q).await;
    own.sort();
    assert_eq!(own, vec![q.counts(), q.shard_count_key()]);
    cleanup_shards(&url, &q).await;
}

/// A backlog in one shard does not starve the others: jobs that arrive in three other shards
/// after 400 in shard 0 are all handled among the first hundred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_in_one_shard_does_not_starve_the_others() {
    let url = redis_url();
    let q = queue("fair").with_shards(4).unwrap();
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let p = payload(1);
    let ids_in = |shard: usize, n: usize| -> Vec<String> {
        (0..)
            .map(|i| format!("wamid.{shard}.{i}"))
            .filter(|id| shard_of(id, 4) == shard)
            .take(n)
            .collect()
    };
    let backlog = ids_in(0, 400);
    let others: Vec<String> = (1..4).flat_map(|s| ids_in(s, 3)).collect();
    for ids in [&backlog, &others] {
        let jobs: Vec<_> = ids.iter().map(|id| job(id.clone(), &p)).collect();
        producer.enqueue(&jobs).await.unwrap();
    }
    let mut opts = fast_opts();
    opts.batch = 4;
    let consumer = Consumer::connect(&url, q.clone(), opts).await.unwrap();
    let handled = handle_all(consumer, 2, 409).await;
    let first: Vec<&String> = handled.iter().take(100).collect();
    for id in &others {
        assert!(first.contains(&id), "{id} not among the first 100 handled");
    }
    cleanup_shards(&url, &q).await;
}

/// The first sharded process records the shard count; a consumer, a producer or an admin with
/// another count is refused with `ShardCount`, and nothing is written.
#[tokio::test]
async fn another_shard_count_is_refused() {
    let url = redis_url();
    let q = queue("mismatch").with_shards(8).unwrap();
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    producer.check_shards().await.unwrap();
    for n in [1, 4] {
        let other = QueueName::new(q.name()).unwrap().with_shards(n).unwrap();
        let consumer = Consumer::connect(&url, other.clone(), fast_opts()).await;
        assert!(
            matches!(consumer, Err(QueueError::ShardCount { configured, .. }) if configured == usize::from(n))
        );
        let admin = Admin::connect(&url, other.clone()).await;
        assert!(matches!(admin, Err(QueueError::ShardCount { .. })));
        let producer = Producer::new(&url, other.clone(), ProducerOptions::default()).unwrap();
        let p = payload(1);
        let err = producer
            .enqueue(&[job("wamid.x".into(), &p)])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("set up with 8 shard"), "{err}");
        for shard in other.shard_names() {
            let written = keys(&url, &shard).await;
            assert!(
                written.iter().all(|k| *k == q.shard_count_key()),
                "{written:?}"
            );
        }
    }
    cleanup_shards(&url, &q).await;
}
