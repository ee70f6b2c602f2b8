//! HTTPS in the ingress (issue 20): TLS with certificates made by the test, mutual TLS with
//! Meta's subject, and certificate reload on SIGHUP and on file change, over real sockets.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use wa_webhook::{ClientAuth, META_CLIENT_SUBJECT, Tls, TlsOptions};

use crate::pki::{
    Ca, Leaf, ServerFiles, client_config, client_config_for, connect, replace, request_once,
};
use crate::support::{
    Ingress, Process, QueueKeys, Settings, base_env, raw_exchange, read_until_closed, signed_post,
    text_body, unique,
};
use tokio::net::TcpStream;

const H1: &[u8] = b"http/1.1";
const H2: &[u8] = b"h2";

/// Polls `check` every 20 ms until it is true; fails after 20 s with `what`.
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens new connections to `addr` until one is served `leaf`'s certificate.
async fn until_served(addr: SocketAddr, config: &Arc<rustls::ClientConfig>, leaf: &Leaf) {
    let want = leaf.der();
    eventually("a new connection is served the new certificate", || {
        let (config, want) = (Arc::clone(config), want.clone());
        async move { connect(addr, config).await.unwrap().served == want }
    })
    .await;
}

/// An in-process ingress serving `files` over HTTPS, with mTLS when `client_auth` is given.
async fn ingress(what: &str, files: &ServerFiles, client_auth: Option<ClientAuth>) -> Ingress {
    ingress_with(what, files, client_auth, |_| {}).await
}

/// [`ingress`] with `tweak` applied to the default settings.
async fn ingress_with(
    what: &str,
    files: &ServerFiles,
    client_auth: Option<ClientAuth>,
    tweak: impl FnOnce(&mut Settings),
) -> Ingress {
    let mut options = TlsOptions::new(&files.cert, &files.key);
    options.client_auth = client_auth;
    options.poll_interval = Duration::from_millis(50);
    Ingress::start_tls(what, Tls::load(options).expect("TLS files load"), tweak).await
}

/// A signed webhook over HTTPS is answered 200 and its job is in Redis, over HTTP/1.1 and
/// over HTTP/2 as ALPN chose, with TLS 1.3 and with TLS 1.2.
#[tokio::test]
async fn signed_webhook_over_https_is_enqueued() {
    let ca = Ca::new("server CA");
    let files = ServerFiles::write(&ca.server(), "");
    let ingress = ingress("https", &files, None).await;
    let (v12, v13) = (&rustls::version::TLS12, &rustls::version::TLS13);
    let cases = [
        (H1, v13, "wamid.HTTPS.H1"),
        (H2, v13, "wamid.HTTPS.H2"),
        (H1, v12, "wamid.HTTPS.TLS12"),
    ];
    for (alpn, version, wamid) in cases {
        let config = client_config_for(&ca, None, alpn, &[version]);
        let mut conn = connect(ingress.addr, config).await.expect("TLS handshake");
        assert_eq!(conn.alpn, alpn);
        assert_eq!(conn.version, Some(version.version));
        let answer = conn
            .send(signed_post(&ingress.base, text_body(wamid, "over TLS")))
            .await
            .expect("answer");
        assert_eq!(answer.status, StatusCode::OK);
    }
    let jobs = ingress.queue.pending().await;
    let wamids: Vec<_> = jobs.iter().filter_map(|j| j.wamid.as_deref()).collect();
    assert_eq!(
        wamids,
        ["wamid.HTTPS.H1", "wamid.HTTPS.H2", "wamid.HTTPS.TLS12"]
    );
}

