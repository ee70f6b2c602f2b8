//! The envelope walk: one pass over the body with [`Scanner`], which knows where it is.
//!
//! Every level is read by its own small function that accepts any JSON value: a part of the
//! wrong shape is recorded as an [`Anomaly`] and skipped, never an error. The only error is text
//! that is not JSON.
//!
//! Each message, status and error object has its few summary fields read and its extent noted in
//! the same pass; the extent becomes a `&RawValue` (see [`checked_raw_value`]). A change's `value`
//! comes before its `field` in Meta's bodies, so it is read as a `messages` value and what that
//! produced is rolled back should the field turn out to be another one.
//!
//! About 720 lines of code, one small function per level of the body, plus its unit tests: the
//! levels call one another and share the rollback, so they stay together.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;
use std::sync::OnceLock;

use crate::de::{first_byte, json_type_name};
use crate::scan::{Scan, Scanner};
use crate::{Anomaly, Contact, Envelope, JobKind, Notification, PayloadError, Problem, RawValue};

#[derive(Debug, Default)]
pub(crate) struct EntryCtx<'a> {
    pub(crate) waba_id: Option<Cow<'a, str>>,
    pub(crate) time: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct ChangeCtx<'a> {
    pub(crate) entry: usize,
    pub(crate) field: Option<Cow<'a, str>>,
    pub(crate) metadata: Metadata<'a>,
    pub(crate) contacts: Range<usize>,
}

/// `value.metadata` of a change.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metadata<'a> {
    pub(crate) phone_number_id: Option<Cow<'a, str>>,
    pub(crate) display_phone_number: Option<Cow<'a, str>>,
}

/// A `contacts[]` item as the walk keeps it: its `profile.name`, which becomes a job's
/// `contact_name`, apart from the rest, which a notification carries as its [`Contact`]; so
/// that the name is copied once per notification, as the envelope's.
#[derive(Debug, Default)]
pub(crate) struct ContactRow<'a> {
    pub(crate) name: Option<Cow<'a, str>>,
    pub(crate) contact: Contact<'a>,
}

/// The fields of a message or status the notification carries: the item's own part of its
/// [`Envelope`], kept apart so that an item does not hold the four its change and entry give.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary<'a> {
    pub(crate) wamid: Option<Cow<'a, str>>,
    pub(crate) from: Option<Cow<'a, str>>,
    pub(crate) from_user_id: Option<Cow<'a, str>>,
    pub(crate) type_: Option<Cow<'a, str>>,
    pub(crate) text: Option<Cow<'a, str>>,
    pub(crate) timestamp: Option<Cow<'a, str>>,
}

#[derive(Debug)]
pub(crate) struct Item<'a> {
    pub(crate) kind: JobKind,
    /// index into `Walk::changes`
    pub(crate) change: usize,
    /// position in its array (used as a first guess for the matching contact)
    pub(crate) pos: usize,
    pub(crate) raw: &'a RawValue,
    pub(crate) summary: Summary<'a>,
}

/// Everything the walk found, flat, in body order.
#[derive(Debug, Default)]
pub(crate) struct Walk<'a> {
    pub(crate) object: Option<Cow<'a, str>>,
    pub(crate) entries: Vec<EntryCtx<'a>>,
    pub(crate) changes: Vec<ChangeCtx<'a>>,
    pub(crate) contacts: Vec<ContactRow<'a>>,
    pub(crate) items: Vec<Item<'a>>,
    /// the first `MAX_ANOMALIES` anomalies
    pub(crate) anomalies: Vec<Anomaly>,
    /// all anomalies, kept or not
    pub(crate) anomaly_count: usize,
    /// contacts by sender id, built on the first item whose contact is not at its position
    pub(crate) contact_index: OnceLock<ContactIndex>,
    /// entries, changes, contacts and items the walk may still store
    parts_left: usize,
    /// the walk stopped because `parts_left` ran out
    over_limit: bool,
}

/// Which id of a contact a sender is matched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum IdKind {
    WaId,
    UserId,
}

