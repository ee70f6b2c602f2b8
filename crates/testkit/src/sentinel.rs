//! A primary, a replica and three sentinels on loopback, for failover tests.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::process::{Guarded, free_port, wait_until};
use crate::server::{RedisServer, ServerOptions};

/// The name the sentinels know the primary by.
pub const MASTER: &str = "wa-testkit";
/// The data nodes' password (`requirepass`): clients take it from `REDIS_URL`.
pub const DATA_PASSWORD: &str = "data-secret";
/// The sentinels' own password.
pub const SENTINEL_PASSWORD: &str = "sentinel-secret";
/// Sentinels that must agree a primary is down.
const QUORUM: u32 = 2;
/// A primary silent this long is down for a sentinel (short, for quick tests).
const DOWN_AFTER: Duration = Duration::from_millis(1000);
/// Sentinel's failover timeout (also the pause between two failovers of one primary).
const FAILOVER_TIMEOUT: Duration = Duration::from_millis(3000);
/// How long a failover may take in these tests, start to end. A deadline to poll against, not
/// a measurement: a quiet machine takes a few seconds, but with the whole suite and other
/// builds on two cores one promotion took more than 30 s (a vote that fails waits twice the
/// failover timeout before the next).
pub const FAILOVER_LIMIT: Duration = Duration::from_secs(60);
/// How long a (re)started replica may take to be online: a rejoining old primary waits for a
/// sentinel to turn it into a replica, then makes a full sync, which a loaded 2-core machine
/// has been seen to take more than 30 s for. A deadline to poll against, not a measurement.
const SYNC_LIMIT: Duration = Duration::from_secs(90);

/// Two data nodes (both with a fsync-always AOF, both password-protected) and three
/// sentinels with a password of their own. The primary can be killed and brought back; it
/// then rejoins as a replica of the promoted one.
#[derive(Debug)]
pub struct Failover {
    nodes: Vec<Mutex<RedisServer>>,
    sentinels: Vec<Guarded>,
    sentinel_ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Failover {
    /// Starts the five processes and waits until the replica is in sync and every sentinel
    /// knows the primary and the other sentinels.
    pub fn start() -> Failover {
        let data = |replica_of| ServerOptions {
            aof: true,
            password: Some(DATA_PASSWORD.to_owned()),
            replica_of,
            ..ServerOptions::default()
        };
        let primary = RedisServer::start(data(None));
        let replica = RedisServer::start(data(Some(primary.port())));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(&conf, sentinel_conf(port, primary.port(), dir.path()))
                .expect("write sentinel.conf");
            let mut cmd = Command::new("redis-server");
            cmd.arg(&conf).arg("--sentinel");
            sentinels.push(Guarded::spawn(
                &cmd,
                &dir.path().join(format!("sentinel-{i}.log")),
            ));
            sentinel_ports.push(port);
        }
        let set = Failover {
            nodes: vec![Mutex::new(primary), Mutex::new(replica)],
            sentinels,
            sentinel_ports,
            _dir: dir,
        };
        for port in &set.sentinel_ports {
            wait_until("sentinels see each other", FAILOVER_LIMIT, || {
                sentinel_query(*port, &["SENTINEL", "SENTINELS", MASTER])
                    .ok()
                    .and_then(|v| match v {
                        ::redis::Value::Array(items) => Some(items.len()),
                        _ => None,
                    })
                    == Some(2)
            });
        }
        set.wait_in_sync();
        set
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3` (the `--redis-sentinel` value).
    pub fn sentinels(&self) -> String {
        self.sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The primary's port as the sentinels see it now.
    pub fn primary_port(&self) -> u16 {
        self.try_primary_port().expect("a sentinel answers")
    }

    fn try_primary_port(&self) -> Option<u16> {
        self.sentinel_ports.iter().find_map(|p| {
            sentinel_query(*p, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER])
                .ok()
                .and_then(|v| ::redis::from_redis_value::<(String, u16)>(v).ok())
                .map(|(_, port)| port)
        })
    }

    /// Runs one command on the current primary.
    pub fn query_primary<T: ::redis::FromRedisValue>(
        &self,
        args: &[&str],
    ) -> ::redis::RedisResult<T> {
        self.node(self.primary_port()).query(args)
    }

    /// SIGKILLs the current primary; returns its port.
    pub fn kill_primary(&self) -> u16 {
        let port = self.primary_port();
        self.node(port).kill();
        port
    }

    /// Waits until the sentinels name a primary other than `old` and it accepts writes.
    pub fn wait_promoted(&self, old: u16) -> u16 {
        let mut new = old;
        wait_until("a replica promoted", FAILOVER_LIMIT, || {
            new = self.primary_port();
            new != old && self.is_master(new)
        });
        new
    }

    fn is_master(&self, port: u16) -> bool {
        matches!(
            self.node(port).query::<::redis::Value>(&["ROLE"]),
            Ok(::redis::Value::Array(items))
                if matches!(items.first(), Some(::redis::Value::BulkString(r)) if r == b"master")
        )
    }

    /// Starts a killed node again (it comes back with its AOF, and the sentinels turn it
    /// into a replica of the new primary), and waits until it is in sync.
    pub fn restart(&self, port: u16) {
        self.node(port).start_again();
        self.wait_in_sync();
    }

    /// Data nodes not running now.
    fn stopped(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.lock().unwrap_or_else(|p| p.into_inner()).pid().is_none())
            .count()
    }

    /// Waits until every running replica is online (synced, and streaming from the primary).
    pub fn wait_in_sync(&self) {
        wait_until("the replica in sync", SYNC_LIMIT, || {
            let Some(primary) = self.try_primary_port() else {
                return false;
            };
            let Ok(info) = self.node(primary).query::<String>(&["INFO", "replication"]) else {
                return false;
            };
            // Online: the initial sync is done and the replica streams what follows.
            let online = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count();
            online == self.nodes.len() - 1 - self.stopped()
        });
    }

    fn node(&self, port: u16) -> std::sync::MutexGuard<'_, RedisServer> {
        self.nodes
            .iter()
            .map(|n| n.lock().unwrap_or_else(|p| p.into_inner()))
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"))
    }

    /// The sentinels' logs, for a failing test's message.
    pub fn sentinel_logs(&self) -> String {
        self.sentinels.iter().map(Guarded::output).collect()
    }
}

fn sentinel_conf(port: u16, primary: u16, dir: &std::path::Path) -> String {
    format!(
        "port {port}\nbind 127.0.0.1\ndir {dir}\nrequirepass {SENTINEL_PASSWORD}\n\
         sentinel monitor {MASTER} 127.0.0.1 {primary} {QUORUM}\n\
         sentinel auth-pass {MASTER} {DATA_PASSWORD}\n\
         sentinel down-after-milliseconds {MASTER} {}\n\
         sentinel failover-timeout {MASTER} {}\n\
         sentinel parallel-syncs {MASTER} 1\n",
        DOWN_AFTER.as_millis(),
        FAILOVER_TIMEOUT.as_millis(),
        dir = dir.display(),
    )
}

fn sentinel_query(port: u16, args: &[&str]) -> ::redis::RedisResult<::redis::Value> {
    let url = format!("redis://:{SENTINEL_PASSWORD}@127.0.0.1:{port}");
    let mut conn =
        ::redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut cmd = ::redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn)
}
