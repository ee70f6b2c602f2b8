//! How the producer, the consumer, the admin and the blocking waits reach Redis: one
//! [`RedisOptions`] describes where Redis is (one server, or a master found through
//! Sentinel) and how to talk to it (plain TCP or TLS, with a private CA and a client
//! certificate); [`Conn`] is the multiplexed connection every call goes through.
//!
//! # Why a connection type of our own
//!
//! A single server gets redis-rs's `ConnectionManager`, which reconnects to its one address by
//! itself. A Sentinel-managed master moves: after a failover the old address is dead (or a
//! read-only replica), so reconnecting there is wrong. [`Conn::Sentinel`] therefore asks the
//! sentinels for the master again whenever its connection broke, and redis-rs checks the
//! answer with `ROLE` before handing it over. Every caller holds a [`Conn`] and never learns
//! which kind it is, so a further kind (a cluster connection) is one more variant here and no
//! change to the producer or the consumer.
//!
//! # Redis Cluster
//!
//! [`RedisOptions::cluster`] takes seed nodes; [`Conn::Cluster`] is redis-rs's cluster
//! connection, which learns the slot map from the seeds, sends each call to the master of its
//! key's slot and follows `MOVED` and `ASK` redirects (a reshard, a failover). Every script of
//! the contract names keys of one hash tag only, so each call has exactly one slot. A blocking
//! wait must not share a socket with other calls (Redis answers one connection's commands in
//! order), so [`Waits`] asks the cluster which master serves the waited-on key and keeps a
//! connection of its own to that node; a wait that meets a redirect says "look again", and the
//! next call through the cluster connection goes where the slot now lives.
//!
//! # TLS
//!
//! A `rediss://` URL turns TLS on (rustls on the ring provider). Without a CA of its own the
//! client trusts the system's roots; with [`RedisOptions::ca_pem`] it trusts that CA only. A
//! certificate that does not verify fails the connection with an error that says TLS; there is
//! no fallback to plain TCP.
//!
//! # Layout
//!
//! This module holds [`Conn`], the Sentinel-following connection and the making of
//! connections; `options` what [`RedisOptions`] says and checks; `waits` the connections of
//! blocking waits ([`Waits`]).

mod options;
mod waits;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterConfig;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisFuture, RedisResult, Value,
};

use crate::{QueueError, RedisFailure};

use options::Topology;
pub use options::{IntoRedisOptions, RedisOptions};
use waits::Node;
pub(crate) use waits::Waits;

/// A Redis error as ours, its cause kept.
pub(crate) fn redis_error(e: redis::RedisError) -> QueueError {
    QueueError::Redis(RedisFailure::client(e))
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

fn not_master(why: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, why))
}

/// Runs a Redis call with a deadline.
pub(crate) async fn bounded<T>(
    t: Duration,
    f: impl Future<Output = RedisResult<T>>,
) -> Result<T, QueueError> {
    match tokio::time::timeout(t, f).await {
        Ok(r) => r.map_err(redis_error),
        Err(_) => Err(QueueError::Timeout(t)),
    }
}

/// The connection every non-blocking call goes through: cheap to clone (clones share one
/// socket and pipeline their calls), reconnecting by itself.
#[derive(Clone)]
pub(crate) enum Conn {
    /// one server: redis-rs reconnects to its address
    Single(ConnectionManager),
    /// the master of the moment, found through Sentinel
    Sentinel(Following),
    /// a Redis Cluster: each call goes to its slot's master, redirects followed
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Sentinel(f) => {
                Box::pin(f.call(move |mut c| async move { c.req_packed_command(cmd).await }))
            }
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(f) => {
                Box::pin(f.call(move |mut c| async move {
                    c.req_packed_commands(cmd, offset, count).await
                }))
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Sentinel(_) | Conn::Cluster(_) => 0,
        }
    }
}

/// A multiplexed connection to the master the sentinels name. When a call fails in a way that
/// means the connection is gone or points at a replica (I/O error, dropped connection,
/// `READONLY`), the connection is forgotten and the next call asks the sentinels again.
#[derive(Clone)]
pub(crate) struct Following {
    inner: Arc<FollowingInner>,
}

struct FollowingInner {
    redis: RedisOptions,
    /// serialises reconnections: one caller asks the sentinels, the others wait for it
    reconnecting: tokio::sync::Mutex<()>,
    /// (generation, connection): a failure only forgets the connection it happened on
    current: std::sync::Mutex<Option<(u64, MultiplexedConnection)>>,
    timeout: Duration,
}

