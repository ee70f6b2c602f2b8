//! Typed, lenient model of one `messages[]` object.
//!
//! Every field is optional and every reader accepts any JSON: a field of an unexpected type reads
//! as `None`, unknown keys are ignored, and a message whose type (or sub-object) is not one this
//! crate knows still parses, into [`Content::Other`].
//!
//! About 850 lines, nearly all declarations: one small struct per message type Meta documents,
//! kept in one file so that the model reads in the order of Meta's reference.

use std::borrow::Cow;

use serde::Deserialize;

use crate::de::{self, describe};
use crate::{PayloadError, RawValue};

/// One inbound message (`value.messages[]`), typed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Message<'a> {
    /// `id`: the wamid
    pub id: Option<Cow<'a, str>>,
    /// `from`: the sender's phone number; absent for some username users
    pub from: Option<Cow<'a, str>>,
    /// `from_user_id`: the sender's business-scoped user id
    pub from_user_id: Option<Cow<'a, str>>,
    /// `timestamp`: Unix seconds, as sent (a string)
    pub timestamp: Option<Cow<'a, str>>,
    /// `type`, as sent
    pub type_: Option<Cow<'a, str>>,
    /// `group_id`, for a message in a group
    pub group_id: Option<Cow<'a, str>>,
    /// `context`: reply, forward or product context
    pub context: Option<Context<'a>>,
    /// `referral`: the click-to-WhatsApp ad the message came from
    pub referral: Option<Referral<'a>>,
    /// `errors[]` (messages of type `unsupported`)
    pub errors: Vec<ErrorInfo<'a>>,
    /// the type-specific part
    pub content: Content<'a>,
    /// the whole message object, as received
    pub raw: &'a RawValue,
}

