//! `wa-worker dashboard`: the queue in a browser. An overview (depths, consumers, the last
//! hour's rates), the dead letters with filters and pages, a page per dead job, and replay or
//! purge of one job, the selected ones or all a filter matches.
//!
//! The page, its script and its style are compiled into the binary (`assets/`): no CDN, no
//! build step. The process samples the queue every few seconds for the chart
//! ([`history`]), serves HTTP/1.1 with a connection cap and a header timeout ([`server`]),
//! and checks the token and the CSRF token ([`auth`]) before [`routes`] answers.

mod auth;
mod history;
mod routes;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use wa_queue::QueueName;

use crate::cli::{DashboardArgs, Global, Usage};

pub async fn run(g: &Global, queue: QueueName, args: DashboardArgs) -> anyhow::Result<()> {
    let token = args
        .token
        .as_ref()
        .map(|t| t.expose())
        .filter(|t| !t.is_empty());
    check_exposure(args.listen, token.is_some())?;
    let admin = crate::connect_admin(g, queue).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            Usage(format!(
                "--listen/WA_DASHBOARD_LISTEN: cannot listen on {}: {e}",
                args.listen
            ))
        })?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let history = Arc::new(history::History::default());
    tokio::spawn(history::sample(admin.clone(), history.clone()));
    let app = Arc::new(routes::App {
        admin,
        auth: auth::Auth::new(token),
        queue: g.queue.clone(),
        history,
    });
    tracing::info!(%addr, queue = %g.queue, login = token.is_some(), "wa-worker dashboard listening");
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    server::serve(listener, app, async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    })
    .await;
    Ok(())
}

/// Refuses to serve the queue's data and its actions beyond this machine without a token.
fn check_exposure(listen: SocketAddr, has_token: bool) -> Result<(), Usage> {
    if listen.ip().is_loopback() || has_token {
        return Ok(());
    }
    Err(Usage(format!(
        "--listen/WA_DASHBOARD_LISTEN {listen} is not a loopback address: set \
         --token/WA_DASHBOARD_TOKEN (anyone who reaches the dashboard can replay and purge jobs)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback serves without a token; any other address needs one.
    #[test]
    fn exposure() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_exposure(at("127.0.0.1:9100"), false).is_ok());
        assert!(check_exposure(at("[::1]:9100"), false).is_ok());
        assert!(check_exposure(at("0.0.0.0:9100"), false).is_err());
        assert!(check_exposure(at("192.0.2.1:9100"), false).is_err());
        assert!(check_exposure(at("0.0.0.0:9100"), true).is_ok());
    }
}
