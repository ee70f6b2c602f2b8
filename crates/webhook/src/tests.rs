//! The handler driven without a socket. Only paths that never reach Redis are tested here (the
//! producer points at a closed port); the enqueueing ones are in the workspace's `tests/it`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request};
use http_body::{Body as HttpBody, Frame};
use http_body_util::{BodyExt, Full};

use super::*;
use crate::reply::Reply;

const SECRET: &str = "unit-secret";
const TOKEN: &str = "unit-token";

fn webhook(config: Config) -> Webhook {
    let mut options = ProducerOptions::default();
    options.timeout = Duration::from_millis(200);
    // Nothing listens on port 1: any Redis call would fail, so a 200 proves none was made.
    let producer = Producer::new(
        "redis://127.0.0.1:1",
        QueueName::new("unit").unwrap(),
        options,
    )
    .unwrap();
    Webhook::new(
        config,
        Verifier::from_list(SECRET).unwrap(),
        Challenge::new(TOKEN).unwrap(),
        producer,
    )
}

/// A body that arrives in the given frames, with no size announced (like chunked encoding).
struct Chunks(VecDeque<Bytes>);

impl HttpBody for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

fn post(path: &str, body: &'static [u8], signature: Option<String>) -> Request<Full<Bytes>> {
    let mut b = Request::post(path);
    if let Some(sig) = signature {
        b = b.header("x-hub-signature-256", sig);
    }
    b.body(Full::new(Bytes::from_static(body))).unwrap()
}

fn signed(body: &'static [u8]) -> Request<Full<Bytes>> {
    post(
        DEFAULT_PATH,
        body,
        Some(wa_signature::sign(SECRET.as_bytes(), body)),
    )
}

async fn body_of(r: Reply) -> Bytes {
    r.into_body().collect().await.unwrap().to_bytes()
}

/// GET echoes the challenge as text/plain; a missing parameter is 400, a wrong token 403.
#[tokio::test]
async fn handshake() {
    let w = webhook(Config::default());
    let q = format!(
        "{DEFAULT_PATH}?hub.mode=subscribe&hub.verify_token={TOKEN}&hub.challenge=1158201444"
    );
    let r = w
        .handle(Request::get(q).body(Full::<Bytes>::default()).unwrap())
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(body_of(r).await, "1158201444");

    let q = format!("{DEFAULT_PATH}?hub.mode=subscribe&hub.challenge=1");
    let r = w
        .handle(Request::get(q).body(Full::<Bytes>::default()).unwrap())
        .await;
    assert_eq!(r.status(), 400);
    assert!(body_of(r).await.is_empty());

    let q = format!("{DEFAULT_PATH}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1");
    let r = w
        .handle(Request::get(q).body(Full::<Bytes>::default()).unwrap())
        .await;
    assert_eq!(r.status(), 403);
    assert!(body_of(r).await.is_empty());
}

/// No signature is 401, a malformed or wrong one 403, each with its text and counted by reason.
#[tokio::test]
async fn signature_refusals() {
    let w = webhook(Config::default());
    let body: &[u8] = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    let r = w.handle(post(DEFAULT_PATH, body, None)).await;
    assert_eq!(r.status(), 401);
    assert_eq!(body_of(r).await, "Missing Signature");

    let r = w
        .handle(post(DEFAULT_PATH, body, Some("sha256=zz".into())))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(body_of(r).await, "Invalid Signature");

    let wrong = wa_signature::sign(b"other-secret", body);
    let r = w.handle(post(DEFAULT_PATH, body, Some(wrong))).await;
    assert_eq!(r.status(), 403);
    assert_eq!(body_of(r).await, "Invalid Signature");

    let text = w.metrics().render();
    assert!(text.contains("wa_webhook_signature_failures_total{reason=\"missing\"} 1\n"));
    assert!(text.contains("wa_webhook_signature_failures_total{reason=\"malformed\"} 1\n"));
    assert!(text.contains("wa_webhook_signature_failures_total{reason=\"mismatch\"} 1\n"));
}

/// A Content-Length one byte over the limit is 413 unread; exactly the limit is read.
#[tokio::test]
async fn content_length_limit() {
    let w = webhook(Config {
        max_body: 16,
        ..Config::default()
    });
    // The declared length is checked, whatever the body turns out to be.
    let req = Request::post(DEFAULT_PATH)
        .header(CONTENT_LENGTH, "17")
        .body(Chunks(VecDeque::new()))
        .unwrap();
    assert_eq!(w.handle(req).await.status(), 413);

    let over: &[u8] = b"[1,2,3,4,5,6,7,8]"; // 17 bytes
    assert_eq!(w.handle(signed(over)).await.status(), 413);
    let exact: &[u8] = b"[1,2,3,4,5,6,7] "; // 16 bytes: read, signed, not an object
    assert_eq!(w.handle(signed(exact)).await.status(), 400);
}

