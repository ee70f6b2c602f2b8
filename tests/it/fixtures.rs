//! Every shared webhook fixture (tests/fixtures/webhooks) through a real ingress into Redis:
//! the jobs are computed here independently from the fixture's JSON and compared field by
//! field; payloads must be the exact bytes of the body.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;

use crate::support::{Ingress, PATH, StoredJob, http1, send};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks")
}

/// The signature vectors of VECTORS.md: file name -> hex HMAC.
fn vectors() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(fixtures_dir().join("VECTORS.md")).expect("VECTORS.md");
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() >= 5 && cells[1].ends_with(".json") && cells[3].len() == 64)
                .then(|| (cells[1].to_owned(), cells[3].to_owned()))
        })
        .collect()
}

/// What a job must hold, derived from the fixture with serde_json alone.
#[derive(Debug, PartialEq)]
struct Expected {
    id: String,
    kind: &'static str,
    wamid: Option<String>,
    from: Option<String>,
    from_user_id: Option<String>,
    type_: Option<String>,
    text: Option<String>,
    timestamp: Option<String>,
    contact_name: Option<String>,
    phone_number_id: Option<String>,
    display_phone_number: Option<String>,
    waba_id: Option<String>,
    payload: Value,
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The ids of the jobs a fixture body must make (for suites that only count jobs).
pub(crate) fn expected_ids(body: &[u8]) -> Vec<String> {
    let parsed: Value = serde_json::from_slice(body).expect("fixture JSON");
    expected_jobs(&parsed).into_iter().map(|e| e.id).collect()
}

/// Every fixture's file name and bytes, sorted by name.
pub(crate) fn fixture_bodies() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/webhooks")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "fixtures missing: {files:?}");
    files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(f).unwrap())
        })
        .collect()
}

fn expected_jobs(body: &Value) -> Vec<Expected> {
    let mut out = Vec::new();
    for entry in body["entry"].as_array().into_iter().flatten() {
        let waba_id = s(entry, "id");
        for change in entry["changes"].as_array().into_iter().flatten() {
            let value = &change["value"];
            let field = s(change, "field");
            let meta = &value["metadata"];
            let base = |kind, id, payload: &Value| Expected {
                id,
                kind,
                wamid: None,
                from: None,
                from_user_id: None,
                type_: None,
                text: None,
                timestamp: None,
                contact_name: None,
                phone_number_id: s(meta, "phone_number_id"),
                display_phone_number: s(meta, "display_phone_number"),
                waba_id: waba_id.clone(),
                payload: payload.clone(),
            };
            if field.as_deref() != Some("messages") {
                // Any other field: one `change` job with the whole value.
                out.push(Expected {
                    type_: field.clone(),
                    ..base("change", HASH_ID.into(), value)
                });
                continue;
            }
            for e in value["errors"].as_array().into_iter().flatten() {
                out.push(Expected {
                    type_: field.clone(),
                    ..base("error", HASH_ID.into(), e)
                });
            }
            for m in value["messages"].as_array().into_iter().flatten() {
                let from = s(m, "from");
                let from_user_id = s(m, "from_user_id");
                let contact = value["contacts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| {
                        (from.is_some() && s(c, "wa_id") == from)
                            || (from_user_id.is_some() && s(c, "user_id") == from_user_id)
                    });
                let text = (s(m, "type").as_deref() == Some("text"))
                    .then(|| s(&m["text"], "body"))
                    .flatten();
                out.push(Expected {
                    wamid: s(m, "id"),
                    from,
                    from_user_id,
                    type_: s(m, "type"),
                    text,
                    timestamp: s(m, "timestamp"),
                    contact_name: contact.and_then(|c| s(&c["profile"], "name")),
                    ..base("message", s(m, "id").expect("message id"), m)
                });
            }
            for st in value["statuses"].as_array().into_iter().flatten() {
                // A status's `from` is its recipient: the contact is matched on that.
                let to = s(st, "recipient_id");
                let to_user = s(st, "recipient_user_id");
                let contact = value["contacts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| {
                        (to.is_some() && s(c, "wa_id") == to)
                            || (to_user.is_some() && s(c, "user_id") == to_user)
                    });
                let id = format!("{}:{}", s(st, "id").unwrap(), s(st, "status").unwrap());
                out.push(Expected {
                    wamid: s(st, "id"),
                    from: to,
                    from_user_id: to_user,
                    type_: s(st, "status"),
                    timestamp: s(st, "timestamp"),
                    contact_name: contact.and_then(|c| s(&c["profile"], "name")),
                    ..base("status", id, st)
                });
            }
        }
    }
    out
}

/// Stands for a content-hash id (its formula is checked in `endpoint`): 64 lowercase hex.
const HASH_ID: &str = "<sha-256>";

