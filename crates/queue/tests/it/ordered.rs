//! In order per sender (`ConsumerOptions::ordered`): one job of a sender at a time, in send
//! order, across retries, dead letters, several consumers and a crashed one; different senders
//! in parallel; the mode recorded and enforced. Over 400 lines because the scenarios of one
//! mode share its recorder, its random sender and its clean-up, which read best beside them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use wa_queue::{
    Admin, Consumer, ConsumerOptions, Handler, Job, Outcome, Producer, ProducerOptions, QueueError,
    QueueName, RunOptions, ShardBy,
};

use crate::support::{
    cleanup, conn, fast_opts, is_marker_key, job, keys, payload, queue, redis_url,
};

/// The queue's figures as `wa-worker stats` reads them.
async fn stats(url: &str, q: &QueueName) -> wa_queue::Stats {
    let admin = Admin::connect(url, q.clone()).await.unwrap();
    admin.stats().await.unwrap()
}

/// One delivery as a handler saw it.
#[derive(Debug, Clone)]
struct Handled {
    sender: String,
    seq: usize,
    delivery: u32,
    outcome: &'static str,
}

/// What the handlers of every consumer saw, recorded under one lock.
#[derive(Default)]
struct Record {
    /// deliveries in the order their handlers finished
    log: Vec<Handled>,
    /// handlers of each sender running now
    running: HashMap<String, usize>,
    /// a handler started while another of its sender was running
    same_sender_overlaps: usize,
    /// the most senders whose handlers ran at one moment
    most_senders_at_once: usize,
    /// jobs settled for good (done, or failed on their last delivery)
    finished: usize,
}

/// Fails some jobs: `doomed` ones on every delivery (they end in dead), others now and then
/// (retried); sleeps a little at random; records everything.
struct Recorder {
    record: Arc<Mutex<Record>>,
    doomed: HashSet<(String, usize)>,
    max_attempts: u32,
    total: usize,
    all_finished: watch::Sender<bool>,
}

/// A job's sender and place in its sender's sequence (its `text`).
fn sender_seq(job: &Job) -> (String, usize) {
    let sender = job.from().expect("every test job has a sender").to_owned();
    let seq = job.text().expect("seq").parse().expect("seq is a number");
    (sender, seq)
}

