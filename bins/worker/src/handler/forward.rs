//! `--forward URL`: POST each job's JSON to an HTTP or HTTPS endpoint.
//!
//! Request: `POST URL`, `content-type: application/json`, the job JSON as the body, plus
//! `x-wa-job-id` and `x-wa-attempt` (delivery number, 1 for the first). With
//! `--forward-secret`, the Standard Webhooks headers (see [`signing`](super::signing)):
//! `webhook-id` (the job id, the same on every delivery, so a receiver can deduplicate),
//! `webhook-timestamp` (Unix seconds when this request was sent) and `webhook-signature`.
//!
//! `https://` URLs are verified against the platform's roots plus `--forward-ca-cert` (see
//! [`tls`](super::tls)).
//!
//! Answer: 2xx is done; 408, 429 and 5xx are retried, as are connection failures (a refused
//! certificate included) and requests that outlast the handler timeout; any other 4xx means
//! the receiver refuses this job for good: dead. A 429 or 503 with `Retry-After` (seconds or
//! an HTTP date) is retried after that delay rather than the backoff, at most `--backoff-max`.
//! Other statuses (1xx, 3xx: redirects are not followed) are retried, so a misconfigured URL
//! ends in dead after the attempts rather than dropping jobs.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wa_queue::{Job, Outcome};

use super::signing::Signer;
use super::tls::{Connector, client_config};

/// Response bodies are read (so the connection can be reused) up to this size.
const MAX_RESPONSE: usize = 64 * 1024;

pub struct ForwardHandler {
    client: Client<Connector, Full<Bytes>>,
    uri: Uri,
    signer: Option<Signer>,
    timeout: Duration,
}

impl fmt::Debug for ForwardHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry credentials and the keys are secrets: neither is shown.
        f.debug_struct("ForwardHandler")
            .field("signed", &self.signer.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What is wrong with the forward settings, and which flag to fix.
#[derive(Debug)]
pub enum ForwardError {
    /// the URL
    Url(String),
    /// `--forward-secret`
    Secret(String),
    /// `--forward-ca-cert` or the platform's roots
    Tls(String),
}

impl ForwardHandler {
    /// Checks the URL (absolute `http` or `https` with a host), the secrets and, for `https`,
    /// loads the trusted roots.
    pub fn new(
        url: &str,
        secrets: Option<&str>,
        ca_cert: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, ForwardError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ForwardError::Url(format!("not a URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(ForwardError::Url(
                    "must be an absolute http:// or https:// URL".into(),
                ));
            }
        };
        if uri.host().is_none() {
            return Err(ForwardError::Url("has no host".into()));
        }
        let signer = secrets
            .map(Signer::new)
            .transpose()
            .map_err(ForwardError::Secret)?;
        let tls = if https {
            Some(client_config(ca_cert).map_err(ForwardError::Tls)?)
        } else {
            if ca_cert.is_some() {
                tracing::warn!("--forward-ca-cert is set but the URL is not https");
            }
            None
        };
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new()).build(Connector::new(http, tls));
        Ok(Self {
            client,
            uri,
            signer,
            timeout,
        })
    }

    pub async fn handle(&self, job: &Job, delivery: u32) -> Outcome {
        let body = Bytes::copy_from_slice(job.json().as_bytes());
        let Ok(id) = HeaderValue::from_str(job.id()) else {
            return Outcome::Dead("the job id cannot be sent as an HTTP header".into());
        };
        let mut req = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("x-wa-attempt", delivery)
            .header("x-wa-job-id", id.clone());
        if let Some(signer) = &self.signer {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            req = req
                .header("webhook-id", id)
                .header("webhook-timestamp", now)
                .header("webhook-signature", signer.sign(job.id(), now, &body));
        }
        let req = match req.body(Full::new(body)) {
            Ok(req) => req,
            Err(e) => return Outcome::Retry(format!("cannot build the request: {e}")),
        };
        let exchange = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let retry_after = retry_after(resp.headers(), SystemTime::now());
            // Read (a bounded amount of) the answer so the connection goes back to the pool.
            let _ = Limited::new(resp.into_body(), MAX_RESPONSE).collect().await;
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok((status, retry_after))) => classify(status, retry_after),
            Ok(Err(e)) => Outcome::Retry(format!("request failed: {}", error_chain(&e))),
            Err(_) => Outcome::Retry(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }
}

/// A `Retry-After` header's delay: delay-seconds, or an HTTP date (a date past is no delay).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn classify(status: StatusCode, retry_after: Option<Duration>) -> Outcome {
    let code = status.as_u16();
    if status.is_success() {
        Outcome::Done
    } else if let (429 | 503, Some(delay)) = (code, retry_after) {
        Outcome::RetryAfter(
            format!(
                "receiver answered {status}, retry after {}",
                humantime::format_duration(delay)
            ),
            delay,
        )
    } else if code == 408 || code == 429 || status.is_server_error() {
        Outcome::Retry(format!("receiver answered {status}"))
    } else if status.is_client_error() {
        Outcome::Dead(format!("receiver refused the job: {status}"))
    } else {
        Outcome::Retry(format!("unexpected answer {status}"))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statuses map to done, retry and dead as documented.
    #[test]
    fn statuses_map_to_outcomes() {
        let o = |c| classify(StatusCode::from_u16(c).unwrap(), None);
        assert_eq!(o(200), Outcome::Done);
        assert_eq!(o(204), Outcome::Done);
        for c in [408, 429, 500, 502, 503, 301] {
            assert!(matches!(o(c), Outcome::Retry(_)), "{c}");
        }
        for c in [400, 401, 404, 410, 422] {
            assert!(matches!(o(c), Outcome::Dead(_)), "{c}");
        }
    }

    /// `Retry-After` delays a retry after 429 and 503 only; seconds and HTTP dates both read.
    #[test]
    fn retry_after_on_429_and_503() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
        let d = Some(Duration::from_secs(7));
        let o = |c| classify(StatusCode::from_u16(c).unwrap(), d);
        assert!(matches!(o(429), Outcome::RetryAfter(_, x) if x == Duration::from_secs(7)));
        assert!(matches!(o(503), Outcome::RetryAfter(..)));
        assert!(matches!(o(500), Outcome::Retry(_)));
    }

    /// Only absolute http(s) URLs with a host are accepted, and secrets must be usable.
    #[test]
    fn rejects_unusable_settings() {
        let t = Duration::from_secs(1);
        let new = |url, secret| ForwardHandler::new(url, secret, None, t);
        assert!(matches!(new("ftp://x/y", None), Err(ForwardError::Url(_))));
        assert!(matches!(new("/relative", None), Err(ForwardError::Url(_))));
        assert!(matches!(
            new("http://127.0.0.1:1/x", Some("")),
            Err(ForwardError::Secret(_))
        ));
        let missing = Path::new("/nonexistent/ca.pem");
        assert!(matches!(
            ForwardHandler::new("https://x/y", None, Some(missing), t),
            Err(ForwardError::Tls(_))
        ));
    }
}
