//! Borrowed model of WhatsApp Business (Cloud API) webhook bodies.
//!
//! Meta posts batches: one body holds `entry[]`, each entry `changes[]`, and a change of the
//! `messages` field holds `messages[]`, `statuses[]` and value-level `errors[]`. [`Body::parse`]
//! reads such a body and [`Body::notifications`] yields one [`Notification`] per message, status
//! and value-level error, plus one per change of any other field (template status updates,
//! account updates, ...), in body order, each with its context (WABA id, field, phone number
//! metadata, the matching contact) and its object **byte for byte as received** (`raw`), ready to
//! be stored as a job payload without re-encoding.
//!
//! # Getting started
//!
//! ```
//! use wa_payload::{Body, JobKind};
//!
//! let bytes = br#"{"object":"whatsapp_business_account","entry":[{"id":"1045","changes":[{
//!   "value":{"messaging_product":"whatsapp",
//!     "metadata":{"display_phone_number":"15550001234","phone_number_id":"1098"},
//!     "contacts":[{"profile":{"name":"Jos\u00e9"},"wa_id":"34612345678"}],
//!     "messages":[{"from":"34612345678","id":"wamid.HBg\/Nz","timestamp":"1768997000",
//!                  "type":"text","text":{"body":"Hola"}}]},
//!   "field":"messages"}]}]}"#;
//!
//! let body = Body::parse(bytes)?;
//! assert_eq!(body.object(), Some("whatsapp_business_account"));
//! assert!(body.anomalies().is_empty());
//!
//! let n = body.notifications().next().expect("one message");
//! assert_eq!(n.kind, JobKind::Message);
//! assert_eq!(n.envelope.wamid.as_deref(), Some("wamid.HBg/Nz")); // `\/` unescaped
//! assert_eq!(n.envelope.text.as_deref(), Some("Hola"));
//! assert_eq!(n.envelope.contact_name.as_deref(), Some("José"));
//! assert_eq!(n.envelope.phone_number_id.as_deref(), Some("1098"));
//! assert!(n.raw.get().contains(r#""wamid.HBg\/Nz""#)); // raw keeps Meta's escapes
//! # Ok::<(), wa_payload::PayloadError>(())
//! ```
//!
//! # What is lenient, and how oddities surface
//!
//! Parsing fails only when the body is not a JSON object ([`PayloadError::NotAnObject`], which
//! also covers text that is not JSON at all, invalid UTF-8, and nesting deeper than 256 levels).
//! Its message gives a byte offset and never quotes the body. Everything else is read around:
//!
//! - A part of the envelope with the wrong shape (`entry` not an array, a change without `value`,
//!   a message that is not an object, ...) is skipped and recorded in [`Body::anomalies`] with its
//!   path (`entry[0].changes[1].value.messages[2]`) and a [`Problem`]; the rest of the body is
//!   read as usual. Paths never contain body text, so they are safe to log and count.
//! - Unknown keys are ignored; unknown message types, status values and fields are yielded like
//!   known ones (the type is just a string here).
//! - Where a string is expected and a number is found (a numeric `timestamp`), the number's JSON
//!   text is used. Any other type there reads as `None` (noted as [`Problem::NotAString`] for the
//!   envelope's own fields; inside a message or status it just reads as absent, the object itself
//!   being handed on whole in `raw`).
//! - A `messages` change whose value has none of `messages`, `statuses` or `errors` is yielded
//!   whole as a [`JobKind::Change`], so that a shape Meta adds later is not dropped. The same goes
//!   for a change without a string `field`.
//! - A key that appears twice: the first one counts, the repeat is noted
//!   ([`Problem::DuplicateKey`]) for the envelope's keys.
//!
//! An ingress would typically count `anomalies()` by [`Problem::as_str`] and log the paths. The
//! first 64 are kept with their paths; [`Body::anomaly_count`] counts them all, so a body of a
//! million odd items costs a counter, not a million strings.
//!
//! # Contacts
//!
//! A notification's `contact` is the `contacts[]` entry of its change whose `wa_id` equals the
//! message's `from` (a status's `recipient_id`) or whose `user_id` equals its `from_user_id`
//! (`recipient_user_id`). When the item names no sender at all and the change lists exactly one
//! contact, that one is used; an unmatched sender gets no contact rather than someone else's.
//! The contact's `profile.name` is the notification's `envelope.contact_name`.
//!
//! # Strings
//!
//! Every string is a `Cow<'a, str>` borrowed from the body unless it contains escapes. Meta's
//! wire form escapes non-ASCII text as `\uXXXX` and `/` as `\/` (wamids are base64 and may contain
//! `/`), so such strings are unescaped into owned copies; ids and plain ASCII stay borrowed.
//!
//! # Typed access
//!
//! [`Message`] and [`Status`] read a message or status object (a notification's `raw`, or a
//! job's `payload`) into typed, equally lenient structs: every message type Meta documents has a
//! [`Content`] variant, anything else is [`Content::Other`] with its raw sub-object.
//!
//! ```
//! use wa_payload::{Content, Message};
//!
//! let payload = r#"{"from":"4915123456789","id":"wamid.X","timestamp":"1768994614",
//!   "type":"reaction","reaction":{"message_id":"wamid.Y"}}"#;
//! let m = Message::from_raw(payload)?;
//! match &m.content {
//!     Content::Reaction(r) => assert!(r.is_removal()), // no emoji: the reaction was removed
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), wa_payload::PayloadError>(())
//! ```
//!
//! # Performance
//!
//! [`Body::parse`] reads the body once, with a small validating scanner (it accepts exactly what
//! serde_json accepts) that notes where each message, status and error object starts and ends
//! while it reads their few summary fields; each checked slice is handed to serde_json as a
//! `&RawValue` without being read again. Nothing is built for the parts no notification needs.
//! Iterating clones only the strings that had to be unescaped ([`Body::into_notifications`] moves
//! them instead). See `docs/performance-payload.md` for figures against `serde_json::Value`.

