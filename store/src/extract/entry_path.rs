//! Entry names as they come out of a layer tar, turned into clean paths relative to the layer root,
//! and what an OCI whiteout name means for overlayfs.
//!
//! Cleaning is lexical, as Docker's `filepath.Clean` + breakout check: a leading `/` or `./` is
//! dropped (absolute names are contained), `.` and empty components vanish, and `..` removes the
//! previous component; a `..` with nothing left to remove would climb above the root and is
//! rejected. Symlinks are not looked at here; `scope` resolves them inside the root.

/// Longer names than this fail in every peer tool (`PATH_MAX`); refusing them also bounds the
/// directories one entry can create.
pub(super) const MAX_PATH: usize = 4096;

/// Longest part of an entry name shown in an error: a name may be up to 1 MiB long (the tar
/// reader's limit for GNU long names and PAX paths) and must not become a megabyte-long line.
const SHOWN_MAX: usize = 256;

/// `raw` as shown in an error: as it is when short, else its first 256 bytes, `…` and its
/// length.
pub fn shown_name(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if raw.len() <= SHOWN_MAX {
        return raw.into();
    }
    let mut out = raw[..SHOWN_MAX].to_vec();
    out.extend_from_slice(format!("… ({} bytes)", raw.len()).as_bytes());
    out.into()
}

/// Prefix of OCI whiteout names.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of aufs metadata (`.wh..wh.plnk`, `.wh..wh.aufs`); also of the opaque marker.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// The OCI opaque-directory marker.
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";

/// Why an entry name could not be cleaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathProblem {
    /// A `..` would climb above the layer root.
    Escape,
    /// A NUL byte inside a name (only possible through PAX records).
    Nul,
    /// Longer than [`MAX_PATH`] once cleaned.
    TooLong,
}

/// A cleaned entry path: components joined by single `/`, no `.`/`..`, no leading or trailing `/`.
/// The empty path is the layer root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CleanPath {
    bytes: Vec<u8>,
    /// Where the last component starts in `bytes`.
    name_start: usize,
}

impl CleanPath {
    pub(super) fn new(raw: &[u8]) -> Result<Self, PathProblem> {
        let mut bytes: Vec<u8> = Vec::with_capacity(raw.len());
        for comp in raw.split(|b| *b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    if bytes.is_empty() {
                        return Err(PathProblem::Escape);
                    }
                    let cut = bytes.iter().rposition(|b| *b == b'/').unwrap_or(0);
                    bytes.truncate(cut);
                }
                name => {
                    if name.contains(&0) {
                        return Err(PathProblem::Nul);
                    }
                    if !bytes.is_empty() {
                        bytes.push(b'/');
                    }
                    bytes.extend_from_slice(name);
                }
            }
        }
        if bytes.len() > MAX_PATH {
            return Err(PathProblem::TooLong);
        }
        let name_start = bytes.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
        Ok(CleanPath { bytes, name_start })
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// True for the layer root itself (`/`, `.`, `./`, ``).
    pub(super) fn is_root(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The parent directory (empty for entries directly under the root).
    pub(super) fn parent(&self) -> &[u8] {
        &self.bytes[..self.name_start.saturating_sub(1)]
    }

    /// The last component (empty only for the root).
    pub(super) fn name(&self) -> &[u8] {
        &self.bytes[self.name_start..]
    }

    /// Whether some component is aufs metadata (`.wh..wh.*`), which overlay layers do not carry.
    /// The opaque marker as the last component is not metadata.
    fn in_aufs_metadata(&self) -> bool {
        let mut comps = self.bytes.split(|b| *b == b'/').peekable();
        while let Some(comp) = comps.next() {
            let last = comps.peek().is_none();
            if comp.starts_with(WHITEOUT_META_PREFIX) && !(last && comp == WHITEOUT_OPAQUE) {
                return true;
            }
        }
        false
    }
}

