//! The binaries on the Redis people run in production: TLS (private CA, client
//! certificates), Sentinel failover (with and without `--min-replicas`), and the
//! configuration checks (`--redis-check`). Every server is a private process from wa-testkit,
//! on loopback, started once per topology and stopped by PID.
//!
//! Over 600 lines: the tests share topologies started once per binary (a TLS Redis, a Sentinel
//! set), so they live in one module.

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use wa_testkit::sentinel::{DATA_PASSWORD, FAILOVER_LIMIT, MASTER, SENTINEL_PASSWORD};
use wa_testkit::{Failover, RedisServer, ServerOptions, Tls, TlsFiles, binary, free_port};

use crate::support::{
    Process, SECRET, TOKEN, command, get, http1, send, signed_post, text_body, unique,
};

/// How long a binary may take to start, to exit, or to drain a queue.
pub(crate) const LIMIT: Duration = Duration::from_secs(30);
/// How often the tests look again.
const POLL: Duration = Duration::from_millis(50);
/// Configuration checks this often in the test that changes the policy under a running process.
const CHECK_INTERVAL: &str = "200ms";

/// One of our binaries under a watchdog (a [`Process`]), and the ingress's base URL.
pub(crate) struct Bin {
    process: Process,
    base: Option<String>,
}

impl Bin {
    /// `wa-ingress` on a free port with the test secret and token, plus `env`.
    pub(crate) fn ingress(env: &[(&str, &str)]) -> Bin {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut cmd = command(binary("wa-ingress"));
        cmd.env("WHATSAPP_APP_SECRET", SECRET)
            .env("WHATSAPP_VERIFY_TOKEN", TOKEN)
            .env("WA_LISTEN", &listen);
        let mut bin = Self::spawn(cmd, env);
        bin.base = Some(format!("http://{listen}"));
        bin
    }

    /// `wa-worker` with `args`, plus `env`.
    pub(crate) fn worker(args: &[&str], env: &[(&str, &str)]) -> Bin {
        let mut cmd = command(binary("wa-worker"));
        cmd.args(args);
        Self::spawn(cmd, env)
    }

    /// Nothing of the caller's configuration leaks in: REDIS_URL is always given.
    fn spawn(cmd: Command, env: &[(&str, &str)]) -> Bin {
        let mut envs = vec![("RUST_LOG", "info")];
        envs.extend_from_slice(env);
        Bin {
            process: Process::spawn_command(cmd, &envs),
            base: None,
        }
    }

    pub(crate) fn base(&self) -> &str {
        self.base.as_deref().expect("an ingress")
    }

    pub(crate) fn output(&self) -> String {
        self.process.output()
    }

