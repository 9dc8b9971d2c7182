//! The json-file line format: writing an entry as Docker lays it out (Go's JSON string
//! escaping, byte for byte) and the reader's fast split and unescape of that exact shape.

use memchr::memrchr;

use super::stream::Stream;

/// Appends one entry, exactly as Docker's `JSONLogs.MarshalJSONBuf` lays it out.
pub(super) fn encode_entry(out: &mut Vec<u8>, line: &[u8], stream: Stream, time: &[u8]) {
    out.reserve(line.len() + 64);
    out.extend_from_slice(b"{\"log\":\"");
    escape_json(out, line);
    out.extend_from_slice(b"\",\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(time);
    out.extend_from_slice(b"\"}\n");
}

/// ASCII bytes Docker's `ffjsonWriteJSONBytesAsString` escapes: controls, quote, backslash and the
/// HTML-sensitive `<`, `>`, `&` (Go's encoder is HTML-safe by default).
pub(super) const ESCAPE: [bool; 128] = {
    let mut t = [false; 128];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t
};

/// Go's JSON string escaping of arbitrary bytes: each byte that does not start a valid UTF-8
/// sequence becomes one U+FFFD (Go's `utf8.DecodeRune` gives `RuneError, 1`), U+2028 and U+2029
/// are escaped, `\n` `\r` `\\` `\"` get short forms and other escapes are `\u00XX`.
pub(super) fn escape_json(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        i += find_escape(&s[i..]).unwrap_or(s.len() - i);
        let Some(&b) = s.get(i) else { break };
        if b < 0x80 {
            if !ESCAPE[b as usize] {
                i += 1;
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]),
            }
            i += 1;
            start = i;
            continue;
        }
        let len = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 0,
        };
        // Rust's validator rejects exactly what Go's decoder rejects (overlongs, surrogates,
        // > U+10FFFF), so it decides whether this one sequence is valid.
        let valid = len > 0 && i + len <= s.len() && std::str::from_utf8(&s[i..i + len]).is_ok();
        if !valid {
            out.extend_from_slice(&s[start..i]);
            out.extend_from_slice(b"\\ufffd");
            i += 1;
            start = i;
        } else if len == 3
            && b == 0xE2
            && s[i + 1] == 0x80
            && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9)
        {
            out.extend_from_slice(&s[start..i]);
            out.extend_from_slice(if s[i + 2] == 0xA8 {
                b"\\u2028"
            } else {
                b"\\u2029"
            });
            i += 3;
            start = i;
        } else {
            i += len;
        }
    }
    out.extend_from_slice(&s[start..]);
}

// Word-at-a-time scanning. Runs between escapes are short (JSON-logging programs print a quote
// every few bytes), where a SIMD search's setup costs more than it saves; eight bytes per step
// with the classic "has zero byte" trick is faster there and still quick on long runs. In each
// mask only bytes *above* a true match can be false positives, so the lowest set bit is exact.
pub(super) const LO: u64 = 0x0101_0101_0101_0101;
pub(super) const HI: u64 = 0x8080_8080_8080_8080;

/// High bit of each byte of `x` that equals `c` (exact up to the first match).
#[inline(always)]
pub(super) fn bytes_eq(x: u64, c: u8) -> u64 {
    let v = x ^ (LO * u64::from(c));
    v.wrapping_sub(LO) & !v & HI
}

/// Index of the first byte the writer cannot copy as is: a control, non-ASCII, or `"\<>&`.
#[inline]
pub(super) fn find_escape(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(w) = s[i..].first_chunk::<8>() {
        let x = u64::from_le_bytes(*w);
        let m = (x & HI)
            | (x.wrapping_sub(LO * 0x20) & !x & HI)
            | bytes_eq(x, b'"')
            | bytes_eq(x, b'\\')
            | bytes_eq(x, b'<')
            | bytes_eq(x, b'>')
            | bytes_eq(x, b'&');
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b >= 0x80 || ESCAPE[b as usize])
        .map(|p| i + p)
}

/// Index of the first `"` or `\` (the only bytes that end a run inside a JSON string).
#[inline]
pub(super) fn find_quote_or_backslash(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(w) = s[i..].first_chunk::<8>() {
        let x = u64::from_le_bytes(*w);
        let m = bytes_eq(x, b'"') | bytes_eq(x, b'\\');
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|p| i + p)
}

/// Splits a line of exactly the writer's shape into (stream, time, escaped log text), working
/// from the end: `{"log":"<escaped>","stream":"stdout","time":"<time>"}`. The escaped text is
/// checked by the unescaper (an unescaped quote in it means another shape).
pub(super) fn split_fast(line: &[u8]) -> Option<(Stream, &[u8], &[u8])> {
    const HEAD: &[u8] = b"{\"log\":\"";
    const TIME: &[u8] = b",\"time\":\"";
    let inner = line.strip_suffix(b"\"}")?;
    let q = memrchr(b'"', inner)?;
    let time = &inner[q + 1..];
    let rest = inner[..=q].strip_suffix(TIME)?;
    let (rest, stream) = if let Some(r) = rest.strip_suffix(b"\",\"stream\":\"stdout\"") {
        (r, Stream::Stdout)
    } else {
        (
            rest.strip_suffix(b"\",\"stream\":\"stderr\"")?,
            Stream::Stderr,
        )
    };
    Some((stream, time, rest.strip_prefix(HEAD)?))
}

/// JSON string unescape of `s` (the text between the quotes) onto `out`. False when `s` is not a
/// valid JSON string body. Invalid `\u` surrogates become U+FFFD, as Go's decoder does. Raw bytes
/// are copied as they are (our writer only stores valid UTF-8).
pub(super) fn unescape_json(s: &[u8], out: &mut Vec<u8>) -> bool {
    let mut rest = s;
    loop {
        let Some(i) = find_quote_or_backslash(rest) else {
            out.extend_from_slice(rest);
            return true;
        };
        out.extend_from_slice(&rest[..i]);
        if rest[i] == b'"' {
            return false;
        }
        let Some(&e) = rest.get(i + 1) else {
            return false;
        };
        rest = &rest[i + 2..];
        let c = match e {
            b'"' | b'\\' | b'/' => e,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'u' => {
                let Some(hi) = hex4(rest) else { return false };
                rest = &rest[4..];
                // The writer's `\u00XX` for controls and `<>&`: one byte, no UTF-8 encoding.
                if hi < 0x80 {
                    out.push(hi as u8);
                    continue;
                }
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    match rest.strip_prefix(b"\\u").and_then(hex4) {
                        Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                            rest = &rest[6..];
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        }
                        _ => 0xFFFD,
                    }
                } else {
                    hi
                };
                let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                continue;
            }
            _ => return false,
        };
        out.push(c);
    }
}

pub(super) fn hex4(s: &[u8]) -> Option<u32> {
    let h = s.first_chunk::<4>()?;
    let d = |c: u8| -> Option<u32> {
        match c {
            b'0'..=b'9' => Some(u32::from(c - b'0')),
            b'a'..=b'f' => Some(u32::from(c - b'a' + 10)),
            b'A'..=b'F' => Some(u32::from(c - b'A' + 10)),
            _ => None,
        }
    };
    Some(d(h[0])? << 12 | d(h[1])? << 8 | d(h[2])? << 4 | d(h[3])?)
}
