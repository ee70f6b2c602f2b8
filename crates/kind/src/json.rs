//! A piece of JSON reading that both scanners of the contract's text share: wa-payload's walk
//! of a webhook body and wa-queue's one-pass reader of a job.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The index of the first byte at or after `i` that is `"`, `\` or a control character (or
/// `b.len()`): where a JSON string's plain run ends. Strings are most of a body or a job, so
/// this looks at eight bytes per step: in each mask below the lowest set high bit marks exactly
/// the first matching byte (false positives can only appear above a true one), which is all
/// the scan needs.
#[inline]
pub fn skip_plain(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let found = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGH;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b
        .get(i)
        .is_some_and(|&c| c != b'"' && c != b'\\' && c >= 0x20)
    {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::skip_plain;

    /// Every position of every stopping byte, in runs shorter and longer than a word, agrees
    /// with a byte-by-byte search.
    #[test]
    fn stops_where_a_byte_by_byte_search_does() {
        for len in 0..20 {
            for stop in [b'"', b'\\', 0x00, 0x1f, b'a'] {
                for at in 0..=len {
                    let mut b = vec![b'x'; len];
                    if at < len {
                        b[at] = stop;
                    }
                    for from in 0..=len {
                        let want = (from..len)
                            .find(|&k| matches!(b[k], b'"' | b'\\') || b[k] < 0x20)
                            .unwrap_or(len);
                        assert_eq!(skip_plain(&b, from), want, "{b:?} from {from}");
                    }
                }
            }
        }
    }
}
