use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use wa_queue::{
    Consumer, ConsumerOptions, Handler, Job, Outcome, Producer, ProducerOptions, RunOptions, run,
};

use crate::support::{job, payload, private_redis, queue};

fn opts() -> ConsumerOptions {
    let mut o = ConsumerOptions::default();
    o.lease = Duration::from_secs(2);
    o.block = Duration::from_millis(200);
    o.op_timeout = Duration::from_millis(500);
    o
}

/// Drains the queue with a fresh consumer; returns the ids seen.
async fn drain(url: &str, q: &wa_queue::QueueName) -> HashSet<String> {
    let c = Consumer::connect(url, q.clone(), opts()).await.unwrap();
    let mut got = HashSet::new();
    loop {
        let batch = c.fetch(64).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for d in &batch {
            got.insert(d.job().unwrap().id().to_owned());
        }
        let items: Vec<_> = batch.iter().map(|d| (d, &Outcome::Done)).collect();
        c.settle(&items).await.unwrap();
    }
    c.shutdown().await.unwrap();
    got
}

/// Redis killed (SIGKILL) and restarted while 8 producers enqueue: calls fail meanwhile, the
/// producer reconnects by itself, and every job whose enqueue returned Ok is consumed later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_during_enqueue_loses_nothing_acknowledged() {
    let mut redis = private_redis();
    let url = redis.url();
    let q = queue("fault-enq");
    let mut po = ProducerOptions::default();
    po.timeout = Duration::from_millis(500);
    let producer = Producer::new(&url, q.clone(), po).unwrap();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let producer = producer.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let p = payload(t);
            let mut errors = 0;
            for i in 0..400 {
                let id = format!("e{t}-{i}");
                match producer.enqueue(&[job(id.clone(), &p)]).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(id);
                    }
                    Err(_) => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| redis.start_again());
    let mut errors = 0;
    for t in tasks {
        errors += t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(errors > 0, "the outage was not noticed");
    assert!(!acked.is_empty());
    // After the restart enqueue works again, once the producer has reconnected by itself (it
    // may still be backing off when the load ends: a bounded wait, not a timing).
    let p = payload(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = producer.enqueue(&[job("after".into(), &p)]).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "enqueue still failing 30 s after the restart: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = drain(&url, &q).await;
    let lost: Vec<_> = acked.difference(&got).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged jobs lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(got.contains("after"));
}

struct Collect {
    seen: Arc<Mutex<HashSet<String>>>,
    target: usize,
    done: Arc<Notify>,
}

impl Handler for Collect {
    async fn handle(&self, job: &Job, _delivery: u32) -> Outcome {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut s = self.seen.lock().unwrap();
        s.insert(job.id().to_owned());
        if s.len() >= self.target {
            self.done.notify_one();
        }
        Outcome::Done
    }
}

/// Redis killed and restarted while run() consumes: the loop reconnects with backoff and
/// every enqueued job is still handled (at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_during_consumption_loses_nothing() {
    let mut redis = private_redis();
    let url = redis.url();
    let q = queue("fault-run");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let p = payload(0);
    let n = 3000;
    let jobs: Vec<_> = (0..n).map(|i| job(format!("j{i}"), &p)).collect();
    for chunk in jobs.chunks(500) {
        producer.enqueue(chunk).await.unwrap();
    }
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let done = Arc::new(Notify::new());
    let handler = Collect {
        seen: seen.clone(),
        target: n,
        done: done.clone(),
    };
    let consumer = Consumer::connect(&url, q.clone(), opts()).await.unwrap();
    let mut ro = RunOptions::default();
    ro.concurrency = 4;
    ro.housekeeping = Duration::from_millis(100);
    let counters = ro.counters().clone();
    let stop = async move {
        let _ = tokio::time::timeout(Duration::from_secs(60), done.notified()).await;
    };
    let runner = tokio::spawn(run(consumer, handler, ro, stop));
    // Let it get going, then pull the plug.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 300 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumption never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| redis.start_again());
    let summary = tokio::time::timeout(Duration::from_secs(90), runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), n, "summary {summary:?}");
    assert!(counters.redis_errors() > 0);
}

/// A hung Redis (SIGSTOP, connections stay open) makes enqueue and ping fail with a timeout
/// instead of hanging; once it resumes, the same producer works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_times_out_then_recovers() {
    let redis = private_redis();
    let q = queue("fault-hung");
    let mut po = ProducerOptions::default();
    po.timeout = Duration::from_millis(300);
    let producer = Producer::new(redis.url(), q.clone(), po).unwrap();
    let p = payload(0);
    // The first call also connects and loads the script: on a loaded machine that can take
    // longer than the 300 ms timeout, so it may take a few tries (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = producer.enqueue(&[job("before".into(), &p)]).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no enqueue before the hang: {e}"
        );
    }
    redis.signal("STOP");
    let mut calls = Vec::new();
    for i in 0..20 {
        let producer = producer.clone();
        calls.push(tokio::spawn(async move {
            let p = payload(i);
            producer.enqueue(&[job(format!("hung{i}"), &p)]).await
        }));
    }
    for c in calls {
        // Bounded by the test's own limit, so a hang fails instead of blocking forever.
        let r = tokio::time::timeout(Duration::from_secs(10), c)
            .await
            .expect("enqueue hung");
        assert!(matches!(r.unwrap(), Err(wa_queue::QueueError::Timeout(_))));
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(10), producer.ping())
            .await
            .unwrap()
            .is_err()
    );
    redis.signal("CONT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if producer.enqueue(&[job("after".into(), &p)]).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recovery after SIGCONT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
