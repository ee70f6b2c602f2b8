//! Where Redis is and how to talk to it: [`RedisOptions`], checked as it is built, and the
//! conversions from a URL ([`IntoRedisOptions`]). A little over 400 lines with the unit
//! tests of the checks at its end.

use std::fmt;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{
    Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsCertificates,
};

use crate::QueueError;

/// Where Redis is and how to talk to it. Build it from `REDIS_URL` with [`RedisOptions::new`]
/// (a `&str` URL converts by itself wherever wa-queue takes one), then add Sentinel or TLS
/// material. `Debug` shows neither passwords nor key material.
#[derive(Clone)]
pub struct RedisOptions {
    /// the data nodes' scheme, user, password and database (and, for one server, its address)
    pub(super) info: ConnectionInfo,
    pub(super) topology: Topology,
    /// PEM bytes of a private CA
    pub(super) ca: Option<Vec<u8>>,
    /// PEM bytes of a client certificate (chain) and its key
    pub(super) client: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone)]
pub(super) enum Topology {
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

    pub(super) fn tls_required(&self, what: &str) -> Result<(), QueueError> {
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

    /// The cluster's seed nodes (none outside a cluster).
    pub(super) fn cluster_seeds(&self) -> &[(String, u16)] {
        match &self.topology {
            Topology::Cluster { seeds } => seeds,
            _ => &[],
        }
    }

    /// Whether Redis is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster { .. })
    }

    /// `host:port` of the single server (no password), for logs.
    pub(super) fn address(&self) -> String {
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

    pub(super) fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.ca.clone(),
        }
    }

    /// A client for the single server.
    pub(super) fn client(&self) -> Result<Client, QueueError> {
        let built = if self.is_tls() {
            Client::build_with_tls(self.info.clone(), self.certificates())
        } else {
            Client::open(self.info.clone())
        };
        built.map_err(|e| QueueError::Config(format!("redis client: {}", e.category())))
    }

    /// A client for the data node at `host:port`: this URL's scheme, user, password,
    /// database and TLS material, another address.
    pub(super) fn node_client(&self, host: String, port: u16) -> Result<Client, QueueError> {
        let addr = self.node_addr(host, port);
        let mut node = self.clone();
        node.info = self.info.clone().set_addr(addr);
        node.topology = Topology::Single;
        node.client()
    }

    /// The address of a data node with this URL's scheme.
    pub(super) fn node_addr(&self, host: String, port: u16) -> ConnectionAddr {
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
    pub(super) fn cluster_client(&self) -> Result<ClusterClient, QueueError> {
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

    /// Builds the client once, so a bad combination fails now rather than at first use.
    pub(crate) fn validate(&self) -> Result<(), QueueError> {
        if self.is_cluster() {
            return self.cluster_client().map(drop);
        }
        self.client().map(drop)
    }
}

/// Redirects and reconnections redis-rs's cluster connection tries within one call (each call
/// is bounded by our own timeouts as well).
pub(super) const CLUSTER_RETRIES: u32 = 6;

/// Its wait between two tries, ms: shortest and longest (redis-rs's defaults start above a
/// second, longer than an enqueue may take).
pub(super) const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (20, 500);

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
pub(super) fn parse_nodes(list: &str) -> Result<Vec<(String, u16)>, QueueError> {
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

pub(super) fn check_certificates(pem: &[u8], what: &str) -> Result<(), QueueError> {
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
