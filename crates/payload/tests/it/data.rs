//! This crate's own real-shaped bodies (tests/data), field by field.
//!
//! Over 400 lines: one expectation per body of tests/data, written out field by field on
//! purpose.

use std::borrow::Cow;

use wa_payload::{
    Anomaly, Body, Content, Interactive, JobKind, Notification, Problem, StatusValue,
};

use crate::support::{check_raw_slices, data, data_dir};

fn all(bytes: &[u8]) -> (Vec<Notification<'_>>, Vec<Anomaly>) {
    let body = Body::parse(bytes).expect("parses");
    (body.notifications().collect(), body.anomalies().to_vec())
}

/// Every body in tests/data yields raw slices that are byte for byte its objects.
#[test]
fn raw_slices_of_every_data_body() {
    let mut n = 0;
    for entry in std::fs::read_dir(data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") && !path.ends_with("odd_shapes.json") {
            check_raw_slices(&std::fs::read(&path).expect("read"));
            n += 1;
        }
    }
    assert!(n >= 12);
}

/// A batch mixing phone users and username users without `from` matches each sender's contact.
#[test]
fn mixed_phone_and_username_users() {
    let bytes = data("mixed_users_batch.json");
    let (ns, anomalies) = all(&bytes);
    assert!(anomalies.is_empty());
    assert_eq!(ns.len(), 4);
    let kinds: Vec<JobKind> = ns.iter().map(|n| n.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            JobKind::Message,
            JobKind::Message,
            JobKind::Message,
            JobKind::Status
        ]
    );

    assert!(ns[0].contact.is_some(), "contact");
    assert_eq!(ns[0].envelope.contact_name.as_deref(), Some("Ana Costa"));
    assert_eq!(
        ns[0].envelope.from_user_id.as_deref(),
        Some("BR.8812340000111222")
    );

    // The username user: no `from`, matched on `from_user_id`.
    assert_eq!(ns[1].envelope.from, None);
    assert_eq!(
        ns[1].envelope.from_user_id.as_deref(),
        Some("US.13491208655302741918")
    );
    let c1 = ns[1].contact.as_ref().expect("contact");
    assert_eq!(c1.username.as_deref(), Some("kai.surfs"));
    assert_eq!(c1.wa_id, None);
    assert_eq!(
        ns[1].envelope.text.as_deref(),
        Some("hey, do you ship to Hawaii?")
    );

    // Escaped name, matched on wa_id alone.
    assert!(ns[2].contact.is_some(), "contact");
    assert_eq!(ns[2].envelope.contact_name.as_deref(), Some("Lena Müller"));
    let m = ns[2].message().expect("typed");
    let Content::Image(img) = m.content else {
        panic!("image")
    };
    assert_eq!(img.mime_type.as_deref(), Some("image/jpeg"));
    assert_eq!(img.sha256.as_deref(), Some("a2V5/c2hh"));

    // Status to a username user: recipient only by user id.
    assert_eq!(ns[3].envelope.from, None);
    assert_eq!(
        ns[3].envelope.from_user_id.as_deref(),
        Some("US.13491208655302741918")
    );
    assert_eq!(
        ns[3].contact.as_ref().and_then(|c| c.username.as_deref()),
        Some("kai.surfs")
    );
    let st = ns[3].status().expect("typed");
    assert_eq!(st.recipient_parent_user_id.as_deref(), Some("US.ENT.5566"));
    assert_eq!(st.recipient_id, None);
}

