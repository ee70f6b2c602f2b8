//! The run loop's pause after failed calls to Redis: short at first, twice as long with each
//! failure in a row, up to a bound; a call that succeeds makes the next pause short again.

use std::time::Duration;

use tokio::time::Instant;

/// The first pause after a failed call; it doubles with each failure in a row.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest pause after failed calls.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Whether the loop is pausing after a failure, and how long the next pause lasts.
#[derive(Debug)]
pub(super) struct Pause {
    /// the length of the next pause
    next: Duration,
    /// no new call before this
    until: Option<Instant>,
}

impl Pause {
    pub(super) fn new() -> Self {
        Self {
            next: BACKOFF_MIN,
            until: None,
        }
    }

    /// How long the next pause lasts (what a warning about a failure says).
    pub(super) fn next(&self) -> Duration {
        self.next
    }

    /// When the pause on now ends, if one is.
    pub(super) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// True while no new call may start.
    pub(super) fn is_on(&self) -> bool {
        self.until.is_some()
    }

    /// A call failed: pause for the next length, and double the one after.
    pub(super) fn start(&mut self) {
        self.until = Some(Instant::now() + self.next);
        self.next = (self.next * 2).min(BACKOFF_MAX);
    }

    /// A call succeeded: the next failure pauses for the shortest time again.
    pub(super) fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// Ends the pause when its time is over.
    pub(super) fn end_if_over(&mut self) {
        if self.until.is_some_and(|t| Instant::now() >= t) {
            self.until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pauses double from the shortest up to the bound, a pause lasts its length, and a
    /// success starts over.
    #[test]
    fn pauses_double_up_to_the_bound_and_reset() {
        let mut p = Pause::new();
        assert!(!p.is_on());
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(p.next());
            let before = Instant::now();
            p.start();
            assert!(
                p.until()
                    .is_some_and(|t| t >= before + seen[seen.len() - 1])
            );
        }
        let ms = Duration::from_millis;
        assert_eq!(seen, [100, 200, 400, 800, 1600, 3200, 5000, 5000].map(ms));
        p.end_if_over();
        assert!(p.is_on(), "a pause of 5 s is not over at once");
        p.reset();
        assert_eq!(p.next(), BACKOFF_MIN);
    }
}
