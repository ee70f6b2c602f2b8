//! Parsing the `X-Hub-Signature-256` header value into a fixed-size MAC.

use std::fmt;
use std::str::FromStr;

use crate::SignatureError;

/// Length in bytes of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;

/// The algorithm label Meta puts in front of the digest.
const LABEL: &[u8] = b"sha256";

/// The label and its `=`.
const PREFIX: &[u8] = b"sha256=";

/// Longest label we still call an "algorithm" (`sha256`, `sha1`, `sha512`, `blake2b-256`...);
/// anything longer before the first `=` is treated as a missing prefix instead.
const MAX_LABEL_LEN: usize = 16;

/// Why a header value is not `sha256=<64 hex>`.
///
/// [`SignatureError::Malformed`] carries it; each reason has a distinct, stable message
/// ([`MalformedReason::as_str`], the error's text). The checks run in the order of this table, so a
/// value is reported under the first rule it breaks:
///
/// | reason | [`as_str`](Self::as_str) (the error text) | [`label`](Self::label) | example |
/// |---|---|---|---|
/// | [`Empty`](Self::Empty) | `empty header value` | `empty` | (nothing after the colon) |
/// | [`Whitespace`](Self::Whitespace) | `contains whitespace` | `whitespace` | `sha256= 95aa…`, a trailing `\r\n` |
/// | [`MissingPrefix`](Self::MissingPrefix) | `missing sha256= prefix` | `missing_prefix` | `95aa7dce…` (bare hex) |
/// | [`Sha1`](Self::Sha1) | `sha1 signature, expected sha256` | `sha1` | `sha1=4a5b…` (the legacy `X-Hub-Signature`) |
/// | [`UnsupportedAlgorithm`](Self::UnsupportedAlgorithm) | `unsupported algorithm, expected sha256` | `unsupported_algorithm` | `sha512=…`, `md5=…`, `SHA256=…` |
/// | [`ExtraParts`](Self::ExtraParts) | `extra parts after the digest` | `extra_parts` | `sha256=<hex>,sha256=<hex>`, `sha256=<hex>;v=1` |
/// | [`WrongLength`](Self::WrongLength) | `digest is not 64 hex digits` | `wrong_length` | `sha256=95aa` (truncated) |
/// | [`NonHex`](Self::NonHex) | `digest has a non-hex character` | `non_hex` | 64 characters with a `g` among them |
///
/// The label must be exactly `sha256` (lowercase, as Meta sends it; `SHA256=` is an
/// unsupported algorithm). The hex digits may be in either case: they spell the same bytes, and
/// refusing upper case would only turn a correctly signed delivery into a 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MalformedReason {
    /// the header is present but its value is empty
    Empty,
    /// a space, tab, CR or LF anywhere in the value (HTTP parsers trim the ends; anything left
    /// is not Meta's format)
    Whitespace,
    /// no `label=` in front of the digest
    MissingPrefix,
    /// the legacy HMAC-SHA1 form (`X-Hub-Signature: sha1=...`) was sent in the SHA-256 header
    Sha1,
    /// some other `label=` than `sha256=`
    UnsupportedAlgorithm,
    /// a `,`, `;` or `=` after the prefix: several signatures or parameters in one value
    ExtraParts,
    /// the digest is not exactly 64 characters long
    WrongLength,
    /// 64 characters, but not all of them are `0-9`, `a-f` or `A-F`
    NonHex,
}

