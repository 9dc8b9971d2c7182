//! Image references: `busybox`, `ghcr.io/org/app:v1`, `localhost:5000/x@sha256:…`.
//!
//! This module owns how a name typed by a user becomes a fully qualified reference and back. It
//! accepts exactly what Docker accepts (github.com/distribution/reference: `ParseNormalizedNamed`
//! and the grammar of its regexp.go) and normalizes the same way, so a name means the same image
//! for berth as for docker. The parser is hand-written rather than a translated regex so that it
//! can say which part of the input is wrong and where, and so its cost stays linear on any input.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Digest;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Registry of a name that has no domain (Docker Hub).
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Tag [`Reference::parse_normalized`] adds when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest repository name (`domain/path`, as normalized) accepted, in characters.
pub const NAME_MAX_LEN: usize = 255;
/// Longest tag accepted, in characters.
pub const TAG_MAX_LEN: usize = 128;

// Docker Hub's historical name; Docker rewrites it so that both spellings name one image.
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
// Docker Hub keeps its official images in this namespace, so `busybox` means `library/busybox`.
const OFFICIAL_PREFIX: &str = "library/";
// Docker resolves digests through go-digest, which knows only these hashes (lowercase hex).
const DIGEST_ALGORITHMS: [(&str, usize); 3] = [("sha256", 64), ("sha384", 96), ("sha512", 128)];

/// A parsed, normalized image reference: `domain/path[:tag][@digest]`.
///
/// Every value went through the parser, so its [`Display`](fmt::Display) form parses back to
/// an equal value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port. Empty only in Docker's corner case of a first component
    /// that looks like a host but is not a valid one while being a valid path component
    /// (`a_b.com/x`): Docker keeps such a name without a domain.
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// The part of a reference a [`ReferenceError::Syntax`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferencePart {
    Domain,
    Path,
    Tag,
}

impl fmt::Display for ReferencePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Domain => "domain",
            Self::Path => "repository path",
            Self::Tag => "tag",
        })
    }
}

/// What is wrong with a domain, repository path or tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxProblem {
    InvalidCharacter(char),
    Empty,
    EmptyComponent,
    /// A separator run at the start or end of a component (`-a`, `a_`, `host-.com`).
    MisplacedSeparator(String),
    /// A separator run other than `.`, `_`, `__` or a run of `-` (`a..b`, `a___b`, `a._b`).
    InvalidSeparator(String),
    EmptyPort,
    EmptyAddress,
    UnclosedBracket,
}

impl fmt::Display for SyntaxProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCharacter(c) => write!(f, "has invalid character {c:?}"),
            Self::Empty => f.write_str("is empty"),
            Self::EmptyComponent => f.write_str("has an empty component"),
            Self::MisplacedSeparator(s) => {
                write!(f, "has separator {s:?} at the start or end of a component")
            }
            Self::InvalidSeparator(s) => write!(
                f,
                "has invalid separator {s:?} (allowed: \".\", \"_\", \"__\" or a run of \"-\")"
            ),
            Self::EmptyPort => f.write_str("has an empty port"),
            Self::EmptyAddress => f.write_str("has an empty address between '[' and ']'"),
            Self::UnclosedBracket => f.write_str("has an unclosed '['"),
        }
    }
}

/// What is wrong with the digest of a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestProblem {
    /// No `:` between algorithm and hex value.
    Malformed,
    UnsupportedAlgorithm(String),
    /// `position` is the 0-based character offset in the whole input.
    InvalidCharacter {
        ch: char,
        position: usize,
    },
    WrongLength {
        algorithm: &'static str,
        expected: usize,
        actual: usize,
    },
    /// oci-spec refused a digest this module accepted; kept so that never becomes a panic.
    Rejected(String),
}

impl fmt::Display for DigestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("expected \"<algorithm>:<hex>\""),
            Self::UnsupportedAlgorithm(a) => write!(
                f,
                "unsupported algorithm {a:?} (supported: sha256, sha384, sha512)"
            ),
            Self::InvalidCharacter { ch, position } => write!(
                f,
                "invalid character {ch:?} at position {position} (only lowercase hex digits)"
            ),
            Self::WrongLength {
                algorithm,
                expected,
                actual,
            } => write!(f, "{algorithm} needs {expected} hex digits, found {actual}"),
            Self::Rejected(why) => f.write_str(why),
        }
    }
}

