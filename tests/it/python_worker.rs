//! The Python worker of `examples/python_worker` against jobs from the real ingress: the queue
//! contract works from another language with nothing but a Redis client.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use serde_json::value::RawValue;
use wa_queue::{JobKind, NewJob, Producer, ProducerOptions, QueueName};

use crate::support::{self, Ingress};

/// Fixtures posted in this order (the first twice: Meta's retry, deduplicated by the ingress).
const FIXTURES: [&str; 7] = [
    "01_text.json",
    "02_text_reply_context.json",
    "03_image.json",
    "01_text.json",
    "19_status_delivered.json",
    "21_status_failed.json",
    "23_text_unicode_emoji.json",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lines the worker should print for one fixture, worked out from the fixture's JSON here
/// (independently of wa-payload): `<kind> id=.. type=.. from=.. [text=<JSON string>]`.
fn expected_lines(body: &[u8]) -> Vec<String> {
    let body: Value = serde_json::from_slice(body).expect("fixture is JSON");
    let mut lines = Vec::new();
    let values = body["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entry| {
            let changes = entry["changes"].as_array().into_iter().flatten();
            changes.map(|change| &change["value"])
        });
    let text = |v: &Value| {
        v.as_str()
            .expect("the fixtures used here have it")
            .to_owned()
    };
    for value in values {
        for m in value["messages"].as_array().into_iter().flatten() {
            let (id, kind, from) = (text(&m["id"]), text(&m["type"]), text(&m["from"]));
            let mut line = format!("message id={id} type={kind} from={from}");
            if let Some(body) = m["text"]["body"].as_str() {
                line += &format!(" text={}", serde_json::to_string(body).expect("a string"));
            }
            lines.push(line);
        }
        for s in value["statuses"].as_array().into_iter().flatten() {
            let (id, status, to) = (text(&s["id"]), text(&s["status"]), text(&s["recipient_id"]));
            lines.push(format!("status id={id}:{status} type={status} from={to}"));
        }
    }
    lines
}

/// What one run of the Python worker left: its output and its consumer id.
pub(crate) struct Run {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    consumer: String,
}

/// Runs `examples/python_worker/worker.py` on queue `name` until it has taken `jobs` jobs.
async fn run_python_worker(url: &str, name: &str, jobs: usize) -> Run {
    run_python_worker_env(url, name, jobs, &[]).await
}

/// [`run_python_worker`] with `env` added to the worker's environment.
pub(crate) async fn run_python_worker_env(
    url: &str,
    name: &str,
    jobs: usize,
    env: &[(&str, &str)],
) -> Run {
    let script: PathBuf = root().join("examples/python_worker/worker.py");
    let mut worker = tokio::process::Command::new("python3");
    worker
        .arg(&script)
        .args(["--redis-url", url, "--queue", name])
        .envs(env.iter().copied())
        .args(["--max-jobs", &jobs.to_string()])
        // A safety net: should a job be missing, the worker stops instead of waiting forever.
        .args(["--idle-exit", "20s"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), worker.output())
        .await
        .expect("the worker finishes within a minute")
        .unwrap_or_else(|err| panic!("this test needs python3 on PATH: {err}"));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "worker failed: {stderr}");
    let consumer = stderr
        .lines()
        .find_map(|line| line.strip_prefix("worker ")?.split_whitespace().next())
        .expect("the worker names its consumer id on stderr")
        .to_owned();
    Run {
        stdout,
        stderr,
        consumer,
    }
}

/// Asserts that the worker left nothing behind: pending empty, its processing list empty, its
/// lease removed.
async fn assert_left_clean(
    redis: &mut redis::aio::MultiplexedConnection,
    queue: &QueueName,
    consumer: &str,
) {
    let pending: u64 = redis::cmd("LLEN")
        .arg(queue.pending())
        .query_async(redis)
        .await
        .expect("LLEN");
    let in_hand: u64 = redis::cmd("LLEN")
        .arg(queue.processing(consumer))
        .query_async(redis)
        .await
        .expect("LLEN");
    let lease: Option<String> = redis::cmd("ZSCORE")
        .arg(queue.consumers())
        .arg(consumer)
        .query_async(redis)
        .await
        .expect("ZSCORE");
    assert_eq!((pending, in_hand, lease), (0, 0, None));
}

fn unique_queue(test: &str) -> (String, QueueName) {
    let name = support::unique(test);
    let queue = QueueName::new(name.as_str()).expect("queue name");
    (name, queue)
}