/// Every change's contacts by sender id. Meta lists contacts in the order of the messages, so
/// an item's contact is looked for at its own position first; a body that does not (senders
/// missing from `contacts`, contacts shuffled) would otherwise cost a scan of the change's
/// contacts per item, quadratic in the body. The index makes every lookup O(1) after one pass
/// over the contacts, and is built only when the positional guess misses. Keys are a keyed
/// hash of the id (the key is random per index, so collisions cannot be aimed); a hit is
/// checked against the id itself.
#[derive(Debug, Default)]
pub(crate) struct ContactIndex {
    hasher: RandomState,
    /// (change, which id, hash of the id) -> index into `Walk::contacts`; the first contact
    /// with an id wins, as a scan in order would find it.
    by_id: HashMap<(usize, IdKind, u64), usize>,
}

impl ContactIndex {
    fn build(changes: &[ChangeCtx<'_>], contacts: &[ContactRow<'_>]) -> Self {
        let mut index = ContactIndex::default();
        for (change, ctx) in changes.iter().enumerate() {
            for at in ctx.contacts.clone() {
                let c = &contacts[at].contact;
                for (kind, id) in [(IdKind::WaId, &c.wa_id), (IdKind::UserId, &c.user_id)] {
                    if let Some(id) = id {
                        let key = (change, kind, index.hasher.hash_one(id.as_ref()));
                        index.by_id.entry(key).or_insert(at);
                    }
                }
            }
        }
        index
    }

    /// The first contact of `change` whose `kind` id is `id`.
    fn find<'c, 'a>(
        &self,
        contacts: &'c [ContactRow<'a>],
        change: usize,
        kind: IdKind,
        id: &str,
    ) -> Option<&'c ContactRow<'a>> {
        let at = *self.by_id.get(&(change, kind, self.hasher.hash_one(id)))?;
        let c = contacts.get(at)?;
        let own = match kind {
            IdKind::WaId => &c.contact.wa_id,
            IdKind::UserId => &c.contact.user_id,
        };
        (own.as_deref() == Some(id)).then_some(c)
    }
}

/// Anomalies kept with their paths. A body of a million odd items must not cost a million
/// strings; past this many only the count goes on.
pub(crate) const MAX_ANOMALIES: usize = 64;

impl Walk<'_> {
    /// Counts one entry, change, contact or item about to be stored; past the limit the walk
    /// stops, so what a body costs to walk is bounded by the limit, not by its size alone.
    fn count_part(&mut self, s: &Scanner<'_>) -> Scan<()> {
        if self.parts_left == 0 {
            self.over_limit = true;
            return s.fail("too many parts");
        }
        self.parts_left -= 1;
        Ok(())
    }

    fn note(&mut self, path: String, problem: Problem) {
        self.anomaly_count += 1;
        if self.anomalies.len() < MAX_ANOMALIES {
            self.anomalies.push(Anomaly { path, problem });
        }
    }
}

/// Walks a whole body, storing at most `max_parts` entries, changes, contacts and items. Fails
/// when it is not a JSON object (or not JSON at all), or holds more parts.
pub(crate) fn walk(bytes: &[u8], max_parts: usize) -> Result<Walk<'_>, PayloadError> {
    let first = first_byte(bytes);
    if first != Some(b'{') {
        return Err(PayloadError::NotAnObject(format!(
            "the top level is {}",
            json_type_name(first)
        )));
    }
    // JSON text is UTF-8; checking it once up front lets the scanner work on a `str`. std's
    // check goes byte by byte through non-ASCII text (about 1 us for an 800-byte webhook in
    // other scripts); simdutf8's takes 32 or 64 bytes a step and answers the same.
    let text = simdutf8::compat::from_utf8(bytes).map_err(|e| {
        PayloadError::NotAnObject(format!("invalid UTF-8 at byte {}", e.valid_up_to()))
    })?;
    let mut s = Scanner::new(text);
    // A message with its contact takes a few hundred bytes on the wire; sizing the two big lists
    // from the body saves regrowing (and copying) them in large batches.
    let expected = bytes.len() / 384 + 1;
    let mut w = Walk {
        items: Vec::with_capacity(expected),
        contacts: Vec::with_capacity(expected),
        parts_left: max_parts,
        ..Walk::default()
    };
    s.ws();
    body(&mut s, &mut w)
        .and_then(|()| {
            if s.at_end() {
                Ok(())
            } else {
                s.fail("trailing characters")
            }
        })
        .map_err(|e| {
            if w.over_limit {
                PayloadError::TooManyParts(max_parts)
            } else {
                PayloadError::NotAnObject(format!("invalid JSON at byte {}: {}", e.at, e.what))
            }
        })?;
    Ok(w)
}

