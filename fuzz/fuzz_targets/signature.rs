//! Fuzzes `X-Hub-Signature-256` verification.
//!
//! Input: the header value up to the first `\n`, the body after it (no `\n` at all: no
//! header). Checks that nothing panics, that an absent header is `Missing`, that a header
//! the verifier accepts really is the MAC of the body under one of its secrets, and that the
//! true signature of every body verifies (rotation: the second secret).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wa_signature::{SignatureError, Verifier, sign};

const SECRETS: [&str; 2] = ["fuzz-app-secret", "fuzz-rotated-secret"];

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| Verifier::new(SECRETS).expect("two non-empty secrets"))
}

/// Whether `header` names the same MAC as `expected` (`sha256=<hex>`), tolerating only
/// what a lenient parser might: surrounding whitespace and hex case.
fn same_mac(header: &[u8], expected: &str) -> bool {
    header
        .trim_ascii()
        .eq_ignore_ascii_case(expected.as_bytes())
}

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    let got = verifier().verify(header, body);
    match header {
        None => assert_eq!(got, Err(SignatureError::Missing)),
        Some(h) if got.is_ok() => assert!(
            SECRETS
                .iter()
                .any(|s| same_mac(h, &sign(s.as_bytes(), body))),
            "accepted a header that is not the body's MAC"
        ),
        Some(_) => {}
    }
    let good = sign(SECRETS[1].as_bytes(), body);
    assert_eq!(verifier().verify(Some(good.as_bytes()), body), Ok(()));
});
