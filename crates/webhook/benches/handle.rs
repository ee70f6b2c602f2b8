//! CPU of `Webhook::handle` for one signed webhook, without a socket and without Redis: routing,
//! body read, signature, parse and the walk over notifications (`accept` empty, so no job is
//! encoded and no round trip made), and the refusal of a bad signature. What a real request adds
//! on top is hyper's parsing and writing, the job encoding and the Redis round trip.
//!
//! Run with: `cargo bench -p wa-webhook --bench handle`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use http_body_util::Full;
use wa_webhook::{
    Accept, Challenge, Config, Producer, ProducerOptions, QueueName, Verifier, Webhook,
};

const SECRET: &str = "test_app_secret_0123456789abcdef";
const FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/webhooks/01_text.json");

fn handle(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let mut config = Config::default();
    config.accept = Accept::NONE;
    // Never contacted: nothing is accepted, so nothing is enqueued.
    let producer = Producer::new(
        "redis://127.0.0.1:1",
        QueueName::new("bench").expect("queue"),
        ProducerOptions::default(),
    )
    .expect("producer");
    let webhook = Webhook::new(
        config,
        Verifier::from_list(SECRET).expect("secret"),
        Challenge::new("token").expect("token"),
        producer,
    );
    let body = Bytes::from_static(FIXTURE);
    let good = wa_signature::sign(SECRET.as_bytes(), FIXTURE);
    let bad = wa_signature::sign(b"another secret", FIXTURE);
    let request = |sig: &str| {
        Request::post(wa_webhook::DEFAULT_PATH)
            .header("content-length", FIXTURE.len())
            .header("x-hub-signature-256", sig)
            .body(Full::new(body.clone()))
            .expect("request")
    };

    let mut group = c.benchmark_group("handle");
    group.throughput(Throughput::Bytes(FIXTURE.len() as u64));
    group.bench_function("post_1KB_up_to_enqueue", |b| {
        b.iter(|| {
            let r = rt.block_on(webhook.handle(black_box(request(&good))));
            assert_eq!(r.status(), 200);
        })
    });
    group.bench_function("post_1KB_bad_signature", |b| {
        b.iter(|| {
            let r = rt.block_on(webhook.handle(black_box(request(&bad))));
            assert_eq!(r.status(), 403);
        })
    });
    group.finish();
}

criterion_group!(benches, handle);
criterion_main!(benches);
