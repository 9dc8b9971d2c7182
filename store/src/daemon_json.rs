//! Which `daemon.json` berth reads, as Docker's daemon reads its own: the file named by
//! `$BERTH_DAEMON_CONFIG`, else `<root>/daemon.json`, else (for the default root only)
//! `/etc/berth/daemon.json`. Each part of berth takes its own keys from it (the default
//! network's in the runner; `insecure-registries` and `registry-mirrors` in `remote`); unknown
//! keys are ignored as Docker ignores keys of features it lacks.

use std::path::{Path, PathBuf};

/// The daemon.json in effect for `root`, if any.
pub fn path(root: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_DAEMON_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let own = root.join("daemon.json");
    if own.exists() {
        return Some(own);
    }
    let system = Path::new("/etc/berth/daemon.json");
    (root == Path::new(crate::root::DEFAULT_ROOT) && system.exists()).then(|| system.to_path_buf())
}

/// The daemon.json in effect for `root`, parsed: None when there is none; an error naming the
/// file when it cannot be read or is not JSON.
pub fn read(root: &Path) -> Result<Option<(PathBuf, serde_json::Value)>, String> {
    let Some(p) = path(root) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let v = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(Some((p, v)))
}

/// A list of strings under `key` (absent: empty); anything else is an error naming the file.
pub fn strings(file: &Path, v: &serde_json::Value, key: &str) -> Result<Vec<String>, String> {
    match v.get(key) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    format!("{}: {key}: every entry must be a string", file.display())
                })
            })
            .collect(),
        Some(_) => Err(format!(
            "{}: {key} must be a list of strings",
            file.display()
        )),
    }
}
