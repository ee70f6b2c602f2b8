//! One handler's run, guarded (a panic or a timeout is a retry), and the one-poll start the
//! loop gives it on a one-thread runtime.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
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

/// Runs one handler (a panic or a timeout is a retry); the delivery and its outcome.
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
            match tokio::time::timeout(limit, call).await {
                Ok(Ok(o)) => o,
                Ok(Err(_)) => Outcome::Retry("handler panicked".into()),
                Err(_) => Outcome::Retry(format!("handler timed out after {limit:?}")),
            }
        }
        Err(why) => Outcome::Dead(why.to_owned()),
    };
    (d, outcome)
}
