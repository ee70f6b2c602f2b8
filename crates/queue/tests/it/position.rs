//! Settling by position (the exchange script) and the ways the consumer's mirror of its
//! processing list could go wrong: out-of-order finishes, a lost lease, a list changed behind
//! its back, cancelled calls, an abandoned wait. Plus the portable fetch and settle scripts,
//! which the consumer itself no longer runs. Over 400 lines because every test here checks the
//! processing list against the consumer's mirror of it, with the list helpers they share.

use std::collections::HashSet;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use wa_queue::{
    Consumer, Delivery, Enqueued, Outcome, Producer, ProducerOptions, SCRIPTS, Settled,
};

use crate::support::{
    assert_only_markers_left, cleanup, conn, fast_opts, job, keys, payload, queue, redis_url,
};

async fn enqueue(producer: &Producer, prefix: &str, n: usize) -> Vec<String> {
    let p = payload(0);
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let jobs: Vec<_> = ids.iter().map(|id| job(id.clone(), &p)).collect();
    let out = producer.enqueue(&jobs).await.unwrap();
    assert!(out.iter().all(|e| *e == Enqueued::New));
    ids
}

fn id_of(d: &Delivery) -> String {
    d.job().unwrap().id().to_owned()
}

/// Records the ids of `got` in `seen` and acknowledges them all in one call.
async fn ack_all(
    consumer: &Consumer,
    got: &[Delivery],
    seen: &mut HashSet<String>,
) -> Vec<Settled> {
    seen.extend(got.iter().map(id_of));
    let done: Vec<_> = got.iter().map(|d| (d, &Outcome::Done)).collect();
    consumer.settle(&done).await.unwrap()
}

async fn lrange(url: &str, key: &str) -> Vec<String> {
    let mut c = conn(url).await;
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// The ids in a list, rightmost (oldest) first.
fn ids_right_first(raws: &[String]) -> Vec<String> {
    raws.iter().rev().map(|r| job_id(r)).collect()
}

fn job_id(raw: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// Jobs settled out of order are removed by index, each exactly the one meant, and the
/// processing list keeps the rest in order; the answers say what happened to each.
#[tokio::test]
async fn out_of_order_settles_remove_exactly_those_jobs() {
    let url = redis_url();
    let q = queue("pos-order");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let ids = enqueue(&producer, "o", 6).await;
    let consumer = Consumer::connect(&url, q.clone(), fast_opts())
        .await
        .unwrap();
    let got = consumer.fetch(6).await.unwrap();
    assert_eq!(got.iter().map(id_of).collect::<Vec<_>>(), ids);
    let list = q.processing(&consumer.id());

    // the third and the fifth, one acked and one dead
    let res = consumer
        .settle(&[
            (&got[2], &Outcome::Done),
            (&got[4], &Outcome::Dead("bad".into())),
        ])
        .await
        .unwrap();
    assert_eq!(res, vec![Settled::Acked, Settled::Dead]);
    let left = ids_right_first(&lrange(&url, &list).await);
    assert_eq!(left, vec!["o0", "o1", "o3", "o5"]);

    // settling one again does nothing
    let again = consumer.settle(&[(&got[2], &Outcome::Done)]).await.unwrap();
    assert_eq!(again, vec![Settled::NotInHand]);

    // the oldest two (one retried): dropped from the end by count
    let res = consumer
        .settle(&[
            (&got[1], &Outcome::Retry("later".into())),
            (&got[0], &Outcome::Done),
        ])
        .await
        .unwrap();
    assert_eq!(res, vec![Settled::Retried, Settled::Acked]);
    let left = ids_right_first(&lrange(&url, &list).await);
    assert_eq!(left, vec!["o3", "o5"]);
    let dead = lrange(&url, &q.dead()).await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].contains("\"id\":\"o4\""));
    let mut c = conn(&url).await;
    let delayed: Vec<String> = redis::cmd("ZRANGE")
        .arg(q.delayed())
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(delayed.len(), 1);
    assert!(delayed[0].contains("\"id\":\"o1\"") && delayed[0].contains("\"attempt\":1"));

    // the rest, newest first
    let res = consumer
        .settle(&[(&got[5], &Outcome::Done), (&got[3], &Outcome::Done)])
        .await
        .unwrap();
    assert_eq!(res, vec![Settled::Acked, Settled::Acked]);
    assert!(lrange(&url, &list).await.is_empty());
    assert_eq!(consumer.shutdown().await.unwrap(), 0);
    cleanup(&url, &q).await;
}

