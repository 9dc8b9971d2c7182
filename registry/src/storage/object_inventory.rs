//! The bucket seen as an [`Inventory`], so `berth registry gc` runs its one mark-and-sweep
//! against a bucket while replicas keep serving. Times are the objects' `last_modified` (the
//! object store's clock); listing never reads object bodies. Calls block on a private runtime:
//! gc is a synchronous command.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use futures::TryStreamExt;
use object_store::ObjectMeta;
use object_store::path::Path as Key;
use oci_spec::image::Digest;
use uuid::Uuid;

use super::StorageResult;
use super::hash::{ALG_DIRS, digest_from_hex};
use super::inventory::{Inventory, Stamped};
use super::object::{BlobRef, Bucket, ObjectStorage};
use super::parts::store_err;
use super::{Storage, StorageError};
use crate::endpoint::{Name, parse_digest};

pub struct ObjectInventory {
    st: ObjectStorage,
    rt: tokio::runtime::Runtime,
}

fn stamp(m: &ObjectMeta) -> Option<SystemTime> {
    Some(SystemTime::from(m.last_modified))
}

fn hex_digest(name: &str) -> Option<Digest> {
    digest_from_hex(name)
}

impl ObjectInventory {
    /// Open (and probe) the bucket `cfg` names.
    pub fn open_bucket(
        cfg: &crate::config::BucketConfig,
        read_only: bool,
    ) -> Result<ObjectInventory, super::cloud::OpenError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(super::cloud::OpenError::Runtime)?;
        let st = rt.block_on(super::cloud::open(cfg, read_only))?;
        Ok(ObjectInventory { st, rt })
    }

    /// An inventory over an already opened backend (tests use the in-memory store).
    pub fn over(st: ObjectStorage) -> std::io::Result<ObjectInventory> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(ObjectInventory { st, rt })
    }

    fn b(&self) -> &Bucket {
        self.st.bucket()
    }

    /// Every object under `dir` (recursively).
    fn list(&self, dir: &Key) -> StorageResult<Vec<ObjectMeta>> {
        let b = self.b();
        self.rt
            .block_on(b.store.list(Some(dir)).try_collect())
            .map_err(|e| store_err(dir, e))
    }

    /// `<hex>` objects directly under `dir`, as digests.
    fn digests_in(&self, dir: &Key) -> StorageResult<Vec<Stamped<Digest>>> {
        let leaves = self.rt.block_on(self.b().leaves(dir))?;
        Ok(leaves
            .iter()
            .filter_map(|m| {
                Some(Stamped {
                    item: hex_digest(m.location.filename()?)?,
                    mtime: stamp(m),
                })
            })
            .collect())
    }

    /// The data objects blob descriptors name.
    fn named_data(&self) -> StorageResult<HashSet<Uuid>> {
        let b = self.b();
        let mut named = HashSet::new();
        let mut refs = Vec::new();
        for alg in ALG_DIRS {
            refs.extend(self.list(&b.key(&format!("blobs/ref/{alg}")))?);
        }
        for m in refs {
            let Some(raw) = self.rt.block_on(b.read(&m.location))? else {
                continue;
            };
            match serde_json::from_slice::<BlobRef>(&raw) {
                Ok(r) => {
                    named.insert(r.data);
                }
                // An unreadable descriptor could name any of them: delete none.
                Err(e) => {
                    return Err(StorageError::Corrupt {
                        path: m.location.to_string().into(),
                        reason: format!("{e}; no data object is deleted until it is fixed"),
                    });
                }
            }
        }
        Ok(named)
    }

    /// Every upload session in the bucket, with its repository: found by listing all of
    /// `repositories/`, since a first push into a repository has a session and nothing else
    /// there.
    fn sessions(&self) -> StorageResult<Vec<(Name, Uuid)>> {
        let root = self.b().key("repositories");
        let skip = root.parts().count();
        let mut out = Vec::new();
        for m in self.list(&root)? {
            let parts: Vec<_> = m.location.parts().skip(skip).collect();
            // Repository name components never start with `_`.
            if let Some(at) = parts.iter().position(|p| p.as_ref() == "_uploads")
                && let Some(id) = parts.get(at + 1)
                && let Ok(id) = Uuid::parse_str(id.as_ref())
                && let Ok(repo) = Name::parse(
                    &parts[..at]
                        .iter()
                        .map(|p| p.as_ref())
                        .collect::<Vec<_>>()
                        .join("/"),
                )
            {
                out.push((repo, id));
            }
        }
        Ok(out)
    }

    fn repo_key(&self, repo: &Name, rest: &str) -> Key {
        self.b().key(&format!("{}/{rest}", self.b().repo(repo)))
    }

    /// The digests under `<repo>/<rest>/<algorithm>/` for every algorithm.
    fn per_algorithm(&self, repo: &Name, rest: &str) -> StorageResult<Vec<Stamped<Digest>>> {
        let mut out = Vec::new();
        for alg in ALG_DIRS {
            out.extend(self.digests_in(&self.repo_key(repo, &format!("{rest}/{alg}")))?);
        }
        Ok(out)
    }
}

