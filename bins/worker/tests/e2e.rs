//! End to end: the real `wa-worker` binary against the real Redis, one private queue per test.
//!
//! Over 700 lines: fifteen independent tests of the binary, each on its own queue.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

use support::*;

const LONG: Duration = Duration::from_secs(60);

/// 2 000 jobs through `--exec` (on two threads) are each handled exactly once; SIGTERM exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn exec_handles_2000_jobs_exactly_once() {
    let q = TestQueue::new("exec2000").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let handler = script(
        dir.path(),
        "h.sh",
        &format!("echo \"$WA_JOB_ID\" >> '{}'", out.display()),
    );
    let want = ids("m", 2000);
    q.enqueue(&want).await;
    let mut w = q.worker(
        // The multi-threaded runtime here; every other test runs the default single thread.
        &[
            "--exec",
            handler.to_str().unwrap(),
            "--concurrency",
            "32",
            "--threads",
            "2",
        ],
        false,
    );
    eventually("2000 lines written", Duration::from_secs(180), || async {
        lines(&out).len() >= 2000
    })
    .await;
    q.wait_drained(LONG).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    let got = lines(&out);
    assert_eq!(got.len(), 2000, "each job handled once");
    assert_eq!(
        got.into_iter().collect::<BTreeSet<_>>(),
        want.into_iter().collect()
    );
    assert_eq!(q.stats().await.dead, 0);
}

/// A handler that fails twice then succeeds ends done, on the third delivery.
#[tokio::test(flavor = "multi_thread")]
async fn exec_retries_until_success_on_attempt_3() {
    let q = TestQueue::new("exec-retry").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let handler = script(
        dir.path(),
        "h.sh",
        &format!(
            "echo \"failing $WA_ATTEMPT\" >&2\n[ \"$WA_ATTEMPT\" -lt 3 ] && exit 1\necho \"$WA_JOB_ID $WA_ATTEMPT\" >> '{}'",
            out.display()
        ),
    );
    q.enqueue(&ids("r", 1)).await;
    let backoff = ["--backoff-base", "50ms", "--backoff-max", "200ms"];
    let mut w = q.worker(
        &[&["--exec", handler.to_str().unwrap()][..], &backoff].concat(),
        false,
    );
    eventually("job done", LONG, || async { !lines(&out).is_empty() }).await;
    q.wait_drained(LONG).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    assert_eq!(lines(&out), ["r-0 3"]);
    assert_eq!(q.stats().await.dead, 0);
}

/// Exit 65 sends a job to dead at once, `stats` and `dead list` show it, and `dead replay`
/// brings it back to be processed.
#[tokio::test(flavor = "multi_thread")]
async fn exec_exit_65_is_dead_then_replayed() {
    let q = TestQueue::new("exec-dead").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let fixed = dir.path().join("fixed");
    let handler = script(
        dir.path(),
        "h.sh",
        &format!(
            "echo \"$WA_JOB_ID $WA_ATTEMPT\" >> '{out}'\n[ -e '{fixed}' ] || exit 65",
            out = out.display(),
            fixed = fixed.display()
        ),
    );
    q.enqueue(&ids("d", 1)).await;
    let mut w = q.worker(
        &["--exec", handler.to_str().unwrap(), "--max-attempts", "5"],
        false,
    );
    eventually("job dead", LONG, || async { q.stats().await.dead == 1 }).await;
    assert_eq!(lines(&out), ["d-0 1"], "dead at once, no retry");

    let stats = q.cli_json(&["stats", "--json"]).await;
    assert_eq!(stats["dead"], 1);
    assert_eq!(stats["pending"], 0);
    let dead = q.cli_json(&["dead", "list", "--json"]).await;
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], "d-0");
    assert!(
        dead[0]["error"].as_str().unwrap().contains("65"),
        "{}",
        dead[0]
    );
    assert_eq!(dead[0]["job"]["payload"]["text"]["body"], "café / ok");

    std::fs::write(&fixed, "").unwrap();
    let replayed = q.cli(&["dead", "replay", "d-0"]).await;
    assert_eq!(
        String::from_utf8_lossy(&replayed.stdout).trim(),
        "replayed 1"
    );
    eventually("replayed job handled", LONG, || async {
        lines(&out).len() == 2
    })
    .await;
    q.wait_drained(LONG).await;
    assert_eq!(q.stats().await.dead, 0);
    assert_eq!(terminate(&mut w, LONG).await, 0);
}

