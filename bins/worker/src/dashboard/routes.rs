//! What the dashboard answers: the page and its assets, the login, and a small JSON API the
//! page calls (reads are GETs; actions are POSTs that must carry the CSRF token).
//!
//! The server never puts a job's text into HTML: the page fetches JSON and the script writes
//! every value with `textContent`. The only value spliced into the page is the CSRF token
//! (hex). No response names the Redis URL or the dashboard token.
//!
//! About 570 lines of handlers, one short function per route, with their unit tests at the end:
//! the routes share the session, CSRF and JSON helpers of this file.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, LOCATION, REFERRER_POLICY,
    SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use wa_queue::{Admin, DeadFilter, DeadJob};

use super::auth::{Auth, COOKIE_NAME};
use super::history::History;

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
/// Where the CSRF token goes in `index.html`.
const CSRF_SLOT: &str = "{{csrf}}";
/// Where the login page says why it is shown again.
const MESSAGE_SLOT: &str = "{{message}}";
/// Largest page of dead jobs one request may ask for.
const MAX_PAGE: usize = 500;
/// Scripts, styles and requests only from the dashboard itself; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard: the queue it shows and the secrets it checks.
pub struct App {
    pub admin: Admin,
    pub auth: Auth,
    pub queue: String,
    pub history: Arc<History>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// Why a request is refused, mapped once to a status.
#[derive(Debug)]
enum Refusal {
    BadRequest(String),
    NotFound,
    Forbidden(&'static str),
    Unauthorized,
    Redis(wa_queue::QueueError),
}

impl Refusal {
    fn response(self) -> Response<Full<Bytes>> {
        match self {
            Refusal::BadRequest(why) => json(StatusCode::BAD_REQUEST, &Message { error: &why }),
            Refusal::NotFound => json(StatusCode::NOT_FOUND, &Message { error: "not found" }),
            Refusal::Forbidden(why) => json(StatusCode::FORBIDDEN, &Message { error: why }),
            Refusal::Unauthorized => json(
                StatusCode::UNAUTHORIZED,
                &Message {
                    error: "log in first",
                },
            ),
            Refusal::Redis(e) => {
                tracing::warn!(error = %e, "dashboard: Redis call failed");
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &Message {
                        error: "Redis did not answer; try again",
                    },
                )
            }
        }
    }
}

#[derive(Serialize)]
struct Message<'a> {
    error: &'a str,
}

type Answer = Result<Response<Full<Bytes>>, Refusal>;

impl App {
    pub async fn route(&self, req: Request<Bytes>) -> Response<Full<Bytes>> {
        self.route_checked(req)
            .await
            .unwrap_or_else(Refusal::response)
    }

