//! Lenient building blocks of the typed model, and small helpers shared with the walk.
//!
//! Everything here reads "whatever JSON is there" and turns an unexpected shape into `None` (or an
//! empty list) instead of an error, because a webhook body from Meta may gain fields, change a
//! string into a number, or drop a part at any time, and one odd part must never cost the others.
//! The only errors these helpers pass on are the deserializer's own (syntax), which cannot happen on
//! text serde_json has already validated.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON number, kept in the form serde_json read it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    U(u64),
    I(i64),
    F(f64),
}

/// Any JSON value, read where a string (or number) is expected, without failing.
#[derive(Debug)]
pub(crate) enum Loose<'a> {
    Null,
    Str(Cow<'a, str>),
    Num(Num),
    Bool(bool),
    /// an object or an array (skipped)
    Container,
}

impl<'a> Loose<'a> {
    /// The string, or a number's decimal text (Meta's ids and timestamps are strings, but a number in
    /// their place still names the same thing).
    pub(crate) fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Loose::Str(s) => Some(s),
            Loose::Num(Num::U(n)) => Some(Cow::Owned(n.to_string())),
            Loose::Num(Num::I(n)) => Some(Cow::Owned(n.to_string())),
            Loose::Num(Num::F(n)) => Some(Cow::Owned(n.to_string())),
            Loose::Null | Loose::Bool(_) | Loose::Container => None,
        }
    }

    pub(crate) fn into_u64(self) -> Option<u64> {
        match self {
            Loose::Num(Num::U(n)) => Some(n),
            Loose::Num(Num::I(n)) => u64::try_from(n).ok(),
            Loose::Num(Num::F(f)) if f.fract() == 0.0 && (0.0..1.8e19).contains(&f) => {
                Some(f as u64)
            }
            Loose::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn into_i64(self) -> Option<i64> {
        match self {
            Loose::Num(Num::U(n)) => i64::try_from(n).ok(),
            Loose::Num(Num::I(n)) => Some(n),
            Loose::Num(Num::F(f)) if f.fract() == 0.0 && (-9.2e18..9.2e18).contains(&f) => {
                Some(f as i64)
            }
            Loose::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn into_f64(self) -> Option<f64> {
        match self {
            Loose::Num(Num::U(n)) => Some(n as f64),
            Loose::Num(Num::I(n)) => Some(n as f64),
            Loose::Num(Num::F(f)) => Some(f),
            Loose::Str(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
            _ => None,
        }
    }

    pub(crate) fn into_bool(self) -> Option<bool> {
        match self {
            Loose::Bool(b) => Some(b),
            Loose::Str(s) if s == "true" => Some(true),
            Loose::Str(s) if s == "false" => Some(false),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Loose::Num(Num::U(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Loose::Num(Num::I(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Loose::Num(Num::F(v)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(v))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Loose::deserialize(d)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Container)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Container)
    }
}

// ---- `deserialize_with` helpers for the typed model -------------------------------------------

/// A string (borrowed when it has no escapes), or a number's decimal text; anything else is `None`.
pub(crate) fn str_<'a, 'de: 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Loose::deserialize(d)?.into_str())
}

/// An unsigned integer, also from a numeric string.
pub(crate) fn u64_<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Loose::deserialize(d)?.into_u64())
}

/// A signed integer, also from a numeric string.
pub(crate) fn i64_<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Loose::deserialize(d)?.into_i64())
}

/// Any number as `f64`, also from a numeric string.
pub(crate) fn f64_<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Loose::deserialize(d)?.into_f64())
}

/// A boolean, also from the strings `"true"` / `"false"`.
pub(crate) fn bool_<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(Loose::deserialize(d)?.into_bool())
}

/// An object read as `T`; any other JSON value is `None`.
pub(crate) fn obj<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_any(ObjVisitor(PhantomData))
}

/// An array of objects read as `T`; items that are not objects are left out, and anything other
/// than an array is an empty list.
pub(crate) fn objs<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_any(ObjsVisitor(PhantomData))
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for ObjVisitor<T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
}

struct ObjsVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjsVisitor<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element_seed(ObjVisitor::<T>(PhantomData))? {
            out.extend(item);
        }
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_str<E>(self, _: &str) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_none<E>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
}

/// Describes a serde_json error without quoting any of the input (a body's text must not reach
/// logs through an error message).
pub(crate) fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "read error",
        Category::Syntax => "invalid JSON",
        Category::Data => "unexpected shape",
        Category::Eof => "unexpected end of input",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// The first byte of a JSON text after leading whitespace.
pub(crate) fn first_byte(text: &[u8]) -> Option<u8> {
    text.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// A name for the JSON type that starts with `b`, for messages.
pub(crate) fn json_type_name(b: Option<u8>) -> &'static str {
    match b {
        None => "empty",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(_) => "not JSON",
    }
}
