//! Byte ranges in both directions: the `Content-Range` of an upload chunk (`<start>-<end>`,
//! inclusive) and the `Range` of a blob download (`bytes=a-b`, `bytes=a-`, `bytes=-n`).

use crate::error::{ErrorKind, RegistryError, Result};

/// An inclusive chunk range from `Content-Range`, as the spec writes it: `^[0-9]+-[0-9]+$`.
/// Docker's `bytes a-b` / `bytes=a-b` and a trailing `/total` are tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
}

impl ContentRange {
    pub fn parse(s: &str) -> Result<ContentRange> {
        let bad = || {
            RegistryError::new(
                ErrorKind::RangeInvalid,
                format!("invalid Content-Range {s:?}"),
            )
        };
        let t = s.trim();
        let t = t
            .strip_prefix("bytes")
            .map(|r| r.trim_start_matches([' ', '=']))
            .unwrap_or(t);
        let t = t.split_once('/').map(|(r, _)| r).unwrap_or(t);
        let (a, b) = t.split_once('-').ok_or_else(bad)?;
        let num = |x: &str| -> Result<u64> {
            if x.is_empty() || !x.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            x.parse().map_err(|_| bad())
        };
        let (start, end) = (num(a)?, num(b)?);
        if end < start {
            return Err(bad());
        }
        // `0-18446744073709551615` covers 2^64 bytes: no length can say so, no upload holds it.
        if (end - start).checked_add(1).is_none() {
            return Err(RegistryError::new(
                ErrorKind::RangeInvalid,
                format!("invalid Content-Range {s:?}: it covers more than 2^64-1 bytes"),
            ));
        }
        Ok(ContentRange { start, end })
    }

    /// Bytes covered (the range is inclusive); saturating for a range not made by `parse`.
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }
}

/// What a download `Range` header asks of a blob of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// Serve the whole blob (no header, or one we may ignore such as multiple ranges).
    Full,
    /// Serve bytes `start..=end` with 206.
    Partial { start: u64, end: u64 },
    /// Answer 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(h) = header else {
        return RangeRequest::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let num = |x: &str| x.trim().parse::<u64>().ok();
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => RangeRequest::Full,
        (true, false) => match num(b) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            None => RangeRequest::Full,
        },
        (false, open) => {
            let Some(start) = num(a) else {
                return RangeRequest::Full;
            };
            let end = if open { Some(u64::MAX) } else { num(b) };
            let Some(end) = end else {
                return RangeRequest::Full;
            };
            if end < start {
                return RangeRequest::Full;
            }
            if start >= size {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial {
                start,
                end: end.min(size - 1),
            }
        }
    }
}

/// Whether a GET with this `Range` header may be handed to an object store: no header, or one
/// range of the forms every store takes (`bytes=START-`, `bytes=START-END`). Azure's blob
/// service refuses suffix ranges (`bytes=-N`) and none takes several ranges the way HTTP
/// allows, so those GETs are answered by the registry itself.
pub fn store_can_serve(header: Option<&str>) -> bool {
    let Some(h) = header else {
        return true;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return false;
    };
    let Some((a, b)) = spec.trim().split_once('-') else {
        return false;
    };
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    digits(a.trim()) && (b.trim().is_empty() || digits(b.trim()))
}

/// `Range: 0-<end>` for an upload holding `offset` bytes (distribution writes `0-0` when empty).
pub fn upload_range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            ContentRange::parse("0-99").unwrap(),
            ContentRange { start: 0, end: 99 }
        );
        assert_eq!(ContentRange::parse("100-100").unwrap().size(), 1);
        assert_eq!(
            ContentRange::parse("1-18446744073709551615")
                .unwrap()
                .size(),
            u64::MAX
        );
        let whole = ContentRange {
            start: 0,
            end: u64::MAX,
        };
        assert_eq!(whole.size(), u64::MAX);
        assert_eq!(
            ContentRange::parse("bytes 5-9").unwrap(),
            ContentRange { start: 5, end: 9 }
        );
        assert_eq!(
            ContentRange::parse("bytes=5-9/100").unwrap(),
            ContentRange { start: 5, end: 9 }
        );
        for bad in [
            "",
            "-",
            "5-",
            "-5",
            "9-5",
            "a-b",
            "1-2-3",
            "+1-2",
            "1 - 2",
            "99999999999999999999-1",
            "0-18446744073709551615",
            "bytes 0-18446744073709551615/*",
        ] {
            let e = ContentRange::parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::RangeInvalid, "{bad}");
        }
    }

    #[test]
    fn download_range() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(
            parse_range(Some("bytes=0-4"), 10),
            Partial { start: 0, end: 4 }
        );
        assert_eq!(
            parse_range(Some("bytes=5-"), 10),
            Partial { start: 5, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=5-100"), 10),
            Partial { start: 5, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            Partial { start: 7, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=-30"), 10),
            Partial { start: 0, end: 9 }
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Full);
    }

    #[test]
    fn what_a_store_can_serve() {
        for h in [
            None,
            Some("bytes=0-"),
            Some("bytes=5-9"),
            Some(" bytes=12- "),
        ] {
            assert!(store_can_serve(h), "{h:?}");
        }
        for h in [
            "bytes=-5",
            "bytes=0-1,4-5",
            "bytes=a-",
            "items=0-1",
            "bytes=",
            "bytes=5",
        ] {
            assert!(!store_can_serve(Some(h)), "{h}");
        }
    }

    #[test]
    fn upload_range() {
        assert_eq!(upload_range_header(0), "0-0");
        assert_eq!(upload_range_header(10), "0-9");
    }
}