/// The type-specific part of a [`Message`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Content<'a> {
    /// `text`
    Text(Text<'a>),
    /// `image`
    Image(Media<'a>),
    /// `audio` (see [`Media::voice`])
    Audio(Media<'a>),
    /// `video`
    Video(Media<'a>),
    /// `document`
    Document(Media<'a>),
    /// `sticker` (see [`Media::animated`])
    Sticker(Media<'a>),
    /// `location`
    Location(Location<'a>),
    /// `contacts`: shared contact cards
    Contacts(Vec<SharedContact<'a>>),
    /// `interactive`: a reply to buttons, a list or a flow
    Interactive(Interactive<'a>),
    /// `button`: a template quick-reply button
    Button(Button<'a>),
    /// `reaction` (also its removal)
    Reaction(Reaction<'a>),
    /// `order`
    Order(Order<'a>),
    /// `system`: the user changed number or user id
    System(System<'a>),
    /// `unsupported`: see [`Message::errors`]
    Unsupported(Unsupported<'a>),
    /// `request_welcome`: the user opened the chat for the first time
    RequestWelcome,
    /// `edit`: the user edited a message
    Edit(Edit<'a>),
    /// `revoke`: the user deleted a message
    Revoke(Revoke<'a>),
    /// any other type, or a known type whose sub-object is missing or not an object: the
    /// sub-object named by `type`, when there is one (the whole message is [`Message::raw`])
    Other(Option<&'a RawValue>),
}

/// `text`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Text<'a> {
    /// `body`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub body: Option<Cow<'a, str>>,
}

/// `image`, `audio`, `video`, `document` or `sticker`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Media<'a> {
    /// media id (fetch the file with it; valid for about 7 days)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub id: Option<Cow<'a, str>>,
    /// `mime_type`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub mime_type: Option<Cow<'a, str>>,
    /// `sha256` of the file
    #[serde(borrow, deserialize_with = "de::str_")]
    pub sha256: Option<Cow<'a, str>>,
    /// `url`, where Meta includes one
    #[serde(borrow, deserialize_with = "de::str_")]
    pub url: Option<Cow<'a, str>>,
    /// `caption` (image, video, document)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub caption: Option<Cow<'a, str>>,
    /// `filename` (document)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub filename: Option<Cow<'a, str>>,
    /// `voice` (audio): a recorded voice note
    #[serde(deserialize_with = "de::bool_")]
    pub voice: Option<bool>,
    /// `animated` (sticker)
    #[serde(deserialize_with = "de::bool_")]
    pub animated: Option<bool>,
}

/// `location`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Location<'a> {
    /// `latitude`
    #[serde(deserialize_with = "de::f64_")]
    pub latitude: Option<f64>,
    /// `longitude`
    #[serde(deserialize_with = "de::f64_")]
    pub longitude: Option<f64>,
    /// `name`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub name: Option<Cow<'a, str>>,
    /// `address`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub address: Option<Cow<'a, str>>,
    /// `url`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub url: Option<Cow<'a, str>>,
}

/// One card of a `contacts` message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SharedContact<'a> {
    /// `name`
    #[serde(borrow, deserialize_with = "de::obj")]
    pub name: Option<ContactName<'a>>,
    /// `phones[]`
    #[serde(borrow, deserialize_with = "de::objs")]
    pub phones: Vec<Phone<'a>>,
    /// `emails[]`
    #[serde(borrow, deserialize_with = "de::objs")]
    pub emails: Vec<Email<'a>>,
    /// `org`
    #[serde(borrow, deserialize_with = "de::obj")]
    pub org: Option<Org<'a>>,
    /// `addresses[]`
    #[serde(borrow, deserialize_with = "de::objs")]
    pub addresses: Vec<Address<'a>>,
    /// `urls[]`
    #[serde(borrow, deserialize_with = "de::objs")]
    pub urls: Vec<Url<'a>>,
    /// `birthday` (`YYYY-MM-DD`)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub birthday: Option<Cow<'a, str>>,
}

/// `contacts[].name`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ContactName<'a> {
    /// `formatted_name`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub formatted_name: Option<Cow<'a, str>>,
    /// `first_name`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub first_name: Option<Cow<'a, str>>,
    /// `last_name`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub last_name: Option<Cow<'a, str>>,
    /// `middle_name`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub middle_name: Option<Cow<'a, str>>,
    /// `suffix`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub suffix: Option<Cow<'a, str>>,
    /// `prefix`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub prefix: Option<Cow<'a, str>>,
}

/// `contacts[].phones[]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Phone<'a> {
    /// `phone`, as written on the card
    #[serde(borrow, deserialize_with = "de::str_")]
    pub phone: Option<Cow<'a, str>>,
    /// `wa_id`, when the number is on WhatsApp
    #[serde(borrow, deserialize_with = "de::str_")]
    pub wa_id: Option<Cow<'a, str>>,
    /// `type` (`CELL`, `WORK`, ...)
    #[serde(rename = "type", borrow, deserialize_with = "de::str_")]
    pub type_: Option<Cow<'a, str>>,
}

/// `contacts[].emails[]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Email<'a> {
    /// `email`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub email: Option<Cow<'a, str>>,
    /// `type`
    #[serde(rename = "type", borrow, deserialize_with = "de::str_")]
    pub type_: Option<Cow<'a, str>>,
}

/// `contacts[].org`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Org<'a> {
    /// `company`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub company: Option<Cow<'a, str>>,
    /// `department`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub department: Option<Cow<'a, str>>,
    /// `title`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub title: Option<Cow<'a, str>>,
}

/// `contacts[].addresses[]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Address<'a> {
    /// `street`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub street: Option<Cow<'a, str>>,
    /// `city`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub city: Option<Cow<'a, str>>,
    /// `state`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub state: Option<Cow<'a, str>>,
    /// `zip`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub zip: Option<Cow<'a, str>>,
    /// `country`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub country: Option<Cow<'a, str>>,
    /// `country_code`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub country_code: Option<Cow<'a, str>>,
    /// `type`
    #[serde(rename = "type", borrow, deserialize_with = "de::str_")]
    pub type_: Option<Cow<'a, str>>,
}

/// `contacts[].urls[]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Url<'a> {
    /// `url`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub url: Option<Cow<'a, str>>,
    /// `type`
    #[serde(rename = "type", borrow, deserialize_with = "de::str_")]
    pub type_: Option<Cow<'a, str>>,
}

/// `interactive`: what the user chose.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Interactive<'a> {
    /// `button_reply`: a reply button
    ButtonReply(Reply<'a>),
    /// `list_reply`: a list row
    ListReply(Reply<'a>),
    /// `nfm_reply`: a flow (or address message) was completed
    NfmReply(NfmReply<'a>),
    /// any other `interactive.type`, or a known one without its sub-object
    Other {
        /// `interactive.type`
        type_: Option<Cow<'a, str>>,
        /// the whole `interactive` object, as received
        raw: &'a RawValue,
    },
}

/// `interactive.button_reply` / `interactive.list_reply`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Reply<'a> {
    /// `id` the business gave the button or row
    #[serde(borrow, deserialize_with = "de::str_")]
    pub id: Option<Cow<'a, str>>,
    /// `title`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub title: Option<Cow<'a, str>>,
    /// `description` (list rows)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub description: Option<Cow<'a, str>>,
}

/// `interactive.nfm_reply`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NfmReply<'a> {
    /// `name`: `flow` or `address_message`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub name: Option<Cow<'a, str>>,
    /// `body` (`Sent` for flows)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub body: Option<Cow<'a, str>>,
    /// `response_json`: a string that holds the flow's JSON response
    #[serde(borrow, deserialize_with = "de::str_")]
    pub response_json: Option<Cow<'a, str>>,
}

impl NfmReply<'_> {
    /// Reads `response_json` (a JSON text inside a string) as `T`.
    pub fn response<'s, T: Deserialize<'s>>(&'s self) -> Result<T, PayloadError> {
        let text = self.response_json.as_deref().ok_or(PayloadError::Invalid {
            what: "nfm_reply.response_json",
            detail: "absent".to_owned(),
        })?;
        serde_json::from_str(text).map_err(|e| PayloadError::Invalid {
            what: "nfm_reply.response_json",
            detail: describe(&e),
        })
    }
}

/// `button`: a template's quick-reply button
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Button<'a> {
    /// `payload` the business set on the button
    #[serde(borrow, deserialize_with = "de::str_")]
    pub payload: Option<Cow<'a, str>>,
    /// `text` of the button
    #[serde(borrow, deserialize_with = "de::str_")]
    pub text: Option<Cow<'a, str>>,
}

/// `reaction`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Reaction<'a> {
    /// `message_id`: the wamid reacted to
    #[serde(borrow, deserialize_with = "de::str_")]
    pub message_id: Option<Cow<'a, str>>,
    /// `emoji`; absent (or empty) when the user removed the reaction
    #[serde(borrow, deserialize_with = "de::str_")]
    pub emoji: Option<Cow<'a, str>>,
}

impl Reaction<'_> {
    /// True when this reports the removal of a reaction (no emoji, or an empty one).
    pub fn is_removal(&self) -> bool {
        self.emoji.as_deref().is_none_or(str::is_empty)
    }
}

/// `order`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Order<'a> {
    /// `catalog_id`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub catalog_id: Option<Cow<'a, str>>,
    /// `text` sent with the order
    #[serde(borrow, deserialize_with = "de::str_")]
    pub text: Option<Cow<'a, str>>,
    /// `product_items[]`
    #[serde(borrow, deserialize_with = "de::objs")]
    pub product_items: Vec<ProductItem<'a>>,
}

/// `order.product_items[]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ProductItem<'a> {
    /// `product_retailer_id`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub product_retailer_id: Option<Cow<'a, str>>,
    /// `quantity`
    #[serde(deserialize_with = "de::u64_")]
    pub quantity: Option<u64>,
    /// `item_price`: documented as an integer, sent with decimals (`7.99`)
    #[serde(deserialize_with = "de::f64_")]
    pub item_price: Option<f64>,
    /// `currency`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub currency: Option<Cow<'a, str>>,
}

