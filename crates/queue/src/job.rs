//! The job envelope: encoding (producer side), decoding (consumer side), and the rewrites a job
//! goes through (retry, dead, replay) that must keep `payload` byte for byte and keep fields
//! this version does not know.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::{CONTRACT_VERSION, JobKind, QueueError};

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A job as a producer builds it: borrowed, serialised straight to the contract's JSON
/// (`v` = 1 and `attempt` = 0 are written by the encoder). `payload` is embedded verbatim.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// dedup id
    pub id: Cow<'a, str>,
    /// kind
    pub kind: JobKind,
    /// wamid
    pub wamid: Option<Cow<'a, str>>,
    /// sender (recipient for a status)
    pub from: Option<Cow<'a, str>>,
    /// business-scoped user id of the sender/recipient
    pub from_user_id: Option<Cow<'a, str>>,
    /// message type, status value or field name
    pub type_: Option<Cow<'a, str>>,
    /// text body of text messages
    pub text: Option<Cow<'a, str>>,
    /// timestamp as sent
    pub timestamp: Option<Cow<'a, str>>,
    /// profile name of the sender's contact
    pub contact_name: Option<Cow<'a, str>>,
    /// metadata.phone_number_id
    pub phone_number_id: Option<Cow<'a, str>>,
    /// metadata.display_phone_number
    pub display_phone_number: Option<Cow<'a, str>>,
    /// entry id
    pub waba_id: Option<Cow<'a, str>>,
    /// when the ingress received it, ms since the epoch
    pub received_at: u64,
    /// the object exactly as Meta sent it
    pub payload: &'a RawValue,
    /// how long this job's dedup marker lives; `None` is the producer's
    /// [`dedup_ttl`](crate::ProducerOptions::dedup_ttl) (whole seconds, at least one)
    pub dedup_ttl: Option<Duration>,
}

/// The wire form: field order and names as the contract lists them (`v` = 1 and `attempt` =
/// 0 written here); absent optional fields are left out, the payload is embedded verbatim.
impl Serialize for NewJob<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let texts = [
            ("wamid", &self.wamid),
            ("from", &self.from),
            ("from_user_id", &self.from_user_id),
            ("type", &self.type_),
            ("text", &self.text),
            ("timestamp", &self.timestamp),
            ("contact_name", &self.contact_name),
            ("phone_number_id", &self.phone_number_id),
            ("display_phone_number", &self.display_phone_number),
            ("waba_id", &self.waba_id),
        ];
        let present = texts.iter().filter(|(_, t)| t.is_some()).count();
        let mut job = s.serialize_struct("NewJob", 6 + present)?;
        job.serialize_field("v", &CONTRACT_VERSION)?;
        job.serialize_field("id", &self.id)?;
        job.serialize_field("kind", self.kind.as_str())?;
        for (name, text) in texts {
            match text {
                Some(t) => job.serialize_field(name, t)?,
                None => job.skip_field(name)?,
            }
        }
        job.serialize_field("received_at", &self.received_at)?;
        job.serialize_field("attempt", &0u32)?;
        job.serialize_field("payload", self.payload)?;
        job.end()
    }
}

impl<'a> NewJob<'a> {
    /// A job with only the required fields set; `received_at` is now.
    pub fn new(id: impl Into<Cow<'a, str>>, kind: JobKind, payload: &'a RawValue) -> Self {
        Self {
            id: id.into(),
            kind,
            wamid: None,
            from: None,
            from_user_id: None,
            type_: None,
            text: None,
            timestamp: None,
            contact_name: None,
            phone_number_id: None,
            display_phone_number: None,
            waba_id: None,
            received_at: now_ms(),
            payload,
            dedup_ttl: None,
        }
    }

    /// Appends the job's compact contract JSON to `buf`.
    pub fn write_json(&self, buf: &mut Vec<u8>) -> Result<(), QueueError> {
        serde_json::to_writer(buf, self).map_err(|e| QueueError::InvalidJob(e.to_string()))
    }

    /// The length of the job's compact contract JSON, found by encoding it into a counter
    /// (nothing is allocated): what [`write_json`](Self::write_json) would append.
    pub fn encoded_len(&self) -> Result<usize, QueueError> {
        let mut count = ByteCount(0);
        serde_json::to_writer(&mut count, self)
            .map_err(|e| QueueError::InvalidJob(e.to_string()))?;
        Ok(count.0)
    }

