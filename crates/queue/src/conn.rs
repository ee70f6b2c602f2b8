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

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo, Pipeline, RedisConnectionInfo, RedisFuture, RedisResult, TlsCertificates,
    Value,
};

use crate::{QueueError, RedisFailure};

/// Where Redis is and how to talk to it. Build it from `REDIS_URL` with [`RedisOptions::new`]
/// (a `&str` URL converts by itself wherever wa-queue takes one), then add Sentinel or TLS
/// material. `Debug` shows neither passwords nor key material.
#[derive(Clone)]
pub struct RedisOptions {
    /// the data nodes' scheme, user, password and database (and, for one server, its address)
    info: ConnectionInfo,
    topology: Topology,
    /// PEM bytes of a private CA
    ca: Option<Vec<u8>>,
    /// PEM bytes of a client certificate (chain) and its key
    client: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone)]
enum Topology {
    Single,
    Sentinel {
        nodes: Vec<(String, u16)>,
        master: String,
        password: Option<String>,
    },
    /// Redis Cluster, found through these seed nodes
    Cluster {
        seeds: Vec<(String, u16)>,
    },
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RedisOptions");
        match &self.topology {
            Topology::Single => d.field("address", &self.address()),
            Topology::Sentinel {
                nodes,
                master,
                password,
            } => d.field("sentinels", nodes).field("master", master).field(
                "sentinel_password",
                &password.as_ref().map(|_| "<redacted>"),
            ),
            Topology::Cluster { seeds } => d.field("cluster_seeds", seeds),
        };
        let redis = self.info.redis_settings();
        d.field("tls", &self.is_tls())
            .field("user", &redis.username())
            .field("password", &redis.password().map(|_| "<redacted>"))
            .field("db", &redis.db())
            .field("ca", &self.ca.as_ref().map(|_| "<pem>"))
            .field(
                "client_certificate",
                &self.client.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl RedisOptions {
    /// From a `redis://` or `rediss://` URL (user, password and database included). The URL
    /// itself never appears in an error: it may hold a password.
    pub fn new(url: &str) -> Result<Self, QueueError> {
        let info = url
            .into_connection_info()
            .map_err(|e| QueueError::Config(format!("invalid redis url ({})", e.category())))?;
        if matches!(info.addr(), ConnectionAddr::Unix(_)) && url.starts_with("rediss") {
            return Err(QueueError::Config(
                "invalid redis url (tls over a unix socket)".into(),
            ));
        }
        Ok(Self {
            info,
            topology: Topology::Single,
            ca: None,
            client: None,
        })
    }

    /// Finds the master through these sentinels (`host:port,host:port,...`) under `master`;
    /// the URL's host and port are then ignored, its scheme, user, password and database
    /// still apply to the data nodes. `password` is the sentinels' own, if they have one.
    pub fn sentinel(
        mut self,
        sentinels: &str,
        master: &str,
        password: Option<&str>,
    ) -> Result<Self, QueueError> {
        let nodes = parse_nodes(sentinels)?;
        if master.trim().is_empty() {
            return Err(QueueError::Config(
                "the sentinel master name is empty".into(),
            ));
        }
        self.topology = Topology::Sentinel {
            nodes,
            master: master.trim().to_owned(),
            password: password.filter(|p| !p.is_empty()).map(str::to_owned),
        };
        Ok(self)
    }

    /// Talks to a Redis Cluster found through these seed nodes (`host:port,host:port,...`;
    /// one reachable seed is enough, the others are tried in turn). As with Sentinel, the
    /// URL's host and port are ignored and its scheme, user and password apply to every node;
    /// a cluster has only database 0.
    pub fn cluster(mut self, seeds: &str) -> Result<Self, QueueError> {
        if self.is_sentinel() {
            return Err(QueueError::Config(
                "Sentinel and Redis Cluster cannot both be used".into(),
            ));
        }
        if self.info.redis_settings().db() != 0 {
            return Err(QueueError::Config(
                "Redis Cluster has only database 0: drop the database from the redis url".into(),
            ));
        }
        self.topology = Topology::Cluster {
            seeds: parse_nodes(seeds)?,
        };
        Ok(self)
    }

    /// Trusts this CA (PEM, one or more certificates) instead of the system's roots.
    pub fn ca_pem(mut self, pem: Vec<u8>) -> Result<Self, QueueError> {
        check_certificates(&pem, "CA certificate")?;
        self.ca = Some(pem);
        self.tls_required("a CA certificate")?;
        Ok(self)
    }

    /// Presents this client certificate (PEM chain) with its private key (PEM), for a Redis
    /// with `tls-auth-clients yes`.
    pub fn client_pem(mut self, certificate: Vec<u8>, key: Vec<u8>) -> Result<Self, QueueError> {
        check_certificates(&certificate, "client certificate")?;
        use rustls::pki_types::pem::PemObject;
        if rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).is_err() {
            return Err(QueueError::Config(
                "the client key is not a PEM private key".into(),
            ));
        }
        self.client = Some((certificate, key));
        self.tls_required("a client certificate")?;
        Ok(self)
    }

    fn tls_required(&self, what: &str) -> Result<(), QueueError> {
        if self.is_tls() {
            Ok(())
        } else {
            Err(QueueError::Config(format!(
                "{what} needs TLS: use a rediss:// URL"
            )))
        }
    }

    /// Whether the data nodes are reached over TLS (a `rediss://` URL).
    pub fn is_tls(&self) -> bool {
        matches!(self.info.addr(), ConnectionAddr::TcpTls { .. })
    }

    /// Whether the master is found through Sentinel.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.topology, Topology::Sentinel { .. })
    }