/// A client that never starts its handshake is closed after the header timeout, and plain HTTP
/// on the HTTPS port is closed at once; each is counted by reason, and the listener goes on
/// serving HTTPS.
#[tokio::test]
async fn failed_handshakes_are_bounded_and_counted() {
    let ca = Ca::new("server CA");
    let files = ServerFiles::write(&ca.server(), "");
    let ingress = ingress_with("handshakes", &files, None, |s| {
        s.serve.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let metrics = ingress.webhook.metrics();

    let mut silent = TcpStream::connect(ingress.addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(20)).await;
    assert!(closed, "a silent client is closed");
    assert_eq!(metrics.tls_handshake_failures("timeout"), 1);

    let plain = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n";
    let answer = raw_exchange(ingress.addr, plain, Duration::from_secs(20)).await;
    assert!(!answer.contains("200"), "{answer}");
    eventually("the plain HTTP request counted", || async {
        metrics.tls_handshake_failures("error") == 1
    })
    .await;

    let get = crate::support::get(&ingress.base, "/healthz");
    let answer = request_once(ingress.addr, client_config(&ca, None, H1), get).await;
    assert_eq!(answer.unwrap().status, StatusCode::OK);
}

/// With mTLS on (TLS 1.2 and 1.3), no client certificate, one from another CA, an expired one
/// and one naming another subject are each refused at the handshake and counted by reason, and
/// nothing is enqueued; Meta's subject as CN, or as a DNS SAN, gets 200 and its job.
#[tokio::test]
async fn mtls_admits_only_the_configured_client() {
    let server_ca = Ca::new("server CA");
    let meta_ca = Ca::new("Meta client CA");
    let other_ca = Ca::new("another CA");
    let files = ServerFiles::write(&server_ca.server(), &meta_ca.pem);
    let auth = ClientAuth::meta(&files.client_ca);
    let ingress = ingress("mtls", &files, Some(auth)).await;
    let metrics = ingress.webhook.metrics();
    let (v12, v13) = (&rustls::version::TLS12, &rustls::version::TLS13);

    let refused: [(Option<Leaf>, &str); 4] = [
        (None, "no_certificate"),
        (Some(other_ca.client(META_CLIENT_SUBJECT)), "untrusted"),
        (Some(meta_ca.expired_client(META_CLIENT_SUBJECT)), "expired"),
        (Some(meta_ca.client("client.example.com")), "wrong_subject"),
    ];
    for (cert, reason) in &refused {
        for (alpn, version) in [(H1, v13), (H2, v12)] {
            let config = client_config_for(&server_ca, cert.as_ref(), alpn, &[version]);
            let post = signed_post(&ingress.base, text_body("wamid.REFUSED", reason));
            let result = request_once(ingress.addr, config, post).await;
            assert!(result.is_err(), "{reason}: answered {result:?}");
        }
        eventually(&format!("two {reason} refusals counted"), || async {
            metrics.client_cert_refusals(reason) == 2
        })
        .await;
    }
    assert!(ingress.queue.pending_raw().await.is_empty());
    assert_eq!(metrics.requests("accepted"), 0, "no request was read");

    let admitted = [
        (meta_ca.client(META_CLIENT_SUBJECT), v12, "wamid.MTLS.CN"),
        (
            meta_ca.client_san(META_CLIENT_SUBJECT),
            v13,
            "wamid.MTLS.SAN",
        ),
    ];
    for (cert, version, wamid) in &admitted {
        let config = client_config_for(&server_ca, Some(cert), H2, &[version]);
        let post = signed_post(&ingress.base, text_body(wamid, "from Meta"));
        let answer = request_once(ingress.addr, config, post)
            .await
            .expect("answer");
        assert_eq!(answer.status, StatusCode::OK, "{wamid}");
    }
    let jobs = ingress.queue.pending().await;
    let wamids: Vec<_> = jobs.iter().filter_map(|j| j.wamid.as_deref()).collect();
    assert_eq!(wamids, ["wamid.MTLS.CN", "wamid.MTLS.SAN"]);
    for (_, reason) in &refused {
        assert_eq!(metrics.client_cert_refusals(reason), 2, "{reason}");
    }
}

/// A CA rotation without a restart: a client of the new CA is refused until the new CA is
/// added to the bundle file beside the old one; then clients of both are admitted; once the old
/// CA is removed its clients are refused again.
#[tokio::test]
async fn client_ca_bundle_rotates_without_a_restart() {
    let server_ca = Ca::new("server CA");
    let (old_ca, new_ca) = (Ca::new("Meta CA 2025"), Ca::new("Meta CA 2026"));
    let (old_client, new_client) = (
        old_ca.client(META_CLIENT_SUBJECT),
        new_ca.client(META_CLIENT_SUBJECT),
    );
    let files = ServerFiles::write(&server_ca.server(), &old_ca.pem);
    let ingress = ingress(
        "ca-rotation",
        &files,
        Some(ClientAuth::meta(&files.client_ca)),
    )
    .await;
    let admitted = |client: &Leaf, wamid: &str| {
        let config = client_config(&server_ca, Some(client), H1);
        let post = signed_post(&ingress.base, text_body(wamid, "rotation"));
        async move { request_once(ingress.addr, config, post).await.is_ok() }
    };

    assert!(admitted(&old_client, "wamid.ROT.1").await);
    assert!(!admitted(&new_client, "wamid.ROT.REFUSED.1").await);
    replace(&files.client_ca, &format!("{}{}", old_ca.pem, new_ca.pem));
    eventually("the new CA's client is admitted", || {
        admitted(&new_client, "wamid.ROT.2")
    })
    .await;
    assert!(admitted(&old_client, "wamid.ROT.3").await);
    replace(&files.client_ca, &new_ca.pem);
    eventually("the old CA's client is refused", || async {
        // Admitted (and enqueued) while the poll has not yet seen the new bundle.
        !admitted(&old_client, "wamid.ROT.UNTIL.RELOAD").await
    })
    .await;
    assert!(admitted(&new_client, "wamid.ROT.4").await);

    let jobs = ingress.queue.pending().await;
    let mut wamids: Vec<_> = jobs.iter().filter_map(|j| j.wamid.as_deref()).collect();
    wamids.retain(|w| *w != "wamid.ROT.UNTIL.RELOAD");
    wamids.sort_unstable();
    assert_eq!(
        wamids,
        ["wamid.ROT.1", "wamid.ROT.2", "wamid.ROT.3", "wamid.ROT.4"]
    );
    let untrusted = ingress.webhook.metrics().client_cert_refusals("untrusted");
    assert!(untrusted >= 2, "{untrusted} untrusted refusals");
}

/// Certificate files replaced on disk (no signal) are picked up by the poll: new connections
/// are served the new certificate, and a connection opened before goes on with the old one
/// and finishes its requests.
#[tokio::test]
async fn replaced_files_reach_new_connections() {
    let ca = Ca::new("server CA");
    let (old, new) = (ca.server(), ca.server());
    let files = ServerFiles::write(&old, "");
    let ingress = ingress("replaced", &files, None).await;
    let config = client_config(&ca, None, H1);

    let mut before = connect(ingress.addr, config.clone()).await.unwrap();
    assert_eq!(before.served, old.der());
    files.install(&new);
    until_served(ingress.addr, &config, &new).await;

    let post = signed_post(&ingress.base, text_body("wamid.OLD.CONN", "still here"));
    assert_eq!(before.send(post).await.unwrap().status, StatusCode::OK);
    assert_eq!(before.served, old.der());
    assert_eq!(ingress.queue.pending().await.len(), 1);
}

/// The real wa-ingress serving HTTPS from `files` on the shared Redis, queue `queue`.
async fn spawn_ingress(files: &ServerFiles, queue: &str) -> (Process, SocketAddr) {
    let url = crate::support::redis_url();
    let mut env = base_env(&url, queue);
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    env.extend([("WA_TLS_CERT", cert), ("WA_TLS_KEY", key)]);
    let mut process = Process::spawn(&env);
    let addr = process.wait_listening(Duration::from_secs(20)).await;
    (process, addr)
}

/// wa-ingress: certificate files replaced, then SIGHUP: the reload is logged, new connections
/// are served the new certificate, and a connection opened before still finishes its request.
#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let ca = Ca::new("server CA");
    let (old, new) = (ca.server(), ca.server());
    let files = ServerFiles::write(&old, "");
    let queue = QueueKeys {
        name: unique("sighup"),
        url: crate::support::redis_url(),
    };
    let (process, addr) = spawn_ingress(&files, &queue.name).await;
    let config = client_config(&ca, None, H1);
    let base = format!("https://localhost:{}", addr.port());

    let mut before = connect(addr, config.clone()).await.unwrap();
    assert_eq!(before.served, old.der());
    files.install(&new);
    process.signal("HUP");
    until_served(addr, &config, &new).await;
    eventually("the reload on SIGHUP is logged", || async {
        let out = process.output();
        out.lines()
            .any(|l| l.contains("TLS files reloaded") && l.contains("SIGHUP"))
    })
    .await;

    let post = signed_post(&base, text_body("wamid.SIGHUP.OLD", "old connection"));
    assert_eq!(before.send(post).await.unwrap().status, StatusCode::OK);
    let post = signed_post(&base, text_body("wamid.SIGHUP.NEW", "new connection"));
    let answer = request_once(addr, config, post).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(queue.pending().await.len(), 2);
    queue.delete_all();
}

/// wa-ingress: a broken certificate file and SIGHUP: the refusal is logged, and new
/// connections are still served the old certificate and answered.
#[tokio::test]
async fn a_broken_new_file_keeps_the_old_certificate() {
    let ca = Ca::new("server CA");
    let old = ca.server();
    let files = ServerFiles::write(&old, "");
    let queue = QueueKeys {
        name: unique("broken-cert"),
        url: crate::support::redis_url(),
    };
    let (process, addr) = spawn_ingress(&files, &queue.name).await;

    replace(&files.cert, "-----BEGIN CERTIFICATE-----\nbroken\n");
    process.signal("HUP");
    eventually("the refusal is logged", || async {
        process.output().contains("new TLS files refused")
    })
    .await;
    let out = process.output();
    let line = out.lines().find(|l| l.contains("new TLS files refused"));
    assert!(
        line.is_some_and(|l| l.contains("certificate file")),
        "{out}"
    );

    let config = client_config(&ca, None, H2);
    let mut conn = connect(addr, config).await.unwrap();
    assert_eq!(conn.served, old.der());
    let base = format!("https://localhost:{}", addr.port());
    let post = signed_post(&base, text_body("wamid.BROKEN.FILE", "old cert"));
    assert_eq!(conn.send(post).await.unwrap().status, StatusCode::OK);
    assert_eq!(queue.pending().await.len(), 1);
    queue.delete_all();
}

/// wa-ingress start-up: a TLS file that cannot be used, a certificate without its key, and
/// a client CA without a certificate are usage errors (exit 64) naming the variable to fix.
#[tokio::test]
async fn tls_configuration_errors_name_the_variable() {
    let ca = Ca::new("server CA");
    let files = ServerFiles::write(&ca.server(), "not a CA bundle\n");
    let url = crate::support::redis_url();
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    let client_ca = files.client_ca.to_str().unwrap();
    let missing = files.dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("WA_TLS_CERT", missing), ("WA_TLS_KEY", key)],
            "WA_TLS_CERT",
        ),
        (&[("WA_TLS_CERT", cert), ("WA_TLS_KEY", cert)], "WA_TLS_KEY"),
        (&[("WA_TLS_CERT", cert)], "WA_TLS_KEY"),
        (
            &[
                ("WA_TLS_CERT", cert),
                ("WA_TLS_KEY", key),
                ("WA_MTLS_CA", client_ca),
            ],
            "WA_MTLS_CA",
        ),
    ];
    for (extra, variable) in cases {
        let mut env = base_env(&url, "unused-tls");
        env.extend_from_slice(extra);
        let mut process = Process::spawn(&env);
        let code = process.wait_exit(Duration::from_secs(20)).await;
        let out = process.output();
        assert_eq!(code, Some(64), "{variable}: {out}");
        assert!(out.contains(variable), "{variable}: {out}");
    }
}

/// wa-ingress with mutual TLS and no admin listener warns at start-up that the probes need
/// the client certificate too; with `WA_ADMIN_LISTEN` it does not.
#[tokio::test]
async fn mtls_without_an_admin_listener_is_pointed_out() {
    let server_ca = Ca::new("server CA");
    let meta_ca = Ca::new("Meta client CA");
    let files = ServerFiles::write(&server_ca.server(), &meta_ca.pem);
    let url = crate::support::redis_url();
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    let client_ca = files.client_ca.to_str().unwrap();
    for admin in [None, Some("127.0.0.1:0")] {
        let mut env = base_env(&url, "unused-mtls");
        env.extend([
            ("WA_TLS_CERT", cert),
            ("WA_TLS_KEY", key),
            ("WA_MTLS_CA", client_ca),
        ]);
        env.extend(admin.map(|a| ("WA_ADMIN_LISTEN", a)));
        let mut process = Process::spawn(&env);
        process.wait_listening(Duration::from_secs(20)).await;
        let out = process.output();
        assert!(out.contains("https+mtls"), "{out}");
        let warned = out.contains("WA_ADMIN_LISTEN (--admin-listen) is not set");
        assert_eq!(warned, admin.is_none(), "{out}");
    }
}