    /// Waits until `/healthz` answers (the ingress is listening).
    pub(crate) async fn listening(&mut self) {
        let url = self.base().to_owned();
        let client = http1();
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(code) = self.process.exited() {
                panic!("wa-ingress exited ({code}):\n{}", self.output());
            }
            let req = get(&url, "/healthz");
            if let Ok(Ok(r)) =
                tokio::time::timeout(Duration::from_secs(2), client.request(req)).await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "wa-ingress did not listen:\n{}",
                self.output()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the exit code.
    pub(crate) async fn exit_code(&mut self, limit: Duration) -> i32 {
        self.process.wait_exit(limit).await.unwrap_or_default()
    }

    /// Waits until the log holds `needle`.
    pub(crate) async fn logged(&self, needle: &str) {
        poll(&format!("log line {needle:?}"), || async {
            self.output().contains(needle)
        })
        .await;
    }

    /// The ids of the jobs a `--stdout` worker wrote.
    pub(crate) fn handled(&self) -> HashSet<String> {
        self.output()
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Polls `ready` until true; panics naming `what` after [`LIMIT`].
pub(crate) async fn poll<F, Fut>(what: &str, ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wa_testkit::eventually(what, LIMIT, ready).await;
}

async fn status(base: &str, path: &str) -> (StatusCode, String) {
    let a = send(&http1(), get(base, path)).await;
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

pub(crate) async fn post(base: &str, wamid: &str) -> StatusCode {
    let body = Bytes::from(text_body(wamid, "hello"));
    send(&http1(), signed_post(base, body)).await.status
}

// ------------------------------------------------------------------------------------ TLS

/// The TLS files and a Redis that serves TLS only and wants a client certificate: started
/// once for this test binary.
fn tls_redis() -> &'static (TlsFiles, RedisServer) {
    static SERVER: OnceLock<(TlsFiles, RedisServer)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let files = TlsFiles::generate();
        let server = RedisServer::start(ServerOptions {
            tls: Some(Tls::new(&files, true)),
            ..ServerOptions::default()
        });
        (files, server)
    })
}

fn path(files: &TlsFiles, name: &str) -> String {
    files.path(name).display().to_string()
}

/// The variables that point a client at the private CA and the client certificate.
fn tls_vars(files: &TlsFiles) -> [(&'static str, String); 3] {
    [
        ("WA_REDIS_CA_CERT", path(files, "ca.pem")),
        ("WA_REDIS_CLIENT_CERT", path(files, "client.pem")),
        ("WA_REDIS_CLIENT_KEY", path(files, "client.key")),
    ]
}

/// `wa-ingress` with `env`, ready, after each of `ids` was posted to it and answered 200.
async fn ingress_after_posts(env: &[(&str, &str)], ids: &[String]) -> Bin {
    let mut ingress = Bin::ingress(env);
    ingress.listening().await;
    assert_eq!(
        status(ingress.base(), "/readyz").await.0,
        StatusCode::OK,
        "{}",
        ingress.output()
    );
    for id in ids {
        assert_eq!(
            post(ingress.base(), id).await,
            StatusCode::OK,
            "{}",
            ingress.output()
        );
    }
    ingress
}

/// Over rediss:// with a private CA and a client certificate, the ingress enqueues and the
/// worker drains every job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ingress_and_worker() {
    let (files, server) = tls_redis();
    let queue = unique("tls");
    let url = server.url();
    let tls = tls_vars(files);
    let mut env = vec![("REDIS_URL", url.as_str()), ("WA_QUEUE", queue.as_str())];
    env.extend(tls.iter().map(|(k, v)| (*k, v.as_str())));
    let ids: Vec<String> = (0..20).map(|i| format!("wamid.tls.{queue}.{i}")).collect();
    let ingress = ingress_after_posts(&env, &ids).await;
    let worker = Bin::worker(&["run", "--stdout"], &env);
    poll("the worker drains over TLS", || async {
        ids.iter().all(|id| worker.handled().contains(id))
    })
    .await;
    assert!(!ingress.output().contains("redis://") && !worker.output().contains("redis://"));
}

/// The Python example worker drains over rediss:// with the same variables as wa-worker (a
/// private CA, a client certificate); without the CA it fails naming TLS and takes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_worker_over_tls() {
    let (files, server) = tls_redis();
    let queue = unique("tls-python");
    let url = server.url();
    let tls = tls_vars(files);
    let tls: Vec<(&str, &str)> = tls.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut env = vec![("REDIS_URL", url.as_str()), ("WA_QUEUE", queue.as_str())];
    env.extend(tls.iter().copied());
    let ids: Vec<String> = (0..5).map(|i| format!("wamid.pytls.{queue}.{i}")).collect();
    let _ingress = ingress_after_posts(&env, &ids).await;

    // Without the private CA (system roots only) the handshake fails: a clear error, no job taken.
    let refused = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/python_worker/worker.py"
        ))
        .args(["--redis-url", &url, "--queue", &queue, "--max-jobs", "1"])
        .envs(tls[1..].iter().copied())
        .env_remove("WA_REDIS_CA_CERT")
        .output()
        .expect("python3 on PATH");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("TLS to redis at localhost:"), "{err}");

    let run = crate::python_worker::run_python_worker_env(&url, &queue, ids.len(), &tls).await;
    let mut handled: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.strip_prefix("id="))
        .collect();
    handled.sort_unstable();
    assert_eq!(handled, ids, "stderr: {}", run.stderr);
}

