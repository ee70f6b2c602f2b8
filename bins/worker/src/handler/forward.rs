//! `--forward URL`: POST each job's JSON to an HTTP endpoint.
//!
//! Request: `POST URL`, `content-type: application/json`, the job JSON as the body, plus
//! `x-wa-job-id` and `x-wa-attempt` (delivery number, 1 for the first). With
//! `--forward-secret`, also `x-wa-signature-256: sha256=<hex>`: the lowercase hex HMAC-SHA256,
//! keyed with the secret's UTF-8 bytes, of the body exactly as sent. A receiver recomputes it
//! over the raw body it read and compares in constant time (the same scheme as Meta's
//! `X-Hub-Signature-256`).
//!
//! Answer: 2xx is done; 408, 429 and 5xx are retried, as are connection failures and requests
//! that outlast the handler timeout; any other 4xx means the receiver refuses this job for good:
//! dead. Other statuses (1xx, 3xx: redirects are not followed) are retried, so a misconfigured
//! URL ends in dead after the attempts rather than dropping jobs.
//!
//! Plain `http://` only: put a TLS-terminating proxy in front for `https`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ring::hmac;
use wa_queue::{Job, Outcome};

/// Response bodies are read (so the connection can be reused) up to this size.
const MAX_RESPONSE: usize = 64 * 1024;

pub struct ForwardHandler {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    key: Option<hmac::Key>,
    timeout: Duration,
}

impl fmt::Debug for ForwardHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry credentials and the key is a secret: neither is shown.
        f.debug_struct("ForwardHandler")
            .field("signed", &self.key.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ForwardHandler {
    pub fn new(url: &str, secret: Option<&str>, timeout: Duration) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(
                    "https is not supported; forward to http:// (a TLS proxy can front it)".into(),
                );
            }
            _ => return Err("must be an absolute http:// URL".into()),
        }
        if uri.host().is_none() {
            return Err("has no host".into());
        }
        let key = match secret {
            Some("") => return Err("the forward secret is empty".into()),
            Some(s) => Some(hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes())),
            None => None,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            client,
            uri,
            key,
            timeout,
        })
    }

    pub async fn handle(&self, job: &Job, delivery: u32) -> Outcome {
        let body = Bytes::copy_from_slice(job.json().as_bytes());
        let mut req = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("x-wa-attempt", delivery);
        if let Ok(id) = HeaderValue::from_str(&job.id) {
            req = req.header("x-wa-job-id", id);
        }
        if let Some(key) = &self.key {
            req = req.header("x-wa-signature-256", signature(key, &body));
        }
        let req = match req.body(Full::new(body)) {
            Ok(req) => req,
            Err(e) => return Outcome::Retry(format!("cannot build the request: {e}")),
        };
        let exchange = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            // Read (a bounded amount of) the answer so the connection goes back to the pool.
            let _ = Limited::new(resp.into_body(), MAX_RESPONSE).collect().await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(status)) => classify(status),
            Ok(Err(e)) => Outcome::Retry(format!("request failed: {}", error_chain(&e))),
            Err(_) => Outcome::Retry(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }
}

/// `sha256=<lowercase hex HMAC-SHA256 of body>`.
pub fn signature(key: &hmac::Key, body: &[u8]) -> String {
    let tag = hmac::sign(key, body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.as_ref() {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

fn classify(status: StatusCode) -> Outcome {
    let code = status.as_u16();
    if status.is_success() {
        Outcome::Done
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

    /// The signature is the RFC 4231 test case 2 HMAC-SHA256, lowercase hex with its prefix.
    #[test]
    fn signature_matches_a_known_answer() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            signature(&key, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// Statuses map to done, retry and dead as documented.
    #[test]
    fn statuses_map_to_outcomes() {
        let o = |c| classify(StatusCode::from_u16(c).unwrap());
        assert_eq!(o(200), Outcome::Done);
        assert_eq!(o(204), Outcome::Done);
        for c in [408, 429, 500, 502, 503, 301] {
            assert!(matches!(o(c), Outcome::Retry(_)), "{c}");
        }
        for c in [400, 401, 404, 410, 422] {
            assert!(matches!(o(c), Outcome::Dead(_)), "{c}");
        }
    }

    /// Only absolute http URLs with a host and non-empty secrets are accepted.
    #[test]
    fn rejects_unusable_urls() {
        let t = Duration::from_secs(1);
        assert!(ForwardHandler::new("https://x/y", None, t).is_err());
        assert!(ForwardHandler::new("/relative", None, t).is_err());
        assert!(ForwardHandler::new("http://127.0.0.1:1/x", Some(""), t).is_err());
    }
}