/// A job with an unknown contract version lands in dead, never lost, and `dead purge` clears it.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_version_lands_in_dead() {
    let q = TestQueue::new("unknown-v").await;
    q.push_raw(r#"{"v":99,"id":"future-1","kind":"message","attempt":0,"payload":{}}"#)
        .await;
    let mut w = q.worker(&["--discard"], false);
    eventually("job dead", LONG, || async { q.stats().await.dead == 1 }).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    let dead = q.cli_json(&["dead", "list", "--json"]).await;
    assert_eq!(dead.as_array().unwrap().len(), 1, "{dead}");
    let purged = q.cli(&["dead", "purge", "--all", "--yes"]).await;
    assert_eq!(String::from_utf8_lossy(&purged.stdout).trim(), "purged 1");
    assert_eq!(q.stats().await.dead, 0);
}

/// `--stdout` prints exactly one JSON line per job, the job as the contract encodes it.
#[tokio::test(flavor = "multi_thread")]
async fn stdout_prints_one_line_per_job() {
    let q = TestQueue::new("stdout").await;
    let want = ids("s", 500);
    q.enqueue(&want).await;
    // one lane here (the other tests run the default two)
    let mut w = q.worker(&["--stdout", "--concurrency", "64", "--lanes", "1"], true);
    let mut reader = BufReader::new(w.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < want.len() {
        let line = tokio::time::timeout(LONG, reader.next_line())
            .await
            .expect("a line within the timeout")
            .unwrap()
            .expect("stdout open");
        let job: serde_json::Value =
            serde_json::from_str(&line).expect("each line is one JSON job");
        assert_eq!(job["v"], 1);
        assert_eq!(job["kind"], "message");
        assert!(
            line.contains(r#""payload":{"text":{"body":"caf\u00e9 \/ ok"}}"#),
            "payload verbatim: {line}"
        );
        seen.push(job["id"].as_str().unwrap().to_owned());
    }
    q.wait_drained(LONG).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    assert!(
        reader.next_line().await.unwrap().is_none(),
        "no extra lines"
    );
    assert_eq!(seen.len(), 500);
    assert_eq!(
        seen.into_iter().collect::<BTreeSet<_>>(),
        want.into_iter().collect()
    );
}

/// When the reader of `--stdout` goes away, the worker stops by itself (exit 0) and every job it
/// did not print is still in the queue.
#[tokio::test(flavor = "multi_thread")]
async fn stdout_reader_gone_stops_without_loss() {
    let q = TestQueue::new("stdout-gone").await;
    let want = ids("g", 3000);
    q.enqueue(&want).await;
    let mut w = q.worker(&["--stdout", "--concurrency", "8", "--batch", "8"], true);
    let mut reader = BufReader::new(w.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(LONG, reader.next_line())
        .await
        .expect("a line")
        .unwrap();
    assert!(first.is_some());
    drop(reader);
    let status = tokio::time::timeout(LONG, w.wait())
        .await
        .expect("worker stops")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let s = q.stats().await;
    assert_eq!(
        s.processing.iter().map(|(_, n)| n).sum::<u64>(),
        0,
        "nothing left in hand"
    );
    assert_eq!(s.dead, 0);
    assert!(
        s.pending + s.delayed > 0,
        "the unprinted jobs wait in the queue"
    );
}

/// What the test receiver saw: deliveries per job id and whether every signature verified.
#[derive(Default)]
struct Seen {
    attempts: HashMap<String, Vec<u32>>,
    bad_signatures: usize,
}

/// A receiver whose answer depends on the job id's prefix: `ok` 200, `flaky` 500 then 200,
/// `bad` 400, `slow` no answer within the worker's timeout on the first delivery, then 204.
async fn receiver(secret: &'static [u8]) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(req, secret, &state).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, seen)
}

async fn answer(
    req: Request<Incoming>,
    secret: &[u8],
    seen: &Mutex<Seen>,
) -> Response<Full<Bytes>> {
    let headers = req.headers().clone();
    let attempt: u32 = req.headers()["x-wa-attempt"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let content_type = req.headers()["content-type"].clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let received = Received {
        headers,
        body: body.clone(),
    };
    let good = content_type == "application/json" && standard_webhook_verifies(secret, &received);
    let job: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    {
        let mut seen = seen.lock().unwrap();
        seen.bad_signatures += usize::from(!good);
        seen.attempts.entry(id.clone()).or_default().push(attempt);
    }
    let status = match id.split('-').next().unwrap() {
        "ok" => StatusCode::OK,
        "flaky" if attempt == 1 => StatusCode::INTERNAL_SERVER_ERROR,
        "flaky" => StatusCode::OK,
        "bad" => StatusCode::BAD_REQUEST,
        "slow" if attempt == 1 => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK
        }
        _ => StatusCode::NO_CONTENT,
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// `--forward`: 2xx is done, 500 then 200 is done on the second delivery, 400 is dead at once,
/// a timeout is retried, and every request carries a Standard Webhooks signature the receiver
/// verifies (a plain `--forward-secret` is a key of its own bytes).
#[tokio::test(flavor = "multi_thread")]
async fn forward_maps_answers_to_outcomes() {
    let q = TestQueue::new("forward").await;
    let (url, seen) = receiver(b"forward-secret").await;
    let jobs: Vec<String> = ["ok-1", "ok-2", "flaky-1", "bad-1", "slow-1"]
        .map(String::from)
        .to_vec();
    q.enqueue(&jobs).await;
    let mut w = q.worker_logged(&[
        "--forward",
        &url,
        "--forward-secret",
        "forward-secret",
        "--handler-timeout",
        "1s",
        "--backoff-base",
        "50ms",
        "--backoff-max",
        "200ms",
    ]);
    eventually("all settled", LONG, || async {
        let s = q.stats().await;
        s.dead == 1 && s.pending == 0 && s.delayed == 0 && s.processing.iter().all(|(_, n)| *n == 0)
    })
    .await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    let log = logs(&mut w).await;
    assert!(
        log.contains("bad-1"),
        "failures are logged by job id: {log}"
    );
    assert!(
        !log.contains("forward-secret"),
        "the secret is never logged: {log}"
    );
    // (the body's text is `caf\u00e9 \/ ok`; a consumer id's random hex may contain "caf")
    assert!(
        !log.contains("u00e9") && !log.contains("/ ok"),
        "job bodies are never logged: {log}"
    );
    let dead = q.admin.dead_list(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].job().unwrap().id(), "bad-1");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.bad_signatures, 0);
    assert_eq!(seen.attempts["ok-1"], [1]);
    assert_eq!(seen.attempts["ok-2"], [1]);
    assert_eq!(seen.attempts["flaky-1"], [1, 2]);
    assert_eq!(seen.attempts["bad-1"], [1], "4xx is dead at once");
    assert_eq!(seen.attempts["slow-1"], [1, 2], "a timeout is retried");
}

/// A worker killed with SIGKILL while holding jobs loses none: after its lease lapses a second
/// worker handles every one of them.
#[tokio::test(flavor = "multi_thread")]
async fn killed_worker_jobs_are_finished_by_another() {
    let q = TestQueue::new("kill9").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let slow = script(dir.path(), "slow.sh", "exec sleep 20");
    let fast = script(
        dir.path(),
        "fast.sh",
        &format!("echo \"$WA_JOB_ID\" >> '{}'", out.display()),
    );
    let want = ids("k", 8);
    q.enqueue(&want).await;
    let mut a = q.worker(
        &[
            "--exec",
            slow.to_str().unwrap(),
            "--concurrency",
            "8",
            "--lease",
            "1s",
        ],
        false,
    );
    eventually("first worker holds all 8", LONG, || async {
        q.stats()
            .await
            .processing
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>()
            == 8
    })
    .await;
    a.start_kill().unwrap(); // SIGKILL
    a.wait().await.unwrap();
    let mut b = q.worker(&["--exec", fast.to_str().unwrap(), "--lease", "1s"], false);
    eventually("second worker handled all 8", LONG, || async {
        lines(&out).len() >= 8
    })
    .await;
    q.wait_drained(LONG).await;
    assert_eq!(terminate(&mut b, LONG).await, 0);
    assert_eq!(
        lines(&out).into_iter().collect::<BTreeSet<_>>(),
        want.into_iter().collect()
    );
}

/// SIGTERM with handlers outlasting the grace: exit 0, and every job is back in pending with
/// nothing left in hand.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_returns_unfinished_jobs_to_pending() {
    let q = TestQueue::new("sigterm").await;
    let dir = tempfile::tempdir().unwrap();
    let slow = script(dir.path(), "slow.sh", "exec sleep 10");
    let want = ids("t", 20);
    q.enqueue(&want).await;
    let mut w = q.worker(
        &[
            "--exec",
            slow.to_str().unwrap(),
            "--concurrency",
            "4",
            "--shutdown-grace",
            "300ms",
        ],
        false,
    );
    eventually("worker holds jobs", LONG, || async {
        q.stats()
            .await
            .processing
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>()
            > 0
    })
    .await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    let s = q.stats().await;
    assert_eq!(
        s.processing.iter().map(|(_, n)| n).sum::<u64>(),
        0,
        "nothing left in hand"
    );
    assert_eq!((s.dead, s.delayed), (0, 0));
    let pending = q.pending_ids().await;
    assert_eq!(pending.len(), 20);
    assert_eq!(
        pending.into_iter().collect::<BTreeSet<_>>(),
        want.into_iter().collect()
    );
}

/// SIGTERM lets running handlers finish within the grace: exit 0, and every job is either done
/// or back in pending.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_running_handlers_finish() {
    let q = TestQueue::new("sigterm-grace").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let handler = script(
        dir.path(),
        "h.sh",
        &format!("sleep 0.3\necho \"$WA_JOB_ID\" >> '{}'", out.display()),
    );
    let want = ids("g", 40);
    q.enqueue(&want).await;
    let mut w = q.worker(
        &[
            "--exec",
            handler.to_str().unwrap(),
            "--concurrency",
            "4",
            "--shutdown-grace",
            "20s",
        ],
        false,
    );
    eventually("some done", LONG, || async { !lines(&out).is_empty() }).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    let s = q.stats().await;
    assert_eq!(
        s.processing.iter().map(|(_, n)| n).sum::<u64>(),
        0,
        "nothing left in hand"
    );
    let done = lines(&out);
    let pending = q.pending_ids().await;
    assert_eq!(
        done.len() + pending.len(),
        40,
        "done {done:?} pending {pending:?}"
    );
    let all: BTreeSet<_> = done.into_iter().chain(pending).collect();
    assert_eq!(all, want.into_iter().collect());
}

/// GETs `path` from the metrics listener at `addr`: status and body, or None when it fails.
async fn metrics_get(addr: String, path: &'static str) -> Option<(StatusCode, String)> {
    let stream = tokio::net::TcpStream::connect(&addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.ok()?;
    let status = resp.status();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A free address on 127.0.0.1 for `--metrics-listen`.
fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// The metrics listener serves at most 64 connections and closes one that sends no request
/// head within `--metrics-header-timeout`: 64 silent or half-sent connections are closed, and
/// a scrape waiting behind them is then answered.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_listener_sheds_idle_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let q = TestQueue::new("metrics-idle").await;
    let addr = free_addr();
    let mut w = q.worker(
        &[
            "--discard",
            "--metrics-listen",
            &addr,
            "--metrics-header-timeout",
            "500ms",
        ],
        false,
    );
    eventually("metrics up", LONG, || async {
        metrics_get(addr.clone(), "/healthz")
            .await
            .is_some_and(|(s, _)| s == 200)
    })
    .await;
    let mut idle = Vec::new();
    for i in 0..64 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    let scrape = tokio::time::timeout(
        Duration::from_secs(20),
        metrics_get(addr.clone(), "/healthz"),
    );
    assert_eq!(
        scrape.await.expect("scrape answered").map(|(s, _)| s),
        Some(StatusCode::OK)
    );
    for mut s in idle {
        let mut buf = [0u8; 256];
        let closed = loop {
            match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => continue,
                Err(_) => break false,
            }
        };
        assert!(closed, "an idle metrics connection is still open");
    }
    assert_eq!(terminate(&mut w, LONG).await, 0);
}

/// `--metrics-listen` serves /healthz and Prometheus text with job counts and queue depths.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_reports_counts() {
    let q = TestQueue::new("metrics").await;
    let addr = free_addr();
    q.enqueue(&ids("x", 25)).await;
    let mut w = q.worker(&["--discard", "--metrics-listen", &addr], false);
    q.wait_drained(LONG).await;
    let get = |path: &'static str| metrics_get(addr.clone(), path);
    eventually("metrics up", LONG, || async {
        get("/healthz").await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    eventually("25 done in /metrics", LONG, || async {
        get("/metrics")
            .await
            .is_some_and(|(_, t)| t.contains("wa_worker_jobs_done_total 25\n"))
    })
    .await;
    let (status, text) = get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains("wa_worker_handler_duration_seconds_count 25\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("wa_queue_pending{{queue=\"{}\"}} 0\n", q.name)),
        "{text}"
    );
    assert!(text.contains("wa_queue_up"), "{text}");
    for quiet in [
        "wa_worker_leases_lost_total 0\n",
        "wa_worker_lost_outcomes_total 0\n",
    ] {
        assert!(text.contains(quiet), "{text}");
    }
    assert_eq!(terminate(&mut w, LONG).await, 0);
}

/// Configuration errors exit 64 with one line naming the flag or variable.
#[tokio::test(flavor = "multi_thread")]
async fn config_errors_exit_64() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 9] = [
        (&["run", "--concurrency", "0"], &[], "--concurrency"),
        (&["run"], &[("WA_LANES", "9")], "--lanes"),
        (&["run", "--exec", "/nonexistent/handler"], &[], "WA_EXEC"),
        (
            &["run", "--exec", "true", "--exec-env", "A=B"],
            &[],
            "WA_EXEC_ENV",
        ),
        (
            &["run", "--forward", "ftp://example.com/x"],
            &[],
            "WA_FORWARD_URL",
        ),
        (
            &["run", "--forward", "https://example.com/x"],
            &[("WA_FORWARD_CA_CERT", "/nonexistent/ca.pem")],
            "--forward-ca-cert/WA_FORWARD_CA_CERT",
        ),
        (
            &["run", "--forward", "https://example.com/x"],
            &[("WA_FORWARD_SECRET", "whsec_not*base64")],
            "--forward-secret/WA_FORWARD_SECRET",
        ),
        (&["run"], &[("WA_LEASE", "soon")], "--lease"),
        (&["--stdout", "--exec", "true"], &[], "--exec"),
    ];
    for (args, env, needle) in cases {
        let run = tokio::process::Command::new(BIN)
            .args(args)
            .args(["--queue", "t-config-never-used"])
            .envs(env.iter().copied())
            .env_remove("WA_EXEC")
            .env_remove("WA_FORWARD_URL")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(LONG, run)
            .await
            .expect("exits at once")
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

/// In ordered mode `/metrics` shows the senders held: while a sender's first job is in its
/// handler, its second waits and the gauge reads 1; once both are done it reads 0.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_held_senders_in_ordered_mode() {
    let q = TestQueue::new("metrics-held").await;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    // the first job waits for the gate file; the second runs at once
    let handler = script(
        dir.path(),
        "gated.sh",
        &format!(
            "[ \"$WA_JOB_ID\" = held-2 ] || while [ ! -e '{}' ]; do sleep 0.05; done",
            gate.display()
        ),
    );
    for n in 1..=2 {
        q.push_raw(&format!(
            r#"{{"v":1,"id":"held-{n}","kind":"message","from":"15550001","attempt":0,"payload":{{}}}}"#
        ))
        .await;
    }
    let addr = free_addr();
    let mut w = q.worker_logged_env(
        &[
            "--exec",
            handler.to_str().unwrap(),
            "--metrics-listen",
            &addr,
        ],
        &[("WA_ORDERED", "true")],
    );
    let held = |n: u32| {
        let addr = addr.clone();
        let line = format!("wa_queue_held_senders{{queue=\"{}\"}} {n}\n", q.name);
        async move {
            metrics_get(addr, "/metrics")
                .await
                .is_some_and(|(_, t)| t.contains(&line))
        }
    };
    eventually("one sender held", LONG, || held(1)).await;
    assert_eq!(
        q.stats().await.pending,
        0,
        "the second job waits aside, not in pending"
    );
    std::fs::write(&gate, b"").unwrap();
    q.wait_drained(LONG).await;
    eventually("no sender held", LONG, || held(0)).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
}

/// `WA_ORDERED=true` runs the worker in order per sender: it records the mode on the queue and
/// drains it; a worker started without it then refuses, exit 64 with a message naming the flag.
#[tokio::test(flavor = "multi_thread")]
async fn ordered_worker_records_the_mode_and_others_refuse() {
    let q = TestQueue::new("ordered").await;
    q.enqueue(&ids("o", 100)).await;
    let mut w = q.worker_logged_env(&["--discard"], &[("WA_ORDERED", "true")]);
    q.wait_drained(LONG).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    assert!(logs(&mut w).await.contains("ordered=true"));
    let mut plain = q.worker_logged(&["--discard"]);
    let code = tokio::time::timeout(LONG, plain.wait())
        .await
        .expect("exits at once")
        .unwrap()
        .code();
    let err = logs(&mut plain).await;
    assert_eq!(code, Some(64), "{err}");
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("wa-worker: ") && last.contains("--ordered/WA_ORDERED"),
        "{err}"
    );
    // the refusal is Redis's record, not a connection failure: no word of the URL
    assert!(!last.contains("connecting to Redis"), "{err}");
    wa_testkit::delete_matching(&redis_url(), &format!("{}*", q.queue.base()));
}