/// A client that trusts another CA, or presents no certificate to a Redis that wants one,
/// fails with an error naming TLS, and the ingress answers 503 instead of falling back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_clear() {
    let (files, server) = tls_redis();
    let url = server.url();
    let (other, ca) = (path(files, "other-ca.pem"), path(files, "ca.pem"));
    let (cert, key) = (path(files, "client.pem"), path(files, "client.key"));

    let wrong_ca = [
        ("REDIS_URL", url.as_str()),
        ("WA_REDIS_CA_CERT", other.as_str()),
        ("WA_REDIS_CLIENT_CERT", cert.as_str()),
        ("WA_REDIS_CLIENT_KEY", key.as_str()),
        ("WA_QUEUE", "tls-wrong-ca"),
    ];
    let mut ingress = Bin::ingress(&wrong_ca);
    ingress.listening().await;
    let (code, _) = status(ingress.base(), "/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        post(ingress.base(), "wamid.tls.wrong-ca").await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let mut stats = Bin::worker(&["stats"], &wrong_ca);
    assert_eq!(stats.exit_code(LIMIT).await, 1, "{}", stats.output());
    assert!(
        stats.output().contains("TLS connection to Redis failed"),
        "{}",
        stats.output()
    );
    assert!(stats.output().contains("certificate"), "{}", stats.output());

    let no_client_cert = [
        ("REDIS_URL", url.as_str()),
        ("WA_REDIS_CA_CERT", ca.as_str()),
    ];
    let mut stats = Bin::worker(&["stats"], &no_client_cert);
    assert_eq!(stats.exit_code(LIMIT).await, 1, "{}", stats.output());
    assert!(
        stats.output().contains("TLS connection to Redis failed"),
        "{}",
        stats.output()
    );

    let plain_with_ca = [
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("WA_REDIS_CA_CERT", ca.as_str()),
    ];
    let mut ingress = Bin::ingress(&plain_with_ca);
    assert_eq!(ingress.exit_code(LIMIT).await, 64);
    assert!(
        ingress
            .output()
            .contains("--redis-ca-cert/WA_REDIS_CA_CERT"),
        "{}",
        ingress.output()
    );
    assert!(
        ingress.output().contains("rediss://"),
        "{}",
        ingress.output()
    );
}

// ------------------------------------------------------------------------ configuration

/// A Redis with `maxmemory-policy allkeys-lru`, started once for this test binary.
fn evicting_redis() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        RedisServer::start(ServerOptions {
            maxmemory_policy: Some("allkeys-lru".into()),
            ..ServerOptions::default()
        })
    })
}

/// With allkeys-lru, strict (the default) makes both binaries exit 78 within 5 s with one
/// line naming maxmemory-policy, its value and the fix; warn starts and warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicting_policy_strict_and_warn() {
    let url = evicting_redis().url();
    let env = [("REDIS_URL", url.as_str())];
    for mut bin in [Bin::ingress(&env), Bin::worker(&["run", "--stdout"], &env)] {
        let started = Instant::now();
        assert_eq!(bin.exit_code(LIMIT).await, 78, "{}", bin.output());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let out = bin.output();
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("maxmemory-policy"))
            .collect();
        assert_eq!(lines.len(), 1, "{out}");
        assert!(
            lines[0].contains("maxmemory-policy is allkeys-lru"),
            "{out}"
        );
        assert!(
            lines[0].contains("set maxmemory-policy noeviction"),
            "{out}"
        );
    }

    let warn = [("REDIS_URL", url.as_str()), ("WA_REDIS_CHECK", "warn")];
    let mut ingress = Bin::ingress(&warn);
    ingress.listening().await;
    ingress.logged("maxmemory-policy is allkeys-lru").await;
    assert_eq!(status(ingress.base(), "/readyz").await.0, StatusCode::OK);
    let (_, metrics) = status(ingress.base(), "/metrics").await;
    assert!(metrics.contains("wa_redis_config_ok 0"), "{metrics}");
}

/// A Redis whose CONFIG is renamed away: the ingress starts with one "could not check"
/// warning and reports the configuration as ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_config_warns_once() {
    let server = RedisServer::start(ServerOptions {
        hide_config: true,
        ..ServerOptions::default()
    });
    let url = server.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("WA_REDIS_CHECK_INTERVAL", CHECK_INTERVAL),
    ];
    let mut ingress = Bin::ingress(&env);
    ingress.listening().await;
    ingress
        .logged("could not check Redis's maxmemory-policy")
        .await;
    assert_eq!(status(ingress.base(), "/readyz").await.0, StatusCode::OK);
    assert_eq!(
        ingress.output().matches("could not check").count(),
        1,
        "{}",
        ingress.output()
    );
    let (_, metrics) = status(ingress.base(), "/metrics").await;
    assert!(metrics.contains("wa_redis_config_ok 1"), "{metrics}");
}