impl MalformedReason {
    /// The message of this reason, as [`SignatureError::Malformed`] displays it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty header value",
            Self::Whitespace => "contains whitespace",
            Self::MissingPrefix => "missing sha256= prefix",
            Self::Sha1 => "sha1 signature, expected sha256",
            Self::UnsupportedAlgorithm => "unsupported algorithm, expected sha256",
            Self::ExtraParts => "extra parts after the digest",
            Self::WrongLength => "digest is not 64 hex digits",
            Self::NonHex => "digest has a non-hex character",
        }
    }

    /// A short snake_case name, for metric labels and structured logs
    /// (e.g. `wa_ingress_signature_failures_total{reason="wrong_length"}`).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Whitespace => "whitespace",
            Self::MissingPrefix => "missing_prefix",
            Self::Sha1 => "sha1",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::ExtraParts => "extra_parts",
            Self::WrongLength => "wrong_length",
            Self::NonHex => "non_hex",
        }
    }

    /// Every reason, in the order the parser checks them (handy for docs and tests).
    pub const ALL: [MalformedReason; 8] = [
        Self::Empty,
        Self::Whitespace,
        Self::MissingPrefix,
        Self::Sha1,
        Self::UnsupportedAlgorithm,
        Self::ExtraParts,
        Self::WrongLength,
        Self::NonHex,
    ];
}

impl fmt::Display for MalformedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<MalformedReason> for SignatureError {
    fn from(reason: MalformedReason) -> Self {
        SignatureError::Malformed(reason)
    }
}

/// A parsed `sha256=<64 hex>` header value: the 32-byte MAC the sender claims.
///
/// It lives on the stack (no allocation); parse once, then verify with
/// [`Verifier::verify_parsed`](crate::Verifier::verify_parsed). A signature is not a secret
/// (it travels in the clear), so `Debug` and `Display` show it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature {
    mac: [u8; MAC_LEN],
}

impl Signature {
    /// Parses a header value. Bytes, not `&str`: a hostile header need not be UTF-8, and that
    /// must be a clean [`SignatureError::Malformed`], never a panic or a 500.
    pub fn parse(value: &[u8]) -> Result<Self, SignatureError> {
        parse_mac(value).map(Self::from_mac).map_err(Into::into)
    }

    /// Wraps a raw 32-byte MAC.
    pub const fn from_mac(mac: [u8; MAC_LEN]) -> Self {
        Self { mac }
    }

    /// The raw 32-byte MAC.
    pub const fn as_bytes(&self) -> &[u8; MAC_LEN] {
        &self.mac
    }
}

impl FromStr for Signature {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes())
    }
}

/// The header value, `sha256=` and lowercase hex, as Meta sends it.
impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256=")?;
        f.write_str(hex_lower(&self.mac).as_str())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Signature")
            .field(&format_args!("{self}"))
            .finish()
    }
}

/// The parser proper, kept apart so the reason stays typed until the public boundary.
///
/// Timing note: how long this takes depends only on the header, which the sender chose and
/// which carries nothing secret, so it need not be constant time. The comparison against the
/// expected MAC (which does depend on the secret) is ring's constant-time one.
fn parse_mac(value: &[u8]) -> Result<[u8; MAC_LEN], MalformedReason> {
    // Fast path for the shape every genuine request has: one length check, one prefix compare
    // and one table-driven pass over the digits. Anything else takes the slow path below,
    // which finds the precise reason.
    if let Some(digest) = value.strip_prefix(PREFIX)
        && let Some(mac) = decode_hex(digest)
    {
        return Ok(mac);
    }
    Err(classify(value))
}

/// Decodes exactly 64 hex digits (either case); `None` for any other input.
fn decode_hex(digest: &[u8]) -> Option<[u8; MAC_LEN]> {
    // A fixed-size array lets the compiler drop every bounds check, and the branch-free
    // per-byte arithmetic below lets it decode 16 bytes per vector instruction.
    let digest: &[u8; 2 * MAC_LEN] = digest.try_into().ok()?;
    let mut nibbles = [0u8; 2 * MAC_LEN];
    let mut invalid = 0u8;
    for (n, &c) in nibbles.iter_mut().zip(digest) {
        let digit = c.wrapping_sub(b'0');
        let letter = (c | 0x20).wrapping_sub(b'a');
        let is_digit = digit < 10;
        let is_letter = letter < 6;
        invalid |= u8::from(!(is_digit | is_letter));
        *n = if is_digit {
            digit
        } else {
            letter.wrapping_add(10)
        };
    }
    let mut mac = [0u8; MAC_LEN];
    for (out, pair) in mac.iter_mut().zip(nibbles.chunks_exact(2)) {
        *out = pair[0] << 4 | pair[1];
    }
    (invalid == 0).then_some(mac)
}