/// What an entry's name asks for before its type is even looked at.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Whiteout<'a> {
    /// An ordinary entry.
    None,
    /// `.wh..wh..opq`: the parent directory hides everything below it in lower layers.
    Opaque,
    /// `.wh.<name>`: `<name>` in the same directory is deleted.
    Delete(&'a [u8]),
    /// aufs metadata (`.wh..wh.plnk/…`): skipped.
    AufsMeta,
    /// `.wh.`, `.wh..`, `.wh...`: names nothing that can exist.
    Invalid,
}

pub(super) fn classify(path: &CleanPath) -> Whiteout<'_> {
    // Fast exit for the overwhelmingly common case.
    if !path
        .bytes
        .windows(WHITEOUT_PREFIX.len())
        .any(|w| w == WHITEOUT_PREFIX)
    {
        return Whiteout::None;
    }
    if path.in_aufs_metadata() {
        return Whiteout::AufsMeta;
    }
    let name = path.name();
    if name == WHITEOUT_OPAQUE {
        return Whiteout::Opaque;
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        Some(b"" | b"." | b"..") => Whiteout::Invalid,
        Some(target) => Whiteout::Delete(target),
        None => Whiteout::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(raw: &str) -> Result<String, PathProblem> {
        CleanPath::new(raw.as_bytes()).map(|p| String::from_utf8(p.into_bytes()).unwrap())
    }

    #[test]
    fn cleaning_matches_filepath_clean() {
        assert_eq!(clean("./etc/passwd"), Ok("etc/passwd".into()));
        assert_eq!(clean("/etc/x"), Ok("etc/x".into()));
        assert_eq!(clean("//a//b/./c/"), Ok("a/b/c".into()));
        assert_eq!(clean("a/../b"), Ok("b".into()));
        assert_eq!(clean("a/b/../../c"), Ok("c".into()));
        assert_eq!(clean("./"), Ok("".into()));
        assert_eq!(clean("/"), Ok("".into()));
        assert_eq!(clean(""), Ok("".into()));
        assert_eq!(clean("a/.."), Ok("".into()));
        assert_eq!(clean("../x"), Err(PathProblem::Escape));
        assert_eq!(clean("a/../../x"), Err(PathProblem::Escape));
        assert_eq!(clean("/../x"), Err(PathProblem::Escape));
        assert_eq!(clean("a\0b"), Err(PathProblem::Nul));
        assert_eq!(clean(&"a/".repeat(3000)), Err(PathProblem::TooLong));
    }

    #[test]
    fn parent_and_name() {
        let p = CleanPath::new(b"./usr/bin/env").unwrap();
        assert_eq!(p.parent(), b"usr/bin");
        assert_eq!(p.name(), b"env");
        let p = CleanPath::new(b"/env").unwrap();
        assert_eq!(p.parent(), b"");
        assert_eq!(p.name(), b"env");
        let p = CleanPath::new(b"./").unwrap();
        assert!(p.is_root());
        assert_eq!(p.parent(), b"");
        assert_eq!(p.name(), b"");
    }

    #[test]
    fn whiteout_names() {
        let c = |s: &str| CleanPath::new(s.as_bytes()).unwrap();
        assert_eq!(classify(&c("etc/passwd")), Whiteout::None);
        assert_eq!(classify(&c("etc/.wh..wh..opq")), Whiteout::Opaque);
        assert_eq!(classify(&c(".wh..wh..opq")), Whiteout::Opaque);
        assert_eq!(classify(&c("etc/.wh.passwd")), Whiteout::Delete(b"passwd"));
        assert_eq!(classify(&c(".wh..wh.plnk")), Whiteout::AufsMeta);
        assert_eq!(classify(&c(".wh..wh.plnk/123.45")), Whiteout::AufsMeta);
        assert_eq!(classify(&c("a/.wh..wh.aufs")), Whiteout::AufsMeta);
        assert_eq!(classify(&c("a/.wh.")), Whiteout::Invalid);
        assert_eq!(classify(&c("a/.wh..")), Whiteout::Invalid);
        assert_eq!(classify(&c("a/.wh...")), Whiteout::Invalid);
        // A whiteout name as a parent is an ordinary directory name.
        assert_eq!(classify(&c(".wh.a/b")), Whiteout::None);
        assert_eq!(classify(&c("x.wh.y")), Whiteout::None);
    }
}
