//! The filter's and the entry key's unit tests.

use super::*;

const JOB: &str = r#"{"v":1,"id":"wamid.1","kind":"message","phone_number_id":"111","attempt":5,"payload":{"x":1},"error":"Handler said NO","died_at":1000}"#;

fn filter() -> DeadFilter {
    DeadFilter::default()
}

/// Each condition narrows; all must hold; an empty filter matches everything.
#[test]
fn filter_conditions() {
    let ok = |f: DeadFilter| f.matcher().matches(JOB);
    assert!(ok(filter()));
    assert!(ok(DeadFilter {
        kind: Some("message".into()),
        ..filter()
    }));
    assert!(!ok(DeadFilter {
        kind: Some("status".into()),
        ..filter()
    }));
    assert!(ok(DeadFilter {
        phone_number_id: Some("111".into()),
        ..filter()
    }));
    assert!(!ok(DeadFilter {
        phone_number_id: Some("11".into()),
        ..filter()
    }));
    assert!(ok(DeadFilter {
        error: Some("said no".into()),
        ..filter()
    }));
    assert!(!ok(DeadFilter {
        error: Some("yes".into()),
        ..filter()
    }));
    assert!(ok(DeadFilter {
        died_after: Some(1000),
        died_before: Some(1000),
        ..filter()
    }));
    assert!(!ok(DeadFilter {
        died_after: Some(1001),
        ..filter()
    }));
    assert!(!ok(DeadFilter {
        died_before: Some(999),
        ..filter()
    }));
    assert!(ok(DeadFilter {
        ids: vec!["wamid.1".into()],
        ..filter()
    }));
    assert!(ok(DeadFilter {
        ids: vec![entry_key(JOB)],
        ..filter()
    }));
    assert!(!ok(DeadFilter {
        ids: vec!["wamid.2".into()],
        ..filter()
    }));
    assert!(!ok(DeadFilter {
        kind: Some("message".into()),
        phone_number_id: Some("222".into()),
        ..filter()
    }));
}

/// An entry that is not JSON matches only the empty filter; one without `died_at` matches
/// no age range.
#[test]
fn filter_on_odd_entries() {
    let kind = DeadFilter {
        kind: Some("message".into()),
        ..filter()
    };
    assert!(!kind.matcher().matches("not json"));
    assert!(filter().matcher().matches("not json"));
    let aged = DeadFilter {
        died_after: Some(0),
        ..filter()
    };
    assert!(
        !aged
            .matcher()
            .matches(r#"{"v":1,"id":"a","kind":"message"}"#)
    );
}

/// The key is a function of the exact bytes: one byte apart, another key.
#[test]
fn keys_follow_bytes() {
    assert_eq!(entry_key(JOB), entry_key(JOB));
    assert_eq!(entry_key(JOB).len(), 16);
    assert_ne!(entry_key(JOB), entry_key(&JOB.replace("1000", "1001")));
    // FNV-1a 64 of the empty string, as published.
    assert_eq!(entry_key(""), "cbf29ce484222325");
}
