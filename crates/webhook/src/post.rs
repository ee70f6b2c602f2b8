//! A POST from its headers to its answer, as small steps: the signature header (before a byte
//! of the body is read), the body under its budgets and floor rate, verification, the jobs,
//! the enqueue. A step passes its result on or stops with a [`Rejection`], which is mapped to a
//! status code and a metric in one place.

use std::time::Instant;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderValue};
use http::{HeaderMap, Request, StatusCode};
use http_body::Body as HttpBody;
use wa_payload::PayloadError;
use wa_queue::{Enqueued, NewJob, QueueError};
use wa_signature::Signature;

use crate::body::{self, ReadError};
use crate::metrics::{Fate, RequestOutcome, SigFailure, Tally};
use crate::reply::{Reply, reply, text};
use crate::{Webhook, jobs};

/// The jobs of a body may take this many bytes of JSON per byte of the body (plus
/// [`JOB_BYTES_SLACK`]); past it the body is answered 413. Every job repeats its change's
/// context (account, phone number ids, contact name), so a hostile body of many tiny items
/// under huge metadata would otherwise put megabytes into Redis per kilobyte received. Real
/// bodies stay under 4 (the fixtures are measured by the tests).
pub const JOB_BYTES_PER_BODY_BYTE: usize = 8;

/// What the jobs of any body may take beyond [`JOB_BYTES_PER_BODY_BYTE`], so a small body's
/// envelope overhead never counts against it.
pub const JOB_BYTES_SLACK: usize = 64 * 1024;

/// The most bytes of job JSON a body of `len` bytes may produce.
pub(crate) fn max_job_bytes(len: usize) -> usize {
    len.saturating_mul(JOB_BYTES_PER_BODY_BYTE)
        .saturating_add(JOB_BYTES_SLACK)
}

const SIGNATURE_MISSING: &str = "Missing Signature";
const SIGNATURE_INVALID: &str = "Invalid Signature";

/// Why a POST was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// no `X-Hub-Signature-256` (401, before the body)
    MissingSignature,
    /// more than one `X-Hub-Signature-256` (400, before the body)
    DuplicateSignature,
    /// a header that is not `sha256=` and 64 hex digits (403, before the body)
    MalformedSignature,
    /// the MAC does not match the body under any secret (403)
    WrongSignature,
    /// a body over the limit (413)
    TooLarge,
    /// a body of more parts than [`Config::max_items`](crate::Config::max_items) (413)
    TooManyItems,
    /// a body whose jobs would pass [`JOB_BYTES_PER_BODY_BYTE`] times its size (413)
    JobsTooLarge,
    /// a body whose stream broke, or that is not a JSON object (400)
    BadBody,
    /// a budget of held body bytes is spent (503)
    Overloaded,
    /// a body slower than the floor rate or the request timeout (408)
    Slow,
    /// Redis failed or was slower than the enqueue timeout (503)
    Unavailable,
}

