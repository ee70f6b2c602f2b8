//! Connections for blocking waits, one per wait and apart from every other call; on a
//! cluster, to the master that serves the waited-on key.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Value};

use crate::QueueError;

use super::{Conn, RedisOptions, bounded, not_master};

/// Idle connections [`Waits`] keeps for the next blocking call at least.
pub(super) const IDLE_WAITS: usize = 2;

/// Connections for blocking calls (`BLMOVE` holds its connection until work arrives, so it
/// cannot share one): a few kept idle, each checked with a PING before reuse (a Redis
/// restart or a failover leaves them broken), a new one made when none is idle. In a cluster
/// each wait goes to the master serving its key, looked up through the cluster connection.
pub(crate) struct Waits {
    redis: RedisOptions,
    /// the cluster connection that answers where a slot lives (cluster only)
    router: Option<Conn>,
    connect: Duration,
    response: Duration,
    /// idle connections, each with its node
    idle: std::sync::Mutex<Vec<Wait>>,
    /// how many idle connections are kept
    keep: usize,
}

/// A cluster node's `host` and `port`.
pub(super) type Node = (String, u16);

/// A connection for one blocking call, and the node it goes to (`None` outside a cluster).
pub(crate) struct Wait {
    node: Option<Node>,
    pub(crate) conn: MultiplexedConnection,
}

impl Waits {
    /// `response` must outlast the longest block; `conn` is the caller's shared connection
    /// (asked where a slot lives, in a cluster); `waiters`: how many blocking calls may be on
    /// the wire at once (one per shard), so that as many connections are kept between them.
    pub(crate) fn new(
        redis: RedisOptions,
        conn: &Conn,
        [connect, response]: [Duration; 2],
        waiters: usize,
    ) -> Self {
        Self {
            router: redis.is_cluster().then(|| conn.clone()),
            redis,
            connect,
            response,
            idle: std::sync::Mutex::new(Vec::new()),
            keep: waiters.max(IDLE_WAITS),
        }
    }

    /// A connection for one blocking call on `key`; hand it back with [`put`](Self::put) if
    /// the call went well.
    pub(crate) async fn get(&self, key: &str) -> Result<Wait, QueueError> {
        let node = match &self.router {
            Some(router) => {
                let seeds = self.redis.cluster_seeds();
                Some(bounded(self.connect, master_of(router.clone(), key, seeds)).await?)
            }
            None => None,
        };
        loop {
            let idle = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let at = idle.iter().position(|w| w.node == node);
                at.map(|i| idle.swap_remove(i).conn)
            };
            let Some(mut conn) = idle else { break };
            let ping = redis::cmd("PING");
            if bounded(self.connect, ping.query_async::<()>(&mut conn))
                .await
                .is_ok()
            {
                return Ok(Wait { node, conn });
            }
        }
        let conn = self
            .redis
            .dedicated(node.as_ref(), self.connect, self.response)
            .await?;
        Ok(Wait { node, conn })
    }

    /// Keeps a connection whose call went well for the next one.
    pub(crate) fn put(&self, wait: Wait) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.keep {
            idle.push(wait);
        }
    }
}

/// The master serving `key`'s slot, as the cluster says (`CLUSTER KEYSLOT`, `CLUSTER SLOTS`).
///
/// A node that does not know its own address (one that no other node has met, such as the
/// only node of a one-node cluster) names itself with an empty host, or `?`: Redis means the
/// address the question went to. The question went through the cluster connection to some
/// node we cannot name, so the seed with the same port stands in for it (else the first seed).
pub(super) async fn master_of(mut router: Conn, key: &str, seeds: &[Node]) -> RedisResult<Node> {
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut router)
        .await?;
    let ranges: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut router)
        .await?;
    for range in ranges {
        let Value::Array(range) = range else { continue };
        let (Some(Value::Int(from)), Some(Value::Int(to)), Some(Value::Array(master))) =
            (range.first(), range.get(1), range.get(2))
        else {
            continue;
        };
        if !(*from..=*to).contains(&slot) {
            continue;
        }
        if let (Some(Value::BulkString(host)), Some(Value::Int(port))) =
            (master.first(), master.get(1))
            && let Ok(port) = u16::try_from(*port)
        {
            return Ok((known_host(host, port, seeds), port));
        }
    }
    Err(not_master("no cluster node serves the slot of the queue"))
}

/// `host` as `CLUSTER SLOTS` gave it, or, when the node did not know its own address, the host
/// of the seed with the same `port` (else of the first seed).
fn known_host(host: &[u8], port: u16, seeds: &[Node]) -> String {
    if !host.is_empty() && host != b"?" {
        return String::from_utf8_lossy(host).into_owned();
    }
    seeds
        .iter()
        .find(|(_, p)| *p == port)
        .or(seeds.first())
        .map_or_else(String::new, |(h, _)| h.clone())
}

#[cfg(test)]
mod tests {
    use super::known_host;

    /// A known host is kept; an unknown one is the seed's with the same port, else the first.
    #[test]
    fn unknown_hosts_become_a_seeds() {
        let seeds = vec![("a".to_owned(), 7000), ("b".to_owned(), 7001)];
        assert_eq!(known_host(b"10.0.0.9", 7001, &seeds), "10.0.0.9");
        assert_eq!(known_host(b"", 7001, &seeds), "b");
        assert_eq!(known_host(b"?", 7005, &seeds), "a");
        assert_eq!(known_host(b"", 7005, &[]), "");
    }
}
