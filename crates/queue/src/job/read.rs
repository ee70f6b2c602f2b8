//! A job as a consumer reads it: validated once, its text fields places in its JSON.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::Visitor;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::{CONTRACT_VERSION, JobKind, QueueError};

/// A job as a consumer reads it. Unknown top-level fields are kept when the job is rewritten
/// (retry, dead, replay), and `payload` stays byte for byte as enqueued.
///
/// Reading a job validates the whole object once but copies nothing out of it: every text
/// field is a place in the job's JSON (only a string with escapes is decoded into one of its
/// own), and the payload is found again when asked for. A handler that passes the JSON on, or
/// reads only the text, pays for neither a dozen strings nor the payload's copy.
#[derive(Clone)]
#[non_exhaustive]
pub struct Job {
    /// contract version
    pub v: u32,
    /// received at, ms
    pub received_at: Option<u64>,
    /// failed deliveries before this one (0 when first enqueued)
    pub attempt: u32,
    /// deliveries before this one that were lost with their worker (it died or lost its
    /// lease): a reaper counts them, and they count towards the maximum like failed ones
    pub lost: u32,
    /// the job's JSON exactly as it was read from the queue
    json: Box<str>,
    /// where the text fields and the payload are in `json`
    at: Fields,
}

/// What reading a job found: its numbers, and where its text fields and payload are in its
/// JSON. Both readers (the one-pass one of `scan`, serde_json's) answer this.
#[derive(Debug, Clone, Default)]
pub(super) struct Fields {
    pub(super) v: u32,
    pub(super) received_at: Option<u64>,
    pub(super) attempt: u32,
    pub(super) lost: u32,
    pub(super) id: Text,
    pub(super) kind: Text,
    /// the optional text fields, in the order of [`TEXT_NAMES`]
    pub(super) texts: [Option<Text>; TEXTS],
    /// where the payload is
    pub(super) payload: Range<usize>,
}

/// A text field of a [`Job`]: where its characters are in the job's JSON, or, for a string
/// with escapes, the decoded text.
#[derive(Debug, Clone)]
pub(super) enum Text {
    At(Range<usize>),
    Decoded(Box<str>),
}

impl Default for Text {
    fn default() -> Self {
        Text::At(0..0)
    }
}

