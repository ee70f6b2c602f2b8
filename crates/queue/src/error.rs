//! The crate's one error type, and what a failed Redis call keeps of its cause.

use std::fmt;
use std::time::Duration;

/// Errors of queue operations.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Redis could not be reached, answered with an error, or answered what this crate cannot
    /// read; the client's error, when there is one, is the [`source`](std::error::Error::source)
    #[error("redis error: {0}")]
    Redis(#[source] RedisFailure),
    /// the operation did not finish within its timeout
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// a job could not be encoded or decoded
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// the configuration is unusable (bad URL, empty queue name, ...)
    #[error("invalid configuration: {0}")]
    Config(String),
    /// fewer replicas than [`ProducerOptions::min_replicas`](crate::ProducerOptions::min_replicas) confirmed a write in time (the
    /// write may still be on the primary: calling again is safe)
    #[error("only {got} of {wanted} replicas confirmed the write in time")]
    NotReplicated {
        /// replicas asked for
        wanted: u32,
        /// replicas that confirmed
        got: u32,
    },
    /// Redis is configured to drop data the queue needs (see [`check_config`](crate::check_config))
    #[error("{0}")]
    LosesData(String),
    /// the queue was set up with another shard count than this process's (see
    /// [`QueueName::with_shards`](crate::QueueName::with_shards)); running on would split its jobs and dedup markers
    #[error(
        "the queue was set up with {recorded} shard(s) and this process has {configured}: \
         start every producer and consumer of a queue with the same shard count"
    )]
    ShardCount {
        /// the count recorded in Redis
        recorded: String,
        /// this process's count
        configured: usize,
    },
    /// the queue is recorded as ordered (see [`ConsumerOptions::ordered`](crate::ConsumerOptions::ordered)) and this consumer is
    /// not: it would take a held sender's jobs out of turn
    #[error(
        "the queue keeps order per sender ({key} is set): start every consumer of it ordered, \
         or see docs/operations.md (Ordered mode) for how to leave ordered mode"
    )]
    OrderedQueue {
        /// the key that records the mode
        key: String,
    },
    /// this consumer is ordered, and consumers that are not (the queue had no ordered one) are
    /// live on the queue
    #[error(
        "{live} consumer(s) that do not keep order are live on the queue: stop them before \
         starting ordered consumers"
    )]
    UnorderedConsumers {
        /// live consumer ids found
        live: u64,
    },
}

/// Why a Redis call failed. Its text is the client's own message (or ours, for an answer this
/// crate cannot read); the client's error is kept as the
/// [`source`](std::error::Error::source). Neither text nor `Debug` holds a password: the
/// client's messages name no credentials, and `Debug` shows the same text.
#[derive(Clone)]
pub struct RedisFailure(Cause);

#[derive(Clone)]
enum Cause {
    /// the client failed the call: connection, error reply, protocol
    Client(redis::RedisError),
    /// the client failed while setting up TLS (rustls's words do not say TLS, so we do)
    Tls(redis::RedisError),
    /// a script answered a shape this crate does not expect
    Answer(Unexpected),
    /// the enqueue script's answer did not convert
    EnqueueAnswer(redis::ParsingError),
    /// the producer's dispatch task is gone (the runtime is shutting down)
    Stopped,
}

/// The answers of our scripts that are not what the contract says.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unexpected {
    /// the exchange script's answer is not `[status]` or `[status, n]`
    ExchangeShape,
    /// the exchange script took more jobs than the processing list reads
    ShortProcessing,
    /// the release script's answer is not `[returned, dead]` or `[-1]`
    ReleaseShape,
    /// the enqueue script answered `got` results for `expected` jobs
    EnqueueCount { got: usize, expected: usize },
    /// the enqueue script answered a job with something other than `0` or `1`
    EnqueueAnswer,
}

/// Words in rustls's errors (a certificate that does not verify, an alert from the server).
const TLS_WORDS: [&str; 4] = ["certificate", "tls", "alert", "handshake"];