impl Inventory for ObjectInventory {
    fn repositories(&self) -> StorageResult<Vec<Name>> {
        let names = self.rt.block_on(self.st.repositories())?;
        Ok(names.iter().filter_map(|n| Name::parse(n).ok()).collect())
    }

    fn revisions(&self, repo: &Name) -> StorageResult<Vec<Stamped<Digest>>> {
        self.per_algorithm(repo, "_manifests/revisions")
    }

    fn has_revision(&self, repo: &Name, d: &Digest) -> StorageResult<bool> {
        self.rt.block_on(self.st.manifest_exists(repo, d))
    }

    fn tag_targets(&self, repo: &Name) -> StorageResult<Vec<Digest>> {
        let b = self.b();
        self.rt.block_on(async {
            let mut out = Vec::new();
            for o in b.leaves(&b.tags_dir(repo)).await? {
                let Some(raw) = b.read(&o.location).await? else {
                    continue;
                };
                let s = String::from_utf8_lossy(&raw);
                let d = parse_digest(s.trim()).map_err(|e| StorageError::Corrupt {
                    path: o.location.to_string().into(),
                    reason: e.message,
                })?;
                out.push(d);
            }
            Ok(out)
        })
    }

    fn referrers_of(&self, repo: &Name, subject: &Digest) -> StorageResult<Vec<Digest>> {
        let dir = self.b().referrers_dir(repo, subject);
        Ok(self.digests_in(&dir)?.into_iter().map(|s| s.item).collect())
    }

    fn read_blob(&self, d: &Digest) -> StorageResult<Option<Vec<u8>>> {
        Ok(self.rt.block_on(self.b().read_blob(d))?.map(|b| b.to_vec()))
    }

    /// Blobs stored inline and by descriptor (a blob stored both ways, by two pushes racing,
    /// is one, as new as its newer object).
    fn blobs(&self) -> StorageResult<Vec<Stamped<Digest>>> {
        let mut all = Vec::new();
        for alg in ALG_DIRS {
            all.extend(self.list(&self.b().key(&format!("blobs/{alg}")))?);
            all.extend(self.list(&self.b().key(&format!("blobs/ref/{alg}")))?);
        }
        let mut newest: HashMap<Digest, Option<SystemTime>> = HashMap::new();
        for m in &all {
            let Some(d) = m.location.filename().and_then(hex_digest) else {
                continue;
            };
            let t = newest.entry(d).or_insert(None);
            *t = (*t).max(stamp(m));
        }
        let mut out: Vec<Stamped<Digest>> = newest
            .into_iter()
            .map(|(item, mtime)| Stamped { item, mtime })
            .collect();
        out.sort_by_key(|a| a.item.to_string());
        Ok(out)
    }

