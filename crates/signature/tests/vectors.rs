//! Known-answer vectors over the webhook fixtures, and the negative cases around them.
//!
//! The fixtures and `VECTORS.md` live in the repository at `tests/fixtures/webhooks` (a copy of
//! the team's shared fixtures, so a fresh clone tests the same bytes). The HMAC values in
//! `VECTORS.md` were computed by an independent tool (`openssl dgst -sha256 -hmac`), not by
//! this crate.

use std::fs;
use std::path::{Path, PathBuf};

use wa_signature::{MalformedReason, Signature, SignatureError, Verifier, sign};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/webhooks");
const SECRET: &str = "test_app_secret_0123456789abcdef";
const UNICODE_FIXTURE: &str = "23_text_unicode_emoji.json";

/// One row of the table in `VECTORS.md`.
struct Vector {
    file: String,
    len: usize,
    hex: String,
}

/// Reads the `| file | bytes | HMAC-SHA256 |` rows of `VECTORS.md`.
fn vectors() -> Vec<Vector> {
    let path = Path::new(FIXTURES).join("VECTORS.md");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.contains(&format!("secret `{SECRET}`")),
        "VECTORS.md no longer names the secret these tests use"
    );
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // ["", file, bytes, hex, ""] for a data row; skips the header and the rule.
            match cells.as_slice() {
                ["", file, len, hex, ""] if file.ends_with(".json") => Some(Vector {
                    file: file.to_string(),
                    len: len.parse().expect("byte count"),
                    hex: hex.to_string(),
                }),
                _ => None,
            }
        })
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(FIXTURES).join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(FIXTURES)
        .expect("fixture folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn verifier() -> Verifier {
    Verifier::new([SECRET]).expect("verifier")
}

/// Every vector in VECTORS.md verifies over its fixture's exact bytes, and `sign` reproduces it.
#[test]
fn every_known_answer_vector_verifies() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 20, "VECTORS.md should list 20 fixtures");
    let v = verifier();
    for vector in &vectors {
        let body = fixture(&vector.file);
        assert_eq!(body.len(), vector.len, "{}: size", vector.file);
        let header = format!("sha256={}", vector.hex);
        assert_eq!(
            v.verify(Some(header.as_bytes()), &body),
            Ok(()),
            "{}",
            vector.file
        );
        assert_eq!(sign(SECRET.as_bytes(), &body), header, "{}", vector.file);
    }
}

/// Every fixture file in the folder has a vector (a new fixture without one fails here).
#[test]
fn every_fixture_has_a_vector() {
    let listed: Vec<String> = vectors().into_iter().map(|v| v.file).collect();
    let files = json_files();
    assert!(!files.is_empty());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(listed.contains(&name), "{name} has no vector in VECTORS.md");
    }
}

/// The in-repo fixture copy is byte-identical to the team's shared fixtures, where those sit
/// beside the repository (as on the team's machines and in CI); elsewhere there is nothing to
/// compare against and the test says so.
#[test]
fn repo_copy_matches_shared_fixtures() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/webhooks");
    if !shared.is_dir() {
        eprintln!(
            "no shared fixtures at {}: nothing to compare",
            shared.display()
        );
        return;
    }
    let mut compared = 0;
    for entry in fs::read_dir(&shared).expect("shared fixture folder") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ours = Path::new(FIXTURES).join(&name);
        assert!(
            ours.is_file(),
            "{name} is in shared fixtures but not copied into the repo"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            fs::read(&ours).unwrap(),
            "{name} differs"
        );
        compared += 1;
    }
    assert!(compared > 0);
}

/// Upper-case hex of a known vector is accepted: hex case carries no information.
#[test]
fn uppercase_hex_accepted() {
    let v = verifier();
    for vector in vectors() {
        let body = fixture(&vector.file);
        let header = format!("sha256={}", vector.hex.to_uppercase());
        assert_eq!(v.verify(Some(header.as_bytes()), &body), Ok(()));
    }
}