use std::borrow::Cow;

pub use serde_json::value::RawValue;

mod anomaly;
mod de;
mod message;
mod scan;
mod status;
mod walk;

pub use anomaly::{Anomaly, Problem};
pub use message::{
    Address, Button, ContactName, Content, Context, Edit, Email, ErrorData, ErrorInfo, Interactive,
    Location, Media, Message, NfmReply, Order, Org, Phone, ProductItem, Reaction, Referral,
    ReferredProduct, Reply, Revoke, SharedContact, System, Text, Unsupported, Url, WelcomeMessage,
};
pub use status::{Conversation, Origin, Pricing, Status, StatusValue};
pub use wa_kind::{Envelope, JobKind};

/// Why a body (or a part read on request) could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// the body is not a JSON object
    #[error("body is not a JSON object: {0}")]
    NotAnObject(String),
    /// a part read on request (a message, a status, a flow response) is not the JSON expected
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// which part
        what: &'static str,
        /// what was wrong, without quoting the input
        detail: String,
    },
    /// the body holds more entries, changes, contacts and notifications than the limit given
    /// to [`Body::parse_limited`]
    #[error("body holds more than {0} entries, changes, contacts and notifications")]
    TooManyParts(usize),
}

/// The `contacts[]` item matching a message's sender, but for its `profile.name`: that is the
/// job's `contact_name`, so a notification carries it in its [`Envelope`] (one copy, handed to
/// the job as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact<'a> {
    /// `profile.username`
    pub username: Option<Cow<'a, str>>,
    /// `wa_id`
    pub wa_id: Option<Cow<'a, str>>,
    /// `user_id` (business-scoped user id)
    pub user_id: Option<Cow<'a, str>>,
}

/// One message, status, error or change of a body, with its context.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Notification<'a> {
    /// what it is
    pub kind: JobKind,
    /// the fields its job carries: the item's own (wamid, sender, type, text, timestamp), the
    /// matching contact's name, the change's `value.metadata` and the entry's id. `type_` is
    /// the message type or the status value, and the field's name for an error or a change
    pub envelope: Envelope<'a>,
    /// `entry[].time`, present on some non-`messages` fields
    pub entry_time: Option<u64>,
    /// `changes[].field`
    pub field: Option<Cow<'a, str>>,
    /// the contact whose `wa_id` or `user_id` is the sender's (message) or the recipient's
    /// (status); when a message names no sender at all and the change lists exactly one contact,
    /// that one. Its name is `envelope.contact_name`
    pub contact: Option<Contact<'a>>,
    /// the message / status / error object, or the change's `value`, byte for byte as received
    pub raw: &'a RawValue,
}

