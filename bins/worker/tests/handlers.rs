//! End to end, the handlers' edges: `--exec` process groups, bounded output and a clean
//! environment. The real `wa-worker` binary against the real Redis, one private queue per test.

mod support;

use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(60);

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
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let handler = script(
        dir.path(),
        "h.sh",
        &format!(
            "head -c 67108864 /dev/zero | tr '\\0' x >&2\necho \"$WA_ATTEMPT\" >> '{}'",
            out.display()
        ),
    );
    q.enqueue(&ids("s", 1)).await;
    let mut w = q.worker_logged(&["--exec", handler.to_str().unwrap()]);
    eventually("job done", LONG, || async { !lines(&out).is_empty() }).await;
    q.wait_drained(LONG).await;
    let peak = peak_rss(w.id().unwrap());
    assert_eq!(terminate(&mut w, LONG).await, 0);
    assert_eq!(lines(&out), ["1"], "done on the first delivery");
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
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let bg = dir.path().join("bg");
    let handler = script(
        dir.path(),
        "h.sh",
        &format!(
            "sleep 600 &\necho $! > '{bg}'\necho \"$WA_ATTEMPT\" >> '{out}'\nexit 0",
            bg = bg.display(),
            out = out.display()
        ),
    );
    q.enqueue(&ids("b", 1)).await;
    let mut w = q.worker(
        &[
            "--exec",
            handler.to_str().unwrap(),
            "--handler-timeout",
            "300s",
        ],
        false,
    );
    q.wait_drained(LONG).await;
    let pid: u32 = first_line(&bg, LONG).await.parse().unwrap();
    eventually("background child killed", LONG, || async { !running(pid) }).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    assert_eq!(lines(&out), ["1"], "done once, on the first delivery");
    let s = q.stats().await;
    assert_eq!((s.dead, s.delayed), (0, 0));
}

/// A handler that times out is killed with its whole process group: its grandchild is gone
/// afterwards, and the job is retried (here: dead, with one attempt allowed).
#[tokio::test(flavor = "multi_thread")]
async fn exec_timeout_kills_the_process_group() {
    let q = TestQueue::new("exec-group").await;
    let dir = tempfile::tempdir().unwrap();
    let grandchild = dir.path().join("grandchild");
    let handler = script(
        dir.path(),
        "h.sh",
        &format!(
            "sh -c 'sleep 600 & echo $! > {}; wait'",
            grandchild.display()
        ),
    );
    q.enqueue(&ids("g", 1)).await;
    let mut w = q.worker(
        &[
            "--exec",
            handler.to_str().unwrap(),
            "--handler-timeout",
            "1s",
            "--max-attempts",
            "1",
        ],
        false,
    );
    eventually("job dead", LONG, || async { q.stats().await.dead == 1 }).await;
    let pid: u32 = first_line(&grandchild, LONG).await.parse().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let handler = script(dir.path(), "h.sh", &format!("env > '{}'", out.display()));
    q.enqueue(&ids("e", 1)).await;
    let mut w = q.worker_logged_env(
        &[
            "--exec",
            handler.to_str().unwrap(),
            "--exec-env",
            "PASSED_ON",
        ],
        &[
            ("WA_FORWARD_SECRET", "do-not-leak"),
            ("PASSED_ON", "yes"),
            ("NOT_PASSED", "no"),
        ],
    );
    q.wait_drained(LONG).await;
    assert_eq!(terminate(&mut w, LONG).await, 0);
    let env = lines(&out);
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
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let handler = script(
        dir.path(),
        "h.sh",
        &format!("echo \"$WA_ATTEMPT\" >> '{}'\nkill -9 $PPID", out.display()),
    );
    q.enqueue(&ids("p", 1)).await;
    let args = [
        "--exec",
        handler.to_str().unwrap(),
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
    assert_eq!(lines(&out), ["1", "2", "3"]);
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
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let handler = script(
        dir.path(),
        "h.sh",
        &format!(
            "echo \"$WA_ATTEMPT\" >> '{}'\n[ \"$WA_ATTEMPT\" = 1 ] && sleep 2\nexit 0",
            out.display()
        ),
    );
    q.enqueue(&ids("z", 1)).await;
    let args = ["--exec", handler.to_str().unwrap(), "--lease", "500ms"];
    let mut a = q.worker_logged(&args);
    first_line(&out, LONG).await;
    let a_pid = a.id().unwrap();
    signal(a_pid, "STOP");
    let mut b = q.worker(&args, false);
    eventually("the other worker finished the job", LONG, || async {
        lines(&out).len() == 2
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
    assert_eq!(lines(&out), ["1", "2"], "delivered twice, not a third time");
    let s = q.stats().await;
    assert_eq!((s.dead, s.delayed, s.pending), (0, 0, 0));
}
