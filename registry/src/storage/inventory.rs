//! A synchronous view of what a backend stores, for garbage collection: list repositories,
//! manifests, tags, referrers, blobs, links and upload sessions (with the mtimes the grace
//! period is judged by), and remove blobs, links and sessions. [`FsInventory`] reads the layout
//! `fs.rs` writes and never creates anything, so pointing it at a wrong directory changes
//! nothing; `object_inventory.rs` reads the same layout in a bucket.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oci_spec::image::Digest;
use uuid::Uuid;

use super::StorageResult;
use super::hash::{ALG_DIRS, digest_from_hex};
use super::layout::{Layout, io_at, not_found_is_none, remove_if_exists};
use crate::endpoint::Name;

/// Something stored, with its last modification time (None when it could not be read).
#[derive(Debug, Clone)]
pub struct Stamped<T> {
    pub item: T,
    pub mtime: Option<SystemTime>,
}

/// What gc needs from a backend's storage.
pub trait Inventory {
    /// Every repository, sorted.
    fn repositories(&self) -> StorageResult<Vec<Name>>;
    /// Manifests linked into `repo`, tagged or not.
    fn revisions(&self, repo: &Name) -> StorageResult<Vec<Stamped<Digest>>>;
    fn has_revision(&self, repo: &Name, d: &Digest) -> StorageResult<bool>;
    /// The digests `repo`'s tags point at.
    fn tag_targets(&self, repo: &Name) -> StorageResult<Vec<Digest>>;
    /// Manifests in `repo` recorded as having `subject` as their subject.
    fn referrers_of(&self, repo: &Name, subject: &Digest) -> StorageResult<Vec<Digest>>;
    /// A stored blob's bytes (None when it is not stored).
    fn read_blob(&self, d: &Digest) -> StorageResult<Option<Vec<u8>>>;
    /// Every stored blob.
    fn blobs(&self) -> StorageResult<Vec<Stamped<Digest>>>;
    /// Blobs linked into `repo`.
    fn links(&self, repo: &Name) -> StorageResult<Vec<Stamped<Digest>>>;
    fn remove_blob(&self, d: &Digest) -> StorageResult<bool>;
    fn remove_link(&self, repo: &Name, d: &Digest) -> StorageResult<bool>;
    /// Repositories holding upload sessions, sorted: a first push into a repository has a
    /// session and nothing else there, so these are not all among [`Inventory::repositories`].
    fn upload_repositories(&self) -> StorageResult<Vec<Name>>;
    /// Upload sessions of `repo`, stamped with the last time any of their parts changed.
    fn uploads(&self, repo: &Name) -> StorageResult<Vec<Stamped<Uuid>>>;
    fn remove_upload(&self, repo: &Name, id: Uuid) -> StorageResult<bool>;
    /// Data objects that no blob descriptor names and no upload session writes (what a finish
    /// that crashed before publishing leaves), by key. Backends that store every blob whole
    /// have none.
    fn orphaned_data(&self) -> StorageResult<Vec<Stamped<String>>> {
        Ok(Vec::new())
    }
    fn remove_data(&self, _key: &str) -> StorageResult<bool> {
        Ok(false)
    }
}

pub struct FsInventory {
    l: Layout,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::symlink_metadata(p).and_then(|m| m.modified()).ok()
}

/// File names of `dir` (empty when it does not exist).
fn names(dir: &Path) -> StorageResult<Vec<(String, PathBuf)>> {
    let Some(entries) = not_found_is_none(fs::read_dir(dir), dir)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io_at(dir))?;
        if let Some(n) = e.file_name().to_str() {
            out.push((n.to_string(), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Digests named by the `<hex>` files of `dir`; stray names are not ours and are skipped.
fn digests_in(dir: &Path) -> StorageResult<Vec<Stamped<Digest>>> {
    Ok(names(dir)?
        .into_iter()
        .filter_map(|(n, p)| {
            let d = digest_from_hex(&n)?;
            Some(Stamped {
                item: d,
                mtime: mtime(&p),
            })
        })
        .collect())
}

impl FsInventory {
    /// The digests of `dir/<algorithm>/<hex>` for every algorithm.
    fn per_algorithm(&self, dir: &Path) -> StorageResult<Vec<Stamped<Digest>>> {
        let mut out = Vec::new();
        for alg in ALG_DIRS {
            out.extend(digests_in(&dir.join(alg))?);
        }
        Ok(out)
    }

    /// Open an existing storage root; None for a directory that does not look like one.
    pub fn open(root: &Path) -> Option<FsInventory> {
        ["blobs/sha256", "repositories"]
            .iter()
            .all(|d| root.join(d).is_dir())
            .then(|| FsInventory {
                l: Layout {
                    root: root.to_path_buf(),
                },
            })
    }

    /// Repositories whose directory holds one of `markers`, sorted.
    fn repos_holding(&self, markers: &[&str]) -> StorageResult<Vec<Name>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.l.root.join("repositories"), String::new())];
        while let Some((dir, name)) = stack.pop() {
            let mut is_repo = false;
            for (n, p) in names(&dir)? {
                if markers.contains(&n.as_str()) {
                    is_repo = true;
                } else if !n.starts_with('_') && p.is_dir() {
                    let child = if name.is_empty() {
                        n
                    } else {
                        format!("{name}/{n}")
                    };
                    stack.push((p, child));
                }
            }
            if is_repo && let Ok(n) = Name::parse(&name) {
                out.push(n);
            }
        }
        out.sort();
        Ok(out)
    }
}