/// The value at `start..end`, which the scanner has checked, as a `&RawValue`.
fn raw_value<'a>(s: &Scanner<'a>, start: usize, end: usize) -> Option<&'a RawValue> {
    let text = s.slice(start, end);
    let checked = checked_raw_value(text);
    // Debug builds (the tests) hold every slice to serde_json's own reading as well.
    debug_assert!(
        checked.is_none() || serde_json::from_str::<&RawValue>(text).is_ok(),
        "the scanner accepted a value serde_json refuses"
    );
    checked.or_else(|| serde_json::from_str(text).ok())
}

/// serde_json's private name for the one-entry map its `&RawValue` is read from.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// `text`, already checked to be one JSON value, as a `&RawValue` without scanning it again.
///
/// serde_json can only make a borrowed `&RawValue` by deserializing, and the only public way to
/// that from a `&str` re-reads the whole text, which measured as the largest single cost of the
/// walk after the scan itself. Its `&RawValue` reads a one-entry map keyed by a private token;
/// serving that map here is safe code that yields the same value. Should a future serde_json
/// change the token, this returns `None` and `raw_value` falls back to the re-reading path (and a
/// unit test fails, so the slowdown is noticed).
pub(crate) fn checked_raw_value(text: &str) -> Option<&RawValue> {
    use serde::Deserialize;
    use serde::de::value::{BorrowedStrDeserializer, Error, MapDeserializer};
    let entry = (RAW_VALUE_TOKEN, BorrowedStrDeserializer::<Error>::new(text));
    <&RawValue>::deserialize(MapDeserializer::new(std::iter::once(entry))).ok()
}

/// Reads a string-ish value, noting one of the wrong type.
fn read_str<'a>(
    s: &mut Scanner<'a>,
    w: &mut Walk<'a>,
    path: impl FnOnce() -> String,
) -> Scan<Option<Cow<'a, str>>> {
    let v = s.scalar()?;
    if v.is_odd_for_str() {
        w.note(path(), Problem::NotAString);
    }
    Ok(v.into_str())
}

/// Skips the value of a repeated key and notes it.
fn duplicate<'a>(s: &mut Scanner<'a>, w: &mut Walk<'a>, path: String) -> Scan<()> {
    w.note(path, Problem::DuplicateKey);
    s.skip_value()
}

fn body<'a>(s: &mut Scanner<'a>, w: &mut Walk<'a>) -> Scan<()> {
    let (mut object, mut entry) = (false, false);
    s.object(|s, key| match &*key {
        "object" if !object => {
            object = true;
            w.object = read_str(s, w, || "object".to_owned())?;
            Ok(())
        }
        "entry" if !entry => {
            entry = true;
            entries(s, w)
        }
        "object" | "entry" => duplicate(s, w, key.into_owned()),
        _ => s.skip_value(),
    })?;
    if !entry {
        w.note("entry".to_owned(), Problem::Missing);
    }
    Ok(())
}

fn entries<'a>(s: &mut Scanner<'a>, w: &mut Walk<'a>) -> Scan<()> {
    if s.peek() != Some(b'[') {
        w.note("entry".to_owned(), Problem::NotAnArray);
        return s.skip_value();
    }
    s.array(|s, e| one_entry(s, w, e))
}

