//! One handler's run, guarded (a panic or a timeout is a retry), and the one-poll start the
//! loop gives it on a one-thread runtime.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::{Delivery, Handler, Outcome};
use futures_util::FutureExt;

/// A finished job and its outcome, waiting for its lane's next call.
pub(super) type Finished = (Box<Delivery>, Outcome);

/// Polls `f` once, with a waker that does nothing. A future still pending must then be polled
/// again by someone who will be woken (it goes into the set of calls, or is spawned).
pub(super) fn poll_now<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// How a guarded handler's run ended (`None`: its time ran out) as its outcome.
fn outcome_of(ended: Option<Result<Outcome, Box<dyn Any + Send>>>, limit: Duration) -> Outcome {
    match ended {
        Some(Ok(o)) => o,
        Some(Err(_)) => Outcome::Retry("handler panicked".into()),
        None => Outcome::Retry(format!("handler timed out after {limit:?}")),
    }
}

/// Runs one handler (a panic or a timeout is a retry), with a timer of its own for its time
/// limit; the delivery and its outcome.
pub(super) async fn handle<H: Handler>(
    handler: Arc<H>,
    d: Box<Delivery>,
    limit: Duration,
) -> Finished {
    let outcome = match d.job() {
        Ok(j) => {
            // the handler is called inside the guarded future, so that a panic while it makes
            // its future (not only while that runs) is caught too
            let call =
                AssertUnwindSafe(async { handler.handle(j, d.number()).await }).catch_unwind();
            outcome_of(tokio::time::timeout(limit, call).await.ok(), limit)
        }
        Err(why) => Outcome::Dead(why.to_owned()),
    };
    (d, outcome)
}

/// Which batch a handler run in the loop's own set belongs to, and where the loop says which
/// batches are over time.
pub(super) struct Overdue {
    /// the batch's number (batches count from 1)
    pub(super) batch: u64,
    /// the handlers of batches up to this number are over time
    pub(super) through: Arc<AtomicU64>,
}

impl Overdue {
    pub(super) fn is_over(&self) -> bool {
        self.through.load(Relaxed) >= self.batch
    }
}

/// [`handle`] for a handler the loop polls within its own task (one-thread runtime), without a
/// timer per job: the loop keeps one deadline per batch, and when a batch's passes it marks the
/// batch over time and polls every handler of its set again; one of that batch still running
/// then ends as a timeout, as its timer would have ended it. The handler's own future is
/// polled first each time, so one that finishes at its deadline keeps its outcome (as with
/// `tokio::time::timeout`). Answers the batch's number along with the job and its outcome.
pub(super) async fn handle_in_loop<H: Handler>(
    handler: Arc<H>,
    d: Box<Delivery>,
    limit: Duration,
    over: Overdue,
) -> (u64, Finished) {
    let outcome = match d.job() {
        Ok(j) => {
            let call = AssertUnwindSafe(async { handler.handle(j, d.number()).await });
            let mut call = pin!(call.catch_unwind());
            let ended = poll_fn(|cx| match call.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                // no waker kept for this: the loop polls the handler again when its batch
                // is over time
                Poll::Pending if over.is_over() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            })
            .await;
            outcome_of(ended, limit)
        }
        Err(why) => Outcome::Dead(why.to_owned()),
    };
    (over.batch, (d, outcome))
}
