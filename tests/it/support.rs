//! Helpers of the ingress tests: an in-process ingress on `127.0.0.1:0` (through
//! `wa_webhook::Server`), our binaries as child processes, requests and bodies, and reading a
//! queue back. Private Redis servers, processes under a watchdog, the shared Redis and the HTTP
//! client come from wa-testkit.
//!
//! Every ingress gets its own queue name; its keys are deleted when it is dropped.
//!
//! Over 400 lines: every module of this suite shares these helpers, each a few lines.

#![allow(dead_code)] // each test module uses a different part

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wa_testkit::Guarded;
pub use wa_testkit::connect as redis;
pub use wa_testkit::{Answer, RedisServer, free_port, http1, http2, redis_url, send, unique};
use wa_webhook::{
    Challenge, Config, Producer, QueueName, ServeOptions, Server, Tls, Verifier, Webhook,
};

/// App secret of the in-process ingresses (also the one the shared fixtures are signed with).
pub const SECRET: &str = "test_app_secret_0123456789abcdef";
/// Verify token of the in-process ingresses.
pub const TOKEN: &str = "it-verify-token-5f1e";
/// The default webhook path.
pub const PATH: &str = "/api/whatsapp/webhook";

/// `X-Hub-Signature-256` value for `body` under the test secret.
pub fn sign(body: &[u8]) -> String {
    wa_signature::sign(SECRET.as_bytes(), body)
}

/// A job read back from a queue, with `payload` kept as the exact bytes stored.
#[derive(Debug, Deserialize)]
pub struct StoredJob {
    pub v: u32,
    pub id: String,
    pub kind: String,
    pub wamid: Option<String>,
    pub from: Option<String>,
    pub from_user_id: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub text: Option<String>,
    pub timestamp: Option<String>,
    pub contact_name: Option<String>,
    pub phone_number_id: Option<String>,
    pub display_phone_number: Option<String>,
    pub waba_id: Option<String>,
    pub received_at: u64,
    pub attempt: u32,
    pub payload: Box<RawValue>,
}

/// Keys of a queue, for reading it back and deleting it.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub name: String,
    pub url: String,
}

impl QueueKeys {
    pub fn pending_key(&self) -> String {
        format!("wa:{{{}}}:pending", self.name)
    }

    /// The queue's dedup keys: each slot's header (`dedup:<slot>`) and buckets
    /// (`dedup:<slot>/<b>`).
    pub async fn dedup_keys(&self) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(format!("wa:{{{}}}:dedup:*", self.name))
            .query_async(&mut redis(&self.url).await)
            .await
            .expect("KEYS")
    }

    /// The queue's dedup buckets (`dedup:<slot>/<b>`), without the headers.
    pub async fn dedup_buckets(&self) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(format!("wa:{{{}}}:dedup:*/*", self.name))
            .query_async(&mut redis(&self.url).await)
            .await
            .expect("KEYS")
    }

    /// How many dedup markers the queue's buckets hold (each also keeps a 0).
    pub async fn markers(&self) -> usize {
        let mut conn = redis(&self.url).await;
        let mut n = 0;
        for bucket in self.dedup_buckets().await {
            let len: usize = redis::cmd("SCARD")
                .arg(bucket)
                .query_async(&mut conn)
                .await
                .expect("SCARD");
            n += len - 1;
        }
        n
    }

    /// Every pending job, oldest first, as stored.
    pub async fn pending_raw(&self) -> Vec<String> {
        let mut conn = redis(&self.url).await;
        let mut all: Vec<String> = redis::cmd("LRANGE")
            .arg(self.pending_key())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .expect("LRANGE pending");
        all.reverse(); // producers LPUSH: the oldest is at the right
        all
    }

    /// Every pending job, oldest first, parsed.
    pub async fn pending(&self) -> Vec<StoredJob> {
        self.pending_raw()
            .await
            .iter()
            .map(|raw| {
                serde_json::from_str(raw)
                    .unwrap_or_else(|e| panic!("job does not parse ({e}): {raw}"))
            })
            .collect()
    }

    /// The ids of every pending job, oldest first.
    pub async fn pending_ids(&self) -> Vec<String> {
        self.pending().await.into_iter().map(|j| j.id).collect()
    }

    /// Deletes every key of the queue (blocking: called from Drop).
    pub fn delete_all(&self) {
        wa_testkit::delete_matching(&self.url, &format!("wa:{{{}}}:*", self.name));
    }
}

/// A signed POST of `body` to `base` + `path`.
pub fn signed_post(base: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let body = body.into();
    Request::post(format!("{base}{PATH}"))
        .header("x-hub-signature-256", sign(&body))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap()
}