    /// Whether Redis is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster { .. })
    }

    /// `host:port` of the single server (no password), for logs.
    fn address(&self) -> String {
        match self.info.addr() {
            ConnectionAddr::Tcp(h, p)
            | ConnectionAddr::TcpTls {
                host: h, port: p, ..
            } => {
                format!("{h}:{p}")
            }
            ConnectionAddr::Unix(path) => path.display().to_string(),
            _ => "?".to_owned(),
        }
    }

    fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.ca.clone(),
        }
    }

    /// A client for the single server.
    fn client(&self) -> Result<Client, QueueError> {
        let built = if self.is_tls() {
            Client::build_with_tls(self.info.clone(), self.certificates())
        } else {
            Client::open(self.info.clone())
        };
        built.map_err(|e| QueueError::Config(format!("redis client: {}", e.category())))
    }

    /// A client for the data node at `host:port`: this URL's scheme, user, password,
    /// database and TLS material, another address.
    fn node_client(&self, host: String, port: u16) -> Result<Client, QueueError> {
        let addr = self.node_addr(host, port);
        let mut node = self.clone();
        node.info = self.info.clone().set_addr(addr);
        node.topology = Topology::Single;
        node.client()
    }

    /// The address of a data node with this URL's scheme.
    fn node_addr(&self, host: String, port: u16) -> ConnectionAddr {
        if self.is_tls() {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        }
    }

    /// A cluster client for the seed nodes, with this URL's credentials and TLS material.
    fn cluster_client(&self) -> Result<ClusterClient, QueueError> {
        let Topology::Cluster { seeds } = &self.topology else {
            unreachable!("cluster_client without seeds");
        };
        let nodes = seeds
            .iter()
            .map(|(h, p)| self.info.clone().set_addr(self.node_addr(h.clone(), *p)));
        let mut builder = ClusterClientBuilder::new(nodes)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(CLUSTER_RETRY_WAIT_MS.0)
            .max_retry_wait(CLUSTER_RETRY_WAIT_MS.1);
        if self.is_tls() {
            builder = builder.certs(self.certificates());
        }
        builder
            .build()
            .map_err(|e| QueueError::Config(format!("redis cluster client: {}", e.category())))
    }

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

    /// Builds the client once, so a bad combination fails now rather than at first use.
    pub(crate) fn validate(&self) -> Result<(), QueueError> {
        if self.is_cluster() {
            return self.cluster_client().map(drop);
        }
        self.client().map(drop)
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

/// Redirects and reconnections redis-rs's cluster connection tries within one call (each call
/// is bounded by our own timeouts as well).
const CLUSTER_RETRIES: u32 = 6;
/// Its wait between two tries, ms: shortest and longest (redis-rs's defaults start above a
/// second, longer than an enqueue may take).
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (20, 500);

/// Idle connections [`Waits`] keeps for the next blocking call at least.
const IDLE_WAITS: usize = 2;

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
type Node = (String, u16);

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
            Some(router) => Some(bounded(self.connect, master_of(router.clone(), key)).await?),
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
async fn master_of(mut router: Conn, key: &str) -> RedisResult<Node> {
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
            return Ok((String::from_utf8_lossy(host).into_owned(), port));
        }
    }
    Err(not_master("no cluster node serves the slot of the queue"))
}

/// Converts what callers pass as "the Redis to use": a URL (`&str`, `String`) or
/// [`RedisOptions`].
pub trait IntoRedisOptions {
    /// The options (an invalid URL is a [`QueueError::Config`]).
    fn into_redis_options(self) -> Result<RedisOptions, QueueError>;
}