/// Why a string is not an image reference. Positions are 0-based character offsets in `input`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference: empty string")]
    Empty,
    #[error(
        "invalid reference {input:?}: cannot specify 64-byte hexadecimal strings \
         (an image ID is not a repository name)"
    )]
    HexIdentifier { input: String },
    #[error("invalid reference {input:?}: repository name is missing")]
    MissingName { input: String },
    #[error("invalid reference {input:?}: repository name {name:?} must be lowercase")]
    Uppercase { input: String, name: String },
    #[error("invalid reference {input:?}: {part} {value:?} {problem} at position {position}")]
    Syntax {
        input: String,
        part: ReferencePart,
        value: String,
        problem: SyntaxProblem,
        position: usize,
    },
    #[error("invalid reference {input:?}: tag {tag:?} is longer than {TAG_MAX_LEN} characters")]
    TagTooLong { input: String, tag: String },
    #[error(
        "invalid reference {input:?}: repository name {name:?} is {len} characters long, \
         more than {NAME_MAX_LEN}"
    )]
    NameTooLong {
        input: String,
        name: String,
        len: usize,
    },
    #[error("invalid reference {input:?}: invalid digest {digest:?}: {problem}")]
    InvalidDigest {
        input: String,
        digest: String,
        problem: DigestProblem,
    },
}

impl Reference {
    /// Parses and normalizes like Docker's `ParseNormalizedNamed`, without adding a tag: a bare
    /// name stays name-only.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        parse_reference(s)
    }

    /// Parses like `docker pull`: normalizes (`busybox` → `docker.io/library/busybox`) and adds
    /// the `latest` tag when there is neither tag nor digest. A tag given with a digest is kept.
    pub fn parse_normalized(s: &str) -> Result<Self, ReferenceError> {
        let mut reference = parse_reference(s)?;
        if reference.is_name_only() {
            reference.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(reference)
    }

    /// Registry host and optional port (`docker.io`, `localhost:5000`, `[::1]:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path within the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, the name a registry and the image store know the repository by.
    pub fn repository(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// True when the reference has neither tag nor digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// The name as Docker shows it: `busybox`, `user/app`, `localhost:5000/a/b`.
    ///
    /// Unlike Docker, `docker.io/` is kept where dropping it would make the name read back as
    /// something else (`docker.io/foo.bar/x` would become registry `foo.bar`, and
    /// `library/<64 hex>` would become an image ID), so the familiar form always parses back to
    /// the same repository.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        let short = match self.path.strip_prefix(OFFICIAL_PREFIX) {
            Some(rest) if !rest.contains('/') && !is_identifier(rest) => rest,
            _ => self.path.as_str(),
        };
        match short.split_once('/') {
            Some((first, _)) if looks_like_domain(first) => self.repository(),
            _ => short.to_owned(),
        }
    }

    /// [`familiar_name`](Self::familiar_name) followed by `:tag` and `@digest` when present.
    pub fn familiar_string(&self) -> String {
        format!("{}{}", self.familiar_name(), self.suffix())
    }

    /// The same repository and digest with `tag`; checked like a tag in a parsed reference.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        let repository = self.repository();
        let input = format!("{repository}:{tag}");
        check_tag(&input, tag, repository.len() + 1)?;
        Ok(Self {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_owned()),
            digest: self.digest.clone(),
        })
    }

    /// The same repository and tag pinned to `digest`. Only digests Docker accepts in a
    /// reference (sha256, sha384, sha512) are allowed, so the result still parses back.
    pub fn with_digest(&self, digest: &Digest) -> Result<Self, ReferenceError> {
        let repository = self.repository();
        let text = digest.to_string();
        let input = format!("{repository}@{text}");
        let digest = check_digest(&input, &text, repository.len() + 1)?;
        Ok(Self {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: self.tag.clone(),
            digest: Some(digest),
        })
    }

    /// The same reference with the `latest` tag when it has neither tag nor digest (Docker's
    /// `TagNameOnly`); what [`parse_normalized`](Self::parse_normalized) returns for the input.
    pub fn with_default_tag(&self) -> Self {
        let mut reference = self.clone();
        if reference.is_name_only() {
            reference.tag = Some(DEFAULT_TAG.to_owned());
        }
        reference
    }

    /// The repository alone, without tag or digest (Docker's `TrimNamed`).
    pub fn name_only(&self) -> Self {
        Self {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    fn suffix(&self) -> String {
        let mut out = String::new();
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_ref());
        }
        out
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.domain.is_empty() {
            write!(f, "{}/", self.domain)?;
        }
        write!(f, "{}{}", self.path, self.suffix())
    }
}

