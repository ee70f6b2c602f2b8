//! Fuzzes the payload walk: `Body::parse`, `Body::parse_limited` and every notification they
//! yield.
//!
//! Checks that no input panics, that every field of every notification can be read, that
//! each notification's raw object is a slice of the input itself (byte for byte as received,
//! never a re-encoded copy), that a notification's contact is its sender's (the lookup by
//! position and through the index), that walking a body twice yields the same notifications,
//! and that a part limit either walks the same body or refuses it as too many parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wa_payload::{Body, PayloadError};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = Body::parse(data) else {
        return;
    };
    let _ = body.object();
    let input = data.as_ptr_range();
    let mut walked = Vec::new();
    for n in body.notifications() {
        let raw = n.raw.get().as_bytes().as_ptr_range();
        assert!(
            input.start <= raw.start && raw.end <= input.end,
            "raw object is not a slice of the received body"
        );
        let mut len = 0usize;
        for s in n
            .envelope
            .fields()
            .into_iter()
            .map(|(_, v)| v)
            .chain([n.field.as_deref()])
            .flatten()
        {
            len += s.len();
        }
        if let Some(c) = &n.contact {
            let e = &n.envelope;
            let anonymous = e.from.is_none() && e.from_user_id.is_none();
            let by_wa_id = e.from.is_some() && c.wa_id == e.from;
            let by_user_id = e.from_user_id.is_some() && c.user_id == e.from_user_id;
            assert!(anonymous || by_wa_id || by_user_id, "someone else's contact");
            len += [&c.username, &c.wa_id, &c.user_id]
                .into_iter()
                .flatten()
                .count();
        }
        walked.push((n.kind, n.raw.get().len(), len, n.entry_time));
    }
    let again: Vec<_> = body
        .notifications()
        .map(|n| (n.kind, n.raw.get().len()))
        .collect();
    assert_eq!(again.len(), walked.len(), "second walk differs");
    for (a, w) in again.iter().zip(&walked) {
        assert_eq!((&a.0, a.1), (&w.0, w.1), "second walk differs");
    }
    // A limit from the input itself: the same notifications, or too many parts.
    let limit = data.len() % 64;
    match Body::parse_limited(data, limit) {
        Ok(limited) => {
            let kept: Vec<_> = limited
                .notifications()
                .map(|n| (n.kind, n.raw.get().len()))
                .collect();
            assert_eq!(kept, again, "a limited walk differs");
            assert!(kept.len() <= limit, "more notifications than the limit");
        }
        Err(PayloadError::TooManyParts(n)) => assert_eq!(n, limit),
        Err(e) => panic!("a body that parses failed under a limit: {e}"),
    }
});
