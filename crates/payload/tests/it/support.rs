//! Helpers shared by the test modules.

use std::path::PathBuf;

use serde_json::Value;
use serde_json::value::RawValue;
use wa_payload::{Body, JobKind};

/// The repository copy of the shared webhook fixtures.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/webhooks"
    ))
}

/// This crate's own real-shaped bodies.
pub fn data_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

/// Reads one of this crate's bodies.
pub fn data(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The byte offset of `raw` inside `body`; panics when `raw` was not borrowed from `body`.
pub fn offset_in(body: &[u8], raw: &RawValue) -> usize {
    let start = body.as_ptr() as usize;
    let at = raw.get().as_ptr() as usize;
    assert!(
        at >= start && at + raw.get().len() <= start + body.len(),
        "raw slice is not inside the body"
    );
    at - start
}

/// Checks that every notification's `raw` is, byte for byte, one whole JSON value in the body at
/// its own offset, and that together they are exactly the items an independent `serde_json::Value`
/// walk finds (messages, statuses and value-level errors of `messages` changes, and the values of
/// other changes).
pub fn check_raw_slices(bytes: &[u8]) {
    let body = Body::parse(bytes).expect("body parses");
    let mut ours: Vec<(String, String)> = Vec::new();
    for n in body.notifications() {
        let off = offset_in(bytes, n.raw);
        let len = n.raw.get().len();
        assert_eq!(&bytes[off..off + len], n.raw.get().as_bytes());
        // The value that starts at this offset ends exactly where the slice ends.
        let mut stream =
            serde_json::Deserializer::from_slice(&bytes[off..]).into_iter::<&RawValue>();
        let whole = stream.next().expect("a value").expect("valid JSON");
        assert_eq!(
            whole.get().len(),
            len,
            "slice at {off} is not one whole value"
        );
        let v: Value = serde_json::from_str(n.raw.get()).expect("raw is JSON");
        ours.push((n.kind.to_string(), v.to_string()));
    }
    let mut expected = independent_items(bytes);
    ours.sort();
    expected.sort();
    assert_eq!(
        ours, expected,
        "notifications differ from an independent walk"
    );
}

/// The items of a well-formed body, found through `serde_json::Value`.
fn independent_items(bytes: &[u8]) -> Vec<(String, String)> {
    let v: Value = serde_json::from_slice(bytes).expect("JSON");
    let mut out = Vec::new();
    for entry in v["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            let value = &change["value"];
            if change["field"] == "messages" {
                let mut any = false;
                for (key, kind) in [
                    ("messages", JobKind::Message),
                    ("statuses", JobKind::Status),
                    ("errors", JobKind::Error),
                ] {
                    if let Some(items) = value.get(key) {
                        any = true;
                        for item in items.as_array().into_iter().flatten() {
                            out.push((kind.to_string(), item.to_string()));
                        }
                    }
                }
                if !any {
                    out.push((JobKind::Change.to_string(), value.to_string()));
                }
            } else {
                out.push((JobKind::Change.to_string(), value.to_string()));
            }
        }
    }
    out
}
