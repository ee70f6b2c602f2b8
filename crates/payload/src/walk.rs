//! The envelope walk: one streaming pass over `entry[].changes[]`, then each change's `value`.
//!
//! serde_json can hand out a part of the input as a `&RawValue` only by skipping over it, so the
//! walk reads each level in a single pass and keeps as raw slices exactly the parts it must hand on
//! byte for byte: every change's `value` (its `field` usually comes after it, so what the value
//! holds is only known once the change has been read) and every message, status and error object.
//! A `messages` value is then read once more to find its items; each item is read a last time, on
//! demand, by the notification iterator. Skipping is several times cheaper than building values,
//! which is what keeps the whole walk well ahead of a `serde_json::Value` of the same body (see
//! `docs/performance-payload.md`).
//!
//! Every level is read through [`Shape`], which accepts any JSON value: a part of the wrong shape
//! is recorded as an [`Anomaly`] and skipped, never an error.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::de::{KeySeed, Loose, OTHER_KEY, describe, first_byte, json_type_name, keys};
use crate::{Anomaly, Contact, Kind, Metadata, Notification, PayloadError, Problem, RawValue};

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

#[derive(Debug)]
pub(crate) struct Item<'a> {
    pub(crate) kind: Kind,
    /// index into `Walk::changes`
    pub(crate) change: usize,
    /// position in its array (used as a first guess for the matching contact)
    pub(crate) pos: usize,
    pub(crate) raw: &'a RawValue,
}

/// Everything the envelope walk found, flat, in body order.
#[derive(Debug, Default)]
pub(crate) struct Walk<'a> {
    pub(crate) object: Option<Cow<'a, str>>,
    pub(crate) entries: Vec<EntryCtx<'a>>,
    pub(crate) changes: Vec<ChangeCtx<'a>>,
    pub(crate) contacts: Vec<Contact<'a>>,
    pub(crate) items: Vec<Item<'a>>,
    pub(crate) anomalies: Vec<Anomaly>,
    pending: Vec<Pending>,
}

impl Walk<'_> {
    fn note(&mut self, path: String, problem: Problem) {
        self.anomalies.push(Anomaly { path, problem });
    }
}

/// Walks a whole body. Fails only when it is not a JSON object (or not JSON at all).
pub(crate) fn walk(bytes: &[u8]) -> Result<Walk<'_>, PayloadError> {
    let first = first_byte(bytes);
    if first != Some(b'{') {
        return Err(PayloadError::NotAnObject(format!(
            "the top level is {}",
            json_type_name(first)
        )));
    }
    // JSON text is UTF-8. Checking it up front is cheap, makes a bad byte anywhere refuse the body
    // (serde_json would let it pass inside a skipped string), and lets the walk read a `str`.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        PayloadError::NotAnObject(format!("invalid UTF-8 at byte {}", e.valid_up_to()))
    })?;
    let mut w = Walk::default();
    let mut de = serde_json::Deserializer::from_str(text);
    Shape(TopH { w: &mut w })
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| PayloadError::NotAnObject(describe(&e)))?;
    if !w.pending.is_empty() {
        refetch(text, &mut w).map_err(|e| PayloadError::NotAnObject(describe(&e)))?;
    }
    Ok(w)
}

/// Fetches the whole `value` of each pending change with a second, skipping pass, and puts its
/// item in its place in body order.
fn refetch<'a>(text: &'a str, w: &mut Walk<'a>) -> Result<(), serde_json::Error> {
    let pending = std::mem::take(&mut w.pending);
    let mut found: Vec<Option<&'a RawValue>> = vec![None; pending.len()];
    let mut de = serde_json::Deserializer::from_str(text);
    Shape(RefetchH {
        wanted: &pending,
        found: &mut found,
        level: Level::Top,
        e: 0,
    })
    .deserialize(&mut de)?;
    let old = std::mem::take(&mut w.items);
    let mut items = Vec::with_capacity(old.len() + pending.len());
    let mut extra = pending.iter().zip(found).peekable();
    for (i, item) in old.into_iter().enumerate() {
        while let Some((p, raw)) = extra.next_if(|(p, _)| p.at <= i) {
            items.extend(raw.map(|raw| Item {
                kind: Kind::Change,
                change: p.change,
                pos: 0,
                raw,
            }));
        }
        items.push(item);
    }
    for (p, raw) in extra {
        items.extend(raw.map(|raw| Item {
            kind: Kind::Change,
            change: p.change,
            pos: 0,
            raw,
        }));
    }
    w.items = items;
    Ok(())
}

