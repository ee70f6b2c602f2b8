//! Helpers of the HTTPS tests: certificate authorities and certificates made by the test
//! (rcgen), their PEM files, and a TLS client (tokio-rustls + hyper's connection API) that
//! reports the certificate the server presented.

#![allow(dead_code)] // each test module uses a different part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::support::Answer;

/// A certificate authority that signs the test's certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its own certificate, PEM.
    pub pem: String,
}

/// A certificate with its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Leaf {
        let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        self.sign(params)
    }

    /// A client certificate whose subject CN is `cn` and that has no SAN.
    pub fn client(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A client certificate naming `name` only as a DNS SAN (its CN says something else).
    pub fn client_san(&self, name: &str) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "not-the-subject");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A client certificate with CN `cn` that expired in 2020.
    pub fn expired_client(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    /// The certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

/// Replaces `path` with `content` the way certificate tools do: a new file renamed over it,
/// so a reader never sees half of it.
pub fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The server's certificate and key files (and optionally a client CA bundle) in a temporary
/// directory.
pub struct ServerFiles {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

impl ServerFiles {
    pub fn write(leaf: &Leaf, client_ca: &str) -> ServerFiles {
        let dir = tempfile::tempdir().unwrap();
        let files = ServerFiles {
            cert: dir.path().join("fullchain.pem"),
            key: dir.path().join("privkey.pem"),
            client_ca: dir.path().join("client-ca.pem"),
            dir,
        };
        files.install(leaf);
        std::fs::write(&files.client_ca, client_ca).unwrap();
        files
    }

    /// Replaces the certificate and key with `leaf`'s.
    pub fn install(&self, leaf: &Leaf) {
        replace(&self.cert, &leaf.cert_pem);
        replace(&self.key, &leaf.key_pem);
    }
}

/// A client that trusts `ca`, offers `alpn`, and presents `cert` when given (TLS 1.2 or 1.3).
pub fn client_config(ca: &Ca, cert: Option<&Leaf>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    client_config_for(ca, cert, alpn, rustls::DEFAULT_VERSIONS)
}

/// [`client_config`] speaking only the protocol `versions`.
pub fn client_config_for(
    ca: &Ca,
    cert: Option<&Leaf>,
    alpn: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match cert {
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.der()], leaf.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// One HTTPS connection, HTTP/1.1 or HTTP/2 as ALPN agreed.
pub struct TlsConn {
    /// The certificate the server presented.
    pub served: CertificateDer<'static>,
    /// The ALPN protocol agreed.
    pub alpn: Vec<u8>,
    /// The TLS version agreed.
    pub version: Option<rustls::ProtocolVersion>,
    sender: Sender,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Connects to `addr` as `localhost` and completes the TLS and HTTP handshakes.
pub async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsConn, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let (_, session) = stream.get_ref();
    let served = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("no server certificate")?
        .clone()
        .into_owned();
    let alpn = session.alpn_protocol().unwrap_or_default().to_vec();
    let version = session.protocol_version();
    let io = TokioIo::new(stream);
    let sender = if alpn == b"h2" {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        Sender::H2(sender)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        Sender::H1(sender)
    };
    Ok(TlsConn {
        served,
        alpn,
        version,
        sender,
    })
}

impl TlsConn {
    /// Sends `req` on this connection and reads the whole answer (within 20 s).
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
        let answer = async {
            let response = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await?;
                    s.send_request(req).await?
                }
                Sender::H2(s) => {
                    s.ready().await?;
                    s.send_request(req).await?
                }
            };
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        Ok(tokio::time::timeout(Duration::from_secs(20), answer).await??)
    }
}

/// Connects and sends one request; any failure (handshake refused, connection closed) is an
/// error.
pub async fn request_once(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    req: Request<Full<Bytes>>,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    connect(addr, config).await?.send(req).await
}
