//! The binaries on a Redis Cluster: three masters with a replica each (wa-testkit), started
//! once for this test binary and stopped by PID.
//!
//! Near 500 lines: its tests share one cluster started once for the binary, so they live in one
//! module.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::value::RawValue;
use wa_queue::{
    Admin, Consumer, ConsumerOptions, DeadFilter, Handler, Job, JobKind, NewJob, Outcome, Producer,
    ProducerOptions, QueueName, RedisOptions, RunOptions,
};
use wa_testkit::Cluster;

use crate::fixtures::{expected_ids, fixture_bodies};
use crate::production_redis::{Bin, LIMIT, Load, Run, poll, post};
use crate::support::{http1, send, signed_post, unique};

/// The shard count of the sharded tests: more shards than masters, as in production.
const SHARDS: &str = "16";

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

/// A second cluster, for the test that moves slots and kills a master (the others must not
/// see that happen under them).
fn disrupted() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

/// The environment of a process on the cluster: the seeds, a URL whose host is ignored, the
/// queue and its shard count.
fn cluster_env(queue: &str, shards: &str) -> Vec<(&'static str, String)> {
    env_on(cluster(), queue, shards)
}

/// [`cluster_env`] on the cluster `on`.
fn env_on(on: &Cluster, queue: &str, shards: &str) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", "redis://ignored.invalid:1".to_owned()),
        ("WA_REDIS_CLUSTER", on.seeds()),
        ("WA_QUEUE", queue.to_owned()),
        ("WA_SHARDS", shards.to_owned()),
        ("WA_LEASE", "2s".to_owned()),
    ]
}

