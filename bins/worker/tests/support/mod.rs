//! Helpers of the end-to-end tests: a private queue per test, enqueueing, the real `wa-worker`
//! binary as a child process, handler scripts and an HTTP receiver. The shared Redis, unique
//! names, bounded waiting and what `/proc` says about a process come from wa-testkit.
//!
//! Over 400 lines: every end-to-end suite of the worker shares these helpers, each a few lines.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::process::{Child, Command};
use wa_queue::{Admin, JobKind, NewJob, Producer, ProducerOptions, QueueName, Stats};
#[allow(unused_imports)] // each suite uses a different part
pub use wa_testkit::{eventually, peak_rss, redis_url, running};

pub const BIN: &str = env!("CARGO_BIN_EXE_wa-worker");

/// A queue of its own for one test, so tests run in parallel without seeing each other.
pub struct TestQueue {
    pub name: String,
    pub queue: QueueName,
    pub admin: Admin,
}

impl TestQueue {
    pub async fn new(test: &str) -> Self {
        let name = wa_testkit::unique(test);
        let queue = QueueName::new(name.clone()).expect("queue name");
        let admin = Admin::connect(redis_url(), queue.clone())
            .await
            .unwrap_or_else(|e| {
                panic!("Redis at {} is required for these tests: {e}", redis_url())
            });
        Self { name, queue, admin }
    }

    /// Enqueues jobs with these ids (kind message, a small payload).
    pub async fn enqueue(&self, ids: &[String]) {
        // Short-lived dedup markers: the tests' ids are never seen again.
        let mut opts = ProducerOptions::default();
        opts.dedup_ttl = Duration::from_secs(600);
        let producer = Producer::new(redis_url(), self.queue.clone(), opts).unwrap();
        let payload =
            RawValue::from_string(r#"{"text":{"body":"caf\u00e9 \/ ok"}}"#.into()).unwrap();
        for chunk in ids.chunks(500) {
            let jobs: Vec<NewJob<'_>> = chunk
                .iter()
                .map(|id| NewJob::new(id.as_str(), JobKind::Message, &payload))
                .collect();
            producer.enqueue(&jobs).await.expect("enqueue");
        }
    }

    /// LPUSHes raw text onto pending, bypassing the producer.
    pub async fn push_raw(&self, raw: &str) {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: i64 = redis::cmd("LPUSH")
            .arg(self.queue.pending())
            .arg(raw)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    pub async fn stats(&self) -> Stats {
        self.admin.stats().await.expect("stats")
    }

    /// Waits until nothing is pending, delayed or in hand.
    pub async fn wait_drained(&self, within: Duration) {
        eventually("queue drained", within, || async {
            let s = self.stats().await;
            s.pending == 0 && s.delayed == 0 && s.processing.iter().all(|(_, n)| *n == 0)
        })
        .await;
    }

    /// Starts `wa-worker run` on this queue with `args`; stdout discarded unless `piped`.
    pub fn worker(&self, args: &[&str], piped: bool) -> Child {
        self.command(args, piped).spawn().expect("start wa-worker")
    }

    /// Like [`worker`](Self::worker) with info logs captured: read them with [`logs`] once
    /// the worker has exited (the tests that use it log little, so the pipe never fills).
    pub fn worker_logged(&self, args: &[&str]) -> Child {
        self.worker_logged_env(args, &[])
    }

    /// Like [`worker_logged`](Self::worker_logged), with `env` added to the worker's
    /// environment.
    pub fn worker_logged_env(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        self.command(args, false)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wa-worker")
    }

    fn command(&self, args: &[&str], piped: bool) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .args(["--queue", &self.name])
            .args(args)
            .env("REDIS_URL", redis_url())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(if piped { Stdio::piped() } else { Stdio::null() })
            .kill_on_drop(true);
        cmd
    }

    /// Runs an admin subcommand (`stats --json`, `dead list --json`, ...) to completion.
    pub async fn cli(&self, args: &[&str]) -> Output {
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            Command::new(BIN)
                .args(args)
                .args(["--queue", &self.name])
                .env("REDIS_URL", redis_url())
                .output(),
        )
        .await
        .expect("admin command finishes")
        .expect("run wa-worker");
        assert!(
            out.status.success(),
            "wa-worker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub async fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_slice(&self.cli(args).await.stdout).expect("JSON output")
    }
}

/// Leaves nothing of the test behind in the shared Redis.
impl Drop for TestQueue {
    fn drop(&mut self) {
        wa_testkit::delete_matching(&redis_url(), &format!("wa:{{{}}}:*", self.name));
    }
}

impl TestQueue {
    /// Job ids waiting in pending.
    pub async fn pending_ids(&self) -> Vec<String> {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let raws: Vec<String> = redis::cmd("LRANGE")
            .arg(self.queue.pending())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        raws.iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(r).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
}

pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Sends SIGTERM and waits (bounded) for the exit code.
pub async fn terminate(child: &mut Child, within: Duration) -> i32 {
    let pid = child.id().expect("worker still running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(within, child.wait())
        .await
        .expect("worker exits after SIGTERM")
        .unwrap();
    status.code().expect("exited, not killed")
}

/// Everything an exited worker started with [`TestQueue::worker_logged`] wrote on stderr.
pub async fn logs(child: &mut Child) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut text).await.unwrap();
    }
    text
}

