//! The envelope's unit tests: encoding, reading in place, the rewrites.

use std::borrow::Cow;

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

/// Every text field of an envelope, to set them all.
fn every_text<'e, 'a>(e: &'e mut wa_kind::Envelope<'a>) -> [&'e mut Option<Cow<'a, str>>; 10] {
    [
        &mut e.wamid,
        &mut e.from,
        &mut e.from_user_id,
        &mut e.type_,
        &mut e.text,
        &mut e.timestamp,
        &mut e.contact_name,
        &mut e.phone_number_id,
        &mut e.display_phone_number,
        &mut e.waba_id,
    ]
}

/// The bound of a job's JSON length is never under the length, at the worst case too (every
/// field present, every character escaped to six bytes, the longest `received_at`); the frame
/// alone (empty strings) is what `FRAME_MAX_LEN` says, with room.
#[test]
fn encoded_len_bound_holds() {
    let p = RawValue::from_string("{}".to_owned()).unwrap();
    let mut job = NewJob::new("", JobKind::Other("".into()), &p);
    job.received_at = u64::MAX;
    let texts = |job: &mut NewJob<'_>, t: &str| {
        for field in every_text(&mut job.envelope) {
            *field = Some(t.to_owned().into());
        }
    };
    texts(&mut job, "");
    let frame = job.encoded_len().unwrap() - 2; // the payload `{}`
    assert_eq!(frame, 235);
    assert!(frame < new::FRAME_MAX_LEN);
    let worst = "\u{1}\u{1f}".repeat(50);
    job.id = worst.clone().into();
    job.kind = JobKind::Other(worst.clone().into());
    texts(&mut job, &worst);
    assert!(job.encoded_len().unwrap() <= job.encoded_len_bound());
    let p = payload();
    let mut job = NewJob::new("wamid.A/B", JobKind::Message, &p);
    job.envelope.text = Some("café \"😀\"".into());
    assert!(job.encoded_len().unwrap() <= job.encoded_len_bound());
}

