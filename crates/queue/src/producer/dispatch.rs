//! The dispatcher: one shard's waiting requests coalesced into one enqueue script call, and
//! the call itself (with `WAIT` behind it when replicas must confirm).

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Enqueued, ProducerOptions};
use crate::conn::Conn;
use crate::dedup::Marker;
use crate::error::Unexpected;
use crate::script::{ENQUEUE, Size, redis_err};
use crate::{QueueError, RedisFailure};

/// Requests a shard's dispatcher holds at most before callers wait.
pub(super) const DISPATCH_QUEUE: usize = 4096;

/// Where a [`Request`]'s answer arrives.
pub(super) type Reply = oneshot::Receiver<Result<Vec<Enqueued>, QueueError>>;

/// One shard's part of an `enqueue` call, encoded, waiting for the dispatcher.
pub(super) struct Request {
    pub(super) jobs: Vec<Vec<u8>>,
    /// each job's marker TTL, seconds
    pub(super) ttls: Vec<u64>,
    pub(super) marks: Vec<Marker>,
    pub(super) bytes: usize,
    pub(super) reply: oneshot::Sender<Result<Vec<Enqueued>, QueueError>>,
}

/// `enqueue.lua`'s arguments after the dedup base, for the jobs of `parts` in order: the runs
/// of jobs that share a slot and a marker TTL (`<jobs>:<ttl>:<slot>`, separated by spaces),
/// then two per job, its JSON and its marker. The TTL and the slot go once per run rather
/// than once per job: each argument costs Redis a parse and a Lua string, and the jobs of one
/// call nearly always share both.
pub(super) fn job_args(c: &mut redis::Cmd, parts: &[Request]) {
    let mut runs = String::new();
    let mut run: Option<(u64, &str, usize)> = None;
    let each = parts.iter().flat_map(|r| {
        r.ttls
            .iter()
            .zip(&r.marks)
            .map(|(t, m)| (*t, m.slot.as_str()))
    });
    for (ttl, slot) in each {
        match &mut run {
            Some((t, s, jobs)) if *t == ttl && *s == slot => *jobs += 1,
            _ => {
                if let Some(done) = run.replace((ttl, slot, 1)) {
                    push_run(&mut runs, done);
                }
            }
        }
    }
    if let Some(done) = run {
        push_run(&mut runs, done);
    }
    c.arg(runs);
    for r in parts {
        for (json, mark) in r.jobs.iter().zip(&r.marks) {
            c.arg(json).arg(&mark.digest);
        }
    }
}

/// Appends one run, `<jobs>:<ttl>:<slot>`, to `runs`.
fn push_run(runs: &mut String, (ttl, slot, jobs): (u64, &str, usize)) {
    use std::fmt::Write;
    if !runs.is_empty() {
        runs.push(' ');
    }
    let _ = write!(runs, "{jobs}:{ttl}:{slot}");
}

/// About what the keys and [`job_args`] of `jobs` jobs of `bytes` bytes of JSON take in a
/// command: two keys, the runs, two arguments per job, and each job's JSON with a marker and
/// its share of the runs.
pub(super) fn args_size(jobs: usize, bytes: usize) -> Size {
    Size {
        args: 3 + 2 * jobs,
        bytes: 128 + bytes + 40 * jobs,
    }
}

/// Each job's outcome from the script's answer, one byte per job: `1` new, `0` duplicate.
pub(super) fn outcomes(out: &[u8], expected: usize) -> Result<Vec<Enqueued>, QueueError> {
    if out.len() != expected {
        return Err(RedisFailure::unexpected(Unexpected::EnqueueCount {
            got: out.len(),
            expected,
        })
        .into());
    }
    out.iter()
        .map(|b| match b {
            b'1' => Ok(Enqueued::New),
            b'0' => Ok(Enqueued::Duplicate),
            _ => Err(RedisFailure::unexpected(Unexpected::EnqueueAnswer).into()),
        })
        .collect()
}