/// `wa-worker stats --json` on the queue of `env`.
async fn stats_json(env: &[(&str, &str)]) -> serde_json::Value {
    let mut stats = Bin::worker(&["stats", "--json"], env);
    assert_eq!(stats.exit_code(LIMIT).await, 0, "{}", stats.output());
    stats
        .output()
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("stats --json printed a document")
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// How often a `--stdout` worker handled each job id.
fn handled_counts(worker: &Bin) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in worker.output().lines().filter(|l| l.starts_with('{')) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
            && let Some(id) = v["id"].as_str()
        {
            *counts.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// With one shard the queue lives in the slot of `{Q}` on one master: the ingress and the
/// worker, given only seed nodes, find it (following MOVED from whichever seed they ask),
/// every job is handled exactly once, a redelivery is refused as a duplicate, and
/// `wa-worker stats` reads the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shard_on_a_cluster() {
    let queue = unique("cluster1");
    let env = cluster_env(&queue, "1");
    let env = pairs(&env);
    let mut ingress = Bin::ingress(&env);
    ingress.listening().await;
    let ids: Vec<String> = (0..40).map(|n| format!("wamid.{queue}.{n}")).collect();
    for id in &ids {
        assert_eq!(post(ingress.base(), id).await, StatusCode::OK);
    }
    assert_eq!(post(ingress.base(), &ids[0]).await, StatusCode::OK);
    let worker = Bin::worker(&["run", "--stdout"], &env);
    poll("every job handled", || async {
        handled_counts(&worker).len() == ids.len()
    })
    .await;
    let mut stats = Bin::worker(&["stats", "--json"], &env);
    assert_eq!(
        stats.exit_code(crate::production_redis::LIMIT).await,
        0,
        "{}",
        stats.output()
    );
    let doc: serde_json::Value = stats
        .output()
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("stats --json printed a document");
    assert_eq!(doc["pending"], 0, "{doc}");
    let counts = handled_counts(&worker);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

/// Sixteen shards over three masters: every fixture's jobs and messages from many senders go
/// in once (a redelivery of each body is refused, its jobs' markers being in their own
/// shards), spread over the shards; `wa-worker stats` sums them and shows each shard; one
/// worker drains every shard and handles each job exactly once. A worker or an ingress with
/// another shard count (8, or the unsharded 1) refuses to start with exit 64, naming
/// `--shards`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_shards_on_a_cluster() {
    let queue = unique("cluster16");
    let env = cluster_env(&queue, SHARDS);
    let env = pairs(&env);
    let mut ingress = Bin::ingress(&env);
    ingress.listening().await;
    let client = http1();
    let mut want = HashSet::new();
    for (name, body) in fixture_bodies() {
        want.extend(expected_ids(&body));
        for delivery in ["first", "again"] {
            let answer = send(
                &client,
                signed_post(ingress.base(), Bytes::from(body.clone())),
            )
            .await;
            assert_eq!(answer.status, StatusCode::OK, "{name} ({delivery})");
        }
    }
    for n in 0..64 {
        let id = format!("wamid.{queue}.{n}");
        assert_eq!(post(ingress.base(), &id).await, StatusCode::OK);
        assert_eq!(post(ingress.base(), &id).await, StatusCode::OK);
        want.insert(id);
    }
    let doc = stats_json(&env).await;
    assert_eq!(doc["pending"], want.len(), "{doc}");
    let shards = doc["shards"].as_array().expect("per-shard figures");
    assert_eq!(shards.len(), 16, "{doc}");
    let used = shards.iter().filter(|s| s["pending"] != 0).count();
    assert!(used >= 12, "jobs spread over only {used} shards: {doc}");

    for other in ["8", "1"] {
        let env = cluster_env(&queue, other);
        let env = pairs(&env);
        let mut worker = Bin::worker(&["run", "--stdout"], &env);
        assert_eq!(worker.exit_code(LIMIT).await, 64, "{}", worker.output());
        assert!(worker.output().contains("--shards"), "{}", worker.output());
        let mut ingress = Bin::ingress(&env);
        assert_eq!(ingress.exit_code(LIMIT).await, 64, "{}", ingress.output());
        assert!(
            ingress.output().contains("--shards"),
            "{}",
            ingress.output()
        );
    }

    let worker = Bin::worker(&["run", "--stdout"], &env);
    poll("every job handled", || async {
        handled_counts(&worker).len() >= want.len()
    })
    .await;
    poll("the queue drained", || async {
        let doc = stats_json(&env).await;
        doc["pending"] == 0 && doc["in_hand"] == 0
    })
    .await;
    let counts = handled_counts(&worker);
    let got: HashSet<String> = counts.keys().cloned().collect();
    assert_eq!(got, want);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

/// Fails every job for good.
struct Fail;

impl Handler for Fail {
    async fn handle(&self, _job: &Job, _delivery: u32) -> Outcome {
        Outcome::Dead("no handler for this".into())
    }
}

/// Dead letters of a sixteen-shard queue: the run loop sends each job to its shard's dead
/// list; the admin counts, pages (newest first), finds, replays and purges across every
/// shard, and `wa-worker dead list` prints all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_across_shards() {
    let name = unique("cluster-dead");
    let queue = QueueName::new(&name).unwrap().with_shards(16).unwrap();
    let redis = RedisOptions::new("redis://ignored.invalid:1")
        .unwrap()
        .cluster(&cluster().seeds())
        .unwrap();
    let producer = Producer::new(&redis, queue.clone(), ProducerOptions::default()).unwrap();
    let payload = RawValue::from_string("{}".into()).unwrap();
    let ids: Vec<String> = (0..40).map(|n| format!("wamid.{name}.{n}")).collect();
    let jobs: Vec<NewJob<'_>> = ids
        .iter()
        .map(|id| NewJob::new(id.as_str(), JobKind::Message, &payload))
        .collect();
    producer.enqueue(&jobs).await.unwrap();

    let admin = Admin::connect(&redis, queue.clone()).await.unwrap();
    let consumer = Consumer::connect(&redis, queue.clone(), ConsumerOptions::default())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(wa_queue::run(
        consumer,
        Fail,
        RunOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    poll("every job dead", || async {
        admin.stats().await.is_ok_and(|s| s.dead == 40)
    })
    .await;
    let _ = stop.send(());
    run.await.unwrap().unwrap();

    let stats = admin.stats().await.unwrap();
    assert_eq!(stats.shards.iter().map(|s| s.dead).sum::<u64>(), 40);
    assert!(stats.shards.iter().filter(|s| s.dead > 0).count() >= 10);
    let page = admin
        .dead_page(&DeadFilter::default(), 5, 10)
        .await
        .unwrap();
    assert_eq!((page.total, page.jobs.len()), (40, 10));
    let all = admin.dead_find(&DeadFilter::default()).await.unwrap();
    assert_eq!(all.len(), 40);
    assert!(
        all.windows(2).all(|w| w[0].died_at >= w[1].died_at),
        "newest first"
    );
    assert_eq!(admin.dead_list(100).await.unwrap().len(), 40);

    let env = [
        ("REDIS_URL", "redis://ignored.invalid:1".to_owned()),
        ("WA_REDIS_CLUSTER", cluster().seeds()),
        ("WA_QUEUE", name.clone()),
        ("WA_SHARDS", SHARDS.to_owned()),
    ];
    let mut list = Bin::worker(&["dead", "list", "--json"], &pairs(&env));
    assert_eq!(list.exit_code(LIMIT).await, 0, "{}", list.output());
    let listed: Vec<serde_json::Value> = list
        .output()
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("dead list --json printed an array");
    assert_eq!(listed.len(), 40);

    let replay = DeadFilter::default().ids(ids[..5].iter().cloned());
    assert_eq!(admin.dead_replay(&replay).await.unwrap(), 5);
    assert_eq!(admin.purge_dead().await.unwrap(), 35);
    let stats = admin.stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (5, 0));
}

/// Signed load on 16 shards while `disturb` runs; then the worker drains. What the load saw,
/// with the 200s the worker never handled counted in `lost`.
async fn under_load(on: &Cluster, min_replicas: &str, disturb: impl FnOnce(&Cluster, &str)) -> Run {
    let queue = unique("cluster-load");
    let mut env = env_on(on, &queue, SHARDS);
    env.push(("WA_MIN_REPLICAS", min_replicas.to_owned()));
    env.push(("WA_ENQUEUE_TIMEOUT", "1s".to_owned()));
    let env = pairs(&env);
    let mut ingress = Bin::ingress(&env);
    ingress.listening().await;
    let worker = Bin::worker(&["run", "--stdout"], &env);
    let load = Load::start(ingress.base(), &queue);
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.disturbed();
    tokio::task::block_in_place(|| disturb(on, &queue));
    // 200s must be seen after the switch is over, not only from shards it did not touch.
    load.disturbed();
    load.wait_back(wa_testkit::cluster::CLUSTER_LIMIT, || {
        format!("no 200 after the disturbance:\n{}", ingress.output())
    })
    .await;
    let mut run = load.stop().await;
    poll("the queue drained", || async {
        let doc = stats_json(&env).await;
        doc["pending"] == 0 && doc["in_hand"] == 0 && doc["delayed"] == 0
    })
    .await;
    let handled = worker.handled();
    run.lost = run.acked.iter().filter(|id| !handled.contains(*id)).count();
    run
}

/// Under steady signed load on 16 shards: (1) with `--min-replicas 1`, the master serving
/// shard 0 is SIGKILLed, its replica promoted and the killed node restarted as a replica;
/// (2) `redis-cli --cluster reshard` moves every slot of the master now serving shard 0 to
/// another master (after the failover: a cluster with a master emptied of slots has too few
/// voting masters left to promote a replica). Both times the ingress answers only 200 or 503,
/// 200 again with no restart, and the worker handles every job answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_and_reshard_under_load() {
    let on = tokio::task::block_in_place(disrupted);
    let shard0 = |q: &str| format!("wa:{{{q}:0}}:pending");
    let failed = under_load(on, "1", |c, queue| {
        let victim = c.master_of(&shard0(queue));
        c.kill(victim);
        c.wait_promoted(victim);
        c.restart(victim);
    })
    .await;
    eprintln!(
        "master SIGKILLed (--min-replicas 1): {} answered 200, {} answered 503, {} of the \
         200s never handled",
        failed.acked.len(),
        failed.answers_503,
        failed.lost
    );
    assert!(failed.unexpected.is_empty(), "{:?}", failed.unexpected);
    assert!(failed.acked.len() > 20, "too little load: {failed:?}");
    assert_eq!(failed.lost, 0, "200s lost in the failover");

    let moved = under_load(on, "0", |c, queue| {
        let from = c.master_of(&shard0(queue));
        let others = c.masters();
        let to = others.iter().find(|p| **p != from).expect("another master");
        c.reshard(from, *to, c.slots_of(from));
    })
    .await;
    eprintln!(
        "reshard under load: {} answered 200, {} answered 503, {} of the 200s never handled",
        moved.acked.len(),
        moved.answers_503,
        moved.lost
    );
    assert!(moved.unexpected.is_empty(), "{:?}", moved.unexpected);
    assert!(moved.acked.len() > 20, "too little load: {moved:?}");
    assert_eq!(moved.lost, 0, "200s lost in the reshard");
}

/// Records each sender's deliveries and whether two of one sender ever ran at once; sleeps 0-2
/// ms and fails about a fifth of the deliveries (retried), both by a mix of the job's place, its
/// sender and the delivery number; wakes the test once `total` jobs were done.
struct OrderedRecord {
    seen: std::sync::Mutex<Seen>,
    overlaps: std::sync::atomic::AtomicUsize,
    total: usize,
    all_done: tokio::sync::watch::Sender<bool>,
}

/// What the handlers saw: each sender's jobs done (their place in its sequence), handlers
/// running per sender, jobs done in all.
#[derive(Default)]
struct Seen {
    done: HashMap<String, Vec<usize>>,
    running: HashMap<String, usize>,
    count: usize,
}

/// An [`OrderedRecord`] shared by the handlers of several consumers.
struct Recorded(std::sync::Arc<OrderedRecord>);

impl Handler for Recorded {
    async fn handle(&self, job: &Job, delivery: u32) -> Outcome {
        let this = &self.0;
        let sender = job.from().unwrap_or_default().to_owned();
        let seq: usize = job.text().and_then(|t| t.parse().ok()).unwrap_or_default();
        let mix =
            seq * 7 + delivery as usize * 3 + usize::from(sender.as_bytes()[sender.len() - 1]);
        {
            let mut s = this.seen.lock().unwrap();
            let running = s.running.entry(sender.clone()).or_default();
            *running += 1;
            if *running > 1 {
                this.overlaps
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(mix as u64 % 3)).await;
        let fail = mix.is_multiple_of(5);
        let mut s = this.seen.lock().unwrap();
        *s.running.get_mut(&sender).unwrap() -= 1;
        if fail {
            return Outcome::Retry("failed on purpose".into());
        }
        s.done.entry(sender).or_default().push(seq);
        s.count += 1;
        if s.count >= this.total {
            this.all_done.send_replace(true);
        }
        Outcome::Done
    }
}

/// `--ordered` on the cluster with 16 shards routed by sender: two ordered consumers, handlers
/// that fail a fifth of the deliveries (retried within a few ms, never dead): per sender, no two
/// handlers at once and the jobs done in send order; no sender left held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_on_sixteen_shards() {
    let name = unique("cluster-ordered");
    let queue = QueueName::new(&name).unwrap().with_shards(16).unwrap();
    let redis = RedisOptions::new("redis://ignored.invalid:1")
        .unwrap()
        .cluster(&cluster().seeds())
        .unwrap();
    let mut popts = ProducerOptions::default();
    popts.shard_by = wa_queue::ShardBy::Sender;
    let producer = Producer::new(&redis, queue.clone(), popts).unwrap();
    let payload = RawValue::from_string("{}".into()).unwrap();
    let (senders, per_sender) = (12, 15);
    let texts: Vec<String> = (0..per_sender).map(|n| n.to_string()).collect();
    let from: Vec<String> = (0..senders).map(|s| format!("1555300{s:04}")).collect();
    let ids: Vec<String> = (0..per_sender)
        .flat_map(|n| from.iter().map(move |f| format!("wamid.{f}.{n}")))
        .collect();
    let jobs: Vec<NewJob<'_>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut j = NewJob::new(id.as_str(), JobKind::Message, &payload);
            j.envelope.from = Some(from[i % senders].as_str().into());
            j.envelope.text = Some(texts[i / senders].as_str().into());
            j
        })
        .collect();
    for chunk in jobs.chunks(20) {
        producer.enqueue(chunk).await.unwrap();
    }

    let (all_done, done_rx) = tokio::sync::watch::channel(false);
    let record = std::sync::Arc::new(OrderedRecord {
        seen: Default::default(),
        overlaps: Default::default(),
        total: senders * per_sender,
        all_done,
    });
    let mut opts = ConsumerOptions::default();
    opts.ordered = true;
    opts.backoff_base = Duration::from_millis(5);
    opts.backoff_max = Duration::from_millis(20);
    opts.max_attempts = 50;
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let consumer = Consumer::connect(&redis, queue.clone(), opts.clone())
            .await
            .unwrap();
        let mut ropts = RunOptions::default();
        ropts.concurrency = 8;
        ropts.housekeeping = Duration::from_millis(20);
        let mut done = done_rx.clone();
        runs.spawn(wa_queue::run(
            consumer,
            Recorded(record.clone()),
            ropts,
            async move {
                tokio::time::timeout(LIMIT, done.wait_for(|d| *d))
                    .await
                    .expect("every job done in time")
                    .unwrap();
            },
        ));
    }
    while let Some(r) = runs.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(
        record.overlaps.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let seen = std::mem::take(&mut record.seen.lock().unwrap().done);
    for f in &from {
        assert_eq!(seen[f], (0..per_sender).collect::<Vec<_>>(), "{f}");
    }
    let admin = Admin::connect(&redis, queue.clone()).await.unwrap();
    let stats = admin.stats().await.unwrap();
    assert_eq!((stats.pending, stats.delayed, stats.dead), (0, 0, 0));
    for shard in queue.shard_names() {
        let holders = shard.holders();
        let port = cluster().master_of(&holders);
        let held: u64 = cluster().query(port, &["HLEN", &holders]).unwrap();
        assert_eq!(held, 0, "{holders}");
    }
}