    /// The job's compact contract JSON.
    pub fn to_json(&self) -> Result<String, QueueError> {
        serde_json::to_string(self).map_err(|e| QueueError::InvalidJob(e.to_string()))
    }
}

/// An `io::Write` that only counts what is written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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
    id: Text,
    kind: Text,
    wamid: Option<Text>,
    from: Option<Text>,
    from_user_id: Option<Text>,
    type_: Option<Text>,
    text: Option<Text>,
    timestamp: Option<Text>,
    contact_name: Option<Text>,
    phone_number_id: Option<Text>,
    display_phone_number: Option<Text>,
    waba_id: Option<Text>,
    last_error: Option<Text>,
    /// where the payload is in `json`
    payload: Range<usize>,
}

/// A text field of a [`Job`]: where its characters are in the job's JSON, or, for a string
/// with escapes, the decoded text.
#[derive(Debug, Clone)]
enum Text {
    At(Range<usize>),
    Decoded(Box<str>),
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

#[derive(Deserialize)]
struct JobWire<'a> {
    v: u32,
    #[serde(borrow)]
    id: Borrowed<'a>,
    #[serde(borrow)]
    kind: Borrowed<'a>,
    #[serde(default, borrow)]
    wamid: Option<Borrowed<'a>>,
    #[serde(default, borrow)]
    from: Option<Borrowed<'a>>,
    #[serde(default, borrow)]
    from_user_id: Option<Borrowed<'a>>,
    #[serde(default, borrow, rename = "type")]
    type_: Option<Borrowed<'a>>,
    #[serde(default, borrow)]
    text: Option<Borrowed<'a>>,
    #[serde(default, borrow)]
    timestamp: Option<Borrowed<'a>>,
    #[serde(default, borrow)]
    contact_name: Option<Borrowed<'a>>,
    #[serde(default, borrow)]
    phone_number_id: Option<Borrowed<'a>>,
    #[serde(default, borrow)]
    display_phone_number: Option<Borrowed<'a>>,
    #[serde(default, borrow)]
    waba_id: Option<Borrowed<'a>>,
    #[serde(default)]
    received_at: Option<u64>,
    #[serde(default)]
    attempt: u32,
    #[serde(default)]
    lost: u32,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(default, borrow)]
    last_error: Option<Borrowed<'a>>,
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
        match serde_json::from_str::<JobWire<'_>>(raw) {
            Ok(w) if w.v == CONTRACT_VERSION => {
                let text = |t: Option<Borrowed<'_>>| t.map(|t| Text::of(raw, t));
                Ok(Job {
                    v: w.v,
                    received_at: w.received_at,
                    attempt: w.attempt,
                    lost: w.lost,
                    id: Text::of(raw, w.id),
                    kind: Text::of(raw, w.kind),
                    wamid: text(w.wamid),
                    from: text(w.from),
                    from_user_id: text(w.from_user_id),
                    type_: text(w.type_),
                    text: text(w.text),
                    timestamp: text(w.timestamp),
                    contact_name: text(w.contact_name),
                    phone_number_id: text(w.phone_number_id),
                    display_phone_number: text(w.display_phone_number),
                    waba_id: text(w.waba_id),
                    last_error: text(w.last_error),
                    payload: place(raw, w.payload.get()),
                    json: raw.into(),
                })
            }
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

    fn opt<'j>(&'j self, t: &'j Option<Text>) -> Option<&'j str> {
        t.as_ref().map(|t| t.get(&self.json))
    }

    /// dedup id
    pub fn id(&self) -> &str {
        self.id.get(&self.json)
    }

    /// The kind; one this version does not know is [`JobKind::Other`], its name kept, so
    /// that it still reaches the handler.
    pub fn kind(&self) -> JobKind {
        JobKind::parse(self.kind_name())
    }

    /// The kind's name exactly as written in the job (no allocation, whatever the kind).
    pub fn kind_name(&self) -> &str {
        self.kind.get(&self.json)
    }

    /// The embedded object, verbatim. Found again in the job's JSON at each call (a scan of
    /// the payload, no copy): keep the reference rather than calling this in a loop.
    pub fn payload(&self) -> &RawValue {
        serde_json::from_str(&self.json[self.payload.clone()])
            .expect("the payload was read from this very text")
    }
}

