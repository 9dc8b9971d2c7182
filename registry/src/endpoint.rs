//! Request paths and queries parsed into typed endpoints, once, where they enter. Repository names
//! contain `/`, so `/v2/{*path}` is split into segments and recognised from its end
//! (`…/blobs/uploads/<id>`, `…/blobs/<digest>`, `…/manifests/<ref>`, `…/tags/list`,
//! `…/referrers/<digest>`); whatever precedes is the name, validated against the spec's grammar.

use std::fmt;

use oci_spec::image::{Digest, DigestAlgorithm};
use uuid::Uuid;

use crate::error::{ErrorKind, RegistryError, Result};

/// Longest name we accept; clients limit `host/name` to 255 characters.
const MAX_NAME_LEN: usize = 255;

/// A repository name matching
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    pub fn parse(s: &str) -> Result<Name> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(component_ok) {
            return Err(RegistryError::new(
                ErrorKind::NameInvalid,
                format!("invalid repository name {s:?}"),
            ));
        }
        Ok(Name(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // a run of [a-z0-9]+
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // a separator: `.`, `_`, `__` or `-+`
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Tag> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if !ok {
            return Err(RegistryError::new(
                ErrorKind::TagInvalid,
                format!("invalid tag {s:?}"),
            ));
        }
        Ok(Tag(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parse a digest the registry can address: `sha256:` and 64 lower-case hex characters, or
/// `sha512:` and 128.
pub fn parse_digest(s: &str) -> Result<Digest> {
    let bad = |why: &str| {
        RegistryError::new(
            ErrorKind::DigestInvalid,
            format!("invalid digest {s:?}: {why}"),
        )
    };
    let d: Digest = s
        .parse()
        .map_err(|e: oci_spec::OciSpecError| bad(&e.to_string()))?;
    let len = match d.algorithm() {
        DigestAlgorithm::Sha256 => 64,
        DigestAlgorithm::Sha512 => 128,
        _ => return Err(bad("only sha256 and sha512 are supported")),
    };
    let hex = d.digest();
    if hex.len() != len
        || !hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(bad(&format!("expected {len} lower-case hex characters")));
    }
    Ok(d)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference> {
        if s.contains(':') {
            parse_digest(s).map(Reference::Digest)
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
}

/// Every endpoint of the API, with its parameters already typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(Name),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(Name, Reference),
    /// `/v2/<name>/manifests/<reference>` with a reference that is neither a tag nor a digest
    /// the registry can address: what that is worth depends on the method (a manifest that
    /// cannot exist to a read, a bad request to a write).
    ManifestBadReference(Name, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(Name, Digest),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(Name),
    /// `/v2/<name>/blobs/uploads/<uuid>`
    Upload(Name, Uuid),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(Name, Digest),
}

/// Parse the part of a request path after `/v2/` (still percent-encoded).
pub fn parse_route(rest: &str) -> Result<Route> {
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    // Decode each segment separately so an encoded `/` cannot forge a segment boundary.
    let segs: Vec<String> = rest.split('/').map(percent_decode).collect::<Result<_>>()?;
    if segs.iter().any(|s| s == "." || s == "..") {
        return Err(RegistryError::new(
            ErrorKind::NameInvalid,
            format!("dot segments in /v2/{rest}"),
        ));
    }
    let n = segs.len();
    let seg = |i: usize| segs[i].as_str();
    let name_of = |upto: usize| -> Result<Name> {
        if upto == 0 {
            return Err(RegistryError::new(
                ErrorKind::NameInvalid,
                "empty repository name",
            ));
        }
        // An encoded `/` inside one segment must not make a valid multi-component name.
        if let Some(bad) = segs[..upto].iter().find(|s| s.contains('/')) {
            return Err(RegistryError::new(
                ErrorKind::NameInvalid,
                format!("invalid name component {bad:?}"),
            ));
        }
        Name::parse(&segs[..upto].join("/"))
    };
    let unknown = || {
        RegistryError::new(
            ErrorKind::RouteUnknown,
            format!("no endpoint at /v2/{rest}"),
        )
    };

    if n >= 3 && seg(n - 2) == "tags" && seg(n - 1) == "list" {
        return Ok(Route::Tags(name_of(n - 2)?));
    }
    if n >= 4 && seg(n - 3) == "blobs" && seg(n - 2) == "uploads" {
        let name = name_of(n - 3)?;
        if seg(n - 1).is_empty() {
            return Ok(Route::UploadStart(name));
        }
        let id = Uuid::parse_str(seg(n - 1))
            .ok()
            .filter(|u| u.hyphenated().to_string() == seg(n - 1))
            .ok_or_else(|| {
                RegistryError::new(
                    ErrorKind::BlobUploadUnknown,
                    format!("unknown upload {:?}", seg(n - 1)),
                )
            })?;
        return Ok(Route::Upload(name, id));
    }
    if n >= 3 && seg(n - 2) == "blobs" {
        let name = name_of(n - 2)?;
        if seg(n - 1) == "uploads" {
            return Ok(Route::UploadStart(name));
        }
        return Ok(Route::Blob(name, parse_digest(seg(n - 1))?));
    }
    if n >= 3 && seg(n - 2) == "manifests" {
        let name = name_of(n - 2)?;
        return Ok(match Reference::parse(seg(n - 1)) {
            Ok(r) => Route::Manifest(name, r),
            Err(_) => Route::ManifestBadReference(name, seg(n - 1).to_string()),
        });
    }
    if n >= 3 && seg(n - 2) == "referrers" {
        return Ok(Route::Referrers(name_of(n - 2)?, parse_digest(seg(n - 1))?));
    }
    Err(unknown())
}

fn percent_decode(s: &str) -> Result<String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let v = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    RegistryError::new(
                        ErrorKind::NameInvalid,
                        format!("bad percent-encoding in {s:?}"),
                    )
                })?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| RegistryError::new(ErrorKind::NameInvalid, format!("{s:?} is not UTF-8")))
}

/// The query string as ordered (key, value) pairs, decoded (`+` is a space).
pub fn parse_query(q: Option<&str>) -> Result<Vec<(String, String)>> {
    let Some(q) = q else { return Ok(Vec::new()) };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((
                percent_decode(&k.replace('+', " "))?,
                percent_decode(&v.replace('+', " "))?,
            ))
        })
        .collect()
}

