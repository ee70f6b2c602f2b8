//! Property tests: no query string makes the decision panic, and the decision is consistent.

use proptest::prelude::*;
use wa_challenge::{Challenge, ChallengeError, MAX_CHALLENGE_LEN};

const TOKEN: &str = "verify-me";

/// Query strings built from the pieces that matter (hub names, separators, escapes, unicode),
/// plus arbitrary text.
fn query_strategy() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("hub.mode".to_string()),
        Just("hub.verify_token".to_string()),
        Just("hub.challenge".to_string()),
        Just("hub%2Emode".to_string()),
        "[a-z.%]{0,12}",
    ];
    let value = prop_oneof![
        Just("subscribe".to_string()),
        Just(TOKEN.to_string()),
        "([0-9a-zA-Z+=~é🌵]|%[0-9a-fA-F]{2}|%[0-9a-zA-Z]?){0,30}",
    ];
    let pair = (name, prop::option::of(value)).prop_map(|(n, v)| match v {
        Some(v) => format!("{n}={v}"),
        None => n,
    });
    prop_oneof![
        prop::collection::vec(pair, 0..8).prop_map(|pairs| pairs.join("&")),
        any::<String>(),
    ]
}

proptest! {
    /// Any query string gets a decision, never a panic; an accepted challenge is within the cap.
    #[test]
    fn no_query_panics(query in query_strategy()) {
        let c = Challenge::new(TOKEN).unwrap();
        match c.decide(&query) {
            Ok(challenge) => prop_assert!(challenge.len() <= MAX_CHALLENGE_LEN),
            Err(e) => prop_assert!(e != ChallengeError::EmptyToken),
        }
    }

    /// Any challenge, percent-encoded byte by byte, comes back exactly (when it fits the cap).
    #[test]
    fn challenge_round_trips(challenge in any::<String>()) {
        let c = Challenge::new(TOKEN).unwrap();
        let encoded: String = challenge.bytes().map(|b| format!("%{b:02X}")).collect();
        let query = format!("hub.mode=subscribe&hub.verify_token={TOKEN}&hub.challenge={encoded}");
        let want = if challenge.len() <= MAX_CHALLENGE_LEN {
            Ok(challenge)
        } else {
            Err(ChallengeError::ChallengeTooLong)
        };
        prop_assert_eq!(c.decide(&query), want);
    }

    /// Only the exact token is accepted, whatever else is tried.
    #[test]
    fn only_the_token_matches(candidate in "[a-z\\-]{0,12}") {
        let c = Challenge::new(TOKEN).unwrap();
        let query = format!("hub.mode=subscribe&hub.verify_token={candidate}&hub.challenge=1");
        let result = c.decide(&query);
        if candidate == TOKEN {
            prop_assert_eq!(result, Ok("1".to_string()));
        } else {
            prop_assert_eq!(result, Err(ChallengeError::TokenMismatch));
        }
    }
}