fn one_entry<'a>(s: &mut Scanner<'a>, w: &mut Walk<'a>, e: usize) -> Scan<()> {
    if s.peek() != Some(b'{') {
        w.note(format!("entry[{e}]"), Problem::NotAnObject);
        return s.skip_value();
    }
    w.count_part(s)?;
    let idx = w.entries.len();
    w.entries.push(EntryCtx::default());
    let mut seen = [false; 3];
    s.object(|s, key| {
        let k = match &*key {
            "id" => 0,
            "time" => 1,
            "changes" => 2,
            _ => return s.skip_value(),
        };
        if seen[k] {
            return duplicate(s, w, format!("entry[{e}].{key}"));
        }
        seen[k] = true;
        match k {
            0 => w.entries[idx].waba_id = read_str(s, w, || format!("entry[{e}].id"))?,
            1 => {
                let v = s.scalar()?;
                if v.is_odd_for_str() {
                    w.note(format!("entry[{e}].time"), Problem::NotAString);
                }
                w.entries[idx].time = v.into_u64();
            }
            _ => {
                if s.peek() != Some(b'[') {
                    w.note(format!("entry[{e}].changes"), Problem::NotAnArray);
                    return s.skip_value();
                }
                s.array(|s, c| one_change(s, w, e, c, idx))?;
            }
        }
        Ok(())
    })?;
    if !seen[2] {
        w.note(format!("entry[{e}].changes"), Problem::Missing);
    }
    Ok(())
}

/// What reading a change's value found out.
#[derive(Default)]
struct ValueOut {
    has_items: bool,
    not_object: bool,
}

fn one_change<'a>(
    s: &mut Scanner<'a>,
    w: &mut Walk<'a>,
    e: usize,
    c: usize,
    entry: usize,
) -> Scan<()> {
    let at = || format!("entry[{e}].changes[{c}]");
    if s.peek() != Some(b'{') {
        w.note(at(), Problem::NotAnObject);
        return s.skip_value();
    }
    w.count_part(s)?;
    let change = w.changes.len();
    w.changes.push(ChangeCtx {
        entry,
        field: None,
        metadata: Metadata::default(),
        contacts: 0..0,
    });
    let (items, contacts) = (w.items.len(), w.contacts.len());
    let (anomalies, counted) = (w.anomalies.len(), w.anomaly_count);
    let mut value: Option<(usize, usize)> = None;
    let (mut anomalies_end, mut counted_end) = (anomalies, counted);
    let mut out = ValueOut::default();
    let mut field = None;
    let mut seen = [false; 2];
    s.object(|s, key| {
        let k = match &*key {
            "value" => 0,
            "field" => 1,
            _ => return s.skip_value(),
        };
        if seen[k] {
            return duplicate(s, w, format!("{}.{key}", at()));
        }
        seen[k] = true;
        if k == 1 {
            field = read_str(s, w, || format!("{}.field", at()))?;
            return Ok(());
        }
        let start = s.pos();
        if s.peek() == Some(b'{') {
            value_object(s, w, e, c, change, &mut out)?;
        } else {
            out.not_object = true;
            s.skip_value()?;
        }
        value = Some((start, s.pos()));
        (anomalies_end, counted_end) = (w.anomalies.len(), w.anomaly_count);
        Ok(())
    })?;
    let is_messages = field.as_deref() == Some("messages");
    w.changes[change].field = field;
    let Some((start, end)) = value else {
        w.note(format!("{}.value", at()), Problem::Missing);
        return Ok(());
    };
    if is_messages && out.not_object {
        w.note(format!("{}.value", at()), Problem::NotAnObject);
        return Ok(());
    }
    if !is_messages {
        // The value was read as a `messages` value; for another field only its metadata
        // applies. Anomalies noted after it (the `field`) stay.
        w.items.truncate(items);
        w.contacts.truncate(contacts);
        w.anomalies.drain(anomalies..anomalies_end);
        w.anomaly_count -= counted_end - counted;
        w.changes[change].contacts = 0..0;
    }
    // A `messages` value is split into its items; a value of any other field, and a `messages`
    // value that carries none of `messages`/`statuses`/`errors` (a shape Meta may add), is handed
    // on whole so that nothing the body carries is dropped.
    if !is_messages || !out.has_items {
        w.count_part(s)?;
        match raw_value(s, start, end) {
            Some(raw) => w.items.push(Item {
                kind: JobKind::Change,
                change,
                pos: 0,
                raw,
                summary: Summary::default(),
            }),
            None => w.note(format!("{}.value", at()), Problem::Unreadable),
        }
    }
    Ok(())
}

