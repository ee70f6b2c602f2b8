//! Borrowed model of webhook bodies (skeleton: API agreed, bodies being written).

use std::borrow::Cow;

pub use serde_json::value::RawValue;

/// Why a body could not be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// the body is not a JSON object
    #[error("body is not a JSON object: {0}")]
    NotAnObject(String),
}

/// What a notification is; one job is made per notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// one `messages[]` item
    Message,
    /// one `statuses[]` item
    Status,
    /// one value-level `errors[]` item
    Error,
    /// the value of a change of any field other than `messages`
    Change,
}

/// `value.metadata` of a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata<'a> {
    /// `phone_number_id`
    pub phone_number_id: Option<Cow<'a, str>>,
    /// `display_phone_number`
    pub display_phone_number: Option<Cow<'a, str>>,
}

/// The `contacts[]` item matching a message's sender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact<'a> {
    /// `profile.name`
    pub name: Option<Cow<'a, str>>,
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
    pub kind: Kind,
    /// `entry[].id`: the WhatsApp Business Account id
    pub waba_id: Option<Cow<'a, str>>,
    /// `entry[].time`, present on some non-`messages` fields
    pub entry_time: Option<u64>,
    /// `changes[].field`
    pub field: Option<Cow<'a, str>>,
    /// `value.metadata`
    pub metadata: Metadata<'a>,
    /// the contact whose `wa_id` or `user_id` is the sender's (messages only)
    pub contact: Option<Contact<'a>>,
    /// wamid: `id` of a message or status
    pub wamid: Option<Cow<'a, str>>,
    /// sender (`from`) of a message, recipient (`recipient_id`) of a status
    pub from: Option<Cow<'a, str>>,
    /// `from_user_id` of a message, `recipient_user_id` of a status
    pub from_user_id: Option<Cow<'a, str>>,
    /// message type, status value, or field name
    pub type_: Option<Cow<'a, str>>,
    /// `text.body` of a text message
    pub text: Option<Cow<'a, str>>,
    /// `timestamp`, as sent (a string)
    pub timestamp: Option<Cow<'a, str>>,
    /// the message / status / error object, or the change's `value`, byte for byte as received
    pub raw: &'a RawValue,
}

/// A parsed body.
#[derive(Debug)]
pub struct Body<'a> {
    _raw: &'a [u8],
}

impl<'a> Body<'a> {
    /// Parses a body; fails only when it is not a JSON object.
    pub fn parse(_bytes: &'a [u8]) -> Result<Self, PayloadError> {
        unimplemented!()
    }

    /// `object`, if present and a string.
    pub fn object(&self) -> Option<&str> {
        unimplemented!()
    }

    /// Every notification of every entry and change, in body order.
    pub fn notifications(&self) -> impl Iterator<Item = Notification<'a>> + '_ {
        std::iter::empty()
    }
}