impl Handler for Recorder {
    async fn handle(&self, job: &Job, delivery: u32) -> Outcome {
        let (sender, seq) = sender_seq(job);
        {
            let mut r = self.record.lock().unwrap();
            let n = r.running.entry(sender.clone()).or_default();
            *n += 1;
            if *n > 1 {
                r.same_sender_overlaps += 1;
            }
            let at_once = r.running.values().filter(|n| **n > 0).count();
            r.most_senders_at_once = r.most_senders_at_once.max(at_once);
        }
        let pause = rand::random_range(0..3u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let fail = self.doomed.contains(&(sender.clone(), seq)) || rand::random_range(0..100) < 15;
        let mut r = self.record.lock().unwrap();
        *r.running.get_mut(&sender).unwrap() -= 1;
        let outcome = if fail { "retry" } else { "done" };
        r.log.push(Handled {
            sender,
            seq,
            delivery,
            outcome,
        });
        if !fail || delivery >= self.max_attempts {
            r.finished += 1;
            if r.finished >= self.total {
                self.all_finished.send_replace(true);
            }
        }
        if fail {
            Outcome::Retry("failed on purpose".into())
        } else {
            Outcome::Done
        }
    }
}

fn ordered_opts() -> ConsumerOptions {
    let mut o = fast_opts();
    o.ordered = true;
    o.max_attempts = 3;
    o.backoff_base = Duration::from_millis(5);
    o.backoff_max = Duration::from_millis(40);
    o.jitter = true;
    o
}

/// Deletes every key of every shard of `q`, and its own.
async fn cleanup_shards(url: &str, q: &QueueName) {
    for shard in q.shard_names() {
        cleanup(url, &shard).await;
    }
    cleanup(url, q).await;
}

/// Enqueues `per_sender` jobs for each sender (`text` = the job's place in its sender's
/// sequence), the senders interleaved at random and sent in batches of random size, each
/// sender's jobs in order.
async fn send(producer: &Producer, senders: &[String], per_sender: usize) {
    let p = payload(1);
    let mut next = vec![0usize; senders.len()];
    let mut order = Vec::new();
    while order.len() < senders.len() * per_sender {
        let s = rand::random_range(0..senders.len());
        if next[s] < per_sender {
            order.push((s, next[s]));
            next[s] += 1;
        }
    }
    let texts: Vec<String> = order.iter().map(|(_, seq)| seq.to_string()).collect();
    let mut jobs = Vec::new();
    for ((s, seq), text) in order.iter().zip(&texts) {
        let mut j = job(format!("wamid.{}.{seq}", senders[*s]), &p);
        j.envelope.from = Some(senders[*s].as_str().into());
        j.envelope.text = Some(text.as_str().into());
        jobs.push(j);
    }
    let mut rest = &jobs[..];
    while !rest.is_empty() {
        let n = rand::random_range(1..=40).min(rest.len());
        producer.enqueue(&rest[..n]).await.unwrap();
        rest = &rest[n..];
    }
}

/// 20 senders x 25 jobs over 4 shards (routed by sender), drained by three ordered consumers
/// with 8 handlers each; handlers sleep at random, fail 15 % of deliveries at random and some
/// jobs on every delivery (3 deliveries, then dead). Per sender: no two handlers ever ran at
/// once; every delivery of a job came after the last delivery of the sender's job before it
/// (so a retrying job held the later ones back); the jobs handled successfully are exactly
/// the send order without the dead ones, and the dead ones are in the dead list. Handlers of
/// different senders did run at the same time. Afterwards no hold, waiting list or job is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_sender_order_with_retries_dead_letters_and_three_consumers() {
    let url = redis_url();
    let q = queue("ordered").with_shards(4).unwrap();
    let mut popts = ProducerOptions::default();
    popts.shard_by = ShardBy::Sender;
    let producer = Producer::new(&url, q.clone(), popts).unwrap();
    let senders: Vec<String> = (0..20).map(|s| format!("1555100{s:04}")).collect();
    let per_sender = 25;
    send(&producer, &senders, per_sender).await;
    let doomed: HashSet<(String, usize)> = senders
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (0..per_sender).map(move |seq| (i, s, seq)))
        .filter(|(i, _, seq)| (i * 7 + seq) % 23 == 0)
        .map(|(_, s, seq)| (s.clone(), seq))
        .collect();
    assert!(doomed.len() >= 10);

    let opts = ordered_opts();
    let record = Arc::new(Mutex::new(Record::default()));
    let (all_finished, finished_rx) = watch::channel(false);
    let total = senders.len() * per_sender;
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let consumer = Consumer::connect(&url, q.clone(), opts.clone())
            .await
            .unwrap();
        let handler = Recorder {
            record: record.clone(),
            doomed: doomed.clone(),
            max_attempts: opts.max_attempts,
            total,
            all_finished: all_finished.clone(),
        };
        let mut ropts = RunOptions::default();
        ropts.concurrency = 8;
        ropts.housekeeping = Duration::from_millis(20);
        let mut stop = finished_rx.clone();
        runs.spawn(wa_queue::run(consumer, handler, ropts, async move {
            tokio::time::timeout(Duration::from_secs(120), stop.wait_for(|f| *f))
                .await
                .expect("every job finished within two minutes")
                .unwrap();
        }));
    }
    while let Some(r) = runs.join_next().await {
        r.unwrap().unwrap();
    }

    let r = std::mem::take(&mut *record.lock().unwrap());
    assert_eq!(
        r.same_sender_overlaps, 0,
        "two handlers of one sender ran at once"
    );
    assert!(
        r.most_senders_at_once >= 2,
        "handlers of different senders never ran at the same time"
    );
    let admin = Admin::connect(&url, q.clone()).await.unwrap();
    let dead: HashSet<String> = admin
        .dead_list(10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.job().unwrap().id().to_owned())
        .collect();
    let mut failed_for_good = 0;
    for sender in &senders {
        let mine: Vec<&Handled> = r.log.iter().filter(|h| &h.sender == sender).collect();
        // every delivery of a job after every delivery of the one before it
        assert!(
            mine.windows(2).all(|w| w[0].seq <= w[1].seq),
            "{sender}: {:?}",
            mine.iter().map(|h| (h.seq, h.delivery)).collect::<Vec<_>>()
        );
        let done: Vec<usize> = mine
            .iter()
            .filter(|h| h.outcome == "done")
            .map(|h| h.seq)
            .collect();
        let not_done: Vec<usize> = (0..per_sender).filter(|seq| !done.contains(seq)).collect();
        let expected: Vec<usize> = (0..per_sender)
            .filter(|seq| !not_done.contains(seq))
            .collect();
        assert_eq!(
            done, expected,
            "{sender}: handled successfully in send order"
        );
        for seq in &not_done {
            let last = mine.iter().rfind(|h| h.seq == *seq).unwrap();
            assert_eq!(last.delivery, opts.max_attempts, "{sender} {seq}");
            assert!(
                dead.contains(&format!("wamid.{sender}.{seq}")),
                "{sender} {seq} dead"
            );
        }
        for (s, seq) in doomed.iter().filter(|(s, _)| s == sender) {
            assert!(not_done.contains(seq), "{s} {seq} was doomed");
        }
        failed_for_good += not_done.len();
    }
    assert_eq!(dead.len(), failed_for_good);
    let retried = r.log.iter().filter(|h| h.delivery > 1).count();
    assert!(retried > 50, "retries happened: {retried}");

    let stats = admin.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.delayed, stats.held_senders),
        (0, 0, 0)
    );
    for shard in q.shard_names() {
        let left: Vec<String> = keys(&url, &shard)
            .await
            .into_iter()
            .filter(|k| !is_marker_key(k) && *k != shard.dead())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    let mut own = keys(&url, &q).await;
    own.sort();
    let mut want = vec![q.counts(), q.ordered_key(), q.shard_count_key()];
    want.sort();
    assert_eq!(own, want);
    cleanup_shards(&url, &q).await;
}