fn value_object<'a>(
    s: &mut Scanner<'a>,
    w: &mut Walk<'a>,
    e: usize,
    c: usize,
    change: usize,
    out: &mut ValueOut,
) -> Scan<()> {
    let at = |key: &str| format!("entry[{e}].changes[{c}].value.{key}");
    let mut seen = [false; 5];
    s.object(|s, key| {
        let k = match &*key {
            "metadata" => 0,
            "contacts" => 1,
            "messages" => 2,
            "statuses" => 3,
            "errors" => 4,
            _ => return s.skip_value(),
        };
        if seen[k] {
            return duplicate(s, w, at(&key));
        }
        seen[k] = true;
        match k {
            0 => metadata(s, w, change, || at("metadata")),
            1 => {
                if s.peek() != Some(b'[') {
                    w.note(at("contacts"), Problem::NotAnArray);
                    return s.skip_value();
                }
                let first = w.contacts.len();
                s.array(|s, i| contact(s, w, || format!("{}[{i}]", at("contacts"))))?;
                w.changes[change].contacts = first..w.contacts.len();
                Ok(())
            }
            _ => {
                out.has_items = true;
                let kind = [JobKind::Message, JobKind::Status, JobKind::Error][k - 2].clone();
                if s.peek() != Some(b'[') {
                    w.note(at(&key), Problem::NotAnArray);
                    return s.skip_value();
                }
                s.array(|s, pos| {
                    item(s, w, kind.clone(), change, pos, || {
                        format!("{}[{pos}]", at(&key))
                    })
                })
            }
        }
    })
}

fn metadata<'a>(
    s: &mut Scanner<'a>,
    w: &mut Walk<'a>,
    change: usize,
    path: impl Fn() -> String,
) -> Scan<()> {
    if s.peek() != Some(b'{') {
        w.note(path(), Problem::NotAnObject);
        return s.skip_value();
    }
    let mut md = Metadata::default();
    s.object(|s, key| {
        let slot = match &*key {
            "phone_number_id" => &mut md.phone_number_id,
            "display_phone_number" => &mut md.display_phone_number,
            _ => return s.skip_value(),
        };
        let v = read_str(s, w, || format!("{}.{key}", path()))?;
        if slot.is_none() {
            *slot = v;
        }
        Ok(())
    })?;
    w.changes[change].metadata = md;
    Ok(())
}

fn contact<'a>(s: &mut Scanner<'a>, w: &mut Walk<'a>, path: impl Fn() -> String) -> Scan<()> {
    if s.peek() != Some(b'{') {
        w.note(path(), Problem::NotAnObject);
        return s.skip_value();
    }
    let mut row = ContactRow::default();
    s.object(|s, key| {
        let slot = match &*key {
            "wa_id" => &mut row.contact.wa_id,
            "user_id" => &mut row.contact.user_id,
            "profile" if s.peek() == Some(b'{') => {
                return s.object(|s, key| {
                    let slot = match &*key {
                        "name" => &mut row.name,
                        "username" => &mut row.contact.username,
                        _ => return s.skip_value(),
                    };
                    let v = s.scalar()?.into_str();
                    if slot.is_none() {
                        *slot = v;
                    }
                    Ok(())
                });
            }
            _ => return s.skip_value(),
        };
        let v = s.scalar()?.into_str();
        if slot.is_none() {
            *slot = v;
        }
        Ok(())
    })?;
    w.count_part(s)?;
    w.contacts.push(row);
    Ok(())
}

