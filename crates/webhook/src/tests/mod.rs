//! The handler driven without a socket. Only paths that never reach Redis are tested here (the
//! producer points at a closed port); the enqueueing ones are in the workspace's `tests/it`.
//! The helpers are here; `post` holds the POST pipeline's answers, `routes` the routing, the
//! handshake and the tower services.

mod post;
mod routes;

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
