//! The exchange: one script call that settles a lane's finished jobs by position, renews its
//! lease and takes the next jobs; the letters and arguments each finished job is sent as.

use crate::conn::bounded;
use crate::error::Unexpected;
use crate::job::{Job, now_ms, rewrite_dead, rewrite_retry};
use crate::script::EXCHANGE;
use crate::{QueueError, RedisFailure};

use super::delivery::Unreadable;
use super::lane::{Held, Lane};
use super::options::MAX_PER_CALL;
use super::{Consumer, Delivery, Outcome, Settled};

/// How a finished job leaves the processing list.
pub(super) enum Op {
    Ack,
    /// ordered mode: acknowledged, and the sender's hold released if this job has it
    Release {
        sender: String,
        id: String,
    },
    Retry {
        job: String,
        delay_ms: u64,
    },
    Dead {
        job: String,
    },
}

/// A finished job waiting to be settled: its exact element and what to do.
pub(super) struct Finish {
    pub(super) raw: Vec<u8>,
    pub(super) op: Op,
}

/// What one exchange did.
#[derive(Debug, Default)]
pub(crate) struct Exchanged {
    /// jobs taken, oldest first
    pub(crate) taken: Vec<Delivery>,
    /// settled by this call: (seq, how)
    pub(crate) settled: Vec<(u64, Settled)>,
    /// this call found the lane's lease lost (and that loss had not been reported yet)
    pub(crate) lease_lost: bool,
    /// outcomes handed in for jobs no longer in hand (reported, not settled)
    pub(crate) not_owned: usize,
}

/// An exchange's `eager` bound: finished jobs beyond the run at the list's old end are removed
/// by index once the list holds more than `eager` jobs (so a slow job at the old end cannot make
/// the list grow without bound). This value: never, only the run at the end is dropped.
pub(super) const NEVER_EAGER: usize = usize::MAX;

/// The exchange script's answer: a status and how many jobs it took.
pub(super) fn parse_exchange(v: &redis::Value) -> Result<(i64, usize), QueueError> {
    use redis::Value;
    let items = match v {
        Value::Array(items) => items.as_slice(),
        _ => &[],
    };
    match items {
        [Value::Int(status)] => Ok((*status, 0)),
        [Value::Int(status), Value::Int(n)] if *n >= 0 => Ok((*status, *n as usize)),
        _ => Err(RedisFailure::unexpected(Unexpected::ExchangeShape).into()),
    }
}

/// What one exchange settles and takes: the finished run at the list's old end (dropped by
/// count), the finished jobs beyond it removed by index (only once the list holds more than
/// `eager`), and how many jobs to take.
struct Plan {
    drop: usize,
    by_index: Vec<usize>,
    take: usize,
}

impl Plan {
    fn of(lane: &Lane, take: usize, eager: usize) -> Self {
        let drop = lane.held.iter().take_while(|h| h.done.is_some()).count();
        let by_index = if lane.held.len() > eager {
            (drop..lane.held.len())
                .filter(|&i| lane.held[i].done.is_some())
                .take(MAX_PER_CALL)
                .collect()
        } else {
            Vec::new()
        };
        Self {
            drop,
            by_index,
            take: take.min(MAX_PER_CALL),
        }
    }

    fn is_empty(&self) -> bool {
        self.drop == 0 && self.by_index.is_empty() && self.take == 0
    }

    /// The script's letters: `h` when a run is dropped, then `x` and the op of each job removed
    /// by index, then the op of each job of the run.
    fn letters(&self, lane: &Lane) -> String {
        let mut letters = String::with_capacity(1 + self.drop + 2 * self.by_index.len());
        if self.drop > 0 {
            letters.push('h');
        }
        for i in self.by_index.iter().copied() {
            letters.push('x');
            letters.push_str(op_letter(&finished(lane, i).op));
        }
        for i in 0..self.drop {
            letters.push_str(op_letter(&finished(lane, i).op));
        }
        letters
    }

    /// After the script did it: the settled jobs leave the mirror, and are reported.
    fn settled(&self, lane: &mut Lane, out: &mut Exchanged) {
        for i in self.by_index.iter().rev().copied() {
            let h = lane.held.remove(i).expect("held");
            out.settled.push((h.seq, settled_as(h.done.as_deref())));
        }
        for h in lane.held.drain(..self.drop) {
            out.settled.push((h.seq, settled_as(h.done.as_deref())));
        }
    }
}

/// The finished job at place `i` of the mirror.
fn finished(lane: &Lane, i: usize) -> &Finish {
    lane.held[i].done.as_deref().expect("finished")
}

