//! Fault injection against the real binaries: Redis stopped, killed and hung, workers and the
//! ingress killed or stopped, all under load. Each test prints its counts and asserts that
//! nothing acknowledged with 200 was lost.
//!
//! Every Redis here is a private `redis-server` on a free port in a temporary directory (never
//! the shared one); the binaries are the debug builds next to this test executable (`cargo
//! build --workspace --bins` first); all traffic goes to 127.0.0.1 and every loop is bounded.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader as StdBufReader};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SECRET: &str = "fault-app-secret";
const TOKEN: &str = "fault-verify-token";
const PATH: &str = "/api/whatsapp/webhook";

// ---------------------------------------------------------------- processes

/// A child process that is SIGKILLed and reaped when dropped, so a failing test leaves
/// nothing running.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(
            st.success(),
            "kill -{sig} {} ({}) failed",
            self.pid(),
            self.name
        );
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the process to exit.
    async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Resident set size in KiB, from /proc.
    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Path of one of our binaries, built next to this test executable (target/<profile>/).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: run cargo build --workspace --bins first",
        path.display()
    );
    path
}

fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Proc {
    let err = File::create(&log).expect("create log file");
    let child = cmd
        .stdin(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Proc {
        name: name.to_string(),
        child,
        log,
    }
}

/// A private redis-server in its own directory.
struct Redis {
    port: u16,
    dir: PathBuf,
    aof: bool,
    proc: Option<Proc>,
    starts: u32,
}

impl Redis {
    async fn start(dir: &Path, aof: bool) -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: dir.join("redis"),
            aof,
            proc: None,
            starts: 0,
        };
        std::fs::create_dir_all(&r.dir).expect("redis dir");
        r.up().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts on the same port and directory: with AOF it loads its file.
    async fn up(&mut self) {
        self.starts += 1;
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(&self.dir)
        .args(["--daemonize", "no", "--protected-mode", "no"]);
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.stdout(Stdio::null());
        let log = self.dir.join(format!("redis-{}.log", self.starts));
        let mut p = spawn("redis-server", &mut cmd, log);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(self.port).await {
                break;
            }
            assert!(
                p.running(),
                "redis-server exited at start: {}",
                p.log_tail()
            );
            assert!(
                Instant::now() < end,
                "redis-server did not answer PING within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.proc = Some(p);
    }

    /// SIGTERM (Redis writes and syncs its AOF, then exits) and waits for the exit.
    async fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal("TERM");
            if p.wait_exit(Duration::from_secs(10)).await.is_none() {
                p.kill9();
            }
        }
    }

    /// SIGKILL: no chance to write anything more.
    fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).expect("redis url");
        tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .expect("connect to private redis in time")
        .expect("connect to private redis")
    }
}

async fn ping(port: u16) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(500),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"+PONG\r\n"
    )
}

