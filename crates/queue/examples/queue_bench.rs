//! Measures wa-queue throughput against a real Redis: enqueue jobs/s with 1 and 64 concurrent
//! producers (coalesced and not), drain jobs/s through `run` with a no-op handler, and the
//! Redis CPU each costs per job (from `INFO cpu`). A benchmark, not a test: it prints figures.
//!
//! Run with (release build; REDIS_URL defaults to redis://127.0.0.1:6379):
//!     cargo run -p wa-queue --release --example queue_bench -- [jobs] [payload-bytes]
//!
//! It uses a queue of its own (`bench-<random>`) and deletes its keys at the end (the dedup
//! markers included). `BENCH_VERBOSE=1` also prints Redis's time per command for each phase
//! (`INFO commandstats`); `BENCH_IN_FLIGHT=n` sets the producer's coalesced calls in flight;
//! `BENCH_RATE=n` stamps the jobs as if n notifications a second were sent (the dedup
//! markers' buckets fill as at that rate; default: stamped with the time they are enqueued).
//! Redis CPU includes everything that Redis does meanwhile: use a Redis of its own for clean
//! figures (`redis-server --port 6399 --save "" --appendonly no`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use wa_queue::{
    Consumer, ConsumerOptions, Handler, Job, JobKind, NewJob, Outcome, Producer, ProducerOptions,
    QueueName, RunOptions, run,
};

struct Noop;

impl Handler for Noop {
    async fn handle(&self, _job: &Job, _delivery: u32) -> Outcome {
        Outcome::Done
    }
}

async fn redis_cpu_us(c: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(c)
        .await
        .unwrap_or_default();
    let mut total = 0.0;
    for line in info.lines() {
        if let Some((k, v)) = line.split_once(':')
            && (k == "used_cpu_sys" || k == "used_cpu_user")
        {
            total += v.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    total * 1e6
}

/// `INFO commandstats` as (command, calls, usec).
async fn command_stats(c: &mut redis::aio::MultiplexedConnection) -> Vec<(String, f64, f64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(c)
        .await
        .unwrap_or_default();
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |k: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(k))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        out.push((name.to_owned(), field("calls="), field("usec=")));
    }
    out
}

/// With BENCH_VERBOSE set: where Redis spent its time in a phase, per job.
fn print_split(before: &[(String, f64, f64)], after: &[(String, f64, f64)], jobs: usize) {
    if std::env::var_os("BENCH_VERBOSE").is_none() {
        return;
    }
    for (name, calls, usec) in after {
        let (c0, u0) = before
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, c, u)| (*c, *u))
            .unwrap_or((0.0, 0.0));
        if calls - c0 > 0.0 {
            println!(
                "    {name:<16} {:>9} calls {:>7.2} us/call {:>6.2} us/job",
                calls - c0,
                (usec - u0) / (calls - c0),
                (usec - u0) / jobs as f64
            );
        }
    }
}

async fn delete_queue(c: &mut redis::aio::MultiplexedConnection, q: &QueueName) {
    let pattern = format!("{}*", q.base().replace('{', "\\{").replace('}', "\\}"));
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(c)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK").arg(keys).query_async(c).await.unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// This process's CPU time so far (user + system), us, from /proc (Linux; 0 elsewhere).
fn own_cpu_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) * 1e6 / 100.0
}