#[derive(Clone, Copy)]
enum Level {
    Top,
    Entries,
    Entry,
    Changes,
    Change,
}

/// The second pass: walks the envelope exactly as the first one counts it (first of repeated
/// keys, every array element) and keeps the `value` of the wanted changes.
struct RefetchH<'a, 'b> {
    wanted: &'b [Pending],
    found: &'b mut [Option<&'a RawValue>],
    level: Level,
    e: usize,
}

impl<'a> RefetchH<'a, '_> {
    fn at(&mut self, level: Level, e: usize) -> RefetchH<'a, '_> {
        RefetchH {
            wanted: self.wanted,
            found: &mut *self.found,
            level,
            e,
        }
    }
}

impl<'a> Handler<'a> for RefetchH<'a, '_> {
    fn map<A: MapAccess<'a>>(mut self, mut map: A) -> Result<(), A::Error> {
        let (key, next) = match self.level {
            Level::Top => ("entry", Level::Entries),
            Level::Entry => ("changes", Level::Changes),
            Level::Change => ("value", Level::Change),
            Level::Entries | Level::Changes => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(());
            }
        };
        let mut seen = false;
        while let Some(k) = map.next_key_seed(KeySeed(|k: &str| usize::from(k != key)))? {
            if k == 0 && !seen {
                seen = true;
                if let Level::Change = self.level {
                    let raw: &'a RawValue = map.next_value()?;
                    if let Some(slot) = self.found.first_mut() {
                        *slot = Some(raw);
                    }
                } else {
                    let e = self.e;
                    map.next_value_seed(Shape(self.at(next, e)))?;
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
    fn seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let more = match self.level {
                Level::Entries => {
                    let lo = self.wanted.partition_point(|p| p.e < i);
                    let hi = self.wanted.partition_point(|p| p.e <= i);
                    if lo == hi {
                        seq.next_element::<IgnoredAny>()?.is_some()
                    } else {
                        let sub = RefetchH {
                            wanted: &self.wanted[lo..hi],
                            found: &mut self.found[lo..hi],
                            level: Level::Entry,
                            e: i,
                        };
                        seq.next_element_seed(Shape(sub))?.is_some()
                    }
                }
                Level::Changes => {
                    let pos = self.wanted.iter().position(|p| p.c == i);
                    match pos {
                        Some(pos) => {
                            let sub = RefetchH {
                                wanted: &self.wanted[pos..=pos],
                                found: &mut self.found[pos..=pos],
                                level: Level::Change,
                                e: self.e,
                            };
                            seq.next_element_seed(Shape(sub))?.is_some()
                        }
                        None => seq.next_element::<IgnoredAny>()?.is_some(),
                    }
                }
                _ => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }
    fn wrong(self) {}
}

// ---- the shape dispatcher -------------------------------------------------------------------

/// What to do with a value depending on its JSON shape; the defaults skip it and call `wrong`.
trait Handler<'de>: Sized {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.wrong();
        Ok(())
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.wrong();
        Ok(())
    }
    /// The value is not of the shape this handler reads.
    fn wrong(self);
}

/// Reads any JSON value and hands it to a [`Handler`] by shape.
struct Shape<H>(H);

impl<'de, H: Handler<'de>> DeserializeSeed<'de> for Shape<H> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(ShapeVisitor(self.0, PhantomData))
    }
}

struct ShapeVisitor<'de, H>(H, PhantomData<&'de ()>);