fn item<'a>(
    s: &mut Scanner<'a>,
    w: &mut Walk<'a>,
    kind: JobKind,
    change: usize,
    pos: usize,
    path: impl Fn() -> String,
) -> Scan<()> {
    if s.peek() != Some(b'{') {
        w.note(path(), Problem::NotAnObject);
        return s.skip_value();
    }
    let start = s.pos();
    let mut sum = Summary::default();
    match kind {
        JobKind::Message => s.object(|s, key| {
            let slot = match &*key {
                "id" => &mut sum.wamid,
                "from" => &mut sum.from,
                "from_user_id" => &mut sum.from_user_id,
                "type" => &mut sum.type_,
                "timestamp" => &mut sum.timestamp,
                "text" if s.peek() == Some(b'{') => {
                    return s.object(|s, key| {
                        if &*key == "body" && sum.text.is_none() {
                            sum.text = s.scalar()?.into_str();
                            Ok(())
                        } else {
                            s.skip_value()
                        }
                    });
                }
                _ => return s.skip_value(),
            };
            let v = s.scalar()?.into_str();
            if slot.is_none() {
                *slot = v;
            }
            Ok(())
        })?,
        JobKind::Status => s.object(|s, key| {
            let slot = match &*key {
                "id" => &mut sum.wamid,
                "recipient_id" => &mut sum.from,
                "recipient_user_id" => &mut sum.from_user_id,
                "status" => &mut sum.type_,
                "timestamp" => &mut sum.timestamp,
                _ => return s.skip_value(),
            };
            let v = s.scalar()?.into_str();
            if slot.is_none() {
                *slot = v;
            }
            Ok(())
        })?,
        // errors and changes are handed on whole
        _ => s.skip_value()?,
    }
    w.count_part(s)?;
    match raw_value(s, start, s.pos()) {
        Some(raw) => w.items.push(Item {
            kind,
            change,
            pos,
            raw,
            summary: sum,
        }),
        None => w.note(path(), Problem::Unreadable),
    }
    Ok(())
}

// ---- one notification -----------------------------------------------------------------------

impl<'a> Walk<'a> {
    /// Builds the notification for one item from its change's context and its summary.
    pub(crate) fn notification(&self, item: &Item<'a>) -> Notification<'a> {
        self.build(item, item.summary.clone())
    }

    /// Like `notification`, taking the item's own strings instead of copying them.
    pub(crate) fn build(&self, item: &Item<'a>, sum: Summary<'a>) -> Notification<'a> {
        let change = &self.changes[item.change];
        let entry = &self.entries[change.entry];
        let mut envelope = Envelope {
            wamid: sum.wamid,
            from: sum.from,
            from_user_id: sum.from_user_id,
            type_: sum.type_,
            text: sum.text,
            timestamp: sum.timestamp,
            contact_name: None,
            phone_number_id: change.metadata.phone_number_id.clone(),
            display_phone_number: change.metadata.display_phone_number.clone(),
            waba_id: entry.waba_id.clone(),
        };
        let mut contact = None;
        match item.kind {
            JobKind::Message | JobKind::Status => {
                if let Some(row) = self.contact_of(
                    item,
                    envelope.from.as_deref(),
                    envelope.from_user_id.as_deref(),
                ) {
                    envelope.contact_name = row.name.clone();
                    contact = Some(row.contact.clone());
                }
            }
            // errors and changes are named by their field
            _ => envelope.type_ = change.field.clone(),
        }
        Notification {
            kind: item.kind.clone(),
            envelope,
            entry_time: entry.time,
            field: change.field.clone(),
            contact,
            raw: item.raw,
        }
    }
}