fn report(what: &str, jobs: usize, took: Duration, cpu_us: f64, own_us: f64) {
    println!(
        "{what:<40} {jobs:>7} jobs {:>6.2} s {:>8.0} jobs/s  redis cpu {:>5.2} us/job  bench cpu {:>5.2} us/job",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64(),
        cpu_us / jobs as f64,
        own_us / jobs as f64
    );
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `timestamp` of the next job: now, or with `BENCH_RATE=n` the time at which it would have
/// been sent at n notifications a second (from the bench's start, over every phase), so that
/// the dedup markers fill each minute's buckets as that rate would.
struct Clock {
    rate: u64,
    start: u64,
    sent: AtomicU64,
}

impl Clock {
    fn from_env() -> Self {
        let rate = std::env::var("BENCH_RATE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Self {
            rate,
            start: unix_seconds(),
            sent: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        match self.rate {
            0 => unix_seconds(),
            rate => self.start + self.sent.fetch_add(1, Ordering::Relaxed) / rate,
        }
    }
}

/// `tasks` producers, each enqueueing its share one job per call (as the ingress does for a
/// one-message webhook).
struct Bench {
    url: String,
    q: QueueName,
    c: redis::aio::MultiplexedConnection,
    payload: Box<RawValue>,
    clock: Arc<Clock>,
}

async fn enqueue_phase(b: &mut Bench, tag: &str, tasks: usize, jobs: usize, coalesce: bool) {
    let (url, q, c, payload) = (&b.url, &b.q, &mut b.c, &b.payload);
    let mut opts = ProducerOptions::default();
    opts.coalesce = coalesce;
    if let Some(n) = std::env::var("BENCH_IN_FLIGHT")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        opts.max_in_flight = n;
    }
    opts.timeout = Duration::from_secs(10);
    let producer = Producer::new(url, q.clone(), opts).unwrap();
    producer.ping().await.unwrap();
    // The text body, shared; each job's payload is built around it.
    let payload: Arc<str> = payload.get().trim_matches('"').into();
    let stats0 = command_stats(c).await;
    let cpu0 = redis_cpu_us(c).await;
    let own0 = own_cpu_us();
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let producer = producer.clone();
        let payload = payload.clone();
        let clock = b.clock.clone();
        let tag = tag.to_owned();
        let share = jobs / tasks;
        handles.push(tokio::spawn(async move {
            for i in 0..share {
                // Like Meta's: the wamid and the time it was sent (now, whole seconds) inside
                // the payload and in the envelope, then the text. The time sets the dedup
                // marker's bucket, so a faster run fills each minute's buckets deeper.
                let id = format!("{tag}-{t}-{i}");
                let sent = clock.next().to_string();
                let raw = RawValue::from_string(format!(
                    r#"{{"from":"15551234567","id":"{id}","timestamp":"{sent}","type":"text","text":{{"body":"{payload}"}}}}"#
                ))
                .unwrap();
                let mut job = NewJob::new(id, JobKind::Message, &raw);
                job.envelope.wamid = Some(job.id.clone());
                job.envelope.from = Some("15551234567".into());
                job.envelope.type_ = Some("text".into());
                job.envelope.timestamp = Some(sent.into());
                producer.enqueue(&[job]).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let took = start.elapsed();
    let own = own_cpu_us() - own0;
    let cpu = redis_cpu_us(c).await - cpu0;
    let label = format!(
        "enqueue, {tasks} producer(s){}",
        if coalesce {
            ", coalesced"
        } else {
            ", one call each"
        }
    );
    report(&label, jobs / tasks * tasks, took, cpu, own);
    print_split(&stats0, &command_stats(c).await, jobs / tasks * tasks);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let jobs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(500);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let q = QueueName::new(format!("bench-{:08x}", rand::random::<u32>())).unwrap();
    // A text of varied words, about `size` bytes.
    let words = [
        "hola", "order", "shoes", "tracking", "olá", "entrega", "blue", "#48213", "hi",
    ];
    let mut body = String::new();
    while body.len() < size.saturating_sub(90) {
        body.push_str(words[rand::random_range(0..words.len())]);
        body.push(' ');
    }
    let payload = RawValue::from_string(serde_json::to_string(&body).unwrap()).unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    // The payload is the text plus Meta's other fields, about 95 bytes.
    println!(
        "queue {} · {jobs} jobs · payload about {} bytes",
        q.name(),
        payload.get().len() + 95
    );

    // The record `Producer::retire_old_markers` writes for a queue without any v0.1.0 marker,
    // so that the enqueue script does not look for `seen:` keys (as at start-up of the
    // ingress); scripts from before the record ignore it.
    let _: () = redis::cmd("SET")
        .arg(format!("{}seen-until", q.base()))
        .arg(0)
        .query_async(&mut c)
        .await
        .unwrap();
    let mut b = Bench {
        url: url.clone(),
        q: q.clone(),
        c: c.clone(),
        payload,
        clock: Arc::new(Clock::from_env()),
    };
    enqueue_phase(&mut b, "a", 1, jobs / 10, true).await;
    enqueue_phase(&mut b, "b", 64, jobs, false).await;
    enqueue_phase(&mut b, "c", 64, jobs, true).await;

    let pending: usize = redis::cmd("LLEN")
        .arg(q.pending())
        .query_async(&mut c)
        .await
        .unwrap();
    let mut co = ConsumerOptions::default();
    co.batch = 1000;
    co.block = Duration::from_millis(200);
    let consumer = Consumer::connect(&url, q.clone(), co).await.unwrap();
    let mut ro = RunOptions::default();
    ro.concurrency = 2000;
    let counters = ro.counters().clone();
    let watch = counters.clone();
    let stop = async move {
        while watch.done() < pending as u64 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let stats0 = command_stats(&mut c).await;
    let cpu0 = redis_cpu_us(&mut c).await;
    let own0 = own_cpu_us();
    let start = Instant::now();
    run(consumer, Noop, ro, stop).await.unwrap();
    let took = start.elapsed();
    let own = own_cpu_us() - own0;
    let cpu = redis_cpu_us(&mut c).await - cpu0;
    report("drain, run() no-op handler", pending, took, cpu, own);
    print_split(&stats0, &command_stats(&mut c).await, pending);

    delete_queue(&mut c, &q).await;
}
