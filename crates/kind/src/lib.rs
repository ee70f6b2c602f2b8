//! What a WhatsApp webhook notification and the job made of it have in common: its kind and
//! its envelope's text fields.
//!
//! One enum, [`JobKind`], for the three crates that speak of kinds: `wa-payload` sorts every
//! notification of a body into one, `wa-webhook` filters and counts by it, and `wa-queue`
//! writes it into each job as `kind` and reads it back. One struct, [`Envelope`], for the
//! contract's optional text fields: `wa-payload` fills it from a body, `wa-webhook` hands it
//! over whole, and `wa-queue` writes it into the job in the contract's order. They live in a
//! crate of their own, with no dependencies, because the worker shares only the queue contract
//! with the ingress: it must not pull in the payload crate to name a kind. For the same reason
//! the one piece of JSON scanning both readers of the contract's text use lives here too
//! ([`json::skip_plain`]).
//!
//! # Getting started
//!
//! ```
//! use wa_kind::JobKind;
//!
//! assert_eq!(JobKind::parse("status"), JobKind::Status);
//! assert_eq!(JobKind::Status.as_str(), "status");
//! // A kind a newer producer writes is kept, name and all, and written back as it came.
//! let newer = JobKind::parse("reaction");
//! assert_eq!(newer, JobKind::Other("reaction".into()));
//! assert_eq!(newer.to_string(), "reaction");
//! // Tables by kind: the four this version knows, each with its place.
//! assert_eq!(JobKind::ALL.map(|k| k.index()), [0, 1, 2, 3]);
//!
//! use wa_kind::Envelope;
//!
//! // The envelope's fields by their names in a job, in the contract's order.
//! let envelope = Envelope { from: Some("15551234567".into()), ..Envelope::default() };
//! let present: Vec<_> = envelope.fields().into_iter().filter(|(_, v)| v.is_some()).collect();
//! assert_eq!(present, [("from", Some("15551234567"))]);
//! ```

pub mod json;

use std::borrow::Cow;
use std::fmt;

/// What a notification is, and so what its job is: one job is made per notification.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobKind {
    /// one `messages[]` item
    Message,
    /// one `statuses[]` item
    Status,
    /// one value-level `errors[]` item
    Error,
    /// the value of a change of any field other than `messages`
    Change,
    /// a kind this version has no name for, as a newer producer wrote it; never made by this
    /// version's payload crate, which sorts whatever it does not know into [`Change`](Self::Change)
    Other(Box<str>),
}

impl JobKind {
    /// The kinds this version knows, in the order of [`index`](Self::index).
    pub const ALL: [JobKind; 4] = [
        JobKind::Message,
        JobKind::Status,
        JobKind::Error,
        JobKind::Change,
    ];

    /// The kind's place in [`ALL`](Self::ALL), for tables indexed by kind. An
    /// [`Other`](Self::Other) kind has the place of [`Change`](Self::Change): the kind for
    /// what this version has no name of its own for.
    pub fn index(&self) -> usize {
        match self {
            JobKind::Message => 0,
            JobKind::Status => 1,
            JobKind::Error => 2,
            JobKind::Change | JobKind::Other(_) => 3,
        }
    }

    /// The name in jobs and filters: `message`, `status`, `error`, `change`, or an
    /// [`Other`](Self::Other) kind's own.
    pub fn as_str(&self) -> &str {
        match self {
            JobKind::Message => "message",
            JobKind::Status => "status",
            JobKind::Error => "error",
            JobKind::Change => "change",
            JobKind::Other(name) => name,
        }
    }

    /// The kind named `s`: one of [`ALL`](Self::ALL) by its name, any other name as
    /// [`Other`](Self::Other).
    pub fn parse(s: &str) -> JobKind {
        Self::known(s).unwrap_or_else(|| JobKind::Other(s.into()))
    }