fn queue_name(test: &str) -> String {
    format!("t-fault-{test}-{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// Starts wa-ingress on a free port and waits until /healthz answers.
async fn start_ingress(
    dir: &Path,
    redis_url: &str,
    queue: &str,
    extra: &[(&str, &str)],
) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = Command::new(binary("wa-ingress"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("WHATSAPP_APP_SECRET", SECRET)
        .env("WHATSAPP_VERIFY_TOKEN", TOKEN)
        .env("REDIS_URL", redis_url)
        .env("WA_LISTEN", format!("127.0.0.1:{port}"))
        .env("WA_QUEUE", queue)
        .env("WA_ENQUEUE_TIMEOUT", "500ms")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let log = dir.join(format!("ingress-{port}.log"));
    let mut p = spawn("wa-ingress", &mut cmd, log);
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_millis(500), HttpConn::connect(port)).await
            && let Ok(Ok(200)) = tokio::time::timeout(
                Duration::from_secs(1),
                c.request("GET", "/healthz", &[], b""),
            )
            .await
        {
            break;
        }
        assert!(p.running(), "wa-ingress exited at start: {}", p.log_tail());
        assert!(
            Instant::now() < end,
            "wa-ingress did not answer /healthz within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    (p, port)
}

/// Starts `wa-worker run --stdout` with its job lines going to `out`.
fn start_worker(dir: &Path, redis_url: &str, queue: &str, out: &Path, n: usize) -> Proc {
    let mut cmd = Command::new(binary("wa-worker"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("REDIS_URL", redis_url)
        .env("WA_QUEUE", queue)
        .env("RUST_LOG", "info")
        // A short lease, so the jobs of a killed worker come back within the test.
        .args(["run", "--stdout", "--concurrency", "16", "--lease", "2s"])
        .stdout(File::create(out).expect("worker output file"));
    spawn(
        &format!("wa-worker-{n}"),
        &mut cmd,
        dir.join(format!("worker-{n}.log")),
    )
}

/// Job ids in worker output files, counting repeats.
fn processed_ids(files: &[PathBuf]) -> HashMap<String, u32> {
    let mut ids = HashMap::new();
    for f in files {
        let Ok(file) = File::open(f) else { continue };
        for line in StdBufReader::new(file).lines() {
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
async fn pending_ids(redis: &Redis, queue: &str) -> HashSet<String> {
    let mut c = redis.conn().await;
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
async fn locate(redis: &Redis, queue: &str, ids: &[&String]) -> HashMap<String, usize> {
    let mut c = redis.conn().await;
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
    let mut markers = 0;
    for k in keys.iter().filter(|k| k.contains(":dedup:")) {
        let n: usize = redis::cmd("HLEN")
            .arg(k)
            .query_async(&mut c)
            .await
            .expect("HLEN");
        markers += n;
    }
    found.insert("dedup markers (the whole queue's)".to_string(), markers);
    found
}

/// A gauge or counter of the ingress's /metrics (without labels), if it answers.
async fn metric(port: u16, name: &str) -> Option<f64> {
    let mut c = HttpConn::connect(port).await.ok()?;
    c.send_head("GET", "/metrics", &[], 0).await.ok()?;
    let (status, body) = tokio::time::timeout(Duration::from_secs(2), c.response_body())
        .await
        .ok()?
        .ok()?;
    if status != 200 {
        return None;
    }
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Jobs in the processing lists of the consumers of process `pid` (consumer ids are
/// `host-pid-random`).
async fn in_hand_of(redis: &Redis, queue: &str, pid: u32) -> u64 {
    let mut c = redis.conn().await;
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

// ---------------------------------------------------------------- HTTP client

/// One keep-alive HTTP/1.1 connection, enough of the protocol for these tests.
struct HttpConn {
    io: BufReader<TcpStream>,
    closed: bool,
}

impl HttpConn {
    async fn connect(port: u16) -> std::io::Result<HttpConn> {
        let s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.set_nodelay(true)?;
        Ok(HttpConn {
            io: BufReader::new(s),
            closed: false,
        })
    }

    async fn send_head(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        len: usize,
    ) -> std::io::Result<()> {
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.io.get_mut().write_all(head.as_bytes()).await
    }

    async fn send_body(&mut self, body: &[u8]) -> std::io::Result<()> {
        self.io.get_mut().write_all(body).await
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<u16> {
        self.send_head(method, path, headers, body.len()).await?;
        self.send_body(body).await?;
        self.response().await
    }

    /// Reads one response; returns its status.
    async fn response(&mut self) -> std::io::Result<u16> {
        Ok(self.response_body().await?.0)
    }

    /// Reads one response; returns its status and body.
    async fn response_body(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
        let mut line = String::new();
        if self.io.read_line(&mut line).await? == 0 {
            return Err(eof());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad status line")
            })?;
        let (mut len, mut chunked) = (0usize, false);
        loop {
            line.clear();
            if self.io.read_line(&mut line).await? == 0 {
                return Err(eof());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => len = v.parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => self.closed |= v.contains("close"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.io.read_line(&mut line).await?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                self.io.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(len, 0);
            self.io.read_exact(&mut body).await?;
        }
        Ok((status, body))
    }
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

/// What one request got.
#[derive(Debug, Clone)]
struct Outcome {
    wamid: String,
    status: Option<u16>,
    sent: Instant,
    done: Instant,
}

/// A bounded closed-loop load: `conns` connections send unique signed messages until `stop`
/// is set, `max` requests were sent, or `limit` has passed.
struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, tag: &str, conns: usize, max: u64, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let run = format!("{:08x}", rand_u64() as u32);
        let end = Instant::now() + limit;
        let tasks = (0..conns)
            .map(|_| {
                let (stop, sent, outcomes) = (stop.clone(), sent.clone(), outcomes.clone());
                let prefix = format!("wamid.fault.{tag}.{run}.");
                tokio::spawn(async move {
                    let mut conn: Option<HttpConn> = None;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let n = sent.fetch_add(1, Ordering::Relaxed);
                        if n >= max {
                            break;
                        }
                        let wamid = format!("{prefix}{n}");
                        let (body, sig) = signed_body(&wamid, n);
                        let t0 = Instant::now();
                        if conn.as_ref().is_none_or(|c| c.closed) {
                            conn = match tokio::time::timeout(
                                Duration::from_secs(1),
                                HttpConn::connect(port),
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
                                let headers = [
                                    ("content-type", "application/json"),
                                    ("x-hub-signature-256", sig.as_str()),
                                ];
                                match tokio::time::timeout(
                                    Duration::from_secs(5),
                                    c.request("POST", PATH, &headers, &body),
                                )
                                .await
                                {
                                    Ok(Ok(s)) => Some(s),
                                    _ => None,
                                }
                            }
                        };
                        if status.is_none() {
                            conn = None;
                        }
                        let done = Instant::now();
                        outcomes.lock().unwrap().push(Outcome {
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

    async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("load task");
        }
        Arc::try_unwrap(self.outcomes)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }
}

/// Counts by status (`None` = connection error or timeout) and the set of acknowledged wamids.
fn tally(outcomes: &[Outcome]) -> (HashMap<String, usize>, HashSet<String>) {
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
    let mut redis = Redis::start(tmp.path(), true).await;
    let queue = queue_name("outage");
    let (mut ingress, port) = start_ingress(tmp.path(), &redis.url(), &queue, &[]).await;

    let load = Load::start(port, "outage", 16, 20_000, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss_before = ingress.rss_kib().unwrap_or(0);
    let t_stop = Instant::now();
    redis.stop().await;
    let mut rss_peak = rss_before;
    let outage_end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < outage_end {
        rss_peak = rss_peak.max(ingress.rss_kib().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = load.snapshot();
    redis.up().await;
    let t_back = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    rss_peak = rss_peak.max(ingress.rss_kib().unwrap_or(0));
    ingress.kill9();
    let t_kill = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = load.finish().await;

    let (by, acked) = tally(&outcomes);
    let in_outage = |o: &&Outcome| o.sent > t_stop + Duration::from_millis(200) && o.done < t_back;
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
    let mut redis = Redis::start(tmp.path(), true).await;
    let queue = queue_name("aof");
    let (_ingress, port) = start_ingress(tmp.path(), &redis.url(), &queue, &[]).await;
    let out = tmp.path().join("jobs-0.jsonl");
    let mut worker = start_worker(tmp.path(), &redis.url(), &queue, &out, 0);

    let load = Load::start(port, "aof", 16, 20_000, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.kill9();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.up().await;
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
    assert!(worker.running(), "worker died: {}", worker.log_tail());
    assert!(!acked.is_empty(), "no request was acknowledged");
    if !lost.is_empty() {
        println!(
            "lost jobs are in: {:?}",
            locate(&redis, &queue, &lost).await
        );
        println!("worker log: {}", worker.log_tail());
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
    let redis = Redis::start(tmp.path(), false).await;
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
        workers[round].kill9();
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
    let redis = Redis::start(tmp.path(), false).await;
    let queue = queue_name("sigterm");
    let (mut ingress, port) = start_ingress(tmp.path(), &redis.url(), &queue, &[]).await;

    let load = Load::start(port, "sigterm", 16, 20_000, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Requests caught half-way: head and half the body sent before SIGTERM, the rest after.
    let mut partial = Vec::new();
    for i in 0..8u64 {
        let wamid = format!("wamid.fault.sigterm.partial.{:08x}.{i}", rand_u64() as u32);
        let (body, sig) = signed_body(&wamid, i);
        let mut c = HttpConn::connect(port).await.expect("connect");
        let headers = [
            ("content-type", "application/json"),
            ("x-hub-signature-256", sig.as_str()),
        ];
        c.send_head("POST", PATH, &headers, body.len())
            .await
            .expect("send head");
        c.send_body(&body[..body.len() / 2])
            .await
            .expect("send half");
        partial.push((c, body, wamid));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t_term = Instant::now();
    ingress.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut partial_ok = HashSet::new();
    let mut partial_status = Vec::new();
    for (mut c, body, wamid) in partial {
        let r = async {
            c.send_body(&body[body.len() / 2..]).await?;
            c.response().await
        };
        let st = tokio::time::timeout(Duration::from_secs(10), r)
            .await
            .ok()
            .and_then(Result::ok);
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
        exit.is_some_and(|s| s.success()),
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

    let rss_before = ingress.rss_kib().unwrap_or(0);
    let load = Load::start(port, "hung", 16, 5_000, Duration::from_secs(4));
    let mut rss_peak = rss_before;
    let mut open_peak = 0;
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        rss_peak = rss_peak.max(ingress.rss_kib().unwrap_or(0));
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
    let rss_after = ingress.rss_kib().unwrap_or(0);
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