/// First value of `key` in a parsed query.
pub fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn names() {
        for ok in ["a", "library/busybox", "a.b_c__d---e/f0", "x/y/z/w", "0"] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "..", "a/../b", "a/./b", ".a", "a.", "a..b", "a___b",
            "a_", "-a", "a b", "a/B", "a%2fb", "a:b", "_catalog",
        ] {
            let e = Name::parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::NameInvalid, "{bad}");
        }
        assert!(Name::parse(&"a".repeat(256)).is_err());
        assert!(Name::parse(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129), "ü"] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests() {
        assert!(parse_digest(D).is_ok());
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        assert!(parse_digest(&sha512).is_ok());
        for bad in [
            &format!("sha512:{}", "ab".repeat(32)),
            &format!("sha256:{}", "ab".repeat(64)),
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "md5:x",
            "e3b0",
        ] {
            assert_eq!(
                parse_digest(bad).unwrap_err().kind,
                ErrorKind::DigestInvalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn routes() {
        let n = |s: &str| Name::parse(s).unwrap();
        let d = parse_digest(D).unwrap();
        assert_eq!(parse_route("").unwrap(), Route::Base);
        assert_eq!(parse_route("_catalog").unwrap(), Route::Catalog);
        assert_eq!(parse_route("a/b/tags/list").unwrap(), Route::Tags(n("a/b")));
        // A repository whose name ends in `tags` or `blobs` or `manifests`.
        assert_eq!(
            parse_route("x/tags/tags/list").unwrap(),
            Route::Tags(n("x/tags"))
        );
        assert_eq!(
            parse_route("x/manifests/manifests/latest").unwrap(),
            Route::Manifest(
                n("x/manifests"),
                Reference::Tag(Tag::parse("latest").unwrap())
            )
        );
        assert_eq!(
            parse_route(&format!("a/blobs/blobs/{D}")).unwrap(),
            Route::Blob(n("a/blobs"), d.clone())
        );
        assert_eq!(
            parse_route("a/blobs/uploads/blobs/uploads/").unwrap(),
            Route::UploadStart(n("a/blobs/uploads"))
        );
        assert_eq!(
            parse_route("a/blobs/uploads").unwrap(),
            Route::UploadStart(n("a"))
        );
        let id = Uuid::new_v4();
        assert_eq!(
            parse_route(&format!("a/b/blobs/uploads/{id}")).unwrap(),
            Route::Upload(n("a/b"), id)
        );
        assert_eq!(
            parse_route(&format!("a/manifests/{}", D.replace(':', "%3A"))).unwrap(),
            Route::Manifest(n("a"), Reference::Digest(d.clone()))
        );
        assert_eq!(
            parse_route(&format!("r/referrers/{D}")).unwrap(),
            Route::Referrers(n("r"), d)
        );
    }

    #[test]
    fn tricky_routes() {
        let kind = |p: &str| parse_route(p).unwrap_err().kind;
        assert_eq!(kind("../etc/tags/list"), ErrorKind::NameInvalid);
        assert_eq!(kind("a/..%2F..%2Fx/tags/list"), ErrorKind::NameInvalid);
        assert_eq!(kind("a%2Fb/tags/list"), ErrorKind::NameInvalid);
        assert_eq!(kind("UPPER/manifests/latest"), ErrorKind::NameInvalid);
        assert_eq!(kind("tags/list"), ErrorKind::RouteUnknown);
        assert_eq!(kind("/manifests/latest"), ErrorKind::NameInvalid);
        assert_eq!(kind("a/blobs/sha256:zz"), ErrorKind::DigestInvalid);
        assert_eq!(kind("a/blobs/uploads/../../x"), ErrorKind::NameInvalid);
        assert_eq!(
            kind("a/blobs/uploads/not-a-uuid"),
            ErrorKind::BlobUploadUnknown
        );
        assert_eq!(
            parse_route("a/manifests/.hidden").unwrap(),
            Route::ManifestBadReference(Name::parse("a").unwrap(), ".hidden".into())
        );
        assert_eq!(kind("a/whatever"), ErrorKind::RouteUnknown);
        assert_eq!(kind("a/b%zz/tags/list"), ErrorKind::NameInvalid);
    }

    #[test]
    fn queries() {
        let q = parse_query(Some(
            "tag=a&tag=b&n=2&last=x%2By&artifactType=application/vnd.x+json",
        ))
        .unwrap();
        assert_eq!(query_get(&q, "n"), Some("2"));
        assert_eq!(query_get(&q, "last"), Some("x+y"));
        assert_eq!(q.iter().filter(|(k, _)| k == "tag").count(), 2);
        assert_eq!(parse_query(None).unwrap(), vec![]);
    }
}
