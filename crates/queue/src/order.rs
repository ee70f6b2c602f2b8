//! Order per sender: the mode every consumer of a queue must share.
//!
//! # How order is kept
//!
//! In ordered mode ([`ConsumerOptions::ordered`](crate::ConsumerOptions)) a sender (`from`,
//! else `from_user_id`) is *held* by at most one job at a time: the hash `holders` of each
//! shard maps the sender to that job's id. Taking a job of a free sender makes it the holder;
//! a job whose sender another job holds is set aside, in order, in the shard's list
//! `waiting:<sender>`. The hold outlives retries (the retrying job still holds it, and passes
//! when taken again), graceful returns and lease expiry (a reaped job keeps it too); it passes
//! to the sender's oldest waiting job, put back at the consumers' end of pending, only when the
//! holder is acknowledged or dead. All of this happens inside the scripts that take and settle
//! (`exchange.lua`, `release.lua`), on one shard's keys, so it is atomic and single-slot.
//!
//! # Why the mode is recorded
//!
//! A consumer that does not keep order would take a held sender's jobs out of turn, and would
//! acknowledge holders without passing their holds on, leaving that sender's waiting jobs
//! stranded. So the first ordered consumer records `<prefix>:{<name>}:ordered`, and refuses to
//! if consumers are already live (they cannot be ordered ones); a consumer that is not ordered
//! refuses to start while the record exists.

use std::time::Duration;

use crate::conn::{Conn, bounded};
use crate::{QueueError, QueueName};

/// Checks that this consumer's mode agrees with the queue's: an ordered consumer records the
/// mode (and refuses to be the first while other consumers are live), a consumer that is not
/// ordered refuses while the mode is recorded.
pub(crate) async fn check_order_mode(
    conn: &Conn,
    queue: &QueueName,
    ordered: bool,
    timeout: Duration,
) -> Result<(), QueueError> {
    let key = queue.ordered_key();
    let mut c = conn.clone();
    if !ordered {
        let recorded: Option<String> =
            bounded(timeout, redis::cmd("GET").arg(&key).query_async(&mut c)).await?;
        return match recorded {
            Some(_) => Err(QueueError::OrderedQueue { key }),
            None => Ok(()),
        };
    }
    let first: bool = bounded(
        timeout,
        redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("NX")
            .query_async::<Option<String>>(&mut c),
    )
    .await?
    .is_some();
    if !first {
        return Ok(());
    }
    let (secs, micros): (u64, u64) =
        bounded(timeout, redis::cmd("TIME").query_async(&mut c)).await?;
    let now_ms = secs * 1000 + micros / 1000;
    let mut live = 0u64;
    for shard in queue.shard_names() {
        live += bounded::<u64>(
            timeout,
            redis::cmd("ZCOUNT")
                .arg(shard.consumers())
                .arg(now_ms)
                .arg("+inf")
                .query_async(&mut c),
        )
        .await?;
    }
    if live > 0 {
        bounded::<()>(timeout, redis::cmd("DEL").arg(&key).query_async(&mut c)).await?;
        return Err(QueueError::UnorderedConsumers { live });
    }
    Ok(())
}
