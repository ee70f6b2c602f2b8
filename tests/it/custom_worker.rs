//! The `custom_worker` example's handler, run by `wa_queue::run` over a real queue: the example
//! file itself is compiled in here, so what the test proves is what the example shows.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::value::RawValue;
use wa_queue::{
    Admin, Consumer, ConsumerOptions, JobKind, NewJob, Producer, ProducerOptions, QueueName,
    RunOptions,
};

use crate::support;

// The example's `main` is not called here; its handler and idle stop are.
#[allow(dead_code)]
#[path = "../../examples/custom_worker.rs"]
mod example;

/// A writer whose bytes the test reads back once the worker has stopped.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The custom_worker example replies once to each text message, says nothing for other jobs and
/// leaves the queue empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_worker_replies_to_each_text_message() {
    let url = support::redis_url();
    // Fails loudly, with what to do, when Redis is not there.
    let mut redis = support::redis(&url).await;
    let queue = QueueName::new(support::unique("custom-worker")).expect("queue name");

    let payload = RawValue::from_string("{}".to_owned()).expect("raw json");
    let mut text = NewJob::new("wamid.T1", JobKind::Message, &payload);
    text.envelope.from = Some("5215512345678".into());
    text.envelope.type_ = Some("text".into());
    text.envelope.text = Some("Hi, is the store open on Sunday?".into());
    // A username user: no phone number, a business-scoped id instead.
    let mut username = NewJob::new("wamid.T2", JobKind::Message, &payload);
    username.envelope.from_user_id = Some("MX.2093847561029384".into());
    username.envelope.type_ = Some("text".into());
    username.envelope.text = Some("¿Y el lunes? \"sí\"".into());
    let mut image = NewJob::new("wamid.I1", JobKind::Message, &payload);
    image.envelope.from = Some("5215512345678".into());
    image.envelope.type_ = Some("image".into());
    let mut status = NewJob::new("wamid.S1:delivered", JobKind::Status, &payload);
    status.envelope.from = Some("5215512345678".into());
    status.envelope.type_ = Some("delivered".into());

    let mut producer_options = ProducerOptions::default();
    // Short-lived markers: a test queue should not leave keys in the shared Redis for 8 days.
    producer_options.dedup_ttl = Duration::from_secs(120);
    let producer = Producer::new(&url, queue.clone(), producer_options).expect("producer");
    let enqueued = producer
        .enqueue(&[text, username, image, status])
        .await
        .unwrap_or_else(|err| panic!("cannot enqueue at {url} (is Redis running?): {err}"));
    assert_eq!(enqueued.len(), 4);

    let mut consumer_options = ConsumerOptions::default();
    // A short blocking fetch, so the idle stop is noticed quickly.
    consumer_options.block = Duration::from_millis(200);
    let consumer = Consumer::connect(&url, queue.clone(), consumer_options)
        .await
        .expect("consumer connects");
    let out = Captured::default();
    let options = RunOptions::default();
    let stop = example::idle_for(Arc::clone(options.counters()), Duration::from_millis(500));
    let run = wa_queue::run(consumer, example::Replier::new(out.clone()), options, stop);
    let summary = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the worker stops once idle")
        .expect("the run ends cleanly");

    // Handlers run concurrently, so the replies may come in either order.
    let mut lines = out.lines();
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"reply to 5215512345678: you said "Hi, is the store open on Sunday?""#,
            r#"reply to MX.2093847561029384: you said "¿Y el lunes? \"sí\"""#,
        ]
    );
    assert_eq!((summary.done, summary.retried, summary.dead), (4, 0, 0));
    let stats = Admin::connect(&url, queue.clone())
        .await
        .expect("admin")
        .stats()
        .await
        .expect("stats");
    assert_eq!((stats.pending, stats.delayed, stats.dead), (0, 0, 0));
    assert!(stats.processing.iter().all(|(_, n)| *n == 0), "{stats:?}");

    // The dedup markers are all the queue left; remove them rather than wait for their TTL.
    let keys = support::QueueKeys {
        name: queue.name().to_owned(),
        url: url.clone(),
    };
    // ("wamid.T1", "wamid.T2", "wamid.I1", "wamid.S1:delivered")
    assert_eq!(keys.markers().await, 4);
    let _: u64 = redis::cmd("DEL")
        .arg(keys.dedup_keys().await)
        .query_async(&mut redis)
        .await
        .expect("DEL");
}
