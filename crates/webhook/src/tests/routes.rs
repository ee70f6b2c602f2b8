//! Routing by path and method, Meta's GET handshake, the endpoint and probe services, and the
//! webhook as a tower `Service`.

use super::*;

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