impl<'a> Notification<'a> {
    /// The message, typed, when this is a [`JobKind::Message`].
    pub fn message(&self) -> Option<Message<'a>> {
        match self.kind {
            JobKind::Message => Message::from_raw_value(self.raw).ok(),
            _ => None,
        }
    }

    /// The status, typed, when this is a [`JobKind::Status`].
    pub fn status(&self) -> Option<Status<'a>> {
        match self.kind {
            JobKind::Status => Status::from_raw_value(self.raw).ok(),
            _ => None,
        }
    }

    /// The value-level error, typed, when this is a [`JobKind::Error`].
    pub fn error(&self) -> Option<ErrorInfo<'a>> {
        match self.kind {
            JobKind::Error => ErrorInfo::from_raw(self.raw.get()).ok(),
            _ => None,
        }
    }
}

/// A parsed body: the envelope read, each notification's fields and slice located.
///
/// Iterating [`Body::notifications`] only assembles what the parse found; the body is not read
/// again. Its `Debug` shows counts and anomalies, never body text.
pub struct Body<'a> {
    bytes: &'a [u8],
    walk: walk::Walk<'a>,
}

impl std::fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("bytes", &self.bytes.len())
            .field("object", &self.walk.object)
            .field("notifications", &self.walk.items.len())
            .field("anomaly_count", &self.walk.anomaly_count)
            .field("anomalies", &self.walk.anomalies)
            .finish()
    }
}

impl<'a> Body<'a> {
    /// Parses a body; fails only when it is not a JSON object.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PayloadError> {
        Self::parse_limited(bytes, usize::MAX)
    }

    /// Parses a body holding at most `max_parts` entries, changes, contacts and notifications
    /// together; a body with more fails with [`PayloadError::TooManyParts`] as soon as the walk
    /// reaches the one too many. The walk keeps a few dozen bytes per part, and a part takes as
    /// little as three bytes of body (`{},`), so this is what bounds the walk's memory and time
    /// for a hostile body, whatever its size.
    pub fn parse_limited(bytes: &'a [u8], max_parts: usize) -> Result<Self, PayloadError> {
        let walk = walk::walk(bytes, max_parts)?;
        Ok(Body { bytes, walk })
    }

    /// `object`, if present and a string.
    pub fn object(&self) -> Option<&str> {
        self.walk.object.as_deref()
    }

    /// Every notification of every entry and change, in body order.
    pub fn notifications(&self) -> impl Iterator<Item = Notification<'a>> + '_ {
        self.walk
            .items
            .iter()
            .map(|item| self.walk.notification(item))
    }

    /// Every notification, like [`Body::notifications`], moving each one's own strings out of
    /// the body instead of copying those that had to be unescaped.
    pub fn into_notifications(self) -> impl Iterator<Item = Notification<'a>> {
        let mut walk = self.walk;
        let items = std::mem::take(&mut walk.items);
        items.into_iter().map(move |mut item| {
            let summary = std::mem::take(&mut item.summary);
            walk.build(&item, summary)
        })
    }

    /// How many notifications [`Body::notifications`] yields.
    pub fn len(&self) -> usize {
        self.walk.items.len()
    }

    /// True when the body yields no notification.
    pub fn is_empty(&self) -> bool {
        self.walk.items.is_empty()
    }

    /// What was odd in the body and skipped or read around, in body order; empty for a
    /// well-formed body. At most the first 64 are kept; [`Body::anomaly_count`] counts them all.
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.walk.anomalies
    }

    /// How many anomalies the body had, including those past the first 64.
    pub fn anomaly_count(&self) -> usize {
        self.walk.anomaly_count
    }

    /// The bytes the body was parsed from.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}