/// The accessors of the optional text fields: a field's name and what it holds, once each.
macro_rules! text_accessors {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        impl Job {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> Option<&str> {
                    self.opt(&self.$name)
                }
            )*
        }
    };
}

text_accessors! {
    /// wamid
    wamid;
    /// sender / recipient
    from;
    /// business-scoped user id
    from_user_id;
    /// type
    type_;
    /// text
    text;
    /// timestamp as sent
    timestamp;
    /// contact profile name
    contact_name;
    /// phone number id
    phone_number_id;
    /// display phone number
    display_phone_number;
    /// WABA id
    waba_id;
    /// the error of the previous failed delivery, if any
    last_error;
}

/// Shows the fields, as the struct did when they were strings of their own.
impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("v", &self.v)
            .field("id", &self.id())
            .field("kind", &self.kind_name())
            .field("wamid", &self.wamid())
            .field("from", &self.from())
            .field("from_user_id", &self.from_user_id())
            .field("type_", &self.type_())
            .field("text", &self.text())
            .field("timestamp", &self.timestamp())
            .field("contact_name", &self.contact_name())
            .field("phone_number_id", &self.phone_number_id())
            .field("display_phone_number", &self.display_phone_number())
            .field("waba_id", &self.waba_id())
            .field("received_at", &self.received_at)
            .field("attempt", &self.attempt)
            .field("lost", &self.lost)
            .field("payload", &self.payload())
            .field("last_error", &self.last_error())
            .finish()
    }
}

/// A JSON object as an ordered list of fields whose values stay as their exact text.
///
/// Rewrites go through this rather than a typed struct: `#[serde(flatten)]` cannot carry a
/// `RawValue`, and a typed struct would drop fields a newer producer added.
struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Fields {
    fn parse(raw: &str) -> Option<Fields> {
        serde_json::from_str(raw).ok()
    }

    fn set(&mut self, key: &str, value: &impl Serialize) {
        let Ok(text) = serde_json::to_string(value) else {
            return;
        };
        let Ok(raw) = RawValue::from_string(text) else {
            return;
        };
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = raw,
            None => self.0.push((key.to_owned(), raw)),
        }
    }

    fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    fn get_u64(&self, key: &str) -> Option<u64> {
        let (_, v) = self.0.iter().find(|(k, _)| k == key)?;
        serde_json::from_str(v.get()).ok()
    }

    fn get_string(&self, key: &str) -> Option<String> {
        let (_, v) = self.0.iter().find(|(k, _)| k == key)?;
        serde_json::from_str(v.get()).ok()
    }

    fn to_json(&self) -> String {
        let len = self
            .0
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>()
            + 2;
        let mut out = String::with_capacity(len);
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // A String always serialises.
            out.push_str(&serde_json::to_string(k).unwrap_or_else(|_| "\"\"".into()));
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        out
    }
}

/// The job as scheduled for its next delivery: `attempt` set to the deliveries made so far and
/// `last_error` to why this one failed. `None` when `raw` is not a JSON object.
pub(crate) fn rewrite_retry(raw: &str, attempt: u32, error: &str) -> Option<String> {
    let mut f = Fields::parse(raw)?;
    f.set("attempt", &attempt);
    f.set("last_error", &error);
    Some(f.to_json())
}

/// The dead entry for `raw`: the job with `error` and `died_at` added (and `attempt` set to the
/// deliveries made, when known). Text that is not a JSON object is kept whole, as the string
/// field `raw` of a new object, so nothing is ever dropped.
pub(crate) fn rewrite_dead(raw: &str, attempt: Option<u32>, error: &str, died_at: u64) -> String {
    match Fields::parse(raw) {
        Some(mut f) => {
            if let Some(a) = attempt {
                f.set("attempt", &a);
            }
            f.set("error", &error);
            f.set("died_at", &died_at);
            f.to_json()
        }
        None => {
            let mut f = Fields(Vec::new());
            f.set("error", &error);
            f.set("died_at", &died_at);
            f.set("raw", &raw);
            f.to_json()
        }
    }
}

