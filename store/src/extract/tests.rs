//! Tests of `unpack_layer` against crafted (often malicious) tars: the fixture (a destination
//! beside a sentinel directory no tar may touch) and a raw tar builder live here, the tests in
//! `containment` (nothing escapes), `entries` (what each entry becomes) and `robustness`
//! (broken input, fuzzing). They need root (owners, device nodes, `trusted.*` xattrs), as CI has.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::*;

mod containment;
mod entries;
mod robustness;

/// A temporary directory holding the destination and, beside it, a sentinel directory that no
/// tar may change.
pub(super) struct Fixture {
    pub(super) _tmp: tempfile::TempDir,
    pub(super) outer: PathBuf,
    pub(super) dest: PathBuf,
    pub(super) sentinel: PathBuf,
}

pub(super) fn fixture() -> Fixture {
    let tmp = tempfile::Builder::new()
        .prefix("berth-extract-")
        .tempdir()
        .unwrap();
    let outer = tmp.path().to_path_buf();
    let dest = outer.join("dest");
    let sentinel = outer.join("sentinel");
    fs::create_dir(&dest).unwrap();
    fs::create_dir(&sentinel).unwrap();
    fs::write(sentinel.join("keep"), b"sentinel").unwrap();
    fs::create_dir(sentinel.join("sub")).unwrap();
    Fixture {
        _tmp: tmp,
        outer,
        dest,
        sentinel,
    }
}

fn without_dir_mtimes(tree: BTreeMap<PathBuf, String>) -> BTreeMap<PathBuf, String> {
    tree.into_iter()
        .map(|(p, d)| {
            if d.starts_with("40") {
                let kept: Vec<&str> = d.split(' ').filter(|w| !w.starts_with('m')).collect();
                (p, kept.join(" "))
            } else {
                (p, d)
            }
        })
        .collect()
}

/// Everything observable about a tree (not following symlinks), to prove it unchanged.
pub(super) fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let mut desc = format!(
            "{:o} {}:{} n{} m{} s{}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.nlink(),
            m.mtime(),
            m.size()
        );
        if m.file_type().is_file() {
            desc.push_str(&format!(" {:?}", fs::read(&p).unwrap()));
        } else if m.file_type().is_symlink() {
            desc.push_str(&format!(" -> {:?}", fs::read_link(&p).unwrap()));
        } else if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
        out.insert(p.strip_prefix(root).unwrap().to_path_buf(), desc);
    }
    out
}

impl Fixture {
    /// Unpacks `tar` with both resolvers (openat2 and the component walk), each into a fresh
    /// destination, checking every time that nothing outside it changed. Returns the results.
    pub(super) fn unpack_checked(&self, tar: &[u8]) -> Result<UnpackStats, ExtractError> {
        let before = snapshot(&self.sentinel);
        let walk_dest = self.outer.join("dest-walk");
        fs::create_dir(&walk_dest).unwrap();
        let walked = unpack(tar, &walk_dest, true);
        let result = unpack(tar, &self.dest, false);
        assert_eq!(
            result.as_ref().map_err(|e| e.to_string()),
            walked.as_ref().map_err(|e| e.to_string()),
            "openat2 and the component walk disagree"
        );
        if result.is_ok() {
            // Implicitly created parents get "now" as mtime, which differs between the two runs
            // when they straddle a second; compare directories without it.
            assert_eq!(
                without_dir_mtimes(snapshot(&self.dest)),
                without_dir_mtimes(snapshot(&walk_dest)),
                "trees differ"
            );
        }
        fs::remove_dir_all(&walk_dest).unwrap();
        self.assert_outside_untouched(&before);
        result
    }

    pub(super) fn assert_outside_untouched(&self, before: &BTreeMap<PathBuf, String>) {
        assert_eq!(&snapshot(&self.sentinel), before, "sentinel changed");
        let mut names: Vec<_> = fs::read_dir(&self.outer)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["dest", "sentinel"],
            "something was created beside dest"
        );
    }
}

/// Builds tars entry by entry, writing names raw (the `tar` crate refuses `..` in `set_path`).
pub(super) struct Tar {
    b: tar::Builder<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub(super) struct E {
    pub(super) name: Vec<u8>,
    pub(super) kind: EntryType,
    pub(super) link: Vec<u8>,
    pub(super) data: Vec<u8>,
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) mtime: u64,
    pub(super) dev: (u32, u32),
    pub(super) pax: Vec<(String, Vec<u8>)>,
    /// A raw type flag instead of `kind`'s.
    pub(super) flag: Option<u8>,
}

pub(super) fn e(name: impl AsRef<[u8]>, kind: EntryType) -> E {
    E {
        name: name.as_ref().to_vec(),
        kind,
        link: Vec::new(),
        data: Vec::new(),
        mode: if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        },
        uid: 0,
        gid: 0,
        mtime: 1_600_000_000,
        dev: (0, 0),
        pax: Vec::new(),
        flag: None,
    }
}

pub(super) fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> E {
    E {
        data: data.as_ref().to_vec(),
        ..e(name, EntryType::Regular)
    }
}

pub(super) fn dir(name: impl AsRef<[u8]>) -> E {
    e(name, EntryType::Directory)
}

pub(super) fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
    E {
        link: target.as_ref().to_vec(),
        mode: 0o777,
        ..e(name, EntryType::Symlink)
    }
}

pub(super) fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
    E {
        link: target.as_ref().to_vec(),
        ..e(name, EntryType::Link)
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

impl Tar {
    pub(super) fn new() -> Self {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub(super) fn add(mut self, e: E) -> Self {
        let mut pax = e.pax.clone();
        if e.name.len() > 100 {
            pax.push(("path".into(), e.name.clone()));
        }
        if !pax.is_empty() {
            let mut data = Vec::new();
            for (k, v) in &pax {
                data.extend(pax_record(k, v));
            }
            let mut h = Header::new_ustar();
            h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            h.set_entry_type(EntryType::XHeader);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            self.b.append(&h, data.as_slice()).unwrap();
        }
        let mut h = Header::new_ustar();
        let n = e.name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&e.name[..n]);
        let l = e.link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&e.link[..l]);
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_device_major(e.dev.0).unwrap();
        h.set_device_minor(e.dev.1).unwrap();
        if let Some(flag) = e.flag {
            h.as_old_mut().linkflag[0] = flag;
        }
        h.set_cksum();
        self.b.append(&h, e.data.as_slice()).unwrap();
        self
    }

    pub(super) fn build(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub(super) fn tar_of(entries: impl IntoIterator<Item = E>) -> Vec<u8> {
    entries.into_iter().fold(Tar::new(), Tar::add).build()
}

pub(super) fn meta(p: impl AsRef<Path>) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap()
}

pub(super) fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(p, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(Errno::NODATA) => None,
        Err(e) => panic!("getxattr {}: {e}", p.display()),
    }
}