/// A GET of `base` + `path_and_query`.
pub fn get(base: &str, path_and_query: &str) -> Request<Full<Bytes>> {
    Request::get(format!("{base}{path_and_query}"))
        .body(Full::default())
        .unwrap()
}

/// Writes `raw` on a new connection and reads until the server closes it or `wait` passes.
pub async fn raw_exchange(addr: SocketAddr, raw: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(raw).await.expect("write");
    read_for(&mut stream, wait).await
}

/// Reads what arrives on `stream` until it closes or `wait` passes.
pub async fn read_for(stream: &mut TcpStream, wait: Duration) -> String {
    read_until_closed(stream, wait).await.0
}

/// Reads what arrives on `stream` until it closes or `wait` passes; true when the server
/// closed (or reset) the connection before then.
pub async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    let closed = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Err(_) => break false,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// The business number `text_body` and `status_body` use by default.
pub const PHONE_NUMBER_ID: &str = "109876543210987";

/// A text-message webhook body with the given wamid (one message).
pub fn text_body(wamid: &str, text: &str) -> String {
    text_body_to(PHONE_NUMBER_ID, wamid, text)
}

/// A text-message webhook body to business number `phone_number_id` (one message).
pub fn text_body_to(phone_number_id: &str, wamid: &str, text: &str) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"104512367890123","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001234","phone_number_id":"{phone_number_id}"}},"contacts":[{{"profile":{{"name":"Test User"}},"wa_id":"15551230000"}}],"messages":[{{"from":"15551230000","id":"{wamid}","timestamp":"1768993210","type":"text","text":{{"body":"{text}"}}}}]}},"field":"messages"}}]}}]}}"#
    )
}

/// A `delivered` status webhook body for message `wamid` of business number `phone_number_id`.
pub fn status_body_to(phone_number_id: &str, wamid: &str) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"104512367890123","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001234","phone_number_id":"{phone_number_id}"}},"statuses":[{{"id":"{wamid}","status":"delivered","timestamp":"1768993211","recipient_id":"15551230000"}}]}},"field":"messages"}}]}}]}}"#
    )
}

/// What an in-process ingress starts with: the handler's settings and the listener's, each at
/// its default until a test's tweak changes it.
#[derive(Debug, Default)]
pub struct Settings {
    pub config: Config,
    pub serve: ServeOptions,
}

