//! The few shapes of answer the endpoint gives: a status with a fixed body, plain text, and
//! a 405 with its `Allow` header.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

/// Every answer of the endpoint: a complete body, never streamed.
pub(crate) type Reply = Response<Full<Bytes>>;

/// `status` with a fixed body and no content type (empty bodies, mostly).
pub(crate) fn reply(status: StatusCode, body: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

/// `status` with a `text/plain` body.
pub(crate) fn text(status: StatusCode, body: Bytes) -> Reply {
    with_type(status, body, "text/plain; charset=utf-8")
}

/// `status` with `body` of the given content type.
pub(crate) fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Reply {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// 405 naming the methods the route does answer.
pub(crate) fn method_not_allowed(allow: &'static str) -> Reply {
    let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}