/// Writes an executable shell script into `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Lines of a file (empty when it does not exist yet).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The first line of a file, once it has one.
pub async fn first_line(path: &Path, within: Duration) -> String {
    let mut line = String::new();
    eventually("a line in the file", within, || {
        let got = lines(path);
        if let Some(first) = got.first() {
            line = first.clone();
        }
        let found = !got.is_empty();
        async move { found }
    })
    .await;
    line
}

/// Whether process `pid` has a child still running.
pub fn running_children(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .is_ok_and(|c| c.split_whitespace().any(|p| p.parse().is_ok_and(running)))
}

/// A test CA, and a server certificate for 127.0.0.1 it signed.
pub struct TestCa {
    /// the CA certificate, PEM (what `--forward-ca-cert` reads)
    pub ca_pem: String,
    /// a TLS server presenting the certificate (and the CA behind it)
    pub server: std::sync::Arc<rustls::ServerConfig>,
    /// the server's certificate chain (its certificate, then the CA's), PEM
    pub chain_pem: String,
    /// the server's private key, PEM
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), ca.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        Self {
            ca_pem: ca.pem(),
            server: std::sync::Arc::new(server),
            chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A request as a [`receiver`] saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: hyper::HeaderMap,
    pub body: bytes::Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The job id in the body.
    pub fn job_id(&self) -> String {
        let job: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        job["id"].as_str().unwrap().to_owned()
    }
}

/// Requests a [`receiver`] recorded, in arrival order.
pub type Record = std::sync::Arc<std::sync::Mutex<Vec<Received>>>;

/// An HTTP receiver on 127.0.0.1 (HTTPS with `tls`) that records every request and answers
/// with `reply`'s status and headers; returns its `/hook` URL.
pub async fn receiver<F>(
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    reply: F,
) -> (String, Record)
where
    F: Fn(&Received) -> hyper::Response<http_body_util::Full<bytes::Bytes>> + Send + Sync + 'static,
{
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/hook", listener.local_addr().unwrap());
    let record = Record::default();
    let (seen, reply) = (record.clone(), std::sync::Arc::new(reply));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (seen, reply, acceptor) = (seen.clone(), reply.clone(), acceptor.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let (seen, reply) = (seen.clone(), reply.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = BodyExt::collect(body).await?.to_bytes();
                        let r = Received {
                            headers: parts.headers,
                            body,
                        };
                        let resp = reply(&r);
                        seen.lock().unwrap().push(r);
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                let _ = match acceptor {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(tls) => {
                            http.serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                                .await
                        }
                        Err(_) => return,
                    },
                    None => {
                        http.serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                            .await
                    }
                };
            });
        }
    });
    (url, record)
}

/// A response with `status` and these headers, no body.
pub fn respond(
    status: u16,
    headers: &[(&str, &str)],
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        resp.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

/// Whether a request carries a Standard Webhooks signature by `key` (one of the
/// space-separated `v1,` signatures of `webhook-signature` is the base64 HMAC-SHA256 of
/// `webhook-id.webhook-timestamp.body`), with a timestamp within 5 minutes of now: the
/// receiver's side of the scheme, written from the specification.
pub fn standard_webhook_verifies(key: &[u8], r: &Received) -> bool {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (id, ts) = (r.header("webhook-id"), r.header("webhook-timestamp"));
    let Ok(sent) = ts.parse::<u64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(sent) > 300 || id.is_empty() {
        return false;
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", &r.body].concat();
    r.header("webhook-signature")
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| b64.decode(s).ok())
        .any(|tag| ring::hmac::verify(&key, &signed, &tag).is_ok())
}

/// An `--exec` handler script in a temporary folder of its own. In its text, `{out}` stands for
/// the file `out` and `{dir}` for the folder (paths without spaces or quotes).
pub struct HandlerScript {
    dir: tempfile::TempDir,
    path: String,
}

impl HandlerScript {
    pub fn new(body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().to_str().unwrap();
        let body = body
            .replace("{out}", &format!("{folder}/out"))
            .replace("{dir}", folder);
        let path = script(dir.path(), "handler.sh", &body);
        let path = path.to_str().unwrap().to_owned();
        Self { dir, path }
    }

    /// The script's path, for `--exec`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A file in the script's folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The lines the script wrote to `{out}` so far.
    pub fn out(&self) -> Vec<String> {
        lines(&self.file("out"))
    }
}