/// A job is written directly as the same bytes as serde_json's: with every field, with none,
/// with a kind of another version's, with the longest `received_at`, with strings that need
/// an escape (a quote, a backslash, a control character) in the id or a text, appended after
/// what the buffer held.
#[test]
fn direct_encoding_matches_serde_json() {
    let p = payload();
    let mut jobs = vec![NewJob::new("wamid.A/B", JobKind::Message, &p)];
    let mut full = NewJob::new("id:sent", JobKind::Other("reaction".into()), &p);
    full.received_at = u64::MAX;
    for (i, field) in every_text(&mut full.envelope).into_iter().enumerate() {
        *field = Some(format!("café 😀 {i} ~/{{}}").into());
    }
    jobs.push(full.clone());
    let mut zero = NewJob::new("", JobKind::Status, &p);
    zero.received_at = 0;
    jobs.push(zero);
    for (what, text) in [
        ("quote", "a\"b"),
        ("backslash", "a\\b"),
        ("control", "a\u{1f}b"),
    ] {
        let mut job = full.clone();
        job.envelope.contact_name = Some(text.into());
        jobs.push(job);
        let mut job = full.clone();
        job.id = format!("{what}{text}").into();
        jobs.push(job);
    }
    for job in &jobs {
        let mut buf = b"before".to_vec();
        job.write_json(&mut buf).unwrap();
        let expected = [b"before".as_slice(), job.to_json().unwrap().as_bytes()].concat();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }
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

/// A job's fields, resolved to what the accessors hand out, for comparing two readers.
fn resolved(raw: &str, f: &read::Fields) -> String {
    let t = |t: &read::Text| match t {
        read::Text::At(r) => raw[r.clone()].to_owned(),
        read::Text::Decoded(s) => s.to_string(),
    };
    let o = |x: &Option<read::Text>| x.as_ref().map(t);
    format!(
        "{:?}",
        (
            (f.v, f.received_at, f.attempt, f.lost, t(&f.id), t(&f.kind)),
            f.texts.each_ref().map(o),
            &raw[f.payload.clone()],
        )
    )
}

/// Whenever the one-pass reader reads a text, serde_json reads it too, to the same fields.
fn agrees(raw: &str) -> Result<(), String> {
    if let Some(fast) = scan::fields(raw, crate::CONTRACT_VERSION) {
        let slow = Job::fields_serde(raw)
            .map_err(|e| format!("{raw:?}: only the fast reader reads it ({e})"))?;
        let (a, b) = (resolved(raw, &fast), resolved(raw, &slow));
        if a != b {
            return Err(format!("{raw:?}: {a} != {b}"));
        }
    }
    Ok(())
}

const SHAPED: &str = r#"{"v":1,"id":"wamid.HBgL1","kind":"message","wamid":"wamid.HBgL","from":"16505551234","type":"text","text":"Hello there","timestamp":"1700000000","contact_name":"Kerry Fisher","phone_number_id":"106540352242922","display_phone_number":"15550783881","waba_id":"102290129340398","received_at":1700000000000,"attempt":0,"payload":{"from":"16505551234","id":"wamid.HBgL","timestamp":"1700000000","text":{"body":"Hello there"},"type":"text"}}"#;

/// The one-pass reader reads the jobs the producer writes, the same as serde_json, and
/// leaves every odd or refused text to serde_json (whose reason then stands).
#[test]
fn one_pass_reader_agrees_with_serde_json() {
    assert!(scan::fields(SHAPED, crate::CONTRACT_VERSION).is_some());
    agrees(SHAPED).unwrap();
    let escaped = r#"{"v":1,"id":"a\"b","kind":"message","text":"l1\nl2 \u00e9 \ud83d\ude00","payload":{"t":"\u0041\/"},"z":[1.5e3,-0,true,false,null,{}]}"#;
    assert!(scan::fields(escaped, crate::CONTRACT_VERSION).is_some());
    agrees(escaped).unwrap();
    for odd in [
        r#"{"v":1,"id":"x","kind":"k","payload":{},"id":"y"}"#,
        r#"{"v":1.0,"id":"x","kind":"k","payload":{}}"#,
        r#"{"v":01,"id":"x","kind":"k","payload":{}}"#,
        r#"{"v":-1,"id":"x","kind":"k","payload":{}}"#,
        r#"{"v":2,"id":"x","kind":"k","payload":{}}"#,
        r#"{"v":1,"id":null,"kind":"k","payload":{}}"#,
        r#"{"v":1,"id":"x","kind":"k","payload":{},}"#,
        r#"{"v":1,"id":"x","kind":"k","payload":{}} x"#,
        r#"{"v":1,"i\u0064":"x","kind":"k","payload":{}}"#,
        r#"{"v":1,"id":"x","kind":"k","payload":{"a":"\ud800"}}"#,
        r#"{"v":1,"id":"\ud800","kind":"k","payload":{}}"#,
        r#"{"v":1,"id":"x","kind":"k","payload":{"a":"b	c"}}"#,
        r#"{"v":1,"id":"x","kind":"k","attempt":4294967296,"payload":{}}"#,
        r#"{"v":1,"id":"x","kind":"k","attempt":null,"payload":{}}"#,
        r#"{"v":1,"id":"x","kind":"k","received_at":null,"payload":{}}"#,
        r#"[1,"x","k"]"#,
        r#"{"v":1,"id":"x","kind":"k"}"#,
        r#"{"v":1,"id":"x","kind":"k","payload":01}"#,
        r#"{"v":1,"id":"x","kind":"k","payload":"a\x"}"#,
        " \t\r\n{\"v\" : 1 , \"id\" : \"x\" , \"kind\":\"k\",\"payload\" : [ ] } \n",
    ] {
        agrees(odd).unwrap();
        assert_eq!(
            Job::parse(odd).map(|j| format!("{j:?}")),
            Job::fields_serde(odd).map(|f| format!("{:?}", Job::new(odd.into(), f))),
            "{odd}"
        );
    }
    let deep = format!(
        r#"{{"v":1,"id":"x","kind":"k","payload":{}1{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    assert!(scan::fields(&deep, crate::CONTRACT_VERSION).is_none());
    assert!(Job::parse(&deep).is_ok());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
    /// Texts near a job (a few bytes of a real job replaced, inserted or removed): whatever
    /// the one-pass reader reads, serde_json reads the same.
    #[test]
    fn one_pass_reader_never_reads_more_than_serde_json(
        edits in proptest::collection::vec((0usize..400, 0u8..3, proptest::sample::select(
            b"\"\\{}[],:0123456789.-+eEtrufalsn uU\t\n\x01abv\xc3\xa9".to_vec()
        )), 1..4),
        base in proptest::sample::select(vec![SHAPED, r#"{"v":1,"id":"a\"b","kind":"message","attempt":3,"lost":1,"text":"l\n","payload":{"t":"\u0041","n":[1.5e3,-0,true,null]},"x":{"y":[{}]}}"#]),
    ) {
        let mut b = base.as_bytes().to_vec();
        for (at, how, c) in edits {
            let at = at % (b.len() + 1);
            match how {
                0 if at < b.len() => b[at] = c,
                1 => b.insert(at, c),
                _ if at < b.len() => { b.remove(at); }
                _ => {}
            }
        }
        if let Ok(text) = String::from_utf8(b) {
            agrees(&text).map_err(proptest::test_runner::TestCaseError::fail)?;
        }
    }
}