/// A consumer whose lease lapsed and whose jobs were reaped learns it at its next call: its
/// settles do nothing, it carries on under a new id, and every job is still delivered.
#[tokio::test]
async fn reaped_consumer_carries_on_under_a_new_id() {
    let url = redis_url();
    let q = queue("pos-reaped");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let ids: HashSet<String> = enqueue(&producer, "r", 4).await.into_iter().collect();
    let mut short = fast_opts();
    short.lease = Duration::from_millis(300);
    let slow = Consumer::connect(&url, q.clone(), short.clone())
        .await
        .unwrap();
    let first_id = slow.id();
    let taken = slow.fetch(4).await.unwrap();
    assert_eq!(taken.len(), 4);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reaper = Consumer::connect(&url, q.clone(), short).await.unwrap();
    assert_eq!(reaper.reap_expired().await.unwrap(), 4);

    let res = slow.settle(&[(&taken[0], &Outcome::Done)]).await.unwrap();
    assert_eq!(res, vec![Settled::NotInHand]);
    assert_ne!(slow.id(), first_id, "a reaped id is never used again");
    // the reaped jobs are back in pending, oldest first, and the slow consumer gets them
    let mut seen = HashSet::new();
    while seen.len() < 4 {
        let got = slow.fetch(4).await.unwrap();
        assert!(!got.is_empty());
        let res = ack_all(&slow, &got, &mut seen).await;
        assert!(res.iter().all(|s| *s == Settled::Acked), "{res:?}");
    }
    assert_eq!(seen, ids);
    // the old settle of a job taken under the first id stays a no-op
    let res = slow.settle(&[(&taken[1], &Outcome::Done)]).await.unwrap();
    assert_eq!(res, vec![Settled::NotInHand]);
    slow.shutdown().await.unwrap();
    reaper.shutdown().await.unwrap();
    assert_only_markers_left(&url, &q).await;
}

/// If the processing list is changed behind the consumer's back, the exchange script refuses
/// to act; the consumer returns the whole list to pending and carries on under a new id, so
/// nothing is lost (and nothing unknown is dropped).
#[tokio::test]
async fn a_list_changed_behind_the_consumers_back_is_returned_whole() {
    let url = redis_url();
    let q = queue("pos-desync");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    enqueue(&producer, "s", 3).await;
    let consumer = Consumer::connect(&url, q.clone(), fast_opts())
        .await
        .unwrap();
    let got = consumer.fetch(3).await.unwrap();
    let first_id = consumer.id();
    let mut c = conn(&url).await;
    let _: () = redis::cmd("RPUSH")
        .arg(q.processing(&first_id))
        .arg("{\"stranger\":true}")
        .query_async(&mut c)
        .await
        .unwrap();
    let res = consumer.settle(&[(&got[0], &Outcome::Done)]).await.unwrap();
    assert_eq!(res, vec![Settled::NotInHand]);
    // the next call gives the id up: everything, the stranger included, goes back to pending
    let again = consumer.fetch(10).await.unwrap();
    assert_ne!(consumer.id(), first_id);
    assert_eq!(again.len(), 4);
    assert!(again.iter().any(|d| d.raw().contains("stranger")));
    assert!(lrange(&url, &q.processing(&first_id)).await.is_empty());
    let all: Vec<_> = again.iter().map(|d| (d, &Outcome::Done)).collect();
    consumer.settle(&all).await.unwrap();
    consumer.shutdown().await.unwrap();
    cleanup(&url, &q).await;
}