impl RedisFailure {
    /// The client's error as ours. A TLS failure is told apart here, once: rustls's own words
    /// ("invalid peer certificate: UnknownIssuer") do not name TLS, and one reads like a plain
    /// I/O error.
    pub(crate) fn client(e: redis::RedisError) -> Self {
        let lower = e.to_string().to_ascii_lowercase();
        if TLS_WORDS.iter().any(|w| lower.contains(w)) {
            RedisFailure(Cause::Tls(e))
        } else {
            RedisFailure(Cause::Client(e))
        }
    }

    pub(crate) fn unexpected(what: Unexpected) -> Self {
        RedisFailure(Cause::Answer(what))
    }

    pub(crate) fn enqueue_answer(e: redis::ParsingError) -> Self {
        RedisFailure(Cause::EnqueueAnswer(e))
    }

    pub(crate) fn stopped() -> Self {
        RedisFailure(Cause::Stopped)
    }

    /// Whether the failure was in setting up TLS with Redis (a certificate that does not
    /// verify, a refused handshake).
    pub fn is_tls(&self) -> bool {
        matches!(self.0, Cause::Tls(_))
    }
}

impl From<RedisFailure> for QueueError {
    fn from(f: RedisFailure) -> Self {
        QueueError::Redis(f)
    }
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Cause::Client(e) => write!(f, "{e}"),
            Cause::Tls(e) => write!(f, "TLS connection to Redis failed: {e}"),
            Cause::Answer(u) => match u {
                Unexpected::ExchangeShape => {
                    f.write_str("exchange script answered an unexpected shape")
                }
                Unexpected::ShortProcessing => {
                    f.write_str("processing list shorter than the jobs just taken")
                }
                Unexpected::ReleaseShape => {
                    f.write_str("release script answered an unexpected shape")
                }
                Unexpected::EnqueueCount { got, expected } => {
                    write!(
                        f,
                        "enqueue script answered {got} results for {expected} jobs"
                    )
                }
                Unexpected::EnqueueAnswer => {
                    write!(f, "enqueue script answered neither 0 nor 1 for a job")
                }
            },
            Cause::EnqueueAnswer(e) => write!(f, "enqueue script answered: {e}"),
            Cause::Stopped => f.write_str("producer task has stopped"),
        }
    }
}

/// The same text as `Display`: the client's `Debug` is not ours to vouch for.
impl fmt::Debug for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisFailure")
            .field(&format_args!("{self}"))
            .finish()
    }
}

impl std::error::Error for RedisFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Cause::Client(e) | Cause::Tls(e) => Some(e),
            Cause::EnqueueAnswer(e) => Some(e),
            Cause::Answer(_) | Cause::Stopped => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// A client error keeps the client's text and stays reachable as the source.
    #[test]
    fn client_error_is_the_source() {
        let e = redis::RedisError::from((redis::ErrorKind::Io, "connection refused"));
        let q = QueueError::from(RedisFailure::client(e.clone()));
        assert_eq!(q.to_string(), format!("redis error: {e}"));
        let failure = q.source().expect("the failure");
        let client = failure.source().expect("the client's error");
        assert_eq!(client.to_string(), e.to_string());
    }

    /// A TLS failure says so, whatever words the TLS library chose.
    #[test]
    fn tls_failure_is_named() {
        let e = redis::RedisError::from((
            redis::ErrorKind::Io,
            "invalid peer certificate: UnknownIssuer",
        ));
        let f = RedisFailure::client(e);
        assert!(f.is_tls());
        assert!(
            f.to_string()
                .starts_with("TLS connection to Redis failed: ")
        );
    }

    /// Debug shows the Display text and nothing more.
    #[test]
    fn debug_is_the_text() {
        let f = RedisFailure::unexpected(Unexpected::EnqueueCount {
            got: 1,
            expected: 2,
        });
        assert_eq!(
            format!("{f:?}"),
            "RedisFailure(enqueue script answered 1 results for 2 jobs)"
        );
    }
}
