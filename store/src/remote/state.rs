//! What berth remembers about registries between runs, in `<root>/remote/state.json`:
//! the gzip digest each uncompressed layer (by diff ID) was pushed as, so a second push neither
//! recompresses nor re-uploads, and which repositories each blob was seen in, so a push to
//! another repository of the same registry can mount instead of upload.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::root::Store;

use super::error::{RemoteError, Result};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// diff ID → compressed blob pushed for it.
    #[serde(default)]
    pub compressed: BTreeMap<String, Compressed>,
    /// blob digest → `registry/repository` names it is known to be in.
    #[serde(default)]
    pub locations: BTreeMap<String, Vec<String>>,
    /// A pulled layer's decompressed length (by its digest), counted as it downloaded: a later
    /// pull that finds the layer stored reads its size here instead of inflating it again.
    #[serde(default)]
    pub unpacked: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compressed {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

fn dir(store: &Store) -> PathBuf {
    store.root().join("remote")
}

fn io_err(what: &str, p: &std::path::Path, e: impl std::fmt::Display) -> RemoteError {
    RemoteError::Other(format!("{what} {}: {e}", p.display()))
}

impl State {
    pub fn load(store: &Store) -> Result<State> {
        let p = dir(store).join("state.json");
        match fs::read(&p) {
            // A damaged cache only costs a recompression: start afresh rather than fail.
            Ok(b) => Ok(serde_json::from_slice(&b).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io_err("reading", &p, e)),
        }
    }

    /// Read-modify-write under a file lock, so concurrent pushes merge their facts.
    pub fn update(store: &Store, f: impl FnOnce(&mut State)) -> Result<()> {
        let d = dir(store);
        fs::create_dir_all(&d).map_err(|e| io_err("creating", &d, e))?;
        let lock_path = d.join("state.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err("opening", &lock_path, e))?;
        lock.lock().map_err(|e| io_err("locking", &lock_path, e))?;
        let mut s = State::load(store)?;
        f(&mut s);
        let bytes = serde_json::to_vec(&s).expect("state serializes");
        store.write_atomic(&d.join("state.json"), &bytes)?;
        Ok(())
    }

    pub fn note_location(&mut self, digest: &str, repo: &str) {
        let l = self.locations.entry(digest.to_string()).or_default();
        if !l.iter().any(|r| r == repo) {
            l.push(repo.to_string());
            // Bounded: a blob pushed to many repositories needs only a few mount sources.
            if l.len() > 8 {
                l.remove(0);
            }
        }
    }

    /// Other repositories of `domain` known to hold `digest` (path part only).
    pub fn mount_sources(&self, digest: &str, domain: &str, except_repo: &str) -> Vec<String> {
        let prefix = format!("{domain}/");
        self.locations
            .get(digest)
            .map(|l| {
                l.iter()
                    .rev()
                    .filter_map(|r| r.strip_prefix(&prefix))
                    .filter(|p| *p != except_repo)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_sources_are_same_registry_other_repos() {
        let mut s = State::default();
        s.note_location("sha256:a", "r:5000/x/one");
        s.note_location("sha256:a", "r:5000/x/one");
        s.note_location("sha256:a", "other:5000/two");
        s.note_location("sha256:a", "r:5000/three");
        assert_eq!(s.locations["sha256:a"].len(), 3);
        assert_eq!(
            s.mount_sources("sha256:a", "r:5000", "x/one"),
            vec!["three"]
        );
        assert!(s.mount_sources("sha256:b", "r:5000", "x").is_empty());
    }

    #[test]
    fn update_persists_and_merges() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        State::update(&store, |s| {
            s.compressed.insert(
                "sha256:d".into(),
                Compressed {
                    digest: "sha256:c".into(),
                    size: 3,
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                },
            );
        })
        .unwrap();
        State::update(&store, |s| s.note_location("sha256:c", "h/r")).unwrap();
        let s = State::load(&store).unwrap();
        assert_eq!(s.compressed["sha256:d"].size, 3);
        assert_eq!(s.locations["sha256:c"], vec!["h/r"]);
    }
}
