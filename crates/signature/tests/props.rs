//! Property tests: no header and no body makes the verifier panic, and answers are consistent.

use proptest::prelude::*;
use wa_signature::{Signature, SignatureError, Verifier, sign};

/// Header values near the interesting shapes, plus arbitrary bytes.
fn header_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Anything at all, including invalid UTF-8 and control bytes.
        proptest::collection::vec(any::<u8>(), 0..100),
        // A plausible label, `=`, then hex-ish characters of any length.
        ("(sha256|sha1|SHA256|md5|)", "=?", "[0-9a-fA-Fg ,;=]{0,70}")
            .prop_map(|(l, e, d)| format!("{l}{e}{d}").into_bytes()),
        // Exactly 64 characters after the prefix, mostly hex.
        "[0-9a-fA-F]{60,64}[0-9a-zA-Z\\-]{0,4}".prop_map(|d| format!("sha256={d}").into_bytes()),
    ]
}

proptest! {
    /// Any header with any body yields an answer (never a panic), and a present header never
    /// yields `Missing`.
    #[test]
    fn no_input_panics(header in header_strategy(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let v = Verifier::from_list("secret-a,secret-b").unwrap();
        let result = v.verify(Some(&header), &body);
        prop_assert_ne!(&result, &Err(SignatureError::Missing));
        // Parsing alone agrees with verify on well-formedness.
        match Signature::parse(&header) {
            Ok(sig) => prop_assert_eq!(v.verify_parsed(&sig, &body), result),
            Err(e) => prop_assert_eq!(Err(e), result),
        }
    }

    /// Whatever the secret and body, `sign` produces a header that parses, round-trips through
    /// Display, and verifies under that secret.
    #[test]
    fn sign_verifies(secret in proptest::collection::vec(any::<u8>(), 1..80), body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let header = sign(&secret, &body);
        let sig = Signature::parse(header.as_bytes()).unwrap();
        prop_assert_eq!(sig.to_string(), header.clone());
        let v = Verifier::new([&secret]).unwrap();
        prop_assert_eq!(v.verify(Some(header.as_bytes()), &body), Ok(()));
    }

    /// Any comma-separated list builds a verifier or returns a construction error; never panics.
    #[test]
    fn from_list_never_panics(list in "[ a-z,\t]{0,40}") {
        match Verifier::from_list(&list) {
            Ok(v) => prop_assert!(v.secret_count() >= 1),
            Err(e) => prop_assert!(matches!(e, SignatureError::EmptySecret | SignatureError::NoSecret)),
        }
    }
}