impl Rejection {
    fn status(self) -> StatusCode {
        match self {
            Rejection::MissingSignature => StatusCode::UNAUTHORIZED,
            Rejection::MalformedSignature | Rejection::WrongSignature => StatusCode::FORBIDDEN,
            Rejection::DuplicateSignature | Rejection::BadBody => StatusCode::BAD_REQUEST,
            Rejection::TooLarge | Rejection::TooManyItems | Rejection::JobsTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Rejection::Overloaded | Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Slow => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn outcome(self) -> RequestOutcome {
        match self {
            Rejection::MissingSignature => RequestOutcome::MissingSignature,
            Rejection::MalformedSignature | Rejection::WrongSignature => {
                RequestOutcome::InvalidSignature
            }
            Rejection::DuplicateSignature | Rejection::BadBody => RequestOutcome::BadRequest,
            Rejection::TooLarge | Rejection::TooManyItems | Rejection::JobsTooLarge => {
                RequestOutcome::TooLarge
            }
            Rejection::Overloaded => RequestOutcome::Overloaded,
            Rejection::Slow => RequestOutcome::Timeout,
            Rejection::Unavailable => RequestOutcome::Unavailable,
        }
    }

    fn signature_failure(self) -> Option<SigFailure> {
        match self {
            Rejection::MissingSignature => Some(SigFailure::Missing),
            Rejection::MalformedSignature => Some(SigFailure::Malformed),
            Rejection::WrongSignature => Some(SigFailure::Mismatch),
            Rejection::DuplicateSignature => Some(SigFailure::Duplicate),
            _ => None,
        }
    }

    /// Refused before the body was read: the connection closes after the answer, so the
    /// unread body is never received.
    fn before_body(self) -> bool {
        matches!(
            self,
            Rejection::MissingSignature
                | Rejection::DuplicateSignature
                | Rejection::MalformedSignature
        )
    }

    fn reply(self) -> Reply {
        let status = self.status();
        let mut r = match self {
            Rejection::MissingSignature => {
                text(status, Bytes::from_static(SIGNATURE_MISSING.as_bytes()))
            }
            Rejection::MalformedSignature | Rejection::WrongSignature => {
                text(status, Bytes::from_static(SIGNATURE_INVALID.as_bytes()))
            }
            _ => reply(status, ""),
        };
        if self.before_body() {
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

impl From<ReadError> for Rejection {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::TooLarge => Rejection::TooLarge,
            ReadError::Broken => Rejection::BadBody,
            ReadError::OverBudget => Rejection::Overloaded,
            ReadError::Slow => Rejection::Slow,
        }
    }
}

/// A POST that was answered 200.
enum Accepted {
    /// jobs enqueued (or known duplicates, or none to enqueue)
    Enqueued,
    /// signed, but for another `object`: nothing enqueued
    OtherObject,
}

/// The one `X-Hub-Signature-256` of a request, parsed.
fn signature_of(headers: &HeaderMap) -> Result<Signature, Rejection> {
    let mut values = headers.get_all(wa_signature::HEADER_NAME).iter();
    let value = values.next().ok_or(Rejection::MissingSignature)?;
    if values.next().is_some() {
        return Err(Rejection::DuplicateSignature);
    }
    Signature::parse(value.as_bytes()).map_err(|_| Rejection::MalformedSignature)
}

/// The announced body size, when there is a readable one.
fn declared_len(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

impl Webhook {
    /// Answers a POST on the webhook path; `count` receives the number of jobs.
    pub(crate) async fn post<B: HttpBody>(&self, req: Request<B>, count: &mut usize) -> Reply {
        let metrics = self.metrics();
        match self.accept(req, count).await {
            Ok(accepted) => {
                if let Accepted::OtherObject = accepted {
                    metrics.ignored_object();
                    metrics.request(RequestOutcome::Ignored);
                } else {
                    metrics.request(RequestOutcome::Accepted);
                }
                reply(StatusCode::OK, "")
            }
            Err(rejection) => {
                if let Some(why) = rejection.signature_failure() {
                    metrics.signature_failure(why);
                }
                metrics.request(rejection.outcome());
                rejection.reply()
            }
        }
    }

    async fn accept<B: HttpBody>(
        &self,
        req: Request<B>,
        count: &mut usize,
    ) -> Result<Accepted, Rejection> {
        let inner = &*self.inner;
        let config = &inner.config;
        let (parts, body) = req.into_parts();
        // Everything that needs no body is decided before a byte of it is read.
        let declared = declared_len(&parts.headers);
        let limit = config.max_body;
        if declared.is_some_and(|n| n > limit as u64) || body.size_hint().lower() > limit as u64 {
            return Err(Rejection::TooLarge);
        }
        let signature = signature_of(&parts.headers)?;
        // The head's values are slices of the connection's read buffer, like the body's frames
        // (see `body::read`): let go of them now, so that hyper can reuse that buffer instead
        // of allocating a new one while this request waits for Redis.
        drop(parts);
        let read = body::read(
            body,
            limit,
            declared,
            &inner.unverified,
            config.request_timeout,
        )
        .await?;
        inner
            .verifier
            .verify_parsed(&signature, &read.bytes)
            .map_err(|_| Rejection::WrongSignature)?;
        // Held until the answer: the jobs borrow the body.
        let _held = body::move_charge(read.held, &inner.verified)?;
        let bytes = read.bytes;

        // Build the jobs in a block so that nothing but the jobs (which borrow `bytes`) lives
        // across the enqueue await.
        let jobs = {
            let payload =
                wa_payload::Body::parse_limited(&bytes, config.max_items).map_err(|e| match e {
                    PayloadError::TooManyParts(_) => Rejection::TooManyItems,
                    _ => Rejection::BadBody,
                })?;
            if payload.object() != Some("whatsapp_business_account") {
                return Ok(Accepted::OtherObject);
            }
            self.log_anomalies(&payload);
            self.jobs_of(payload, max_job_bytes(bytes.len()))?
        };
        *count = jobs.len();
        if !jobs.is_empty() {
            self.enqueue(&jobs).await?;
        }
        Ok(Accepted::Enqueued)
    }

    /// Parts of an unexpected shape were skipped; the rest is enqueued. The paths name where
    /// (`entry[0].changes[1].value`), never what the body said.
    fn log_anomalies(&self, payload: &wa_payload::Body<'_>) {
        if payload.anomaly_count() > 0 {
            let first = payload.anomalies().first().map(ToString::to_string);
            tracing::warn!(
                skipped = payload.anomaly_count(),
                first = first.as_deref().unwrap_or(""),
                "body has parts of an unexpected shape; enqueueing the rest"
            );
        }
    }

    /// One job per notification whose kind is accepted; the others are counted as filtered.
    /// Stops with [`Rejection::JobsTooLarge`] as soon as the jobs' JSON passes `max_bytes`.
    fn jobs_of<'b>(
        &self,
        payload: wa_payload::Body<'b>,
        max_bytes: usize,
    ) -> Result<Vec<NewJob<'b>>, Rejection> {
        let received_at = wa_queue::now_ms();
        let accept = self.inner.config.accept;
        let event_ttl = self.inner.config.event_dedup_ttl;
        let mut filtered = Tally::default();
        // One allocation of the right size: a job is a few hundred bytes, so even a doubling
        // from four would pass the size glibc serves from its per-thread cache.
        let mut jobs = Vec::with_capacity(payload.len());
        // The jobs' JSON is counted by a cheap upper bound while that stays under the limit
        // (any real body's does, by far); once it passes, by encoding, from the first job.
        let mut bytes = 0usize;
        let mut exact = false;
        let exact_len = |job: &NewJob<'_>| job.encoded_len().map_err(|_| Rejection::BadBody);
        // Moved out of the body: the strings that had to be unescaped (a text with a quote or
        // a line break) are handed over rather than copied.
        for n in payload.into_notifications() {
            if !accept.contains(&n.kind) {
                filtered.add(&n.kind, Fate::Filtered);
                continue;
            }
            let job = jobs::build(n, received_at, event_ttl);
            if exact {
                bytes += exact_len(&job)?;
            } else {
                bytes += job.encoded_len_bound();
                if bytes > max_bytes {
                    exact = true;
                    bytes = exact_len(&job)?;
                    for earlier in &jobs {
                        bytes += exact_len(earlier)?;
                    }
                }
            }
            if bytes > max_bytes {
                tracing::warn!(
                    max_bytes,
                    jobs = jobs.len() + 1,
                    "a body's jobs would pass their bound; answering 413"
                );
                return Err(Rejection::JobsTooLarge);
            }
            jobs.push(job);
        }
        self.metrics().notifications(&filtered);
        Ok(jobs)
    }

    /// One enqueue call within the enqueue timeout; the outcomes are counted per kind.
    async fn enqueue(&self, jobs: &[NewJob<'_>]) -> Result<(), Rejection> {
        let inner = &*self.inner;
        let timeout = inner.config.enqueue_timeout;
        let started = Instant::now();
        let enqueue = inner.producer.enqueue(jobs);
        // A producer built from `Config::producer_options` gives up at the same time on its
        // own; a second timer per request would only cost.
        let enqueued = if inner.producer.timeout() <= timeout {
            enqueue.await
        } else {
            tokio::time::timeout(timeout, enqueue)
                .await
                .unwrap_or(Err(QueueError::Timeout(timeout)))
        };
        let outcomes = match enqueued {
            Ok(outcomes) => outcomes,
            Err(QueueError::Timeout(_)) => {
                tracing::warn!(
                    ?timeout,
                    jobs = jobs.len(),
                    "enqueue timed out; answering 503"
                );
                return Err(self.redis_failed());
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = jobs.len(), "enqueue failed; answering 503");
                return Err(self.redis_failed());
            }
        };
        self.inner.redis_check.note(true);
        let metrics = self.metrics();
        metrics.enqueue_latency(started.elapsed());
        let mut tally = Tally::default();
        for (job, outcome) in jobs.iter().zip(&outcomes) {
            let fate = match outcome {
                Enqueued::New => Fate::Enqueued,
                Enqueued::Duplicate => Fate::Duplicate,
            };
            tally.add(&job.kind, fate);
        }
        metrics.notifications(&tally);
        Ok(())
    }

    fn redis_failed(&self) -> Rejection {
        self.inner.redis_check.note(false);
        self.metrics().redis_error();
        Rejection::Unavailable
    }
}