/// The Python example worker prints exactly the jobs the ingress made from signed fixtures,
/// once each and in order, then leaves pending, its processing list and its lease empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_worker_takes_every_job_from_the_ingress() {
    let url = support::redis_url();
    let mut redis = support::redis(&url).await;
    // The real ingress, in-process on a free port, with its own queue (deleted when dropped).
    let ingress = Ingress::start("python-worker").await;
    let name = ingress.queue.name.clone();
    let queue = QueueName::new(name.as_str()).expect("queue name");

    let mut expected = Vec::new();
    for (i, fixture) in FIXTURES.into_iter().enumerate() {
        let body =
            std::fs::read(root().join("tests/fixtures/webhooks").join(fixture)).expect("fixture");
        if !FIXTURES[..i].contains(&fixture) {
            expected.extend(expected_lines(&body));
        }
        assert_eq!(ingress.post(body).await.status, 200, "POST {fixture}");
    }
    assert_eq!(expected.len(), 6, "{expected:#?}");

    let run = run_python_worker(&url, &name, expected.len()).await;
    let printed: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(printed, expected, "stderr: {}", run.stderr);
    assert_left_clean(&mut redis, &queue, &run.consumer).await;
    ingress.stop().await;
}

/// The Python example worker drains a queue of four shards on one Redis: it reads the
/// recorded shard count, prints every job once, and leaves each shard's pending, its
/// processing list there and its lease there empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_worker_drains_a_sharded_queue() {
    let url = support::redis_url();
    let mut redis = support::redis(&url).await;
    let (name, queue) = unique_queue("python-shards");
    let queue = queue.with_shards(4).expect("shards");
    let producer = Producer::new(&url, queue.clone(), ProducerOptions::default()).unwrap();
    let payload = RawValue::from_string("{}".into()).unwrap();
    let ids: Vec<String> = (0..40).map(|n| format!("wamid.{name}.{n}")).collect();
    let jobs: Vec<NewJob<'_>> = ids
        .iter()
        .map(|id| NewJob::new(id.as_str(), JobKind::Message, &payload))
        .collect();
    producer.enqueue(&jobs).await.unwrap();

    let run = run_python_worker(&url, &name, ids.len()).await;
    let mut printed: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.strip_prefix("id="))
        .collect();
    printed.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(printed, want, "stderr: {}", run.stderr);
    for shard in queue.shard_names() {
        assert_left_clean(&mut redis, &shard, &run.consumer).await;
    }
    // every shard's keys and the record: `wa:{<name>}` and `wa:{<name>:<s>}`
    wa_testkit::delete_matching(&url, &format!("wa:{{{name}*"));
}

/// The Python worker sends a job of an unknown version and a non-JSON job to dead, kept whole
/// (the payload's bytes untouched) with `error` and `died_at`, as wa-queue's Admin reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_worker_sends_unreadable_jobs_to_dead() {
    let url = support::redis_url();
    let mut redis = support::redis(&url).await;
    let (name, queue) = unique_queue("python-worker-dead");

    // Meta's escapes in the payload must survive the rewrite byte for byte.
    let future = r#"{"v":2,"id":"future-1","kind":"message","payload":{"t":"\u00e9\/"}}"#;
    let garbage = "not a job";
    let good = r#"{"v":1,"id":"wamid.OK","kind":"message","type":"text","text":"ok","attempt":0,"payload":{}}"#;
    // LPUSH in arrival order: consumers take from the other end, oldest first.
    let _: u64 = redis::cmd("LPUSH")
        .arg(queue.pending())
        .arg(future)
        .arg(garbage)
        .arg(good)
        .query_async(&mut redis)
        .await
        .expect("LPUSH");

    let run = run_python_worker(&url, &name, 3).await;
    assert_eq!(
        run.stdout, "message id=wamid.OK type=text text=\"ok\"\n",
        "stderr: {}",
        run.stderr
    );
    assert_left_clean(&mut redis, &queue, &run.consumer).await;

    let dead: Vec<String> = redis::cmd("LRANGE")
        .arg(queue.dead())
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .expect("LRANGE");
    // Newest first: the garbage died after the future job.
    let [garbage_entry, future_entry] = dead.as_slice() else {
        panic!("two dead entries expected: {dead:?}");
    };
    let kept = &future[..future.len() - 1];
    assert!(
        future_entry.starts_with(kept),
        "the job is kept as it was: {future_entry}"
    );
    let entry: Value = serde_json::from_str(future_entry).expect("a JSON object");
    assert_eq!(entry["error"], "unknown contract version 2");
    assert!(entry["died_at"].as_u64().is_some(), "{entry}");
    let entry: Value = serde_json::from_str(garbage_entry).expect("a JSON object");
    assert_eq!(entry["raw"], garbage);
    assert!(entry["died_at"].as_u64().is_some(), "{entry}");

    let admin = wa_queue::Admin::connect(&url, queue.clone())
        .await
        .expect("admin");
    let listed = admin.dead_list(10).await.expect("dead list");
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|d| d.error.is_some() && d.died_at.is_some()),
        "{listed:?}"
    );
    assert_eq!(admin.purge_dead().await.expect("purge"), 2);
}