    async fn route_checked(&self, req: Request<Bytes>) -> Answer {
        if !self.auth.required() && !loopback_host(&req) {
            // Without a token only loopback may call; a Host naming anything else is a page
            // elsewhere that resolved its own name to 127.0.0.1 (DNS rebinding).
            return Err(Refusal::Forbidden(
                "the dashboard answers only to a loopback Host",
            ));
        }
        let path = req.uri().path().to_owned();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/assets/app.js") => Ok(asset("text/javascript", APP_JS)),
            (&Method::GET, "/assets/app.css") => Ok(asset("text/css", APP_CSS)),
            (&Method::GET, "/login") => Ok(self.login_page(StatusCode::OK, "")),
            (&Method::POST, "/login") => Ok(self.login(req.body())),
            _ if !self.auth.admits(req.headers()) => match path.starts_with("/api/") {
                true => Err(Refusal::Unauthorized),
                false => Ok(redirect("/login")),
            },
            (&Method::GET, "/") => Ok(self.index()),
            (&Method::GET, "/api/overview") => self.overview().await,
            (&Method::GET, "/api/dead") => self.dead(req.uri().query().unwrap_or("")).await,
            (&Method::GET, "/api/job") => self.job(req.uri().query().unwrap_or("")).await,
            (&Method::POST, "/api/replay" | "/api/purge") => {
                if !self.auth.csrf_ok(req.headers()) {
                    return Err(Refusal::Forbidden("missing or wrong CSRF token"));
                }
                self.act(&path, req.body()).await
            }
            _ => Err(Refusal::NotFound),
        }
    }

    fn index(&self) -> Response<Full<Bytes>> {
        html(
            StatusCode::OK,
            INDEX_HTML.replace(CSRF_SLOT, self.auth.csrf()),
        )
    }

    fn login_page(&self, status: StatusCode, message: &str) -> Response<Full<Bytes>> {
        if !self.auth.required() {
            return redirect("/");
        }
        // `message` is one of this file's constants, never request text.
        html(status, LOGIN_HTML.replace(MESSAGE_SLOT, message))
    }

    /// `POST /login` with the form field `token`: a session cookie and back to the page.
    fn login(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let given = form_pairs(body)
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
            .unwrap_or_default();
        if !self.auth.token_matches(&given) {
            return self.login_page(StatusCode::UNAUTHORIZED, "Wrong token.");
        }
        let mut r = redirect("/");
        let cookie = format!(
            "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict",
            self.auth.session()
        );
        if let Ok(v) = cookie.parse() {
            r.headers_mut().insert(SET_COOKIE, v);
        }
        r
    }

    async fn overview(&self) -> Answer {
        let s = self.admin.stats().await.map_err(Refusal::Redis)?;
        let consumers = s
            .processing
            .iter()
            .zip(&s.leases)
            .map(|((id, n), lease)| ConsumerDoc {
                id,
                in_hand: *n,
                lease_left_ms: *lease as i64 - s.server_time_ms as i64,
            })
            .collect();
        Ok(json(
            StatusCode::OK,
            &Overview {
                queue: &self.queue,
                pending: s.pending,
                delayed: s.delayed,
                in_hand: s.processing.iter().map(|(_, n)| n).sum(),
                dead: s.dead,
                live_consumers: s.live_consumers,
                oldest_pending_ms: s.oldest_pending_ms,
                consumers,
                chart_step_ms: super::history::STEP.as_millis() as u64,
                chart: self.history.points(),
            },
        ))
    }

    async fn dead(&self, query: &str) -> Answer {
        let q = DeadQuery::parse(query)?;
        let filter = q.filter.to_filter()?;
        let limit = q.limit.unwrap_or(50).min(MAX_PAGE);
        let page = self
            .admin
            .dead_page(&filter, q.offset.unwrap_or(0), limit)
            .await
            .map_err(Refusal::Redis)?;
        let jobs: Vec<Row<'_>> = page.jobs.iter().map(Row::of).collect();
        Ok(json(
            StatusCode::OK,
            &DeadDoc {
                total: page.total,
                jobs,
            },
        ))
    }

    async fn job(&self, query: &str) -> Answer {
        let key = form_pairs(query.as_bytes())
            .into_iter()
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v)
            .ok_or_else(|| Refusal::BadRequest("key is missing".into()))?;
        let filter = DeadFilter::default().ids([key.clone()]);
        let found = self
            .admin
            .dead_find(&filter)
            .await
            .map_err(Refusal::Redis)?;
        let d = found
            .iter()
            .find(|d| d.key == key)
            .ok_or(Refusal::NotFound)?;
        Ok(json(StatusCode::OK, &JobDoc::of(d)))
    }

    /// `POST /api/replay` or `/api/purge` with `{"keys": [...]}`, `{"filter": {...}}` or
    /// `{"all": true}`: how many were taken out.
    async fn act(&self, path: &str, body: &[u8]) -> Answer {
        let action: Action = serde_json::from_slice(body)
            .map_err(|e| Refusal::BadRequest(format!("the action does not read: {e}")))?;
        let filter = action.to_filter()?;
        let count = if path == "/api/replay" {
            self.admin.dead_replay(&filter).await
        } else {
            let n = self.admin.dead_purge(&filter).await;
            if let Ok(n) = n {
                self.history.add_purged(n as u64);
            }
            n
        }
        .map_err(Refusal::Redis)?;
        tracing::info!(action = path, count, "dashboard action");
        Ok(json(StatusCode::OK, &Count { count }))
    }
}

/// True when the Host header names a loopback address or `localhost` (any port).
fn loopback_host(req: &Request<Bytes>) -> bool {
    let Some(host) = req.headers().get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    // `[::1]:9100` or `name:9100`, the port optional.
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The filter as the page sends it (query string or JSON).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterDoc {
    kind: Option<String>,
    phone_number_id: Option<String>,
    error: Option<String>,
    /// humantime ("1h")
    older_than: Option<String>,
    newer_than: Option<String>,
}

impl FilterDoc {
    fn to_filter(&self) -> Result<DeadFilter, Refusal> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let mut f = DeadFilter::default();
        if let Some(v) = given(&self.kind) {
            f = f.kind(v);
        }
        if let Some(v) = given(&self.phone_number_id) {
            f = f.phone_number_id(v);
        }
        if let Some(v) = given(&self.error) {
            f = f.error_contains(v);
        }
        if let Some(v) = given(&self.older_than) {
            f = f.older_than(age("older_than", v)?);
        }
        if let Some(v) = given(&self.newer_than) {
            f = f.newer_than(age("newer_than", v)?);
        }
        Ok(f)
    }
}

