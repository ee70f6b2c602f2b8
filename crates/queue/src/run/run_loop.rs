//! The run loop as a type: its state is the fields of [`RunLoop`], each turn of the loop a few
//! named steps (collect what finished, start calls, start waits, wait for the next event, act
//! on it), and the end ([`RunLoop::finish`]) settles what it can and gives the rest back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::deadlines::{Deadlines, after};
use super::handle::{Finished, handle, handle_in_loop, poll_now};
use super::pause::Pause;
use super::{Counters, RunOptions, count};
use crate::consumer::Exchanged;
use crate::{Consumer, Delivery, Handler, Outcome, QueueError};

/// Failed calls while stopping after which the loop gives up settling (the jobs in hand then
/// go back to pending with the consumer's close).
const STOPPING_FAILURES_MAX: u32 = 3;

/// One exchange on the wire: its lane, the slots it asked for, and its answer.
type Call = Pin<Box<dyn Future<Output = (usize, usize, Result<Exchanged, QueueError>)> + Send>>;
/// One handler's run in the loop's own set, with its batch's number (see `handle_in_loop`).
type InLoop = Pin<Box<dyn Future<Output = (u64, Finished)> + Send>>;
/// One blocking wait for work on the wire: its shard, and whether work came.
type Wait = Pin<Box<dyn Future<Output = (usize, Result<bool, QueueError>)> + Send>>;

/// What woke the loop.
enum Event {
    Shutdown,
    Answer(usize, usize, Result<Exchanged, QueueError>),
    Finished(Finished),
    /// a handler of the loop's own set finished: its batch, and the job
    FinishedInLoop(u64, Finished),
    /// a batch of the loop's own set of handlers ran out of time
    OverTime,
    Work(usize, Result<bool, QueueError>),
    PauseOver,
    GraceOver,
}

/// Whether the loop goes on.
enum Flow {
    Go,
    Stop,
}

/// The state of one [`run`](super::run)'s loop.
pub(super) struct RunLoop<H> {
    consumer: Arc<Consumer>,
    handler: Arc<H>,
    counters: Arc<Counters>,
    handler_timeout: Duration,
    shutdown_grace: Duration,
    concurrency: usize,
    batch: usize,
    /// Finished jobs wait for older ones still running (to be dropped from the list's end by
    /// count) until the list holds this many; beyond, they are removed by index.
    eager: usize,
    /// on a one-thread runtime the handlers run inside the loop's own task (`local`); with
    /// more threads each is a task of its own (`tasks`) and sends its outcome on `tx`
    one_thread: bool,
    tx: mpsc::UnboundedSender<Finished>,
    rx: mpsc::UnboundedReceiver<Finished>,
    tasks: JoinSet<()>,
    local: FuturesUnordered<InLoop>,
    /// the time limit of the handlers in `local`, one deadline per batch
    deadlines: Deadlines,
    /// handlers started whose outcome has not come back yet
    running: usize,
    /// outcomes waiting for their lane's next call
    finished: Vec<Vec<Finished>>,
    /// one call on the wire per lane at most; `reserved` handler slots are asked for by them
    busy: Vec<bool>,
    reserved: usize,
    calls: FuturesUnordered<Call>,
    /// after a failed call, no new call for a while
    pause: Pause,
    stopping: bool,
    grace_end: Option<Instant>,
    failures_stopping: u32,
    /// per shard: the last call found its pending empty: take nothing there until its
    /// blocking wait says otherwise
    idle: Vec<bool>,
    /// the blocking waits on the wire, and which shards have one
    waits: FuturesUnordered<Wait>,
    waiting: Vec<bool>,
    /// shards are offered free slots in turn from here, so that none starves (the lanes of
    /// one shard in their order, as without shards: the second only while the first is busy)
    first_shard: usize,
}

