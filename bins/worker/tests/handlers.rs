//! End to end, the handlers' edges: `--exec` process groups, bounded output and a clean
//! environment. The real `wa-worker` binary against the real Redis, one private queue per test.
//!
//! Over 400 lines: eleven independent tests, each with its own handler scripts.

mod support;

use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(60);

/// A handler that starts a grandchild (its pid in `grandchild`) and waits for it.
const GRANDCHILD: &str = "sh -c 'sleep 600 & echo $! > {dir}/grandchild; wait'";

/// The single entry of the dead list.
async fn only_dead(q: &TestQueue) -> serde_json::Value {
    let dead = q.cli_json(&["dead", "list", "--json"]).await;
    let dead = dead.as_array().expect("a JSON array");
    assert_eq!(dead.len(), 1, "{dead:?}");
    dead[0].clone()
}

/// A handler writing 64 MiB to standard error without a newline is done, its line is logged
/// cut, and the worker's peak memory stays far below what buffering it would take.
#[tokio::test(flavor = "multi_thread")]
async fn exec_endless_stderr_line_keeps_memory_bounded() {
    const LIMIT: u64 = 40 * 1024 * 1024;
    let q = TestQueue::new("exec-stderr").await;
    let h = HandlerScript::new(
        "head -c 67108864 /dev/zero | tr '\\0' x >&2\necho \"$WA_ATTEMPT\" >> {out}",
    );
    q.enqueue(&ids("s", 1)).await;
    let mut w = q.worker_logged(&["--exec", h.path()]);
    eventually("job done", LONG, || async { !h.out().is_empty() }).await;
    q.wait_drained(LONG).await;
    let peak = peak_rss(w.id().unwrap());
    assert_eq!(terminate(&mut w, LONG).await, 0);
    assert_eq!(h.out(), ["1"], "done on the first delivery");
    assert!(peak < LIMIT, "worker peak RSS {peak} bytes, over {LIMIT}");
    let logs = logs(&mut w).await;
    assert!(logs.contains("[line cut at 2048 bytes]"), "{logs}");
}

/// A handler that exits 0 while a background child keeps standard error open is done once, on
/// its first delivery, long before the background child would end; that child is killed with
/// the handler's process group.
#[tokio::test(flavor = "multi_thread")]
async fn exec_exit_decides_not_open_pipes() {
    let q = TestQueue::new("exec-bg").await;
    let h = HandlerScript::new(
        "sleep 600 &\necho $! > {dir}/bg\necho \"$WA_ATTEMPT\" >> {out}\nexit 0",
    );
    q.enqueue(&ids("b", 1)).await;
    let mut w = q.worker(&["--exec", h.path(), "--handler-timeout", "300s"], false);
    q.wait_drained(LONG).await;
    let pid: u32 = first_line(&h.file("bg"), LONG).await.parse().unwrap();
    eventually("background child killed", LONG, || async { !running(pid) }).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    assert_eq!(h.out(), ["1"], "done once, on the first delivery");
    let s = q.stats().await;
    assert_eq!((s.dead, s.delayed), (0, 0));
}

/// A handler that times out is killed with its whole process group: its grandchild is gone
/// afterwards, and the job is retried (here: dead, with one attempt allowed).
#[tokio::test(flavor = "multi_thread")]
async fn exec_timeout_kills_the_process_group() {
    let q = TestQueue::new("exec-group").await;
    let h = HandlerScript::new(GRANDCHILD);
    q.enqueue(&ids("g", 1)).await;
    let mut w = q.worker(
        &[
            "--exec",
            h.path(),
            "--handler-timeout",
            "1s",
            "--max-attempts",
            "1",
        ],
        false,
    );
    eventually("job dead", LONG, || async { q.stats().await.dead == 1 }).await;
    let pid: u32 = first_line(&h.file("grandchild"), LONG)
        .await
        .parse()
        .unwrap();
    eventually("grandchild gone", LONG, || async { !running(pid) }).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    let dead = only_dead(&q).await;
    assert!(
        dead["error"].as_str().unwrap().contains("timed out"),
        "{dead}"
    );
}