/// An unannounced body is 413 once past the limit; frames under it are joined exactly.
#[tokio::test]
async fn chunked_limit() {
    let w = webhook(Config {
        max_body: 64,
        ..Config::default()
    });
    let frames: VecDeque<Bytes> = std::iter::repeat_n(Bytes::from_static(&[b' '; 30]), 3).collect();
    let req = Request::post(DEFAULT_PATH)
        .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
        .body(Chunks(frames))
        .unwrap();
    assert_eq!(w.handle(req).await.status(), 413);

    let body = br#"{"object":"page","entry":[]}"#;
    let sig = wa_signature::sign(SECRET.as_bytes(), body);
    let frames: VecDeque<Bytes> = body.chunks(5).map(Bytes::copy_from_slice).collect();
    let req = Request::post(DEFAULT_PATH)
        .header("x-hub-signature-256", sig)
        .body(Chunks(frames))
        .unwrap();
    assert_eq!(w.handle(req).await.status(), 200);
    assert_eq!(w.metrics().requests("ignored"), 1);
}

/// A signed body that is not a JSON object is 400.
#[tokio::test]
async fn not_an_object() {
    let w = webhook(Config::default());
    for body in [&b"[]"[..], b"not json", b"", b"\"x\""] {
        let sig = wa_signature::sign(SECRET.as_bytes(), body);
        let req = Request::post(DEFAULT_PATH)
            .header("x-hub-signature-256", sig)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        assert_eq!(w.handle(req).await.status(), 400, "{body:?}");
    }
}

