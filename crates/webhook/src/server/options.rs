//! The listeners' settings, apart from the handler's [`Config`](crate::Config): they only
//! mean something to [`Server`](super::Server), not to a [`Webhook`](crate::Webhook) mounted
//! in another server.

use std::time::Duration;

/// Settings of the connections a [`Server`](super::Server) accepts.
///
/// `ServeOptions::default()` is the documented default of every field; change what you need:
///
/// ```no_run
/// # async fn run(webhook: wa_webhook::Webhook) -> std::io::Result<()> {
/// let mut options = wa_webhook::ServeOptions::default();
/// options.max_connections = 256;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// wa_webhook::Server::new(listener)
///     .options(options)
///     .serve(webhook, std::future::pending())
///     .await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeOptions {
    /// How long a connection may go without a complete request head, counted from its accept
    /// and from the end of its previous request, whatever the protocol; also the TLS
    /// handshake's limit and the HTTP/2 keep-alive PING interval and timeout. Default 10 s.
    pub header_read_timeout: Duration,
    /// Public connections open at once; further ones wait in the listen backlog. Default 1024.
    pub max_connections: usize,
    /// Streams per HTTP/2 connection. Default 16.
    pub max_streams_per_connection: u32,
    /// After shutdown starts, how long in-flight requests may still take. Default 10 s.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_streams_per_connection: 16,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