/// The Python worker does the housekeeping of the contract: it gives back the jobs of a consumer
/// whose lease has lapsed and promotes a retry that is due, then handles both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_worker_reaps_lapsed_consumers_and_promotes_due_retries() {
    let url = support::redis_url();
    let mut redis = support::redis(&url).await;
    let (name, queue) = unique_queue("python-worker-reap");

    // A consumer that died holding a job: its lease lapsed long ago (1 ms after the epoch).
    let ghost = "ghost-of-a-worker";
    let held = r#"{"v":1,"id":"wamid.HELD","kind":"message","type":"text","text":"held","attempt":0,"payload":{}}"#;
    let retry = r#"{"v":1,"id":"wamid.RETRY:read","kind":"status","type":"read","attempt":1,"last_error":"boom","payload":{}}"#;
    let _: () = redis::pipe()
        .cmd("ZADD")
        .arg(queue.consumers())
        .arg(1)
        .arg(ghost)
        .ignore()
        .cmd("LPUSH")
        .arg(queue.processing(ghost))
        .arg(held)
        .ignore()
        .cmd("ZADD")
        .arg(queue.delayed())
        .arg(1)
        .arg(retry)
        .ignore()
        .query_async(&mut redis)
        .await
        .expect("set up a lapsed consumer and a due retry");

    let run = run_python_worker(&url, &name, 2).await;
    let mut printed: Vec<&str> = run.stdout.lines().collect();
    printed.sort_unstable();
    assert_eq!(
        printed,
        [
            "message id=wamid.HELD type=text text=\"held\"",
            "status id=wamid.RETRY:read type=read",
        ],
        "stderr: {}",
        run.stderr
    );
    assert_left_clean(&mut redis, &queue, &run.consumer).await;
    assert_left_clean(&mut redis, &queue, ghost).await;
    let delayed: u64 = redis::cmd("ZCARD")
        .arg(queue.delayed())
        .query_async(&mut redis)
        .await
        .expect("ZCARD");
    assert_eq!(delayed, 0);
}

/// The Python worker reaps with the contract's release script word for word, so it counts
/// deliveries lost with their worker (and sends poison jobs to dead) as the Rust reaper does.
#[test]
fn python_worker_releases_with_the_contract_script() {
    let worker = std::fs::read_to_string(root().join("examples/python_worker/worker.py")).unwrap();
    let (_, release) = wa_queue::SCRIPTS
        .iter()
        .find(|(name, _)| name.starts_with("release"))
        .expect("the release script");
    assert!(worker.contains(release.trim_end()));
}

/// The Python example does not keep order per sender, so it refuses a queue recorded as
/// ordered (exit status 1, the reason on stderr) and takes nothing.
#[tokio::test]
async fn python_worker_refuses_an_ordered_queue() {
    let url = support::redis_url();
    let mut redis = support::redis(&url).await;
    let (name, queue) = unique_queue("pyordered");
    let _: () = redis::cmd("SET")
        .arg(queue.ordered_key())
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    let script: PathBuf = root().join("examples/python_worker/worker.py");
    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["--redis-url", &url, "--queue", &name, "--idle-exit", "5s"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("exits at once")
        .unwrap_or_else(|err| panic!("this test needs python3 on PATH: {err}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("keeps order per sender"), "{stderr}");
    let consumers: u64 = redis::cmd("ZCARD")
        .arg(queue.consumers())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(consumers, 0);
    wa_testkit::delete_matching(&url, &format!("{}*", queue.base()));
}
