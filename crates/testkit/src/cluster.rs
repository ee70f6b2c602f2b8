//! A Redis Cluster on loopback: three masters, each with one replica.

use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::process::wait_until;
use crate::server::{RedisServer, ServerOptions};

/// Masters of the cluster; each has one replica.
pub const MASTERS: usize = 3;
/// How long forming the cluster, or a failover in it, may take in these tests.
pub const CLUSTER_LIMIT: Duration = Duration::from_secs(60);

/// Six cluster nodes (`cluster-enabled yes`, a 2 s node timeout) made into a cluster of three
/// masters with one replica each by `redis-cli --cluster create`. Nodes are stopped by PID
/// when the value is dropped (or by their watchdogs when the test process ends).
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Mutex<RedisServer>>,
}

impl Cluster {
    /// Starts the nodes, forms the cluster and waits until every node reports it healthy.
    pub fn start() -> Cluster {
        let nodes: Vec<RedisServer> = (0..2 * MASTERS)
            .map(|_| {
                RedisServer::start(ServerOptions {
                    cluster: true,
                    ..ServerOptions::default()
                })
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port()));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create.output().expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster {
            nodes: nodes.into_iter().map(Mutex::new).collect(),
        };
        cluster.wait_healthy();
        cluster.wait_replicas_synced();
        cluster
    }

    /// Waits until every running replica's link to its master is up (a replica that never
    /// synced cannot be promoted).
    pub fn wait_replicas_synced(&self) {
        wait_until("the replicas in sync", CLUSTER_LIMIT, || {
            self.ports().into_iter().all(|port| {
                self.query::<String>(port, &["INFO", "replication"])
                    .map_or(true, |i| {
                        i.contains("role:master") || i.contains("master_link_status:up")
                    })
            })
        });
    }

    /// `127.0.0.1:p1,...` of every node (the `--redis-cluster` value).
    pub fn seeds(&self) -> String {
        self.ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A `redis://` URL of one node (for `REDIS_URL` beside the seeds).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports()[0])
    }

    /// Every node's port.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| lock(n).port()).collect()
    }

    /// The ports of the nodes that are masters now.
    pub fn masters(&self) -> Vec<u16> {
        self.ports()
            .into_iter()
            .filter(|p| self.role(*p).as_deref() == Some("master"))
            .collect()
    }

    /// A node's role (`master`, `slave`), or `None` if it does not answer.
    fn role(&self, port: u16) -> Option<String> {
        match self.node(port).query::<::redis::Value>(&["ROLE"]) {
            Ok(::redis::Value::Array(items)) => match items.first() {
                Some(::redis::Value::BulkString(r)) => Some(String::from_utf8_lossy(r).into()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Runs one command on the node at `port`.
    pub fn query<T: ::redis::FromRedisValue>(
        &self,
        port: u16,
        args: &[&str],
    ) -> ::redis::RedisResult<T> {
        self.node(port).query(args)
    }

    /// Waits until every running node says `cluster_state:ok` and sees all slots served.
    pub fn wait_healthy(&self) {
        wait_until("the cluster healthy", CLUSTER_LIMIT, || {
            self.nodes.iter().all(|n| {
                let n = lock(n);
                n.pid().is_none()
                    || n.query::<String>(&["CLUSTER", "INFO"]).is_ok_and(|info| {
                        info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                    })
            })
        });
    }

    /// The master serving `key` now (its port): the one that answers for it without a
    /// `MOVED` redirect.
    pub fn master_of(&self, key: &str) -> u16 {
        self.masters()
            .into_iter()
            .find(|port| {
                self.query::<::redis::Value>(*port, &["EXISTS", key])
                    .is_ok()
            })
            .unwrap_or_else(|| panic!("no master serves {key}"))
    }

    /// SIGKILLs the node at `port`.
    pub fn kill(&self, port: u16) {
        self.node(port).kill();
    }

    /// Waits until a replica has taken over from the killed master at `killed`: three masters
    /// answer again and the running nodes see every slot served. Returns the new masters.
    pub fn wait_promoted(&self, killed: u16) -> Vec<u16> {
        let mut masters = Vec::new();
        wait_until("a replica promoted", CLUSTER_LIMIT, || {
            masters = self.masters();
            masters.len() == MASTERS && !masters.contains(&killed)
        });
        self.wait_healthy();
        masters
    }

    /// Starts a killed node again on its port and files: it rejoins as a replica of the master
    /// that replaced it; waits until its replication link is up.
    pub fn restart(&self, port: u16) {
        self.node(port).start_again();
        wait_until("the restarted node a replica", CLUSTER_LIMIT, || {
            self.query::<String>(port, &["INFO", "replication"])
                .is_ok_and(|i| i.contains("role:slave"))
        });
        self.wait_replicas_synced();
        self.wait_healthy();
    }

    /// How many hash slots the master at `port` serves (from its `CLUSTER NODES` line).
    pub fn slots_of(&self, port: u16) -> usize {
        let nodes: String = self
            .query(port, &["CLUSTER", "NODES"])
            .expect("CLUSTER NODES");
        let mine = nodes
            .lines()
            .find(|l| l.contains("myself"))
            .expect("a line for the node itself");
        mine.split(' ')
            .skip(8)
            .filter(|range| !range.starts_with('['))
            .map(|range| match range.split_once('-') {
                Some((a, b)) => {
                    b.parse::<usize>().unwrap_or(0) + 1 - a.parse::<usize>().unwrap_or(0)
                }
                None => 1,
            })
            .sum()
    }

    /// Moves `slots` hash slots from the master at `from` to the master at `to` with
    /// `redis-cli --cluster reshard` (keys included); panics with its output if it fails.
    pub fn reshard(&self, from: u16, to: u16, slots: usize) {
        let id = |port: u16| -> String {
            self.query(port, &["CLUSTER", "MYID"])
                .expect("CLUSTER MYID")
        };
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "redis-cli --cluster reshard failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_healthy();
    }

    fn node(&self, port: u16) -> MutexGuard<'_, RedisServer> {
        self.nodes
            .iter()
            .map(lock)
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }
}

fn lock(n: &Mutex<RedisServer>) -> MutexGuard<'_, RedisServer> {
    n.lock().unwrap_or_else(|p| p.into_inner())
}