/// Records the (seq, delivery) of each job of one sender, done at once; wakes the test after
/// `target`.
struct InOrder {
    seen: Arc<Mutex<Vec<(usize, u32)>>>,
    target: usize,
    all: watch::Sender<bool>,
}

impl Handler for InOrder {
    async fn handle(&self, job: &Job, delivery: u32) -> Outcome {
        let mut seen = self.seen.lock().unwrap();
        seen.push((sender_seq(job).1, delivery));
        if seen.len() >= self.target {
            self.all.send_replace(true);
        }
        Outcome::Done
    }
}

/// Runs `consumer` until `target` deliveries were handled; (seq, delivery) in handling order.
async fn run_until(consumer: Consumer, target: usize) -> Vec<(usize, u32)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (all, mut rx) = watch::channel(false);
    let handler = InOrder {
        seen: seen.clone(),
        target,
        all,
    };
    let mut ropts = RunOptions::default();
    ropts.concurrency = 8;
    ropts.housekeeping = Duration::from_millis(20);
    wa_queue::run(consumer, handler, ropts, async move {
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|a| *a))
            .await
            .expect("handled within a minute")
            .unwrap();
    })
    .await
    .unwrap();
    seen.lock().unwrap().clone()
}

/// Enqueues `n` jobs of `sender`, seq 0..n.
async fn send_one_sender(url: &str, q: &QueueName, sender: &str, n: usize) {
    let producer = Producer::new(url, q.clone(), ProducerOptions::default()).unwrap();
    let p = payload(1);
    let texts: Vec<String> = (0..n).map(|s| s.to_string()).collect();
    let jobs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(seq, text)| {
            let mut j = job(format!("wamid.{sender}.{seq}"), &p);
            j.envelope.from = Some(sender.into());
            j.envelope.text = Some(text.as_str().into());
            j
        })
        .collect();
    producer.enqueue(&jobs).await.unwrap();
}

/// A worker that dies holding a sender's first job (its lease lapses): another ordered
/// consumer sets the sender's later jobs aside rather than run them (stats count the sender as
/// held, nothing pending), and once the reaper
/// returns the first job, runs it (its second delivery) and then the rest, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holder_still_goes_first() {
    let url = redis_url();
    let q = queue("ordcrash");
    let sender = "15552000001";
    send_one_sender(&url, &q, sender, 5).await;
    let mut short = ordered_opts();
    short.lease = Duration::from_millis(300);
    let crashed = Consumer::connect(&url, q.clone(), short).await.unwrap();
    let first = crashed.fetch(1).await.unwrap();
    assert_eq!(sender_seq(first[0].job().unwrap()).1, 0);
    // the worker dies: nothing settled, nothing returned, its lease left to lapse
    drop(first);
    drop(crashed);

    let other = Consumer::connect(&url, q.clone(), ordered_opts())
        .await
        .unwrap();
    assert!(other.fetch(10).await.unwrap().is_empty());
    let mut c = conn(&url).await;
    let waiting: usize = redis::cmd("LLEN")
        .arg(q.waiting(sender))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(waiting, 4, "the later jobs wait for the holder");
    let holder: String = redis::cmd("HGET")
        .arg(q.holders())
        .arg(sender)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(holder, format!("wamid.{sender}.0"));
    let stats = stats(&url, &q).await;
    assert_eq!((stats.pending, stats.held_senders), (0, 1));

    let seen = run_until(other, 5).await;
    assert_eq!(seen, vec![(0, 2), (1, 1), (2, 1), (3, 1), (4, 1)]);
    let left: Vec<String> = keys(&url, &q)
        .await
        .into_iter()
        .filter(|k| !is_marker_key(k) && *k != q.counts() && *k != q.ordered_key())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    cleanup(&url, &q).await;
}

