//! Routing: which route a request's path names on the listener or service that received it,
//! and the answers of every route but the POST pipeline (in `post`) and readiness (in `ready`).

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body::Body as HttpBody;

use crate::Webhook;
use crate::metrics::RequestOutcome;
use crate::reply::{Reply, method_not_allowed, reply, text, with_type};

/// The content type of `/metrics`: Prometheus text exposition 0.0.4.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The probe routes and their paths, the same on every surface that offers them.
const PROBES: [(&str, Route); 3] = [
    ("/healthz", Route::Healthz),
    ("/readyz", Route::Readyz),
    ("/metrics", Route::Metrics),
];

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Webhook,
    Healthz,
    Readyz,
    Metrics,
    NotFound,
}

impl Route {
    /// The route's name in the request span.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Route::Webhook => "webhook",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::NotFound => "not_found",
        }
    }
}

/// Which routes a listener or a mounted service offers, and how it finds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    /// The webhook at [`Config::path`](crate::Config::path) and the probes at theirs.
    All,
    /// With an admin listener, the public one: the webhook path only.
    Public,
    /// The probes only: the admin listener, and [`Webhook::probes`].
    Probes,
    /// The webhook whatever the path: [`Webhook::endpoint`], for a router that already
    /// decided the request is for it.
    Endpoint,
}

impl Surface {
    /// The route `path` names here; a path this surface does not offer is [`Route::NotFound`].
    pub(crate) fn route(self, path: &str, webhook_path: &str) -> Route {
        let probe = || {
            PROBES
                .iter()
                .find(|(p, _)| *p == path)
                .map_or(Route::NotFound, |(_, route)| *route)
        };
        match self {
            Surface::Endpoint => Route::Webhook,
            _ if path == webhook_path => match self {
                Surface::All | Surface::Public => Route::Webhook,
                _ => Route::NotFound,
            },
            Surface::Public => Route::NotFound,
            Surface::All | Surface::Probes => probe(),
        }
    }
}

impl Webhook {
    /// Answers a request already routed; `count` receives the number of jobs of a POST.
    pub(crate) async fn dispatch<B: HttpBody>(
        &self,
        req: Request<B>,
        route: Route,
        count: &mut usize,
    ) -> Reply {
        let metrics = self.metrics();
        match (route, req.method()) {
            (Route::Webhook, &Method::POST) => self.post(req, count).await,
            (Route::Webhook, &Method::GET) => self.handshake(req.uri().query().unwrap_or("")),
            (Route::Webhook, _) => {
                metrics.request(RequestOutcome::MethodNotAllowed);
                method_not_allowed("GET, POST")
            }
            (Route::NotFound, _) => {
                metrics.request(RequestOutcome::NotFound);
                reply(StatusCode::NOT_FOUND, "")
            }
            (_, m) if m != Method::GET => {
                metrics.request(RequestOutcome::MethodNotAllowed);
                method_not_allowed("GET")
            }
            (Route::Healthz, _) => {
                metrics.request(RequestOutcome::Probe);
                text(StatusCode::OK, Bytes::from_static(b"ok\n"))
            }
            (Route::Readyz, _) => {
                metrics.request(RequestOutcome::Probe);
                self.ready().await
            }
            (Route::Metrics, _) => {
                metrics.request(RequestOutcome::Probe);
                let mut rendered = metrics.render();
                self.inner.producer.config_health().render(&mut rendered);
                with_type(StatusCode::OK, Bytes::from(rendered), METRICS_CONTENT_TYPE)
            }
        }
    }

    /// Meta's GET handshake: the challenge echoed, or 400/403.
    fn handshake(&self, query: &str) -> Reply {
        let (outcome, answer) = match self.inner.challenge.decide(query) {
            Ok(challenge) => (
                RequestOutcome::ChallengeOk,
                text(StatusCode::OK, Bytes::from(challenge)),
            ),
            Err(e) if e.is_bad_request() => (
                RequestOutcome::ChallengeBadRequest,
                reply(StatusCode::BAD_REQUEST, ""),
            ),
            Err(_) => (
                RequestOutcome::ChallengeForbidden,
                reply(StatusCode::FORBIDDEN, ""),
            ),
        };
        self.metrics().request(outcome);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOK: &str = "/hook";

    /// Each surface offers its routes and answers 404 for the others.
    #[test]
    fn surfaces_offer_their_routes() {
        let cases = [
            (Surface::All, HOOK, Route::Webhook),
            (Surface::All, "/readyz", Route::Readyz),
            (Surface::All, "/other", Route::NotFound),
            (Surface::Public, HOOK, Route::Webhook),
            (Surface::Public, "/metrics", Route::NotFound),
            (Surface::Probes, HOOK, Route::NotFound),
            (Surface::Probes, "/healthz", Route::Healthz),
            (Surface::Endpoint, "/", Route::Webhook),
            (Surface::Endpoint, "/metrics", Route::Webhook),
        ];
        for (surface, path, route) in cases {
            assert_eq!(surface.route(path, HOOK), route, "{surface:?} {path}");
        }
    }
}
