//! Arbitrary input never panics, and mutated real bodies never lose their readable parts.

use proptest::prelude::*;
use wa_payload::{Body, Message, Status};

use crate::support::offset_in;

/// Reads everything a consumer could read from a body, so any panic would surface.
fn exercise(bytes: &[u8]) {
    if let Ok(body) = Body::parse(bytes) {
        let _ = body.object();
        for a in body.anomalies() {
            let _ = a.to_string();
        }
        for n in body.notifications() {
            let off = offset_in(bytes, n.raw);
            assert_eq!(&bytes[off..off + n.raw.get().len()], n.raw.get().as_bytes());
            let _ = n.message();
            let _ = n.status();
            let _ = n.error();
            let _ = Message::from_raw(n.raw.get());
            let _ = Status::from_raw(n.raw.get());
        }
    }
}

/// Pieces that make JSON-ish text likely to reach deep into the walk.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("-1.5e3".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just(r#""entry""#.to_owned()),
        Just(r#""changes""#.to_owned()),
        Just(r#""value""#.to_owned()),
        Just(r#""field""#.to_owned()),
        Just(r#""messages""#.to_owned()),
        Just(r#""statuses""#.to_owned()),
        Just(r#""errors""#.to_owned()),
        Just(r#""contacts""#.to_owned()),
        Just(r#""metadata""#.to_owned()),
        Just(r#""type""#.to_owned()),
        Just(r#""text""#.to_owned()),
        Just(r#""interactive""#.to_owned()),
        Just(r#""edit""#.to_owned()),
        Just(r#""\ud83d\ude9a\/""#.to_owned()),
        Just(r#""\ud800""#.to_owned()),
        "[a-z_]{0,6}".prop_map(|s| format!("\"{s}\"")),
    ]
}

/// Replaces, inserts or deletes `edits` bytes of `base`.
fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for &(at, byte, op) in edits {
        if out.is_empty() {
            out.push(byte);
            continue;
        }
        let at = at % out.len();
        match op % 3 {
            0 => out[at] = byte,
            1 => out.insert(at, byte),
            _ => {
                out.remove(at);
            }
        }
    }
    out
}

const SEED: &[u8] = include_bytes!("../data/misc_types.json");
const SEED2: &[u8] = include_bytes!("../data/odd_shapes.json");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes never panic the parser or the iterator.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    /// Arbitrary sequences of JSON tokens never panic.
    #[test]
    fn json_tokens_never_panic(tokens in proptest::collection::vec(token(), 0..64)) {
        exercise(tokens.concat().as_bytes());
    }

    /// Real bodies with random byte edits never panic.
    #[test]
    fn mutated_bodies_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8),
        which in any::<bool>(),
    ) {
        exercise(&mutate(if which { SEED } else { SEED2 }, &edits));
    }

    /// Any JSON value placed where a message, its fields or the envelope parts go keeps the body
    /// parseable and the sibling message readable.
    #[test]
    fn any_value_in_any_slot_keeps_the_sibling(
        value in prop_oneof![
            Just("null"), Just("1"), Just("-7.25"), Just("true"), Just(r#""s\/x""#),
            Just("[]"), Just("{}"), Just(r#"[{"a":[{}]}]"#), Just(r#"{"body":{"x":1}}"#),
        ],
        slot in 0usize..7,
    ) {
        let slots = [
            r#"{"id":"w1","from":"1","type":"text","text":{"body":"ok"}}"#.to_owned(),
            format!(r#"{{"id":"w1","from":"1","type":"text","text":{{"body":"ok"}},"extra":{value}}}"#),
            format!(r#"{{"id":"w1","from":"1","type":"text","text":{{"body":"ok"}},"context":{value}}}"#),
            format!(r#"{{"id":"w1","from":"1","type":"text","text":{{"body":"ok"}},"referral":{value},"errors":{value}}}"#),
            format!(r#"{{"id":"w1","from":"1","type":"text","text":{{"body":"ok"}},"timestamp":{value}}}"#),
            format!(r#"{{"id":"w1","from":"1","type":"text","text":{{"body":"ok"}},"type2":{value}}}"#),
            format!(r#"{{"id":"w1","from":"1","type":"text","text":{{"body":"ok"}},"edit":{value}}}"#),
        ];
        let body = format!(
            r#"{{"entry":[{{"id":"9","changes":[{{"value":{value},"field":"x"}},{{"value":{{"contacts":{value},"metadata":{value},"messages":[{value},{m}]}},"field":"messages"}}]}}]}}"#,
            m = slots[slot],
        );
        let parsed = Body::parse(body.as_bytes()).expect("a JSON object");
        let message = parsed
            .notifications()
            .find(|n| n.envelope.wamid.as_deref() == Some("w1"))
            .expect("the sibling message");
        prop_assert_eq!(message.envelope.text.as_deref(), Some("ok"));
        let typed = message.message().and_then(|m| m.text().map(str::to_owned));
        prop_assert_eq!(typed.as_deref(), Some("ok"));
        exercise(body.as_bytes());
    }
}

/// Non-objects are refused with a message that quotes nothing from the input.
#[test]
fn non_objects_are_refused_without_quoting() {
    for bytes in [
        &b""[..],
        b"   ",
        b"[1,2]",
        b"\"secret text\"",
        b"42",
        b"null",
        b"{\"entry\": [\"secret text\"",
        b"{\"a\":1} trailing secret",
        b"\xef\xbb\xbf{}",
        b"{\"a\":\"\xff secret\"}",
    ] {
        let err = Body::parse(bytes).expect_err("refused");
        let msg = err.to_string();
        assert!(msg.starts_with("body is not a JSON object"), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
    }
}

/// Deeply nested input is refused, not a stack overflow.
#[test]
fn deep_nesting_is_refused() {
    let mut s = String::from(r#"{"entry":"#);
    s.push_str(&"[".repeat(100_000));
    assert!(Body::parse(s.as_bytes()).is_err());
}

/// One change of a generated body.
#[derive(Debug, Clone)]
enum GenChange {
    /// a `messages` change with this many messages and statuses
    Items(usize, usize),
    /// a `messages` change whose value has only metadata
    MetadataOnly,
    /// a change of another field
    Other(&'static str),
}

fn gen_change() -> impl Strategy<Value = (GenChange, bool)> {
    let change = prop_oneof![
        (0usize..3, 0usize..3).prop_map(|(m, s)| GenChange::Items(m, s)),
        Just(GenChange::MetadataOnly),
        prop_oneof![
            Just("message_template_status_update"),
            Just("account_update"),
            Just("history")
        ]
        .prop_map(GenChange::Other),
    ];
    (change, any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the mix of fields and the order of `value` and `field`, notifications come out
    /// in body order with the right kinds, values and raw slices.
    #[test]
    fn mixed_fields_in_any_key_order_keep_body_order(
        entries in proptest::collection::vec(proptest::collection::vec(gen_change(), 0..4), 0..4),
    ) {
        let mut body = String::from(r#"{"object":"whatsapp_business_account","entry":["#);
        let mut want: Vec<(&'static str, String)> = Vec::new();
        let mut serial = 0;
        for (e, changes) in entries.iter().enumerate() {
            if e > 0 { body.push(','); }
            body.push_str(&format!(r#"{{"id":"{e}","changes":["#));
            for (c, (change, field_first)) in changes.iter().enumerate() {
                if c > 0 { body.push(','); }
                let (value, field) = match change {
                    GenChange::Items(m, s) => {
                        let mut msgs = Vec::new();
                        for _ in 0..*m {
                            serial += 1;
                            msgs.push(format!(r#"{{"id":"m{serial}","from":"1","type":"text"}}"#));
                            want.push(("message", format!("m{serial}")));
                        }
                        let mut sts = Vec::new();
                        for _ in 0..*s {
                            serial += 1;
                            sts.push(format!(r#"{{"id":"s{serial}","status":"read"}}"#));
                            want.push(("status", format!("s{serial}")));
                        }
                        (
                            format!(
                                r#"{{"metadata":{{"phone_number_id":"p{e}"}},"messages":[{}],"statuses":[{}]}}"#,
                                msgs.join(","),
                                sts.join(",")
                            ),
                            "messages",
                        )
                    }
                    GenChange::MetadataOnly => {
                        serial += 1;
                        want.push(("change", format!(r#"{{"metadata":{{"phone_number_id":"x{serial}"}}}}"#)));
                        (format!(r#"{{"metadata":{{"phone_number_id":"x{serial}"}}}}"#), "messages")
                    }
                    GenChange::Other(field) => {
                        serial += 1;
                        let v = format!(r#"{{"event":"E{serial}","messages":[{{"id":"not-a-message"}}]}}"#);
                        want.push(("change", v.clone()));
                        (v, *field)
                    }
                };
                if *field_first {
                    body.push_str(&format!(r#"{{"field":"{field}","value":{value}}}"#));
                } else {
                    body.push_str(&format!(r#"{{"value":{value},"field":"{field}"}}"#));
                }
            }
            body.push_str("]}");
        }
        body.push_str("]}");

        let parsed = Body::parse(body.as_bytes()).expect("parses");
        prop_assert!(parsed.anomalies().is_empty(), "{:?}", parsed.anomalies());
        let got: Vec<(String, String)> = parsed
            .notifications()
            .map(|n| {
                let key = match n.kind {
                    wa_payload::JobKind::Message | wa_payload::JobKind::Status => {
                        n.envelope.wamid.as_deref().unwrap_or_default().to_owned()
                    }
                    _ => n.raw.get().to_owned(),
                };
                (n.kind.to_string(), key)
            })
            .collect();
        let want: Vec<(String, String)> = want.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        prop_assert_eq!(got, want);
        crate::support::check_raw_slices(body.as_bytes());
    }
}

/// True when serde_json accepts `text` as one JSON value (skipping it, as it does for a raw value).
fn serde_accepts(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The walk refuses exactly the object-shaped texts serde_json refuses (differential check of
    /// the scanner against serde_json's grammar).
    #[test]
    fn accepts_exactly_what_serde_json_accepts(tokens in proptest::collection::vec(token(), 0..48)) {
        let text = format!("{{{}", tokens.concat());
        prop_assert_eq!(Body::parse(text.as_bytes()).is_ok(), serde_accepts(&text), "{}", text);
    }

    /// The same for real bodies with random byte edits.
    #[test]
    fn mutated_bodies_agree_with_serde_json(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
        which in any::<bool>(),
    ) {
        let bytes = mutate(if which { SEED } else { SEED2 }, &edits);
        if let Ok(text) = std::str::from_utf8(&bytes)
            && text.trim_start().starts_with('{')
        {
            prop_assert_eq!(Body::parse(&bytes).is_ok(), serde_accepts(text), "{}", text);
        }
    }
}

/// Any JSON value as text, with varied numbers, escapes and whitespace.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        Just("-0.0E+00".to_owned()),
        "[a-z0-9 ]{0,8}".prop_map(|s| format!("\"{s}\"")),
        // (no lone surrogate: the independent walk builds `serde_json::Value`s, which refuse them)
        Just(r#""\u00e9\/\"\\\b\f\n\r\t\ud83d\ude9a""#.to_owned()),
        any::<String>().prop_map(|s| serde_json::to_string(&s).expect("string")),
    ];
    let ws = prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t")];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            (proptest::collection::vec(inner.clone(), 0..5), ws.clone())
                .prop_map(|(items, ws)| format!("[{ws}{}{ws}]", items.join(&format!("{ws},")))),
            (
                proptest::collection::vec(("[a-z_]{0,6}", inner), 0..5),
                ws.clone()
            )
                .prop_map(|(members, ws)| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}"))
                        .collect();
                    format!("{{{}{ws}}}", members.join(","))
                }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary JSON inside messages, statuses, errors and other changes is accepted, and every
    /// item comes out byte for byte as an independent walk finds it.
    #[test]
    fn arbitrary_json_items_come_out_byte_for_byte(
        messages in proptest::collection::vec(json_value(), 0..4),
        other in json_value(),
        extra in json_value(),
    ) {
        let objects: Vec<String> = messages
            .iter()
            .map(|v| format!(r#"{{"id":"w","x":{v}}}"#))
            .collect();
        let body = format!(
            r#"{{"object":"whatsapp_business_account","x":{extra},"entry":[{{"id":"1","changes":[{{"value":{{"messages":[{m}],"statuses":[{m}],"errors":[{m}],"contacts":[{{"wa_id":{extra}}}],"metadata":{extra}}},"field":"messages"}},{{"value":{other},"field":"other"}}]}}]}}"#,
            m = objects.join(","),
        );
        prop_assert!(serde_accepts(&body));
        let parsed = Body::parse(body.as_bytes()).expect("accepted");
        prop_assert_eq!(parsed.len(), objects.len() * 3 + 1);
        crate::support::check_raw_slices(body.as_bytes());
    }
}
