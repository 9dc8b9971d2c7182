//! The build context: a directory filtered by `.dockerignore`, the sources a COPY/ADD selects
//! from it (literal paths and Go `filepath.Match` globs), and their content hashes for the
//! cache — contents, mode and ownership, never mtime. File hashes are memoised by (path, size,
//! mtime, inode) in `ROOT/builder/context-hashes.json`, so a rebuild that changed nothing only
//! stats the files it selects.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::BuildError;
use crate::ignore::Ignore;

/// A file system tree sources are read from: the context directory (filtered by the ignore
/// file) or another stage's or image's root (unfiltered).
pub struct SourceTree {
    pub root: PathBuf,
    pub ignore: Ignore,
    /// What the tree is called in messages ("build context", "stage build").
    pub what: String,
}

/// One selected source: its path relative to the tree root ("" for the root itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub rel: String,
    pub is_dir: bool,
}

/// Memoised file hashes.
#[derive(Default)]
pub struct HashMemo {
    path: Option<PathBuf>,
    entries: BTreeMap<String, (u64, i64, i64, u64, String)>,
    dirty: bool,
}

impl HashMemo {
    pub fn load(path: PathBuf) -> HashMemo {
        let entries = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        HashMemo {
            path: Some(path),
            entries,
            dirty: false,
        }
    }

    /// The memo of the context at `context`, kept under `state_root` in a file of its own (so
    /// one large context never slows the builds of others), or only in memory for a context
    /// that lives no longer than its build (one unpacked from stdin).
    pub fn for_context(state_root: &Path, context: &Path) -> HashMemo {
        let builder = state_root.join("builder");
        let canonical = context
            .canonicalize()
            .unwrap_or_else(|_| context.to_path_buf());
        if canonical.starts_with(builder.join("tmp")) {
            return HashMemo {
                path: None,
                entries: BTreeMap::new(),
                dirty: false,
            };
        }
        let id = hex::encode(Sha256::digest(canonical.as_os_str().as_encoded_bytes()));
        HashMemo::load(
            builder
                .join("context-hashes")
                .join(format!("{}.json", &id[..16])),
        )
    }

    /// Write the memo back when it changed (best effort: it is only a cache).
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        if !self.dirty {
            return;
        }
        if let (Some(dir), Ok(bytes)) = (path.parent(), serde_json::to_vec(&self.entries))
            && fs::create_dir_all(dir).is_ok()
            && let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir)
            && io::Write::write_all(&mut tmp, &bytes).is_ok()
        {
            let _ = tmp.persist(path);
        }
    }

    fn file_hash(&mut self, path: &Path, md: &fs::Metadata) -> io::Result<String> {
        let key = path.to_string_lossy().into_owned();
        let stamp = (md.size(), md.mtime(), md.mtime_nsec(), md.ino());
        if let Some(e) = self.entries.get(&key)
            && (e.0, e.1, e.2, e.3) == stamp
        {
            return Ok(e.4.clone());
        }
        let mut f = fs::File::open(path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let hex = hex::encode(h.finalize());
        self.entries
            .insert(key, (stamp.0, stamp.1, stamp.2, stamp.3, hex.clone()));
        self.dirty = true;
        Ok(hex)
    }
}

