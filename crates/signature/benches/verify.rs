//! Verification cost next to raw ring HMAC-SHA256 over the same bytes, at 1 KB and 3 MB (Meta's
//! largest body). The difference is the wrapper: header parsing, hex decoding and the rotation
//! loop.
//!
//! After criterion's groups, a paired run alternates the two in short rounds and prints the
//! ratio, which stays meaningful when other work shares the machine.
//!
//! Run with: `cargo bench -p wa-signature --bench verify`

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use wa_signature::{Signature, Verifier, sign};

const SECRET: &[u8] = b"test_app_secret_0123456789abcdef";
const FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/webhooks/01_text.json");

/// A body of `len` bytes made of webhook JSON (the content does not change HMAC speed, but it
/// keeps the bench honest about what it hashes).
fn body(len: usize) -> Vec<u8> {
    FIXTURE.iter().copied().cycle().take(len).collect()
}

fn verify(c: &mut Criterion) {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
    let verifier = Verifier::new([SECRET]).expect("verifier");

    for (name, len, samples) in [("1KB", 1024, 100), ("3MB", 3 * 1024 * 1024, 30)] {
        let body = body(len);
        let header = sign(SECRET, &body);
        let tag = ring::hmac::sign(&key, &body);
        let parsed = Signature::parse(header.as_bytes()).expect("parse");

        let mut group = c.benchmark_group("verify");
        group.throughput(Throughput::Bytes(len as u64));
        group.sample_size(samples);

        // Baseline: ring alone, the tag already in binary form.
        group.bench_with_input(
            BenchmarkId::new("ring_hmac_verify", name),
            &body,
            |b, body| b.iter(|| ring::hmac::verify(&key, black_box(body), black_box(tag.as_ref()))),
        );
        // What the endpoint calls: header bytes in, answer out.
        group.bench_with_input(
            BenchmarkId::new("wa_signature_verify", name),
            &body,
            |b, body| {
                b.iter(|| verifier.verify(black_box(Some(header.as_bytes())), black_box(body)))
            },
        );
        // The same without parsing, to separate parse cost from the HMAC.
        group.bench_with_input(
            BenchmarkId::new("wa_signature_verify_parsed", name),
            &body,
            |b, body| b.iter(|| verifier.verify_parsed(black_box(&parsed), black_box(body))),
        );
        group.finish();
    }

    // Parsing alone (independent of body size).
    c.bench_function("parse_header", |b| {
        let header = sign(SECRET, b"{}");
        b.iter(|| Signature::parse(black_box(header.as_bytes())))
    });
}

criterion_group!(benches, verify);

/// The ratio wrapper/ring measured in alternating short rounds, so both sides see the same
/// machine load (on a shared machine, criterion's one-after-the-other runs can differ by more
/// than the few percent this is about). Prints the median and quartiles; asserts nothing.
fn paired() {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
    let verifier = Verifier::new([SECRET]).expect("verifier");
    for (name, len, batch, rounds) in [("1KB", 1024, 200, 400), ("3MB", 3 * 1024 * 1024, 1, 200)] {
        let body = body(len);
        let header = sign(SECRET, &body);
        let tag = ring::hmac::sign(&key, &body);
        let mut ratios = Vec::with_capacity(rounds);
        let (mut ring_times, mut wrapper_times) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let time_ring = || {
                let start = Instant::now();
                for _ in 0..batch {
                    let _ = black_box(ring::hmac::verify(
                        &key,
                        black_box(&body),
                        black_box(tag.as_ref()),
                    ));
                }
                start.elapsed()
            };
            let time_wrapper = || {
                let start = Instant::now();
                for _ in 0..batch {
                    let _ = black_box(
                        verifier.verify(black_box(Some(header.as_bytes())), black_box(&body)),
                    );
                }
                start.elapsed()
            };
            // Alternate which side goes first, so neither always gets the warmer cache.
            let (ring_time, wrapper_time) = if round % 2 == 0 {
                let r = time_ring();
                (r, time_wrapper())
            } else {
                let w = time_wrapper();
                (time_ring(), w)
            };
            ratios.push(wrapper_time.as_secs_f64() / ring_time.as_secs_f64());
            ring_times.push(ring_time.as_secs_f64() / batch as f64);
            wrapper_times.push(wrapper_time.as_secs_f64() / batch as f64);
        }
        for v in [&mut ratios, &mut ring_times, &mut wrapper_times] {
            v.sort_by(f64::total_cmp);
        }
        let at = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q) as usize];
        // Three estimators, because load from other processes only ever adds time: the
        // fastest rounds are the least disturbed, the medians the most typical.
        println!(
            "paired {name} ({rounds} rounds of {batch}): wa_signature_verify / ring_hmac_verify: \
             median of ratios {:.4} (p25 {:.4}, p75 {:.4}); ratio of medians {:.4} ({:.3} us / {:.3} us); \
             ratio of minimums {:.4} ({:.3} us / {:.3} us)",
            at(&ratios, 0.5),
            at(&ratios, 0.25),
            at(&ratios, 0.75),
            at(&wrapper_times, 0.5) / at(&ring_times, 0.5),
            at(&wrapper_times, 0.5) * 1e6,
            at(&ring_times, 0.5) * 1e6,
            wrapper_times[0] / ring_times[0],
            wrapper_times[0] * 1e6,
            ring_times[0] * 1e6,
        );
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs this binary without `--bench`: only smoke-test criterion then.
    if std::env::args().any(|a| a == "--bench") {
        paired();
    }
}
