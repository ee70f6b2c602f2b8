//! Large batches: every message of a 1000-message body across several entries and changes.

use std::borrow::Cow;

use wa_payload::{Body, JobKind};

use crate::batch::{CHANGES, ENTRIES, batch, is_username_user, wamid};
use crate::support::check_raw_slices;

/// A 1000-message batch yields 1000 messages in body order, each with its own wamid, sender,
/// contact and entry, and raw slices that are byte for byte its objects.
#[test]
fn thousand_messages_across_entries_and_changes() {
    let text = batch(1000);
    let bytes = text.as_bytes();
    let body = Body::parse(bytes).expect("parses");
    assert!(body.anomalies().is_empty());
    assert_eq!(body.len(), 1000);
    let mut wabas = std::collections::BTreeSet::new();
    for (i, n) in body.notifications().enumerate() {
        assert_eq!(n.kind, JobKind::Message);
        assert_eq!(
            n.envelope.wamid.as_deref(),
            Some(wamid(i).as_str()),
            "message {i}"
        );
        assert_eq!(n.envelope.type_.as_deref(), Some("text"));
        assert_eq!(
            n.envelope.timestamp.as_deref(),
            Some((1_768_990_000 + i).to_string().as_str())
        );
        let contact = n.contact.as_ref().expect("contact");
        if is_username_user(i) {
            assert_eq!(n.envelope.from, None);
            assert_eq!(
                contact.username.as_deref(),
                Some(format!("kai.{i}").as_str())
            );
            // Plain ASCII stays borrowed from the body.
            assert!(matches!(n.envelope.contact_name, Some(Cow::Borrowed(_))));
        } else {
            assert_eq!(
                n.envelope.from.as_deref(),
                Some(format!("3461{i:07}").as_str())
            );
            assert_eq!(
                n.envelope.contact_name.as_deref(),
                Some(format!("José Núñez {i}").as_str())
            );
        }
        assert_eq!(contact.user_id, n.envelope.from_user_id);
        assert!(
            n.envelope
                .text
                .as_deref()
                .is_some_and(|t| t.starts_with("¿Tienen la talla")
                    && t.ends_with(&format!("https://example.com/o/{i}")))
        );
        wabas.insert(n.envelope.waba_id.expect("waba id").into_owned());
    }
    assert_eq!(wabas.len(), ENTRIES);
    check_raw_slices(bytes);
}

/// Batches of every small size split into the right number of notifications, in order.
#[test]
fn small_batches_keep_count_and_order() {
    for n in [0, 1, 2, 19, ENTRIES * CHANGES, 21, 57] {
        let text = batch(n);
        let body = Body::parse(text.as_bytes()).expect("parses");
        let ids: Vec<String> = body
            .notifications()
            .map(|x| x.envelope.wamid.expect("wamid").into_owned())
            .collect();
        let want: Vec<String> = (0..n).map(wamid).collect();
        assert_eq!(ids, want, "batch of {n}");
    }
}

/// A contact list in another order than the messages still gives each message its own contact.
#[test]
fn contacts_in_another_order_still_match() {
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{
        "contacts":[{"profile":{"name":"B"},"wa_id":"2"},{"profile":{"name":"C"},"user_id":"US.3"},
                    {"profile":{"name":"A"},"wa_id":"1"}],
        "messages":[{"from":"1","id":"w1","type":"text"},{"from_user_id":"US.3","id":"w3","type":"text"},
                    {"from":"2","id":"w2","type":"text"},{"from":"9","id":"w9","type":"text"},
                    {"id":"w0","type":"text"}]},"field":"messages"}]}]}"#;
    let body = Body::parse(body).expect("parses");
    let names: Vec<Option<String>> = body
        .notifications()
        .map(|n| n.envelope.contact_name.map(Cow::into_owned))
        .collect();
    // An unknown sender gets no contact; so does one without any id when there are several.
    assert_eq!(
        names,
        [
            Some("A".into()),
            Some("C".into()),
            Some("B".into()),
            None,
            None
        ]
    );
}

/// `into_notifications` yields exactly what `notifications` yields.
#[test]
fn into_notifications_matches_notifications() {
    let text = batch(200);
    for bytes in [
        text.as_bytes().to_vec(),
        crate::support::data("mixed_users_batch.json"),
        crate::support::data("odd_shapes.json"),
    ] {
        let body = Body::parse(&bytes).expect("parses");
        let borrowed: Vec<String> = body.notifications().map(|n| format!("{n:?}")).collect();
        let moved: Vec<String> = body
            .into_notifications()
            .map(|n| format!("{n:?}"))
            .collect();
        assert_eq!(borrowed, moved);
    }
}