/// How many times Redis has run `SORT` since it started (all clients).
async fn sort_calls(url: &str) -> u64 {
    let mut c = conn(url).await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_sort:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// The exchange script takes jobs three ways: into an empty list with `SORT ... STORE`; with
/// fewer in hand than it takes, into a scratch list that the ones in hand join before it
/// replaces the list; otherwise with `LRANGE` + `LPUSH`. All three leave the list in the same
/// order (the oldest in hand rightmost), deliver in FIFO order and leave no scratch list.
#[tokio::test]
async fn every_way_of_taking_keeps_the_order() {
    let url = redis_url();
    let q = queue("pos-take");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let ids = enqueue(&producer, "t", 9).await;
    let consumer = Consumer::connect(&url, q.clone(), fast_opts())
        .await
        .unwrap();
    let list = q.processing(&consumer.id());
    let scratch = format!("{}taking:{}", q.base(), consumer.id());
    let mut c = conn(&url).await;

    // nothing in hand: straight into the list
    let sorts = sort_calls(&url).await;
    let first = consumer.fetch(2).await.unwrap();
    assert!(
        sort_calls(&url).await > sorts,
        "SORT ... STORE fills an empty list"
    );
    assert_eq!(first.iter().map(id_of).collect::<Vec<_>>(), ids[..2]);
    assert_eq!(ids_right_first(&lrange(&url, &list).await), ids[..2]);

    // two in hand, four taken: put together in the scratch list, which then replaces the list
    let sorts = sort_calls(&url).await;
    let second = consumer.fetch(4).await.unwrap();
    assert!(sort_calls(&url).await > sorts);
    assert_eq!(second.iter().map(id_of).collect::<Vec<_>>(), ids[2..6]);
    assert_eq!(ids_right_first(&lrange(&url, &list).await), ids[..6]);
    let left: bool = redis::cmd("EXISTS")
        .arg(&scratch)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!left, "the scratch list outlived the script");

    // six in hand, three taken: the plain way, behind them
    let third = consumer.fetch(3).await.unwrap();
    assert_eq!(third.iter().map(id_of).collect::<Vec<_>>(), ids[6..]);
    assert_eq!(ids_right_first(&lrange(&url, &list).await), ids);

    let mut seen = HashSet::new();
    for got in [&first, &second, &third] {
        ack_all(&consumer, got, &mut seen).await;
    }
    assert!(consumer.fetch(3).await.unwrap().is_empty());
    assert_eq!(seen.len(), 9);
    assert_eq!(consumer.shutdown().await.unwrap(), 0);
    assert_only_markers_left(&url, &q).await;
}

/// Polls `fut` once with the task's own waker: `Some` if it finished.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut *fut).poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Fetches abandoned at any stage (before the call is sent, while Redis runs it, after Redis
/// answered but before the answer is read, between the script and the read-back) lose
/// nothing: whatever an abandoned call took goes back to pending, and every job is delivered.
///
/// The test's runtime has one thread, so the connection's tasks run only while the test
/// yields: a first poll never finishes a fetch, and a fetch dropped after it is cut off for
/// sure, however fast Redis answers.
#[tokio::test]
async fn cancelled_fetches_lose_nothing() {
    let url = redis_url();
    let q = queue("pos-cancel");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let ids: HashSet<String> = enqueue(&producer, "c", 200).await.into_iter().collect();
    let consumer = Consumer::connect(&url, q.clone(), fast_opts())
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let (mut cut, mut cut_after_answer) = (0, 0);
    for round in 0..400u64 {
        if seen.len() == ids.len() {
            break;
        }
        let mut fetch = Box::pin(consumer.fetch(8));
        assert!(
            poll_once(&mut fetch).await.is_none(),
            "a first poll finished"
        );
        let got = match round % 4 {
            // dropped as soon as it is under way
            0 => None,
            // Redis has run it and answered; nobody reads the answer
            1 => {
                tokio::time::sleep(Duration::from_millis(3)).await;
                cut_after_answer += 1;
                None
            }
            // a few more polls with the connection's tasks let run in between: cut off
            // somewhere between the script and the read-back, or finished
            2 => {
                let mut got = None;
                for _ in 0..=round % 5 {
                    tokio::task::yield_now().await;
                    got = poll_once(&mut fetch).await;
                    if got.is_some() {
                        break;
                    }
                }
                got
            }
            _ => Some(fetch.as_mut().await),
        };
        match got {
            Some(got) => {
                ack_all(&consumer, &got.unwrap(), &mut seen).await;
            }
            None => cut += 1,
        }
    }
    while seen.len() < ids.len() {
        let got = consumer.fetch(50).await.unwrap();
        assert!(
            !got.is_empty(),
            "jobs lost: saw {} of {}",
            seen.len(),
            ids.len()
        );
        ack_all(&consumer, &got, &mut seen).await;
    }
    assert!(cut >= cut_after_answer && cut_after_answer > 0);
    assert_eq!(seen, ids);
    assert_eq!(consumer.shutdown().await.unwrap(), 0);
    assert_only_markers_left(&url, &q).await;
}

