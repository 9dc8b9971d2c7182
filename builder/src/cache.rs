//! The step cache: a step's key is a hash of its parent's key, its instruction after
//! expansion, the build args it uses and (COPY/ADD) the content hash of the files it selects.
//! `ROOT/builder/cache/<key>.json` records the image the step produced and what the key was
//! made of; `ROOT/builder/cache/children/<parent key>` lists the keys built on a parent, so a
//! miss can say what changed since the last build of that step.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;

use berth_store::Image;
use berth_store::oci_spec::image::{Digest, MediaType};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What a step's key is made of.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyInputs {
    pub parent: String,
    /// The instruction as written, for messages only (not part of the key).
    #[serde(default)]
    pub text: String,
    /// The instruction after expansion, as a stable text.
    pub instruction: String,
    /// Build args the step uses.
    pub args: Vec<(String, String)>,
    /// COPY/ADD: source as written -> content hash.
    pub files: BTreeMap<String, String>,
}

impl KeyInputs {
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"berth-build-v1\0");
        h.update(self.parent.as_bytes());
        h.update([0]);
        h.update(self.instruction.as_bytes());
        h.update([0]);
        for (k, v) in &self.args {
            h.update(format!("{k}={v}\0").as_bytes());
        }
        h.update([0]);
        for (k, v) in &self.files {
            h.update(format!("{k}\0{v}\0").as_bytes());
        }
        hex::encode(h.finalize())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    inputs: KeyInputs,
    id: String,
    manifest: String,
    manifest_size: u64,
    created: Option<String>,
    size: u64,
}

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(state_root: &std::path::Path) -> Cache {
        Cache {
            dir: state_root.join("builder").join("cache"),
        }
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    fn read(&self, key: &str) -> Option<Entry> {
        let bytes = fs::read(self.entry_path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The image cached under `key`, if its record is readable.
    pub fn get(&self, key: &str) -> Option<Image> {
        let e = self.read(key)?;
        Some(Image {
            id: e.id.parse::<Digest>().ok()?,
            manifest: e.manifest.parse::<Digest>().ok()?,
            manifest_size: e.manifest_size,
            manifest_media_type: MediaType::ImageManifest,
            created: e.created,
            size: e.size,
            tags: Vec::new(),
            digests: Vec::new(),
        })
    }

    /// Record `img` as the result of the step with `inputs` (best effort: a cache that cannot
    /// be written only makes the next build slower).
    pub fn put(&self, inputs: &KeyInputs, img: &Image) {
        let key = inputs.key();
        let e = Entry {
            inputs: inputs.clone(),
            id: img.id.to_string(),
            manifest: img.manifest.to_string(),
            manifest_size: img.manifest_size,
            created: img.created.clone(),
            size: img.size,
        };
        let children = self.dir.join("children");
        if fs::create_dir_all(&children).is_err() {
            return;
        }
        if let Ok(bytes) = serde_json::to_vec(&e)
            && let Ok(mut tmp) = tempfile::NamedTempFile::new_in(&self.dir)
            && tmp.write_all(&bytes).is_ok()
        {
            let _ = tmp.persist(self.entry_path(&key));
        }
        let list = children.join(&inputs.parent);
        let known = fs::read_to_string(&list).unwrap_or_default();
        if !known.lines().any(|l| l == key)
            && let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(&list)
        {
            let _ = writeln!(f, "{key}");
        }
    }

    /// Why `inputs` missed: compared with the steps built before on the same parent.
    pub fn explain(&self, inputs: &KeyInputs) -> String {
        let list =
            fs::read_to_string(self.dir.join("children").join(&inputs.parent)).unwrap_or_default();
        let before: Vec<KeyInputs> = list
            .lines()
            .filter_map(|k| self.read(k))
            .map(|e| e.inputs)
            .collect();
        if before.is_empty() {
            return "not built before".into();
        }
        // The same instruction with different args or files says the most.
        if let Some(b) = before
            .iter()
            .rev()
            .find(|b| b.instruction == inputs.instruction)
        {
            let changed_args: Vec<&str> = inputs
                .args
                .iter()
                .filter(|a| !b.args.contains(a))
                .map(|a| a.0.as_str())
                .chain(
                    b.args
                        .iter()
                        .filter(|a| !inputs.args.iter().any(|x| x.0 == a.0))
                        .map(|a| a.0.as_str()),
                )
                .collect();
            if !changed_args.is_empty() {
                return format!("build arg {} changed", changed_args.join(", "));
            }
            let changed_files: Vec<&str> = inputs
                .files
                .iter()
                .filter(|(k, v)| b.files.get(*k) != Some(v))
                .map(|(k, _)| k.as_str())
                .collect();
            if !changed_files.is_empty() {
                return format!(
                    "context file {} changed since the cached step",
                    changed_files.join(", ")
                );
            }
            return "cached result is gone from the store".into();
        }
        // Another step of the same kind on this parent was this one before it was edited; one of
        // another kind (a sibling stage's step on the same base) says nothing about this one.
        let keyword = |s: &str| {
            s.split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase()
        };
        let Some(last) = before
            .iter()
            .rev()
            .find(|b| keyword(&b.text) == keyword(&inputs.text))
        else {
            return "not built before".into();
        };
        let first_line = |s: &str| s.lines().next().unwrap_or("").to_string();
        format!("instruction changed (was: {})", first_line(&last.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path());
        let mut a = KeyInputs {
            parent: "p".into(),
            text: "COPY a /a".into(),
            instruction: "COPY a /a".into(),
            args: vec![("V".into(), "1".into())],
            files: [("a".to_string(), "h1".to_string())].into(),
        };
        assert_eq!(cache.explain(&a), "not built before");
        let img = Image {
            id: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
                .parse()
                .unwrap(),
            manifest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"
                .parse()
                .unwrap(),
            manifest_size: 1,
            manifest_media_type: MediaType::ImageManifest,
            created: None,
            size: 0,
            tags: vec![],
            digests: vec![],
        };
        cache.put(&a, &img);
        assert_eq!(cache.get(&a.key()).unwrap().id, img.id);
        a.files.insert("a".into(), "h2".into());
        assert!(cache.explain(&a).contains("context file a changed"));
        a.files.insert("a".into(), "h1".into());
        a.args[0].1 = "2".into();
        assert_eq!(cache.explain(&a), "build arg V changed");
        a.instruction = "COPY b /b".into();
        a.text = "COPY b /b".into();
        assert_eq!(cache.explain(&a), "instruction changed (was: COPY a /a)");
        // A step of another kind on the same parent (another stage's) explains nothing.
        a.instruction = "ARG X".into();
        a.text = "ARG X".into();
        assert_eq!(cache.explain(&a), "not built before");
    }
}