/// Wire escapes (`\uXXXX`, surrogate pairs, `\/`) are unescaped in fields and kept in `raw`.
#[test]
fn wire_escaped_unicode() {
    let bytes = data("wire_escaped_unicode.json");
    let (ns, _) = all(&bytes);
    let n = &ns[0];
    assert_eq!(
        n.envelope.wamid.as_deref(),
        Some("wamid.HBgLMzQ2MTIzNDU2NzgVAgASGBQzQUFCQ0RFRi8/K0FCQ0RFRjAxMgA=")
    );
    assert!(matches!(n.envelope.wamid, Some(Cow::Owned(_))));
    assert!(matches!(n.envelope.from, Some(Cow::Borrowed(_))));
    assert_eq!(
        n.envelope.text.as_deref(),
        Some(
            "¡Hola! ¿Dónde está mi pedido? 🚚📦 — 谢谢 https://example.com/track/ES-9981 <b> 100% @shop"
        )
    );
    assert_eq!(n.envelope.contact_name.as_deref(), Some("José Núñez 🌵"));
    assert!(n.raw.get().contains(r#"\u00a1Hola! \u00bfD\u00f3nde"#));
    assert!(n.raw.get().contains(r#"Ri8\/K0FC"#));
}

/// A flow reply keeps `response_json` as a string and reads it on request.
#[test]
fn nfm_reply_flow() {
    let bytes = data("nfm_reply_flow.json");
    let (ns, _) = all(&bytes);
    let m = ns[0].message().expect("typed");
    assert_eq!(m.from_user_id.as_deref(), Some("DE.7700112233445566"));
    let Content::Interactive(Interactive::NfmReply(reply)) = m.content else {
        panic!("nfm_reply")
    };
    assert_eq!(reply.name.as_deref(), Some("flow"));
    assert_eq!(reply.body.as_deref(), Some("Sent"));
    assert!(
        reply
            .response_json
            .as_deref()
            .is_some_and(|j| j.starts_with(r#"{"flow_token":"#))
    );
    let v: serde_json::Value = reply.response().expect("response JSON");
    assert_eq!(v["flow_token"], "tok-7781");
    assert_eq!(v["notes"], "Winterreifen überprüfen");
}

/// An unsupported message still yields a notification, with its errors and inner type.
#[test]
fn unsupported_type() {
    let bytes = data("unsupported_type.json");
    let (ns, _) = all(&bytes);
    assert_eq!(ns[0].envelope.type_.as_deref(), Some("unsupported"));
    let m = ns[0].message().expect("typed");
    let Content::Unsupported(u) = &m.content else {
        panic!("unsupported")
    };
    assert_eq!(u.type_.as_deref(), Some("poll_creation"));
    assert_eq!(m.errors.len(), 1);
    assert_eq!(m.errors[0].code, Some(131051));
    assert_eq!(
        m.errors[0].details(),
        Some("Message type is currently not supported.")
    );
}

/// A template status update is one change with its value, entry time and field as type.
#[test]
fn template_status_update_change() {
    let bytes = data("template_status_update.json");
    let (ns, anomalies) = all(&bytes);
    assert!(anomalies.is_empty());
    assert_eq!(ns.len(), 1);
    let n = &ns[0];
    assert_eq!(n.kind, JobKind::Change);
    assert_eq!(n.field.as_deref(), Some("message_template_status_update"));
    assert_eq!(
        n.envelope.type_.as_deref(),
        Some("message_template_status_update")
    );
    assert_eq!(n.entry_time, Some(1768998300));
    assert_eq!(n.envelope.wamid, None);
    assert_eq!(
        (
            &n.envelope.phone_number_id,
            &n.envelope.display_phone_number
        ),
        (&None, &None)
    );
    assert!(
        n.raw
            .get()
            .starts_with(r#"{"event":"REJECTED","message_template_id":1689556908129832"#)
    );
    assert!(n.message().is_none() && n.status().is_none());
}

/// Value-level errors are one notification each, typed by field name, with code and details.
#[test]
fn value_level_errors() {
    let bytes = data("value_level_errors.json");
    let (ns, _) = all(&bytes);
    assert_eq!(ns.len(), 2);
    for n in &ns {
        assert_eq!(n.kind, JobKind::Error);
        assert_eq!(n.envelope.type_.as_deref(), Some("messages"));
        assert_eq!(n.envelope.wamid, None);
        assert_eq!(
            n.envelope.phone_number_id.as_deref(),
            Some("109876543210987")
        );
    }
    let e = ns[0].error().expect("typed");
    assert_eq!(e.code, Some(130429));
    assert_eq!(e.title.as_deref(), Some("Rate limit hit"));
    assert_eq!(
        e.href.as_deref(),
        Some("https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/")
    );
    assert_eq!(ns[1].error().and_then(|e| e.code), Some(131056));
}

/// A group message carries its group id; a group status its recipient type and participant.
#[test]
fn group_message_and_status() {
    let bytes = data("group_message.json");
    let (ns, _) = all(&bytes);
    let m = ns[0].message().expect("typed");
    assert_eq!(m.group_id.as_deref(), Some("120363025246125888"));
    assert_eq!(
        ns[0].envelope.contact_name.as_deref(),
        Some("Mariana López")
    );
    let st = ns[1].status().expect("typed");
    assert_eq!(st.status, Some(StatusValue::Read));
    assert_eq!(st.recipient_type.as_deref(), Some("group"));
    assert_eq!(st.recipient_id.as_deref(), Some("120363025246125888"));
    assert_eq!(
        st.recipient_participant_id.as_deref(),
        Some("5215512345678")
    );
    assert_eq!(
        st.recipient_participant_user_id.as_deref(),
        Some("MX.2093847561029384")
    );
}

/// Edits carry the new content as a message; revokes the deleted wamid.
#[test]
fn edit_and_revoke() {
    let bytes = data("edit_revoke.json");
    let (ns, _) = all(&bytes);
    let Content::Edit(edit) = ns[0].message().expect("typed").content else {
        panic!("edit")
    };
    assert_eq!(
        edit.original_message_id.as_deref(),
        Some("wamid.HBgNNDkxNTEyMzQ1Njc4ORUCABIYFk9SSUcwMDEA")
    );
    let inner = edit.message.expect("edited message");
    assert_eq!(inner.text(), Some("Please book the 4pm slot instead."));
    let Content::Revoke(r) = ns[1].message().expect("typed").content else {
        panic!("revoke")
    };
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("wamid.HBgNNDkxNTEyMzQ1Njc4ORUCABIYFk9SSUcwMDIA")
    );
}

/// A message type from the future is yielded, and the typed model keeps its sub-object raw.
#[test]
fn unknown_future_message_type() {
    let bytes = data("unknown_future_type.json");
    let (ns, anomalies) = all(&bytes);
    assert!(anomalies.is_empty());
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0].envelope.type_.as_deref(), Some("poll_vote"));
    assert_eq!(ns[0].envelope.contact_name.as_deref(), Some("Aiko"));
    let m = ns[0].message().expect("typed");
    let Content::Other(Some(raw)) = m.content else {
        panic!("other with raw")
    };
    assert!(raw.get().starts_with(r#"{"poll_id":"wamid.POLL1""#));
    assert!(raw.get().ends_with(r#""hologram":{"depth":3}}"#));
}

/// A sent status with BSUID, pricing and conversation reads every part.
#[test]
fn status_with_pricing_and_conversation() {
    let bytes = data("status_pricing_conversation.json");
    let (ns, _) = all(&bytes);
    let n = &ns[0];
    assert_eq!(n.envelope.type_.as_deref(), Some("sent"));
    assert_eq!(
        n.envelope.from_user_id.as_deref(),
        Some("BR.8812340000111222")
    );
    assert_eq!(n.envelope.contact_name.as_deref(), Some("Ana Costa"));
    let st = n.status().expect("typed");
    assert_eq!(
        st.biz_opaque_callback_data.as_deref(),
        Some("campaign:winter;variant:b")
    );
    let conv = st.conversation.expect("conversation");
    assert_eq!(
        conv.origin.and_then(|o| o.type_).as_deref(),
        Some("marketing")
    );
    assert_eq!(conv.expiration_timestamp.as_deref(), Some("1769085100"));
    let p = st.pricing.expect("pricing");
    assert_eq!(
        (p.billable, p.category.as_deref()),
        (Some(true), Some("marketing"))
    );
}

/// `played` is a known status; an unknown status value is kept as sent.
#[test]
fn played_and_unknown_status() {
    let bytes = data("played_status.json");
    let (ns, _) = all(&bytes);
    assert_eq!(ns[0].envelope.type_.as_deref(), Some("played"));
    assert_eq!(
        ns[0].status().and_then(|s| s.status),
        Some(StatusValue::Played)
    );
    assert_eq!(ns[1].envelope.type_.as_deref(), Some("quantum_entangled"));
    let other = ns[1].status().and_then(|s| s.status).expect("a value");
    assert_eq!(
        other,
        StatusValue::Other(Cow::Borrowed("quantum_entangled"))
    );
    assert_eq!(other.as_str(), "quantum_entangled");
}

/// Reaction removal, request_welcome, user id change, forwards, product context and unknown
/// interactive sub-types all read as documented.
#[test]
fn misc_message_types() {
    let bytes = data("misc_types.json");
    let (ns, _) = all(&bytes);
    assert_eq!(ns.len(), 7);
    // Every sender is the single username contact, matched by user id.
    for n in &ns {
        assert_eq!(
            n.contact.as_ref().and_then(|c| c.username.as_deref()),
            Some("kai.surfs")
        );
    }
    let typed: Vec<_> = ns.iter().map(|n| n.message().expect("typed")).collect();
    let Content::Reaction(r) = &typed[0].content else {
        panic!("reaction")
    };
    assert!(r.is_removal());
    assert!(matches!(typed[1].content, Content::RequestWelcome));
    let Content::System(sys) = &typed[2].content else {
        panic!("system")
    };
    assert_eq!(sys.type_.as_deref(), Some("user_changed_user_id"));
    assert_eq!(sys.user_id.as_deref(), Some("US.99887766554433221100"));
    let ctx = typed[3].context.as_ref().expect("context");
    assert_eq!(
        (ctx.forwarded, ctx.frequently_forwarded),
        (Some(true), Some(true))
    );
    let product = typed[4]
        .context
        .as_ref()
        .and_then(|c| c.referred_product.as_ref())
        .expect("referred product");
    assert_eq!(product.product_retailer_id.as_deref(), Some("sku-fitting"));
    let Content::Interactive(Interactive::Other { type_, raw }) = &typed[5].content else {
        panic!("unknown interactive")
    };
    assert_eq!(type_.as_deref(), Some("call_permission_reply"));
    assert!(raw.get().contains("accept"));
    // `interactive` type without the sub-object: nothing to read, still a message.
    assert!(matches!(typed[6].content, Content::Other(None)));
}

/// Odd envelope parts are skipped with a path each, and every readable notification still comes.
#[test]
fn odd_shapes_are_skipped_and_reported() {
    let bytes = data("odd_shapes.json");
    let body = Body::parse(&bytes).expect("still a JSON object");
    let ns: Vec<_> = body.notifications().collect();
    let got: Vec<(String, Problem)> = body
        .anomalies()
        .iter()
        .map(|a| (a.path.clone(), a.problem))
        .collect();
    let want = [
        ("entry[0].changes[0].value.contacts", Problem::NotAnArray),
        (
            "entry[0].changes[0].value.messages[1]",
            Problem::NotAnObject,
        ),
        (
            "entry[0].changes[0].value.messages[2]",
            Problem::NotAnObject,
        ),
        ("entry[0].changes[0].value.statuses", Problem::NotAnArray),
        ("entry[0].changes[1].value", Problem::Missing),
        ("entry[0].changes[2]", Problem::NotAnObject),
        ("entry[0].changes[3].value", Problem::NotAnObject),
        ("entry[0].changes[5].field", Problem::NotAString),
        ("entry[1]", Problem::NotAnObject),
        ("entry[2].changes", Problem::NotAnArray),
        ("entry[3].changes", Problem::Missing),
    ];
    let want: Vec<(String, Problem)> = want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
    assert_eq!(got, want);
    assert_eq!(
        body.anomalies()[0].to_string(),
        "entry[0].changes[0].value.contacts: not an array"
    );

    // Two messages, the metadata-only `messages` value as a change, and the change whose field is
    // not a string.
    let kinds: Vec<JobKind> = ns.iter().map(|n| n.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            JobKind::Message,
            JobKind::Message,
            JobKind::Change,
            JobKind::Change
        ]
    );
    // A numeric WABA id and timestamp read as their decimal text.
    assert_eq!(ns[0].envelope.waba_id.as_deref(), Some("104512367890123"));
    assert_eq!(ns[0].envelope.timestamp.as_deref(), Some("1768999100"));
    assert_eq!(ns[0].envelope.text.as_deref(), Some("numeric timestamp"));
    // A text that is not an object and a boolean `from` read as absent.
    assert_eq!(ns[1].envelope.wamid.as_deref(), Some("wamid.OK2"));
    assert_eq!(
        (
            ns[1].envelope.text.as_deref(),
            ns[1].envelope.from.as_deref()
        ),
        (None, None)
    );
    let Content::Other(Some(text)) = ns[1].message().expect("typed").content else {
        panic!("other")
    };
    assert_eq!(text.get(), r#""body should be an object""#);
    assert_eq!(ns[2].envelope.type_.as_deref(), Some("messages"));
    assert_eq!(
        ns[2].envelope.phone_number_id.as_deref(),
        Some("109876543210987")
    );
    assert_eq!(
        (ns[3].field.as_deref(), ns[3].envelope.type_.as_deref()),
        (None, None)
    );
    assert_eq!(ns[3].raw.get(), r#"{"cursor":"abc"}"#);
}

/// A body's `Debug` shows counts and anomalies, never message text.
#[test]
fn body_debug_does_not_show_text() {
    let bytes = data("wire_escaped_unicode.json");
    let body = Body::parse(&bytes).expect("parses");
    let shown = format!("{body:?}");
    assert!(shown.contains("notifications: 1"), "{shown}");
    assert!(
        !shown.contains("Hola") && !shown.contains("pedido"),
        "{shown}"
    );
}

/// A body of many odd items keeps the first 64 anomalies with paths and counts them all.
#[test]
fn anomalies_are_capped_but_counted() {
    let items = vec!["1"; 10_000].join(",");
    let body = format!(
        r#"{{"entry":[{{"changes":[{{"value":{{"messages":[{items},{{"id":"w"}}]}},"field":"messages"}},{{"value":{{"messages":[1,2]}},"field":"other"}}]}}]}}"#
    );
    let body = Body::parse(body.as_bytes()).expect("parses");
    assert_eq!(body.anomaly_count(), 10_000);
    assert_eq!(body.anomalies().len(), 64);
    assert_eq!(
        body.anomalies()[63].path,
        "entry[0].changes[0].value.messages[63]"
    );
    // The message after them and the other field's change still come.
    assert_eq!(body.len(), 2);
}
