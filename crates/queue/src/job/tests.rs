//! The envelope's unit tests: encoding, reading in place, the rewrites.

use serde_json::value::RawValue;

use super::*;
use crate::JobKind;

const PAYLOAD: &str = r#"{"from":"16315551181","id":"wamid.A\/B","text":{"body":"caf\u00e9 \ud83d\ude00"},"type":"text"}"#;

fn payload() -> Box<RawValue> {
    RawValue::from_string(PAYLOAD.to_owned()).unwrap()
}

/// A new job encodes compactly, in contract order, with v=1, attempt=0 and the payload verbatim.
#[test]
fn encode_new_job() {
    let p = payload();
    let mut job = NewJob::new("wamid.A/B", JobKind::Message, &p);
    job.received_at = 1700000000000;
    job.envelope.wamid = Some("wamid.A/B".into());
    job.envelope.type_ = Some("text".into());
    job.envelope.text = Some("café 😀".into());
    let json = job.to_json().unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"v":1,"id":"wamid.A/B","kind":"message","wamid":"wamid.A/B","type":"text","text":"café 😀","received_at":1700000000000,"attempt":0,"payload":{PAYLOAD}}}"#
        )
    );
    let mut buf = Vec::new();
    job.write_json(&mut buf).unwrap();
    assert_eq!(buf, json.as_bytes());
    assert_eq!(job.encoded_len().unwrap(), json.len());
    // Escapes count as written: a quote, a backslash and control characters.
    job.envelope.text = Some("\"\\\n\u{1}".into());
    assert_eq!(job.encoded_len().unwrap(), job.to_json().unwrap().len());
}

/// A job encoded by the producer decodes with every field and the payload byte for byte.
#[test]
fn round_trip() {
    let p = payload();
    let mut job = NewJob::new("x", JobKind::Status, &p);
    job.envelope.from = Some("1".into());
    let back = Job::from_json(&job.to_json().unwrap()).unwrap();
    assert_eq!(back.id(), "x");
    assert_eq!(back.kind_name(), "status");
    assert_eq!(back.kind(), JobKind::Status);
    assert_eq!(back.from(), Some("1"));
    assert_eq!(back.wamid(), None);
    assert_eq!(back.attempt, 0);
    assert_eq!(back.payload().get(), PAYLOAD);
}