/// A graceful stop with a sender's job in hand returns it to pending with its hold: the next
/// run handles it first and the sender's later jobs after it, in order. A dead job replayed
/// while its sender is held runs after the holder, in replay order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_keeps_the_hold_and_a_replay_queues_behind_it() {
    let url = redis_url();
    let q = queue("ordstop");
    let sender = "15552000002";
    send_one_sender(&url, &q, sender, 4).await;
    let consumer = Consumer::connect(&url, q.clone(), ordered_opts())
        .await
        .unwrap();
    let d0 = consumer.fetch(10).await.unwrap();
    assert_eq!(d0.len(), 1, "one job of a sender at a time");
    consumer.dead(&d0[0], "given up").await.unwrap();
    let d1 = consumer.fetch(10).await.unwrap();
    assert_eq!(sender_seq(d1[0].job().unwrap()).1, 1);
    // seq 1 holds the sender; seq 0 comes back from dead behind it
    let admin = Admin::connect(&url, q.clone()).await.unwrap();
    assert_eq!(admin.replay_all().await.unwrap(), 1);
    assert_eq!(consumer.shutdown().await.unwrap(), 1);

    let again = Consumer::connect(&url, q.clone(), ordered_opts())
        .await
        .unwrap();
    let seen = run_until(again, 4).await;
    let order: Vec<usize> = seen.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(order, vec![1, 2, 3, 0]);
    cleanup(&url, &q).await;
}

/// The first ordered consumer records the mode; one that is not ordered then refuses to
/// start, until the record is deleted (leaving ordered mode). An ordered consumer refuses to be the first while a consumer that is not ordered is
/// live, and records nothing.
#[tokio::test]
async fn every_consumer_must_share_the_mode() {
    let url = redis_url();
    let q = queue("ordmode");
    let ordered = Consumer::connect(&url, q.clone(), ordered_opts())
        .await
        .unwrap();
    let plain = Consumer::connect(&url, q.clone(), fast_opts()).await;
    assert!(
        matches!(plain, Err(QueueError::OrderedQueue { .. })),
        "{plain:?}"
    );
    ordered.shutdown().await.unwrap();
    // Leaving ordered mode as docs/operations.md says: with the queue drained and the ordered
    // consumers stopped, deleting the record lets a consumer that is not ordered start again.
    let stats = stats(&url, &q).await;
    assert_eq!((stats.pending, stats.held_senders), (0, 0));
    let _: u64 = redis::cmd("DEL")
        .arg(q.ordered_key())
        .query_async(&mut conn(&url).await)
        .await
        .unwrap();
    let plain = Consumer::connect(&url, q.clone(), fast_opts()).await;
    assert!(plain.is_ok(), "{:?}", plain.err());
    plain.unwrap().shutdown().await.unwrap();
    assert!(!keys(&url, &q).await.contains(&q.ordered_key()));
    cleanup(&url, &q).await;

    let q = queue("ordmode2").with_shards(2).unwrap();
    let plain = Consumer::connect(&url, q.clone(), fast_opts())
        .await
        .unwrap();
    let ordered = Consumer::connect(&url, q.clone(), ordered_opts()).await;
    assert!(
        matches!(ordered, Err(QueueError::UnorderedConsumers { live: 1 })),
        "{ordered:?}"
    );
    assert!(!keys(&url, &q).await.contains(&q.ordered_key()));
    plain.shutdown().await.unwrap();
    for shard in q.shard_names() {
        cleanup(&url, &shard).await;
    }
    cleanup(&url, &q).await;
}