/// Why `value` is not a well-formed header, checked in the documented order. Only called once
/// the fast path has failed, so it never runs for a well-formed value.
#[cold]
#[inline(never)]
fn classify(value: &[u8]) -> MalformedReason {
    match classify_slow(value) {
        Err(reason) => reason,
        // Unreachable in practice (the fast path accepts everything this would), but if the
        // two ever disagreed, refusing is the safe answer.
        Ok(()) => MalformedReason::NonHex,
    }
}

fn classify_slow(value: &[u8]) -> Result<(), MalformedReason> {
    if value.is_empty() {
        return Err(MalformedReason::Empty);
    }
    if value.iter().any(u8::is_ascii_whitespace) {
        return Err(MalformedReason::Whitespace);
    }
    let Some(eq) = value.iter().position(|&b| b == b'=') else {
        return Err(MalformedReason::MissingPrefix);
    };
    let (label, digest) = (&value[..eq], &value[eq + 1..]);
    if label != LABEL {
        return Err(classify_label(label));
    }
    if digest.iter().any(|b| matches!(b, b',' | b';' | b'=')) {
        return Err(MalformedReason::ExtraParts);
    }
    if digest.len() != 2 * MAC_LEN {
        return Err(MalformedReason::WrongLength);
    }
    match decode_hex(digest) {
        Some(_) => Ok(()),
        None => Err(MalformedReason::NonHex),
    }
}

/// A label that is not `sha256`: the legacy SHA-1 one, another plausible algorithm name, or
/// something that is no label at all (e.g. bare base64 such as `q8+/3vE=`).
fn classify_label(label: &[u8]) -> MalformedReason {
    let plausible = !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    if label.eq_ignore_ascii_case(b"sha1") {
        MalformedReason::Sha1
    } else if plausible {
        MalformedReason::UnsupportedAlgorithm
    } else {
        MalformedReason::MissingPrefix
    }
}

/// Lowercase hex of a 32-byte MAC in a stack buffer.
pub(crate) fn hex_lower(mac: &[u8; MAC_LEN]) -> HexBuf {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 2 * MAC_LEN];
    for (pair, byte) in buf.chunks_exact_mut(2).zip(mac) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    HexBuf(buf)
}

/// 64 ASCII hex digits.
pub(crate) struct HexBuf([u8; 2 * MAC_LEN]);

impl HexBuf {
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written, so this cannot fail; the fallback keeps the
        // code free of unwrap all the same.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "95aa7dce517752e13605a63217d74c313cda965b86c69ac67450df896e1a7b6a";

    fn reason(value: &str) -> Option<MalformedReason> {
        parse_mac(value.as_bytes()).err()
    }

    /// A well-formed lowercase value parses to the bytes its hex spells.
    #[test]
    fn parses_lowercase() {
        let sig: Signature = format!("sha256={HEX}").parse().unwrap();
        assert_eq!(sig.as_bytes()[0], 0x95);
        assert_eq!(sig.as_bytes()[31], 0x6a);
        assert_eq!(sig.to_string(), format!("sha256={HEX}"));
    }

    /// Upper-case hex digits parse to the same MAC as lowercase; the label itself is exact.
    #[test]
    fn case_insensitive() {
        let lower = Signature::parse(format!("sha256={HEX}").as_bytes()).unwrap();
        let upper = Signature::parse(format!("sha256={}", HEX.to_uppercase()).as_bytes()).unwrap();
        assert_eq!(lower, upper);
        assert_eq!(
            Signature::parse(format!("SHA256={HEX}").as_bytes()),
            Err(MalformedReason::UnsupportedAlgorithm.into())
        );
    }