/// Same as [`Reference::parse_normalized`], what a user typing an image name expects.
impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_normalized(s)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Uses [`Reference::parse`], not `parse_normalized`, so that a stored name-only reference does
/// not come back with a `latest` tag it never had.
impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn parse_reference(input: &str) -> Result<Reference, ReferenceError> {
    if input.is_empty() {
        return Err(ReferenceError::Empty);
    }
    // Docker refuses these so that an image ID is never taken for a Docker Hub repository.
    if is_identifier(input) {
        return Err(ReferenceError::HexIdentifier {
            input: input.to_owned(),
        });
    }

    // Docker decides whether the first component is a registry by how it looks, before any
    // validation; everything else lives on Docker Hub.
    let (domain_in, rest, rest_at) = match input.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (Some(first), rest, first.len() + 1),
        _ => (None, input, 0),
    };

    // Neither tag nor digest can hold '/', so only the last component carries them; a digest
    // holds no '@' and neither path nor tag holds ':', which makes both splits unambiguous.
    let last_at = rest.rfind('/').map_or(0, |i| i + 1);
    let last = &rest[last_at..];
    let (before_digest, digest) = match last.split_once('@') {
        Some((before, digest)) => (before, Some(digest)),
        None => (last, None),
    };
    let (component, tag) = match before_digest.split_once(':') {
        Some((component, tag)) => (component, Some(tag)),
        None => (before_digest, None),
    };
    let path = &rest[..last_at + component.len()];
    let tag_at = rest_at + path.len() + 1;
    let digest_at = rest_at + last_at + before_digest.len() + 1;

    let (domain, full_path) = match domain_in {
        None => (DEFAULT_DOMAIN, official(path)),
        Some(d) => match check_domain(d) {
            Ok(()) if d == LEGACY_DEFAULT_DOMAIN || d == DEFAULT_DOMAIN => {
                (DEFAULT_DOMAIN, official(path))
            }
            Ok(()) => (d, path.to_owned()),
            // Docker's grammar makes the domain optional, so a first component that is no valid
            // host but is a valid path component leaves a domain-less name (`a_b.com/x`).
            Err(_) if check_component(d).is_ok() => ("", format!("{d}/{path}")),
            Err((problem, at)) => {
                return Err(syntax(input, ReferencePart::Domain, d, problem, at));
            }
        },
    };

    if path.is_empty() {
        return Err(ReferenceError::MissingName {
            input: input.to_owned(),
        });
    }
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase {
            input: input.to_owned(),
            name: path.to_owned(),
        });
    }
    check_path(path)
        .map_err(|(problem, at)| syntax(input, ReferencePart::Path, path, problem, rest_at + at))?;
    if let Some(tag) = tag {
        check_tag(input, tag, tag_at)?;
    }
    let digest = digest
        .map(|d| check_digest(input, d, digest_at))
        .transpose()?;

    let name_len = if domain.is_empty() {
        full_path.len()
    } else {
        domain.len() + 1 + full_path.len()
    };
    // Docker before distribution/reference v0.6 counts the whole name; registries following the
    // distribution spec impose the same limit on it.
    if name_len > NAME_MAX_LEN {
        let name = if domain.is_empty() {
            full_path
        } else {
            format!("{domain}/{full_path}")
        };
        return Err(ReferenceError::NameTooLong {
            input: input.to_owned(),
            name,
            len: name_len,
        });
    }

    Ok(Reference {
        domain: domain.to_owned(),
        path: full_path,
        tag: tag.map(str::to_owned),
        digest,
    })
}

/// A one-component Docker Hub name is an official image.
fn official(path: &str) -> String {
    if path.contains('/') {
        path.to_owned()
    } else {
        format!("{OFFICIAL_PREFIX}{path}")
    }
}

/// Docker's test for "this first component is a registry, not a Docker Hub namespace".
fn looks_like_domain(first: &str) -> bool {
    first == "localhost" || first.contains(['.', ':']) || first.chars().any(char::is_uppercase)
}

/// A 64-hex-digit string: what Docker takes for an image ID.
fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn syntax(
    input: &str,
    part: ReferencePart,
    value: &str,
    problem: SyntaxProblem,
    byte_at: usize,
) -> ReferenceError {
    ReferenceError::Syntax {
        input: input.to_owned(),
        part,
        value: value.to_owned(),
        problem,
        position: char_position(input, byte_at),
    }
}

/// Character offset of a byte offset, so positions make sense for non-ASCII input too.
fn char_position(input: &str, byte_at: usize) -> usize {
    input.get(..byte_at).map_or(byte_at, |s| s.chars().count())
}