/// `system`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct System<'a> {
    /// `body`: a human-readable description
    #[serde(borrow, deserialize_with = "de::str_")]
    pub body: Option<Cow<'a, str>>,
    /// `type`: `user_changed_number`, `user_changed_user_id`, ...
    #[serde(rename = "type", borrow, deserialize_with = "de::str_")]
    pub type_: Option<Cow<'a, str>>,
    /// `wa_id`: the new phone number (`user_changed_number`)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub wa_id: Option<Cow<'a, str>>,
    /// `new_wa_id` (older form of `wa_id`)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub new_wa_id: Option<Cow<'a, str>>,
    /// `user_id`: the new business-scoped user id (`user_changed_user_id`)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub user_id: Option<Cow<'a, str>>,
    /// `parent_user_id`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub parent_user_id: Option<Cow<'a, str>>,
    /// `customer` (older payloads)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub customer: Option<Cow<'a, str>>,
}

/// `unsupported`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Unsupported<'a> {
    /// `type`: what the user sent that the API does not support (`poll_creation`, `edit`, ...)
    #[serde(rename = "type", borrow, deserialize_with = "de::str_")]
    pub type_: Option<Cow<'a, str>>,
}

/// `edit`
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Edit<'a> {
    /// `original_message_id`: the wamid of the edited message
    pub original_message_id: Option<Cow<'a, str>>,
    /// `message`: the new content, read like a message
    pub message: Option<Box<Message<'a>>>,
}

