//! A small validating JSON scanner over UTF-8 text, for the envelope walk.
//!
//! serde_json can either skip a value (and hand it out as a `&RawValue`) or read into it, never
//! both in one pass; the walk needs both for every message and status (its fields, and its exact
//! bytes). Knowing its own position, this scanner reads an item's fields and its extent in the same
//! pass. It accepts exactly what serde_json accepts when skipping a value (checked by a
//! differential property test), with one addition: nesting deeper than [`MAX_DEPTH`] is refused
//! rather than followed.
//!
//! About 450 lines of code, with its unit tests at the end: one scanner, whose readers share
//! its position and depth.

use std::borrow::Cow;
use wa_kind::json::skip_plain;

/// Deepest nesting followed. Webhook bodies nest about ten levels; the limit keeps the recursive
/// reader's stack use small and bounded whatever the input.
pub(crate) const MAX_DEPTH: u32 = 256;

/// Where and why the text is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanError {
    pub(crate) at: usize,
    pub(crate) what: &'static str,
}

pub(crate) type Scan<T> = Result<T, ScanError>;

/// A scalar read where a string is usually expected; containers are skipped.
#[derive(Debug)]
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    /// a number, as its JSON text
    Num(&'a str),
    Null,
    Bool,
    Container,
}

impl<'a> Scalar<'a> {
    /// The string, or a number's JSON text (Meta's ids and timestamps are strings, but a number in
    /// their place still names the same thing).
    pub(crate) fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) => Some(s),
            Scalar::Num(n) => Some(Cow::Borrowed(n)),
            Scalar::Null | Scalar::Bool | Scalar::Container => None,
        }
    }

    /// True when the value is neither a string, a number nor null.
    pub(crate) fn is_odd_for_str(&self) -> bool {
        matches!(self, Scalar::Bool | Scalar::Container)
    }

    /// An unsigned integer: a JSON integer, an integral float, or a string of digits.
    pub(crate) fn into_u64(self) -> Option<u64> {
        let text = match &self {
            Scalar::Num(n) => *n,
            Scalar::Str(s) => s.trim(),
            _ => return None,
        };
        text.parse::<u64>().ok().or_else(|| {
            let f: f64 = text.parse().ok()?;
            (f.fract() == 0.0 && (0.0..1.8e19).contains(&f)).then_some(f as u64)
        })
    }
}