/// Flipping any single bit of the body, or any hex digit of the header, is a mismatch.
#[test]
fn flipped_byte_is_a_mismatch() {
    let v = verifier();
    let vector = &vectors()[0];
    let body = fixture(&vector.file);
    let header = format!("sha256={}", vector.hex);

    for i in 0..body.len() {
        for bit in [0x01u8, 0x80] {
            let mut forged = body.clone();
            forged[i] ^= bit;
            assert_eq!(
                v.verify(Some(header.as_bytes()), &forged),
                Err(SignatureError::Mismatch),
                "body byte {i} bit {bit:#x}"
            );
        }
    }
    let prefix = "sha256=".len();
    for i in prefix..header.len() {
        let mut forged = header.clone().into_bytes();
        // Swap to another hex digit so the value stays well-formed.
        forged[i] = if forged[i] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            v.verify(Some(&forged), &body),
            Err(SignatureError::Mismatch),
            "header char {i}"
        );
    }
}

/// A body with bytes appended or removed no longer verifies.
#[test]
fn truncated_or_extended_body_is_a_mismatch() {
    let v = verifier();
    let vector = &vectors()[0];
    let body = fixture(&vector.file);
    let header = format!("sha256={}", vector.hex);
    // The fixture ends with one newline; dropping it is the classic "trimmed body" bug.
    assert_eq!(
        v.verify(Some(header.as_bytes()), &body[..body.len() - 1]),
        Err(SignatureError::Mismatch)
    );
    let mut longer = body.clone();
    longer.push(b'\n');
    assert_eq!(
        v.verify(Some(header.as_bytes()), &longer),
        Err(SignatureError::Mismatch)
    );
}

/// Truncated hex (every length short of 64) is malformed, not a mismatch, and hashes nothing.
#[test]
fn truncated_hex_is_malformed() {
    let v = verifier();
    let vector = &vectors()[0];
    let body = fixture(&vector.file);
    for len in 0..64 {
        let header = format!("sha256={}", &vector.hex[..len]);
        assert_eq!(
            v.verify(Some(header.as_bytes()), &body),
            Err(MalformedReason::WrongLength.into()),
            "{len} hex digits"
        );
    }
}

/// The bare hex digest (no `sha256=`) and the legacy `sha1=` form are refused as malformed.
#[test]
fn missing_prefix_and_sha1_are_malformed() {
    let v = verifier();
    let vector = &vectors()[0];
    let body = fixture(&vector.file);
    let err = v.verify(Some(vector.hex.as_bytes()), &body).unwrap_err();
    assert_eq!(err.malformed_reason(), Some(MalformedReason::MissingPrefix));
    assert_eq!(
        err.to_string(),
        "malformed signature: missing sha256= prefix"
    );
    let sha1 = format!("sha1={}", &vector.hex[..40]);
    assert_eq!(
        v.verify(Some(sha1.as_bytes()), &body),
        Err(MalformedReason::Sha1.into())
    );
}

/// An empty body has a signature like any other (known answer from openssl).
#[test]
fn empty_body_known_answer() {
    let expected = "sha256=41e8f75a26ef599c5c89e456ec3c0729db143bb9925971cd4dab8c31ea4a95c3";
    assert_eq!(sign(SECRET.as_bytes(), b""), expected);
    let v = verifier();
    assert_eq!(v.verify(Some(expected.as_bytes()), b""), Ok(()));
    // ...and it does not vouch for a non-empty body, nor a real body's signature for an empty one.
    assert_eq!(
        v.verify(Some(expected.as_bytes()), b"{}"),
        Err(SignatureError::Mismatch)
    );
    let vector = &vectors()[0];
    let header = format!("sha256={}", vector.hex);
    assert_eq!(
        v.verify(Some(header.as_bytes()), b""),
        Err(SignatureError::Mismatch)
    );
}

/// An empty secret is refused at construction, alone or in a rotation list.
#[test]
fn empty_secret_refused() {
    assert_eq!(
        Verifier::new([""]).unwrap_err(),
        SignatureError::EmptySecret
    );
    assert_eq!(
        Verifier::from_list(&format!("{SECRET},")).unwrap_err(),
        SignatureError::EmptySecret
    );
    assert_eq!(
        Verifier::from_list("").unwrap_err(),
        SignatureError::NoSecret
    );
}