impl IntoRedisOptions for RedisOptions {
    fn into_redis_options(self) -> Result<RedisOptions, QueueError> {
        Ok(self)
    }
}

impl IntoRedisOptions for &RedisOptions {
    fn into_redis_options(self) -> Result<RedisOptions, QueueError> {
        Ok(self.clone())
    }
}

impl IntoRedisOptions for &str {
    fn into_redis_options(self) -> Result<RedisOptions, QueueError> {
        RedisOptions::new(self)
    }
}

impl IntoRedisOptions for &String {
    fn into_redis_options(self) -> Result<RedisOptions, QueueError> {
        RedisOptions::new(self)
    }
}

impl IntoRedisOptions for String {
    fn into_redis_options(self) -> Result<RedisOptions, QueueError> {
        RedisOptions::new(&self)
    }
}

/// `host:port,host:port,...`: at least one, every port a number.
fn parse_nodes(list: &str) -> Result<Vec<(String, u16)>, QueueError> {
    let nodes: Vec<(String, u16)> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|node| {
            node.rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)))
                .filter(|(h, _)| !h.is_empty())
                .ok_or_else(|| QueueError::Config(format!("{node:?} is not host:port")))
        })
        .collect::<Result<_, _>>()?;
    if nodes.is_empty() {
        return Err(QueueError::Config("no host:port given".into()));
    }
    Ok(nodes)
}

fn check_certificates(pem: &[u8], what: &str) -> Result<(), QueueError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(()),
        _ => Err(QueueError::Config(format!(
            "the {what} is not a PEM certificate"
        ))),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Debug shows neither the URL's password nor the sentinel password nor key material.
    #[test]
    fn debug_redacts_secrets() {
        let opts = RedisOptions::new("rediss://user:hunter2@redis.example:6380/2")
            .unwrap()
            .sentinel("10.0.0.1:26379, 10.0.0.2:26379", "main", Some("s3ntinel"))
            .unwrap();
        let text = format!("{opts:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("s3ntinel"),
            "{text}"
        );
        assert!(
            text.contains("<redacted>") && text.contains("main"),
            "{text}"
        );
    }

    /// Sentinel lists parse as host:port pairs; anything else is a configuration error.
    #[test]
    fn sentinel_lists() {
        assert_eq!(
            parse_nodes("a:1, b:2,[::1]:3").unwrap(),
            vec![("a".into(), 1), ("b".into(), 2), ("::1".into(), 3)]
        );
        for bad in ["", "a", "a:x", ":1", "a:70000"] {
            assert!(
                matches!(parse_nodes(bad), Err(QueueError::Config(_))),
                "{bad}"
            );
        }
    }

    /// Cluster seeds parse like sentinel lists; a cluster with Sentinel, or with a database
    /// other than 0, is refused; Debug shows the seeds and not the password.
    #[test]
    fn cluster_options() {
        let url = "redis://:hunter2@ignored:1";
        let opts = RedisOptions::new(url).unwrap().cluster("a:1,b:2").unwrap();
        assert!(opts.is_cluster() && opts.validate().is_ok());
        let text = format!("{opts:?}");
        assert!(
            text.contains("\"a\", 1") && !text.contains("hunter2"),
            "{text}"
        );
        let both = RedisOptions::new(url)
            .unwrap()
            .sentinel("s:1", "m", None)
            .unwrap()
            .cluster("a:1");
        assert!(matches!(both, Err(QueueError::Config(_))));
        let db = RedisOptions::new("redis://h/2").unwrap().cluster("a:1");
        assert!(matches!(db, Err(QueueError::Config(_))));
        assert!(RedisOptions::new(url).unwrap().cluster("a").is_err());
    }

    /// TLS material without a rediss:// URL, or that is not PEM, is refused at once.
    #[test]
    fn tls_material_is_checked() {
        let plain = RedisOptions::new("redis://127.0.0.1").unwrap();
        let err = plain.ca_pem(b"not pem".to_vec()).unwrap_err();
        assert!(err.to_string().contains("not a PEM certificate"), "{err}");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let pem = cert.cert.pem().into_bytes();
        let plain = RedisOptions::new("redis://127.0.0.1").unwrap();
        let err = plain.ca_pem(pem.clone()).unwrap_err();
        assert!(err.to_string().contains("rediss://"), "{err}");
        let tls = RedisOptions::new("rediss://localhost").unwrap();
        assert!(tls.clone().ca_pem(pem.clone()).is_ok());
        let err = tls.client_pem(pem, b"nope".to_vec()).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
    }
}