/// The jobs just taken join the mirror and become deliveries; one that is not UTF-8 is held
/// as finished, bound for dead with the next call.
fn take_in(lane: &mut Lane, taken: Vec<Vec<u8>>, out: &mut Exchanged) {
    out.taken.reserve(taken.len());
    for raw in taken {
        let seq = lane.next_seq;
        lane.next_seq += 1;
        match String::from_utf8(raw) {
            Ok(raw) => {
                lane.held.push_back(Held { seq, done: None });
                out.taken.push(Delivery {
                    job: Job::parse_owned(raw).map_err(|(raw, why)| Unreadable { raw, why }),
                    lane: lane.index,
                    epoch: lane.epoch,
                    seq,
                });
            }
            Err(e) => {
                let raw = e.into_bytes();
                let text = String::from_utf8_lossy(&raw);
                let job = rewrite_dead(&text, None, "job is not UTF-8", now_ms());
                let op = Op::Dead { job };
                let done = Some(Box::new(Finish { raw, op }));
                lane.held.push_back(Held { seq, done });
            }
        }
    }
}

/// A job finished after this consumer gave it up (its lease was lost, or a call's outcome was
/// unknown): it is back in pending or with another worker, so its outcome is not settled here.
pub(super) fn report_not_owned(d: &Delivery, outcome: &Outcome) {
    let id = d.job.as_ref().map_or("(unreadable)", |j| j.id());
    let outcome = match outcome {
        Outcome::Done => "done",
        Outcome::Retry(..) | Outcome::RetryAfter(..) => "retry",
        Outcome::Dead(..) => "dead",
    };
    tracing::warn!(
        job_id = %id,
        attempt = d.number(),
        outcome,
        "finished a job this worker no longer holds (its lease was lost or given up): the \
         outcome is not settled here; the job went back to the queue"
    );
}

pub(super) fn op_letter(op: &Op) -> &'static str {
    match op {
        Op::Ack => "",
        Op::Release { .. } => "o",
        Op::Retry { .. } => "r",
        Op::Dead { .. } => "d",
    }
}

pub(super) fn op_args(c: &mut redis::Cmd, op: &Op) {
    match op {
        Op::Ack => {}
        Op::Release { sender, id } => {
            c.arg(sender).arg(id);
        }
        Op::Retry { job, delay_ms } => {
            c.arg(job).arg(*delay_ms);
        }
        Op::Dead { job } => {
            c.arg(job);
        }
    }
}

pub(super) fn settled_as(done: Option<&Finish>) -> Settled {
    match done.map(|f| &f.op) {
        Some(Op::Ack | Op::Release { .. }) => Settled::Acked,
        Some(Op::Retry { .. }) => Settled::Retried,
        Some(Op::Dead { .. }) => Settled::Dead,
        None => Settled::NotInHand,
    }
}

impl Consumer {
    /// What an outcome means for the list: unreadable jobs and used-up retries go to dead.
    /// Deliveries lost with their worker count towards `max_attempts` like failed ones.
    pub(super) fn op_for(&self, d: &Delivery, outcome: &Outcome) -> Op {
        let made = d.number();
        // `attempt` counts failed deliveries (this one included once it failed); `lost`
        // stays as the reaper left it
        let failed = d.job.as_ref().map_or(1, |j| j.attempt.saturating_add(1));
        let dead = |error: &str| {
            let attempt = d.job.as_ref().ok().map(|_| failed);
            Op::Dead {
                job: rewrite_dead(d.raw(), attempt, error, now_ms()),
            }
        };
        let (reason, delay) = match (&d.job, outcome) {
            (Err(u), _) => return dead(&u.why),
            (Ok(job), Outcome::Done) => return self.ack_op(job),
            (Ok(_), Outcome::Dead(e)) => return dead(e),
            (Ok(_), Outcome::Retry(e)) => (e, self.opts.jittered(made)),
            (Ok(_), Outcome::RetryAfter(e, after)) => (e, (*after).min(self.opts.backoff_max)),
        };
        if made >= self.opts.max_attempts {
            let lost = made - failed;
            let plural = if made == 1 { "y" } else { "ies" };
            return dead(&if lost > 0 {
                format!("{reason} (after {made} deliver{plural}, {lost} lost with their worker)")
            } else {
                format!("{reason} (after {made} deliver{plural})")
            });
        }
        match rewrite_retry(d.raw(), failed, reason) {
            Some(job) => Op::Retry {
                job,
                delay_ms: delay.as_millis() as u64,
            },
            None => dead(reason),
        }
    }

    /// How an acknowledged job leaves: in ordered mode it hands its sender's hold on.
    pub(super) fn ack_op(&self, job: &Job) -> Op {
        if !self.opts.ordered {
            return Op::Ack;
        }
        match job.from().or(job.from_user_id()) {
            Some(sender) => Op::Release {
                sender: sender.to_owned(),
                id: job.id().to_owned(),
            },
            None => Op::Ack,
        }
    }