impl<'a> Walk<'a> {
    /// The contact whose `wa_id` is the sender's (`from`) or whose `user_id` is the sender's
    /// (`from_user_id`): the item's own position first (Meta lists contacts in message order),
    /// then the [`ContactIndex`]. When the item names no sender at all and the change has
    /// exactly one contact, that contact is taken; otherwise an unmatched sender gets none
    /// (better no name than someone else's).
    fn contact_of(
        &self,
        item: &Item<'a>,
        wa_id: Option<&str>,
        user_id: Option<&str>,
    ) -> Option<&ContactRow<'a>> {
        let range = self.changes[item.change].contacts.clone();
        let contacts = self.contacts.get(range).unwrap_or_default();
        let hit = |c: &ContactRow<'_>| {
            (wa_id.is_some() && c.contact.wa_id.as_deref() == wa_id)
                || (user_id.is_some() && c.contact.user_id.as_deref() == user_id)
        };
        if let Some(c) = contacts.get(item.pos).filter(|c| hit(c)) {
            return Some(c);
        }
        if wa_id.is_none() && user_id.is_none() {
            return (contacts.len() == 1).then(|| &contacts[0]);
        }
        if contacts.is_empty() {
            return None;
        }
        let index = self
            .contact_index
            .get_or_init(|| ContactIndex::build(&self.changes, &self.contacts));
        let by_wa = wa_id.and_then(|id| index.find(&self.contacts, item.change, IdKind::WaId, id));
        let by_user =
            user_id.and_then(|id| index.find(&self.contacts, item.change, IdKind::UserId, id));
        // A scan in order would return whichever of the two matches comes first.
        match (by_wa, by_user) {
            (Some(a), Some(b)) => Some(if std::ptr::from_ref(a) <= std::ptr::from_ref(b) {
                a
            } else {
                b
            }),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast `&RawValue` path works with the serde_json in use (if serde_json changes its
    /// private token, the walk stays correct but slower, and this test says so).
    #[test]
    fn checked_raw_value_takes_the_fast_path() {
        let text = r#"{"id":"wamid.A\/B","n":[1,2.5,null]}"#;
        let raw = checked_raw_value(text).expect("serde_json still reads its raw-value map");
        assert_eq!(raw.get(), text);
        assert!(std::ptr::eq(raw.get(), text), "borrowed, not copied");
    }

    /// Text that is not UTF-8 is refused at the offset std's check names, wherever the bad
    /// sequence sits (in and past the first SIMD block, truncated at the end, overlong,
    /// a surrogate), and valid multi-byte text is read.
    #[test]
    fn utf8_is_checked_like_std() {
        let pad = "é漢🌵".repeat(30);
        let bad: [&[u8]; 6] = [
            b"\x80",
            b"\xc3",
            b"\xe6\xbc",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xff",
        ];
        for at in [1usize, 5, 40, 70] {
            for seq in bad {
                let mut body = format!(
                    r#"{{"object":"{}"#,
                    &pad[..pad.char_indices().nth(at).unwrap().0]
                )
                .into_bytes();
                body.extend_from_slice(seq);
                body.extend_from_slice(br#""}"#);
                let offset = std::str::from_utf8(&body).unwrap_err().valid_up_to();
                match walk(&body, usize::MAX) {
                    Err(PayloadError::NotAnObject(m)) => {
                        assert_eq!(m, format!("invalid UTF-8 at byte {offset}"), "{body:?}")
                    }
                    other => panic!("{body:?} read as {other:?}"),
                }
            }
        }
        let body = format!(r#"{{"object":"{pad}"}}"#);
        let w = walk(body.as_bytes(), usize::MAX).unwrap();
        assert_eq!(w.object.as_deref(), Some(pad.as_str()));
    }

    /// Contacts out of message order are found by id (through the index), the first of two
    /// contacts with the same id wins, a `user_id` matches `from_user_id`, and a sender
    /// missing from `contacts` gets none.
    #[test]
    fn contacts_out_of_order_are_found_by_id() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"W","changes":[{"field":"messages","value":{
          "contacts":[{"profile":{"name":"B"},"wa_id":"2"},{"profile":{"name":"A"},"wa_id":"1"},
                      {"profile":{"name":"A2"},"wa_id":"1"},{"profile":{"name":"U"},"user_id":"u9"}],
          "messages":[{"id":"m1","from":"1"},{"id":"m2","from":"2"},{"id":"m3","from":"3"},
                      {"id":"m4","from_user_id":"u9"},{"id":"m5","from_user_id":"u9"}]}}]}]}"#;
        let w = walk(body, usize::MAX).unwrap();
        let names: Vec<Option<String>> = w
            .items
            .iter()
            .map(|item| {
                let n = w.notification(item);
                n.envelope.contact_name.map(|c| c.into_owned())
            })
            .collect();
        let want = [Some("A"), Some("B"), None, Some("U"), Some("U")];
        assert_eq!(names, want.map(|n| n.map(str::to_owned)));
    }

    /// `max_parts` counts entries, changes, contacts and items together: a body of exactly that
    /// many walks, one more fails as too many (not as bad JSON).
    #[test]
    fn parts_are_limited() {
        // 1 entry + 1 change + 1 contact + 2 messages = 5 parts.
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"W","changes":[{"field":"messages","value":{
          "contacts":[{"wa_id":"1"}],"messages":[{"id":"a","from":"1"},{"id":"b","from":"1"}]}}]}]}"#;
        assert_eq!(walk(body, 5).unwrap().items.len(), 2);
        assert!(matches!(walk(body, 4), Err(PayloadError::TooManyParts(4))));
    }
}