fn actual(job: &StoredJob) -> Expected {
    let hashed = matches!(job.kind.as_str(), "error" | "change");
    if hashed {
        assert!(
            job.id.len() == 64
                && job
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "not a content hash: {}",
            job.id
        );
    }
    Expected {
        id: if hashed {
            HASH_ID.into()
        } else {
            job.id.clone()
        },
        kind: match job.kind.as_str() {
            "message" => "message",
            "status" => "status",
            "error" => "error",
            "change" => "change",
            other => panic!("unknown kind {other}"),
        },
        wamid: job.wamid.clone(),
        from: job.from.clone(),
        from_user_id: job.from_user_id.clone(),
        type_: job.type_.clone(),
        text: job.text.clone(),
        timestamp: job.timestamp.clone(),
        contact_name: job.contact_name.clone(),
        phone_number_id: job.phone_number_id.clone(),
        display_phone_number: job.display_phone_number.clone(),
        waba_id: job.waba_id.clone(),
        payload: serde_json::from_str(job.payload.get()).unwrap(),
    }
}

/// Every fixture (VECTORS.md signature) makes exactly its jobs, payloads sliced, under 4 job
/// bytes per body byte; redelivery adds none.
#[tokio::test]
async fn every_fixture_becomes_its_jobs() {
    let vectors = vectors();
    let ingress = Ingress::start("fixtures").await;
    let client = http1();
    let mut total = 0;
    let mut worst = 0f64;
    for (name, body) in fixture_bodies() {
        let hmac = vectors
            .get(&name)
            .unwrap_or_else(|| panic!("{name} has no vector"));
        let post = || {
            Request::post(format!("{}{PATH}", ingress.base))
                .header("x-hub-signature-256", format!("sha256={hmac}"))
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap()
        };
        let answer = send(&client, post()).await;
        assert_eq!(answer.status, 200, "{name}");

        let parsed: Value = serde_json::from_slice(&body).unwrap();
        let mut want = expected_jobs(&parsed);
        assert!(!want.is_empty(), "{name} yields no job");
        let stored = ingress.queue.pending().await;
        let mine = &stored[total..];
        assert_eq!(mine.len(), want.len(), "{name}: job count");
        let body_text = std::str::from_utf8(&body).unwrap();
        let mut got: Vec<Expected> = mine.iter().map(actual).collect();
        for job in mine {
            assert_eq!((job.v, job.attempt), (1, 0), "{name}");
            assert!(
                body_text.contains(job.payload.get()),
                "{name}: payload is not a slice of the body"
            );
        }
        let key = |e: &Expected| (e.kind, e.id.clone(), e.payload.to_string());
        want.sort_by_key(key);
        got.sort_by_key(key);
        assert_eq!(got, want, "{name}");
        // Real bodies stay far below the bound hostile ones are held to (docs/security.md).
        let job_bytes: usize = ingress.queue.pending_raw().await[total..]
            .iter()
            .map(String::len)
            .sum();
        let ratio = job_bytes as f64 / body.len() as f64;
        assert!(
            ratio < 4.0,
            "{name}: {job_bytes} job bytes for {} body bytes",
            body.len()
        );
        worst = worst.max(ratio);
        total += want.len();

        // Meta's redelivery: 200 and nothing new.
        assert_eq!(send(&client, post()).await.status, 200, "{name} again");
        assert_eq!(
            ingress.queue.pending_raw().await.len(),
            total,
            "{name} again"
        );
    }
    println!("fixtures: at most {worst:.2} job bytes per body byte");
}

/// Meta's wire form (`\uXXXX`, `\/`) is verified and stored with its escapes, fields decoded.
#[tokio::test]
async fn wire_escapes_are_kept_byte_for_byte() {
    let plain = std::fs::read_to_string(fixtures_dir().join("23_text_unicode_emoji.json")).unwrap();
    let mut wire = String::with_capacity(plain.len() * 2);
    for c in plain.chars() {
        match c {
            '/' => wire.push_str("\\/"),
            c if c.is_ascii() => wire.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    wire.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    assert!(wire.is_ascii() && wire != plain);
    let ingress = Ingress::start("wire").await;
    assert_eq!(ingress.post(wire.clone()).await.status, 200);
    let jobs = ingress.queue.pending().await;
    assert_eq!(jobs.len(), 1);
    let payload = jobs[0].payload.get();
    assert!(payload.is_ascii() && payload.contains("\\u"), "{payload}");
    assert!(wire.contains(payload));
    let want = expected_jobs(&serde_json::from_str(&plain).unwrap());
    assert_eq!(jobs[0].text, want[0].text);
    assert_eq!(jobs[0].contact_name, want[0].contact_name);
}

/// The same fixture with a byte changed after signing is refused: the signature covers the body.
#[tokio::test]
async fn tampered_fixture_is_refused() {
    let body = std::fs::read(fixtures_dir().join("01_text.json")).unwrap();
    let hmac = vectors()["01_text.json"].clone();
    let mut tampered = body.clone();
    let at = tampered
        .iter()
        .position(|b| *b == b'?')
        .expect("a '?' in 01_text");
    tampered[at] = b'!';
    let ingress = Ingress::start("tampered").await;
    let req = Request::post(format!("{}{PATH}", ingress.base))
        .header("x-hub-signature-256", format!("sha256={hmac}"))
        .body(Full::new(Bytes::from(tampered)))
        .unwrap();
    assert_eq!(send(&http1(), req).await.status, 403);
    assert!(ingress.queue.pending_raw().await.is_empty());
}
