//! The POST pipeline's answers: limits, signatures, bodies that are not what Meta sends, Redis
//! away, and the buffered-body budgets.

use super::*;

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