impl<'de, H: Handler<'de>> Visitor<'de> for ShapeVisitor<'de, H> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.0.seq(seq)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<(), E> {
        self.0.wrong();
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.0.wrong();
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.0.wrong();
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.0.wrong();
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.0.wrong();
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.0.wrong();
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.wrong();
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.0.wrong();
        Ok(())
    }
}

/// Reads a string-ish field, noting a value of the wrong type.
fn read_str<'a, A: MapAccess<'a>>(
    map: &mut A,
    w: &mut Walk<'a>,
    path: impl FnOnce() -> String,
) -> Result<Option<Cow<'a, str>>, A::Error> {
    let v: Loose<'a> = map.next_value()?;
    if v.is_odd_for_str() {
        w.note(path(), Problem::NotAString);
    }
    Ok(v.into_str())
}

/// Skips the value of a repeated key and notes it.
fn duplicate<'a, A: MapAccess<'a>>(
    map: &mut A,
    w: &mut Walk<'a>,
    path: String,
) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>()?;
    w.note(path, Problem::DuplicateKey);
    Ok(())
}

// ---- body ---------------------------------------------------------------------------------

struct TopH<'a, 'b> {
    w: &'b mut Walk<'a>,
}

impl<'a> Handler<'a> for TopH<'a, '_> {
    fn map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        const KEYS: &[&str] = &["object", "entry"];
        let w = self.w;
        let mut seen = [false; 2];
        while let Some(k) = map.next_key_seed(keys!("object", "entry"))? {
            if k != OTHER_KEY && seen[k] {
                duplicate(&mut map, w, KEYS[k].to_owned())?;
                continue;
            }
            match k {
                0 => w.object = read_str(&mut map, w, || "object".to_owned())?,
                1 => map.next_value_seed(Shape(EntriesH { w: &mut *w }))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if k != OTHER_KEY {
                seen[k] = true;
            }
        }
        if !seen[1] {
            w.note("entry".to_owned(), Problem::Missing);
        }
        Ok(())
    }
    fn wrong(self) {
        // `walk` checks the first byte, so the top level is always an object here.
        self.w.note(String::new(), Problem::NotAnObject);
    }
}

struct EntriesH<'a, 'b> {
    w: &'b mut Walk<'a>,
}

impl<'a> Handler<'a> for EntriesH<'a, '_> {
    fn seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut e = 0;
        while seq
            .next_element_seed(Shape(EntryH { w: &mut *self.w, e }))?
            .is_some()
        {
            e += 1;
        }
        Ok(())
    }
    fn wrong(self) {
        self.w.note("entry".to_owned(), Problem::NotAnArray);
    }
}

struct EntryH<'a, 'b> {
    w: &'b mut Walk<'a>,
    e: usize,
}

impl<'a> Handler<'a> for EntryH<'a, '_> {
    fn map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        const KEYS: &[&str] = &["id", "time", "changes"];
        let (w, e) = (self.w, self.e);
        let idx = w.entries.len();
        w.entries.push(EntryCtx::default());
        let mut seen = [false; 3];
        while let Some(k) = map.next_key_seed(keys!("id", "time", "changes"))? {
            if k != OTHER_KEY && seen[k] {
                duplicate(&mut map, w, format!("entry[{e}].{}", KEYS[k]))?;
                continue;
            }
            match k {
                0 => w.entries[idx].waba_id = read_str(&mut map, w, || format!("entry[{e}].id"))?,
                1 => {
                    let v: Loose<'a> = map.next_value()?;
                    if matches!(v, Loose::Bool(_) | Loose::Container) {
                        w.note(format!("entry[{e}].time"), Problem::NotAString);
                    }
                    w.entries[idx].time = v.into_u64();
                }
                2 => map.next_value_seed(Shape(ChangesH {
                    w: &mut *w,
                    e,
                    entry: idx,
                }))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if k != OTHER_KEY {
                seen[k] = true;
            }
        }
        if !seen[2] {
            w.note(format!("entry[{e}].changes"), Problem::Missing);
        }
        Ok(())
    }
    fn wrong(self) {
        self.w
            .note(format!("entry[{}]", self.e), Problem::NotAnObject);
    }
}

