//! Does Redis keep what the queue gives it? `maxmemory-policy` and persistence, checked at
//! start and once a minute.
//!
//! # Why
//!
//! With any eviction policy but `noeviction`, a Redis that fills up deletes keys to make room:
//! pending jobs, jobs in hand, the dead list, dedup markers. Every write still answers OK, so
//! the ingress says 200 to Meta for jobs Redis then drops, and nobody notices. `noeviction`
//! makes a full Redis refuse writes instead: the ingress answers 503 and Meta retries later.
//! Without persistence (no AOF, no RDB save points) a restart loses everything queued; that is
//! a choice some make, so it is only a warning.
//!
//! Managed services often hide `CONFIG`; then the check says once that it cannot look and the
//! process goes on.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::QueueError;
use crate::conn::{Conn, IntoRedisOptions, redis_error};

/// The only `maxmemory-policy` that never deletes queued jobs.
pub const SAFE_POLICY: &str = "noeviction";
/// How long the check at start may take before the process goes on without it.
const START_LIMIT: Duration = Duration::from_secs(4);
/// How long one later check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How soon to look again when Redis did not answer.
const RETRY: Duration = Duration::from_secs(5);

/// What to do about a Redis that may drop jobs (`--redis-check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckMode {
    /// refuse to start (exit 78); later, warn and report not ready
    #[default]
    Strict,
    /// warn at start and at every check
    Warn,
    /// do not look
    Off,
}

impl FromStr for CheckMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Self::Strict),
            "warn" => Ok(Self::Warn),
            "off" => Ok(Self::Off),
            other => Err(format!("{other:?} is not one of strict, warn, off")),
        }
    }
}

/// The settings read from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `maxmemory-policy`
    pub policy: String,
    /// `appendonly yes`, or at least one `save` point
    pub persistent: bool,
}

impl RedisConfig {
    /// Whether Redis never evicts (`maxmemory-policy noeviction`).
    pub fn keeps_jobs(&self) -> bool {
        self.policy == SAFE_POLICY
    }

    /// The one line a strict start exits with, and every warning repeats.
    pub fn problem(&self) -> Option<String> {
        (!self.keeps_jobs()).then(|| {
            format!(
                "Redis maxmemory-policy is {}: a full Redis deletes queued jobs and dedup markers \
                 while answering OK; set maxmemory-policy {SAFE_POLICY} (CONFIG SET \
                 maxmemory-policy {SAFE_POLICY}, and in redis.conf or the service's parameters)",
                self.policy
            )
        })
    }
}

/// Reads the settings. `Ok(None)`: Redis refused `CONFIG` (renamed away or not permitted),
/// so they cannot be known.
pub async fn check_config(redis: impl IntoRedisOptions) -> Result<Option<RedisConfig>, QueueError> {
    let conn = redis.into_redis_options()?.lazy(CHECK_TIMEOUT, 1)?;
    read(&conn).await
}

async fn read(conn: &Conn) -> Result<Option<RedisConfig>, QueueError> {
    let mut c = conn.clone();
    let mut pipe = redis::pipe();
    pipe.cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .cmd("CONFIG")
        .arg("GET")
        .arg("save");
    let call = pipe.query_async::<(Vec<String>, Vec<String>, Vec<String>)>(&mut c);
    let answer = match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Err(_) => return Err(QueueError::Timeout(CHECK_TIMEOUT)),
        Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
            return Err(redis_error(e));
        }
        // An error reply: CONFIG is unknown (renamed) or not allowed for this user.
        Ok(Err(_)) => return Ok(None),
        Ok(Ok(a)) => a,
    };
    let value = |v: &[String]| v.get(1).cloned().unwrap_or_default();
    let (policy, aof, save) = (value(&answer.0), value(&answer.1), value(&answer.2));
    Ok(Some(RedisConfig {
        policy,
        persistent: aof == "yes" || !save.trim().is_empty(),
    }))
}

/// The latest check's verdict, shared with `/metrics` and `/readyz`. Cheap to clone.
///
/// ```no_run
/// use std::time::Duration;
/// use wa_queue::{CheckMode, ConfigHealth, QueueError};
///
/// # async fn demo() -> Result<(), QueueError> {
/// let health = ConfigHealth::new(CheckMode::Strict);
/// // Err(QueueError::LosesData(line)) when maxmemory-policy is not noeviction
/// health.watch("redis://127.0.0.1:6379", Duration::from_secs(60)).await?;
/// assert!(health.ready());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ConfigHealth {
    inner: Arc<Health>,
}

#[derive(Debug)]
struct Health {
    mode: CheckMode,
    /// false once a check read an eviction policy
    ok: AtomicBool,
}

impl ConfigHealth {
    /// A verdict that is never checked ([`CheckMode::Off`]): always ok, no metric.
    pub fn unchecked() -> Self {
        Self::new(CheckMode::Off)
    }

    /// A verdict for `mode`, ok until [`watch`](Self::watch) finds otherwise.
    pub fn new(mode: CheckMode) -> Self {
        Self {
            inner: Arc::new(Health {
                mode,
                ok: AtomicBool::new(true),
            }),
        }
    }

    /// False while the last check found a policy that evicts (true when it could not look).
    pub fn ok(&self) -> bool {
        self.inner.ok.load(Relaxed)
    }

    /// False when the mode is strict and the last check found a policy that evicts: the
    /// ingress then answers `/readyz` with 503.
    pub fn ready(&self) -> bool {
        self.inner.mode != CheckMode::Strict || self.ok()
    }