    /// One round trip: settles the finished jobs at the old end of the list (and, once the list
    /// holds more than `eager` jobs, every other finished one by its index), renews the lease
    /// and takes up to `take` jobs. Jobs that are not UTF-8 are marked dead on arrival and
    /// settled by the next exchange.
    pub(super) async fn exchange_locked(
        &self,
        lane: &mut Lane,
        take: usize,
        eager: usize,
    ) -> Result<Exchanged, QueueError> {
        self.prepare(lane).await?;
        let plan = Plan::of(lane, take, eager);
        let mut out = Exchanged::default();
        if plan.is_empty() {
            return Ok(out);
        }
        // Until the answer is in, the list is unknown: a failed or cancelled call leaves it so,
        // and the next call gives this id up.
        lane.sync = false;
        let (status, taken) = self.call_exchange(lane, &plan).await?;
        match status {
            1 => {}
            0 => {
                let id = lane.id.clone();
                out.lease_lost = self.report_lost_lease(lane.index, &id);
                self.rotate(lane);
                return Ok(out);
            }
            _ => {
                tracing::warn!(consumer = %lane.id, "processing list is not as this consumer left it; returning it to pending and taking a new id");
                return Ok(out);
            }
        }
        plan.settled(lane, &mut out);
        take_in(lane, taken, &mut out);
        lane.sync = true;
        Ok(out)
    }

    /// Sends the exchange script for `plan` (and, when it takes jobs, the `LRANGE` that reads
    /// them back right behind it); the script's status and the jobs taken, oldest first.
    async fn call_exchange(
        &self,
        lane: &Lane,
        plan: &Plan,
    ) -> Result<(i64, Vec<Vec<u8>>), QueueError> {
        let letters = plan.letters(lane);
        let lease_ms = self.opts.lease.as_millis() as u64;
        let expected = lane.held.len();
        let keys = &self.shards[lane.shard];
        let nkeys = if keys.order.is_some() { 8 } else { 6 };
        let (drop, take) = (plan.drop, plan.take);
        let finish = |i: usize| finished(lane, i);
        let fill = |c: &mut redis::Cmd| {
            c.arg(&keys.pending)
                .arg(&lane.processing)
                .arg(&keys.consumers)
                .arg(&keys.delayed)
                .arg(&keys.dead)
                .arg(&lane.taking);
            keys.order_keys(c);
            c.arg(&*lane.id)
                .arg(lease_ms)
                .arg(expected)
                .arg(drop)
                .arg(take)
                .arg(&letters);
            if drop > 0 {
                c.arg(finish(0).raw.as_slice())
                    .arg(finish(drop - 1).raw.as_slice());
            }
            for i in plan.by_index.iter().copied() {
                c.arg(i).arg(finish(i).raw.as_slice());
                op_args(c, &finish(i).op);
            }
            for i in 0..drop {
                op_args(c, &finish(i).op);
            }
        };
        let mut c = self.lanes[lane.index].conn.clone();
        let (answer, mut taken) = if take > 0 {
            // the jobs taken are read back with a plain LRANGE right behind the script
            let read = redis::cmd("LRANGE")
                .arg(&lane.processing)
                .arg(0)
                .arg(take - 1)
                .to_owned();
            let call = EXCHANGE.call_then::<Vec<Vec<u8>>>(&mut c, nkeys, fill, &read);
            bounded(self.opts.op_timeout, call).await?
        } else {
            let call = EXCHANGE.call::<redis::Value>(&mut c, nkeys, fill);
            (bounded(self.opts.op_timeout, call).await?, Vec::new())
        };
        let (status, n) = parse_exchange(&answer)?;
        if status == 1 && n > taken.len() {
            return Err(RedisFailure::unexpected(Unexpected::ShortProcessing).into());
        }
        // newest first as read; deliver (and mirror) oldest first
        taken.truncate(n);
        taken.reverse();
        Ok((status, taken))
    }

    /// For [`run`](crate::run): records `finished` outcomes and exchanges (see
    /// `exchange_locked`).
    pub(crate) async fn exchange(
        &self,
        lane: usize,
        finished: Vec<(Box<Delivery>, Outcome)>,
        take: usize,
        eager: usize,
    ) -> Result<Exchanged, QueueError> {
        let mut lane = self.lanes[lane].lane.lock().await;
        let mut not_owned = 0;
        for (mut d, outcome) in finished {
            let in_hand = Self::mark(&mut lane, (d.epoch, d.seq), || {
                let op = self.op_for(&d, &outcome);
                let raw = d.take_raw();
                Finish { raw, op }
            });
            if !in_hand {
                not_owned += 1;
                report_not_owned(&d, &outcome);
            }
        }
        let mut out = self.exchange_locked(&mut lane, take, eager).await?;
        out.not_owned = not_owned;
        Ok(out)
    }
}