/// The dead entry as a fresh job again: `attempt` 0, `lost`, `error`, `died_at` and
/// `last_error` removed. A wrapped non-object entry gives back its original text. `None` when `raw` is
/// not a JSON object.
pub(crate) fn rewrite_replay(raw: &str) -> Option<String> {
    let mut f = Fields::parse(raw)?;
    if f.0.iter().all(|(k, _)| k != "v")
        && let Some(original) = f.get_string("raw")
    {
        return Some(original);
    }
    f.remove("error");
    f.remove("died_at");
    f.remove("last_error");
    f.remove("lost");
    f.set("attempt", &0u32);
    Some(f.to_json())
}

/// `error` and `died_at` of a dead entry.
pub(crate) fn dead_fields(raw: &str) -> (Option<String>, Option<u64>) {
    match Fields::parse(raw) {
        Some(f) => (f.get_string("error"), f.get_u64("died_at")),
        None => (None, None),
    }
}

/// `received_at` of a job, if it has one.
pub(crate) fn received_at(raw: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct R {
        received_at: Option<u64>,
    }
    serde_json::from_str::<R>(raw).ok()?.received_at
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = r#"{"from":"16315551181","id":"wamid.A\/B","text":{"body":"caf\u00e9 \ud83d\ude00"},"type":"text"}"#;

    fn payload() -> Box<RawValue> {
        RawValue::from_string(PAYLOAD.to_owned()).unwrap()
    }

    /// A new job encodes compactly, in contract order, with v=1, attempt=0 and the payload verbatim.
    #[test]
    fn encode_new_job() {
        let p = payload();
        let mut job = NewJob::new("wamid.A/B", JobKind::Message, &p);
        job.received_at = 1700000000000;
        job.wamid = Some("wamid.A/B".into());
        job.type_ = Some("text".into());
        job.text = Some("café 😀".into());
        let json = job.to_json().unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"v":1,"id":"wamid.A/B","kind":"message","wamid":"wamid.A/B","type":"text","text":"café 😀","received_at":1700000000000,"attempt":0,"payload":{PAYLOAD}}}"#
            )
        );
        let mut buf = Vec::new();
        job.write_json(&mut buf).unwrap();
        assert_eq!(buf, json.as_bytes());
        assert_eq!(job.encoded_len().unwrap(), json.len());
        // Escapes count as written: a quote, a backslash and control characters.
        job.text = Some("\"\\\n\u{1}".into());
        assert_eq!(job.encoded_len().unwrap(), job.to_json().unwrap().len());
    }

    /// A job encoded by the producer decodes with every field and the payload byte for byte.
    #[test]
    fn round_trip() {
        let p = payload();
        let mut job = NewJob::new("x", JobKind::Status, &p);
        job.from = Some("1".into());
        let back = Job::from_json(&job.to_json().unwrap()).unwrap();
        assert_eq!(back.id(), "x");
        assert_eq!(back.kind_name(), "status");
        assert_eq!(back.kind(), JobKind::Status);
        assert_eq!(back.from(), Some("1"));
        assert_eq!(back.wamid(), None);
        assert_eq!(back.attempt, 0);
        assert_eq!(back.payload().get(), PAYLOAD);
    }

    /// Text fields read the same whether they are places in the JSON (no escapes) or decoded
    /// (escapes), an absent one is `None`, and the payload is the queued bytes.
    #[test]
    fn text_fields_with_and_without_escapes() {
        let queued = format!(
            r#"{{"v":1,"id":"wamid.A\/B","kind":"message","text":"say \"hi\"\n","from":"1555","received_at":7,"payload":{PAYLOAD}}}"#
        );
        let job = Job::from_json(&queued).unwrap();
        assert_eq!(job.id(), "wamid.A/B");
        assert_eq!(job.kind_name(), "message");
        assert_eq!(job.text(), Some("say \"hi\"\n"));
        assert_eq!(job.from(), Some("1555"));
        assert_eq!((job.wamid(), job.last_error()), (None, None));
        assert_eq!(job.received_at, Some(7));
        assert_eq!(job.payload().get(), PAYLOAD);
        assert_eq!(job.clone().text(), job.text());
        assert!(format!("{job:?}").contains(r#"text: Some("say \"hi\"\n")"#));
        // a field of the wrong type is still refused
        assert!(Job::parse(r#"{"v":1,"id":1,"kind":"message","payload":{}}"#).is_err());
    }

    /// `Job::json` hands out the queued text itself: a field this version does not know and
    /// the payload's escapes are all still there.
    #[test]
    fn json_is_the_queued_text() {
        let queued = r#"{"v":1,"id":"x","kind":"message","attempt":2,"added_later":{"a":[1]},"payload":{"t":"caf\u00e9 \/"}}"#;
        let job = Job::from_json(queued).unwrap();
        assert_eq!(job.json(), queued);
        assert_eq!(job.attempt, 2);
    }

    /// An unknown `v`, a missing `v`, a non-object and a missing payload are all refused.
    #[test]
    fn refuse_unknown() {
        let e = Job::parse(r#"{"v":2,"id":"x","kind":"message","payload":{}}"#).unwrap_err();
        assert!(e.contains("unknown contract version 2"), "{e}");
        let e = Job::parse(r#"{"v":"2","id":"x"}"#).unwrap_err();
        assert!(e.contains("unknown contract version"), "{e}");
        let e = Job::parse(r#"{"id":"x","kind":"message","payload":{}}"#).unwrap_err();
        assert!(e.contains("no contract version"), "{e}");
        assert!(Job::parse("not json").is_err());
        assert!(Job::parse(r#"{"v":1,"id":"x","kind":"message"}"#).is_err());
        // An unknown kind still parses: the handler decides.
        assert!(Job::parse(r#"{"v":1,"id":"x","kind":"poll","payload":1}"#).is_ok());
    }

    /// Retry, dead and replay rewrites keep the payload byte for byte and keep unknown fields.
    #[test]
    fn rewrites_keep_payload_and_unknown_fields() {
        let raw = format!(
            r#"{{"v":1,"id":"x","kind":"message","future":{{"a":[1, 2]}},"attempt":0,"payload":{PAYLOAD}}}"#
        );
        let r = rewrite_retry(&raw, 1, "boom \"quoted\"").unwrap();
        assert!(r.contains(&format!(r#""payload":{PAYLOAD}"#)), "{r}");
        assert!(r.contains(r#""future":{"a":[1, 2]}"#), "{r}");
        let j = Job::parse(&r).unwrap();
        assert_eq!(j.attempt, 1);
        assert_eq!(j.last_error(), Some("boom \"quoted\""));

        let d = rewrite_dead(&r, Some(2), "gave up", 42);
        assert_eq!(dead_fields(&d), (Some("gave up".into()), Some(42)));
        assert!(d.contains(&format!(r#""payload":{PAYLOAD}"#)));
        assert_eq!(Job::parse(&d).unwrap().attempt, 2);

        let p = rewrite_replay(&d).unwrap();
        let j = Job::parse(&p).unwrap();
        assert_eq!(j.attempt, 0);
        assert_eq!(j.last_error(), None);
        assert_eq!(dead_fields(&p), (None, None));
        assert!(p.contains(r#""future":{"a":[1, 2]}"#));
        assert!(p.contains(&format!(r#""payload":{PAYLOAD}"#)));
    }

    /// `lost` is read, stays the first field through retry and dead rewrites, and replay
    /// removes it.
    #[test]
    fn lost_stays_first_and_replay_removes_it() {
        let raw = format!(
            r#"{{"lost":2,"v":1,"id":"x","kind":"message","attempt":1,"payload":{PAYLOAD}}}"#
        );
        let j = Job::parse(&raw).unwrap();
        assert_eq!((j.attempt, j.lost), (1, 2));
        let r = rewrite_retry(&raw, 2, "boom").unwrap();
        assert!(r.starts_with(r#"{"lost":2,"v":1,"#), "{r}");
        let d = rewrite_dead(&r, Some(3), "gave up", 42);
        assert!(d.starts_with(r#"{"lost":2,"v":1,"#), "{d}");
        let p = rewrite_replay(&d).unwrap();
        assert!(!p.contains(r#""lost""#), "{p}");
        assert_eq!(Job::parse(&p).unwrap().lost, 0);
    }

    /// Text that is not a JSON object still makes a dead entry, and replay gives it back whole.
    #[test]
    fn dead_wraps_garbage() {
        let d = rewrite_dead("not json {", None, "unreadable", 7);
        assert_eq!(dead_fields(&d), (Some("unreadable".into()), Some(7)));
        assert_eq!(rewrite_replay(&d).unwrap(), "not json {");
        assert_eq!(rewrite_retry("[1]", 1, "x"), None);
    }
}