/// `host[:port]` with host a dot-separated list of labels (`[A-Za-z0-9]`, inner `-`) or a
/// bracketed IPv6 address of hex digits and colons. Errors carry a byte offset within `domain`.
fn check_domain(domain: &str) -> Result<(), (SyntaxProblem, usize)> {
    let host_end = if domain.starts_with('[') {
        let close = domain
            .find(']')
            .ok_or((SyntaxProblem::UnclosedBracket, 0))?;
        let address = &domain[1..close];
        if address.is_empty() {
            return Err((SyntaxProblem::EmptyAddress, 1));
        }
        if let Some((at, c)) = address
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_hexdigit() || c == ':'))
        {
            return Err((SyntaxProblem::InvalidCharacter(c), 1 + at));
        }
        close + 1
    } else {
        let host_end = domain.find(':').unwrap_or(domain.len());
        let mut label_at = 0;
        for label in domain[..host_end].split('.') {
            check_label(label).map_err(|(problem, at)| (problem, label_at + at))?;
            label_at += label.len() + 1;
        }
        host_end
    };

    let rest = &domain[host_end..];
    let Some(port) = rest.strip_prefix(':') else {
        return match rest.chars().next() {
            None => Ok(()),
            Some(c) => Err((SyntaxProblem::InvalidCharacter(c), host_end)),
        };
    };
    if port.is_empty() {
        return Err((SyntaxProblem::EmptyPort, host_end));
    }
    match port.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, c)) => Err((SyntaxProblem::InvalidCharacter(c), host_end + 1 + at)),
        None => Ok(()),
    }
}

fn check_label(label: &str) -> Result<(), (SyntaxProblem, usize)> {
    if label.is_empty() {
        return Err((SyntaxProblem::EmptyComponent, 0));
    }
    if let Some((at, c)) = label
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err((SyntaxProblem::InvalidCharacter(c), at));
    }
    if label.starts_with('-') {
        return Err((SyntaxProblem::MisplacedSeparator("-".into()), 0));
    }
    if label.ends_with('-') {
        return Err((
            SyntaxProblem::MisplacedSeparator("-".into()),
            label.len() - 1,
        ));
    }
    Ok(())
}

/// Slash-separated path components. Errors carry a byte offset within `path`.
fn check_path(path: &str) -> Result<(), (SyntaxProblem, usize)> {
    let mut component_at = 0;
    for component in path.split('/') {
        check_component(component).map_err(|(problem, at)| (problem, component_at + at))?;
        component_at += component.len() + 1;
    }
    Ok(())
}

