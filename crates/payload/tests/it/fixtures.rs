//! Every shared fixture, read through the walk and the typed model, field by field.
//!
//! Over 400 lines: one expectation per shared fixture, written out field by field on purpose.

use wa_payload::{Body, Content, Interactive, JobKind, Message, Notification, Status, StatusValue};

use crate::support::{check_raw_slices, fixtures_dir};

const WABA: &str = "104512367890123";

/// What every fixture shares: one notification, a `messages` change of the test WABA.
fn single(bytes: &[u8]) -> Notification<'_> {
    let body = Body::parse(bytes).expect("fixture parses");
    assert_eq!(body.object(), Some("whatsapp_business_account"));
    assert!(body.anomalies().is_empty(), "{:?}", body.anomalies());
    assert_eq!(body.len(), 1);
    let n = body.notifications().next().expect("one notification");
    assert_eq!(n.envelope.waba_id.as_deref(), Some(WABA));
    assert_eq!(n.field.as_deref(), Some("messages"));
    assert_eq!(n.entry_time, None);
    assert_eq!(
        n.envelope.phone_number_id.as_deref(),
        Some("109876543210987")
    );
    assert_eq!(
        n.envelope.display_phone_number.as_deref(),
        Some("15550001234")
    );
    n
}

fn message<'a>(n: &Notification<'a>) -> Message<'a> {
    assert_eq!(n.kind, JobKind::Message);
    let m = n.message().expect("typed message");
    assert_eq!(m.id, n.envelope.wamid);
    assert_eq!(m.from, n.envelope.from);
    assert_eq!(m.type_, n.envelope.type_);
    assert_eq!(m.timestamp, n.envelope.timestamp);
    m
}

fn status<'a>(n: &Notification<'a>) -> Status<'a> {
    assert_eq!(n.kind, JobKind::Status);
    let s = n.status().expect("typed status");
    assert_eq!(s.id, n.envelope.wamid);
    assert_eq!(s.recipient_id, n.envelope.from);
    assert_eq!(
        s.status.as_ref().map(|v| v.as_str()),
        n.envelope.type_.as_deref()
    );
    s
}