#[derive(Debug)]
pub(crate) struct Scanner<'a> {
    src: &'a str,
    pos: usize,
    depth: u32,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Scanner {
            src,
            pos: 0,
            depth: 0,
        }
    }

    #[inline]
    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The text between two positions the scanner has been at.
    pub(crate) fn slice(&self, start: usize, end: usize) -> &'a str {
        self.src.get(start..end).unwrap_or_default()
    }

    pub(crate) fn fail<T>(&self, what: &'static str) -> Scan<T> {
        Err(ScanError { at: self.pos, what })
    }

    #[inline]
    pub(crate) fn ws(&mut self) {
        let b = self.bytes();
        let mut i = self.pos;
        while let Some(&c) = b.get(i) {
            // Every JSON whitespace byte is at most b' ': one compare settles the usual case.
            if c > b' ' || !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            i += 1;
            if c == b'\n' {
                // Pretty-printed bodies indent with runs of spaces: take those eight at a time.
                while b.get(i..i + 8) == Some(b"        ") {
                    i += 8;
                }
            }
        }
        self.pos = i;
    }

    /// The next byte (call after `ws`).
    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    /// True when only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.ws();
        self.pos == self.src.len()
    }

    fn enter(&mut self) -> Scan<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail("nesting too deep");
        }
        Ok(())
    }

    /// Reads a string at the cursor (on its `"`): the span of its content and whether it holds
    /// escapes.
    fn string_span(&mut self) -> Scan<(usize, usize, bool)> {
        let b = self.bytes();
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = skip_plain(b, i);
            let Some(&c) = b.get(i) else {
                self.pos = i;
                return self.fail("unterminated string");
            };
            match c {
                b'"' => {
                    self.pos = i + 1;
                    return Ok((start, i, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let hex = b.get(i + 2..i + 6);
                            if hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                i += 6;
                            } else {
                                self.pos = i;
                                return self.fail("invalid \\u escape");
                            }
                        }
                        _ => {
                            self.pos = i;
                            return self.fail("invalid escape");
                        }
                    }
                }
                0..=0x1f => {
                    self.pos = i;
                    return self.fail("control character in string");
                }
                _ => i += 1,
            }
        }
    }

    /// The content of a string read by `string_span`, unescaped when it has escapes. A lone
    /// surrogate escape becomes U+FFFD rather than refusing the string.
    fn decode(&self, start: usize, end: usize, escaped: bool) -> Cow<'a, str> {
        let raw = self.slice(start, end);
        if !escaped {
            return Cow::Borrowed(raw);
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(at) = rest.find('\\') {
            out.push_str(&rest[..at]);
            let esc = &rest[at + 1..];
            let mut used = 1;
            match esc.as_bytes().first() {
                Some(b'n') => out.push('\n'),
                Some(b't') => out.push('\t'),
                Some(b'r') => out.push('\r'),
                Some(b'b') => out.push('\u{8}'),
                Some(b'f') => out.push('\u{c}'),
                Some(b'u') => {
                    let unit = hex4(esc.get(1..5));
                    used = 5;
                    let ch = match unit {
                        Some(hi @ 0xD800..=0xDBFF) => {
                            let lo = esc
                                .get(5..7)
                                .filter(|p| *p == "\\u")
                                .and_then(|_| hex4(esc.get(7..11)))
                                .filter(|lo| (0xDC00..=0xDFFF).contains(lo));
                            match lo {
                                Some(lo) => {
                                    used = 11;
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                }
                                None => None,
                            }
                        }
                        Some(u) => char::from_u32(u),
                        None => None,
                    };
                    out.push(ch.unwrap_or('\u{FFFD}'));
                }
                // `"`, `\`, `/`: the character itself.
                Some(&c) => out.push(char::from(c)),
                None => {}
            }
            rest = esc.get(used..).unwrap_or_default();
        }
        out.push_str(rest);
        Cow::Owned(out)
    }

    /// Reads a string at the cursor.
    pub(crate) fn string(&mut self) -> Scan<Cow<'a, str>> {
        let (start, end, escaped) = self.string_span()?;
        Ok(self.decode(start, end, escaped))
    }

    /// Reads a number at the cursor and returns its text.
    fn number(&mut self) -> Scan<&'a str> {
        let b = self.bytes();
        let start = self.pos;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => {
                self.pos = i;
                return self.fail("invalid number");
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                self.pos = i;
                return self.fail("invalid number");
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                self.pos = i;
                return self.fail("invalid number");
            }
        }
        self.pos = i;
        Ok(self.slice(start, i))
    }

    fn literal(&mut self, word: &'static [u8]) -> Scan<()> {
        if self.bytes().get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.fail("invalid literal")
        }
    }

    /// Skips one value at the cursor, checking it.
    pub(crate) fn skip_value(&mut self) -> Scan<()> {
        match self.peek() {
            Some(b'{') => self.object(|s, _| s.skip_value()),
            Some(b'[') => self.array(|s, _| s.skip_value()),
            Some(b'"') => self.string_span().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => self.fail("expected a value"),
            None => self.fail("unexpected end of input"),
        }
    }

    /// Reads a scalar at the cursor; an object or array is skipped.
    pub(crate) fn scalar(&mut self) -> Scan<Scalar<'a>> {
        Ok(match self.peek() {
            Some(b'"') => Scalar::Str(self.string()?),
            Some(b'-' | b'0'..=b'9') => Scalar::Num(self.number()?),
            Some(b'n') => {
                self.literal(b"null")?;
                Scalar::Null
            }
            Some(b't') => {
                self.literal(b"true")?;
                Scalar::Bool
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Scalar::Bool
            }
            _ => {
                self.skip_value()?;
                Scalar::Container
            }
        })
    }

    /// Reads the object at the cursor (on its `{`), calling `member` with each key; `member` must
    /// read exactly one value (the cursor is on it).
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Scan<()>,
    ) -> Scan<()> {
        self.enter()?;
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.fail("expected a key");
            }
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return self.fail("expected ':'");
            }
            self.pos += 1;
            self.ws();
            member(self, key)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                Some(_) => return self.fail("expected ',' or '}'"),
                None => return self.fail("unexpected end of input"),
            }
        }
    }

    /// Reads the array at the cursor (on its `[`), calling `element` with each index; `element`
    /// must read exactly one value (the cursor is on it).
    pub(crate) fn array(
        &mut self,
        mut element: impl FnMut(&mut Self, usize) -> Scan<()>,
    ) -> Scan<()> {
        self.enter()?;
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        let mut i = 0;
        loop {
            self.ws();
            element(self, i)?;
            i += 1;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                Some(_) => return self.fail("expected ',' or ']'"),
                None => return self.fail("unexpected end of input"),
            }
        }
    }
}

fn hex4(h: Option<&str>) -> Option<u32> {
    let h = h?;
    if h.len() == 4 && h.bytes().all(|c| c.is_ascii_hexdigit()) {
        u32::from_str_radix(h, 16).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(text: &str) -> Scan<()> {
        let mut s = Scanner::new(text);
        s.ws();
        s.skip_value()?;
        if s.at_end() {
            Ok(())
        } else {
            s.fail("trailing")
        }
    }

    /// Valid JSON of every kind is accepted, invalid JSON refused, like serde_json.
    #[test]
    fn accepts_and_refuses_like_serde_json() {
        for text in [
            "0",
            "-0",
            "1.5e-3",
            "-12E+4",
            "true",
            "null",
            r#""a\"b\\\/\u00e9\ud83d\ude9a""#,
            r#"{"a":[1,{"b":null}],"c":{}}"#,
            "[]",
            " [ 1 , 2 ] ",
            r#""\ud800""#,
        ] {
            assert!(skip(text).is_ok(), "{text}");
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
                "{text}"
            );
        }
        for text in [
            "",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"a\u{1}\"",
            "[1 2]",
            "{1:2}",
            "\"abc",
        ] {
            assert!(skip(text).is_err(), "{text}");
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(text).is_err(),
                "{text}"
            );
        }
    }

    /// Escapes decode to the characters they stand for; a lone surrogate to U+FFFD.
    #[test]
    fn decodes_escapes() {
        let mut s = Scanner::new(r#""Jos\u00e9 \ud83c\udf35 a\/b \"q\" \\ \n\t \ud800x""#);
        let got = s.string().expect("string");
        assert_eq!(got, "José 🌵 a/b \"q\" \\ \n\t \u{FFFD}x");
        let mut s = Scanner::new(r#""plain""#);
        assert!(matches!(s.string(), Ok(Cow::Borrowed("plain"))));
    }

    /// Nesting beyond the limit is refused instead of followed.
    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert_eq!(skip(&deep).map_err(|e| e.what), Err("nesting too deep"));
        let ok = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(skip(&ok).is_ok());
    }
}
