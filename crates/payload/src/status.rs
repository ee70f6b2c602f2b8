//! Typed, lenient model of one `statuses[]` object.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

use crate::de;
use crate::message::{ErrorInfo, parse_object};
use crate::{PayloadError, RawValue};

/// One status update of a message the business sent (`value.statuses[]`), typed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status<'a> {
    /// `id`: the wamid of the business's message
    pub id: Option<Cow<'a, str>>,
    /// `status`
    pub status: Option<StatusValue<'a>>,
    /// `timestamp`, as sent (a string)
    pub timestamp: Option<Cow<'a, str>>,
    /// `recipient_id`: the user's phone number, or a group id
    pub recipient_id: Option<Cow<'a, str>>,
    /// `recipient_type`: `group` for group sends
    pub recipient_type: Option<Cow<'a, str>>,
    /// `recipient_participant_id` (group sends)
    pub recipient_participant_id: Option<Cow<'a, str>>,
    /// `recipient_participant_user_id` (group sends)
    pub recipient_participant_user_id: Option<Cow<'a, str>>,
    /// `recipient_user_id`: the user's business-scoped user id
    pub recipient_user_id: Option<Cow<'a, str>>,
    /// `recipient_parent_user_id`
    pub recipient_parent_user_id: Option<Cow<'a, str>>,
    /// `recipient_identity_key_hash`
    pub recipient_identity_key_hash: Option<Cow<'a, str>>,
    /// `biz_opaque_callback_data`: what the business attached when sending
    pub biz_opaque_callback_data: Option<Cow<'a, str>>,
    /// `conversation`
    pub conversation: Option<Conversation<'a>>,
    /// `pricing`
    pub pricing: Option<Pricing<'a>>,
    /// `errors[]` (failed sends)
    pub errors: Vec<ErrorInfo<'a>>,
    /// the whole status object, as received
    pub raw: &'a RawValue,
}

/// `status` of a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusValue<'a> {
    /// `sent`
    Sent,
    /// `delivered`
    Delivered,
    /// `read`
    Read,
    /// `failed`
    Failed,
    /// `played` (first play of a voice message)
    Played,
    /// any other value, as sent
    Other(Cow<'a, str>),
}

impl<'a> StatusValue<'a> {
    fn from_cow(s: Cow<'a, str>) -> Self {
        match &*s {
            "sent" => StatusValue::Sent,
            "delivered" => StatusValue::Delivered,
            "read" => StatusValue::Read,
            "failed" => StatusValue::Failed,
            "played" => StatusValue::Played,
            _ => StatusValue::Other(s),
        }
    }

    /// The value as sent.
    pub fn as_str(&self) -> &str {
        match self {
            StatusValue::Sent => "sent",
            StatusValue::Delivered => "delivered",
            StatusValue::Read => "read",
            StatusValue::Failed => "failed",
            StatusValue::Played => "played",
            StatusValue::Other(s) => s,
        }
    }
}

/// `statuses[].conversation`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Conversation<'a> {
    /// `id`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub id: Option<Cow<'a, str>>,
    /// `expiration_timestamp` (a string; only on `sent`)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub expiration_timestamp: Option<Cow<'a, str>>,
    /// `origin`
    #[serde(borrow, deserialize_with = "de::obj")]
    pub origin: Option<Origin<'a>>,
}

/// `conversation.origin`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Origin<'a> {
    /// `type`: `service`, `utility`, `marketing`, `authentication`, ...
    #[serde(rename = "type", borrow, deserialize_with = "de::str_")]
    pub type_: Option<Cow<'a, str>>,
}

/// `statuses[].pricing`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Pricing<'a> {
    /// `billable`
    #[serde(deserialize_with = "de::bool_")]
    pub billable: Option<bool>,
    /// `pricing_model`: `PMP` (or `CBP` before July 2025)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub pricing_model: Option<Cow<'a, str>>,
    /// `type`: `regular`, `free_customer_service`, `free_entry_point`
    #[serde(rename = "type", borrow, deserialize_with = "de::str_")]
    pub type_: Option<Cow<'a, str>>,
    /// `category`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub category: Option<Cow<'a, str>>,
}

fn status_value<'a, 'de: 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<StatusValue<'a>>, D::Error> {
    Ok(de::str_(d)?.map(StatusValue::from_cow))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct StatusRepr<'a> {
    #[serde(borrow, deserialize_with = "de::str_")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "status_value")]
    status: Option<StatusValue<'a>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    recipient_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    recipient_type: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    recipient_participant_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    recipient_participant_user_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    recipient_user_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    recipient_parent_user_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    recipient_identity_key_hash: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    biz_opaque_callback_data: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::obj")]
    conversation: Option<Conversation<'a>>,
    #[serde(borrow, deserialize_with = "de::obj")]
    pricing: Option<Pricing<'a>>,
    #[serde(borrow, deserialize_with = "de::objs")]
    errors: Vec<ErrorInfo<'a>>,
}

impl<'a> Status<'a> {
    /// Reads a status object (a notification's `raw`, or a job's `payload`).
    ///
    /// Fails only when `raw` is not a JSON object.
    pub fn from_raw(raw: &'a str) -> Result<Self, PayloadError> {
        let value: &'a RawValue = serde_json::from_str(raw).map_err(|e| PayloadError::Invalid {
            what: "status",
            detail: de::describe(&e),
        })?;
        Self::from_raw_value(value)
    }

    /// Reads a status object already located as a [`RawValue`].
    pub fn from_raw_value(raw: &'a RawValue) -> Result<Self, PayloadError> {
        let r: StatusRepr<'a> = parse_object(raw.get(), "status")?;
        Ok(Status {
            id: r.id,
            status: r.status,
            timestamp: r.timestamp,
            recipient_id: r.recipient_id,
            recipient_type: r.recipient_type,
            recipient_participant_id: r.recipient_participant_id,
            recipient_participant_user_id: r.recipient_participant_user_id,
            recipient_user_id: r.recipient_user_id,
            recipient_parent_user_id: r.recipient_parent_user_id,
            recipient_identity_key_hash: r.recipient_identity_key_hash,
            biz_opaque_callback_data: r.biz_opaque_callback_data,
            conversation: r.conversation,
            pricing: r.pricing,
            errors: r.errors,
            raw,
        })
    }
}