/// A handler sees a clean environment: the job's variables, PATH and what `--exec-env`
/// names, never REDIS_URL nor the forward secret.
#[tokio::test(flavor = "multi_thread")]
async fn exec_environment_is_clean() {
    let q = TestQueue::new("exec-env").await;
    let h = HandlerScript::new("env > {out}");
    q.enqueue(&ids("e", 1)).await;
    let mut w = q.worker_logged_env(
        &["--exec", h.path(), "--exec-env", "PASSED_ON"],
        &[
            ("WA_FORWARD_SECRET", "do-not-leak"),
            ("PASSED_ON", "yes"),
            ("NOT_PASSED", "no"),
        ],
    );
    q.wait_drained(LONG).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    let env = h.out();
    for want in [
        "WA_JOB_ID=e-0",
        "WA_ATTEMPT=1",
        "WA_JOB_KIND=message",
        "PASSED_ON=yes",
    ] {
        assert!(env.iter().any(|l| l == want), "{want} missing: {env:?}");
    }
    assert!(env.iter().any(|l| l.starts_with("PATH=")), "{env:?}");
    for banned in ["REDIS_URL", "WA_FORWARD_SECRET", "NOT_PASSED", "WA_QUEUE"] {
        assert!(
            !env.iter().any(|l| l.starts_with(&format!("{banned}="))),
            "{banned} leaked: {env:?}"
        );
    }
}

/// Sends `signal` (a `kill` name: STOP, CONT, ...) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A job whose handler kills its worker (`kill -9 $PPID`), with the worker restarted each
/// time, is delivered `--max-attempts` times (numbers 1, 2, 3) and then goes to dead with the
/// reason that it was lost with its worker 3 times; the last worker stays up.
#[tokio::test(flavor = "multi_thread")]
async fn poison_job_reaches_dead_after_max_attempts() {
    let q = TestQueue::new("poison").await;
    let h = HandlerScript::new("echo \"$WA_ATTEMPT\" >> {out}\nkill -9 $PPID");
    q.enqueue(&ids("p", 1)).await;
    let args = [
        "--exec",
        h.path(),
        "--lease",
        "500ms",
        "--max-attempts",
        "3",
    ];
    let mut starts = 0;
    let mut w = loop {
        starts += 1;
        assert!(starts <= 4, "still not dead after {} starts", starts - 1);
        let mut w = q.worker(&args, false);
        tokio::select! {
            status = w.wait() => {
                let status = status.unwrap();
                assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
            }
            () = eventually("job dead", LONG, || async { q.stats().await.dead == 1 }) => break w,
        }
    };
    assert_eq!(
        starts, 4,
        "three workers died with it, the fourth sent it to dead"
    );
    assert_eq!(h.out(), ["1", "2", "3"]);
    let dead = only_dead(&q).await;
    assert_eq!(dead["error"], "lost with its worker 3 times", "{dead}");
    assert_eq!(dead["job"]["payload"]["text"]["body"], "café / ok");
    assert_eq!(terminate(&mut w, LONG).await, 0);
}

/// A worker paused (SIGSTOP) past its lease loses its job to another worker, which finishes
/// it; resumed (SIGCONT), the first worker does not settle the job it lost: it logs the lost
/// lease once and reports the job's outcome, and nothing is delivered a third time.
#[tokio::test(flavor = "multi_thread")]
async fn paused_worker_reports_the_jobs_it_lost() {
    let q = TestQueue::new("sigstop").await;
    let h = HandlerScript::new(
        "echo \"$WA_ATTEMPT\" >> {out}\n[ \"$WA_ATTEMPT\" = 1 ] && sleep 2\nexit 0",
    );
    q.enqueue(&ids("z", 1)).await;
    let args = ["--exec", h.path(), "--lease", "500ms"];
    let mut a = q.worker_logged(&args);
    first_line(&h.file("out"), LONG).await;
    let a_pid = a.id().unwrap();
    signal(a_pid, "STOP");
    let mut b = q.worker(&args, false);
    eventually("the other worker finished the job", LONG, || async {
        h.out().len() == 2
    })
    .await;
    q.wait_drained(LONG).await;
    signal(a_pid, "CONT");
    eventually("the paused worker's handler ended", LONG, || async {
        // its handler sleeps 2 s from the start; after that its outcome has been reported
        !running_children(a_pid)
    })
    .await;
    assert_eq!(terminate(&mut a, LONG).await, 0);
    assert_eq!(terminate(&mut b, LONG).await, 0);
    let logs = logs(&mut a).await;
    assert_eq!(logs.matches("lease lost").count(), 1, "{logs}");
    assert!(
        logs.contains("finished a job this worker no longer holds") && logs.contains("z-0"),
        "{logs}"
    );
    assert_eq!(h.out(), ["1", "2"], "delivered twice, not a third time");
    let s = q.stats().await;
    assert_eq!((s.dead, s.delayed, s.pending), (0, 0, 0));
}

