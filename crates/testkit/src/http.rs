//! An HTTP client on hyper's, for talking to the ingress under test: pooled HTTP/1.1 and
//! HTTP/2 clients that read whole answers, and one HTTP/1.1 connection of its own
//! ([`Conn`]) for load tests that need to know which connection a request went on, with
//! bodies sent whole or in parts ([`streamed`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt as _};
use http::header::{CONNECTION, HOST};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body, Frame};
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long [`send`] waits for a whole answer before the test fails.
const ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// A pooled client (keep-alive) over plain HTTP.
pub type Client = Pooled<HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 client with keep-alive.
pub fn http1() -> Client {
    Pooled::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client with prior knowledge (no upgrade, as Meta's senders do not use it).
pub fn http2() -> Client {
    Pooled::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Status, headers and body of an answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// Reads the whole of `response`.
    async fn read(response: http::Response<hyper::body::Incoming>) -> Result<Answer, hyper::Error> {
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Sends `req` with `client` and reads the whole answer; panics when none comes within 20 s.
pub async fn send(client: &Client, req: Request<Full<Bytes>>) -> Answer {
    let answer = async {
        let response = client.request(req).await.expect("request failed");
        Answer::read(response)
            .await
            .expect("read the answer's body")
    };
    tokio::time::timeout(ANSWER_LIMIT, answer)
        .await
        .expect("answer within 20 s")
}

/// A request body the test sends in parts, through the [`BodySender`] that came with it
/// ([`streamed`]): for a request caught half-way.
pub type Streamed = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// Sends the parts of a [`Streamed`] body; dropping it ends the body.
pub type BodySender = mpsc::Sender<Bytes>;

/// A body whose bytes arrive as the test sends them.
pub fn streamed() -> (BodySender, Streamed) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let frames = stream::unfold(rx, |mut rx| async move {
        let part = rx.recv().await?;
        Some((Ok(Frame::data(part)), rx))
    });
    (tx, StreamBody::new(frames.boxed()))
}

/// One HTTP/1.1 keep-alive connection (hyper's client connection): requests go one after the
/// other on it until either side closes it. The body type is [`Full`] unless the connection
/// is for [`Streamed`] bodies.
#[derive(Debug)]
pub struct Conn<B = Full<Bytes>> {
    sender: SendRequest<B>,
    /// The server said `Connection: close` in an answer.
    closing: bool,
}

impl<B> Conn<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Connects to `addr` and completes hyper's handshake; the connection is driven by a task
    /// of its own until either side closes it.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Conn<B>> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn {
            sender,
            closing: false,
        })
    }

    /// Whether no further request can go on this connection: the server said
    /// `Connection: close`, closed it, or a request on it failed.
    pub fn is_closed(&self) -> bool {
        self.closing || self.sender.is_closed()
    }

    /// Sends `req` (its URI's path and query; a `host` header is added when missing) and reads
    /// the whole answer.
    pub async fn send(&mut self, mut req: Request<B>) -> Result<Answer, hyper::Error> {
        if !req.headers().contains_key(HOST) {
            req.headers_mut()
                .insert(HOST, HeaderValue::from_static("127.0.0.1"));
        }
        self.sender.ready().await?;
        let response = self.sender.send_request(req).await?;
        let answer = Answer::read(response).await?;
        self.closing |= answer
            .headers
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        Ok(answer)
    }
}