/// `[a-z0-9]+` runs joined by one separator: `.`, `_`, `__` or any run of `-`.
fn check_component(component: &str) -> Result<(), (SyntaxProblem, usize)> {
    if component.is_empty() {
        return Err((SyntaxProblem::EmptyComponent, 0));
    }
    let is_separator = |b: &u8| matches!(b, b'.' | b'_' | b'-');
    // `at` only ever moves over ASCII, so it stays on a char boundary.
    let mut at = 0;
    while let Some(c) = component[at..].chars().next() {
        match c {
            'a'..='z' | '0'..='9' => at += 1,
            '.' | '_' | '-' => {
                let end = component.as_bytes()[at..]
                    .iter()
                    .position(|b| !is_separator(b))
                    .map_or(component.len(), |n| at + n);
                let run = &component[at..end];
                if at == 0 || end == component.len() {
                    return Err((SyntaxProblem::MisplacedSeparator(run.to_owned()), at));
                }
                if !(matches!(run, "." | "_" | "__") || run.bytes().all(|b| b == b'-')) {
                    return Err((SyntaxProblem::InvalidSeparator(run.to_owned()), at));
                }
                at = end;
            }
            other => return Err((SyntaxProblem::InvalidCharacter(other), at)),
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most [`TAG_MAX_LEN`] characters. `tag_at` is the byte
/// offset of the tag in `input`.
fn check_tag(input: &str, tag: &str, tag_at: usize) -> Result<(), ReferenceError> {
    let bad = |problem, at| syntax(input, ReferencePart::Tag, tag, problem, tag_at + at);
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.char_indices();
    match chars.next() {
        None => return Err(bad(SyntaxProblem::Empty, 0)),
        Some((_, c)) if !is_word(c) => return Err(bad(SyntaxProblem::InvalidCharacter(c), 0)),
        Some(_) => {}
    }
    if let Some((at, c)) = chars.find(|&(_, c)| !(is_word(c) || c == '.' || c == '-')) {
        return Err(bad(SyntaxProblem::InvalidCharacter(c), at));
    }
    if tag.len() > TAG_MAX_LEN {
        return Err(ReferenceError::TagTooLong {
            input: input.to_owned(),
            tag: tag.to_owned(),
        });
    }
    Ok(())
}

/// `algorithm:hex` with a hash Docker knows and exactly its length in lowercase hex.
/// `digest_at` is the byte offset of the digest in `input`.
fn check_digest(input: &str, text: &str, digest_at: usize) -> Result<Digest, ReferenceError> {
    let bad = |problem| ReferenceError::InvalidDigest {
        input: input.to_owned(),
        digest: text.to_owned(),
        problem,
    };
    let (algorithm, hex) = text
        .split_once(':')
        .ok_or_else(|| bad(DigestProblem::Malformed))?;
    let &(algorithm, expected) = DIGEST_ALGORITHMS
        .iter()
        .find(|(name, _)| *name == algorithm)
        .ok_or_else(|| bad(DigestProblem::UnsupportedAlgorithm(algorithm.to_owned())))?;
    if let Some((at, ch)) = hex
        .char_indices()
        .find(|&(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
    {
        let position = char_position(input, digest_at + algorithm.len() + 1 + at);
        return Err(bad(DigestProblem::InvalidCharacter { ch, position }));
    }
    if hex.len() != expected {
        return Err(bad(DigestProblem::WrongLength {
            algorithm,
            expected,
            actual: hex.len(),
        }));
    }
    Digest::try_from(text).map_err(|e| bad(DigestProblem::Rejected(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn sha256() -> String {
        format!("sha256:{HEX64}")
    }

    /// `{D}` in a table entry stands for a valid sha256 digest, `{H}` for 64 hex digits.
    fn expand(s: &str) -> String {
        s.replace("{D}", &sha256()).replace("{H}", HEX64)
    }

    // (input, normalized string, familiar string)
    #[rustfmt::skip]
    const VALID: &[(&str, &str, &str)] = &[
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("busybox:LATEST", "docker.io/library/busybox:LATEST", "busybox:LATEST"),
        ("busybox:_x.Y-z", "docker.io/library/busybox:_x.Y-z", "busybox:_x.Y-z"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("index.docker.io/x", "docker.io/library/x:latest", "x:latest"),
        ("index.docker.io/user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
        ("a/b/c/d/e", "docker.io/a/b/c/d/e:latest", "a/b/c/d/e:latest"),
        ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
        ("localhost:5000/a/b:v1", "localhost:5000/a/b:v1", "localhost:5000/a/b:v1"),
        // Without a '/', "localhost" is a Docker Hub name and "5000" its tag, as in Docker.
        ("localhost", "docker.io/library/localhost:latest", "localhost:latest"),
        ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
        ("example.com", "docker.io/library/example.com:latest", "example.com:latest"),
        ("registry.example.com:443/team/app:v1.2-rc_3", "registry.example.com:443/team/app:v1.2-rc_3", "registry.example.com:443/team/app:v1.2-rc_3"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
        ("[::1]:5000/x:y", "[::1]:5000/x:y", "[::1]:5000/x:y"),
        ("[2001:db8::1]/x", "[2001:db8::1]/x:latest", "[2001:db8::1]/x:latest"),
        ("sub-domain.example.com/a/b/c", "sub-domain.example.com/a/b/c:latest", "sub-domain.example.com/a/b/c:latest"),
        ("my--host.io/x", "my--host.io/x:latest", "my--host.io/x:latest"),
        ("Example.COM/app", "Example.COM/app:latest", "Example.COM/app:latest"),
        ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
        ("a__b", "docker.io/library/a__b:latest", "a__b:latest"),
        ("a_b.c-d---e", "docker.io/library/a_b.c-d---e:latest", "a_b.c-d---e:latest"),
        ("a.b/c__d/e-f", "a.b/c__d/e-f:latest", "a.b/c__d/e-f:latest"),
        // "host" has no '.' or ':' and is not localhost, so Docker reads it as a Hub namespace.
        ("host/x@{D}", "docker.io/host/x@{D}", "host/x@{D}"),
        ("host.test/x@{D}", "host.test/x@{D}", "host.test/x@{D}"),
        ("busybox@{D}", "docker.io/library/busybox@{D}", "busybox@{D}"),
        ("busybox:1.36@{D}", "docker.io/library/busybox:1.36@{D}", "busybox:1.36@{D}"),
        ("localhost:5000/x:t@{D}", "localhost:5000/x:t@{D}", "localhost:5000/x:t@{D}"),
        // Docker keeps this without a domain: "a_b.com" is no host but a valid path component.
        ("a_b.com/x", "a_b.com/x:latest", "a_b.com/x:latest"),
        // Dropping docker.io would turn "foo.bar" into a registry, so it stays.
        ("docker.io/foo.bar/x", "docker.io/foo.bar/x:latest", "docker.io/foo.bar/x:latest"),
        ("docker.io/localhost/x", "docker.io/localhost/x:latest", "docker.io/localhost/x:latest"),
        // Only a bare 64-hex string is refused; with a tag or namespace it is a name.
        ("{H}:v1", "docker.io/library/{H}:v1", "library/{H}:v1"),
        ("library/{H}", "docker.io/library/{H}:latest", "library/{H}:latest"),
        ("0", "docker.io/library/0:latest", "0:latest"),
        ("192.168.0.1:80", "docker.io/library/192.168.0.1:80", "192.168.0.1:80"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080/foo:latest", "xn--n3h.com:18080/foo:latest"),
    ];

    // (input, fragment of the error message)
    #[rustfmt::skip]
    const INVALID: &[(&str, &str)] = &[
        ("", "empty string"),
        ("Busybox", r#"invalid reference "Busybox": repository name "Busybox" must be lowercase"#),
        ("user/App", r#"repository name "user/App" must be lowercase"#),
        ("host.com:5000/A/b:t", r#"repository name "A/b" must be lowercase"#),
        ("a:b:c", r#"invalid reference "a:b:c": tag "b:c" has invalid character ':' at position 3"#),
        ("a/", r#"repository path "a/" has an empty component at position 2"#),
        ("/a", "has an empty component at position 0"),
        ("a//b", "has an empty component at position 2"),
        (":tag", "repository name is missing"),
        ("@{D}", "repository name is missing"),
        ("host.com/", "repository name is missing"),
        ("localhost/:v1", "repository name is missing"),
        ("-a", r#"separator "-" at the start or end of a component at position 0"#),
        ("a-", r#"separator "-" at the start or end of a component at position 1"#),
        (".a", "at the start or end"),
        ("a.", "at the start or end"),
        ("_a", "at the start or end"),
        ("a/b_", r#"separator "_" at the start or end of a component at position 3"#),
        ("a___b", r#"invalid separator "___""#),
        ("a._b", r#"invalid separator "._""#),
        ("a..b", r#"invalid separator "..""#),
        ("a-_b", r#"invalid separator "-_""#),
        ("a b", "has invalid character ' ' at position 1"),
        ("ünïcode", "has invalid character 'ü' at position 0"),
        ("a/b:c/d", "has invalid character ':' at position 3"),
        ("a@b/c", "has invalid character '@' at position 1"),
        ("{H}", "cannot specify 64-byte hexadecimal strings"),
        ("busybox:", r#"tag "" is empty at position 8"#),
        ("busybox:-x", r#"tag "-x" has invalid character '-' at position 8"#),
        ("busybox:.x", "has invalid character '.'"),
        ("busybox:a+b", "has invalid character '+' at position 9"),
        ("busybox@", "invalid digest \"\": expected"),
        ("x@sha256", "invalid digest \"sha256\": expected"),
        ("host/x@sha256:short", "invalid digest \"sha256:short\": invalid character 's' at position 14"),
        ("x@sha256:abc", "sha256 needs 64 hex digits, found 3"),
        ("x:t@sha256:abc", "sha256 needs 64 hex digits, found 3"),
        ("x@sha512:{H}", "sha512 needs 128 hex digits, found 64"),
        ("x@SHA256:{H}", r#"unsupported algorithm "SHA256""#),
        ("x@md5:0123456789abcdef0123456789abcdef", r#"unsupported algorithm "md5""#),
        ("x@sha256:{H}@{D}", "invalid character '@'"),
        ("host:/x", r#"domain "host:" has an empty port at position 4"#),
        ("host:abc/x", "domain \"host:abc\" has invalid character 'a' at position 5"),
        ("host:1:2/x", "has invalid character ':' at position 6"),
        ("-host.com/x", r#"domain "-host.com" has separator "-""#),
        ("host-.com/x", r#"separator "-" at the start or end of a component at position 4"#),
        ("host..com/x", r#"domain "host..com" has an empty component at position 5"#),
        ("Foo_Bar/x", r#"domain "Foo_Bar" has invalid character '_' at position 3"#),
        ("[::1/x", "has an unclosed '[' at position 0"),
        ("[zz::1]:5000/x", "has invalid character 'z' at position 1"),
        ("[]:5000/x", r#"domain "[]:5000" has an empty address between '[' and ']' at position 1"#),
        ("[::1]x/y", "has invalid character 'x' at position 5"),
        // Without a '/' a bracketed host is read as a Docker Hub name, as in Docker.
        ("[fc00::1]:5000", "repository path \"[fc00\" has invalid character '['"),
        ("[fe80::1%eth0]:5000/x", "has invalid character '%' at position 8"),
        ("https://github.com/docker/docker", r#"domain "https:" has an empty port"#),
    ];

    #[test]
    fn valid_references_normalize_like_docker() {
        for (input, full, familiar) in VALID {
            let (input, full, familiar) = (expand(input), expand(full), expand(familiar));
            let r = Reference::parse_normalized(&input)
                .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
            assert_eq!(r.to_string(), full, "normalized form of {input:?}");
            assert_eq!(r.familiar_string(), familiar, "familiar form of {input:?}");
            assert_eq!(
                Reference::parse_normalized(&full).as_ref(),
                Ok(&r),
                "{full:?}"
            );
            assert_eq!(
                Reference::parse_normalized(&familiar).as_ref(),
                Ok(&r),
                "{familiar:?}"
            );
        }
    }

    #[test]
    fn invalid_references_say_what_is_wrong() {
        for (input, fragment) in INVALID {
            let (input, fragment) = (expand(input), expand(fragment));
            let err = Reference::parse_normalized(&input)
                .expect_err(&format!("{input:?} should be refused"))
                .to_string();
            assert!(
                err.contains(&fragment),
                "{input:?}: {err:?} lacks {fragment:?}"
            );
        }
    }

    #[test]
    fn parts_are_split_like_docker() {
        let r = Reference::parse_normalized(&expand("[::1]:5000/a/b:v1@{D}")).unwrap();
        assert_eq!(r.domain(), "[::1]:5000");
        assert_eq!(r.path(), "a/b");
        assert_eq!(r.repository(), "[::1]:5000/a/b");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest().map(|d| d.digest()), Some(HEX64));
        assert_eq!(r.familiar_name(), "[::1]:5000/a/b");

        let r = Reference::parse_normalized("busybox").unwrap();
        assert_eq!((r.domain(), r.path()), ("docker.io", "library/busybox"));
        assert_eq!(r.repository(), "docker.io/library/busybox");
        assert_eq!(r.familiar_name(), "busybox");

        let r = Reference::parse_normalized("a_b.com/x").unwrap();
        assert_eq!((r.domain(), r.path()), ("", "a_b.com/x"));
        assert_eq!(r.repository(), "a_b.com/x");
    }

    #[test]
    fn parse_keeps_name_only_references_untagged() {
        let r = Reference::parse("user/app").unwrap();
        assert!(r.is_name_only());
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), "docker.io/user/app");
        assert_eq!(r.familiar_string(), "user/app");

        let pinned = Reference::parse_normalized(&expand("x@{D}")).unwrap();
        assert_eq!(pinned.tag(), None, "a digest alone gets no default tag");
        assert!(!pinned.is_name_only());
    }

    #[test]
    fn name_length_is_limited_to_255_characters() {
        // "docker.io/library/" is 18 characters of the normalized name.
        let fits = "a".repeat(NAME_MAX_LEN - 18);
        let r = Reference::parse_normalized(&fits).unwrap();
        assert_eq!(r.repository().len(), NAME_MAX_LEN);
        let err = Reference::parse_normalized(&format!("{fits}b")).unwrap_err();
        assert!(
            err.to_string()
                .contains("is 256 characters long, more than 255"),
            "{err}"
        );
        assert!(matches!(err, ReferenceError::NameTooLong { len: 256, .. }));
    }

    #[test]
    fn tag_length_is_limited_to_128_characters() {
        let tag = "t".repeat(TAG_MAX_LEN);
        let r = Reference::parse_normalized(&format!("busybox:{tag}")).unwrap();
        assert_eq!(r.tag(), Some(tag.as_str()));
        let err = Reference::parse_normalized(&format!("busybox:{tag}x")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("tag \"{tag}x\" is longer than 128 characters")),
            "{msg}"
        );
    }

    #[test]
    fn accepts_every_hash_docker_knows() {
        for (algorithm, len) in DIGEST_ALGORITHMS {
            let digest = format!("{algorithm}:{}", "a".repeat(len));
            let r = Reference::parse_normalized(&format!("host.test/x@{digest}")).unwrap();
            assert_eq!(r.to_string(), format!("host.test/x@{digest}"));
        }
    }

    #[test]
    fn with_tag_with_digest_name_only_and_default_tag() {
        let r = Reference::parse_normalized("localhost:5000/app:v1").unwrap();
        let retagged = r.with_tag("v2").unwrap();
        assert_eq!(retagged.to_string(), "localhost:5000/app:v2");
        let err = r.with_tag("bad tag").unwrap_err().to_string();
        assert!(
            err.contains(r#"tag "bad tag" has invalid character ' ' at position 22"#),
            "{err}"
        );

        let digest: Digest = sha256().parse().unwrap();
        let pinned = r.with_digest(&digest).unwrap();
        assert_eq!(pinned.to_string(), expand("localhost:5000/app:v1@{D}"));
        assert_eq!(
            pinned.with_tag("v3").unwrap().to_string(),
            expand("localhost:5000/app:v3@{D}")
        );
        let foreign: Digest = "blake3:0123456789abcdef0123456789abcdef".parse().unwrap();
        assert!(matches!(
            r.with_digest(&foreign),
            Err(ReferenceError::InvalidDigest {
                problem: DigestProblem::UnsupportedAlgorithm(_),
                ..
            })
        ));

        let bare = pinned.name_only();
        assert!(bare.is_name_only());
        assert_eq!(bare.to_string(), "localhost:5000/app");
        assert_eq!(
            bare.with_default_tag().to_string(),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            pinned.with_default_tag(),
            pinned,
            "a digest keeps it untagged"
        );
    }

    #[test]
    fn from_str_and_serde_use_the_string_form() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");

        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#""docker.io/library/busybox:latest""#);
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);

        let bare = Reference::parse("busybox").unwrap();
        let back: Reference = serde_json::from_str(&serde_json::to_string(&bare).unwrap()).unwrap();
        assert_eq!(back, bare, "no tag appears on the way through serde");

        let err = serde_json::from_str::<Reference>(r#""Busy""#).unwrap_err();
        assert!(err.to_string().contains("must be lowercase"), "{err}");
    }

    fn alnum() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,6}"
    }

    fn path_component() -> impl Strategy<Value = String> {
        let separator = prop_oneof![
            Just(".".to_owned()),
            Just("_".to_owned()),
            Just("__".to_owned()),
            "-{1,3}"
        ];
        (alnum(), prop::collection::vec((separator, alnum()), 0..3)).prop_map(|(head, tail)| {
            tail.into_iter()
                .fold(head, |acc, (sep, run)| acc + &sep + &run)
        })
    }

    fn port() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[0-9]{1,5}".prop_map(|p| format!(":{p}"))
        ]
    }

    /// Domains Docker recognizes as such (so the expected split is known).
    fn domain() -> impl Strategy<Value = String> {
        let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?";
        prop_oneof![
            Just("docker.io".to_owned()),
            Just("index.docker.io".to_owned()),
            port().prop_map(|p| format!("localhost{p}")),
            (prop::collection::vec(label, 2..4), port())
                .prop_map(|(labels, p)| format!("{}{p}", labels.join("."))),
            ("[A-Z][a-zA-Z0-9]{0,5}", port()).prop_map(|(host, p)| format!("{host}{p}")),
            ("[0-9a-fA-F]{0,4}:[0-9a-fA-F:]{0,10}", port())
                .prop_map(|(address, p)| format!("[{address}]{p}")),
        ]
    }

    fn tag() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}",
            "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
        ]
    }

    fn digest() -> impl Strategy<Value = String> {
        prop_oneof![
            "sha256:[0-9a-f]{64}",
            "sha384:[0-9a-f]{96}",
            "sha512:[0-9a-f]{128}"
        ]
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(
            domain in prop::option::of(domain()),
            components in prop::collection::vec(path_component(), 1..5),
            tag in prop::option::of(tag()),
            digest in prop::option::of(digest()),
        ) {
            let path = components.join("/");
            let mut input = match &domain {
                Some(d) => format!("{d}/{path}"),
                None => path.clone(),
            };
            if let Some(t) = &tag {
                input = format!("{input}:{t}");
            }
            if let Some(d) = &digest {
                input = format!("{input}@{d}");
            }

            let r = Reference::parse_normalized(&input)
                .map_err(|e| TestCaseError::fail(format!("{input:?}: {e}")))?;
            let expected_tag = match (&tag, &digest) {
                (None, None) => Some(DEFAULT_TAG),
                _ => tag.as_deref(),
            };
            prop_assert_eq!(r.tag(), expected_tag);
            prop_assert_eq!(r.digest().map(|d| d.to_string()), digest);
            if let Some(d) = &domain {
                let hub = d == "docker.io" || d == "index.docker.io";
                prop_assert_eq!(r.domain(), if hub { DEFAULT_DOMAIN } else { d.as_str() });
                let expected_path = if hub && !path.contains('/') {
                    format!("library/{path}")
                } else {
                    path.clone()
                };
                prop_assert_eq!(r.path(), expected_path);
            }

            let full = r.to_string();
            prop_assert_eq!(Reference::parse_normalized(&full), Ok(r.clone()));
            prop_assert_eq!(Reference::parse(&full), Ok(r.clone()));
            let familiar = Reference::parse_normalized(&r.familiar_string())
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", r.familiar_string())))?;
            prop_assert_eq!(familiar.to_string(), full);
            prop_assert_eq!(
                Reference::parse(&r.familiar_name()).map(|n| n.repository()),
                Ok(r.repository())
            );
        }

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            check_round_trip(&s)?;
        }

        #[test]
        fn reference_like_strings_never_panic(s in "[a-zA-Z0-9._:/@\\[\\]-]{0,40}") {
            check_round_trip(&s)?;
        }
    }

    /// Whatever is accepted prints as something that parses back to the same reference.
    fn check_round_trip(s: &str) -> Result<(), TestCaseError> {
        match Reference::parse(s) {
            Ok(r) => {
                prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r.clone()));
                let familiar = r.familiar_string();
                prop_assert_eq!(
                    Reference::parse(&familiar).map(|f| f.to_string()),
                    Ok(r.to_string())
                );
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let _ = Reference::parse_normalized(s);
        Ok(())
    }
}