/// Text fields read the same whether they are places in the JSON (no escapes) or decoded
/// (escapes), an absent one is `None`, and the payload is the queued bytes.
#[test]
fn text_fields_with_and_without_escapes() {
    let queued = format!(
        r#"{{"v":1,"id":"wamid.A\/B","kind":"message","text":"say \"hi\"\n","from":"1555","received_at":7,"payload":{PAYLOAD}}}"#
    );
    let job = Job::from_json(&queued).unwrap();
    assert_eq!(job.id(), "wamid.A/B");
    assert_eq!(job.kind_name(), "message");
    assert_eq!(job.text(), Some("say \"hi\"\n"));
    assert_eq!(job.from(), Some("1555"));
    assert_eq!((job.wamid(), job.last_error()), (None, None));
    assert_eq!(job.received_at, Some(7));
    assert_eq!(job.payload().get(), PAYLOAD);
    assert_eq!(job.clone().text(), job.text());
    assert!(format!("{job:?}").contains(r#"text: Some("say \"hi\"\n")"#));
    // a field of the wrong type is still refused
    assert!(Job::parse(r#"{"v":1,"id":1,"kind":"message","payload":{}}"#).is_err());
}

/// `Job::json` hands out the queued text itself: a field this version does not know and
/// the payload's escapes are all still there.
#[test]
fn json_is_the_queued_text() {
    let queued = r#"{"v":1,"id":"x","kind":"message","attempt":2,"added_later":{"a":[1]},"payload":{"t":"caf\u00e9 \/"}}"#;
    let job = Job::from_json(queued).unwrap();
    assert_eq!(job.json(), queued);
    assert_eq!(job.attempt, 2);
}

/// An unknown `v`, a missing `v`, a non-object and a missing payload are all refused.
#[test]
fn refuse_unknown() {
    let e = Job::parse(r#"{"v":2,"id":"x","kind":"message","payload":{}}"#).unwrap_err();
    assert!(e.contains("unknown contract version 2"), "{e}");
    let e = Job::parse(r#"{"v":"2","id":"x"}"#).unwrap_err();
    assert!(e.contains("unknown contract version"), "{e}");
    let e = Job::parse(r#"{"id":"x","kind":"message","payload":{}}"#).unwrap_err();
    assert!(e.contains("no contract version"), "{e}");
    assert!(Job::parse("not json").is_err());
    assert!(Job::parse(r#"{"v":1,"id":"x","kind":"message"}"#).is_err());
    // An unknown kind still parses: the handler decides.
    assert!(Job::parse(r#"{"v":1,"id":"x","kind":"poll","payload":1}"#).is_ok());
}

/// Retry, dead and replay rewrites keep the payload byte for byte and keep unknown fields.
#[test]
fn rewrites_keep_payload_and_unknown_fields() {
    let raw = format!(
        r#"{{"v":1,"id":"x","kind":"message","future":{{"a":[1, 2]}},"attempt":0,"payload":{PAYLOAD}}}"#
    );
    let r = rewrite_retry(&raw, 1, "boom \"quoted\"").unwrap();
    assert!(r.contains(&format!(r#""payload":{PAYLOAD}"#)), "{r}");
    assert!(r.contains(r#""future":{"a":[1, 2]}"#), "{r}");
    let j = Job::parse(&r).unwrap();
    assert_eq!(j.attempt, 1);
    assert_eq!(j.last_error(), Some("boom \"quoted\""));

    let d = rewrite_dead(&r, Some(2), "gave up", 42);
    assert_eq!(dead_fields(&d), (Some("gave up".into()), Some(42)));
    assert!(d.contains(&format!(r#""payload":{PAYLOAD}"#)));
    assert_eq!(Job::parse(&d).unwrap().attempt, 2);

    let p = rewrite_replay(&d).unwrap();
    let j = Job::parse(&p).unwrap();
    assert_eq!(j.attempt, 0);
    assert_eq!(j.last_error(), None);
    assert_eq!(dead_fields(&p), (None, None));
    assert!(p.contains(r#""future":{"a":[1, 2]}"#));
    assert!(p.contains(&format!(r#""payload":{PAYLOAD}"#)));
}

/// `lost` is read, stays the first field through retry and dead rewrites, and replay
/// removes it.
#[test]
fn lost_stays_first_and_replay_removes_it() {
    let raw =
        format!(r#"{{"lost":2,"v":1,"id":"x","kind":"message","attempt":1,"payload":{PAYLOAD}}}"#);
    let j = Job::parse(&raw).unwrap();
    assert_eq!((j.attempt, j.lost), (1, 2));
    let r = rewrite_retry(&raw, 2, "boom").unwrap();
    assert!(r.starts_with(r#"{"lost":2,"v":1,"#), "{r}");
    let d = rewrite_dead(&r, Some(3), "gave up", 42);
    assert!(d.starts_with(r#"{"lost":2,"v":1,"#), "{d}");
    let p = rewrite_replay(&d).unwrap();
    assert!(!p.contains(r#""lost""#), "{p}");
    assert_eq!(Job::parse(&p).unwrap().lost, 0);
}

/// Text that is not a JSON object still makes a dead entry, and replay gives it back whole.
#[test]
fn dead_wraps_garbage() {
    let d = rewrite_dead("not json {", None, "unreadable", 7);
    assert_eq!(dead_fields(&d), (Some("unreadable".into()), Some(7)));
    assert_eq!(rewrite_replay(&d).unwrap(), "not json {");
    assert_eq!(rewrite_retry("[1]", 1, "x"), None);
}
