//! Parse + walk of a webhook body next to building a `serde_json::Value` of the same bytes.
//!
//! Run with: `cargo bench -p wa-payload --bench walk`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wa_payload::{Body, Notification};

#[path = "../tests/common/batch.rs"]
#[allow(dead_code)]
mod batch;

const TEXT: &[u8] = include_bytes!("../../../tests/fixtures/webhooks/01_text.json");

/// What the ingress does with a body: parse it and read every notification's fields.
fn walk(bytes: &[u8]) -> usize {
    let body = Body::parse(bytes).expect("valid body");
    body.notifications().map(read).sum()
}

/// The same, moving each notification's unescaped strings out of the body.
fn walk_into(bytes: &[u8]) -> usize {
    let body = Body::parse(bytes).expect("valid body");
    body.into_notifications().map(read).sum()
}

/// Reads a notification's wamid, raw object and contact name, as a job is built of them.
fn read(n: Notification<'_>) -> usize {
    n.envelope.wamid.map_or(0, |w| w.len())
        + n.raw.get().len()
        + n.envelope.contact_name.map_or(0, |s| s.len())
}

fn value(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

fn bench(c: &mut Criterion) {
    let big = batch::batch(1000);
    for (name, bytes) in [("text_1kb", TEXT), ("batch_1000", big.as_bytes())] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("wa_payload_walk", |b| b.iter(|| walk(black_box(bytes))));
        group.bench_function("wa_payload_walk_into", |b| {
            b.iter(|| walk_into(black_box(bytes)))
        });
        group.bench_function("serde_json_value", |b| b.iter(|| value(black_box(bytes))));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
