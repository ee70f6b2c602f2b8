//! Fault injection against the real binaries: Redis stopped, killed and hung, workers and the
//! ingress killed or stopped, all under load. Each test prints its counts and asserts that
//! nothing acknowledged with 200 was lost.
//!
//! Every Redis here is a private `redis-server` on a free port in a temporary directory (never
//! the shared one); the binaries are the debug builds next to this test executable (`cargo
//! build --workspace --bins` first); all traffic goes to 127.0.0.1 and every loop is bounded.
//!
//! Over 800 lines: five long scenarios, each of which drives load, injects its fault and counts
//! every acknowledged message.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use wa_testkit::{Conn, Guarded, RedisServer, ServerOptions, binary, free_port, rss, unique};

use crate::support::command;
use tokio::io::AsyncReadExt as _;

const SECRET: &str = "fault-app-secret";
const TOKEN: &str = "fault-verify-token";
const PATH: &str = "/api/whatsapp/webhook";

// ---------------------------------------------------------------- processes

/// A private redis-server (wa-testkit's), with an fsync-always AOF when `aof`.
fn private_redis(aof: bool) -> RedisServer {
    RedisServer::start(ServerOptions {
        aof,
        ..ServerOptions::default()
    })
}

/// Starts `redis` again on its port and directory (with AOF it loads its file), from a
/// multi-threaded test: the start-up wait blocks this thread only.
fn restart(redis: &mut RedisServer) {
    tokio::task::block_in_place(|| redis.start_again());
}

/// Resident set size of `process` in KiB (0 once it is gone).
fn rss_kib(process: &Guarded) -> u64 {
    rss(process.pid()).map_or(0, |bytes| bytes / 1024)
}

