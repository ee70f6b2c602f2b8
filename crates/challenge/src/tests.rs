use super::*;

const TOKEN: &str = "s3cret-token";

fn ok(challenge: &str) -> Result<String, ChallengeError> {
    Ok(challenge.to_string())
}

fn q(mode: &str, token: &str, challenge: &str) -> String {
    format!("hub.mode={mode}&hub.verify_token={token}&hub.challenge={challenge}")
}

/// The table of handshakes: each query string and the decision it must get.
#[test]
fn decision_table() {
    use ChallengeError::*;
    let c = Challenge::new(TOKEN).unwrap();
    let long_ok = "7".repeat(MAX_CHALLENGE_LEN);
    let long_bad = "7".repeat(MAX_CHALLENGE_LEN + 1);
    let long_escaped_ok = "%41".repeat(MAX_CHALLENGE_LEN);
    let long_escaped_bad = "%41".repeat(MAX_CHALLENGE_LEN + 1);
    let cases: Vec<(&str, String, Result<String, ChallengeError>)> = vec![
        // The happy path, in any order, with other parameters around.
        (
            "meta's form",
            q("subscribe", TOKEN, "1158201444"),
            ok("1158201444"),
        ),
        (
            "any order",
            format!("hub.challenge=42&hub.verify_token={TOKEN}&hub.mode=subscribe"),
            ok("42"),
        ),
        (
            "other params ignored",
            format!("a=1&hub.mode=subscribe&x&hub.verify_token={TOKEN}&hub.challenge=42&a=2"),
            ok("42"),
        ),
        (
            "empty pairs skipped",
            format!("&&hub.mode=subscribe&&hub.verify_token={TOKEN}&hub.challenge=42&"),
            ok("42"),
        ),
        // Tokens that are close but not equal.
        (
            "token prefix",
            q("subscribe", "s3cret", "1"),
            Err(TokenMismatch),
        ),
        (
            "token suffix",
            q("subscribe", "token", "1"),
            Err(TokenMismatch),
        ),
        (
            "token one char short",
            q("subscribe", "s3cret-toke", "1"),
            Err(TokenMismatch),
        ),
        (
            "token extended",
            q("subscribe", "s3cret-token2", "1"),
            Err(TokenMismatch),
        ),
        (
            "token doubled",
            q("subscribe", "s3cret-tokens3cret-token", "1"),
            Err(TokenMismatch),
        ),
        (
            "token trailing space (+)",
            q("subscribe", "s3cret-token+", "1"),
            Err(TokenMismatch),
        ),
        (
            "token trailing space (%20)",
            q("subscribe", "s3cret-token%20", "1"),
            Err(TokenMismatch),
        ),
        (
            "token other case",
            q("subscribe", "S3CRET-TOKEN", "1"),
            Err(TokenMismatch),
        ),
        ("token empty", q("subscribe", "", "1"), Err(TokenMismatch)),
        (
            "token bare name",
            "hub.mode=subscribe&hub.verify_token&hub.challenge=1".to_string(),
            Err(TokenMismatch),
        ),
        (
            "token percent-encoded",
            q("subscribe", "s3cret%2Dtoken", "1"),
            ok("1"),
        ),
        (
            "token fully encoded",
            q("subscribe", "%73%33%63%72%65%74%2d%74%6F%6B%65%6E", "1"),
            ok("1"),
        ),
        (
            "token double-encoded",
            q("subscribe", "s3cret%252Dtoken", "1"),
            Err(TokenMismatch),
        ),
        // Mode.
        ("mode empty", q("", TOKEN, "1"), Err(WrongMode)),
        (
            "mode unsubscribe",
            q("unsubscribe", TOKEN, "1"),
            Err(WrongMode),
        ),
        (
            "mode other case",
            q("Subscribe", TOKEN, "1"),
            Err(WrongMode),
        ),
        (
            "mode trailing space",
            q("subscribe+", TOKEN, "1"),
            Err(WrongMode),
        ),
        ("mode encoded", q("sub%73cribe", TOKEN, "1"), ok("1")),
        (
            "mode checked before token",
            q("x", "wrong", "1"),
            Err(WrongMode),
        ),
        // Missing parameters (by name; checked before anything else).
        ("empty query", String::new(), Err(Missing(PARAM_MODE))),
        (
            "mode missing",
            format!("hub.verify_token={TOKEN}&hub.challenge=1"),
            Err(Missing(PARAM_MODE)),
        ),
        (
            "token missing",
            "hub.mode=subscribe&hub.challenge=1".to_string(),
            Err(Missing(PARAM_VERIFY_TOKEN)),
        ),
        (
            "challenge missing",
            format!("hub.mode=subscribe&hub.verify_token={TOKEN}"),
            Err(Missing(PARAM_CHALLENGE)),
        ),
        (
            "missing beats a wrong token",
            "hub.verify_token=bad&hub.challenge=1".to_string(),
            Err(Missing(PARAM_MODE)),
        ),
        (
            "names are case-sensitive",
            q("subscribe", TOKEN, "1").replace("hub.mode", "HUB.MODE"),
            Err(Missing(PARAM_MODE)),
        ),
        (
            "leading ? is not stripped",
            format!("?{}", q("subscribe", TOKEN, "1")),
            Err(Missing(PARAM_MODE)),
        ),
        (
            "; is not a separator",
            format!("hub.mode=subscribe;hub.verify_token={TOKEN}&hub.challenge=1"),
            Err(Missing(PARAM_VERIFY_TOKEN)),
        ),
        (
            "name percent-encoded",
            format!("hub%2Emode=subscribe&hub.verify_token={TOKEN}&hub%2echallenge=9"),
            ok("9"),
        ),
        // Repeated parameters: refused, even with equal values.
        (
            "mode repeated",
            format!("{}&hub.mode=subscribe", q("subscribe", TOKEN, "1")),
            Err(Repeated(PARAM_MODE)),
        ),
        (
            "token repeated",
            format!("{}&hub.verify_token=x", q("subscribe", TOKEN, "1")),
            Err(Repeated(PARAM_VERIFY_TOKEN)),
        ),
        (
            "challenge repeated",
            format!("{}&hub.challenge=2", q("subscribe", TOKEN, "1")),
            Err(Repeated(PARAM_CHALLENGE)),
        ),
        (
            "repeated via encoded name",
            format!("{}&hub%2Echallenge=1", q("subscribe", TOKEN, "1")),
            Err(Repeated(PARAM_CHALLENGE)),
        ),
        // The challenge: decoded once, echoed exactly.
        ("challenge empty", q("subscribe", TOKEN, ""), ok("")),
        (
            "challenge bare name",
            format!("hub.mode=subscribe&hub.verify_token={TOKEN}&hub.challenge"),
            ok(""),
        ),
        ("plus is a space", q("subscribe", TOKEN, "a+b"), ok("a b")),
        ("%20 is a space", q("subscribe", TOKEN, "a%20b"), ok("a b")),
        ("%2B is a plus", q("subscribe", TOKEN, "a%2Bb"), ok("a+b")),
        (
            "value may hold =",
            q("subscribe", TOKEN, "a=b=="),
            ok("a=b=="),
        ),
        (
            "lowercase escapes",
            q("subscribe", TOKEN, "%7e%2f"),
            ok("~/"),
        ),
        ("decoded once", q("subscribe", TOKEN, "%2541"), ok("%41")),
        (
            "unicode escaped",
            q("subscribe", TOKEN, "%C3%A9%F0%9F%8C%B5"),
            ok("é🌵"),
        ),
        ("unicode raw", q("subscribe", TOKEN, "José🌵"), ok("José🌵")),
        (
            "invalid escape kept",
            q("subscribe", TOKEN, "%zz"),
            ok("%zz"),
        ),
        ("half escape kept", q("subscribe", TOKEN, "%4"), ok("%4")),
        ("trailing % kept", q("subscribe", TOKEN, "100%"), ok("100%")),
        (
            "% before an escape",
            q("subscribe", TOKEN, "%%41"),
            ok("%A"),
        ),
        (
            "escape of a non-hex pair",
            q("subscribe", TOKEN, "%G1%1G"),
            ok("%G1%1G"),
        ),
        (
            "not utf-8",
            q("subscribe", TOKEN, "%FF%FE"),
            Err(ChallengeNotUtf8),
        ),
        (
            "at the cap",
            q("subscribe", TOKEN, &long_ok),
            Ok(long_ok.clone()),
        ),
        (
            "over the cap",
            q("subscribe", TOKEN, &long_bad),
            Err(ChallengeTooLong),
        ),
        (
            "at the cap, escaped",
            q("subscribe", TOKEN, &long_escaped_ok),
            Ok("A".repeat(MAX_CHALLENGE_LEN)),
        ),
        (
            "over the cap, escaped",
            q("subscribe", TOKEN, &long_escaped_bad),
            Err(ChallengeTooLong),
        ),
        (
            "too long beats a wrong token",
            q("subscribe", "wrong", &long_bad),
            Err(ChallengeTooLong),
        ),
    ];
    for (name, query, want) in cases {
        assert_eq!(c.decide(&query), want, "case {name:?}: {query:?}");
    }
}

