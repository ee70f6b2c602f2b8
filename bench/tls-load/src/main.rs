//! tls-load: a closed-loop load generator for signed WhatsApp webhooks over HTTP/1.1 keep-alive,
//! plain (`http://`) or TLS (`https://`, optionally presenting a client certificate), so that
//! HTTP, HTTPS and HTTPS with mutual TLS are measured by the same client.
//!
//! ```text
//! tls-load --url https://localhost:8443/api/whatsapp/webhook --secret S --addr 127.0.0.1:8443 \
//!          --ca ca.pem [--cert client.pem --key client-key.pem] [-c 64] [-d 10]
//! ```
//!
//! Every request carries a unique wamid and a correct `X-Hub-Signature-256`. Prints one JSON
//! line: requests, req/s, non-2xx, errors, p50/p99/p99.9 in microseconds (measured from just
//! before a request is handed to its connection until its answer has been read).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

struct Args {
    /// The URL's path (requests are sent in origin form, with `Host: localhost`).
    path: String,
    addr: SocketAddr,
    secret: String,
    conns: usize,
    duration: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("tls-load: {e}");
        std::process::exit(2);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(args));
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut addr = None;
    let mut secret = None;
    let (mut conns, mut secs) = (64usize, 10f64);
    let (mut ca, mut cert, mut key) = (None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--addr" => addr = Some(value()?.parse().map_err(|e| format!("--addr: {e}"))?),
            "--secret" => secret = Some(value()?),
            "-c" => conns = value()?.parse().map_err(|e| format!("-c: {e}"))?,
            "-d" => secs = value()?.parse().map_err(|e| format!("-d: {e}"))?,
            "--ca" => ca = Some(value()?),
            "--cert" => cert = Some(value()?),
            "--key" => key = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let url: String = url.ok_or("--url is required")?;
    let tls = match (url.starts_with("https://"), ca) {
        (false, _) => None,
        (true, None) => return Err("an https URL needs --ca".into()),
        (true, Some(ca)) => Some(client_config(&ca, cert.zip(key))?),
    };
    let path = url
        .splitn(4, '/')
        .nth(3)
        .map_or("/".to_owned(), |p| format!("/{p}"));
    Ok(Args {
        path,
        addr: addr.ok_or("--addr is required")?,
        secret: secret.ok_or("--secret is required")?,
        conns,
        duration: Duration::from_secs_f64(secs),
        tls,
    })
}

fn client_config(
    ca: &str,
    client: Option<(String, String)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("--ca: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("--ca: {e}"))?)
            .map_err(|e| format!("--ca: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(&cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--cert: {e}"))?;
            let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("--key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--cert/--key: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What every connection shares.
struct Shared {
    args: Args,
    next: AtomicU64,
    run_id: u64,
    key: ring::hmac::Key,
    non_2xx: AtomicU64,
    errors: AtomicU64,
}

async fn run(args: Args) {
    let shared = Arc::new(Shared {
        run_id: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        next: AtomicU64::new(0),
        key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, args.secret.as_bytes()),
        non_2xx: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        args,
    });
    let started = Instant::now();
    let deadline = started + shared.args.duration;
    let tasks: Vec<_> = (0..shared.args.conns)
        .map(|_| tokio::spawn(connection(Arc::clone(&shared), deadline)))
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        latencies.get(i).copied().unwrap_or(0)
    };
    println!(
        "{{\"requests\":{},\"rps\":{:.1},\"non_2xx\":{},\"errors\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"secs\":{:.3}}}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        shared.non_2xx.load(Relaxed),
        shared.errors.load(Relaxed),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        elapsed
    );
}

/// One keep-alive connection sending requests back to back until `deadline`; reconnects after
/// an error. Returns the latencies of the answered requests, in microseconds.
async fn connection(shared: Arc<Shared>, deadline: Instant) -> Vec<u32> {
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let Ok(mut sender) = open(&shared.args).await else {
            shared.errors.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while Instant::now() < deadline {
            let req = request(&shared);
            let sent = Instant::now();
            let answer = async {
                sender.ready().await?;
                let response = sender.send_request(req).await?;
                let ok = response.status().is_success();
                response.into_body().collect().await?;
                Ok::<_, hyper::Error>(ok)
            };
            match answer.await {
                Ok(ok) => {
                    latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    if !ok {
                        shared.non_2xx.fetch_add(1, Relaxed);
                    }
                }
                Err(_) => {
                    shared.errors.fetch_add(1, Relaxed);
                    break;
                }
            }
        }
    }
    latencies
}

async fn open(args: &Args) -> Result<SendRequest<Full<Bytes>>, Box<dyn std::error::Error>> {
    let tcp = TcpStream::connect(args.addr).await?;
    tcp.set_nodelay(true)?;
    match &args.tls {
        None => handshake(tcp).await,
        Some(config) => {
            let name = ServerName::try_from("localhost")?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await?;
            handshake(tls).await
        }
    }
}

async fn handshake<I>(io: I) -> Result<SendRequest<Full<Bytes>>, Box<dyn std::error::Error>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A signed ~800-byte text webhook with a wamid no other request of any run uses.
fn request(shared: &Shared) -> Request<Full<Bytes>> {
    let n = shared.next.fetch_add(1, Relaxed);
    let body = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"Bench User"}},"wa_id":"14155551234"}}],"messages":[{{"from":"14155551234","id":"wamid.TLSLOAD{:016x}{n:012x}","timestamp":"1795789924","text":{{"body":"{}"}},"type":"text"}}]}},"field":"messages"}}]}}]}}"#,
        shared.run_id,
        "Hello from the TLS benchmark. ".repeat(14)
    );
    let tag = ring::hmac::sign(&shared.key, body.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Request::post(&shared.args.path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("x-hub-signature-256", format!("sha256={hex}"))
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}
