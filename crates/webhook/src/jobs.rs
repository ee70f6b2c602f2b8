//! From a notification to a job of the queue contract: the dedup id, and the envelope fields
//! handed over whole.

use std::borrow::Cow;
use std::time::Duration;

use wa_payload::Notification;
use wa_queue::{JobKind, NewJob};

/// Builds the job of one notification. Nothing is copied but the dedup id when it has to be
/// composed; `payload` is the notification's raw slice of the body. A job whose id cannot tell
/// a redelivery from a genuine repeat (see [`DedupId::Event`]) gets `event_ttl` for its marker.
pub(crate) fn build(n: Notification<'_>, received_at: u64, event_ttl: Duration) -> NewJob<'_> {
    let (id, dedup_ttl) = match dedup_id(&n) {
        DedupId::Own(id) => (id, None),
        DedupId::Event(id) => (Cow::Owned(id), Some(event_ttl)),
    };
    NewJob {
        id,
        kind: n.kind,
        envelope: n.envelope,
        received_at,
        payload: n.raw,
        dedup_ttl,
    }
}

/// A job's dedup id, and whether it can tell a redelivery from a genuine repeat.
#[derive(Debug, PartialEq, Eq)]
enum DedupId<'a> {
    /// An id of Meta's (a wamid, `<wamid>:<status>`) or a content hash that includes the
    /// entry time: the same id means the same event, for the whole dedup window.
    Own(Cow<'a, str>),
    /// A content hash without an entry time (value-level errors today): the same value sent
    /// again later (a rate limit hit twice in a day) hashes the same, so the marker must only
    /// outlive Meta's quick retries.
    Event(String),
}

/// The dedup id: the wamid of a message, `<wamid>:<status>` of a status, else [`content_id`].
fn dedup_id<'a>(n: &Notification<'a>) -> DedupId<'a> {
    match (&n.kind, &n.envelope.wamid, &n.envelope.type_) {
        (JobKind::Message, Some(wamid), _) if !wamid.is_empty() => DedupId::Own(wamid.clone()),
        (JobKind::Status, Some(wamid), Some(status)) if !wamid.is_empty() => {
            let mut id = String::with_capacity(wamid.len() + 1 + status.len());
            id.push_str(wamid);
            id.push(':');
            id.push_str(status);
            DedupId::Own(Cow::Owned(id))
        }
        _ => {
            let id = content_id(
                n.envelope.waba_id.as_deref(),
                n.entry_time,
                n.field.as_deref(),
                n.raw.get().as_bytes(),
            );
            if n.entry_time.is_some() {
                DedupId::Own(Cow::Owned(id))
            } else {
                DedupId::Event(id)
            }
        }
    }
}

/// Lowercase hex SHA-256 of `waba_id \n entry_time \n field \n raw`, absent parts empty and the
/// time in decimal. The raw bytes alone would make two distinct events that carry the same value
/// (the same account update sent twice, a day apart) one job; the entry time, when Meta gives
/// one, tells them apart, while a redelivery of the same body keeps the same id.
pub fn content_id(
    waba_id: Option<&str>,
    entry_time: Option<u64>,
    field: Option<&str>,
    raw: &[u8],
) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(waba_id.unwrap_or("").as_bytes());
    ctx.update(b"\n");
    if let Some(t) = entry_time {
        ctx.update(t.to_string().as_bytes());
    }
    ctx.update(b"\n");
    ctx.update(field.unwrap_or("").as_bytes());
    ctx.update(b"\n");
    ctx.update(raw);
    let digest = ctx.finish();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The content id is SHA-256 of exactly `waba\ntime\nfield\nraw` (answers from sha256sum).
    #[test]
    fn content_id_known_answer() {
        assert_eq!(
            content_id(Some("W"), Some(1_700_000_000), Some("f"), br#"{"a":1}"#),
            "14175670ba529e5708627a6638365a43684ae0ebeca8e86dd18743f08090c14f"
        );
        // absent parts are empty: `printf '\n\n\n{}' | sha256sum`
        assert_eq!(
            content_id(None, None, None, b"{}"),
            "ee7fcf8bd462f9e6766cb17726aa0e16fc48de83e8a45e4de7631381147e2831"
        );
    }

    /// Same value at another entry time: another id; the same event twice: the same id.
    #[test]
    fn content_id_context() {
        let a = content_id(Some("W"), Some(1), Some("f"), b"{}");
        let b = content_id(Some("W"), Some(2), Some("f"), b"{}");
        assert_ne!(a, b);
        assert_eq!(a, content_id(Some("W"), Some(1), Some("f"), b"{}"));
        assert_eq!(a.len(), 64);
    }

    const EVENT_TTL: Duration = Duration::from_secs(60);

    fn jobs_of(body: &[u8]) -> Vec<NewJob<'_>> {
        let parsed = wa_payload::Body::parse(body).unwrap();
        parsed
            .notifications()
            .map(|n| build(n, 42, EVENT_TTL))
            .collect()
    }

    /// Ids are wamid, `<wamid>:<status>` or the content hash, and fields come from the body.
    #[test]
    fn ids_and_fields() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"W","time":7,"changes":[
            {"field":"messages","value":{"metadata":{"phone_number_id":"P","display_phone_number":"D"},
              "contacts":[{"profile":{"name":"Ana"},"wa_id":"1"}],
              "messages":[{"id":"wamid.M","from":"1","timestamp":"5","type":"text","text":{"body":"hi"}},
                          {"from":"1","type":"text","text":{"body":"no id"}}],
              "statuses":[{"id":"wamid.S","status":"read","recipient_id":"2"}],
              "errors":[{"code":1}]}},
            {"field":"account_update","value":{"event":"X"}}]}]}"#;
        let jobs = jobs_of(body);
        assert_eq!(jobs.len(), 5);
        let m = &jobs[0];
        assert_eq!((&m.kind, m.id.as_ref()), (&JobKind::Message, "wamid.M"));
        assert_eq!(m.envelope.contact_name.as_deref(), Some("Ana"));
        assert_eq!(m.envelope.text.as_deref(), Some("hi"));
        assert_eq!(m.envelope.timestamp.as_deref(), Some("5"));
        assert_eq!(m.envelope.phone_number_id.as_deref(), Some("P"));
        assert_eq!(m.envelope.display_phone_number.as_deref(), Some("D"));
        assert_eq!(m.envelope.waba_id.as_deref(), Some("W"));
        assert_eq!(m.received_at, 42);
        let raw = std::str::from_utf8(body).unwrap();
        assert!(raw.contains(m.payload.get()));
        let no_id = &jobs[1];
        assert_eq!(
            no_id.id,
            content_id(
                Some("W"),
                Some(7),
                Some("messages"),
                no_id.payload.get().as_bytes()
            )
        );
        let by_id = |kind| jobs.iter().find(|j| j.kind == kind).unwrap();
        assert_eq!(by_id(JobKind::Status).id, "wamid.S:read");
        assert_eq!(by_id(JobKind::Status).envelope.from.as_deref(), Some("2"));
        let e = by_id(JobKind::Error);
        assert_eq!(
            e.id,
            content_id(Some("W"), Some(7), Some("messages"), br#"{"code":1}"#)
        );
        let c = by_id(JobKind::Change);
        assert_eq!(c.envelope.type_.as_deref(), Some("account_update"));
        assert_eq!(
            c.id,
            content_id(
                Some("W"),
                Some(7),
                Some("account_update"),
                br#"{"event":"X"}"#
            )
        );
    }
}