/// A configured token with non-ASCII characters matches whether the query encodes them or not.
#[test]
fn unicode_token() {
    let c = Challenge::new("tökén 🔑").unwrap();
    assert_eq!(
        c.decide(&q("subscribe", "t%C3%B6k%C3%A9n+%F0%9F%94%91", "1")),
        ok("1")
    );
    assert_eq!(c.decide(&q("subscribe", "tökén%20🔑", "1")), ok("1"));
    assert_eq!(
        c.decide(&q("subscribe", "tokén+🔑", "1")),
        Err(ChallengeError::TokenMismatch)
    );
    // A token that does not even decode to UTF-8 is just a wrong token.
    assert_eq!(
        c.decide(&q("subscribe", "%FF", "1")),
        Err(ChallengeError::TokenMismatch)
    );
}

/// An empty configured token is refused at construction.
#[test]
fn empty_token_refused() {
    assert_eq!(Challenge::new("").unwrap_err(), ChallengeError::EmptyToken);
    // Whitespace is a (poor) token, not an empty one; trimming is the caller's choice.
    assert!(Challenge::new(" ").is_ok());
}

/// 400 for missing/repeated/too long/not UTF-8, 403 for wrong mode or token.
#[test]
fn status_mapping() {
    use ChallengeError::*;
    for e in [
        Missing(PARAM_MODE),
        Repeated(PARAM_CHALLENGE),
        ChallengeTooLong,
        ChallengeNotUtf8,
    ] {
        assert!(e.is_bad_request(), "{e}");
    }
    for e in [WrongMode, TokenMismatch, EmptyToken] {
        assert!(!e.is_bad_request(), "{e}");
    }
}

