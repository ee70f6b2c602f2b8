//! Child processes that cannot outlive the test, free ports, polling with a deadline, what
//! `/proc` says about a process.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often [`wait_until`] and the watchdog look again.
const POLL: Duration = Duration::from_millis(20);

/// Runs the program given as its arguments with its stderr in `$TESTKIT_LOG` and its stdout in
/// `$TESTKIT_OUT` (the log too when unset), prints its PID, kills it once the test process
/// (`$TESTKIT_PARENT`) is gone, and exits with its status.
const WATCHDOG: &str = r#"
"$@" >>"${TESTKIT_OUT:-$TESTKIT_LOG}" 2>>"$TESTKIT_LOG" </dev/null &
c=$!
echo "$c"
( while kill -0 "$TESTKIT_PARENT" 2>/dev/null; do sleep 0.2; done; kill -9 "$c" 2>/dev/null ) &
w=$!
wait "$c"; s=$?
kill "$w" 2>/dev/null
exit "$s"
"#;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port on 127.0.0.1")
        .port()
}

/// Cluster ports go up to this, so that the bus port (port + 10000) is a valid port.
const CLUSTER_PORT_MAX: u16 = 55535;

/// A free port on 127.0.0.1 for a Redis Cluster node: at most 55535, with its bus port
/// (+10000) free as well.
pub fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        let bus = port.checked_add(10000);
        if port <= CLUSTER_PORT_MAX
            && bus.is_some_and(|b| TcpListener::bind(("127.0.0.1", b)).is_ok())
        {
            return port;
        }
    }
}

/// Polls `ready` until it is true; panics naming `what` after `limit`. For set-up only: it
/// blocks the calling thread (see [`eventually`] in async tests).
pub fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(POLL);
    }
}

/// Polls `ready` until it is true, sleeping between polls without blocking the runtime;
/// panics naming `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !ready().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Whether process `pid` is still running (a zombie waiting to be reaped by its parent is
/// not: it no longer runs anything).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses.
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
    })
}

/// The resident memory of process `pid` now (`VmRSS`), in bytes, while it runs.
pub fn rss(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// The peak resident memory of process `pid` (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:").expect("VmHWM in /proc/<pid>/status") * 1024
}

/// A `kB` line of `/proc/<pid>/status`.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One of the workspace's binaries, built next to the test executable
/// (`target/<profile>/deps/x` -> `target/<profile>/name`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
        .expect("the test executable lives in target/<profile>/deps");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A program running under a watchdog: SIGKILLed when this value is dropped, and also when the
/// test process ends without dropping it (a server kept in a `static`). Its stdout and stderr
/// go to a log file.
#[derive(Debug)]
pub struct Guarded {
    name: String,
    pid: u32,
    watchdog: Child,
    log: PathBuf,
}

impl Guarded {
    /// Starts `cmd` (program, arguments, environment and directory are taken from it) with its
    /// output appended to `log`.
    pub fn spawn(cmd: &Command, log: &Path) -> Guarded {
        Self::spawn_inner(cmd, None, log)
    }

    /// [`spawn`](Self::spawn) with the program's stdout in a file of its own, `out` (for
    /// programs whose output is data: a worker's job lines), and its stderr in `log`.
    pub fn spawn_to(cmd: &Command, out: &Path, log: &Path) -> Guarded {
        Self::spawn_inner(cmd, Some(out), log)
    }

    fn spawn_inner(cmd: &Command, out: Option<&Path>, log: &Path) -> Guarded {
        let name = cmd.get_program().to_string_lossy().into_owned();
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .env("TESTKIT_LOG", log)
            .env("TESTKIT_PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(out) = out {
            sh.env("TESTKIT_OUT", out);
        }
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => sh.env(key, v),
                None => sh.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            sh.current_dir(dir);
        }
        let mut watchdog = sh
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut first = String::new();
        let stdout = watchdog.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read the child's pid");
        let pid = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: the watchdog printed no pid"));
        Guarded {
            name,
            pid,
            watchdog,
            log: log.to_owned(),
        }
    }

    /// The program's own PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {} ({})", self.pid, self.name);
    }

    /// The exit code once the program has ended (128 + n after signal n), or `None` while it
    /// runs.
    pub fn exited(&mut self) -> Option<i32> {
        self.watchdog
            .try_wait()
            .expect("wait for the watchdog")
            .map(|s| s.code().unwrap_or(-1))
    }

    /// Waits up to `limit` for the program to end; its exit code (as [`exited`](Self::exited)),
    /// or `None` while it still runs.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(code) = self.exited() {
                return Some(code);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Everything the program has written so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, then waits for it to be gone.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
            let _ = self.watchdog.wait();
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}
