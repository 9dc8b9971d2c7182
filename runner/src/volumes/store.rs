//! The volume store: `ROOT/volumes/<name>/` holds the data (`_data/`) and a small JSON file
//! (`volume.json`: created time, labels, driver options, whether it is anonymous). A volume is
//! built in a temp directory and renamed into place, so a half-made one is never listed; it is
//! removed by renaming it aside first. Removal and the "is it in use" check hold the containers
//! lock, the same one `create` holds while it plans its mounts, so a volume cannot vanish between
//! a container's check and its record.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::conflict::VolumeConflict;
use crate::container::Containers;
use crate::container::store::containers_lock;
use crate::error::{IoContext, Result, RunnerError};
use crate::persist::{read_json, write_json};

/// The label Docker 23+ puts on anonymous volumes (`volume prune` without `-a` removes only those).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Driver options the `local` driver knows (moby's `validOpts`).
const VALID_OPTS: &[&str] = &["type", "device", "o", "size"];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeMeta {
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub anonymous: bool,
}

#[derive(Debug, Clone)]
pub struct Volume {
    pub name: String,
    pub meta: VolumeMeta,
    pub dir: PathBuf,
}

impl Volume {
    /// Where the data lives (Docker's `Mountpoint`).
    pub fn data(&self) -> PathBuf {
        self.dir.join("_data")
    }

    /// Docker's `volume inspect` document.
    pub fn inspect_json(&self) -> serde_json::Value {
        serde_json::json!({
            "CreatedAt": self.meta.created_at,
            "Driver": "local",
            "Labels": self.meta.labels,
            "Mountpoint": self.data(),
            "Name": self.name,
            "Options": self.meta.options,
            "Scope": "local",
        })
    }
}

pub fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// The local driver's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<()> {
    if name.len() == 1 {
        return Err(RunnerError::invalid(
            "volume name",
            "volume name is too short, names should be at least two alphanumeric characters",
        ));
    }
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(RunnerError::invalid(
            "volume name",
            format!(
                "{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            ),
        ));
    }
    Ok(())
}

pub fn validate_options(options: &BTreeMap<String, String>) -> Result<()> {
    for k in options.keys() {
        if !VALID_OPTS.contains(&k.as_str()) {
            return Err(RunnerError::invalid("option key", format!("{k:?}")));
        }
    }
    for (have, need) in [("device", "type"), ("type", "device")] {
        if options.contains_key(have) && !options.contains_key(need) {
            return Err(RunnerError::invalid(
                "volume options",
                format!("missing required option: {need:?}"),
            ));
        }
    }
    Ok(())
}

pub fn get(root: &Path, name: &str) -> Result<Volume> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(RunnerError::NoSuchVolume(name.to_string()));
    }
    let dir = volumes_dir(root).join(name);
    let meta_path = dir.join("volume.json");
    if !meta_path.exists() {
        return Err(RunnerError::NoSuchVolume(name.to_string()));
    }
    Ok(Volume {
        name: name.to_string(),
        meta: read_json(&meta_path)?,
        dir,
    })
}

/// Create a volume, or return the existing one of that name (as Docker does). `name` None makes
/// an anonymous volume with a random 64-hex name. The bool says whether it was made now.
pub fn create(
    root: &Path,
    name: Option<&str>,
    labels: BTreeMap<String, String>,
    options: BTreeMap<String, String>,
) -> Result<(Volume, bool)> {
    let anonymous = name.is_none();
    let name = match name {
        Some(n) => {
            validate_name(n)?;
            n.to_string()
        }
        None => crate::names::new_id(),
    };
    validate_options(&options)?;
    if let Ok(v) = get(root, &name) {
        return Ok((v, false));
    }
    let base = volumes_dir(root);
    fs::create_dir_all(&base).ctx("creating", &base)?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&base)
        .ctx("creating a temp directory in", &base)?;
    let mut labels = labels;
    if anonymous {
        labels.insert(ANONYMOUS_LABEL.into(), String::new());
    }
    let meta = VolumeMeta {
        created_at: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        labels,
        options,
        anonymous,
    };
    let data = tmp.path().join("_data");
    fs::create_dir(&data).ctx("creating", &data)?;
    write_json(&tmp.path().join("volume.json"), &meta)?;
    let dir = base.join(&name);
    match fs::rename(tmp.path(), &dir) {
        Ok(()) => {
            let _ = tmp.keep();
            Ok((Volume { name, meta, dir }, true))
        }
        // Made by someone else meanwhile: theirs stands.
        Err(_) if dir.join("volume.json").exists() => Ok((get(root, &name)?, false)),
        Err(e) => Err(RunnerError::io("creating volume", dir, e)),
    }
}

pub fn list(root: &Path) -> Result<Vec<Volume>> {
    let base = volumes_dir(root);
    let rd = match fs::read_dir(&base) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RunnerError::io("listing", base, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.ctx("listing", &base)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        match get(root, &name) {
            Ok(v) => out.push(v),
            Err(RunnerError::NoSuchVolume(_)) => {}
            Err(e) => tracing::warn!("skipping volume {name}: {e}"),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// For each volume name, the IDs of the containers (running or not) whose mounts use it.
pub fn users(runner: &impl Containers) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in runner.list()? {
        for m in &c.record.mounts {
            if m.kind == "volume" {
                out.entry(m.name.clone())
                    .or_default()
                    .push(c.record.id.clone());
            }
        }
    }
    Ok(out)
}

/// Delete a volume's directory (caller holds the containers lock and checked it is unused).
pub fn delete(root: &Path, v: &Volume) -> Result<()> {
    crate::rootfs::unmount_all_under(&v.dir)?;
    let doomed = volumes_dir(root).join(format!(".rm-{}", v.name));
    match fs::rename(&v.dir, &doomed) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RunnerError::io("removing volume", &v.dir, e)),
    }
    fs::remove_dir_all(&doomed).ctx("removing", &doomed)
}

/// Docker's `volume rm`: refused while any container uses it.
pub fn remove(runner: &impl Containers, name: &str) -> Result<()> {
    let root = runner.root();
    let _lock = containers_lock(root)?;
    let v = get(root, name)?;
    if let Some(ids) = users(runner)?.get(name) {
        return Err(VolumeConflict::InUse {
            name: name.to_string(),
            containers: ids.clone(),
        }
        .into());
    }
    delete(root, &v)
}

/// Bytes under `dir`, not following symlinks.
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

/// Docker's `volume prune`: unused volumes that `keep` does not keep; with `all` false only
/// anonymous ones. Returns (name, bytes) of each removed volume.
pub fn prune(
    runner: &impl Containers,
    all: bool,
    keep: &dyn Fn(&Volume) -> bool,
) -> Result<Vec<(String, u64)>> {
    let root = runner.root();
    let _lock = containers_lock(root)?;
    let used = users(runner)?;
    let mut out = Vec::new();
    for v in list(root)? {
        if used.contains_key(&v.name) || (!all && !v.meta.anonymous) || keep(&v) {
            continue;
        }
        let size = disk_usage(&v.data());
        delete(root, &v)?;
        out.push((v.name, size));
    }
    Ok(out)
}