/// `--forward` to an HTTPS receiver whose certificate a test CA signed: with
/// `--forward-ca-cert` every job is delivered once, with `webhook-id` = the job id and a
/// Standard Webhooks signature per secret of the rotation that the receiver verifies.
#[tokio::test(flavor = "multi_thread")]
async fn forward_https_with_a_private_ca_signs_standard_webhooks() {
    use base64::Engine;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let (url, seen) = receiver(Some(ca.server.clone()), |_| respond(204, &[])).await;
    let q = TestQueue::new("fwd-https").await;
    let want = ids("h", 3);
    q.enqueue(&want).await;
    let new_key = b"a new key of 24 bytes!!!";
    let secrets = format!(
        "whsec_{},old-plain-secret",
        base64::engine::general_purpose::STANDARD.encode(new_key)
    );
    let mut w = q.worker_logged(&[
        "--forward",
        &url,
        "--forward-ca-cert",
        ca_file.to_str().unwrap(),
        "--forward-secret",
        &secrets,
    ]);
    q.wait_drained(LONG).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    let seen = seen.lock().unwrap().clone();
    let mut got: Vec<String> = seen.iter().map(Received::job_id).collect();
    got.sort();
    assert_eq!(got, want, "each job delivered once");
    for r in &seen {
        assert_eq!(r.header("webhook-id"), r.job_id());
        assert_eq!(r.header("x-wa-attempt"), "1");
        assert!(standard_webhook_verifies(new_key, r), "new key: {r:?}");
        assert!(
            standard_webhook_verifies(b"old-plain-secret", r),
            "old key: {r:?}"
        );
        assert!(!standard_webhook_verifies(b"another key", r));
    }
    let logs = logs(&mut w).await;
    assert!(!logs.contains("old-plain-secret"), "{logs}");
}

