//! The rewrites a job goes through (retry, dead, replay): every field kept, `payload` byte
//! for byte.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

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