/// The last 20 lines of what `process` logged.
fn log_tail(process: &Guarded) -> String {
    let text = process.output();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A queue name of this suite no other test uses.
fn queue_name(test: &str) -> String {
    unique(&format!("fault-{test}"))
}

/// The ingress of these tests on `port` of 127.0.0.1.
fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A GET of `path` on a connection of its own; `None` when the ingress does not answer
/// within a second.
async fn get_status(port: u16, path: &str) -> Option<u16> {
    let get = async {
        let mut c: Conn = Conn::connect(local(port)).await.ok()?;
        let req = Request::get(path).body(Full::default()).ok()?;
        c.send(req).await.ok()
    };
    let answer = tokio::time::timeout(Duration::from_secs(1), get)
        .await
        .ok()??;
    Some(answer.status.as_u16())
}

/// Starts wa-ingress on a free port and waits until /healthz answers.
async fn start_ingress(
    dir: &Path,
    redis_url: &str,
    queue: &str,
    extra: &[(&str, &str)],
) -> (Guarded, u16) {
    let port = free_port();
    let mut cmd = command(binary("wa-ingress"));
    cmd.env("WHATSAPP_APP_SECRET", SECRET)
        .env("WHATSAPP_VERIFY_TOKEN", TOKEN)
        .env("REDIS_URL", redis_url)
        .env("WA_LISTEN", format!("127.0.0.1:{port}"))
        .env("WA_QUEUE", queue)
        .env("WA_ENQUEUE_TIMEOUT", "500ms")
        .env("RUST_LOG", "warn");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut p = Guarded::spawn(&cmd, &dir.join(format!("ingress-{port}.log")));
    let end = Instant::now() + Duration::from_secs(15);
    while get_status(port, "/healthz").await != Some(200) {
        assert!(
            p.exited().is_none(),
            "wa-ingress exited at start: {}",
            log_tail(&p)
        );
        assert!(
            Instant::now() < end,
            "wa-ingress did not answer /healthz within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    (p, port)
}

/// Starts `wa-worker run --stdout` with its job lines going to `out`.
fn start_worker(dir: &Path, redis_url: &str, queue: &str, out: &Path, n: usize) -> Guarded {
    let mut cmd = command(binary("wa-worker"));
    cmd.env("REDIS_URL", redis_url)
        .env("WA_QUEUE", queue)
        .env("RUST_LOG", "info")
        // A short lease, so the jobs of a killed worker come back within the test.
        .args(["run", "--stdout", "--concurrency", "16", "--lease", "2s"]);
    Guarded::spawn_to(&cmd, out, &dir.join(format!("worker-{n}.log")))
}

/// Job ids in worker output files, counting repeats.
fn processed_ids(files: &[PathBuf]) -> HashMap<String, u32> {
    let mut ids = HashMap::new();
    for f in files {
        let Ok(file) = File::open(f) else { continue };
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { continue };
            // A worker killed mid-write can leave half a line: that job is still in its
            // processing list and will be delivered again.
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let id = v
                .get("id")
                .or_else(|| v.get("job").and_then(|j| j.get("id")))
                .and_then(|i| i.as_str());
            if let Some(id) = id {
                *ids.entry(id.to_string()).or_insert(0) += 1;
            }
        }
    }
    ids
}

/// Ids of the jobs waiting in `wa:{queue}:pending`.
async fn pending_ids(redis: &RedisServer, queue: &str) -> HashSet<String> {
    let mut c = wa_testkit::connect(&redis.url()).await;
    let key = format!("wa:{{{queue}}}:pending");
    let items: Vec<String> = redis::cmd("LRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .expect("LRANGE");
    items
        .iter()
        .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .filter_map(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
        .collect()
}

/// Where the jobs with these ids are in Redis (list or zset name -> how many), to tell a lost
/// job from one stuck somewhere.
async fn locate(redis: &RedisServer, queue: &str, ids: &[&String]) -> HashMap<String, usize> {
    let mut c = wa_testkit::connect(&redis.url()).await;
    let want: HashSet<&str> = ids.iter().map(|s| s.as_str()).collect();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("wa:{{{queue}}}:*"))
        .query_async(&mut c)
        .await
        .expect("KEYS");
    let mut found = HashMap::new();
    for k in keys.iter().filter(|k| !k.contains(":dedup:")) {
        let kind: String = redis::cmd("TYPE")
            .arg(k)
            .query_async(&mut c)
            .await
            .expect("TYPE");
        let items: Vec<String> = match kind.as_str() {
            "list" => {
                redis::cmd("LRANGE")
                    .arg(k)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
            }
            "zset" => {
                redis::cmd("ZRANGE")
                    .arg(k)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
            }
            _ => Ok(Vec::new()),
        }
        .expect("read key");
        let n = items
            .iter()
            .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .filter(|v| {
                v.get("id")
                    .and_then(|i| i.as_str())
                    .is_some_and(|i| want.contains(i))
            })
            .count();
        if n > 0 {
            found.insert(k.clone(), n);
        }
    }
    // Buckets (`dedup:<slot>/<b>`) hold their markers and a 0; the slots' headers none.
    let mut markers = 0;
    for k in keys
        .iter()
        .filter(|k| k.contains(":dedup:") && k.contains('/'))
    {
        let n: usize = redis::cmd("SCARD")
            .arg(k)
            .query_async(&mut c)
            .await
            .expect("SCARD");
        markers += n - 1;
    }
    found.insert("dedup markers (the whole queue's)".to_string(), markers);
    found
}

/// A gauge or counter of the ingress's /metrics (without labels), if it answers.
async fn metric(port: u16, name: &str) -> Option<f64> {
    let get = async {
        let mut c: Conn = Conn::connect(local(port)).await.ok()?;
        let req = Request::get("/metrics").body(Full::default()).ok()?;
        c.send(req).await.ok()
    };
    let answer = tokio::time::timeout(Duration::from_secs(2), get)
        .await
        .ok()??;
    if answer.status != 200 {
        return None;
    }
    String::from_utf8_lossy(&answer.body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Jobs in the processing lists of the consumers of process `pid` (consumer ids are
/// `host-pid-random`).
async fn in_hand_of(redis: &RedisServer, queue: &str, pid: u32) -> u64 {
    let mut c = wa_testkit::connect(&redis.url()).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("wa:{{{queue}}}:processing:*-{pid}-*"))
        .query_async(&mut c)
        .await
        .expect("KEYS");
    let mut n = 0;
    for k in keys {
        let len: u64 = redis::cmd("LLEN")
            .arg(&k)
            .query_async(&mut c)
            .await
            .expect("LLEN");
        n += len;
    }
    n
}

/// Waits (bounded) until every id in `acked` is in the worker outputs; returns the counts.
async fn wait_processed(
    files: &[PathBuf],
    acked: &HashSet<String>,
    limit: Duration,
) -> HashMap<String, u32> {
    let end = Instant::now() + limit;
    loop {
        let ids = processed_ids(files);
        if acked.iter().all(|a| ids.contains_key(a)) || Instant::now() >= end {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- load

/// A signed POST of `body` to the webhook path.
fn signed_post(body: Vec<u8>, sig: &str) -> Request<Full<Bytes>> {
    Request::post(PATH)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sig)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

/// A signed one-message webhook body with this wamid.
fn signed_body(wamid: &str, n: u64) -> (Vec<u8>, String) {
    let body = format!(
        concat!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":"#,
            r#"{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"#,
            r#""contacts":[{{"profile":{{"name":"Fault Test"}},"wa_id":"14155551234"}}],"#,
            r#""messages":[{{"from":"14155551234","id":"{}","timestamp":"1795789924","text":{{"body":"fault test message {}"}},"type":"text"}}]}},"#,
            r#""field":"messages"}}]}}]}}"#
        ),
        wamid, n
    )
    .into_bytes();
    let sig = wa_signature::sign(SECRET.as_bytes(), &body);
    (body, sig)
}

/// One request of the load and what it got.
#[derive(Debug, Clone)]
struct LoadRequest {
    wamid: String,
    status: Option<u16>,
    sent: Instant,
    done: Instant,
}

/// A bounded closed-loop load: `conns` connections send unique signed messages until `stop`
/// is set, `max` requests were sent, or `limit` has passed.
struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<LoadRequest>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, tag: &str, conns: usize, max: u64, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let run = unique(tag);
        let end = Instant::now() + limit;
        let tasks = (0..conns)
            .map(|_| {
                let (stop, sent, outcomes) = (stop.clone(), sent.clone(), outcomes.clone());
                let prefix = format!("wamid.fault.{run}.");
                tokio::spawn(async move {
                    let mut conn: Option<Conn> = None;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let n = sent.fetch_add(1, Ordering::Relaxed);
                        if n >= max {
                            break;
                        }
                        let wamid = format!("{prefix}{n}");
                        let (body, sig) = signed_body(&wamid, n);
                        let t0 = Instant::now();
                        if conn.as_ref().is_none_or(Conn::is_closed) {
                            conn = match tokio::time::timeout(
                                Duration::from_secs(1),
                                Conn::connect(local(port)),
                            )
                            .await
                            {
                                Ok(Ok(c)) => Some(c),
                                _ => None,
                            };
                        }
                        let status = match conn.as_mut() {
                            None => None,
                            Some(c) => {
                                let post = c.send(signed_post(body, &sig));
                                match tokio::time::timeout(Duration::from_secs(5), post).await {
                                    Ok(Ok(answer)) => Some(answer.status.as_u16()),
                                    _ => None,
                                }
                            }
                        };
                        if status.is_none() {
                            conn = None;
                        }
                        let done = Instant::now();
                        outcomes.lock().unwrap().push(LoadRequest {
                            wamid,
                            status,
                            sent: t0,
                            done,
                        });
                        if status.is_none() || status == Some(503) {
                            // Nothing there or nothing accepted: don't spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            outcomes,
            tasks,
        }
    }

    async fn finish(self) -> Vec<LoadRequest> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("load task");
        }
        Arc::try_unwrap(self.outcomes)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<LoadRequest> {
        self.outcomes.lock().unwrap().clone()
    }
}

/// Counts by status (`None` = connection error or timeout) and the set of acknowledged wamids.
fn tally(outcomes: &[LoadRequest]) -> (HashMap<String, usize>, HashSet<String>) {
    let mut by = HashMap::new();
    let mut acked = HashSet::new();
    for o in outcomes {
        let k = o.status.map_or("error".to_string(), |s| s.to_string());
        *by.entry(k).or_insert(0) += 1;
        if o.status == Some(200) {
            acked.insert(o.wamid.clone());
        }
    }
    (by, acked)
}

fn missing<'a>(acked: &'a HashSet<String>, have: &HashSet<&str>) -> Vec<&'a String> {
    let mut m: Vec<_> = acked
        .iter()
        .filter(|a| !have.contains(a.as_str()))
        .collect();
    m.sort();
    m
}

// ---------------------------------------------------------------- tests

/// Redis stopped for seconds under load: 503 while it is away, bounded ingress memory, every
/// 200 has its job; then the ingress is SIGKILLed under load and still nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_then_ingress_sigkill_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // AOF so that a clean stop keeps what Redis had (the outage is the fault under test).
    let mut redis = private_redis(true);
    let queue = queue_name("outage");
    let (mut ingress, port) = start_ingress(tmp.path(), &redis.url(), &queue, &[]).await;

    let load = Load::start(port, "outage", 16, 20_000, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss_before = rss_kib(&ingress);
    let t_stop = Instant::now();
    redis.stop().await;
    let mut rss_peak = rss_before;
    let outage_end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < outage_end {
        rss_peak = rss_peak.max(rss_kib(&ingress));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = load.snapshot();
    restart(&mut redis);
    let t_back = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    rss_peak = rss_peak.max(rss_kib(&ingress));
    ingress.kill();
    let t_kill = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = load.finish().await;

    let (by, acked) = tally(&outcomes);
    let in_outage =
        |o: &&LoadRequest| o.sent > t_stop + Duration::from_millis(200) && o.done < t_back;
    let outage_503 = during
        .iter()
        .filter(in_outage)
        .filter(|o| o.status == Some(503))
        .count();
    let outage_200 = during
        .iter()
        .filter(in_outage)
        .filter(|o| o.status == Some(200))
        .count();
    let after_200 = outcomes
        .iter()
        .filter(|o| o.sent > t_back && o.done < t_kill && o.status == Some(200))
        .count();
    let have = pending_ids(&redis, &queue).await;
    let have_ref: HashSet<&str> = have.iter().map(String::as_str).collect();
    let lost = missing(&acked, &have_ref);
    println!(
        "redis outage: requests {} by status {by:?}; during outage 503={outage_503} 200={outage_200}; \
         200 after redis came back={after_200}; ingress RSS {} KiB before, peak {} KiB; \
         acknowledged {} in redis {} lost {}",
        outcomes.len(),
        rss_before,
        rss_peak,
        acked.len(),
        have.len(),
        lost.len()
    );
    assert!(outage_503 > 0, "no 503 while redis was away");
    assert_eq!(outage_200, 0, "200 answered while redis was away");
    assert!(
        after_200 > 0,
        "the ingress did not recover after redis came back"
    );
    assert!(
        rss_peak.saturating_sub(rss_before) < 64 * 1024,
        "ingress memory grew by {} KiB during the outage",
        rss_peak - rss_before
    );
    assert!(
        lost.is_empty(),
        "acknowledged but not in redis: {:?}",
        &lost[..lost.len().min(10)]
    );
}

/// Redis with appendfsync always, SIGKILLed under load and restarted from its file: every job
/// acknowledged with 200 is processed by a worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigkill_with_aof_always_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut redis = private_redis(true);
    let queue = queue_name("aof");
    let (_ingress, port) = start_ingress(tmp.path(), &redis.url(), &queue, &[]).await;
    let out = tmp.path().join("jobs-0.jsonl");
    let mut worker = start_worker(tmp.path(), &redis.url(), &queue, &out, 0);

    let load = Load::start(port, "aof", 16, 20_000, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    restart(&mut redis);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let outcomes = load.finish().await;

    let (by, acked) = tally(&outcomes);
    let ids = wait_processed(std::slice::from_ref(&out), &acked, Duration::from_secs(20)).await;
    let have: HashSet<&str> = ids.keys().map(String::as_str).collect();
    let lost = missing(&acked, &have);
    let dups: u32 = ids.values().map(|c| c - 1).sum();
    println!(
        "redis SIGKILL (AOF always): requests {} by status {by:?}; acknowledged {} processed {} \
         (duplicates {dups}) lost {}",
        outcomes.len(),
        acked.len(),
        ids.len(),
        lost.len()
    );
    assert!(
        worker.exited().is_none(),
        "worker died: {}",
        log_tail(&worker)
    );
    assert!(!acked.is_empty(), "no request was acknowledged");
    if !lost.is_empty() {
        println!(
            "lost jobs are in: {:?}",
            locate(&redis, &queue, &lost).await
        );
        println!("worker log: {}", log_tail(&worker));
    }
    assert!(
        lost.is_empty(),
        "acknowledged but never processed: {:?}",
        &lost[..lost.len().min(10)]
    );
}

/// Workers SIGKILLed mid-batch under load, twice: every acknowledged job is processed, and
/// duplicates are no more than the jobs the killed workers had in hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigkill_twice_redelivers_only_jobs_in_hand() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let redis = private_redis(false);
    let queue = queue_name("worker");
    let (_ingress, port) = start_ingress(tmp.path(), &redis.url(), &queue, &[]).await;
    let mut outs = Vec::new();
    let mut workers = Vec::new();
    for n in 0..2 {
        outs.push(tmp.path().join(format!("jobs-{n}.jsonl")));
        workers.push(start_worker(tmp.path(), &redis.url(), &queue, &outs[n], n));
    }

    let load = Load::start(port, "worker", 16, 20_000, Duration::from_secs(15));
    let mut in_hand_at_kills = Vec::new();
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // Kill it mid-batch: as soon as it holds jobs (bounded wait).
        let pid = workers[round].pid();
        let end = Instant::now() + Duration::from_secs(3);
        while in_hand_of(&redis, &queue, pid).await == 0 && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        workers[round].kill();
        // Exactly what the dead worker held: nothing moves its list until its lease lapses.
        in_hand_at_kills.push(in_hand_of(&redis, &queue, pid).await);
        let n = workers.len();
        outs.push(tmp.path().join(format!("jobs-{n}.jsonl")));
        workers.push(start_worker(tmp.path(), &redis.url(), &queue, &outs[n], n));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let outcomes = load.finish().await;

    let (by, acked) = tally(&outcomes);
    let ids = wait_processed(&outs, &acked, Duration::from_secs(20)).await;
    let have: HashSet<&str> = ids.keys().map(String::as_str).collect();
    let lost = missing(&acked, &have);
    let dups: u64 = ids.values().map(|c| u64::from(c - 1)).sum();
    let bound: u64 = in_hand_at_kills.iter().sum();
    println!(
        "worker SIGKILL x2: requests {} by status {by:?}; in hand at kills {in_hand_at_kills:?}; \
         acknowledged {} processed {} duplicates {dups} lost {}",
        outcomes.len(),
        acked.len(),
        ids.len(),
        lost.len()
    );
    assert!(!acked.is_empty(), "no request was acknowledged");
    assert!(
        lost.is_empty(),
        "acknowledged but never processed: {:?}",
        &lost[..lost.len().min(10)]
    );
    assert!(
        dups <= bound,
        "{dups} duplicates, more than the {bound} jobs in hand at the kills"
    );
}

/// Ingress SIGTERM under load: requests already being received finish with 200, the ingress
/// exits 0, and every acknowledged job is in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_sigterm_under_load_finishes_in_flight() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let redis = private_redis(false);
    let queue = queue_name("sigterm");
    let (mut ingress, port) = start_ingress(tmp.path(), &redis.url(), &queue, &[]).await;

    let load = Load::start(port, "sigterm", 16, 20_000, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Requests caught half-way: head and half the body sent before SIGTERM, the rest after.
    let mut partial = Vec::new();
    for i in 0..8u64 {
        let wamid = format!("wamid.fault.{}.{i}", unique("sigterm-partial"));
        let (body, sig) = signed_body(&wamid, i);
        let mut c = Conn::connect(local(port)).await.expect("connect");
        let (parts, streamed) = wa_testkit::streamed();
        let req = Request::post(PATH)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .header("x-hub-signature-256", sig)
            .body(streamed)
            .expect("a valid request");
        let answer = tokio::spawn(async move { c.send(req).await });
        let body = Bytes::from(body);
        let half = body.len() / 2;
        parts.send(body.slice(..half)).await.expect("send half");
        partial.push((parts, answer, body.slice(half..), wamid));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t_term = Instant::now();
    ingress.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut partial_ok = HashSet::new();
    let mut partial_status = Vec::new();
    for (parts, answer, rest, wamid) in partial {
        let r = async {
            parts.send(rest).await.ok()?;
            drop(parts); // the body is complete
            let answer = answer.await.ok()?.ok()?;
            Some(answer.status.as_u16())
        };
        let st = tokio::time::timeout(Duration::from_secs(10), r)
            .await
            .ok()
            .flatten();
        if st == Some(200) {
            partial_ok.insert(wamid);
        }
        partial_status.push(st);
    }
    let exit = ingress.wait_exit(Duration::from_secs(15)).await;
    let outcomes = load.finish().await;

    let (by, mut acked) = tally(&outcomes);
    let answered_after_term = outcomes
        .iter()
        .filter(|o| o.sent < t_term && o.done > t_term && o.status.is_some())
        .count();
    acked.extend(partial_ok.iter().cloned());
    let have = pending_ids(&redis, &queue).await;
    let have_ref: HashSet<&str> = have.iter().map(String::as_str).collect();
    let lost = missing(&acked, &have_ref);
    println!(
        "ingress SIGTERM: requests {} by status {by:?}; in flight at SIGTERM and answered after it {}; \
         half-sent requests finished after SIGTERM {partial_status:?}; exit {exit:?}; \
         acknowledged {} in redis {} lost {}",
        outcomes.len(),
        answered_after_term,
        acked.len(),
        have.len(),
        lost.len()
    );
    assert!(
        exit == Some(0),
        "ingress did not exit 0 after SIGTERM: {exit:?}"
    );
    assert!(
        partial_status.iter().all(|s| *s == Some(200)),
        "a request in progress at SIGTERM did not finish with 200: {partial_status:?}"
    );
    assert!(
        lost.is_empty(),
        "acknowledged but not in redis: {:?}",
        &lost[..lost.len().min(10)]
    );
}

/// A "Redis" that accepts connections and never answers: 503 within the enqueue timeout, and
/// no pile-up of connections, requests or memory in the ingress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_answers_503_without_pile_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake redis");
    let fake_port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let server = {
        let (accepted, open) = (accepted.clone(), open.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    break;
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                open.fetch_add(1, Ordering::Relaxed);
                let open = open.clone();
                tokio::spawn(async move {
                    // Read and drop everything, answer nothing, until the peer closes.
                    let mut buf = vec![0u8; 64 * 1024];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        })
    };
    let queue = queue_name("hung");
    let url = format!("redis://127.0.0.1:{fake_port}");
    let timeout = Duration::from_millis(300);
    let (ingress, port) =
        start_ingress(tmp.path(), &url, &queue, &[("WA_ENQUEUE_TIMEOUT", "300ms")]).await;

    let rss_before = rss_kib(&ingress);
    let load = Load::start(port, "hung", 16, 5_000, Duration::from_secs(4));
    let mut rss_peak = rss_before;
    let mut open_peak = 0;
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        rss_peak = rss_peak.max(rss_kib(&ingress));
        open_peak = open_peak.max(open.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outcomes = load.finish().await;
    // Once the clients are gone, nothing may linger: no request still waiting on the hung
    // Redis (the /metrics request itself is the one in flight).
    let mut in_flight = None;
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        in_flight = metric(port, "wa_webhook_in_flight_requests").await;
        if in_flight.is_some_and(|n| n <= 1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_after = rss_kib(&ingress);
    server.abort();

    let (by, acked) = tally(&outcomes);
    let slowest = outcomes
        .iter()
        .map(|o| o.done - o.sent)
        .max()
        .unwrap_or_default();
    println!(
        "hung redis: requests {} by status {by:?}; slowest answer {slowest:?} (enqueue timeout \
         {timeout:?}); fake redis connections accepted {} open peak {open_peak}; requests in flight after \
         the load {in_flight:?}; ingress RSS {} KiB before, peak {}, after {}",
        outcomes.len(),
        accepted.load(Ordering::Relaxed),
        rss_before,
        rss_peak,
        rss_after
    );
    assert!(
        acked.is_empty(),
        "200 answered although redis never confirmed anything"
    );
    assert!(
        outcomes.iter().all(|o| o.status == Some(503)),
        "every request should get 503, got {by:?}"
    );
    // Bounded: the timeout plus generous scheduling slack on a loaded 2-core machine.
    assert!(
        slowest < timeout + Duration::from_secs(2),
        "a request waited {slowest:?}"
    );
    assert!(
        open_peak <= 64,
        "{open_peak} connections to the hung redis at once"
    );
    assert!(
        rss_peak.saturating_sub(rss_before) < 64 * 1024,
        "ingress memory grew by {} KiB",
        rss_peak - rss_before
    );
}
