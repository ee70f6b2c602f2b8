//! Private `redis-server`s on loopback.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::certs::TlsFiles;
use crate::process::{Guarded, free_cluster_port, free_port, wait_until};

/// A cluster node silent this long is failing for the others (short, for quick failover
/// tests).
pub(crate) const CLUSTER_NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// How long a server may take to stop after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// How long a server may take to start.
const START_LIMIT: Duration = Duration::from_secs(15);

/// How a private server is set up. The default: plain TCP, no persistence, Redis's own
/// defaults otherwise (`maxmemory-policy noeviction`).
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// an fsync-always append-only file (a killed server keeps what it acknowledged)
    pub aof: bool,
    /// `maxmemory-policy` to start with
    pub maxmemory_policy: Option<String>,
    /// rename `CONFIG` away, as managed services do
    pub hide_config: bool,
    /// `requirepass` (and `masterauth`, for replicas)
    pub password: Option<String>,
    /// replicate from this port on 127.0.0.1
    pub replica_of: Option<u16>,
    /// serve TLS only (no plain port) with these files
    pub tls: Option<Tls>,
    /// a Redis Cluster node (`cluster-enabled yes`, on a port whose bus port, +10000, is free)
    pub cluster: bool,
}

/// TLS settings of a server: the files of [`TlsFiles`] and whether a client certificate is
/// required (`tls-auth-clients`).
#[derive(Debug, Clone)]
pub struct Tls {
    /// `ca.pem`, `server.pem`, `server.key`
    pub dir: PathBuf,
    /// `tls-auth-clients yes`
    pub auth_clients: bool,
}

impl Tls {
    /// The server side of `files`.
    pub fn new(files: &TlsFiles, auth_clients: bool) -> Tls {
        Tls {
            dir: files.dir().to_owned(),
            auth_clients,
        }
    }
}

/// A private `redis-server` on a free port in its own temporary directory. Killed by PID when
/// dropped (and by its watchdog when the test process ends).
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    opts: ServerOptions,
    dir: tempfile::TempDir,
    process: Option<Guarded>,
}

impl RedisServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start(opts: ServerOptions) -> RedisServer {
        let mut server = RedisServer {
            port: if opts.cluster {
                free_cluster_port()
            } else {
                free_port()
            },
            opts,
            dir: tempfile::tempdir().expect("tempdir"),
            process: None,
        };
        server.start_again();
        server
    }

    /// A plain server with default settings.
    pub fn plain() -> RedisServer {
        Self::start(ServerOptions::default())
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://` (or `rediss://` for a TLS server) with the password, if any.
    pub fn url(&self) -> String {
        let scheme = if self.opts.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let auth = self
            .opts
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        let host = if self.opts.tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        format!("{scheme}://{auth}{host}:{}", self.port)
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Guarded::pid)
    }

    /// Starts the server (again) on the same port and directory, and waits until it is ready.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "already running");
        let log = self.dir.path().join("redis.log");
        let _ = std::fs::remove_file(&log);
        let process = Guarded::spawn(&self.command(), &log);
        wait_until(
            &format!("redis-server on port {}", self.port),
            START_LIMIT,
            || process.output().contains("Ready to accept connections"),
        );
        self.process = Some(process);
    }

    fn command(&self) -> Command {
        let o = &self.opts;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path());
        match &o.tls {
            Some(tls) => {
                let file = |name: &str| tls.dir.join(name);
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(file("server.pem"))
                    .arg("--tls-key-file")
                    .arg(file("server.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(file("ca.pem"))
                    .args([
                        "--tls-auth-clients",
                        if tls.auth_clients { "yes" } else { "no" },
                    ]);
            }
            None => {
                cmd.args(["--port", &self.port.to_string()]);
            }
        }
        if o.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        }
        if let Some(policy) = &o.maxmemory_policy {
            cmd.args(["--maxmemory-policy", policy]);
        }
        if o.hide_config {
            cmd.args(["--rename-command", "CONFIG", ""]);
        }
        if let Some(pass) = &o.password {
            cmd.args(["--requirepass", pass, "--masterauth", pass]);
        }
        if o.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                &CLUSTER_NODE_TIMEOUT.as_millis().to_string(),
                // a replica syncs at once (Redis waits 5 s by default for more replicas),
                // so that it can take over from the start of a test
                "--repl-diskless-sync-delay",
                "0",
            ]);
        }
        if let Some(port) = o.replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &port.to_string()]);
        }
        cmd
    }

    /// SIGTERM, as a service manager stops it (Redis writes and syncs its AOF, then exits),
    /// and waits for the exit; SIGKILL if it has not ended within [`STOP_LIMIT`].
    pub async fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.signal("TERM");
            if p.wait_exit(STOP_LIMIT).await.is_none() {
                p.kill();
            }
        }
    }

    /// SIGKILL: no goodbye, no final save.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to the running server.
    pub fn signal(&self, sig: &str) {
        self.process.as_ref().expect("running").signal(sig);
    }

    /// Runs one command over a plain connection (not for TLS servers).
    pub fn query<T: ::redis::FromRedisValue>(&self, args: &[&str]) -> ::redis::RedisResult<T> {
        assert!(self.opts.tls.is_none(), "query() speaks plain TCP only");
        let client = ::redis::Client::open(self.url())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
        let mut cmd = ::redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn)
    }

    /// Calls served so far of every command `pick` chooses (by its lowercase name), summed from
    /// `INFO commandstats`.
    pub fn command_calls(&self, pick: impl Fn(&str) -> bool) -> u64 {
        let info: String = self
            .query(&["INFO", "commandstats"])
            .expect("INFO commandstats");
        info.lines()
            .filter_map(|l| l.strip_prefix("cmdstat_"))
            .filter_map(|l| l.split_once(':'))
            .filter(|(cmd, _)| pick(cmd))
            .filter_map(|(_, stats)| stats.split("calls=").nth(1))
            .filter_map(|rest| rest.split(',').next())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum()
    }

    /// Script calls served so far (`EVAL`, `EVALSHA`, `FCALL` and their read-only forms): one
    /// per enqueue round trip.
    pub fn script_calls(&self) -> u64 {
        self.command_calls(|cmd| cmd.starts_with("eval") || cmd.starts_with("fcall"))
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(Guarded::output)
            .unwrap_or_default()
    }
}