impl<H: Handler> RunLoop<H> {
    pub(super) fn new(consumer: Arc<Consumer>, handler: H, opts: &RunOptions) -> Self {
        let concurrency = opts.concurrency.max(1);
        let batch = consumer.options().batch.max(1);
        let (lanes, shards) = (consumer.lanes(), consumer.shards());
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            handler: Arc::new(handler),
            counters: opts.counters().clone(),
            handler_timeout: opts.handler_timeout,
            shutdown_grace: opts.shutdown_grace,
            concurrency,
            batch,
            eager: concurrency + batch,
            one_thread: tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::CurrentThread,
            tx,
            rx,
            tasks: JoinSet::new(),
            local: FuturesUnordered::new(),
            deadlines: Deadlines::new(),
            running: 0,
            finished: (0..lanes).map(|_| Vec::new()).collect(),
            busy: vec![false; lanes],
            reserved: 0,
            calls: FuturesUnordered::new(),
            pause: Pause::new(),
            stopping: false,
            grace_end: None,
            failures_stopping: 0,
            idle: vec![false; shards],
            waits: FuturesUnordered::new(),
            waiting: vec![false; shards],
            first_shard: 0,
            consumer,
        }
    }

    /// Runs until `shutdown` resolves and everything in hand is settled, or the grace period
    /// ends, or settling fails while stopping.
    pub(super) async fn drive(&mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            self.collect_finished();
            self.start_calls();
            if self.stopping
                && self.running == 0
                && self.calls.is_empty()
                && self.finished.iter().all(Vec::is_empty)
            {
                break;
            }
            self.start_waits();
            let flow = match self.next_event(shutdown.as_mut()).await {
                Event::Shutdown => {
                    self.stopping = true;
                    self.grace_end = Some(after(self.shutdown_grace));
                    Flow::Go
                }
                Event::Answer(lane, take, r) => self.on_answer(lane, take, r).await,
                Event::Finished(f) => {
                    self.on_finished(f);
                    Flow::Go
                }
                Event::FinishedInLoop(batch, f) => {
                    self.on_finished_in_loop(batch, f);
                    Flow::Go
                }
                Event::OverTime => {
                    self.on_over_time();
                    Flow::Go
                }
                Event::Work(shard, r) => {
                    self.on_work(shard, r);
                    Flow::Go
                }
                Event::PauseOver => Flow::Go,
                Event::GraceOver => {
                    tracing::warn!(
                        still_running = self.running,
                        "shutdown grace over; abandoning handlers"
                    );
                    self.tasks.abort_all();
                    self.local.clear();
                    Flow::Stop
                }
            };
            if let Flow::Stop = flow {
                break;
            }
        }
    }

    /// Takes in the outcomes that came back, forgets the tasks that ended and ends a pause
    /// that is over.
    fn collect_finished(&mut self) {
        while let Ok(f) = self.rx.try_recv() {
            self.on_finished(f);
        }
        // Handlers run in the loop's task that finished since it last looked (polled with a
        // waker that does nothing: the wait for the next event polls the set again with the
        // loop's own, before it sleeps).
        while let Some(Some((batch, f))) = self.local.next().now_or_never() {
            self.on_finished_in_loop(batch, f);
        }
        while self.tasks.try_join_next().is_some() {}
        self.pause.end_if_over();
    }

    fn on_finished(&mut self, f: Finished) {
        self.running -= 1;
        self.finished[f.0.lane()].push(f);
    }

    fn on_finished_in_loop(&mut self, batch: u64, f: Finished) {
        self.deadlines.finished(batch);
        self.on_finished(f);
    }

    /// A batch's deadline passed: its handlers still running are marked over time, and every
    /// handler of the set is polled again (a set polls only what was woken, and one that is
    /// over time may wait for nothing that will wake it); those over time end as timeouts.
    fn on_over_time(&mut self) {
        if self.deadlines.expire(Instant::now()) {
            for h in std::mem::take(&mut self.local) {
                self.local.push(h);
            }
        }
    }

    /// Starts a call on every lane that is free and has outcomes to settle or slots to fill,
    /// the shards' lanes in turn.
    fn start_calls(&mut self) {
        let shards = self.consumer.shards();
        let per_shard = self.consumer.lanes() / shards;
        let first = self.first_shard;
        let order = (first..first + shards)
            .flat_map(|s| (0..per_shard).map(move |k| k * shards + s % shards));
        for lane in order {
            if self.busy[lane] || self.pause.is_on() {
                continue;
            }
            let take = self.slots_for(lane);
            if take == 0 && self.finished[lane].is_empty() {
                continue;
            }
            // With a call on the wire already, let work pile up for this one: a call per
            // handful of jobs would cost more round trips than it saves waiting. Half a batch
            // (or half of all the slots, when there are fewer) is worth a call of its own.
            let worth =
                take.max(self.finished[lane].len()) >= self.batch.min(self.concurrency).div_ceil(2);
            if !self.calls.is_empty() && !worth && !self.stopping {
                continue;
            }
            self.start_call(lane, take);
        }
    }

    /// The jobs lane `lane` may take now: none while stopping or while its shard is idle.
    fn slots_for(&self, lane: usize) -> usize {
        if self.stopping || self.idle[self.consumer.lane_shard(lane)] {
            0
        } else {
            self.concurrency
                .saturating_sub(self.running + self.reserved)
                .min(self.batch)
        }
    }

    fn start_call(&mut self, lane: usize, take: usize) {
        self.busy[lane] = true;
        self.first_shard = self.consumer.lane_shard(lane) + 1;
        self.reserved += take;
        let outcomes = std::mem::take(&mut self.finished[lane]);
        let (c, eager) = (self.consumer.clone(), self.eager);
        let mut call: Call = Box::pin(async move {
            let r = c.exchange(lane, outcomes, take, eager).await;
            (lane, take, r)
        });
        // Poll it once now, so its request is on the wire before this task goes on to the
        // other lane's answer (turning that into deliveries takes a while). The set polls it
        // again with its own waker.
        match poll_now(call.as_mut()) {
            Poll::Pending => self.calls.push(call),
            Poll::Ready(done) => self.calls.push(Box::pin(std::future::ready(done))),
        }
    }

    /// With free slots and a shard found empty, a blocking wait for work there (none while
    /// stopping).
    fn start_waits(&mut self) {
        if self.stopping {
            self.waits.clear();
            self.waiting.fill(false);
            return;
        }
        if self.pause.is_on() || self.running >= self.concurrency {
            return;
        }
        let lanes = self.consumer.lanes();
        for shard in 0..self.consumer.shards() {
            let shard_busy =
                (0..lanes).any(|l| self.busy[l] && self.consumer.lane_shard(l) == shard);
            if self.idle[shard] && !self.waiting[shard] && !shard_busy {
                self.waiting[shard] = true;
                let c = self.consumer.clone();
                self.waits.push(Box::pin(
                    async move { (shard, c.wait_for_work(shard).await) },
                ));
            }
        }
    }

    /// Waits for a call's answer, a handler to finish, shutdown, the end of a pause or of the
    /// grace period, or work in a shard found empty.
    async fn next_event(&mut self, mut shutdown: Pin<&mut impl Future<Output = ()>>) -> Event {
        let grace = sleep_until(self.grace_end);
        let pause = sleep_until(self.pause.until());
        tokio::select! {
            biased;
            _ = &mut shutdown, if !self.stopping => Event::Shutdown,
            Some((lane, take, r)) = self.calls.next() => Event::Answer(lane, take, r),
            Some(f) = self.rx.recv() => Event::Finished(f),
            Some((batch, f)) = self.local.next(), if !self.local.is_empty() => Event::FinishedInLoop(batch, f),
            Some((shard, r)) = self.waits.next(), if !self.waits.is_empty() => Event::Work(shard, r),
            _ = self.deadlines.passed(), if self.deadlines.any() => Event::OverTime,
            _ = pause => Event::PauseOver,
            _ = grace => Event::GraceOver,
        }
    }

    /// A call answered: count what it settled and start the jobs it took, or pause after a
    /// failure.
    async fn on_answer(
        &mut self,
        lane: usize,
        take: usize,
        r: Result<Exchanged, QueueError>,
    ) -> Flow {
        self.busy[lane] = false;
        self.reserved -= take;
        let x = match r {
            Ok(x) => x,
            Err(e) => return self.on_failed_call(e),
        };
        self.pause.reset();
        count(&self.counters, &x);
        if take > 0 {
            self.idle[self.consumer.lane_shard(lane)] = x.taken.len() < take;
        }
        // the handlers of this batch start now, so they share one deadline
        let batch = (self.one_thread && !x.taken.is_empty())
            .then(|| self.deadlines.open(after(self.handler_timeout)));
        for d in x.taken {
            self.start_handler(lane, d, batch);
        }
        self.deadlines.trim();
        // Let the new handlers start before looking at the other lane's answer: quick ones
        // finish now, and their outcomes go out with this lane's next call while Redis still
        // has the other lane's to answer.
        tokio::task::yield_now().await;
        Flow::Go
    }

    fn on_failed_call(&mut self, e: QueueError) -> Flow {
        self.counters.redis_errors.fetch_add(1, Relaxed);
        tracing::warn!(error = %e, retry_in = ?self.pause.next(), "call to redis failed");
        if self.stopping {
            self.failures_stopping += 1;
            if self.failures_stopping >= STOPPING_FAILURES_MAX {
                tracing::warn!("giving up settling; jobs in hand go back to pending");
                return Flow::Stop;
            }
        }
        self.pause.start();
        Flow::Go
    }

    /// Runs the handler on a job just taken (of `batch` on a one-thread runtime); a job that
    /// could not be read goes to dead.
    fn start_handler(&mut self, lane: usize, d: Delivery, batch: Option<u64>) {
        if let Err(why) = d.job() {
            let why = why.to_owned();
            self.finished[lane].push((Box::new(d), Outcome::Dead(why)));
            return;
        }
        self.running += 1;
        let (handler, d, limit) = (self.handler.clone(), Box::new(d), self.handler_timeout);
        let Some(batch) = batch else {
            // With more threads, handlers spread over them, each with a timer of its own.
            let job = handle(handler, d, limit);
            let tx = self.tx.clone();
            self.tasks.spawn(async move {
                let _ = tx.send(job.await);
            });
            return;
        };
        // On one thread, a handler that finishes on its first poll (a no-op, one that only
        // updates memory) is run right here, and its outcome goes out with this lane's next
        // call, so that call leaves the list empty and takes the cheap way (see exchange.lua).
        // One that waits joins the loop's own set of handlers: no task of its own to set up,
        // schedule and join, and no channel to send its outcome through.
        let mut job: InLoop = Box::pin(handle_in_loop(
            handler,
            d,
            limit,
            self.deadlines.overdue(batch),
        ));
        match poll_now(job.as_mut()) {
            Poll::Ready((_, f)) => self.on_finished(f),
            Poll::Pending => {
                self.deadlines.joined(batch);
                self.local.push(job);
            }
        }
    }

    /// A blocking wait ended: its shard may have work again.
    fn on_work(&mut self, shard: usize, r: Result<bool, QueueError>) {
        self.waiting[shard] = false;
        self.idle[shard] = false;
        if let Err(e) = r {
            self.counters.redis_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, retry_in = ?self.pause.next(), "waiting for work failed");
            self.pause.start();
        }
    }

    /// After the loop: stops what still runs, settles the outcomes that came in last (or were
    /// left by an abandoned loop) and returns every job still in hand to pending; how many
    /// went back.
    pub(super) async fn finish(mut self) -> Result<usize, QueueError> {
        self.waits.clear();
        self.calls.clear();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        while let Ok(f) = self.rx.try_recv() {
            self.finished[f.0.lane()].push(f);
        }
        while let Some(Some((_, f))) = self.local.next().now_or_never() {
            self.finished[f.0.lane()].push(f);
        }
        self.local.clear();
        for (lane, outcomes) in std::mem::take(&mut self.finished).into_iter().enumerate() {
            if outcomes.is_empty() {
                continue;
            }
            match self.consumer.exchange(lane, outcomes, 0, 0).await {
                Ok(x) => count(&self.counters, &x),
                Err(e) => {
                    self.counters.redis_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "could not settle the last outcomes; those jobs go back to pending");
                }
            }
        }
        self.consumer.close().await.inspect_err(|_| {
            self.counters.redis_errors.fetch_add(1, Relaxed);
        })
    }
}

/// Sleeps until `t`; never ends without one.
async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
