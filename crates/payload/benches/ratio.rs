//! Interleaved walk-versus-`Value` timing: the ratio that survives a busy machine.
//!
//! Criterion measures each function in its own time window, so on a shared machine the load
//! changes between them. This alternates short rounds of both on the same bytes and reports the
//! median of the per-round ratios.
//!
//! Run with: `cargo bench -p wa-payload --bench ratio`

use std::hint::black_box;
use std::time::{Duration, Instant};

use wa_payload::Body;

#[path = "../tests/common/batch.rs"]
#[allow(dead_code)]
mod batch;

const TEXT: &[u8] = include_bytes!("../../../tests/fixtures/webhooks/01_text.json");

fn walk(bytes: &[u8]) -> usize {
    let body = Body::parse(bytes).expect("valid body");
    body.notifications()
        .map(|n| {
            n.envelope.wamid.map_or(0, |w| w.len())
                + n.raw.get().len()
                + n.envelope.contact_name.map_or(0, |s| s.len())
        })
        .sum()
}

fn value(bytes: &[u8]) -> usize {
    let v: serde_json::Value = serde_json::from_slice(bytes).expect("valid JSON");
    v.as_object().map_or(0, |o| o.len())
}

fn time(iters: u32, f: impl Fn() -> usize) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    start.elapsed() / iters
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let big = batch::batch(1000);
    for (name, bytes, iters) in [
        ("text_1kb (01_text.json)", TEXT, 20_000),
        ("batch_1000", big.as_bytes(), 20),
    ] {
        for _ in 0..3 {
            time(iters, || walk(black_box(bytes)));
            time(iters, || value(black_box(bytes)));
        }
        let (mut w, mut v, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..41 {
            let (tw, tv) = if round % 2 == 0 {
                let tw = time(iters, || walk(black_box(bytes)));
                (tw, time(iters, || value(black_box(bytes))))
            } else {
                let tv = time(iters, || value(black_box(bytes)));
                (time(iters, || walk(black_box(bytes))), tv)
            };
            w.push(tw.as_secs_f64() * 1e6);
            v.push(tv.as_secs_f64() * 1e6);
            r.push(tv.as_secs_f64() / tw.as_secs_f64());
        }
        println!(
            "{name}: {} bytes, walk {:.2} µs, serde_json::Value {:.2} µs, Value/walk {:.2}x (medians of 41 interleaved rounds)",
            bytes.len(),
            median(w),
            median(v),
            median(r)
        );
    }
}