    fn links(&self, repo: &Name) -> StorageResult<Vec<Stamped<Digest>>> {
        self.per_algorithm(repo, "_layers")
    }

    fn remove_blob(&self, d: &Digest) -> StorageResult<bool> {
        self.rt.block_on(self.b().remove_blob(d))
    }

    fn remove_link(&self, repo: &Name, d: &Digest) -> StorageResult<bool> {
        self.rt.block_on(self.st.blob_delete(repo, d))
    }

    fn upload_repositories(&self) -> StorageResult<Vec<Name>> {
        let mut repos: Vec<Name> = self.sessions()?.into_iter().map(|(r, _)| r).collect();
        repos.sort();
        repos.dedup();
        Ok(repos)
    }

    fn uploads(&self, repo: &Name) -> StorageResult<Vec<Stamped<Uuid>>> {
        let dir = self.repo_key(repo, "_uploads");
        let mut newest: HashMap<Uuid, Option<SystemTime>> = HashMap::new();
        for m in self.list(&dir)? {
            let parts: Vec<_> = m.location.parts().collect();
            let Some(id) = parts
                .iter()
                .rev()
                .nth(1)
                .and_then(|p| Uuid::parse_str(p.as_ref()).ok())
            else {
                continue;
            };
            let t = newest.entry(id).or_insert(None);
            *t = (*t).max(stamp(&m));
        }
        let mut out: Vec<Stamped<Uuid>> = newest
            .into_iter()
            .map(|(item, mtime)| Stamped { item, mtime })
            .collect();
        out.sort_by_key(|s| s.item);
        Ok(out)
    }

    fn remove_upload(&self, repo: &Name, id: Uuid) -> StorageResult<bool> {
        let existed = self.rt.block_on(self.st.upload_cancel(repo, id))?;
        // Whatever a crash left next to (or without) the state object.
        let dir = self.b().key(&self.b().upload_dir(repo, id));
        let rest = self.list(&dir)?;
        for m in &rest {
            self.rt.block_on(self.b().delete(&m.location))?;
        }
        Ok(existed || !rest.is_empty())
    }

    /// Listed in this order, so a finish running meanwhile is never mistaken for a crashed
    /// one: data objects, then upload sessions, then descriptors. A data object that exists
    /// was completed before the first listing; its session deletes its state only after
    /// creating the descriptor, so either the session shows in the second listing or the
    /// descriptor in the third. (The data object's mtime alone would not do: S3 stamps a
    /// multipart object with the time its upload began.) Listing the sessions and the second
    /// pass over the descriptors only happen when the first pass leaves data objects
    /// unexplained (crashed finishes, or finishes under way).
    fn orphaned_data(&self) -> StorageResult<Vec<Stamped<String>>> {
        let b = self.b();
        let data = self.list(&b.data_dir())?;
        let mut candidates: Vec<(Uuid, &ObjectMeta)> = data
            .iter()
            .filter_map(|m| Some((Uuid::parse_str(m.location.filename()?).ok()?, m)))
            .collect();
        let named = self.named_data()?;
        candidates.retain(|(id, _)| !named.contains(id));
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let sessions: HashSet<Uuid> = self.sessions()?.into_iter().map(|(_, id)| id).collect();
        candidates.retain(|(id, _)| !sessions.contains(id));
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let named = self.named_data()?;
        Ok(candidates
            .into_iter()
            .filter(|(id, _)| !named.contains(id))
            .map(|(_, m)| Stamped {
                item: m.location.to_string(),
                mtime: stamp(m),
            })
            .collect())
    }

    fn remove_data(&self, key: &str) -> StorageResult<bool> {
        let b = self.b();
        let key = Key::from(key);
        self.rt.block_on(async {
            let there = b.size(&key).await?.is_some();
            b.delete(&key).await?;
            Ok(there)
        })
    }
}