/// Cleans a source path as Docker does: relative to the tree root, no `.`/`..` escaping it.
pub fn clean_rel(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one path component (`*`, `?`, `[...]`, `\` escapes).
fn component_matches(pattern: &str, name: &str) -> bool {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'^') || chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '[' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                re.push(']');
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    re.push_str(&regex::escape(&n.to_string()));
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(name))
}

impl SourceTree {
    fn excluded(&self, rel: &str, is_dir: bool) -> bool {
        !rel.is_empty() && self.ignore.matches(rel, is_dir)
    }

    /// `rel` with the symlinks on its path resolved inside the tree root, as BuildKit resolves a
    /// source (an absolute link target is taken from the root, `..` never climbs above it): a
    /// path relative to the root. The last component is followed too when `follow_last`.
    /// A chain of more than 40 links fails (`ELOOP`).
    pub fn resolve(&self, rel: &str, follow_last: bool) -> io::Result<String> {
        let host = berth_store::inroot::resolve(&self.root, rel, follow_last)?;
        Ok(host
            .strip_prefix(&self.root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default())
    }

    /// Whether `rel` names an entry of the tree (a symlink followed inside the root) that the
    /// ignore file keeps; `Some(is_dir)` when it does.
    fn entry_kind(&self, rel: &str) -> Option<bool> {
        let resolved = self.resolve(rel, true).ok()?;
        let md = fs::symlink_metadata(self.root.join(&resolved)).ok()?;
        let is_dir = md.is_dir();
        (!md.file_type().is_symlink()
            && !self.excluded(rel, is_dir)
            && !self.excluded(&resolved, is_dir))
        .then_some(is_dir)
    }

    /// The entries `source` selects, in name order. A literal path must exist (and not be
    /// excluded); a glob may match nothing only when another source of the step matches.
    /// Symlinks on the way (and a symlink named as the source) are followed inside the tree
    /// root only, never out of it onto the host.
    pub fn select(&self, source: &str) -> Result<Vec<Selected>, BuildError> {
        let rel = clean_rel(source);
        if !has_glob(&rel) {
            return match self.entry_kind(&rel) {
                Some(is_dir) => Ok(vec![Selected { rel, is_dir }]),
                // A symlink chain too long to follow is said as such, not as "not found".
                None => match self.resolve(&rel, true) {
                    Err(e) => Err(BuildError::io("resolving", self.root.join(&rel), e)),
                    Ok(_) => Err(BuildError::SourceNotFound {
                        path: source.to_string(),
                        what: self.what.clone(),
                    }),
                },
            };
        }
        let parts: Vec<&str> = rel.split('/').collect();
        let mut found = vec![String::new()];
        for (i, part) in parts.iter().enumerate() {
            let mut next = Vec::new();
            for dir in &found {
                if !has_glob(part) {
                    let r = join_rel(dir, part);
                    let Ok(resolved) = self.resolve(&r, false) else {
                        continue;
                    };
                    if self.root.join(resolved).symlink_metadata().is_ok() {
                        next.push(r);
                    }
                    continue;
                }
                let Ok(resolved) = self.resolve(dir, true) else {
                    continue;
                };
                let d = self.root.join(resolved);
                let Ok(rd) = fs::read_dir(&d) else { continue };
                let mut names: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| component_matches(part, n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| join_rel(dir, &n)));
            }
            let last = i + 1 == parts.len();
            found = next
                .into_iter()
                .filter(|r| self.entry_kind(r).is_some_and(|is_dir| last || is_dir))
                .collect();
        }
        Ok(found
            .into_iter()
            .filter_map(|rel| self.entry_kind(&rel).map(|is_dir| Selected { rel, is_dir }))
            .collect())
    }

    /// Every path under the selected directory `rel` (itself excluded) that the ignore file
    /// keeps, parents before children, in name order.
    pub fn walk(&self, rel: &str) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        self.walk_into(rel, &mut out)?;
        Ok(out)
    }

    fn walk_into(&self, rel: &str, out: &mut Vec<String>) -> io::Result<()> {
        let mut names: Vec<String> = fs::read_dir(self.root.join(rel))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for n in names {
            let r = join_rel(rel, &n);
            let md = fs::symlink_metadata(self.root.join(&r))?;
            let is_dir = md.is_dir();
            if self.excluded(&r, is_dir) {
                if is_dir && self.ignore.may_match_inside(&r) {
                    // An exception inside re-includes something below.
                    self.walk_into(&r, out)?;
                }
                continue;
            }
            out.push(r.clone());
            if is_dir {
                self.walk_into(&r, out)?;
            }
        }
        Ok(())
    }

    /// One entry's hash: type, mode, owner, and content (or link target); never mtime.
    fn entry_hash(&self, rel: &str, memo: &mut HashMemo) -> io::Result<String> {
        let p = self.root.join(rel);
        let md = fs::symlink_metadata(&p)?;
        let mut h = Sha256::new();
        h.update(format!("{:o} {} {} ", md.mode(), md.uid(), md.gid()).as_bytes());
        let ft = md.file_type();
        if ft.is_file() {
            h.update(memo.file_hash(&p, &md)?.as_bytes());
        } else if ft.is_symlink() {
            h.update(fs::read_link(&p)?.to_string_lossy().as_bytes());
        }
        Ok(hex::encode(h.finalize()))
    }

    /// The hashes of a selected source: the entry itself (a symlink given as a source is
    /// followed inside the tree root, as BuildKit does) and, for a directory, every entry the
    /// ignore file keeps below it — by relative path, so a cache miss can name the file that
    /// changed.
    pub fn hash_selection(
        &self,
        sel: &Selected,
        memo: &mut HashMemo,
    ) -> io::Result<Vec<(String, String)>> {
        let resolved = self.resolve(&sel.rel, true)?;
        let mut out = vec![(sel.rel.clone(), self.entry_hash(&resolved, memo)?)];
        if sel.is_dir {
            for r in self.walk(&resolved)? {
                let h = self.entry_hash(&r, memo)?;
                out.push((r, h));
            }
        }
        Ok(out)
    }
}

/// What `berth build -` read from stdin: a context archive or a lone Dockerfile.
pub enum StdinContext {
    /// A tar (plain or gzip) now unpacked into the directory given.
    Archive,
    /// Not an archive: the Dockerfile itself, with an empty context (`docker build - < Dockerfile`).
    Dockerfile(String),
}

/// Reads a build context given on stdin into `dir` (which must exist), as Docker does: a tar
/// (optionally gzip-compressed) is unpacked, never writing outside `dir`; anything else is
/// the Dockerfile.
pub fn context_from_stdin(bytes: &[u8], dir: &Path) -> io::Result<StdinContext> {
    let gz = bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
    let tar = bytes.len() >= 262 && &bytes[257..262] == b"ustar";
    if !gz && !tar {
        return Ok(StdinContext::Dockerfile(
            String::from_utf8_lossy(bytes).into_owned(),
        ));
    }
    let reader: Box<dyn Read + '_> = if gz {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        berth_store::extract::check_name_lengths(&entry)?;
        // unpack_in refuses `..` and absolute paths.
        entry.unpack_in(dir)?;
    }
    Ok(StdinContext::Archive)
}

pub fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_context_has_its_own_memo_and_stdin_contexts_none() {
        let root = tempfile::TempDir::new().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        let tmp = root.path().join("builder/tmp/context-x");
        for d in [&a, &b, &tmp] {
            fs::create_dir_all(d).unwrap();
            fs::write(d.join("f"), b"x").unwrap();
        }
        let memo_of = |ctx: &Path| {
            let mut m = HashMemo::for_context(root.path(), ctx);
            let f = ctx.join("f");
            m.file_hash(&f, &fs::metadata(&f).unwrap()).unwrap();
            m.save();
            m.path.clone()
        };
        let (pa, pb) = (memo_of(&a).unwrap(), memo_of(&b).unwrap());
        assert_ne!(pa, pb);
        assert!(pa.exists() && pb.exists());
        assert!(memo_of(&tmp).is_none());
        // Loading again finds the entry.
        assert_eq!(HashMemo::for_context(root.path(), &a).entries.len(), 1);
    }

    #[test]
    fn globs_match_one_component_like_go() {
        assert!(component_matches("*.txt", "a.txt"));
        assert!(!component_matches("*.txt", "a.txt.bak"));
        assert!(component_matches("f?le", "file"));
        assert!(component_matches("[a-c]x", "bx"));
        assert!(!component_matches("[^a-c]x", "bx"));
    }

    #[test]
    fn select_and_hash_follow_the_ignore_file_and_contents_not_mtime() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), "a").unwrap();
        fs::write(dir.path().join("b.txt"), "b").unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/x"), "x").unwrap();
        fs::write(dir.path().join("d/skip"), "s").unwrap();
        let tree = SourceTree {
            root: dir.path().to_path_buf(),
            ignore: Ignore::parse("b.txt\nd/skip\n").unwrap(),
            what: "build context".into(),
        };
        let sel = tree.select("*.txt").unwrap();
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0].rel, "a.txt");
        assert!(tree.select("b.txt").is_err());
        assert!(tree.select("../../etc/passwd").is_err());
        let d = tree.select("./d/").unwrap();
        assert_eq!(tree.walk(&d[0].rel).unwrap(), vec!["d/x".to_string()]);
        let mut memo = HashMemo::default();
        let h1 = tree.hash_selection(&d[0], &mut memo).unwrap();
        // Ignored files do not count; touching a file does not change the hash.
        fs::write(dir.path().join("d/skip"), "changed").unwrap();
        let f = fs::File::options()
            .write(true)
            .open(dir.path().join("d/x"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(tree.hash_selection(&d[0], &mut memo).unwrap(), h1);
        fs::write(dir.path().join("d/x"), "y").unwrap();
        assert_ne!(tree.hash_selection(&d[0], &mut memo).unwrap(), h1);
    }
}