/// The dispatcher: take what is waiting now, send it as one call, repeat; at most
/// `max_in_flight` calls outstanding. Ends when every `Producer` clone is gone.
pub(super) async fn dispatch(
    mut rx: mpsc::Receiver<Request>,
    conn: Conn,
    [pending, dedup]: [String; 2],
    opts: ProducerOptions,
) {
    let in_flight = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
    let pending: Arc<str> = pending.into();
    let dedup: Arc<str> = dedup.into();
    let mut carry: Option<Request> = None;
    loop {
        // Waiting for a free slot first lets requests pile up meanwhile: that is the batching.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let first = match carry.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        let (mut jobs, mut bytes) = (first.jobs.len(), first.bytes);
        let mut batch = vec![first];
        while jobs < opts.max_batch && bytes < opts.max_batch_bytes {
            match rx.try_recv() {
                Ok(r) => {
                    if jobs + r.jobs.len() > opts.max_batch
                        || bytes + r.bytes > opts.max_batch_bytes
                    {
                        carry = Some(r);
                        break;
                    }
                    jobs += r.jobs.len();
                    bytes += r.bytes;
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let conn = conn.clone();
        let pending = pending.clone();
        let dedup = dedup.clone();
        let opts = opts.clone();
        tokio::spawn(async move {
            send_batch(conn, [&pending, &dedup], &opts, batch).await;
            drop(permit);
        });
    }
}

async fn send_batch(
    mut conn: Conn,
    [pending, dedup]: [&str; 2],
    opts: &ProducerOptions,
    mut batch: Vec<Request>,
) {
    // A caller that gave up (timed out, request cancelled) already answered its client: do
    // not enqueue its jobs behind its back.
    batch.retain(|r| !r.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let total: usize = batch.iter().map(|r| r.jobs.len()).sum();
    let fill = |c: &mut redis::Cmd| {
        c.arg(pending).arg(dedup);
        job_args(c, &batch);
    };
    let bytes: usize = batch.iter().map(|r| r.bytes).sum();
    let result = call_enqueue(&mut conn, opts, 1, args_size(total, bytes), fill).await;
    match result {
        Ok(out) if out.len() == total => {
            let mut at = 0;
            for r in batch {
                let n = r.jobs.len();
                let _ = r.reply.send(outcomes(&out[at..at + n], n));
                at += n;
            }
        }
        Ok(out) => {
            for r in batch {
                let _ = r.reply.send(outcomes(&out, total));
            }
        }
        Err(e) => {
            for r in batch {
                let _ = r.reply.send(Err(e.clone()));
            }
        }
    }
}

/// One enqueue script call; with `min_replicas` > 0, `WAIT` right behind it on the same
/// connection (one round trip), and an error unless enough replicas acknowledged.
///
/// `WAIT` counts the replicas that hold every write this connection made so far, so it also
/// covers a duplicate whose original write went out earlier on this connection, and an answer
/// of 0 after a failover (a new connection, no write yet) asks for nothing stale.
pub(super) async fn call_enqueue(
    conn: &mut Conn,
    opts: &ProducerOptions,
    nkeys: usize,
    size: Size,
    fill: impl Fn(&mut redis::Cmd),
) -> Result<Vec<u8>, QueueError> {
    if opts.min_replicas == 0 {
        return ENQUEUE
            .call_sized(conn, nkeys, size, fill)
            .await
            .map_err(redis_err);
    }
    // Within the call's own timeout, so that too few replicas read as such, not as a timeout.
    let wait = redis::cmd("WAIT")
        .arg(opts.min_replicas)
        .arg((opts.timeout * 3 / 4).as_millis().max(1) as u64)
        .to_owned();
    let (answer, replicas): (redis::Value, u32) = ENQUEUE
        .call_then(conn, nkeys, fill, &wait)
        .await
        .map_err(redis_err)?;
    if replicas < opts.min_replicas {
        return Err(QueueError::NotReplicated {
            wanted: opts.min_replicas,
            got: replicas,
        });
    }
    redis::from_redis_value(answer).map_err(|e| RedisFailure::enqueue_answer(e).into())
}