struct ChangesH<'a, 'b> {
    w: &'b mut Walk<'a>,
    e: usize,
    entry: usize,
}

impl<'a> Handler<'a> for ChangesH<'a, '_> {
    fn seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut c = 0;
        while seq
            .next_element_seed(Shape(ChangeH {
                w: &mut *self.w,
                e: self.e,
                c,
                entry: self.entry,
            }))?
            .is_some()
        {
            c += 1;
        }
        Ok(())
    }
    fn wrong(self) {
        self.w
            .note(format!("entry[{}].changes", self.e), Problem::NotAnArray);
    }
}

// ---- one change ---------------------------------------------------------------------------

/// A change whose whole `value` must be handed on but was read in streaming mode (its `field`
/// came after it): the value is fetched by a second, skipping pass over the body.
#[derive(Debug)]
pub(crate) struct Pending {
    /// where in `Walk::items` the change's item goes
    at: usize,
    e: usize,
    c: usize,
    change: usize,
}

struct ChangeH<'a, 'b> {
    w: &'b mut Walk<'a>,
    e: usize,
    c: usize,
    entry: usize,
}

/// What reading a value in streaming mode found out.
#[derive(Default)]
struct ValueOut {
    has_items: bool,
    not_object: bool,
}

impl<'a> Handler<'a> for ChangeH<'a, '_> {
    fn map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        const KEYS: &[&str] = &["value", "field"];
        let ChangeH { w, e, c, entry } = self;
        let at = || format!("entry[{e}].changes[{c}]");
        // Meta writes `value` before `field`, so what a value is only becomes known after it has
        // been read. It is read in streaming mode as a `messages` value (the common case, and the
        // one that needs its items found); should the field turn out to be another one, what it
        // produced is rolled back and the value is fetched whole by a second pass (`refetch`).
        let mut raw: Option<&'a RawValue> = None;
        let mut streamed: Option<(ValueOut, Mark, usize)> = None;
        let mut change = None;
        let mut field: Option<Cow<'a, str>> = None;
        let mut seen = [false; 2];
        while let Some(k) = map.next_key_seed(keys!("value", "field"))? {
            if k != OTHER_KEY && seen[k] {
                duplicate(&mut map, w, format!("{}.{}", at(), KEYS[k]))?;
                continue;
            }
            match k {
                0 => {
                    let idx = w.changes.len();
                    w.changes.push(ChangeCtx {
                        entry,
                        field: None,
                        metadata: Metadata::default(),
                        contacts: 0..0,
                    });
                    change = Some(idx);
                    if seen[1] && field.as_deref() != Some("messages") {
                        raw = Some(map.next_value()?);
                    } else {
                        let mark = w.mark();
                        let mut out = ValueOut::default();
                        map.next_value_seed(Shape(ValueH {
                            w: &mut *w,
                            e,
                            c,
                            change: idx,
                            split: true,
                            out: &mut out,
                        }))?;
                        streamed = Some((out, mark, w.anomalies.len()));
                    }
                }
                1 => field = read_str(&mut map, w, || format!("{}.field", at()))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if k != OTHER_KEY {
                seen[k] = true;
            }
        }
        let Some(change) = change else {
            w.note(format!("{}.value", at()), Problem::Missing);
            return Ok(());
        };
        let is_messages = field.as_deref() == Some("messages");
        w.changes[change].field = field;
        match (raw, streamed) {
            (Some(raw), _) => {
                // `field` came first and is not `messages`: hand the value on whole, with its
                // metadata when it has some.
                if raw.get().starts_with('{') {
                    let mut de = serde_json::Deserializer::from_str(raw.get());
                    let mut out = ValueOut::default();
                    let _ = Shape(ValueH {
                        w: &mut *w,
                        e,
                        c,
                        change,
                        split: false,
                        out: &mut out,
                    })
                    .deserialize(&mut de);
                }
                w.items.push(Item {
                    kind: Kind::Change,
                    change,
                    pos: 0,
                    raw,
                });
            }
            (None, Some((out, _, _))) if is_messages => {
                if out.not_object {
                    w.note(format!("{}.value", at()), Problem::NotAnObject);
                } else if !out.has_items {
                    // A `messages` value with none of `messages`/`statuses`/`errors`: a shape Meta
                    // may add; handed on whole rather than dropped.
                    w.pending.push(Pending {
                        at: w.items.len(),
                        e,
                        c,
                        change,
                    });
                }
            }
            (None, Some((_, mark, anomalies_end))) => {
                // Another field: what the streaming read produced does not apply to it (only
                // the metadata does); the value is fetched whole afterwards.
                w.rollback(mark, anomalies_end, change);
                w.pending.push(Pending {
                    at: w.items.len(),
                    e,
                    c,
                    change,
                });
            }
            (None, None) => {}
        }
        Ok(())
    }
    fn wrong(self) {
        self.w.note(
            format!("entry[{}].changes[{}]", self.e, self.c),
            Problem::NotAnObject,
        );
    }
}

