//! The [`Webhook`] handle: what it holds, how one request is answered (span, in-flight gauge,
//! route), and the tower `Service`s an embedder mounts: the whole endpoint, the webhook alone
//! whatever its path ([`Webhook::endpoint`]), or the probes alone ([`Webhook::probes`]).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::Request;
use http_body::Body as HttpBody;
use tracing::Instrument;
use wa_challenge::Challenge;
use wa_queue::Producer;
use wa_signature::Verifier;

use crate::body::BUDGET_UNIT;
use crate::ready::RedisCheck;
use crate::reply::Reply;
use crate::route::Surface;
use crate::{Config, Metrics};

/// The webhook endpoint: a handler, a tower `Service`, and what [`serve`](crate::serve) runs.
///
/// Cloning is cheap (an `Arc`); every clone shares the producer and the metrics.
#[derive(Clone)]
pub struct Webhook {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    /// The budget of bodies being read, not yet verified, in [`BUDGET_UNIT`]s (see
    /// [`Config::max_buffered`]).
    pub(crate) unverified: tokio::sync::Semaphore,
    /// The budget of verified bodies waiting for Redis, in [`BUDGET_UNIT`]s.
    pub(crate) verified: tokio::sync::Semaphore,
    pub(crate) verifier: Verifier,
    pub(crate) challenge: Challenge,
    pub(crate) producer: Producer,
    pub(crate) metrics: Metrics,
    pub(crate) redis_check: RedisCheck,
}

impl fmt::Debug for Webhook {
    // The verifier and challenge hold secrets; their own Debug redacts them, and the config
    // holds none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Assembles an endpoint. Build the producer with [`Config::producer_options`], so its
    /// own timeout is the endpoint's [`Config::enqueue_timeout`]; the endpoint enforces the
    /// latter in any case.
    pub fn new(
        config: Config,
        verifier: Verifier,
        challenge: Challenge,
        producer: Producer,
    ) -> Self {
        let budget = config.max_buffered.div_ceil(BUDGET_UNIT).max(1);
        Self {
            inner: Arc::new(Inner {
                unverified: tokio::sync::Semaphore::new(budget),
                verified: tokio::sync::Semaphore::new(budget),
                config,
                verifier,
                challenge,
                producer,
                metrics: Metrics::default(),
                redis_check: RedisCheck::default(),
            }),
        }
    }

    /// The settings this endpoint was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The live counters (what `/metrics` renders).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The producer jobs go through (for [`Producer::watch_config`], whose verdict `/readyz`
    /// and `/metrics` report).
    pub fn producer(&self) -> &Producer {
        &self.inner.producer
    }

    /// The webhook alone (GET handshake, POST notifications) answering on whatever path it is
    /// mounted at, for a router that already chose it: axum's
    /// `route_service("/hooks/whatsapp", webhook.endpoint())`. [`Config::path`] plays no part.
    pub fn endpoint(&self) -> Routes {
        Routes::new(self, Surface::Endpoint)
    }

    /// The probes alone: `/healthz`, `/readyz` and `/metrics` (404 for any other path, the
    /// webhook path included), for an admin router or a nested prefix.
    pub fn probes(&self) -> Routes {
        Routes::new(self, Surface::Probes)
    }

    /// Answers one request: [`Config::path`] and the probes, 404 for the rest. Never fails:
    /// every problem has its status code.
    pub async fn handle<B>(&self, req: Request<B>) -> Reply
    where
        B: HttpBody,
    {
        self.handle_on(req, Surface::All).await
    }

    /// [`handle`](Self::handle) for a listener or service that offers only some routes.
    pub(crate) async fn handle_on<B>(&self, req: Request<B>, surface: Surface) -> Reply
    where
        B: HttpBody,
    {
        let _in_flight = self.metrics().in_flight();
        let route = surface.route(req.uri().path(), &self.inner.config.path);
        let span = tracing::debug_span!(
            "request",
            method = %req.method(),
            // The path only: the query string of a handshake holds the verify token.
            path = req.uri().path(),
            route = route.as_str(),
            status = tracing::field::Empty,
            notifications = tracing::field::Empty,
        );
        let mut notifications = 0usize;
        // A span that is not recorded (the usual case) costs neither the clock nor wrapping
        // the request's future, which would move it.
        if span.is_disabled() {
            return self.dispatch(req, route, &mut notifications).await;
        }
        let started = Instant::now();
        let response = self
            .dispatch(req, route, &mut notifications)
            .instrument(span.clone())
            .await;
        span.record("status", response.status().as_u16());
        span.record("notifications", notifications);
        span.in_scope(|| {
            tracing::debug!(
                elapsed_us = started.elapsed().as_micros() as u64,
                "answered"
            );
        });
        response
    }

    /// The future of one call of a tower `Service` over `surface`.
    fn call_on<B>(&self, req: Request<B>, surface: Surface) -> ServiceFuture
    where
        B: HttpBody + Send + 'static,
        B::Data: Send,
    {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle_on(req, surface).await) })
    }
}

/// What the endpoint's tower `Service`s return: a boxed `Send` future that never fails.
type ServiceFuture = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>;

impl<B> tower_service::Service<Request<B>> for Webhook
where
    B: HttpBody + Send + 'static,
    B::Data: Send,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.call_on(req, Surface::All)
    }
}

/// A part of a [`Webhook`]'s routes as a tower `Service`: [`Webhook::endpoint`] or
/// [`Webhook::probes`]. Clones share the webhook's producer and metrics.
#[derive(Clone, Debug)]
pub struct Routes {
    webhook: Webhook,
    surface: Surface,
}

impl Routes {
    fn new(webhook: &Webhook, surface: Surface) -> Self {
        Self {
            webhook: webhook.clone(),
            surface,
        }
    }

    /// Answers one request on these routes, like [`Webhook::handle`].
    pub async fn handle<B: HttpBody>(&self, req: Request<B>) -> Reply {
        self.webhook.handle_on(req, self.surface).await
    }
}

impl<B> tower_service::Service<Request<B>> for Routes
where
    B: HttpBody + Send + 'static,
    B::Data: Send,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.webhook.call_on(req, self.surface)
    }
}
