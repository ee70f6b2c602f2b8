//! Test support shared by the wa-webhook suites (never a normal dependency: the crate is
//! `publish = false` and used only under `[dev-dependencies]`).
//!
//! - [`process`]: child processes that die with the test ([`Guarded`]), free ports, polling
//!   with a deadline, our binaries next to the test executable.
//! - [`server`]: private `redis-server`s on loopback: plain, with persistence, with an
//!   eviction policy, with `CONFIG` renamed away, or with TLS ([`certs`] makes the
//!   certificates).
//! - [`sentinel`]: a primary, a replica and three sentinels, for failover tests.
//! - [`cluster`]: a Redis Cluster of three masters with a replica each.
//! - [`shared`]: the shared Redis (`REDIS_URL`), a connection that fails loudly, names no
//!   other test uses in it, and deleting a test's keys.
//! - [`http`]: an HTTP client on hyper's: pooled HTTP/1.1 and HTTP/2 clients reading whole
//!   answers, and one HTTP/1.1 connection of its own for load tests.
//!
//! Every server listens on 127.0.0.1 on a port picked at start (other suites run at the same
//! time) and lives in its own temporary directory. A server is stopped by its PID when its
//! value is dropped, and also when the test process ends without dropping it (a topology kept
//! in a `static` for the whole test binary): each server runs under a small watchdog that
//! kills it once the test process is gone.

pub mod certs;
pub mod cluster;
pub mod http;
pub mod process;
pub mod sentinel;
pub mod server;
pub mod shared;

pub use certs::TlsFiles;
pub use cluster::Cluster;
pub use http::{Answer, Conn, http1, http2, send, streamed};
pub use process::{
    Guarded, binary, eventually, free_cluster_port, free_port, peak_rss, rss, running, wait_until,
};
pub use sentinel::Failover;
pub use server::{RedisServer, ServerOptions, Tls};
pub use shared::{connect, delete_matching, redis_url, unique};