/// Without `--forward-ca-cert` the same receiver's certificate is not trusted: nothing is
/// delivered, and the job goes to dead with an error naming the certificate problem.
#[tokio::test(flavor = "multi_thread")]
async fn forward_https_refuses_an_untrusted_certificate() {
    let ca = TestCa::new();
    let (url, seen) = receiver(Some(ca.server.clone()), |_| respond(204, &[])).await;
    let q = TestQueue::new("fwd-untrusted").await;
    q.enqueue(&ids("u", 1)).await;
    let mut w = q.worker(&["--forward", &url, "--max-attempts", "1"], false);
    eventually("job dead", LONG, || async { q.stats().await.dead == 1 }).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    let dead = only_dead(&q).await;
    let error = dead["error"].as_str().unwrap();
    assert!(
        error.contains("TLS handshake with 127.0.0.1 failed")
            && error.contains("invalid peer certificate"),
        "{error}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

/// A 429 or 503 with `Retry-After` schedules the retry that far ahead instead of the backoff,
/// but never beyond `--backoff-max`.
#[tokio::test(flavor = "multi_thread")]
async fn forward_honours_retry_after_up_to_backoff_max() {
    const HOUR_MS: i64 = 3_600_000;
    let (url, _seen) = receiver(None, |r| match r.job_id().as_str() {
        "wait-hour" => respond(429, &[("retry-after", "3600")]),
        _ => respond(503, &[("retry-after", "999999")]),
    })
    .await;
    let q = TestQueue::new("fwd-retry-after").await;
    q.enqueue(&["wait-hour".to_owned(), "wait-long".to_owned()])
        .await;
    let mut w = q.worker(
        &[
            "--forward",
            &url,
            "--backoff-base",
            "10ms",
            "--backoff-max",
            "2h",
        ],
        false,
    );
    eventually("both scheduled for a retry", LONG, || async {
        q.stats().await.delayed == 2
    })
    .await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let now = secs * 1000 + micros / 1000;
    let due: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(q.queue.delayed())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    let ahead = |id: &str| {
        let (_, at) = due.iter().find(|(j, _)| j.contains(id)).unwrap();
        at - now
    };
    let hour = ahead("wait-hour");
    assert!((HOUR_MS - 60_000..=HOUR_MS).contains(&hour), "{hour} ms");
    let long = ahead("wait-long");
    assert!(
        (2 * HOUR_MS - 60_000..=2 * HOUR_MS).contains(&long),
        "{long} ms"
    );
}

/// The Python receiver example (`examples/python_worker/forward_receiver.py`, standard library
/// only) serves HTTPS with a test CA's certificate and verifies, with the Standard Webhooks
/// algorithm, every job a worker forwards to it; a job signed with another secret is refused
/// there (401) and so dead here.
#[tokio::test(flavor = "multi_thread")]
async fn forward_to_the_python_receiver_example() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ca_file, chain, key) = (
        file("ca.pem", &ca.ca_pem),
        file("chain.pem", &ca.chain_pem),
        file("key.pem", &ca.key_pem),
    );
    let secret = "whsec_cmVjZWl2ZXIgZXhhbXBsZSBrZXk=";
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/python_worker/forward_receiver.py"
    );
    let mut python = tokio::process::Command::new("python3")
        .args([example, "--secret", secret, "--cert", &chain, "--key", &key])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs python3 on PATH: {e}"));
    let mut out = BufReader::new(python.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(LONG, out.next_line())
            .await
            .expect("the receiver prints a line")
            .unwrap()
            .expect("the receiver is still running")
    };
    let url = next_line()
        .await
        .strip_prefix("listening on ")
        .expect("the receiver's first line")
        .to_owned();
    let q = TestQueue::new("fwd-python").await;
    q.enqueue(&ids("py", 2)).await;
    let mut w = q.worker(
        &[
            "--forward",
            &url,
            "--forward-ca-cert",
            &ca_file,
            "--forward-secret",
            secret,
        ],
        false,
    );
    let mut lines = vec![next_line().await, next_line().await];
    lines.sort();
    assert_eq!(
        lines,
        ["verified py-0 attempt=1", "verified py-1 attempt=1"]
    );
    q.wait_drained(LONG).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);

    // signed with another secret: refused there (401), so dead here
    q.enqueue(&ids("forged", 1)).await;
    let wrong = [
        "--forward",
        &url,
        "--forward-ca-cert",
        &ca_file,
        "--forward-secret",
        "another-secret",
    ];
    let mut w = q.worker(&wrong, false);
    assert_eq!(next_line().await, "refused: bad or stale signature");
    eventually("forged job dead", LONG, || async {
        q.stats().await.dead == 1
    })
    .await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
}

/// SIGTERM with a handler outlasting the shutdown grace: the worker exits 0, the job goes back
/// to pending, and the handler's whole process group (its grandchild too) is killed.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_kills_the_process_group() {
    let q = TestQueue::new("exec-stop").await;
    let h = HandlerScript::new(GRANDCHILD);
    q.enqueue(&ids("t", 1)).await;
    let mut w = q.worker(&["--exec", h.path(), "--shutdown-grace", "200ms"], false);
    let pid: u32 = first_line(&h.file("grandchild"), LONG)
        .await
        .parse()
        .unwrap();
    assert_eq!(terminate(&mut w, LONG).await, 0);
    eventually("grandchild gone", LONG, || async { !running(pid) }).await;
    assert_eq!(q.pending_ids().await, ["t-0"]);
}