impl Inventory for FsInventory {
    /// Every repository (a directory holding `_manifests` or `_layers`), sorted.
    fn repositories(&self) -> StorageResult<Vec<Name>> {
        self.repos_holding(&["_manifests", "_layers"])
    }

    fn upload_repositories(&self) -> StorageResult<Vec<Name>> {
        self.repos_holding(&["_uploads"])
    }

    /// Manifests linked into `repo`, tagged or not.
    fn revisions(&self, repo: &Name) -> StorageResult<Vec<Stamped<Digest>>> {
        self.per_algorithm(&self.l.repo(repo).join("_manifests/revisions"))
    }

    fn has_revision(&self, repo: &Name, d: &Digest) -> StorageResult<bool> {
        Ok(self.l.revision(repo, d).exists())
    }

    /// The digests `repo`'s tags point at.
    fn tag_targets(&self, repo: &Name) -> StorageResult<Vec<Digest>> {
        let mut out = Vec::new();
        for (_, p) in names(&self.l.tags_dir(repo))? {
            if let Some(d) = self.l.read_digest_file(&p)? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Manifests in `repo` recorded as having `subject` as their subject.
    fn referrers_of(&self, repo: &Name, subject: &Digest) -> StorageResult<Vec<Digest>> {
        let dir = self.l.referrers_dir(repo, subject);
        Ok(digests_in(&dir)?.into_iter().map(|s| s.item).collect())
    }

    /// A stored blob's bytes (None when it is not stored).
    fn read_blob(&self, d: &Digest) -> StorageResult<Option<Vec<u8>>> {
        let p = self.l.blob(d);
        not_found_is_none(fs::read(&p), &p)
    }

    /// Every stored blob.
    fn blobs(&self) -> StorageResult<Vec<Stamped<Digest>>> {
        let mut out = Vec::new();
        for alg in ALG_DIRS {
            for (_, prefix) in names(&self.l.root.join("blobs").join(alg))? {
                if prefix.is_dir() {
                    out.extend(digests_in(&prefix)?);
                }
            }
        }
        Ok(out)
    }

    /// Blobs linked into `repo`.
    fn links(&self, repo: &Name) -> StorageResult<Vec<Stamped<Digest>>> {
        self.per_algorithm(&self.l.repo(repo).join("_layers"))
    }

    fn remove_blob(&self, d: &Digest) -> StorageResult<bool> {
        remove_if_exists(&self.l.blob(d))
    }

    fn remove_link(&self, repo: &Name, d: &Digest) -> StorageResult<bool> {
        remove_if_exists(&self.l.layer_link(repo, d))
    }

    /// Upload sessions of `repo`, stamped with the last time any of their files changed.
    fn uploads(&self, repo: &Name) -> StorageResult<Vec<Stamped<Uuid>>> {
        let dir = self.l.repo(repo).join("_uploads");
        Ok(names(&dir)?
            .into_iter()
            .filter_map(|(n, p)| {
                let id = Uuid::parse_str(&n).ok()?;
                let mtime = [p.clone(), p.join("state"), p.join("data")]
                    .iter()
                    .filter_map(|f| mtime(f))
                    .max();
                Some(Stamped { item: id, mtime })
            })
            .collect())
    }

    fn remove_upload(&self, repo: &Name, id: Uuid) -> StorageResult<bool> {
        let dir = self.l.upload(repo, id);
        Ok(not_found_is_none(fs::remove_dir_all(&dir), &dir)?.is_some())
    }
}
