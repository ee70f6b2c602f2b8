//! Endpoint settings and the kind filter.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use wa_queue::{JobKind, ProducerOptions};

use crate::WebhookError;

/// The default webhook path, as the Node design served it.
pub const DEFAULT_PATH: &str = "/api/whatsapp/webhook";

/// The default body limit: 4 MiB. Meta sends at most about 3 MB; one byte more than the limit
/// is answered 413.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// The default cap on a body's parts (entries, changes, contacts and notifications together).
pub const DEFAULT_MAX_ITEMS: usize = 10_000;

/// The default dedup window of id-less events: one hour, far beyond Meta's immediate retry
/// and well short of the day in which the same error may genuinely happen again.
pub const DEFAULT_EVENT_DEDUP_TTL: Duration = Duration::from_secs(3600);

/// Settings of a [`Webhook`](crate::Webhook): what it answers and how it hands jobs over,
/// wherever it is mounted. The listeners' own settings (connections, idle deadline, shutdown
/// grace) are [`ServeOptions`](crate::ServeOptions).
///
/// `Config::default()` is the documented default of every field; change what you need:
///
/// ```
/// use std::time::Duration;
/// let mut config = wa_webhook::Config::default();
/// config.path = "/hooks/whatsapp".into();
/// config.enqueue_timeout = Duration::from_millis(500);
/// config.accept = "message,status".parse().unwrap();
/// assert_eq!(config.max_body, 4 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Path of the webhook (GET handshake and POST notifications). Default `/api/whatsapp/webhook`.
    pub path: String,
    /// Largest accepted body in bytes; a larger one is answered 413 without reading on.
    /// Default 4 MiB (4194304).
    pub max_body: usize,
    /// Most parts a body may hold: entries, changes, contacts and notifications together
    /// (Meta's batches carry at most 1 000 updates, a few thousand parts); a body with more is
    /// answered 413 as soon as the walk reaches the one too many. Default 10 000.
    pub max_items: usize,
    /// How long one enqueue round trip (and a `/readyz` PING) may take before the answer is 503.
    /// Default 2 s.
    pub enqueue_timeout: Duration,
    /// Which kinds of notification become jobs; the rest are counted and dropped. Default all.
    pub accept: Accept,
    /// How long the dedup marker of an event lives whose id is a content hash without an entry
    /// time (value-level errors today): such an id cannot tell Meta's redelivery from the same
    /// event happening again, so the marker only has to outlive Meta's quick retries. Jobs with
    /// an id of their own or an entry time keep the producer's full dedup TTL. Whole seconds,
    /// at least one. Default 1 h.
    pub event_dedup_ttl: Duration,
    /// How long a POST body may take to arrive; past it the answer is 408 (as it is for a body
    /// slower than [`MIN_BODY_RATE`](crate::MIN_BODY_RATE)). With the header-read timeout
    /// ([`ServeOptions::header_read_timeout`](crate::ServeOptions::header_read_timeout)) before
    /// it and the enqueue timeout after it, every request is bounded. Default 30 s.
    pub request_timeout: Duration,
    /// Body bytes held at once by all requests together, twice over: one budget for bodies
    /// being read (not yet verified), one for verified bodies waiting for Redis. A request that
    /// would pass its budget is answered 503 at once (Meta retries). This bounds the endpoint's
    /// memory whatever the clients send and however slow Redis is, and keeps unverified
    /// uploads from starving verified ones. Default 256 MiB.
    pub max_buffered: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: DEFAULT_PATH.to_owned(),
            max_body: DEFAULT_MAX_BODY,
            max_items: DEFAULT_MAX_ITEMS,
            enqueue_timeout: Duration::from_secs(2),
            max_buffered: 256 * 1024 * 1024,
            accept: Accept::ALL,
            event_dedup_ttl: DEFAULT_EVENT_DEDUP_TTL,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// The options of the endpoint's producer: the defaults, with the producer's own timeout
    /// set to [`enqueue_timeout`](Self::enqueue_timeout), so the timeout is set in one place.
    ///
    /// ```
    /// let config = wa_webhook::Config::default();
    /// assert_eq!(config.producer_options().timeout, config.enqueue_timeout);
    /// ```
    pub fn producer_options(&self) -> ProducerOptions {
        let mut options = ProducerOptions::default();
        options.timeout = self.enqueue_timeout;
        options
    }
}

/// A set of job kinds (`message`, `status`, `error`, `change`): the `WA_ACCEPT` filter.
///
/// Parses from a comma-separated list; `all` (or `*`) is every kind.
///
/// ```
/// use wa_webhook::{Accept, JobKind};
/// let accept: Accept = "message, status".parse().unwrap();
/// assert!(accept.contains(&JobKind::Message));
/// assert!(!accept.contains(&JobKind::Change));
/// assert_eq!(accept.to_string(), "message,status");
/// assert!("mesage".parse::<Accept>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Accept(u8);

/// The bit of `kind` in the set: bit [`JobKind::index`] (a kind this version does not know
/// has the bit of `change`).
fn bit(kind: &JobKind) -> u8 {
    1 << kind.index()
}

impl Accept {
    /// Every kind.
    pub const ALL: Accept = Accept((1 << JobKind::ALL.len()) - 1);
    /// No kind (every notification is dropped).
    pub const NONE: Accept = Accept(0);

    /// This set plus `kind`.
    pub fn with(self, kind: &JobKind) -> Self {
        Accept(self.0 | bit(kind))
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: &JobKind) -> bool {
        self.0 & bit(kind) != 0
    }
}

impl Default for Accept {
    fn default() -> Self {
        Self::ALL
    }
}

impl FromStr for Accept {
    type Err = WebhookError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = Accept::NONE;
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if word.eq_ignore_ascii_case("all") || word == "*" {
                set = Accept::ALL;
                continue;
            }
            let kind = JobKind::ALL
                .into_iter()
                .find(|kind| word.eq_ignore_ascii_case(kind.as_str()))
                .ok_or_else(|| WebhookError::UnknownKind(word.to_owned()))?;
            set = set.with(&kind);
        }
        if set == Accept::NONE {
            return Err(WebhookError::EmptyAccept);
        }
        Ok(set)
    }
}

impl fmt::Display for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in JobKind::ALL {
            if self.contains(&kind) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(kind.as_str())?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Accept({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are the documented ones.
    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.path, "/api/whatsapp/webhook");
        assert_eq!(c.max_body, 4_194_304);
        assert_eq!(c.enqueue_timeout, Duration::from_secs(2));
        assert_eq!(c.accept, Accept::ALL);
    }

    /// `all`, single kinds, spaces and case parse; unknown or empty lists are refused.
    #[test]
    fn accept_parses() {
        assert_eq!("all".parse::<Accept>().unwrap(), Accept::ALL);
        assert_eq!(
            "message,status,error,change".parse::<Accept>().unwrap(),
            Accept::ALL
        );
        let a: Accept = " Status ".parse().unwrap();
        assert!(a.contains(&JobKind::Status) && !a.contains(&JobKind::Message));
        assert!(matches!(
            "message,nope".parse::<Accept>(),
            Err(WebhookError::UnknownKind(w)) if w == "nope"
        ));
        assert!(matches!(
            " , ".parse::<Accept>(),
            Err(WebhookError::EmptyAccept)
        ));
        assert_eq!(Accept::ALL.to_string(), "message,status,error,change");
    }
}