fn age(name: &str, v: &str) -> Result<Duration, Refusal> {
    humantime::parse_duration(v)
        .map_err(|e| Refusal::BadRequest(format!("{name}: {e} (try 10m, 2h, 3d)")))
}

/// `GET /api/dead` parameters.
#[derive(Debug, Default)]
struct DeadQuery {
    filter: FilterDoc,
    offset: Option<u64>,
    limit: Option<usize>,
}

impl DeadQuery {
    fn parse(query: &str) -> Result<Self, Refusal> {
        let mut q = DeadQuery::default();
        for (k, v) in form_pairs(query.as_bytes()) {
            let number = |v: &str| {
                v.parse()
                    .map_err(|_| Refusal::BadRequest(format!("{k} is not a number")))
            };
            match k.as_str() {
                "kind" => q.filter.kind = Some(v),
                "phone_number_id" => q.filter.phone_number_id = Some(v),
                "error" => q.filter.error = Some(v),
                "older_than" => q.filter.older_than = Some(v),
                "newer_than" => q.filter.newer_than = Some(v),
                "offset" => q.offset = Some(number(&v)?),
                "limit" => q.limit = Some(number(&v)? as usize),
                _ => return Err(Refusal::BadRequest(format!("unknown parameter {k}"))),
            }
        }
        Ok(q)
    }
}

/// An action's body: exactly one of `keys`, `filter`, `all`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Action {
    #[serde(default)]
    keys: Vec<String>,
    filter: Option<FilterDoc>,
    #[serde(default)]
    all: bool,
}

impl Action {
    fn to_filter(&self) -> Result<DeadFilter, Refusal> {
        let chosen = [!self.keys.is_empty(), self.filter.is_some(), self.all];
        if chosen.iter().filter(|c| **c).count() != 1 {
            return Err(Refusal::BadRequest(
                "name exactly one of keys, filter, all".into(),
            ));
        }
        if !self.keys.is_empty() {
            return Ok(DeadFilter::default().ids(self.keys.iter().cloned()));
        }
        match &self.filter {
            Some(f) => {
                let filter = f.to_filter()?;
                if filter.is_empty() {
                    // "Everything" must be said as such, never reached by an empty form.
                    return Err(Refusal::BadRequest(
                        "the filter is empty: use all to mean every dead job".into(),
                    ));
                }
                Ok(filter)
            }
            None => Ok(DeadFilter::default()),
        }
    }
}

#[derive(Serialize)]
struct Count {
    count: usize,
}

#[derive(Serialize)]
struct Overview<'a> {
    queue: &'a str,
    pending: u64,
    delayed: u64,
    in_hand: u64,
    dead: u64,
    live_consumers: u64,
    oldest_pending_ms: Option<u64>,
    consumers: Vec<ConsumerDoc<'a>>,
    chart_step_ms: u64,
    chart: Vec<super::history::Point>,
}

#[derive(Serialize)]
struct ConsumerDoc<'a> {
    id: &'a str,
    in_hand: u64,
    /// negative once the lease has lapsed
    lease_left_ms: i64,
}

#[derive(Serialize)]
struct DeadDoc<'a> {
    total: u64,
    jobs: Vec<Row<'a>>,
}

/// A dead job as a row of the table.
#[derive(Serialize)]
struct Row<'a> {
    key: &'a str,
    id: Option<&'a str>,
    kind: Option<&'a str>,
    #[serde(rename = "type")]
    type_: Option<&'a str>,
    from: Option<&'a str>,
    phone_number_id: Option<&'a str>,
    text: Option<&'a str>,
    attempt: Option<u32>,
    error: Option<&'a str>,
    died_at: Option<u64>,
}

impl<'a> Row<'a> {
    fn of(d: &'a DeadJob) -> Self {
        let j = d.job().ok();
        Row {
            key: &d.key,
            id: j.map(|j| j.id()),
            kind: j.map(|j| j.kind_name()),
            type_: j.and_then(|j| j.type_()),
            from: j.and_then(|j| j.from()),
            phone_number_id: j.and_then(|j| j.phone_number_id()),
            text: j.and_then(|j| j.text()),
            attempt: j.map(|j| j.attempt),
            error: d.error.as_deref(),
            died_at: d.died_at,
        }
    }
}

