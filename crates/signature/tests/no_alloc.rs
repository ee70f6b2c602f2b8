//! The hot path allocates nothing: verifying a request (good, forged or malformed) makes no
//! heap allocation.
//!
//! Its own test binary with a single test, because the allocation counter is process-wide and
//! other tests running in parallel would allocate into it.

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::hint::black_box;
use wa_signature::{Signature, Verifier, sign};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// `verify` and `verify_parsed` perform zero heap allocations, whatever the outcome.
#[test]
fn verify_does_not_allocate() {
    // Everything that may allocate is prepared before the counted region.
    let verifier = Verifier::from_list("current-secret, previous-secret").unwrap();
    let body: Vec<u8> = br#"{"object":"whatsapp_business_account"}"#.repeat(64);
    let good = sign(b"previous-secret", &body);
    let forged = sign(b"someone-else", &body);
    let upper = good.to_uppercase().replace("SHA256=", "sha256=");
    let parsed: Signature = good.parse().unwrap();
    let malformed: [&[u8]; 5] = [b"", b"sha1=abc", b"sha256=12", b"sha256= x", &[0xff; 71]];
    // Warm-up: any one-time initialisation (CPU feature detection) happens here.
    assert!(verifier.verify(Some(good.as_bytes()), &body).is_ok());

    // Control: the counter sees allocations at all (otherwise zero below would prove nothing).
    let control = Region::new(GLOBAL);
    drop(black_box(Vec::<u8>::with_capacity(16)));
    assert_eq!(
        control.change().allocations,
        1,
        "allocation counter is not live"
    );

    // The counter is process-wide, and the test harness's own threads may allocate now and
    // then (more so on a loaded machine). So count five rounds and require a round with none:
    // an allocation in the verify path would show in every round, 1 000 times.
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let region = Region::new(GLOBAL);
        for _ in 0..100 {
            assert!(black_box(verifier.verify(Some(good.as_bytes()), &body)).is_ok());
            assert!(black_box(verifier.verify(Some(upper.as_bytes()), &body)).is_ok());
            assert!(black_box(verifier.verify(Some(forged.as_bytes()), &body)).is_err());
            assert!(black_box(verifier.verify(None, &body)).is_err());
            assert!(black_box(verifier.verify_parsed(&parsed, &body)).is_ok());
            for m in malformed {
                assert!(black_box(verifier.verify(Some(m), &body)).is_err());
            }
        }
        let stats = region.change();
        if (stats.allocations, stats.reallocations) == (0, 0) {
            return;
        }
        rounds.push(stats);
    }
    panic!("verification allocated in every round: {rounds:?}");
}
