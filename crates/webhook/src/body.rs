//! Reading a POST body: under the size limit, charged to a budget of held bytes, and cut when
//! it arrives slower than a floor rate.
//!
//! # Why a floor rate
//!
//! The signature covers the whole body, so the body has to be read before it can be verified,
//! and until then anyone can send one. A client that sends a body one byte at a time holds a
//! connection and budget for as long as the request timeout allows. Meta sends from data
//! centres, whole bodies at once; so after a first window of grace, every
//! [`BODY_RATE_WINDOW`] must bring at least [`MIN_BODY_RATE`] bytes a second (or the rest of
//! the body), or the request is answered 408. A stalled body is cut within two windows, and a
//! body that came fast and then stopped is cut just the same.

use std::time::Duration;

use bytes::Buf;
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The slowest a body may arrive once its first window has passed: 16 KiB per second.
pub const MIN_BODY_RATE: usize = 16 * 1024;

/// The window over which [`MIN_BODY_RATE`] is measured (and the grace before the first check).
pub const BODY_RATE_WINDOW: Duration = Duration::from_secs(2);

/// Bytes a window must bring: [`MIN_BODY_RATE`] over [`BODY_RATE_WINDOW`].
const BYTES_PER_WINDOW: usize = MIN_BODY_RATE * BODY_RATE_WINDOW.as_secs() as usize;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// more than the limit
    TooLarge,
    /// the body's stream failed (a reset, a malformed chunk)
    Broken,
    /// the budget of held bytes is spent
    OverBudget,
    /// slower than the floor rate, or not complete within the request timeout
    Slow,
}

/// The bytes of one budget permit: the body budgets count KiB, so a semaphore's permit count
/// (a `u32` per acquire) covers bodies of up to 4 TiB.
pub(crate) const BUDGET_UNIT: usize = 1024;

/// A body read in full, and its charge on a budget (KiB permits, returned when dropped).
pub(crate) struct Read<'s> {
    pub(crate) bytes: Vec<u8>,
    pub(crate) held: Option<SemaphorePermit<'s>>,
}

/// Reads a body up to `limit` bytes within `timeout`, taking its size from `budget` (KiB
/// permits) as it arrives, into one buffer of our own sized from `Content-Length` when known.
/// A body whose frames are all there already is read before any timer is armed.
///
/// Each frame is copied out and dropped at once, even a body of one frame (the usual small
/// webhook). A frame is a slice of the connection's read buffer: kept until the answer (the
/// jobs borrow the body), it stops hyper from reusing that buffer, and hyper, which reads on
/// to notice a client that hangs up meanwhile, allocates a new one of 8 KiB or more per
/// request, a size glibc serves from its slow path. Copying a webhook of a few hundred bytes
/// costs far less (docs/performance.md, "Ingress CPU per request").
pub(crate) async fn read<'s, B: HttpBody>(
    body: B,
    limit: usize,
    declared: Option<u64>,
    budget: &'s Semaphore,
    timeout: Duration,
) -> Result<Read<'s>, ReadError> {
    let mut body = std::pin::pin!(body);
    let started = Instant::now();
    let give_up = started + timeout;
    let mut window = Window {
        end: started + BODY_RATE_WINDOW,
        len_at_start: 0,
    };
    let mut held: Option<SemaphorePermit<'s>> = None;
    // Sized for the announced body, within the limit (a larger announcement was refused
    // before; a false one only costs a regrowth or some spare capacity).
    let mut buf: Vec<u8> = Vec::new();
    let mut len = 0usize;
    loop {
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            () = tokio::time::sleep_until(window.end.min(give_up)) => {
                if Instant::now() >= give_up || !window.next(len) {
                    return Err(ReadError::Slow);
                }
                continue;
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|_| ReadError::Broken)?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers carry nothing we sign or parse
        };
        let n = data.remaining();
        if n > limit - len {
            return Err(ReadError::TooLarge);
        }
        charge(budget, &mut held, len, n)?;
        len += n;
        if buf.capacity() == 0 {
            let announced = declared.map_or(0, |d| usize::try_from(d).unwrap_or(limit));
            buf.reserve_exact(announced.min(limit).max(n));
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            buf.extend_from_slice(chunk);
            let k = chunk.len();
            data.advance(k);
        }
    }
    Ok(Read { bytes: buf, held })
}

/// The floor-rate window in progress.
struct Window {
    end: Instant,
    len_at_start: usize,
}

impl Window {
    /// At the end of a window: whether it brought enough; if so, the next one starts.
    fn next(&mut self, len: usize) -> bool {
        if len - self.len_at_start < BYTES_PER_WINDOW {
            return false;
        }
        self.len_at_start = len;
        self.end += BODY_RATE_WINDOW;
        true
    }
}

/// Charges `budget` for the KiB that `n` more bytes after `len` start.
fn charge<'s>(
    budget: &'s Semaphore,
    held: &mut Option<SemaphorePermit<'s>>,
    len: usize,
    n: usize,
) -> Result<(), ReadError> {
    let kib = (len + n).div_ceil(BUDGET_UNIT) - len.div_ceil(BUDGET_UNIT);
    if kib == 0 {
        return Ok(());
    }
    let permit = u32::try_from(kib)
        .ok()
        .and_then(|k| budget.try_acquire_many(k).ok())
        .ok_or(ReadError::OverBudget)?;
    match held {
        Some(h) => h.merge(permit),
        None => *held = Some(permit),
    }
    Ok(())
}

/// Moves a verified body's charge from the budget of unverified bytes to `verified`.
pub(crate) fn move_charge<'s>(
    read_held: Option<SemaphorePermit<'_>>,
    verified: &'s Semaphore,
) -> Result<Option<SemaphorePermit<'s>>, ReadError> {
    let Some(unverified) = read_held else {
        return Ok(None);
    };
    let kib = unverified.num_permits();
    let moved = u32::try_from(kib)
        .ok()
        .and_then(|k| verified.try_acquire_many(k).ok())
        .ok_or(ReadError::OverBudget)?;
    drop(unverified);
    Ok(Some(moved))
}