    /// Appends the `wa_redis_config_ok` gauge in the Prometheus text format (nothing when the
    /// check is off).
    pub fn render(&self, out: &mut String) {
        if self.inner.mode == CheckMode::Off {
            return;
        }
        out.push_str(
            "# HELP wa_redis_config_ok 0 when Redis's maxmemory-policy may evict queued jobs, \
             else 1 (also when CONFIG is not readable).\n",
        );
        out.push_str("# TYPE wa_redis_config_ok gauge\n");
        out.push_str(if self.ok() {
            "wa_redis_config_ok 1\n"
        } else {
            "wa_redis_config_ok 0\n"
        });
    }
}

impl ConfigHealth {
    /// Checks Redis now (at most a few seconds) and then every `interval`, in a background
    /// task that ends when the last clone of this value is dropped. Does nothing in
    /// [`CheckMode::Off`].
    ///
    /// In [`CheckMode::Strict`], an evicting policy found now is [`QueueError::LosesData`] (the
    /// binaries exit 78 with its one line); found later, it is an error in the log at each
    /// check and [`ready`](Self::ready) false. In [`CheckMode::Warn`] it is a warning at start
    /// and at each check. No persistence is a warning; a refused `CONFIG` is one warning, once.
    /// A Redis that does not answer now is looked at again soon, without holding the start up.
    pub async fn watch(
        &self,
        redis: impl IntoRedisOptions,
        interval: Duration,
    ) -> Result<(), QueueError> {
        let mode = self.inner.mode;
        if mode == CheckMode::Off {
            return Ok(());
        }
        let conn = redis.into_redis_options()?.lazy(CHECK_TIMEOUT, 1)?;
        let mut watcher = Watcher {
            conn,
            health: Arc::downgrade(&self.inner),
            told_refused: false,
            told_volatile: false,
        };
        let first = match tokio::time::timeout(START_LIMIT, read(&watcher.conn)).await {
            Ok(Ok(Some(config))) if mode == CheckMode::Strict && !config.keeps_jobs() => {
                self.inner.ok.store(false, Relaxed);
                return Err(QueueError::LosesData(config.problem().unwrap_or_default()));
            }
            Ok(result) => result,
            Err(_) => Err(QueueError::Timeout(START_LIMIT)),
        };
        let next = watcher.judge(first, &self.inner);
        tokio::spawn(watcher.run(interval, next.unwrap_or(interval)));
        Ok(())
    }
}

struct Watcher {
    conn: Conn,
    health: Weak<Health>,
    told_refused: bool,
    told_volatile: bool,
}

impl Watcher {
    async fn run(mut self, interval: Duration, first: Duration) {
        let mut wait = first;
        loop {
            tokio::time::sleep(wait).await;
            let result = read(&self.conn).await;
            let Some(health) = self.health.upgrade() else {
                return;
            };
            wait = self.judge(result, &health).unwrap_or(interval);
        }
    }

    /// Logs what a check found and records it; `Some(delay)` asks to look again sooner.
    fn judge(
        &mut self,
        result: Result<Option<RedisConfig>, QueueError>,
        health: &Health,
    ) -> Option<Duration> {
        match result {
            Ok(Some(config)) => {
                let was_ok = health.ok.swap(config.keeps_jobs(), Relaxed);
                match config.problem() {
                    Some(problem) if health.mode == CheckMode::Strict => {
                        tracing::error!("{problem} (--redis-check strict: not ready until then)")
                    }
                    Some(problem) => tracing::warn!("{problem} (--redis-check warn)"),
                    None if !was_ok => {
                        tracing::info!("Redis maxmemory-policy is {SAFE_POLICY} again")
                    }
                    None => {}
                }
                if !config.persistent && !self.told_volatile {
                    self.told_volatile = true;
                    tracing::warn!(
                        "Redis has no persistence (appendonly no and no save points): a Redis \
                         restart loses every queued job"
                    );
                }
                None
            }
            Ok(None) => {
                if !self.told_refused {
                    self.told_refused = true;
                    tracing::warn!(
                        "could not check Redis's maxmemory-policy: CONFIG is refused (renamed or \
                         not permitted); make sure it is {SAFE_POLICY}"
                    );
                }
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not check the Redis configuration yet");
                Some(RETRY)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The modes parse from their flag values only.
    #[test]
    fn modes() {
        assert_eq!("strict".parse(), Ok(CheckMode::Strict));
        assert_eq!("warn".parse(), Ok(CheckMode::Warn));
        assert_eq!("off".parse(), Ok(CheckMode::Off));
        assert!("Strict".parse::<CheckMode>().is_err());
    }

    /// The problem line names the setting, its value and the fix.
    #[test]
    fn problem_line() {
        let bad = RedisConfig {
            policy: "allkeys-lru".into(),
            persistent: true,
        };
        let line = bad.problem().unwrap();
        assert!(line.contains("maxmemory-policy is allkeys-lru"), "{line}");
        assert!(line.contains("set maxmemory-policy noeviction"), "{line}");
        assert!(!line.contains('\n'));
        let good = RedisConfig {
            policy: SAFE_POLICY.into(),
            persistent: false,
        };
        assert_eq!(good.problem(), None);
    }

    /// The metric is 1 until a check finds an evicting policy; strict then is not ready.
    #[test]
    fn health_metric() {
        let health = ConfigHealth::new(CheckMode::Strict);
        let mut out = String::new();
        health.render(&mut out);
        assert!(out.contains("wa_redis_config_ok 1\n"), "{out}");
        health.inner.ok.store(false, Relaxed);
        assert!(!health.ready());
        let mut out = String::new();
        health.render(&mut out);
        assert!(out.contains("wa_redis_config_ok 0\n"), "{out}");
        let mut out = String::new();
        ConfigHealth::unchecked().render(&mut out);
        assert!(out.is_empty());
    }
}