/// A policy changed to allkeys-lru under running binaries: both log it and report
/// wa_redis_config_ok 0, the strict ingress answers /readyz 503; changed back, it is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changed_while_running() {
    let server = RedisServer::plain();
    let url = server.url();
    let metrics_port = free_port().to_string();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("WA_REDIS_CHECK_INTERVAL", CHECK_INTERVAL),
    ];
    let mut ingress = Bin::ingress(&env);
    ingress.listening().await;
    let worker_metrics = format!("127.0.0.1:{metrics_port}");
    let worker = Bin::worker(
        &["run", "--stdout", "--metrics-listen", &worker_metrics],
        &env,
    );
    ingress.logged("no persistence").await;
    worker.logged("worker started").await;
    assert_eq!(status(ingress.base(), "/readyz").await.0, StatusCode::OK);

    let _: () = server
        .query(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        .unwrap();
    let base = ingress.base().to_owned();
    poll("the ingress not ready", || async {
        status(&base, "/readyz").await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(
        status(&base, "/metrics")
            .await
            .1
            .contains("wa_redis_config_ok 0")
    );
    ingress.logged("maxmemory-policy is allkeys-lru").await;
    let worker_base = format!("http://{worker_metrics}");
    poll("the worker's metric at 0", || async {
        let client = http1();
        match tokio::time::timeout(
            Duration::from_secs(2),
            client.request(get(&worker_base, "/metrics")),
        )
        .await
        {
            Ok(Ok(r)) => {
                use http_body_util::BodyExt;
                let body = r
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                String::from_utf8_lossy(&body).contains("wa_redis_config_ok 0")
            }
            _ => false,
        }
    })
    .await;
    worker.logged("maxmemory-policy is allkeys-lru").await;

    let _: () = server
        .query(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
        .unwrap();
    poll("the ingress ready again", || async {
        status(&base, "/readyz").await.0 == StatusCode::OK
    })
    .await;
}

// ------------------------------------------------------------------------------ Sentinel

/// What one failover run saw.
#[derive(Debug, Default)]
pub(crate) struct Run {
    /// ids answered 200
    pub(crate) acked: HashSet<String>,
    /// answers other than 200 and 503
    pub(crate) unexpected: Vec<StatusCode>,
    pub(crate) answers_503: usize,
    /// from the kill to the first 200 after it
    pub(crate) back_after: Option<Duration>,
    /// acked ids the worker never handled
    pub(crate) lost: usize,
}

/// Records one answer of the failover load.
fn record(run: &Mutex<Run>, killed_at: &Mutex<Option<Instant>>, id: String, code: StatusCode) {
    let mut run = run.lock().unwrap();
    match code {
        StatusCode::OK => {
            run.acked.insert(id);
            let kill = *killed_at.lock().unwrap();
            if let Some(at) = kill
                && run.back_after.is_none()
            {
                run.back_after = Some(at.elapsed());
            }
        }
        StatusCode::SERVICE_UNAVAILABLE => run.answers_503 += 1,
        other => run.unexpected.push(other),
    }
}

/// Signed load on an ingress: four senders, one request at a time each, each request a new
/// message; records every answer.
pub(crate) struct Load {
    run: Arc<Mutex<Run>>,
    /// when the disturbance (a kill, a reshard) began
    since: Arc<Mutex<Option<Instant>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the senders against `base`; ids are `wamid.<queue>.<sender>.<n>`.
    pub(crate) fn start(base: &str, queue: &str) -> Load {
        let run = Arc::new(Mutex::new(Run::default()));
        let since: Arc<Mutex<Option<Instant>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut senders = Vec::new();
        for s in 0..4 {
            let (run, since, stop) = (run.clone(), since.clone(), stop.clone());
            let base = base.to_owned();
            let queue = queue.to_owned();
            senders.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = format!("wamid.{queue}.{s}.{n}");
                    n += 1;
                    let code = post(&base, &id).await;
                    record(&run, &since, id, code);
                    if code != StatusCode::OK {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
        Load {
            run,
            since,
            stop,
            senders,
        }
    }

    /// Marks the start of the disturbance: `back_after` counts from here.
    pub(crate) fn disturbed(&self) {
        *self.since.lock().unwrap() = Some(Instant::now());
    }

    /// Waits (at most `limit`) for a 200 after the disturbance, then two seconds more of load.
    pub(crate) async fn wait_back(&self, limit: Duration, context: impl Fn() -> String) {
        let deadline = Instant::now() + limit;
        while self.run.lock().unwrap().back_after.is_none() {
            assert!(Instant::now() < deadline, "{}", context());
            tokio::time::sleep(POLL).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    /// Stops the senders; what they saw.
    pub(crate) async fn stop(self) -> Run {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in self.senders {
            s.await.unwrap();
        }
        std::mem::take(&mut *self.run.lock().unwrap())
    }
}

/// Signed load (four senders, one request at a time each) against a sentinel-backed ingress
/// and worker; the primary is SIGKILLed after a second; the load goes on until 200s are back
/// for two seconds; then the worker drains.
async fn failover_run(set: &Failover, min_replicas: &str) -> Run {
    let queue = unique("failover");
    let sentinels = set.sentinels();
    // The URL's host is ignored under Sentinel; its password goes to the data nodes.
    let url = format!("redis://:{DATA_PASSWORD}@ignored.invalid:1");
    let env = [
        ("REDIS_URL", url.as_str()),
        ("WA_REDIS_SENTINEL", sentinels.as_str()),
        ("WA_REDIS_MASTER", MASTER),
        ("WA_REDIS_SENTINEL_PASSWORD", SENTINEL_PASSWORD),
        ("WA_QUEUE", queue.as_str()),
        ("WA_MIN_REPLICAS", min_replicas),
        ("WA_ENQUEUE_TIMEOUT", "1s"),
        ("WA_LEASE", "2s"),
    ];
    let mut ingress = Bin::ingress(&env);
    ingress.listening().await;
    let worker = Bin::worker(&["run", "--stdout"], &env);
    let load = Load::start(ingress.base(), &queue);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old = tokio::task::block_in_place(|| set.kill_primary());
    load.disturbed();
    let new = tokio::task::block_in_place(|| set.wait_promoted(old));
    // With --min-replicas 1 and a single replica, the promoted primary has no replica until
    // the old one rejoins: 503 until then (production runs one replica more than N).
    let replicated = min_replicas != "0";
    if replicated {
        tokio::task::block_in_place(|| set.restart(old));
    }
    load.wait_back(FAILOVER_LIMIT, || {
        format!(
            "no 200 after the failover ({old} -> {new}):\n{}\n{}",
            ingress.output(),
            set.sentinel_logs()
        )
    })
    .await;
    let mut run = load.stop().await;
    // Drained: nothing pending, delayed or in hand on the new primary.
    let prefix = format!("wa:{{{queue}}}:");
    poll("the queue drained on the new primary", || async {
        let pending: u64 = set
            .query_primary(&["LLEN", &format!("{prefix}pending")])
            .unwrap_or(1);
        let delayed: u64 = set
            .query_primary(&["ZCARD", &format!("{prefix}delayed")])
            .unwrap_or(1);
        let in_hand: Vec<String> = set
            .query_primary(&["KEYS", &format!("wa:{{{queue}}}:processing:*")])
            .unwrap_or_else(|_| vec!["?".into()]);
        let mut held = 0;
        for key in &in_hand {
            held += set.query_primary::<u64>(&["LLEN", key]).unwrap_or(1);
        }
        pending == 0 && delayed == 0 && held == 0
    })
    .await;
    let handled = worker.handled();
    run.lost = run.acked.iter().filter(|id| !handled.contains(*id)).count();
    eprintln!(
        "failover (min-replicas {min_replicas}, primary {old} -> {new}): {} answered 200, {} answered 503, 200 again after {:?}, {} of the 200s never handled",
        run.acked.len(),
        run.answers_503,
        run.back_after,
        run.lost
    );
    if !replicated {
        tokio::task::block_in_place(|| set.restart(old));
    }
    run
}

/// Under steady signed load, the primary is SIGKILLed and sentinel promotes the replica: the
/// ingress answers only 200 or 503, 200 again within the failover time (with --min-replicas 1,
/// once the old primary is back as a replica), with no restart; the worker follows. With
/// --min-replicas 1 (the replica has an AOF) every job answered 200 is handled; without it,
/// the losses are counted (docs/operations.md quotes them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover() {
    let set = tokio::task::block_in_place(Failover::start);
    for min_replicas in ["1", "0"] {
        let run = failover_run(&set, min_replicas).await;
        assert!(run.unexpected.is_empty(), "{:?}", run.unexpected);
        assert!(run.acked.len() > 20, "too little load: {run:?}");
        let back = run.back_after.expect("200 again");
        assert!(back < FAILOVER_LIMIT, "{back:?}");
        if min_replicas == "1" {
            assert_eq!(
                run.lost, 0,
                "jobs acknowledged with --min-replicas 1 were lost"
            );
        }
    }
}