/// `revoke`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Revoke<'a> {
    /// `original_message_id`: the wamid of the deleted message
    #[serde(borrow, deserialize_with = "de::str_")]
    pub original_message_id: Option<Cow<'a, str>>,
}

/// `context` of a message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Context<'a> {
    /// `from`: the business number of the message replied to
    #[serde(borrow, deserialize_with = "de::str_")]
    pub from: Option<Cow<'a, str>>,
    /// `id`: the wamid replied to (or that carried the button)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub id: Option<Cow<'a, str>>,
    /// `forwarded`
    #[serde(deserialize_with = "de::bool_")]
    pub forwarded: Option<bool>,
    /// `frequently_forwarded` (forwarded more than five times)
    #[serde(deserialize_with = "de::bool_")]
    pub frequently_forwarded: Option<bool>,
    /// `referred_product`: the product the user asked about
    #[serde(borrow, deserialize_with = "de::obj")]
    pub referred_product: Option<ReferredProduct<'a>>,
}

/// `context.referred_product`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ReferredProduct<'a> {
    /// `catalog_id`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub catalog_id: Option<Cow<'a, str>>,
    /// `product_retailer_id`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub product_retailer_id: Option<Cow<'a, str>>,
}

/// `referral`: the click-to-WhatsApp ad a message came from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Referral<'a> {
    /// `source_url`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub source_url: Option<Cow<'a, str>>,
    /// `source_id`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub source_id: Option<Cow<'a, str>>,
    /// `source_type` (`ad`, `post`)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub source_type: Option<Cow<'a, str>>,
    /// `body`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub body: Option<Cow<'a, str>>,
    /// `headline`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub headline: Option<Cow<'a, str>>,
    /// `media_type` (`image`, `video`)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub media_type: Option<Cow<'a, str>>,
    /// `image_url`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub image_url: Option<Cow<'a, str>>,
    /// `video_url`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub video_url: Option<Cow<'a, str>>,
    /// `thumbnail_url`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub thumbnail_url: Option<Cow<'a, str>>,
    /// `ctwa_clid`: the click id (absent for ads shown in Status)
    #[serde(borrow, deserialize_with = "de::str_")]
    pub ctwa_clid: Option<Cow<'a, str>>,
    /// `welcome_message`
    #[serde(borrow, deserialize_with = "de::obj")]
    pub welcome_message: Option<WelcomeMessage<'a>>,
}

/// `referral.welcome_message`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WelcomeMessage<'a> {
    /// `text`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub text: Option<Cow<'a, str>>,
}

/// An `errors[]` item: value-level, or inside a message or status.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ErrorInfo<'a> {
    /// `code` (e.g. 131047, 130429)
    #[serde(deserialize_with = "de::i64_")]
    pub code: Option<i64>,
    /// `title`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub title: Option<Cow<'a, str>>,
    /// `message`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub message: Option<Cow<'a, str>>,
    /// `error_data`
    #[serde(borrow, deserialize_with = "de::obj")]
    pub error_data: Option<ErrorData<'a>>,
    /// `href`: Meta's documentation of the code
    #[serde(borrow, deserialize_with = "de::str_")]
    pub href: Option<Cow<'a, str>>,
}

