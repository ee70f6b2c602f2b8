//! The consumer and `run` on a real Redis: order for one consumer, a crashed consumer's jobs
//! reaped, retries and their backoff, dead letters and replay, a whole run that leaves no key
//! behind, a graceful stop, panicking handlers. Over 400 lines because each test is a whole
//! scenario (enqueue, consume, then check the keys left), and they share this file's helpers.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use wa_queue::{
    Admin, Consumer, Delivery, Enqueued, Handler, Job, Outcome, Producer, ProducerOptions,
    RunOptions, run,
};

use crate::support::{
    assert_only_markers_left, cleanup, conn, fast_opts, job, keys, markers, payload, queue,
    redis_url,
};

async fn enqueue_n(producer: &Producer, prefix: &str, n: usize) -> Vec<String> {
    let p = payload(0);
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}{i}");
        let out = producer.enqueue(&[job(id.clone(), &p)]).await.unwrap();
        assert_eq!(out, vec![Enqueued::New]);
        ids.push(id);
    }
    ids
}

fn id_of(d: &Delivery) -> String {
    d.job().unwrap().id().to_owned()
}

/// One consumer sees jobs in the order they were enqueued, across batch boundaries.
#[tokio::test]
async fn fifo_for_one_consumer() {
    let url = redis_url();
    let q = queue("fifo");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let ids = enqueue_n(&producer, "f", 50).await;
    let mut o = fast_opts();
    o.batch = 7;
    let consumer = Consumer::connect(&url, q.clone(), o).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let got = consumer.fetch(7).await.unwrap();
        assert!(!got.is_empty(), "ran dry after {}", seen.len());
        assert!(got.len() <= 7);
        for d in &got {
            assert_eq!(d.number(), 1);
            seen.push(id_of(d));
            consumer.ack(d).await.unwrap();
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(consumer.shutdown().await.unwrap(), 0);
    cleanup(&url, &q).await;
}

/// A consumer that takes jobs and vanishes without ack: once its lease lapses, another
/// consumer's reaper returns them and that consumer gets every one.
#[tokio::test]
async fn crashed_consumer_jobs_are_reaped() {
    let url = redis_url();
    let q = queue("crash");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let ids: HashSet<String> = enqueue_n(&producer, "c", 10).await.into_iter().collect();
    let mut short = fast_opts();
    short.lease = Duration::from_millis(300);
    let doomed = Consumer::connect(&url, q.clone(), short.clone())
        .await
        .unwrap();
    let taken = doomed.fetch(10).await.unwrap();
    assert_eq!(taken.len(), 10);
    drop(doomed); // no ack, no shutdown: a crash

    let rescuer = Consumer::connect(&url, q.clone(), short).await.unwrap();
    let mut got = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while got.len() < 10 && tokio::time::Instant::now() < deadline {
        rescuer.reap_expired().await.unwrap();
        for d in rescuer.fetch(10).await.unwrap() {
            got.insert(id_of(&d));
            rescuer.ack(&d).await.unwrap();
        }
    }
    assert_eq!(got, ids);
    rescuer.shutdown().await.unwrap();
    // Nothing left in hand anywhere, no consumer registered.
    assert_only_markers_left(&url, &q).await;
}

async fn wait_pending(url: &str, q: &wa_queue::QueueName, consumer: &Consumer, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut c = conn(url).await;
    loop {
        consumer.promote_due().await.unwrap();
        let len: u64 = redis::cmd("LLEN")
            .arg(q.pending())
            .query_async(&mut c)
            .await
            .unwrap();
        if len >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "promotion stalled at {len}/{n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Retries come back in the order they failed, with attempt and last_error set, and each
/// retry's delay (read from the delayed zset against the server clock) doubles.
#[tokio::test]
async fn retry_order_and_backoff_growth() {
    let url = redis_url();
    let q = queue("retry");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let ids = enqueue_n(&producer, "r", 3).await;
    let mut o = fast_opts();
    o.max_attempts = 10;
    o.backoff_base = Duration::from_millis(10);
    o.backoff_max = Duration::from_secs(10);
    let consumer = Consumer::connect(&url, q.clone(), o.clone()).await.unwrap();
    let got = consumer.fetch(3).await.unwrap();
    for d in &got {
        consumer
            .retry(d, &format!("fail {}", id_of(d)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    wait_pending(&url, &q, &consumer, 3).await;
    let again = consumer.fetch(3).await.unwrap();
    assert_eq!(again.iter().map(id_of).collect::<Vec<_>>(), ids);
    for d in &again {
        let j = d.job().unwrap();
        assert_eq!(j.attempt, 1);
        assert_eq!(d.number(), 2);
        assert_eq!(j.last_error(), Some(format!("fail {}", j.id()).as_str()));
        if j.id() != ids[0] {
            consumer.ack(d).await.unwrap();
        }
    }

    // One job, failed again and again: delays 20, 40, 80, 160 ms.
    let mut d = again.into_iter().next().unwrap();
    let mut c = conn(&url).await;
    let server_ms = |t: (u64, u64)| t.0 * 1000 + t.1 / 1000;
    for delivery in 2..=5u32 {
        let before: (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
        consumer.retry(&d, "again").await.unwrap();
        let after: (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
        let scored: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(q.delayed())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(scored.len(), 1);
        let due = scored[0].1 as u64;
        let delay = o.backoff(delivery).as_millis() as u64;
        assert_eq!(delay, 10 << (delivery - 1));
        assert!(due >= server_ms(before) + delay && due <= server_ms(after) + delay);
        wait_pending(&url, &q, &consumer, 1).await;
        d = consumer.fetch(1).await.unwrap().pop().unwrap();
        assert_eq!(d.number(), delivery + 1);
    }
    consumer.ack(&d).await.unwrap();
    consumer.shutdown().await.unwrap();
    cleanup(&url, &q).await;
}

/// After max_attempts deliveries a retry goes to dead with the error, the time and the
/// payload byte for byte; replay brings it back as a fresh job.
#[tokio::test]
async fn dead_after_max_attempts_then_replay() {
    let url = redis_url();
    let q = queue("dead");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    enqueue_n(&producer, "d", 1).await;
    let mut o = fast_opts();
    o.max_attempts = 3;
    let consumer = Consumer::connect(&url, q.clone(), o).await.unwrap();
    for delivery in 1..=3 {
        wait_pending(&url, &q, &consumer, 1).await;
        let d = consumer.fetch(1).await.unwrap().pop().unwrap();
        assert_eq!(d.number(), delivery);
        consumer.retry(&d, "still broken").await.unwrap();
    }
    let admin = Admin::connect(&url, q.clone()).await.unwrap();
    let stats = admin.stats().await.unwrap();
    assert_eq!((stats.pending, stats.delayed, stats.dead), (0, 0, 1));
    let dead = admin.dead_list(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let j = dead[0].job().unwrap();
    assert_eq!(j.id(), "d0");
    assert_eq!(j.attempt, 3);
    assert_eq!(j.payload().get(), payload(0).get());
    assert!(
        dead[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("still broken")
    );
    assert!(dead[0].died_at.is_some());

    assert_eq!(admin.replay(&["nope".into()]).await.unwrap(), 0);
    assert_eq!(admin.replay(&["d0".into()]).await.unwrap(), 1);
    let d = consumer.fetch(1).await.unwrap().pop().unwrap();
    let j = d.job().unwrap();
    assert_eq!((j.attempt, j.last_error()), (0, None));
    assert_eq!(j.payload().get(), payload(0).get());
    assert!(!d.raw().contains("died_at") && !d.raw().contains("\"error\""));
    consumer.dead(&d, "by hand").await.unwrap();
    assert_eq!(
        admin.dead_list(10).await.unwrap()[0].error.as_deref(),
        Some("by hand")
    );
    assert_eq!(admin.replay_all().await.unwrap(), 1);
    let d = consumer.fetch(1).await.unwrap().pop().unwrap();
    consumer.dead(&d, "again").await.unwrap();
    assert_eq!(admin.purge_dead().await.unwrap(), 1);
    assert_eq!(admin.stats().await.unwrap().dead, 0);
    consumer.shutdown().await.unwrap();
    cleanup(&url, &q).await;
}

struct Recorder {
    seen: Arc<std::sync::Mutex<Vec<(String, u32)>>>,
    fail_first: bool,
    target: usize,
    all_seen: Arc<Notify>,
}

impl Handler for Recorder {
    async fn handle(&self, job: &Job, delivery: u32) -> Outcome {
        let n = {
            let mut s = self.seen.lock().unwrap();
            s.push((job.id().to_owned(), delivery));
            s.len()
        };
        if n >= self.target {
            self.all_seen.notify_one();
        }
        if job.id().starts_with("dead") {
            Outcome::Dead("refused".into())
        } else if self.fail_first && delivery == 1 {
            Outcome::Retry("first try fails".into())
        } else {
            Outcome::Done
        }
    }
}

/// run(): every job handled, first deliveries retried then done, unknown `v` and garbage to
/// dead without reaching the handler, and after the whole cycle (replay and purge included)
/// no key is left but the dedup markers, which carry a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_end_to_end_leaves_no_keys() {
    let url = redis_url();
    let q = queue("run");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    enqueue_n(&producer, "ok", 200).await;
    enqueue_n(&producer, "dead", 2).await;
    let mut c = conn(&url).await;
    let v2 = r#"{"v":2,"id":"future","kind":"message","payload":{"a":"\u00e9"}}"#;
    let _: () = redis::cmd("LPUSH")
        .arg(q.pending())
        .arg(v2)
        .arg("not json")
        .query_async(&mut c)
        .await
        .unwrap();

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let all_seen = Arc::new(Notify::new());
    let handler = Recorder {
        seen: seen.clone(),
        fail_first: true,
        target: 402,
        all_seen: all_seen.clone(),
    };
    let consumer = Consumer::connect(&url, q.clone(), fast_opts())
        .await
        .unwrap();
    let mut ro = RunOptions::default();
    ro.concurrency = 8;
    ro.housekeeping = Duration::from_millis(50);
    let counters = ro.counters().clone();
    let stop = {
        let all_seen = all_seen.clone();
        async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), all_seen.notified()).await;
        }
    };
    let summary = tokio::time::timeout(Duration::from_secs(60), run(consumer, handler, ro, stop))
        .await
        .expect("run did not stop")
        .unwrap();
    // 200 ok jobs: retried once, then done; 2 refused by the handler; 2 unreadable.
    assert_eq!(summary.done, 200, "{summary:?}");
    assert_eq!(summary.retried, 200);
    assert_eq!(summary.dead, 4);
    assert_eq!(summary.returned, 0);
    assert_eq!(counters.done(), 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 402);
    assert!(seen.iter().all(|(id, _)| id != "future"));
    assert_eq!(seen.iter().filter(|(_, d)| *d == 2).count(), 200);

    let admin = Admin::connect(&url, q.clone()).await.unwrap();
    let dead = admin.dead_list(10).await.unwrap();
    assert_eq!(dead.len(), 4);
    let future = dead
        .iter()
        .find(|d| d.raw().contains("\"future\""))
        .unwrap();
    assert!(
        future
            .error
            .as_deref()
            .unwrap()
            .contains("unknown contract version 2")
    );
    assert!(future.raw().contains(r#""payload":{"a":"\u00e9"}"#));
    let garbage = dead.iter().find(|d| d.raw().contains("not json")).unwrap();
    assert!(garbage.job().is_err() && garbage.died_at.is_some());

    // Replay the two refused ones and let a plain run finish them.
    assert_eq!(
        admin
            .replay(&["dead0".into(), "dead1".into()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(admin.purge_dead().await.unwrap(), 2);
    let stats = admin.stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead, stats.live_consumers), (2, 0, 0));
    assert!(stats.oldest_pending_ms.is_some());
    let consumer = Consumer::connect(&url, q.clone(), fast_opts())
        .await
        .unwrap();
    for d in consumer.fetch(10).await.unwrap() {
        consumer.ack(&d).await.unwrap();
    }
    consumer.shutdown().await.unwrap();

    let left: Vec<String> = keys(&url, &q).await;
    assert!(
        left.iter()
            .all(|k| k.starts_with(&q.dedup()) || *k == q.counts()),
        "{left:?}"
    );
    assert_eq!(markers(&url, &q).await, 202);
    let mut c = conn(&url).await;
    let done: u64 = redis::cmd("HGET")
        .arg(q.counts())
        .arg("done")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        done, 200,
        "the queue's done count: every ack of the run, none twice"
    );
    let marker = left.iter().find(|k| k.contains(":dedup:")).unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(marker)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0);
    cleanup(&url, &q).await;
}

struct Slow(Arc<AtomicU32>);

impl Handler for Slow {
    async fn handle(&self, _job: &Job, _delivery: u32) -> Outcome {
        self.0.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        Outcome::Done
    }
}

/// Stopping with handlers still running past the grace period returns their jobs (and any
/// other job in hand) to the consumers' end of pending, and removes the lease.
#[tokio::test]
async fn graceful_stop_returns_jobs() {
    let url = redis_url();
    let q = queue("stop");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let ids = enqueue_n(&producer, "s", 6).await;
    let consumer = Consumer::connect(&url, q.clone(), fast_opts())
        .await
        .unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let mut ro = RunOptions::default();
    ro.concurrency = 4;
    ro.shutdown_grace = Duration::from_millis(100);
    let s = started.clone();
    let stop = async move {
        while s.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let summary = tokio::time::timeout(
        Duration::from_secs(20),
        run(consumer, Slow(started), ro, stop),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(summary.returned, 4);
    assert_eq!(summary.done, 0);
    let admin = Admin::connect(&url, q.clone()).await.unwrap();
    let stats = admin.stats().await.unwrap();
    assert_eq!(stats.pending, 6);
    assert!(stats.processing.is_empty());
    // The returned jobs come next, oldest first, then the two never taken.
    let c = Consumer::connect(&url, q.clone(), fast_opts())
        .await
        .unwrap();
    let order: Vec<String> = c.fetch(6).await.unwrap().iter().map(id_of).collect();
    assert_eq!(order, ids);
    c.shutdown().await.unwrap();
    cleanup(&url, &q).await;
}

/// A handler that panics while making its future for ids starting "eager", panics when its
/// future runs for ids starting "lazy", and is done otherwise.
struct Panicky;

impl Handler for Panicky {
    #[allow(clippy::manual_async_fn)]
    fn handle(&self, job: &Job, _delivery: u32) -> impl Future<Output = Outcome> + Send {
        assert!(!job.id().starts_with("eager"), "eager panic (expected)");
        let lazy = job.id().starts_with("lazy");
        async move {
            assert!(!lazy, "lazy panic (expected)");
            Outcome::Done
        }
    }
}

/// A panicking handler costs its job a delivery (here the last: max_attempts 1, so dead with
/// "handler panicked (after 1 delivery)"), never the run loop, whether it panics making its future or running
/// it, and whether the loop runs it inline (one thread) or as a task (several).
async fn panics_are_retries() {
    let url = redis_url();
    let q = queue("panic");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    for prefix in ["eager", "lazy", "fine"] {
        enqueue_n(&producer, prefix, 3).await;
    }
    let mut o = fast_opts();
    o.max_attempts = 1;
    let consumer = Consumer::connect(&url, q.clone(), o).await.unwrap();
    let ro = RunOptions::default();
    let counters = ro.counters().clone();
    let stop = {
        let counters = counters.clone();
        async move {
            while counters.done() + counters.dead() < 9 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let summary = tokio::time::timeout(Duration::from_secs(60), run(consumer, Panicky, ro, stop))
        .await
        .expect("run did not stop")
        .unwrap();
    assert_eq!((summary.done, summary.dead, summary.retried), (3, 6, 0));
    let admin = Admin::connect(&url, q.clone()).await.unwrap();
    let dead = admin.dead_list(10).await.unwrap();
    assert_eq!(dead.len(), 6);
    let errors: Vec<_> = dead.iter().map(|d| d.error.clone()).collect();
    assert!(
        errors
            .iter()
            .all(|e| e.as_deref() == Some("handler panicked (after 1 delivery)")),
        "{errors:?}"
    );
    cleanup(&url, &q).await;
}

#[tokio::test]
async fn panics_are_retries_on_one_thread() {
    panics_are_retries().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_are_retries_on_two_threads() {
    panics_are_retries().await;
}

/// A handler whose future never wakes for ids starting "hang", sleeps past the time limit for
/// "late", waits a little for "wait" and is done at once otherwise.
struct Hangs;

impl Handler for Hangs {
    async fn handle(&self, job: &Job, _delivery: u32) -> Outcome {
        let id = job.id();
        if id.starts_with("hang") {
            std::future::pending::<()>().await;
        } else if id.starts_with("late") {
            tokio::time::sleep(Duration::from_secs(30)).await;
        } else if id.starts_with("wait") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Outcome::Done
    }
}

/// A handler past `handler_timeout` costs its job a delivery (here the last: dead with "handler
/// timed out after 300ms (after 1 delivery)"), even one whose future nothing will ever wake,
/// while the others of its batch finish; in batches of two, on one thread (one deadline per
/// batch) and on two (a timer per handler).
async fn timeouts_are_retries() {
    let url = redis_url();
    let q = queue("timeout");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    for prefix in ["hang", "late", "wait", "fine"] {
        enqueue_n(&producer, prefix, 3).await;
    }
    let mut o = fast_opts();
    o.max_attempts = 1;
    o.batch = 2;
    let consumer = Consumer::connect(&url, q.clone(), o).await.unwrap();
    let mut ro = RunOptions::default();
    ro.handler_timeout = Duration::from_millis(300);
    let counters = ro.counters().clone();
    let stop = {
        let counters = counters.clone();
        async move {
            while counters.done() + counters.dead() < 12 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let summary = tokio::time::timeout(Duration::from_secs(60), run(consumer, Hangs, ro, stop))
        .await
        .expect("run did not stop")
        .unwrap();
    assert_eq!((summary.done, summary.dead, summary.retried), (6, 6, 0));
    let admin = Admin::connect(&url, q.clone()).await.unwrap();
    let dead = admin.dead_list(20).await.unwrap();
    let mut ids: Vec<String> = dead
        .iter()
        .map(|d| d.job().unwrap().id().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["hang0", "hang1", "hang2", "late0", "late1", "late2"]);
    let errors: Vec<_> = dead.iter().map(|d| d.error.clone()).collect();
    assert!(
        errors
            .iter()
            .all(|e| e.as_deref() == Some("handler timed out after 300ms (after 1 delivery)")),
        "{errors:?}"
    );
    cleanup(&url, &q).await;
}

#[tokio::test]
async fn timeouts_are_retries_on_one_thread() {
    timeouts_are_retries().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_retries_on_two_threads() {
    timeouts_are_retries().await;
}