/// Waiting for work moves nothing: a wait abandoned before a job arrives leaves that job in
/// pending, in no processing list.
#[tokio::test]
async fn an_abandoned_wait_strands_nothing() {
    let url = redis_url();
    let q = queue("pos-wait");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let mut o = fast_opts();
    o.block = Duration::from_millis(1500);
    let consumer = Consumer::connect(&url, q.clone(), o).await.unwrap();
    // the fetch finds nothing and blocks; give up on it after 200 ms
    let r = tokio::time::timeout(Duration::from_millis(200), consumer.fetch(5)).await;
    assert!(r.is_err());
    // a job arrives while Redis still holds the abandoned wait
    enqueue(&producer, "w", 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(lrange(&url, &q.pending()).await.len(), 1);
    let in_hand: Vec<String> = keys(&url, &q)
        .await
        .into_iter()
        .filter(|k| k.contains(":processing:"))
        .collect();
    assert!(in_hand.is_empty(), "{in_hand:?}");
    let got = consumer.fetch(5).await.unwrap();
    assert_eq!(got.len(), 1);
    consumer.ack(&got[0]).await.unwrap();
    consumer.shutdown().await.unwrap();
    cleanup(&url, &q).await;
}

/// The portable scripts, for ports to other languages: fetch takes jobs oldest first and
/// renews the lease; settle acks, retries and buries by value, and does nothing for a job no
/// longer in hand.
#[tokio::test]
async fn portable_fetch_and_settle_scripts() {
    let url = redis_url();
    let q = queue("pos-portable");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    enqueue(&producer, "p", 3).await;
    let script = |name: &str| {
        SCRIPTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .unwrap()
    };
    let mut c = conn(&url).await;
    let me = "port-1";
    let processing = q.processing(me);
    let taken: Vec<String> = redis::cmd("EVAL")
        .arg(script("fetch.lua"))
        .arg(3)
        .arg(q.pending())
        .arg(&processing)
        .arg(q.consumers())
        .arg(10)
        .arg(me)
        .arg(5000)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(ids_right_first(&taken).len(), 3);
    let order: Vec<String> = taken.iter().map(|r| job_id(r)).collect();
    assert_eq!(order, vec!["p0", "p1", "p2"]);
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(q.consumers())
        .arg(me)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(score.is_some());
    let settled: Vec<i64> = redis::cmd("EVAL")
        .arg(script("settle.lua"))
        .arg(3)
        .arg(&processing)
        .arg(q.delayed())
        .arg(q.dead())
        .arg("ard")
        .arg(&taken[0])
        .arg(&taken[1])
        .arg("{\"retried\":1}")
        .arg(1000)
        .arg(&taken[2])
        .arg("{\"dead\":1}")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(settled, vec![1, 1, 1]);
    assert!(lrange(&url, &processing).await.is_empty());
    assert_eq!(lrange(&url, &q.dead()).await, vec!["{\"dead\":1}"]);
    let again: Vec<i64> = redis::cmd("EVAL")
        .arg(script("settle.lua"))
        .arg(3)
        .arg(&processing)
        .arg(q.delayed())
        .arg(q.dead())
        .arg("a")
        .arg(&taken[0])
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(again, vec![0]);
    let _: () = redis::cmd("ZREM")
        .arg(q.consumers())
        .arg(me)
        .query_async(&mut c)
        .await
        .unwrap();
    cleanup(&url, &q).await;
}

/// A handler that is slow now and then: jobs finish far out of order, the ones behind a slow
/// job are removed by index once enough pile up, and every job is settled once.
#[tokio::test]
async fn run_with_slow_jobs_settles_every_job_once() {
    use std::sync::{Arc, Mutex};
    use wa_queue::{Handler, Job, RunOptions, run};

    struct Uneven(Arc<Mutex<Vec<String>>>);
    impl Handler for Uneven {
        async fn handle(&self, job: &Job, _delivery: u32) -> Outcome {
            if job.id().ends_with('0') {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            self.0.lock().unwrap().push(job.id().to_owned());
            Outcome::Done
        }
    }

    let url = redis_url();
    let q = queue("pos-uneven");
    let producer = Producer::new(&url, q.clone(), ProducerOptions::default()).unwrap();
    let ids: HashSet<String> = enqueue(&producer, "u", 500).await.into_iter().collect();
    let mut o = fast_opts();
    o.batch = 16;
    let consumer = Consumer::connect(&url, q.clone(), o).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut ro = RunOptions::default();
    ro.concurrency = 32;
    let counters = ro.counters().clone();
    let watch = seen.clone();
    let stop = async move {
        while watch.lock().unwrap().len() < 500 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        run(consumer, Uneven(seen.clone()), ro, stop),
    )
    .await
    .unwrap()
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 500, "each job handled once");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), ids);
    assert_eq!(summary.done, 500, "{summary:?}");
    assert_eq!(counters.redis_errors(), 0);
    assert_only_markers_left(&url, &q).await;
}