/// `errors[].error_data`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ErrorData<'a> {
    /// `details`
    #[serde(borrow, deserialize_with = "de::str_")]
    pub details: Option<Cow<'a, str>>,
}

impl<'a> ErrorInfo<'a> {
    /// Reads one `errors[]` object.
    pub fn from_raw(raw: &'a str) -> Result<Self, PayloadError> {
        parse_object(raw, "error")
    }

    /// `error_data.details`, if present.
    pub fn details(&self) -> Option<&str> {
        self.error_data.as_ref()?.details.as_deref()
    }
}

/// Reads `raw` as a `T` when it is a JSON object.
pub(crate) fn parse_object<'a, T: Deserialize<'a>>(
    raw: &'a str,
    what: &'static str,
) -> Result<T, PayloadError> {
    let first = de::first_byte(raw.as_bytes());
    if first != Some(b'{') {
        return Err(PayloadError::Invalid {
            what,
            detail: format!("expected an object, found {}", de::json_type_name(first)),
        });
    }
    serde_json::from_str(raw).map_err(|e| PayloadError::Invalid {
        what,
        detail: describe(&e),
    })
}

/// Reads a sub-object as `T`, or `None` when it is absent or not an object.
fn sub<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Option<T> {
    let raw = raw?;
    if !raw.get().starts_with('{') {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// The common part of a message, with each known sub-object located but not yet read.
#[derive(Default, Deserialize)]
#[serde(default)]
struct MessageRepr<'a> {
    #[serde(borrow, deserialize_with = "de::str_")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    from: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    from_user_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow, deserialize_with = "de::str_")]
    type_: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::str_")]
    group_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "de::obj")]
    context: Option<Context<'a>>,
    #[serde(borrow, deserialize_with = "de::obj")]
    referral: Option<Referral<'a>>,
    #[serde(borrow, deserialize_with = "de::objs")]
    errors: Vec<ErrorInfo<'a>>,
    #[serde(borrow)]
    text: Option<&'a RawValue>,
    #[serde(borrow)]
    image: Option<&'a RawValue>,
    #[serde(borrow)]
    audio: Option<&'a RawValue>,
    #[serde(borrow)]
    video: Option<&'a RawValue>,
    #[serde(borrow)]
    document: Option<&'a RawValue>,
    #[serde(borrow)]
    sticker: Option<&'a RawValue>,
    #[serde(borrow)]
    location: Option<&'a RawValue>,
    #[serde(borrow)]
    contacts: Option<&'a RawValue>,
    #[serde(borrow)]
    interactive: Option<&'a RawValue>,
    #[serde(borrow)]
    button: Option<&'a RawValue>,
    #[serde(borrow)]
    reaction: Option<&'a RawValue>,
    #[serde(borrow)]
    order: Option<&'a RawValue>,
    #[serde(borrow)]
    system: Option<&'a RawValue>,
    #[serde(borrow)]
    unsupported: Option<&'a RawValue>,
    #[serde(borrow)]
    edit: Option<&'a RawValue>,
    #[serde(borrow)]
    revoke: Option<&'a RawValue>,
}

impl<'a> Message<'a> {
    /// Reads a message object (a notification's `raw`, or a job's `payload`).
    ///
    /// Fails only when `raw` is not a JSON object.
    pub fn from_raw(raw: &'a str) -> Result<Self, PayloadError> {
        let value: &'a RawValue = serde_json::from_str(raw).map_err(|e| PayloadError::Invalid {
            what: "message",
            detail: describe(&e),
        })?;
        Self::from_raw_value(value)
    }

    /// Reads a message object already located as a [`RawValue`].
    pub fn from_raw_value(raw: &'a RawValue) -> Result<Self, PayloadError> {
        let r: MessageRepr<'a> = parse_object(raw.get(), "message")?;
        let content = r.content(raw);
        Ok(Message {
            id: r.id,
            from: r.from,
            from_user_id: r.from_user_id,
            timestamp: r.timestamp,
            type_: r.type_,
            group_id: r.group_id,
            context: r.context,
            referral: r.referral,
            errors: r.errors,
            content,
            raw,
        })
    }

    /// `text.body` for a text message.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            Content::Text(t) => t.body.as_deref(),
            _ => None,
        }
    }
}