fn contact(n: &Notification<'_>) -> (Option<String>, Option<String>, Option<String>) {
    let c = n.contact.as_ref().expect("a matching contact");
    (
        n.envelope.contact_name.as_deref().map(str::to_owned),
        c.wa_id.as_deref().map(str::to_owned),
        c.user_id.as_deref().map(str::to_owned),
    )
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// Asserts the fields of one fixture. A fixture added later without assertions here still gets
/// the checks every body gets (parses cleanly, yields something, raw slices exact) and a note.
fn check(name: &str, bytes: &[u8]) {
    if !KNOWN.contains(&name) {
        let body = Body::parse(bytes).expect("fixture parses");
        assert!(
            body.anomalies().is_empty(),
            "{name}: {:?}",
            body.anomalies()
        );
        assert!(!body.is_empty(), "{name} yields nothing");
        eprintln!("note: fixture {name} has no field-level assertions in tests/it/fixtures.rs yet");
        return;
    }
    let n = single(bytes);
    match name {
        "01_text.json" => {
            let m = message(&n);
            assert_eq!(n.envelope.type_.as_deref(), Some("text"));
            assert_eq!(n.envelope.from.as_deref(), Some("5215512345678"));
            assert_eq!(n.envelope.from_user_id, None);
            assert_eq!(
                n.envelope.wamid.as_deref(),
                Some(
                    "wamid.HBgNNTIxNTUxMjM0NTY3OBUCABIYFjNFQjAwQTEAFQIAEhgUM0VCMDRCNkY5QzE3QTJEOEU1MDEA"
                )
            );
            assert_eq!(n.envelope.timestamp.as_deref(), Some("1768993210"));
            assert_eq!(
                n.envelope.text.as_deref(),
                Some("Hi, is the store open on Sunday?")
            );
            assert_eq!(
                contact(&n),
                (
                    s("Mariana López"),
                    s("5215512345678"),
                    s("MX.2093847561029384")
                )
            );
            assert_eq!(m.text(), n.envelope.text.as_deref());
            assert!(m.context.is_none() && m.referral.is_none() && m.errors.is_empty());
        }
        "02_text_reply_context.json" => {
            let m = message(&n);
            assert_eq!(
                n.envelope.text.as_deref(),
                Some("Yes, please book the 3pm slot.")
            );
            assert_eq!(contact(&n), (s("Tom Becker"), s("4915123456789"), None));
            let ctx = m.context.expect("context");
            assert_eq!(ctx.from.as_deref(), Some("15550001234"));
            assert_eq!(
                ctx.id.as_deref(),
                Some(
                    "wamid.HBgNMTU1NTAwMDEyMzQVAgARGBI4QTNGRDE5RTcwQzQ1QjA3NjYAFQIAEhgUM0VCMDRCNkY5QzE3QTJEOEU1MDEA"
                )
            );
            assert_eq!(ctx.forwarded, None);
        }
        "03_image.json" => {
            let m = message(&n);
            assert_eq!(n.envelope.type_.as_deref(), Some("image"));
            assert_eq!(n.envelope.text, None);
            let Content::Image(img) = m.content else {
                panic!("image")
            };
            assert_eq!(img.caption.as_deref(), Some("Ticket de compra"));
            assert_eq!(img.mime_type.as_deref(), Some("image/jpeg"));
            assert_eq!(img.id.as_deref(), Some("1187345509238761"));
            assert_eq!(
                img.sha256.as_deref(),
                Some("q3Xv0W1n8dC6kYp2Jx9t4eR5bM7aLsQ0uZ1oHgFcV2E=")
            );
            assert!(
                img.url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("https://lookaside"))
            );
        }
        "04_audio_voice.json" => {
            let m = message(&n);
            assert_eq!(
                contact(&n),
                (s("Aiko"), s("819012345678"), s("JP.5566778899001122"))
            );
            let Content::Audio(a) = m.content else {
                panic!("audio")
            };
            assert_eq!(a.voice, Some(true));
            assert_eq!(a.mime_type.as_deref(), Some("audio/ogg; codecs=opus"));
            assert_eq!(a.id.as_deref(), Some("902837465512093"));
        }
        "05_video_ctwa_referral.json" => {
            let m = message(&n);
            let Content::Video(v) = &m.content else {
                panic!("video")
            };
            assert_eq!(v.caption.as_deref(), Some("These are the old ones"));
            assert_eq!(v.mime_type.as_deref(), Some("video/mp4"));
            let r = m.referral.expect("referral");
            assert_eq!(r.source_type.as_deref(), Some("ad"));
            assert_eq!(r.source_id.as_deref(), Some("120219876543210987"));
            assert_eq!(r.media_type.as_deref(), Some("video"));
            assert_eq!(r.headline.as_deref(), Some("Message us for a quote"));
            assert!(
                r.ctwa_clid
                    .as_deref()
                    .is_some_and(|c| c.starts_with("ARAk"))
            );
            assert!(r.video_url.is_some() && r.thumbnail_url.is_some() && r.image_url.is_none());
            assert_eq!(
                r.welcome_message.and_then(|w| w.text).as_deref(),
                Some("Hi! Send us a photo or video of your current tyres.")
            );
        }
        "06_document.json" => {
            let Content::Document(d) = message(&n).content else {
                panic!("document")
            };
            assert_eq!(d.filename.as_deref(), Some("contrato_2026.pdf"));
            assert_eq!(d.caption.as_deref(), Some("Contrato firmado"));
            assert_eq!(d.mime_type.as_deref(), Some("application/pdf"));
        }
        "07_sticker.json" => {
            let Content::Sticker(st) = message(&n).content else {
                panic!("sticker")
            };
            assert_eq!(st.animated, Some(false));
            assert_eq!(st.mime_type.as_deref(), Some("image/webp"));
            assert_eq!(st.id.as_deref(), Some("334455667788990"));
        }
        "08_location.json" => {
            let Content::Location(l) = message(&n).content else {
                panic!("location")
            };
            assert_eq!(l.latitude, Some(52.520008));
            assert_eq!(l.longitude, Some(13.404954));
            assert_eq!(l.name.as_deref(), Some("Alexanderplatz"));
            assert_eq!(
                l.address.as_deref(),
                Some("Alexanderplatz, 10178 Berlin, Germany")
            );
            assert_eq!(l.url, None);
        }
        "09_contacts.json" => {
            let Content::Contacts(cards) = message(&n).content else {
                panic!("contacts")
            };
            assert_eq!(cards.len(), 1);
            let c = &cards[0];
            let name = c.name.as_ref().expect("name");
            assert_eq!(name.formatted_name.as_deref(), Some("Dr. Carlos Ruiz"));
            assert_eq!(name.prefix.as_deref(), Some("Dr."));
            assert_eq!(name.middle_name, None);
            assert_eq!(c.phones.len(), 2);
            assert_eq!(c.phones[0].wa_id.as_deref(), Some("5215587654321"));
            assert_eq!(c.phones[1].wa_id, None);
            assert_eq!(c.phones[1].type_.as_deref(), Some("WORK"));
            assert_eq!(
                c.emails[0].email.as_deref(),
                Some("carlos.ruiz@example.com")
            );
            let org = c.org.as_ref().expect("org");
            assert_eq!(org.company.as_deref(), Some("Clínica Norte"));
            assert_eq!(c.addresses[0].zip.as_deref(), Some("06600"));
            assert_eq!(c.addresses[0].country_code.as_deref(), Some("MX"));
            assert_eq!(
                c.urls[0].url.as_deref(),
                Some("https://clinica-norte.example.com")
            );
            assert_eq!(c.birthday.as_deref(), Some("1980-04-12"));
        }
        "10_interactive_button_reply.json" => {
            let m = message(&n);
            assert!(m.context.is_some());
            let Content::Interactive(Interactive::ButtonReply(r)) = m.content else {
                panic!("button_reply")
            };
            assert_eq!(r.id.as_deref(), Some("confirm_booking_8812"));
            assert_eq!(r.title.as_deref(), Some("Confirm"));
        }
        "11_interactive_list_reply.json" => {
            let Content::Interactive(Interactive::ListReply(r)) = message(&n).content else {
                panic!("list_reply")
            };
            assert_eq!(r.id.as_deref(), Some("ship_express"));
            assert_eq!(r.title.as_deref(), Some("Envío exprés"));
            assert_eq!(r.description.as_deref(), Some("Entrega en 24 h"));
        }
        "13_button_template_quick_reply.json" => {
            let Content::Button(b) = message(&n).content else {
                panic!("button")
            };
            assert_eq!(b.payload.as_deref(), Some("STOP_PROMOTIONS"));
            assert_eq!(b.text.as_deref(), Some("Stop promotions"));
        }
        "14_reaction.json" => {
            let Content::Reaction(r) = message(&n).content else {
                panic!("reaction")
            };
            assert_eq!(r.emoji.as_deref(), Some("❤️"));
            assert!(!r.is_removal());
            assert!(
                r.message_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("wamid."))
            );
        }
        "15_order.json" => {
            let Content::Order(o) = message(&n).content else {
                panic!("order")
            };
            assert_eq!(o.catalog_id.as_deref(), Some("781234560987654"));
            assert_eq!(o.text.as_deref(), Some("Bitte bis Freitag liefern"));
            assert_eq!(o.product_items.len(), 2);
            assert_eq!(o.product_items[0].quantity, Some(4));
            assert_eq!(o.product_items[0].item_price, Some(89.9));
            assert_eq!(o.product_items[0].currency.as_deref(), Some("EUR"));
            assert_eq!(o.product_items[1].item_price, Some(40.0));
            assert_eq!(
                o.product_items[1].product_retailer_id.as_deref(),
                Some("sku-fitting")
            );
        }
        "16_system_user_changed_number.json" => {
            // No contacts in this body: no contact, and no guess.
            assert!(n.contact.is_none());
            let Content::System(sys) = message(&n).content else {
                panic!("system")
            };
            assert_eq!(sys.type_.as_deref(), Some("user_changed_number"));
            assert_eq!(sys.wa_id.as_deref(), Some("4917698765432"));
            assert!(
                sys.body
                    .as_deref()
                    .is_some_and(|b| b.contains("changed from"))
            );
        }
        "18_status_sent.json" => {
            let st = status(&n);
            assert_eq!(n.envelope.type_.as_deref(), Some("sent"));
            assert_eq!(st.status, Some(StatusValue::Sent));
            assert_eq!(n.envelope.from.as_deref(), Some("5215512345678"));
            assert_eq!(n.envelope.timestamp.as_deref(), Some("1768995000"));
            assert_eq!(contact(&n).0, s("Mariana López"));
            assert_eq!(
                st.biz_opaque_callback_data.as_deref(),
                Some("order:88123;tenant:acme")
            );
            let conv = st.conversation.expect("conversation");
            assert_eq!(conv.id.as_deref(), Some("3f9c1e7a2b4d6f8091a2b3c4d5e6f708"));
            assert_eq!(conv.expiration_timestamp.as_deref(), Some("1769081400"));
            assert_eq!(
                conv.origin.and_then(|o| o.type_).as_deref(),
                Some("utility")
            );
            let p = st.pricing.expect("pricing");
            assert_eq!(p.billable, Some(true));
            assert_eq!(p.pricing_model.as_deref(), Some("PMP"));
            assert_eq!(p.type_.as_deref(), Some("regular"));
            assert_eq!(p.category.as_deref(), Some("utility"));
        }
        "19_status_delivered.json" => {
            let st = status(&n);
            assert_eq!(st.status, Some(StatusValue::Delivered));
            assert!(st.conversation.is_none());
            assert_eq!(
                st.pricing.and_then(|p| p.category).as_deref(),
                Some("utility")
            );
        }
        "20_status_read.json" => {
            let st = status(&n);
            assert_eq!(st.status, Some(StatusValue::Read));
            assert!(st.pricing.is_none() && st.errors.is_empty());
            assert_eq!(st.timestamp.as_deref(), Some("1768995120"));
        }
        "21_status_failed.json" => {
            let st = status(&n);
            assert_eq!(st.status, Some(StatusValue::Failed));
            assert!(n.contact.is_none());
            assert_eq!(st.errors.len(), 1);
            let e = &st.errors[0];
            assert_eq!(e.code, Some(131047));
            assert_eq!(e.title.as_deref(), Some("Re-engagement message"));
            assert!(e.details().is_some_and(|d| d.contains("24 hours")));
            assert!(e.href.is_some());
        }
        "23_text_unicode_emoji.json" => {
            assert!(n.envelope.text.as_deref().is_some_and(
                |t| t.starts_with("¡Hola! ¿Dónde está")
                    && t.contains("🚚📦")
                    && t.ends_with("ES-9981/estado")
            ));
            assert_eq!(contact(&n).0, s("José Núñez 🌵"));
            // Raw UTF-8 without escapes stays borrowed.
            assert!(matches!(
                n.envelope.text,
                Some(std::borrow::Cow::Borrowed(_))
            ));
        }
        other => unreachable!("{other} is listed in KNOWN without assertions"),
    }
}

/// The fixtures with field-level assertions above.
const KNOWN: &[&str] = &[
    "01_text.json",
    "02_text_reply_context.json",
    "03_image.json",
    "04_audio_voice.json",
    "05_video_ctwa_referral.json",
    "06_document.json",
    "07_sticker.json",
    "08_location.json",
    "09_contacts.json",
    "10_interactive_button_reply.json",
    "11_interactive_list_reply.json",
    "13_button_template_quick_reply.json",
    "14_reaction.json",
    "15_order.json",
    "16_system_user_changed_number.json",
    "18_status_sent.json",
    "19_status_delivered.json",
    "20_status_read.json",
    "21_status_failed.json",
    "23_text_unicode_emoji.json",
];

/// Walks the fixtures folder: every body parses cleanly, matches its field-level assertions, and
/// yields raw slices that are byte for byte its objects.
#[test]
fn every_fixture_in_the_folder() {
    let dir = fixtures_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    for known in KNOWN {
        assert!(
            names.iter().any(|n| n == known),
            "fixture {known} is missing"
        );
    }
    for name in &names {
        let bytes = std::fs::read(dir.join(name)).expect("read fixture");
        check(name, &bytes);
        check_raw_slices(&bytes);
    }
}