/// An ingress served in-process on `127.0.0.1:0` with its own queue.
pub struct Ingress {
    pub addr: SocketAddr,
    pub base: String,
    pub queue: QueueKeys,
    pub webhook: Webhook,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Ingress {
    /// Starts an ingress on the shared Redis with default settings.
    pub async fn start(what: &str) -> Ingress {
        Self::start_with(what, &redis_url(), |_| {}).await
    }

    /// Starts an ingress on the Redis at `url`, with `tweak` applied to the default settings.
    pub async fn start_with(what: &str, url: &str, tweak: impl FnOnce(&mut Settings)) -> Ingress {
        Self::start_inner(what, url, tweak, None).await
    }

    /// Starts an ingress on the shared Redis that serves HTTPS with `tls`, with `tweak` applied
    /// to the default settings.
    pub async fn start_tls(what: &str, tls: Tls, tweak: impl FnOnce(&mut Settings)) -> Ingress {
        Self::start_inner(what, &redis_url(), tweak, Some(tls)).await
    }

    async fn start_inner(
        what: &str,
        url: &str,
        tweak: impl FnOnce(&mut Settings),
        tls: Option<Tls>,
    ) -> Ingress {
        let mut settings = Settings::default();
        tweak(&mut settings);
        let Settings { config, serve } = settings;
        let name = unique(what);
        let options = config.producer_options();
        let producer =
            Producer::new(url, QueueName::new(name.clone()).unwrap(), options).expect("producer");
        let webhook = Webhook::new(
            config,
            Verifier::from_list(SECRET).unwrap(),
            Challenge::new(TOKEN).unwrap(),
            producer,
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stopped = async {
            let _ = rx.await;
        };
        let base = match tls {
            // The name the test certificates carry.
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let mut server = Server::new(listener).options(serve);
        if let Some(tls) = tls {
            server = server.tls(tls);
        }
        let task = tokio::spawn(server.serve(webhook.clone(), stopped));
        Ingress {
            addr,
            base,
            queue: QueueKeys {
                name,
                url: url.to_owned(),
            },
            webhook,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Signs and POSTs `body` over HTTP/1.1.
    pub async fn post(&self, body: impl Into<Bytes>) -> Answer {
        send(&http1(), signed_post(&self.base, body)).await
    }

    /// GETs `path_and_query` over HTTP/1.1.
    pub async fn get(&self, path_and_query: &str) -> Answer {
        send(&http1(), get(&self.base, path_and_query)).await
    }

    /// Starts the graceful shutdown (the listener closes, requests in flight go on).
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits up to 20 s for `serve` to return after [`Ingress::begin_stop`]; true if it did.
    pub async fn stopped(&mut self) -> bool {
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .is_ok_and(|r| r.is_ok()),
            None => true,
        }
    }

    /// Stops serving and waits for the drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.queue.delete_all();
    }
}

/// The environment of a `wa-ingress` on `127.0.0.1:0` with the test secret and token.
pub fn base_env<'a>(redis: &'a str, queue: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("WHATSAPP_APP_SECRET", SECRET),
        ("WHATSAPP_VERIFY_TOKEN", TOKEN),
        ("REDIS_URL", redis),
        ("WA_LISTEN", "127.0.0.1:0"),
        ("WA_QUEUE", queue),
    ]
}

/// The `wa-ingress` binary built next to this test executable.
pub fn ingress_bin() -> PathBuf {
    wa_testkit::binary("wa-ingress")
}

/// The `wa-worker` binary built next to this test executable.
pub fn worker_bin() -> PathBuf {
    wa_testkit::binary("wa-worker")
}

/// A command for `bin` whose environment holds nothing of the caller's configuration
/// (`WA_*`, `WHATSAPP_*`, `REDIS_URL`, `RUST_LOG`): a test sets what it means.
pub fn command(bin: PathBuf) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("WA_") || k.starts_with("WHATSAPP_") || k == "REDIS_URL" || k == "RUST_LOG"
        {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// How often a [`Process`] is looked at again while waiting for it.
const POLL: Duration = Duration::from_millis(20);

/// One of our binaries running under wa-testkit's watchdog (SIGKILLed when dropped or when the
/// test process ends), its stdout and stderr in a log in a temporary directory of its own.
pub struct Process {
    process: Guarded,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Spawns `wa-ingress` with `envs` (and nothing of the caller's `WHATSAPP_*`/`WA_*`).
    pub fn spawn(envs: &[(&str, &str)]) -> Process {
        Self::spawn_bin(ingress_bin(), &[], envs)
    }

    /// Spawns `bin` with `args` and `envs` (and nothing of the caller's `WHATSAPP_*`/`WA_*`).
    pub fn spawn_bin(bin: PathBuf, args: &[&str], envs: &[(&str, &str)]) -> Process {
        let mut cmd = command(bin);
        cmd.args(args);
        Self::spawn_command(cmd, envs)
    }

    /// Spawns `cmd` (from [`command`]) with `envs` added to its environment.
    pub fn spawn_command(mut cmd: Command, envs: &[(&str, &str)]) -> Process {
        cmd.envs(envs.iter().copied());
        let dir = tempfile::tempdir().expect("tempdir");
        let process = Guarded::spawn(&cmd, &dir.path().join("out.log"));
        Process { process, _dir: dir }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// The exit code once the process has ended (128 + n after signal n).
    pub fn exited(&mut self) -> Option<i32> {
        self.process.exited()
    }

    /// Waits up to `limit` for the listen line and returns the bound address.
    pub async fn wait_listening(&mut self, limit: Duration) -> SocketAddr {
        self.wait_addr("wa-ingress listening", "addr", limit).await
    }

    /// Waits up to `limit` for a log line containing `marker` and returns the address in its
    /// `field=` value.
    pub async fn wait_addr(&mut self, marker: &str, field: &str, limit: Duration) -> SocketAddr {
        let deadline = Instant::now() + limit;
        let key = format!("{field}=");
        loop {
            let out = self.output();
            if let Some(addr) = out
                .lines()
                .filter(|l| l.contains(marker))
                .find_map(|l| l.split(key.as_str()).nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.trim_matches('"').parse().ok())
            {
                return addr;
            }
            if let Some(code) = self.exited() {
                panic!("the process exited ({code}) before logging {marker:?}:\n{out}");
            }
            assert!(
                Instant::now() < deadline,
                "the process did not log {marker:?}:\n{out}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, ...).
    pub fn signal(&self, sig: &str) {
        self.process.signal(sig);
    }

    /// Waits up to `limit` for the exit; returns the exit code (128 + n after signal n).
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let code = self.process.wait_exit(limit).await;
        assert!(
            code.is_some(),
            "the process did not exit within {limit:?}:\n{}",
            self.output()
        );
        code
    }
}
