//! Reading a job in one pass of its text, for the usual case.
//!
//! serde_json reads a job into a derived struct in about a microsecond, most of it spent
//! matching field names, in the visitor machinery and skipping the payload, which it must
//! check too (a job that does not read goes to dead before any handler sees it). This reader
//! does the same in one loop over the bytes, but only for the plain case: an object whose keys
//! have no escapes, each known field once, the numbers plain unsigned integers, nesting no
//! deeper than [`MAX_DEPTH`]. Anything else (and every job that does not read) answers `None`,
//! and serde_json reads it as before: what is accepted, what each field holds and the reason a
//! job is refused stay serde_json's (a differential test in `tests.rs` holds it to that).
//!
//! What it accepts is a subset of what serde_json accepts: values it skips (the payload, fields
//! this version does not know) are checked by the rules of serde_json's own skipping (strings
//! without control characters, escapes `\" \\ \/ \b \f \n \r \t \uXXXX`, numbers by the JSON
//! grammar, `true`/`false`/`null`), and a string field with escapes is decoded by serde_json.

use super::read::{Fields, TEXT_NAMES, Text};
use wa_kind::json::skip_plain;

/// Deepest nesting this reader follows (the job's object counts as one); deeper jobs are left
/// to serde_json.
const MAX_DEPTH: u32 = 64;

/// The job's fields, or `None` when the text is not the plain case (see the module's doc).
pub(super) fn fields(raw: &str, version: u32) -> Option<Fields> {
    let mut r = Reader {
        b: raw.as_bytes(),
        raw,
        i: 0,
        closed: false,
    };
    let mut f = Fields::default();
    let mut seen = 0u32;
    r.ws();
    r.eat(b'{')?;
    r.ws();
    if r.peek()? == b'}' {
        return None; // the required fields are missing
    }
    loop {
        r.ws();
        let key = r.key()?;
        r.ws();
        r.eat(b':')?;
        r.ws();
        // bits 0-6 the fixed fields, 7.. the text fields in the order of TEXT_NAMES
        let bit = match key {
            "v" => 0,
            "id" => 1,
            "kind" => 2,
            "payload" => 3,
            "received_at" => 4,
            "attempt" => 5,
            "lost" => 6,
            _ => match TEXT_NAMES.iter().position(|name| *name == key) {
                Some(slot) => 7 + slot,
                None => {
                    r.skip_value(1)?;
                    r.after_member()?;
                    if r.closed {
                        break;
                    }
                    continue;
                }
            },
        };
        if seen & (1 << bit) != 0 {
            return None; // a duplicate field: serde_json refuses it, in its words
        }
        seen |= 1 << bit;
        match bit {
            0 => f.v = u32::try_from(r.uint()?).ok()?,
            1 => f.id = r.string()?,
            2 => f.kind = r.string()?,
            3 => {
                let start = r.i;
                r.skip_value(1)?;
                f.payload = start..r.i;
            }
            4 => f.received_at = r.opt_uint()?,
            5 => f.attempt = u32::try_from(r.uint()?).ok()?,
            6 => f.lost = u32::try_from(r.uint()?).ok()?,
            text => f.texts[text - 7] = r.opt_string()?,
        }
        r.after_member()?;
        if r.closed {
            break;
        }
    }
    r.ws();
    // the required fields (v, id, kind, payload), this contract's version, nothing after
    (r.i == r.b.len() && seen & 0b1111 == 0b1111 && f.v == version).then_some(f)
}

struct Reader<'a> {
    b: &'a [u8],
    raw: &'a str,
    i: usize,
    /// the job's object has been closed
    closed: bool,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    /// After a member's value: a comma (and a key must follow) or the closing brace.
    fn after_member(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b',' => self.i += 1,
            b'}' => {
                self.i += 1;
                self.closed = true;
            }
            _ => return None,
        }
        Some(())
    }

    /// A key without escapes.
    fn key(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = skip_plain(self.b, start);
        if self.b.get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        self.raw.get(start..end)
    }

    /// A string at the cursor: its span between the quotes, or, with escapes, its text as
    /// serde_json decodes it.
    fn string(&mut self) -> Option<Text> {
        let open = self.i;
        self.eat(b'"')?;
        let mut end = skip_plain(self.b, self.i);
        if self.b.get(end) == Some(&b'"') {
            self.i = end + 1;
            return Some(Text::At(open + 1..end));
        }
        // escapes: find the closing quote (an escape is two bytes as far as finding the end
        // goes; serde_json checks each), then let serde_json decode the string
        while self.b.get(end) == Some(&b'\\') {
            end = skip_plain(self.b, end + 2);
        }
        if self.b.get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        let text: String = serde_json::from_str(self.raw.get(open..self.i)?).ok()?;
        Some(Text::Decoded(text.into()))
    }

    fn opt_string(&mut self) -> Option<Option<Text>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Some(None)
        } else {
            self.string().map(Some)
        }
    }

    /// A plain unsigned integer (no sign, fraction or exponent) that fits in a u64.
    fn uint(&mut self) -> Option<u64> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let len = self.i - start;
        let leading_zero = len > 1 && self.b[start] == b'0';
        if len == 0 || leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(n)
    }

    fn opt_uint(&mut self) -> Option<Option<u64>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Some(None)
        } else {
            self.uint().map(Some)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// Skips one value at the cursor, checking it as serde_json checks a value it skips;
    /// `depth` counts the containers it is in.
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => self.skip_container(depth, b'}', true),
            b'[' => self.skip_container(depth, b']', false),
            b'-' | b'0'..=b'9' => self.skip_number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    fn skip_container(&mut self, depth: u32, close: u8, object: bool) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            if object {
                if self.peek()? != b'"' {
                    return None;
                }
                self.skip_string()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
            }
            self.skip_value(depth + 1)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn skip_string(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            self.i = skip_plain(self.b, self.i);
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => match self.b.get(self.i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                    b'u' => {
                        let hex = self.b.get(self.i + 2..self.i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 6;
                    }
                    _ => return None,
                },
                _ => return None, // a control character
            }
        }
    }

    fn skip_number(&mut self) -> Option<()> {
        let digits = |r: &mut Self| {
            let from = r.i;
            while r.peek().is_some_and(|c| c.is_ascii_digit()) {
                r.i += 1;
            }
            r.i > from
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !digits(self) {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        Some(())
    }
}