/// The token appears in no Debug output and no error message.
#[test]
fn token_never_shown() {
    let c = Challenge::new(TOKEN).unwrap();
    let debug = format!("{c:?} {c:#?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    let queries = [
        q("subscribe", "s3cret", "1"),
        q("nope", TOKEN, "1"),
        format!("hub.verify_token={TOKEN}"),
        format!("{}&hub.verify_token={TOKEN}", q("subscribe", TOKEN, "1")),
    ];
    for query in queries {
        let e = c.decide(&query).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}

/// Error messages are lowercase and name the parameter concerned.
#[test]
fn error_messages() {
    assert_eq!(
        ChallengeError::Missing(PARAM_VERIFY_TOKEN).to_string(),
        "missing query parameter hub.verify_token"
    );
    assert_eq!(
        ChallengeError::Repeated(PARAM_MODE).to_string(),
        "query parameter hub.mode given more than once"
    );
}

/// The decoder agrees byte for byte with `percent_encoding` applied after `+` → space, which
/// is the standard two-step definition (and shows our one pass decodes exactly once).
#[test]
fn decoder_matches_reference() {
    use proptest::prelude::*;
    proptest!(|(raw in "([a-zA-Z0-9+%=&~é]|%[0-9a-fA-F]{2}|%[0-9a-zA-Z]?){0,40}")| {
        let reference: Vec<u8> =
            percent_encoding::percent_decode(raw.replace('+', " ").as_bytes()).collect();
        prop_assert_eq!(decode(&raw), reference);
    });
}

/// Challenge is shareable across threads (one per process serves every connection).
#[test]
fn challenge_is_send_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Challenge>();
}