/// With two secrets configured, a body signed by either verifies, one signed by neither doesn't.
#[test]
fn rotation_with_two_secrets() {
    let vector = &vectors()[0];
    let body = fixture(&vector.file);
    let old_header = format!("sha256={}", vector.hex);
    let new_secret = "rotated_secret_fedcba9876543210";
    let new_header = sign(new_secret.as_bytes(), &body);

    // Order does not matter for the answer.
    for list in [
        format!("{new_secret},{SECRET}"),
        format!("{SECRET}, {new_secret}"),
    ] {
        let v = Verifier::from_list(&list).unwrap();
        assert_eq!(v.secret_count(), 2);
        assert_eq!(v.verify(Some(old_header.as_bytes()), &body), Ok(()));
        assert_eq!(v.verify(Some(new_header.as_bytes()), &body), Ok(()));
        let stranger = sign(b"someone_else", &body);
        assert_eq!(
            v.verify(Some(stranger.as_bytes()), &body),
            Err(SignatureError::Mismatch)
        );
    }
    // After rotation completes, the old signature is refused.
    let v = Verifier::from_list(new_secret).unwrap();
    assert_eq!(
        v.verify(Some(old_header.as_bytes()), &body),
        Err(SignatureError::Mismatch)
    );
}

/// Parsing once and verifying with `verify_parsed` gives the same answers as `verify`.
#[test]
fn verify_parsed_agrees() {
    let v = verifier();
    for vector in vectors() {
        let body = fixture(&vector.file);
        let sig: Signature = format!("sha256={}", vector.hex).parse().unwrap();
        assert_eq!(v.verify_parsed(&sig, &body), Ok(()));
        assert_eq!(
            v.verify_parsed(&sig, b"other"),
            Err(SignatureError::Mismatch)
        );
    }
}

/// Meta's wire form of a body: non-ASCII as lowercase `\uXXXX` (UTF-16 units, so an emoji is a
/// surrogate pair) and `/` as `\/`. Both only occur inside JSON strings, so escaping every
/// occurrence in the document is exact.
fn meta_wire_form(pretty_utf8: &str) -> String {
    let mut out = String::with_capacity(pretty_utf8.len() * 2);
    for c in pretty_utf8.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

/// The re-serialisation trap: parsing a signed body and re-emitting it with serde_json gives
/// the same JSON value but different bytes, so the signature no longer verifies.
///
/// Why: an HMAC covers bytes, not meaning. serde_json writes its own whitespace and key order
/// (a compact re-emit drops Meta's layout), and it writes non-ASCII as raw UTF-8 and `/`
/// unescaped, whereas Meta sends `\u00e9`, `\ud83c\udf35` and `\/`. Nothing a serialiser can be
/// configured to do recovers the sender's exact choices, so the only correct input to the
/// check is the body exactly as received. Shown on the unicode/emoji fixture, both as stored
/// (UTF-8, pretty-printed) and in Meta's escaped wire form.
#[test]
fn reserialised_body_no_longer_verifies() {
    let v = verifier();
    let raw = fixture(UNICODE_FIXTURE);
    let vector = vectors()
        .into_iter()
        .find(|v| v.file == UNICODE_FIXTURE)
        .expect("vector for the unicode fixture");
    let header = format!("sha256={}", vector.hex);
    assert_eq!(v.verify(Some(header.as_bytes()), &raw), Ok(()));

    // 1. The stored fixture, parsed and re-emitted compactly: same value, different bytes.
    let value: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let reemitted = serde_json::to_vec(&value).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reemitted).unwrap(),
        value
    );
    assert_ne!(reemitted, raw);
    assert_eq!(
        v.verify(Some(header.as_bytes()), &reemitted),
        Err(SignatureError::Mismatch)
    );

    // 2. The same body as Meta puts it on the wire (escaped), signed over those bytes.
    let wire = meta_wire_form(std::str::from_utf8(&raw).unwrap());
    assert!(wire.is_ascii());
    assert!(wire.contains("\\ud83c\\udf35") && wire.contains("https:\\/\\/"));
    let wire_header = sign(SECRET.as_bytes(), wire.as_bytes());
    assert_eq!(
        v.verify(Some(wire_header.as_bytes()), wire.as_bytes()),
        Ok(())
    );
    let wire_value: serde_json::Value = serde_json::from_str(&wire).unwrap();
    assert_eq!(wire_value, value, "escaping changes bytes, not data");

    // Re-emitted in any layout serde_json offers, the escapes are gone and the MAC fails,
    // even pretty-printed with the trailing newline restored.
    let mut pretty = serde_json::to_vec_pretty(&wire_value).unwrap();
    pretty.push(b'\n');
    for candidate in [serde_json::to_vec(&wire_value).unwrap(), pretty] {
        assert!(
            !candidate.windows(2).any(|w| w == b"\\u"),
            "serde_json unescaped it"
        );
        assert_eq!(
            v.verify(Some(wire_header.as_bytes()), &candidate),
            Err(SignatureError::Mismatch)
        );
    }
}