/// A string as the parser hands it out: borrowed from the input when it has no escapes.
struct Borrowed<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Borrowed<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Borrowed<'a>, E> {
                Ok(Borrowed(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Borrowed<'a>, E> {
                Ok(Borrowed(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Borrowed<'a>, E> {
                Ok(Borrowed(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// The optional text fields of a job, each once: its accessor, its name in the job (the
/// contract's envelope fields, then the error of the last failed delivery). This makes the
/// serde wire struct, the names the one-pass reader looks up ([`TEXT_NAMES`]), the accessors
/// and `Debug`.
macro_rules! job_texts {
    ($($(#[$doc:meta])* $field:ident = $name:literal;)*) => {
        /// The optional text fields' names in a job, in the order of [`Fields::texts`].
        pub(super) const TEXT_NAMES: [&str; TEXTS] = [$($name),*];

        /// A text field's place in [`Fields::texts`].
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy)]
        enum Slot {
            $($field),*
        }

        /// The job as serde_json reads it; the text fields borrow from the input.
        #[derive(Deserialize)]
        struct JobWire<'a> {
            v: u32,
            #[serde(borrow)]
            id: Borrowed<'a>,
            #[serde(borrow)]
            kind: Borrowed<'a>,
            $(
                #[serde(default, borrow, rename = $name)]
                $field: Option<Borrowed<'a>>,
            )*
            #[serde(default)]
            received_at: Option<u64>,
            #[serde(default)]
            attempt: u32,
            #[serde(default)]
            lost: u32,
            #[serde(borrow)]
            payload: &'a RawValue,
        }

        impl JobWire<'_> {
            /// The text fields, in the order of [`Fields::texts`], as places in `raw`.
            fn texts(&mut self, raw: &str) -> [Option<Text>; TEXTS] {
                [$(self.$field.take().map(|t| Text::of(raw, t))),*]
            }
        }

        impl Job {
            $(
                $(#[$doc])*
                pub fn $field(&self) -> Option<&str> {
                    self.opt(Slot::$field)
                }
            )*
        }
    };
}

/// How many optional text fields a job has.
pub(super) const TEXTS: usize = 11;

job_texts! {
    /// wamid
    wamid = "wamid";
    /// sender / recipient
    from = "from";
    /// business-scoped user id
    from_user_id = "from_user_id";
    /// type
    type_ = "type";
    /// text
    text = "text";
    /// timestamp as sent
    timestamp = "timestamp";
    /// contact profile name
    contact_name = "contact_name";
    /// phone number id
    phone_number_id = "phone_number_id";
    /// display phone number
    display_phone_number = "display_phone_number";
    /// WABA id
    waba_id = "waba_id";
    /// the error of the previous failed delivery, if any
    last_error = "last_error";
}

#[derive(Deserialize)]
struct VersionProbe {
    v: Option<serde_json::Value>,
}

/// Where `part` (a slice of `whole`) starts and ends in `whole`.
fn place(whole: &str, part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

impl Text {
    fn of(raw: &str, s: Borrowed<'_>) -> Self {
        match s.0 {
            Cow::Borrowed(b) => Text::At(place(raw, b)),
            Cow::Owned(o) => Text::Decoded(o.into()),
        }
    }

    fn get<'j>(&'j self, json: &'j str) -> &'j str {
        match self {
            Text::At(r) => &json[r.clone()],
            Text::Decoded(s) => s,
        }
    }
}

impl Job {
    /// Reads a job. Fails (and such a job can only go to dead) when the text is not a JSON
    /// object of this contract: `v` missing or other than [`CONTRACT_VERSION`], a required
    /// field (`id`, `kind`, `payload`) missing, or a field of the wrong type.
    pub fn from_json(raw: &str) -> Result<Job, QueueError> {
        Self::parse(raw).map_err(QueueError::InvalidJob)
    }

    pub(crate) fn parse(raw: &str) -> Result<Job, String> {
        let at = Self::fields(raw)?;
        Ok(Job::new(raw.into(), at))
    }

    /// Reads a job from a text of its own (no copy): the job, or the text back and why it
    /// could not be read.
    pub(crate) fn parse_owned(raw: String) -> Result<Job, (String, String)> {
        match Self::fields(&raw) {
            Ok(at) => Ok(Job::new(raw.into_boxed_str(), at)),
            Err(why) => Err((raw, why)),
        }
    }

    pub(super) fn new(json: Box<str>, at: Fields) -> Job {
        Job {
            v: at.v,
            received_at: at.received_at,
            attempt: at.attempt,
            lost: at.lost,
            json,
            at,
        }
    }

    /// The job's JSON, taken out: the job is left without a text, and its fields must not
    /// be asked for again (for a job about to be dropped).
    pub(crate) fn take_json(&mut self) -> String {
        std::mem::take(&mut self.json).into()
    }

    /// Where the fields are in `raw`: the one-pass reader for the usual case, serde_json for
    /// the rest and for the reason a job is refused.
    fn fields(raw: &str) -> Result<Fields, String> {
        if let Some(at) = super::scan::fields(raw, CONTRACT_VERSION) {
            return Ok(at);
        }
        Self::fields_serde(raw)
    }

    pub(super) fn fields_serde(raw: &str) -> Result<Fields, String> {
        match serde_json::from_str::<JobWire<'_>>(raw) {
            Ok(mut w) if w.v == CONTRACT_VERSION => Ok(Fields {
                texts: w.texts(raw),
                v: w.v,
                received_at: w.received_at,
                attempt: w.attempt,
                lost: w.lost,
                id: Text::of(raw, w.id),
                kind: Text::of(raw, w.kind),
                payload: place(raw, w.payload.get()),
            }),
            Ok(w) => Err(format!("unknown contract version {}", w.v)),
            Err(e) => {
                // Say "unknown version" rather than a field error when that is the cause: a
                // later version may well have changed the fields too.
                match serde_json::from_str::<VersionProbe>(raw) {
                    Ok(VersionProbe { v: Some(v) }) if v != CONTRACT_VERSION => {
                        Err(format!("unknown contract version {v}"))
                    }
                    Ok(VersionProbe { v: None }) => Err("job has no contract version".into()),
                    _ => Err(format!("unreadable job: {e}")),
                }
            }
        }
    }

    /// The job's JSON exactly as it was read from the queue: every top-level field (those a
    /// newer producer added too) and the payload's bytes as Meta sent them. This is what a
    /// handler should pass on (to a process, a pipe, an HTTP endpoint) rather than re-encoding
    /// the fields.
    pub fn json(&self) -> &str {
        &self.json
    }

    fn opt(&self, slot: Slot) -> Option<&str> {
        self.at.texts[slot as usize]
            .as_ref()
            .map(|t| t.get(&self.json))
    }

    /// dedup id
    pub fn id(&self) -> &str {
        self.at.id.get(&self.json)
    }

    /// The kind; one this version does not know is [`JobKind::Other`], its name kept, so
    /// that it still reaches the handler.
    pub fn kind(&self) -> JobKind {
        JobKind::parse(self.kind_name())
    }

    /// The kind's name exactly as written in the job (no allocation, whatever the kind).
    pub fn kind_name(&self) -> &str {
        self.at.kind.get(&self.json)
    }

    /// The embedded object, verbatim. Found again in the job's JSON at each call (a scan of
    /// the payload, no copy): keep the reference rather than calling this in a loop.
    pub fn payload(&self) -> &RawValue {
        serde_json::from_str(&self.json[self.at.payload.clone()])
            .expect("the payload was read from this very text")
    }
}

/// Shows the fields, as the struct did when they were strings of their own (the text fields
/// by their names in the job).
impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Job");
        d.field("v", &self.v)
            .field("id", &self.id())
            .field("kind", &self.kind_name());
        for (name, text) in TEXT_NAMES.iter().zip(&self.at.texts) {
            d.field(name, &text.as_ref().map(|t| t.get(&self.json)));
        }
        d.field("received_at", &self.received_at)
            .field("attempt", &self.attempt)
            .field("lost", &self.lost)
            .field("payload", &self.payload())
            .finish()
    }
}
