//! A job as a producer builds it, and its encoding in the contract's order.

use std::borrow::Cow;
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::{CONTRACT_VERSION, Envelope, JobKind, QueueError};

use super::now_ms;

/// A job as a producer builds it: borrowed, serialised straight to the contract's JSON
/// (`v` = 1 and `attempt` = 0 are written by the encoder). `payload` is embedded verbatim.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// dedup id
    pub id: Cow<'a, str>,
    /// kind
    pub kind: JobKind,
    /// the optional text fields, written between `kind` and `received_at` in the contract's
    /// order
    pub envelope: Envelope<'a>,
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
        let texts = self.envelope.fields();
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
            envelope: Envelope::default(),
            received_at: now_ms(),
            payload,
            dedup_ttl: None,
        }
    }

    /// Appends the job's compact contract JSON to `buf`: byte for byte what serde_json writes
    /// from the `Serialize` impl (a test compares them), with a string that needs no escape
    /// (the usual case) copied as it is rather than looked at byte by byte again.
    pub fn write_json(&self, buf: &mut Vec<u8>) -> Result<(), QueueError> {
        buf.extend_from_slice(b"{\"v\":");
        push_decimal(buf, CONTRACT_VERSION.into());
        push_field(buf, "id", &self.id)?;
        push_field(buf, "kind", self.kind.as_str())?;
        for (name, text) in self.envelope.fields() {
            if let Some(text) = text {
                push_field(buf, name, text)?;
            }
        }
        buf.extend_from_slice(b",\"received_at\":");
        push_decimal(buf, self.received_at);
        buf.extend_from_slice(b",\"attempt\":0,\"payload\":");
        buf.extend_from_slice(self.payload.get().as_bytes());
        buf.push(b'}');
        Ok(())
    }

    /// The length of the job's compact contract JSON, found by encoding it into a counter
    /// (nothing is allocated): what [`write_json`](Self::write_json) would append.
    pub fn encoded_len(&self) -> Result<usize, QueueError> {
        let mut count = ByteCount(0);
        serde_json::to_writer(&mut count, self)
            .map_err(|e| QueueError::InvalidJob(e.to_string()))?;
        Ok(count.0)
    }

    /// An upper bound of [`encoded_len`](Self::encoded_len), found without encoding: every
    /// byte of the id, the kind and the texts escaped at its longest (`\u00XX`, six bytes),
    /// the payload as is (it is embedded verbatim), the field names, punctuation and numbers
    /// at their longest. A few additions per job, for callers that only need to know that
    /// the JSON stays under a limit: when the bound does, so does the JSON.
    pub fn encoded_len_bound(&self) -> usize {
        self.frame_and_payload_len() + MAX_ESCAPED_LEN * self.chars()
    }

    /// What the JSON takes when no character needs an escape (the usual case): a buffer's
    /// capacity that rarely has to grow.
    pub(crate) fn likely_len(&self) -> usize {
        self.frame_and_payload_len() + self.chars()
    }

    fn frame_and_payload_len(&self) -> usize {
        FRAME_MAX_LEN + self.payload.get().len()
    }

    /// The bytes of the id, the kind and the texts, unescaped.
    fn chars(&self) -> usize {
        let texts = self.envelope.fields();
        self.id.len()
            + self.kind.as_str().len()
            + texts
                .iter()
                .filter_map(|(_, t)| *t)
                .map(str::len)
                .sum::<usize>()
    }

    /// The job's compact contract JSON.
    pub fn to_json(&self) -> Result<String, QueueError> {
        serde_json::to_string(self).map_err(|e| QueueError::InvalidJob(e.to_string()))
    }
}

/// Whether serde_json writes `s` between its quotes as it is: no quote, backslash or control
/// character (the only characters it escapes). Every byte is looked at, without stopping
/// early, so that the loop is vectorised.
fn is_plain(s: &str) -> bool {
    !s.bytes().fold(false, |seen, b| {
        seen | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// `,"name":"text"`, `text` escaped by serde_json when it must be.
fn push_field(buf: &mut Vec<u8>, name: &str, text: &str) -> Result<(), QueueError> {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\":");
    if is_plain(text) {
        buf.push(b'"');
        buf.extend_from_slice(text.as_bytes());
        buf.push(b'"');
        return Ok(());
    }
    serde_json::to_writer(buf, text).map_err(|e| QueueError::InvalidJob(e.to_string()))
}

/// `n` in decimal.
fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// The most bytes one character of a JSON string takes escaped (`\u001f`).
const MAX_ESCAPED_LEN: usize = 6;

/// The most bytes of a job's JSON outside its strings' contents and its payload: braces, every
/// field name with its quotes, colon and comma, `v`, `received_at` (a `u64`) and `attempt`
/// at their longest. The frame of a job with every field present is 235 bytes.
pub(super) const FRAME_MAX_LEN: usize = 320;

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