/// Lengths to roll a speculative read back to.
#[derive(Clone, Copy)]
struct Mark {
    items: usize,
    contacts: usize,
    anomalies: usize,
}

impl Walk<'_> {
    fn mark(&self) -> Mark {
        Mark {
            items: self.items.len(),
            contacts: self.contacts.len(),
            anomalies: self.anomalies.len(),
        }
    }

    /// Undoes what reading a value produced; anomalies noted after it (its change's `field`)
    /// stay.
    fn rollback(&mut self, mark: Mark, anomalies_end: usize, change: usize) {
        self.items.truncate(mark.items);
        self.contacts.truncate(mark.contacts);
        self.anomalies.drain(mark.anomalies..anomalies_end);
        if let Some(ch) = self.changes.get_mut(change) {
            ch.contacts = 0..0;
        }
    }
}

struct ValueH<'a, 'b> {
    w: &'b mut Walk<'a>,
    e: usize,
    c: usize,
    change: usize,
    /// a `messages` value: read contacts and split the items
    split: bool,
    out: &'b mut ValueOut,
}

impl<'a> Handler<'a> for ValueH<'a, '_> {
    fn map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        const KEYS: &[&str] = &["metadata", "contacts", "messages", "statuses", "errors"];
        let ValueH {
            w,
            e,
            c,
            change,
            split,
            out,
        } = self;
        let mut seen = [false; 5];
        while let Some(k) = map.next_key_seed(keys!(
            "metadata", "contacts", "messages", "statuses", "errors"
        ))? {
            let k = if !split && k != 0 { OTHER_KEY } else { k };
            if k != OTHER_KEY && seen[k] {
                duplicate(
                    &mut map,
                    w,
                    format!("entry[{e}].changes[{c}].value.{}", KEYS[k]),
                )?;
                continue;
            }
            match k {
                0 => map.next_value_seed(Shape(MetadataH {
                    w: &mut *w,
                    e,
                    c,
                    change,
                }))?,
                1 => {
                    let start = w.contacts.len();
                    map.next_value_seed(Shape(ContactsH { w: &mut *w, e, c }))?;
                    w.changes[change].contacts = start..w.contacts.len();
                }
                2..=4 => {
                    out.has_items = true;
                    let kind = [Kind::Message, Kind::Status, Kind::Error][k - 2];
                    map.next_value_seed(Shape(ItemsH {
                        w: &mut *w,
                        e,
                        c,
                        change,
                        key: KEYS[k],
                        kind,
                    }))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if k != OTHER_KEY {
                seen[k] = true;
            }
        }
        Ok(())
    }
    fn wrong(self) {
        self.out.not_object = true;
    }
}

struct MetadataH<'a, 'b> {
    w: &'b mut Walk<'a>,
    e: usize,
    c: usize,
    change: usize,
}

impl<'a> Handler<'a> for MetadataH<'a, '_> {
    fn map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        const KEYS: &[&str] = &["phone_number_id", "display_phone_number"];
        let MetadataH { w, e, c, change } = self;
        let mut md = Metadata::default();
        while let Some(k) = map.next_key_seed(keys!("phone_number_id", "display_phone_number"))? {
            let path = || format!("entry[{e}].changes[{c}].value.metadata.{}", KEYS[k]);
            match k {
                0 if md.phone_number_id.is_none() => {
                    md.phone_number_id = read_str(&mut map, w, path)?
                }
                1 if md.display_phone_number.is_none() => {
                    md.display_phone_number = read_str(&mut map, w, path)?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        w.changes[change].metadata = md;
        Ok(())
    }
    fn wrong(self) {
        self.w.note(
            format!("entry[{}].changes[{}].value.metadata", self.e, self.c),
            Problem::NotAnObject,
        );
    }
}

struct ContactsH<'a, 'b> {
    w: &'b mut Walk<'a>,
    e: usize,
    c: usize,
}

impl<'a> Handler<'a> for ContactsH<'a, '_> {
    fn seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Shape(ContactH {
                w: &mut *self.w,
                e: self.e,
                c: self.c,
                i,
            }))?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
    fn wrong(self) {
        self.w.note(
            format!("entry[{}].changes[{}].value.contacts", self.e, self.c),
            Problem::NotAnArray,
        );
    }
}

struct ContactH<'a, 'b> {
    w: &'b mut Walk<'a>,
    e: usize,
    c: usize,
    i: usize,
}

impl<'a> Handler<'a> for ContactH<'a, '_> {
    fn map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        let mut contact = Contact::default();
        while let Some(k) = map.next_key_seed(keys!("profile", "wa_id", "user_id"))? {
            match k {
                0 => map.next_value_seed(Shape(ProfileH {
                    contact: &mut contact,
                }))?,
                1 if contact.wa_id.is_none() => {
                    contact.wa_id = map.next_value::<Loose<'a>>()?.into_str()
                }
                2 if contact.user_id.is_none() => {
                    contact.user_id = map.next_value::<Loose<'a>>()?.into_str()
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        self.w.contacts.push(contact);
        Ok(())
    }
    fn wrong(self) {
        self.w.note(
            format!(
                "entry[{}].changes[{}].value.contacts[{}]",
                self.e, self.c, self.i
            ),
            Problem::NotAnObject,
        );
    }
}

struct ProfileH<'a, 'b> {
    contact: &'b mut Contact<'a>,
}

impl<'a> Handler<'a> for ProfileH<'a, '_> {
    fn map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key_seed(keys!("name", "username"))? {
            match k {
                0 if self.contact.name.is_none() => {
                    self.contact.name = map.next_value::<Loose<'a>>()?.into_str()
                }
                1 if self.contact.username.is_none() => {
                    self.contact.username = map.next_value::<Loose<'a>>()?.into_str()
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    fn wrong(self) {
        // A profile of another shape just leaves name and username unset.
    }
}

struct ItemsH<'a, 'b> {
    w: &'b mut Walk<'a>,
    e: usize,
    c: usize,
    change: usize,
    key: &'static str,
    kind: Kind,
}

impl<'a> Handler<'a> for ItemsH<'a, '_> {
    fn seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut pos = 0;
        while let Some(raw) = seq.next_element::<&'a RawValue>()? {
            if raw.get().starts_with('{') {
                self.w.items.push(Item {
                    kind: self.kind,
                    change: self.change,
                    pos,
                    raw,
                });
            } else {
                self.w.note(
                    format!(
                        "entry[{}].changes[{}].value.{}[{pos}]",
                        self.e, self.c, self.key
                    ),
                    Problem::NotAnObject,
                );
            }
            pos += 1;
        }
        Ok(())
    }
    fn wrong(self) {
        self.w.note(
            format!("entry[{}].changes[{}].value.{}", self.e, self.c, self.key),
            Problem::NotAnArray,
        );
    }
}

// ---- one notification -----------------------------------------------------------------------

impl<'a> Walk<'a> {
    /// Builds the notification for one item: the change's context plus, for a message or a
    /// status, the few fields read from its own object.
    pub(crate) fn notification(&self, item: &Item<'a>) -> Notification<'a> {
        let change = &self.changes[item.change];
        let entry = &self.entries[change.entry];
        let mut n = Notification {
            kind: item.kind,
            waba_id: entry.waba_id.clone(),
            entry_time: entry.time,
            field: change.field.clone(),
            metadata: change.metadata.clone(),
            contact: None,
            wamid: None,
            from: None,
            from_user_id: None,
            type_: None,
            text: None,
            timestamp: None,
            raw: item.raw,
        };
        match item.kind {
            Kind::Message | Kind::Status => {
                let mut de = serde_json::Deserializer::from_str(item.raw.get());
                // Items are objects already validated by the envelope pass; the handler never fails.
                let _ = Shape(SummaryH {
                    n: &mut n,
                    status: item.kind == Kind::Status,
                })
                .deserialize(&mut de);
                let contacts = &self.contacts[change.contacts.clone()];
                n.contact = find_contact(
                    contacts,
                    item.pos,
                    n.from.as_deref(),
                    n.from_user_id.as_deref(),
                )
                .cloned();
            }
            Kind::Error | Kind::Change => n.type_ = change.field.clone(),
        }
        n
    }
}

/// The contact whose `wa_id` is the sender's (`from`) or whose `user_id` is the sender's
/// (`from_user_id`). Meta lists contacts in the order of the messages, so the item's own position
/// is tried first; that keeps a 1000-message change linear. When the item names no sender at all
/// and the change has exactly one contact, that contact is taken; otherwise an unmatched sender
/// gets none (better no name than someone else's).
fn find_contact<'c, 'a>(
    contacts: &'c [Contact<'a>],
    pos: usize,
    wa_id: Option<&str>,
    user_id: Option<&str>,
) -> Option<&'c Contact<'a>> {
    let hit = |c: &Contact<'_>| {
        (wa_id.is_some() && c.wa_id.as_deref() == wa_id)
            || (user_id.is_some() && c.user_id.as_deref() == user_id)
    };
    if let Some(c) = contacts.get(pos).filter(|c| hit(c)) {
        return Some(c);
    }
    if let Some(c) = contacts.iter().find(|c| hit(c)) {
        return Some(c);
    }
    if wa_id.is_none() && user_id.is_none() && contacts.len() == 1 {
        return contacts.first();
    }
    None
}

struct SummaryH<'a, 'b> {
    n: &'b mut Notification<'a>,
    status: bool,
}

impl<'a> Handler<'a> for SummaryH<'a, '_> {
    fn map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        let n = self.n;
        loop {
            let k = if self.status {
                map.next_key_seed(keys!(
                    "id",
                    "recipient_id",
                    "recipient_user_id",
                    "status",
                    "timestamp"
                ))?
            } else {
                map.next_key_seed(keys!(
                    "id",
                    "from",
                    "from_user_id",
                    "type",
                    "timestamp",
                    "text"
                ))?
            };
            let Some(k) = k else { break };
            let slot = match k {
                0 => &mut n.wamid,
                1 => &mut n.from,
                2 => &mut n.from_user_id,
                3 => &mut n.type_,
                4 => &mut n.timestamp,
                5 => {
                    map.next_value_seed(Shape(TextH { body: &mut n.text }))?;
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let v = map.next_value::<Loose<'a>>()?.into_str();
            if slot.is_none() {
                *slot = v;
            }
        }
        Ok(())
    }
    fn wrong(self) {}
}

struct TextH<'a, 'b> {
    body: &'b mut Option<Cow<'a, str>>,
}

impl<'a> Handler<'a> for TextH<'a, '_> {
    fn map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key_seed(keys!("body"))? {
            if k == 0 && self.body.is_none() {
                *self.body = map.next_value::<Loose<'a>>()?.into_str();
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
    fn wrong(self) {}
}