/// Another object, no notification or only filtered kinds: 200 without a Redis call.
#[tokio::test]
async fn nothing_to_enqueue_needs_no_redis() {
    let accept = "change".parse().unwrap();
    let w = webhook(Config {
        accept,
        ..Config::default()
    });
    let r = w
        .handle(signed(br#"{"object":"instagram","entry":[{"id":"1"}]}"#))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(w.metrics().requests("ignored"), 1);
    assert!(
        w.metrics()
            .render()
            .contains("wa_webhook_ignored_objects_total 1\n")
    );

    let r = w
        .handle(signed(
            br#"{"object":"whatsapp_business_account","entry":[]}"#,
        ))
        .await;
    assert_eq!(r.status(), 200);

    let only_messages: &[u8] = br#"{"object":"whatsapp_business_account","entry":[{"id":"W","changes":[{"field":"messages","value":{"messages":[{"id":"wamid.A","from":"1","type":"text","text":{"body":"hi"}}]}}]}]}"#;
    let r = w.handle(signed(only_messages)).await;
    assert_eq!(r.status(), 200);
    assert!(
        w.metrics()
            .render()
            .contains("wa_webhook_notifications_total{kind=\"message\",result=\"filtered\"} 1\n")
    );
}

/// With Redis unreachable, a POST with a job is 503 and `/readyz` is 503.
#[tokio::test]
async fn redis_down_is_503() {
    let w = webhook(Config::default());
    let body: &[u8] = br#"{"object":"whatsapp_business_account","entry":[{"id":"W","changes":[{"field":"messages","value":{"messages":[{"id":"wamid.A","from":"1","type":"text","text":{"body":"hi"}}]}}]}]}"#;
    assert_eq!(w.handle(signed(body)).await.status(), 503);
    let r = w
        .handle(
            Request::get("/readyz")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), 503);
    assert!(
        w.metrics()
            .render()
            .contains("wa_webhook_redis_errors_total 1\n")
    );
}

/// Other methods on the path are 405 with `Allow: GET, POST`; other paths 404; probes answer.
#[tokio::test]
async fn routing() {
    let w = webhook(Config::default());
    for m in [Method::PUT, Method::DELETE, Method::HEAD, Method::PATCH] {
        let r = w
            .handle(
                Request::builder()
                    .method(m)
                    .uri(DEFAULT_PATH)
                    .body(Full::<Bytes>::default())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[ALLOW], "GET, POST");
    }
    for path in ["/", "/api/whatsapp/webhook/", "/api/whatsapp", "/webhook"] {
        let r = w
            .handle(Request::get(path).body(Full::<Bytes>::default()).unwrap())
            .await;
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = w
        .handle(
            Request::get("/healthz")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = w
        .handle(
            Request::get("/metrics")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = body_of(r).await;
    assert!(
        std::str::from_utf8(&text)
            .unwrap()
            .contains("wa_webhook_requests_total{outcome=\"not_found\"} 4\n")
    );
    let r = w
        .handle(
            Request::post("/healthz")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()[ALLOW], "GET");
}

/// A configured path replaces the default one.
#[tokio::test]
async fn custom_path() {
    let w = webhook(Config {
        path: "/hooks/wa".into(),
        ..Config::default()
    });
    let r = w
        .handle(
            Request::get(DEFAULT_PATH)
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = w.handle(post("/hooks/wa", b"{}", None)).await;
    assert_eq!(r.status(), 401);
}

/// `endpoint()` is the webhook on whatever path it is mounted at (and nothing else: no
/// probes); `probes()` is the probes only, with the webhook path 404.
#[tokio::test]
async fn endpoint_and_probes_are_apart() {
    let w = webhook(Config::default());
    let get = |path: &str| Request::get(path).body(Full::<Bytes>::default()).unwrap();
    let endpoint = w.endpoint();
    let empty: &[u8] = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    let sig = wa_signature::sign(SECRET.as_bytes(), empty);
    let r = endpoint
        .handle(post("/hooks/mounted", empty, Some(sig)))
        .await;
    assert_eq!(r.status(), 200);
    let r = endpoint.handle(post("/anything", b"{}", None)).await;
    assert_eq!(r.status(), 401);
    // A GET here is Meta's handshake, whatever the path: no probe answers.
    let r = endpoint.handle(get("/healthz")).await;
    assert_eq!(r.status(), 400);

    let probes = w.probes();
    assert_eq!(probes.handle(get("/healthz")).await.status(), 200);
    assert_eq!(probes.handle(get("/metrics")).await.status(), 200);
    assert_eq!(probes.handle(get(DEFAULT_PATH)).await.status(), 404);
    let r = probes.handle(post(DEFAULT_PATH, b"{}", None)).await;
    assert_eq!(r.status(), 404);
}

/// The webhook is a tower Service that never fails, usable where axum wants one.
#[tokio::test]
async fn tower_service() {
    use tower_service::Service;
    let mut w = webhook(Config::default());
    std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(&mut w, cx))
        .await
        .unwrap();
    let r = w
        .call(
            Request::get("/healthz")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    fn is_axum_service<T>(_: &T)
    where
        T: tower_service::Service<Request<axum::body::Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        T::Future: Send + 'static,
    {
    }
    is_axum_service(&w);
}

/// Debug shows the config but none of the secrets.
#[test]
fn debug_is_redacted() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let w = webhook(Config::default());
    let d = format!("{w:?}");
    assert!(d.contains("/api/whatsapp/webhook"));
    assert!(!d.contains(SECRET) && !d.contains(TOKEN));
}

/// Past the `max_buffered` budget of unverified bodies the answer is 503; each request gives
/// its share of both budgets (unverified while read, verified after) back.
#[tokio::test]
async fn buffered_budgets_are_enforced_and_released() {
    let w = webhook(Config {
        max_buffered: 4096,
        ..Config::default()
    });
    // 5 KiB in one body is over the 4 KiB budget: 503, not 413 (the body limit is 4 MiB).
    let big: &'static [u8] = &[b' '; 5 * 1024];
    let forged = Some(format!("sha256={}", "0".repeat(64)));
    assert_eq!(
        w.handle(post(DEFAULT_PATH, big, forged)).await.status(),
        503
    );
    assert_eq!(w.metrics().requests("overloaded"), 1);
    // A signed 3 KiB body fits, again and again (400: spaces are no JSON object), each
    // request giving its share back.
    for _ in 0..3 {
        let fits: &'static [u8] = &[b' '; 3 * 1024];
        assert_eq!(w.handle(signed(fits)).await.status(), 400);
    }
    assert_eq!(w.inner.unverified.available_permits(), 4);
    assert_eq!(w.inner.verified.available_permits(), 4);
}

/// A body that never delivers a byte: a handler that reads it never answers.
struct Never;

impl HttpBody for Never {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

/// A missing (401), malformed (403) or repeated (400) signature header is answered without
/// reading the body, with `Connection: close`.
#[tokio::test]
async fn signature_header_problems_are_answered_before_the_body() {
    let w = webhook(Config::default());
    let good = wa_signature::sign(SECRET.as_bytes(), b"{}");
    let cases: [(&[&str], u16, &str); 3] = [
        (&[], 401, "missing_signature"),
        (&["sha256=zz"], 403, "invalid_signature"),
        (&[good.as_str(), good.as_str()], 400, "bad_request"),
    ];
    for (headers, status, outcome) in cases {
        let mut req = Request::post(DEFAULT_PATH);
        for h in headers {
            req = req.header("x-hub-signature-256", *h);
        }
        let answer =
            tokio::time::timeout(Duration::from_secs(5), w.handle(req.body(Never).unwrap()))
                .await
                .unwrap_or_else(|_| panic!("{headers:?}: the handler waited for the body"));
        assert_eq!(answer.status(), status, "{headers:?}");
        assert_eq!(answer.headers()["connection"], "close", "{headers:?}");
        assert_eq!(w.metrics().requests(outcome), 1, "{headers:?}");
    }
    assert!(w.metrics().render().contains("reason=\"duplicate\"} 1"));
}