/// A dead job in full: its fields, the payload as indented JSON, or the raw text when it does
/// not read as a job.
#[derive(Serialize)]
struct JobDoc<'a> {
    #[serde(flatten)]
    row: Row<'a>,
    fields: Vec<(&'static str, &'a str)>,
    received_at: Option<u64>,
    last_error: Option<&'a str>,
    payload: Option<String>,
    unreadable: Option<&'a str>,
}

impl<'a> JobDoc<'a> {
    fn of(d: &'a DeadJob) -> Self {
        let row = Row::of(d);
        let Ok(j) = d.job() else {
            return JobDoc {
                row,
                fields: Vec::new(),
                received_at: None,
                last_error: None,
                payload: None,
                unreadable: Some(d.raw()),
            };
        };
        let fields = [
            ("wamid", j.wamid()),
            ("from_user_id", j.from_user_id()),
            ("contact_name", j.contact_name()),
            ("display_phone_number", j.display_phone_number()),
            ("waba_id", j.waba_id()),
            ("timestamp", j.timestamp()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let payload = serde_json::from_str::<serde_json::Value>(j.payload().get())
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok());
        JobDoc {
            row,
            fields,
            received_at: j.received_at,
            last_error: j.last_error(),
            payload,
            unreadable: None,
        }
    }
}

/// `a=1&b=x+y` pairs, percent-decoded.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A response with the headers every answer carries.
fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    let set = |h: &mut hyper::HeaderMap, name, value: &str| {
        if let Ok(v) = value.parse() {
            h.insert(name, v);
        }
    };
    set(h, CONTENT_TYPE, content_type);
    set(h, CONTENT_SECURITY_POLICY, CSP);
    set(h, X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, X_FRAME_OPTIONS, "DENY");
    set(h, REFERRER_POLICY, "no-referrer");
    set(h, CACHE_CONTROL, "no-store");
    r
}

pub fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", text)
}

fn html(status: StatusCode, page: String) -> Response<Full<Bytes>> {
    respond(status, "text/html; charset=utf-8", page)
}

fn asset(content_type: &str, text: &'static str) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, content_type, text)
}

fn json(status: StatusCode, doc: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(doc).unwrap_or_else(|_| b"{}".to_vec());
    respond(status, "application/json", body)
}

fn redirect(to: &str) -> Response<Full<Bytes>> {
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(v) = to.parse() {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> bool {
        let req = Request::get("/")
            .header(HOST, h)
            .body(Bytes::new())
            .unwrap();
        loopback_host(&req)
    }

    /// Loopback names and addresses pass, with or without a port; other names do not.
    #[test]
    fn loopback_hosts() {
        for ok in [
            "127.0.0.1:9100",
            "localhost:9100",
            "localhost",
            "[::1]:9100",
            "[::1]",
            "127.0.0.2",
        ] {
            assert!(host(ok), "{ok}");
        }
        for bad in [
            "evil.example:9100",
            "10.0.0.1:9100",
            "localhost.evil.example",
            "[::2]:1",
        ] {
            assert!(!host(bad), "{bad}");
        }
    }

    /// Query strings decode `+` and percent escapes; unknown parameters are refused.
    #[test]
    fn queries() {
        let q = DeadQuery::parse("kind=message&error=time+out%21&offset=50&limit=10").unwrap();
        assert_eq!(q.filter.error.as_deref(), Some("time out!"));
        assert_eq!((q.offset, q.limit), (Some(50), Some(10)));
        assert!(DeadQuery::parse("sort=1").is_err());
        assert!(DeadQuery::parse("offset=x").is_err());
    }

    /// An action names exactly one selection, and an empty filter is not "everything".
    #[test]
    fn actions() {
        let parse = |s: &str| serde_json::from_str::<Action>(s).unwrap().to_filter();
        assert!(parse(r#"{"keys":["a"]}"#).is_ok());
        assert!(parse(r#"{"all":true}"#).unwrap().is_empty());
        assert!(parse(r#"{"filter":{"kind":"message"}}"#).is_ok());
        assert!(parse(r#"{"filter":{"kind":""}}"#).is_err());
        assert!(parse(r#"{}"#).is_err());
        assert!(parse(r#"{"keys":["a"],"all":true}"#).is_err());
        assert!(parse(r#"{"filter":{"older_than":"soon"}}"#).is_err());
    }
}