impl<'a> MessageRepr<'a> {
    fn content(&self, whole: &'a RawValue) -> Content<'a> {
        let ty = self.type_.as_deref().unwrap_or("");
        let known = match ty {
            "text" => sub(self.text).map(Content::Text),
            "image" => sub(self.image).map(Content::Image),
            "audio" => sub(self.audio).map(Content::Audio),
            "video" => sub(self.video).map(Content::Video),
            "document" => sub(self.document).map(Content::Document),
            "sticker" => sub(self.sticker).map(Content::Sticker),
            "location" => sub(self.location).map(Content::Location),
            "contacts" => self.contacts.and_then(|raw| {
                let mut d = serde_json::Deserializer::from_str(raw.get());
                raw.get()
                    .starts_with('[')
                    .then(|| de::objs(&mut d).ok())
                    .flatten()
                    .map(Content::Contacts)
            }),
            "interactive" => self
                .interactive
                .and_then(interactive)
                .map(Content::Interactive),
            "button" => sub(self.button).map(Content::Button),
            "reaction" => sub(self.reaction).map(Content::Reaction),
            "order" => sub(self.order).map(Content::Order),
            "system" => sub(self.system).map(Content::System),
            "unsupported" => Some(Content::Unsupported(
                sub(self.unsupported).unwrap_or_default(),
            )),
            "request_welcome" => Some(Content::RequestWelcome),
            "edit" => self.edit.and_then(edit).map(Content::Edit),
            "revoke" => sub(self.revoke).map(Content::Revoke),
            _ => None,
        };
        known.unwrap_or_else(|| Content::Other(member(whole, ty)))
    }
}

fn interactive(raw: &RawValue) -> Option<Interactive<'_>> {
    #[derive(Default, Deserialize)]
    #[serde(default)]
    struct Repr<'a> {
        #[serde(rename = "type", borrow, deserialize_with = "de::str_")]
        type_: Option<Cow<'a, str>>,
        #[serde(borrow)]
        button_reply: Option<&'a RawValue>,
        #[serde(borrow)]
        list_reply: Option<&'a RawValue>,
        #[serde(borrow)]
        nfm_reply: Option<&'a RawValue>,
    }
    let r: Repr<'_> = sub(Some(raw))?;
    let known = match r.type_.as_deref() {
        Some("button_reply") => sub(r.button_reply).map(Interactive::ButtonReply),
        Some("list_reply") => sub(r.list_reply).map(Interactive::ListReply),
        Some("nfm_reply") => sub(r.nfm_reply).map(Interactive::NfmReply),
        _ => None,
    };
    Some(known.unwrap_or(Interactive::Other {
        type_: r.type_,
        raw,
    }))
}

fn edit(raw: &RawValue) -> Option<Edit<'_>> {
    #[derive(Default, Deserialize)]
    #[serde(default)]
    struct Repr<'a> {
        #[serde(borrow, deserialize_with = "de::str_")]
        original_message_id: Option<Cow<'a, str>>,
        #[serde(borrow)]
        message: Option<&'a RawValue>,
    }
    let r: Repr<'_> = sub(Some(raw))?;
    Some(Edit {
        original_message_id: r.original_message_id,
        message: r
            .message
            .and_then(|m| Message::from_raw_value(m).ok())
            .map(Box::new),
    })
}

/// The member of object `raw` named `key`, as received; `None` when there is none (or `key` is
/// empty). Used to keep the sub-object of a message type this crate does not know.
fn member<'a>(raw: &'a RawValue, key: &str) -> Option<&'a RawValue> {
    if key.is_empty() {
        return None;
    }
    let map: Vec<(Cow<'a, str>, &'a RawValue)> =
        serde_json::from_str::<MemberList<'a>>(raw.get()).ok()?.0;
    map.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// All members of an object, in order, keys unescaped and values raw.
struct MemberList<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for MemberList<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MemberList<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<de::Loose<'de>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    if let Some(k) = k.into_str() {
                        out.push((k, v));
                    }
                }
                Ok(MemberList(out))
            }
        }
        d.deserialize_map(V)
    }
}