impl Following {
    fn new(redis: RedisOptions, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(FollowingInner {
                redis,
                reconnecting: tokio::sync::Mutex::new(()),
                current: std::sync::Mutex::new(None),
                timeout,
            }),
        }
    }

    fn cached(&self) -> Option<(u64, MultiplexedConnection)> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let _one_at_a_time = self.inner.reconnecting.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let t = self.inner.timeout;
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t));
        let conn = self.inner.redis.find_master(&cfg, t).await?;
        let mut current = self.inner.current.lock().unwrap_or_else(|p| p.into_inner());
        let generation = current.as_ref().map_or(0, |(g, _)| g + 1);
        *current = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    async fn call<T, F, Fut>(&self, send: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, conn) = self.connection().await?;
        let result = send(conn).await;
        if let Err(e) = &result
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_unrecoverable_error()
                || e.is_timeout()
                || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
        {
            let mut current = self.inner.current.lock().unwrap_or_else(|p| p.into_inner());
            if current.as_ref().is_some_and(|(g, _)| *g == generation) {
                tracing::warn!("connection to the Redis master lost; asking the sentinels again");
                *current = None;
            }
        }
        result
    }
}

/// Making connections: to one server, to the master the sentinels name, to a cluster.
impl RedisOptions {
    /// Asks the sentinels (in order, each within `timeout`) where the master is, connects
    /// there and checks with `ROLE` that it is the master. Sentinels are reached over plain
    /// TCP with their own password.
    async fn find_master(
        &self,
        cfg: &AsyncConnectionConfig,
        timeout: Duration,
    ) -> RedisResult<MultiplexedConnection> {
        let Topology::Sentinel {
            nodes,
            master,
            password,
        } = &self.topology
        else {
            unreachable!("find_master without sentinels");
        };
        let mut last = None;
        for (host, port) in nodes {
            let mut redis = RedisConnectionInfo::default();
            if let Some(p) = password {
                redis = redis.set_password(p);
            }
            let info = ConnectionAddr::Tcp(host.clone(), *port)
                .into_connection_info()?
                .set_redis_settings(redis);
            let ask = async {
                let mut c = Client::open(info)?
                    .get_multiplexed_async_connection_with_config(cfg)
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(master)
                    .query_async::<Option<(String, u16)>>(&mut c)
                    .await
            };
            match tokio::time::timeout(timeout, ask).await {
                Ok(Ok(Some((host, port)))) => {
                    return self.connect_master(host, port, cfg, timeout).await;
                }
                Ok(Ok(None)) => {
                    last = Some(not_master("the sentinels do not know this master name"))
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(timed_out()),
            }
        }
        Err(last.unwrap_or_else(|| not_master("no sentinel answered")))
    }

    async fn connect_master(
        &self,
        host: String,
        port: u16,
        cfg: &AsyncConnectionConfig,
        timeout: Duration,
    ) -> RedisResult<MultiplexedConnection> {
        let client = self
            .node_client(host, port)
            .map_err(|_| not_master("cannot build a client for the master"))?;
        let check = async {
            let mut c = client
                .get_multiplexed_async_connection_with_config(cfg)
                .await?;
            let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut c).await?;
            match role.first() {
                Some(Value::BulkString(r)) if r == b"master" => Ok(c),
                _ => Err(not_master(
                    "the node the sentinels name is not a master (yet)",
                )),
            }
        };
        tokio::time::timeout(timeout, check)
            .await
            .map_err(|_| timed_out())?
    }

    /// A multiplexed connection that reconnects by itself (to the master of the moment under
    /// Sentinel), connecting at its first use. `retries`: reconnection attempts inside one
    /// call (0: a call while Redis is down fails at once).
    pub(crate) fn lazy(&self, timeout: Duration, retries: usize) -> Result<Conn, QueueError> {
        if self.is_sentinel() {
            self.validate()?;
            return Ok(Conn::Sentinel(Following::new(self.clone(), timeout)));
        }
        if self.is_cluster() {
            let cfg = ClusterConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            let conn = self
                .cluster_client()?
                .get_pending_async_connection_with_config(cfg);
            return Ok(Conn::Cluster(conn));
        }
        let cfg = ConnectionManagerConfig::new()
            .set_number_of_retries(retries)
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let manager =
            ConnectionManager::new_lazy_with_config(self.client()?, cfg).map_err(redis_error)?;
        Ok(Conn::Single(manager))
    }

    /// Like [`lazy`](Self::lazy), and connected now (a PING within `timeout`).
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<Conn, QueueError> {
        let conn = self.lazy(timeout, 1)?;
        let mut c = conn.clone();
        bounded(timeout, redis::cmd("PING").query_async::<()>(&mut c)).await?;
        Ok(conn)
    }

    /// A connection of its own (not shared with other callers), for a blocking command:
    /// `response` must outlast the block. In a cluster, to the node `node` (see
    /// [`Waits`]).
    async fn dedicated(
        &self,
        node: Option<&Node>,
        connect: Duration,
        response: Duration,
    ) -> Result<MultiplexedConnection, QueueError> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(response));
        if self.is_sentinel() {
            return self.find_master(&cfg, connect).await.map_err(redis_error);
        }
        let client = match node {
            Some((host, port)) => self.node_client(host.clone(), *port)?,
            None => self.client()?,
        };
        match tokio::time::timeout(
            connect,
            client.get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        {
            Ok(r) => r.map_err(redis_error),
            Err(_) => Err(QueueError::Timeout(connect)),
        }
    }
}