    /// The kind named `s` if this version knows it.
    pub fn known(s: &str) -> Option<JobKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The optional text fields of a job's envelope, as a notification of a body has them and as
/// its job carries them: declared once, in the order the contract writes them (see
/// `docs/queue-contract.md`). Every field is borrowed from the body unless it had escapes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// `wamid`: the `id` of a message or status
    pub wamid: Option<Cow<'a, str>>,
    /// `from`: the sender of a message (`from`), the recipient of a status (`recipient_id`)
    pub from: Option<Cow<'a, str>>,
    /// `from_user_id`: the business-scoped user id of that person (`from_user_id`,
    /// `recipient_user_id`)
    pub from_user_id: Option<Cow<'a, str>>,
    /// `type`: the message type, the status value, or the field name (an error, a change)
    pub type_: Option<Cow<'a, str>>,
    /// `text`: `text.body` of a text message
    pub text: Option<Cow<'a, str>>,
    /// `timestamp`, as sent (a string of seconds)
    pub timestamp: Option<Cow<'a, str>>,
    /// `contact_name`: `profile.name` of the contact whose `wa_id` or `user_id` is the
    /// sender's
    pub contact_name: Option<Cow<'a, str>>,
    /// `phone_number_id`: `metadata.phone_number_id` of the change
    pub phone_number_id: Option<Cow<'a, str>>,
    /// `display_phone_number`: `metadata.display_phone_number` of the change
    pub display_phone_number: Option<Cow<'a, str>>,
    /// `waba_id`: the entry's `id` (the WhatsApp Business Account)
    pub waba_id: Option<Cow<'a, str>>,
}

impl Envelope<'_> {
    /// Every field with its name in a job, in the contract's order: the one table of names an
    /// encoder writes from.
    pub fn fields(&self) -> [(&'static str, Option<&str>); 10] {
        [
            ("wamid", self.wamid.as_deref()),
            ("from", self.from.as_deref()),
            ("from_user_id", self.from_user_id.as_deref()),
            ("type", self.type_.as_deref()),
            ("text", self.text.as_deref()),
            ("timestamp", self.timestamp.as_deref()),
            ("contact_name", self.contact_name.as_deref()),
            ("phone_number_id", self.phone_number_id.as_deref()),
            ("display_phone_number", self.display_phone_number.as_deref()),
            ("waba_id", self.waba_id.as_deref()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every known kind's name parses back to it, and its place is its place in `ALL`.
    #[test]
    fn names_and_places_round_trip() {
        for (i, kind) in JobKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(JobKind::parse(kind.as_str()), kind);
            assert_eq!(JobKind::known(kind.as_str()), Some(kind));
        }
    }

    /// An unknown name is kept as it came; names are case-sensitive, as on the wire.
    #[test]
    fn unknown_names_are_kept() {
        assert_eq!(JobKind::parse("Message").as_str(), "Message");
        assert_eq!(JobKind::known("Message"), None);
        assert_eq!(JobKind::parse("").as_str(), "");
        assert_eq!(JobKind::parse("reaction").index(), JobKind::Change.index());
    }

    /// Each field is named once in `fields`, in the contract's order, with its own value.
    #[test]
    fn envelope_fields_in_contract_order() {
        let e = Envelope {
            wamid: Some("1".into()),
            from: Some("2".into()),
            from_user_id: Some("3".into()),
            type_: Some("4".into()),
            text: Some("5".into()),
            timestamp: Some("6".into()),
            contact_name: Some("7".into()),
            phone_number_id: Some("8".into()),
            display_phone_number: Some("9".into()),
            waba_id: Some("10".into()),
        };
        let names = e.fields().map(|(name, _)| name);
        assert_eq!(
            names,
            [
                "wamid",
                "from",
                "from_user_id",
                "type",
                "text",
                "timestamp",
                "contact_name",
                "phone_number_id",
                "display_phone_number",
                "waba_id"
            ]
        );
        let values = e
            .fields()
            .map(|(_, v)| v.unwrap().parse::<usize>().unwrap());
        assert_eq!(values, std::array::from_fn(|i| i + 1));
        assert!(
            Envelope::default()
                .fields()
                .iter()
                .all(|(_, v)| v.is_none())
        );
    }
}