    /// Every malformed shape maps to its own documented reason.
    #[test]
    fn each_malformed_shape_has_its_reason() {
        use MalformedReason::*;
        let table: &[(String, MalformedReason)] = &[
            (String::new(), Empty),
            (format!(" sha256={HEX}"), Whitespace),
            (format!("sha256={HEX}\r\n"), Whitespace),
            (format!("sha256=\t{HEX}"), Whitespace),
            (format!("sha256= {HEX}"), Whitespace),
            (HEX.to_string(), MissingPrefix),
            (format!("={HEX}"), MissingPrefix),
            ("q8+/3vEjRWeJ=".to_string(), MissingPrefix),
            (format!("sha1={}", &HEX[..40]), Sha1),
            (format!("SHA1={HEX}"), Sha1),
            (format!("sha512={HEX}"), UnsupportedAlgorithm),
            (format!("md5={HEX}"), UnsupportedAlgorithm),
            (format!("sha256={HEX},sha256={HEX}"), ExtraParts),
            (format!("sha256={HEX};v=1"), ExtraParts),
            (format!("sha256=={HEX}"), ExtraParts),
            ("sha256=".to_string(), WrongLength),
            (format!("sha256={}", &HEX[..63]), WrongLength),
            (format!("sha256={HEX}0"), WrongLength),
            (format!("sha256={}", &HEX[..32]), WrongLength),
            (format!("sha256={}g", &HEX[..63]), NonHex),
            (format!("sha256=0x{}", &HEX[..62]), NonHex),
            (format!("sha256={}é", &HEX[..62]), NonHex),
        ];
        for (value, want) in table {
            assert_eq!(reason(value), Some(*want), "value {value:?}");
        }
    }

    /// Reasons have distinct messages, and the error's Display includes the reason.
    #[test]
    fn reasons_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for r in MalformedReason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate message {r}");
            assert!(seen.insert(r.label()), "duplicate label {r}");
            let err = SignatureError::from(r);
            assert_eq!(
                err.to_string(),
                format!("malformed signature: {}", r.as_str())
            );
        }
    }

    /// A header that is not UTF-8 is a clean malformed error.
    #[test]
    fn non_utf8_is_malformed() {
        let mut value = b"sha256=".to_vec();
        value.extend_from_slice(&[0xff; 64]);
        assert_eq!(parse_mac(&value), Err(MalformedReason::NonHex));
        assert_eq!(
            parse_mac(&[0xff, 0xfe]),
            Err(MalformedReason::MissingPrefix)
        );
    }

    /// The fast path and the slow classifier agree on which values are well-formed.
    #[test]
    fn fast_and_slow_paths_agree() {
        use proptest::prelude::*;
        proptest!(|(value in "(sha256=|sha1=|SHA256=|=|)[0-9a-fA-Fg ,;=]{60,68}")| {
            let fast = parse_mac(value.as_bytes()).is_ok();
            let slow = classify_slow(value.as_bytes()).is_ok();
            prop_assert_eq!(fast, slow);
        });
        for b in 0..=255u8 {
            let mut value = format!("sha256={HEX}").into_bytes();
            value[20] = b;
            assert_eq!(
                parse_mac(&value).is_ok(),
                classify_slow(&value).is_ok(),
                "byte {b:#x}"
            );
            assert_eq!(
                parse_mac(&value).is_ok(),
                b.is_ascii_hexdigit(),
                "byte {b:#x}"
            );
        }
    }

    /// Hex encoding round-trips through the parser.
    #[test]
    fn hex_round_trip() {
        let mac: [u8; MAC_LEN] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        let text = format!("sha256={}", hex_lower(&mac).as_str());
        assert_eq!(Signature::parse(text.as_bytes()).unwrap().as_bytes(), &mac);
    }
}
