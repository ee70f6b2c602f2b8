//! Fuzzes the GET handshake decision.
//!
//! Checks that no query string panics, that a challenge sent percent-encoded in an otherwise
//! correct handshake comes back exactly as it was (or is refused as too long), and that a
//! handshake whose token is anything but the configured one is never accepted.
#![no_main]

use std::fmt::Write as _;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wa_challenge::{Challenge, ChallengeError};

const TOKEN: &str = "fuzz-verify-token";

fn challenge() -> &'static Challenge {
    static C: OnceLock<Challenge> = OnceLock::new();
    C.get_or_init(|| Challenge::new(TOKEN).expect("non-empty token"))
}

/// Percent-encodes every byte outside the unreserved set, so the query has one reading.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let _ = challenge().decide(&query);

    let text: &str = &query;
    let good = format!(
        "hub.mode=subscribe&hub.verify_token={TOKEN}&hub.challenge={}",
        pct(text)
    );
    match challenge().decide(&good) {
        Ok(echo) => assert_eq!(echo, text, "challenge not echoed byte for byte"),
        Err(ChallengeError::ChallengeTooLong) => {}
        Err(e) => panic!("correct handshake refused: {e}"),
    }

    if text != TOKEN {
        let wrong = format!(
            "hub.mode=subscribe&hub.verify_token={}&hub.challenge=42",
            pct(text)
        );
        assert!(
            challenge().decide(&wrong).is_err(),
            "accepted a wrong verify token"
        );
    }
});
