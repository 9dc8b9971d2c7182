//! Mount points a RUN step's root lacks: made before the run, and after it removed when left
//! empty, their parents' times restored when nothing else changed them (BuildKit's mount stub
//! cleaner); overlay's copies of those parents then leave the upper directory, so the layer
//! keeps no trace of the mounts.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Prepared, Stub};
use berth_store::inroot;

fn times(p: &Path) -> Option<(SystemTime, SystemTime)> {
    let md = fs::symlink_metadata(p).ok()?;
    Some((md.accessed().ok()?, md.modified().ok()?))
}

impl Prepared<'_> {
    /// Creates what is missing of `target` in `rootfs` (directories, and a file at the end
    /// when `file`), remembering each made entry and its parent's times.
    pub(super) fn stub(&mut self, rootfs: &Path, target: &str, file: bool) -> io::Result<()> {
        let comps: Vec<&str> = target.split('/').filter(|c| !c.is_empty()).collect();
        let mut cur = String::new();
        for (k, c) in comps.iter().enumerate() {
            cur.push('/');
            cur.push_str(c);
            let host = inroot::resolve(rootfs, &cur, true)?;
            if fs::symlink_metadata(&host).is_ok() {
                continue;
            }
            let parent = host.parent().unwrap_or(rootfs).to_path_buf();
            let parent_before = times(&parent);
            if k + 1 == comps.len() && file {
                File::create_new(&host)?;
            } else {
                fs::create_dir(&host)?;
                fs::set_permissions(&host, fs::Permissions::from_mode(0o755))?;
            }
            self.stubs.push(Stub {
                path: host,
                parent_before,
                parent_after: times(&parent).map(|t| t.1),
            });
        }
        Ok(())
    }

    /// After the run: removes the mount points made that are still empty (restoring their
    /// parents' times when nothing else changed them), then undoes the host mounts. Returns
    /// the parents restored (relative to the root): overlay copied them up, and
    /// [`drop_copied_up`] takes them out of the upper directory again.
    pub(crate) fn finish(self, rootfs: &Path) -> Vec<PathBuf> {
        let mut restored = Vec::new();
        for s in self.stubs.iter().rev() {
            let Ok(md) = fs::symlink_metadata(&s.path) else {
                continue;
            };
            let empty = if md.is_dir() {
                fs::read_dir(&s.path).is_ok_and(|mut d| d.next().is_none())
            } else {
                md.is_file() && md.len() == 0
            };
            if !empty {
                continue;
            }
            let Some(parent) = s.path.parent() else {
                continue;
            };
            let untouched = times(parent).map(|t| t.1) == s.parent_after;
            let removed = if md.is_dir() {
                fs::remove_dir(&s.path)
            } else {
                fs::remove_file(&s.path)
            };
            if removed.is_ok()
                && untouched
                && let Some((atime, mtime)) = s.parent_before
                && let Ok(f) = File::open(parent)
                && f.set_times(fs::FileTimes::new().set_accessed(atime).set_modified(mtime))
                    .is_ok()
                && let Ok(rel) = parent.strip_prefix(rootfs)
                && !rel.as_os_str().is_empty()
            {
                restored.push(rel.to_path_buf());
            }
        }
        // Those that were stubs themselves are gone.
        restored.retain(|r| rootfs.join(r).exists());
        restored
        // Drop unmounts.
    }
}

/// Removes from `upper` (unmounted) the directories at `rels` and their ancestors that are
/// only overlay's copies of a lower directory: empty, not opaque, and with the lower one's
/// mode, owner and modification time. A layer then holds no trace of mount points made and
/// removed in them.
pub(crate) fn drop_copied_up(upper: &Path, lowers: &[PathBuf], rels: &[PathBuf]) {
    let mut dirs: Vec<&Path> = rels
        .iter()
        .flat_map(|r| r.ancestors())
        .filter(|r| !r.as_os_str().is_empty())
        .collect();
    // Deepest first, so a parent is judged after its children went.
    dirs.sort_by_key(|r| std::cmp::Reverse(r.components().count()));
    dirs.dedup();
    for rel in dirs {
        let host = upper.join(rel);
        let Ok(md) = fs::symlink_metadata(&host) else {
            continue;
        };
        let empty = md.is_dir() && fs::read_dir(&host).is_ok_and(|mut d| d.next().is_none());
        let mut buf = [0u8; 4];
        let opaque = rustix::fs::lgetxattr(&host, "trusted.overlay.opaque", &mut buf).is_ok();
        let Some(lower) = lowers
            .iter()
            .rev()
            .find_map(|l| fs::symlink_metadata(l.join(rel)).ok())
        else {
            continue;
        };
        let same = lower.is_dir()
            && lower.mode() == md.mode()
            && lower.uid() == md.uid()
            && lower.gid() == md.gid()
            && lower.modified().ok() == md.modified().ok();
        if empty && !opaque && same {
            let _ = fs::remove_dir(&host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Executor;
    use std::collections::BTreeMap;

    #[test]
    fn stubs_left_empty_go_and_parent_times_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("root")).unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        File::open(root.join("root"))
            .unwrap()
            .set_times(fs::FileTimes::new().set_accessed(old).set_modified(old))
            .unwrap();
        struct NoExec;
        impl Executor for NoExec {
            fn mount(
                &self,
                _: &[PathBuf],
                _: &Path,
                _: &Path,
                _: &Path,
            ) -> Result<(), crate::ExecError> {
                unreachable!()
            }
            fn unmount(&self, _: &Path) -> Result<(), crate::ExecError> {
                Ok(())
            }
            fn run(
                &self,
                _: &crate::RunSpec<'_>,
                _: &mut dyn FnMut(&[u8]),
            ) -> Result<i32, crate::ExecError> {
                unreachable!()
            }
            fn write_layer(
                &self,
                _: &Path,
                _: &[PathBuf],
                _: &mut dyn io::Write,
            ) -> Result<(), crate::ExecError> {
                unreachable!()
            }
        }
        let mut p = Prepared {
            mounts: Vec::new(),
            env: Vec::new(),
            stubs: Vec::new(),
            host: Vec::new(),
            exec: &NoExec,
            caches: BTreeMap::new(),
            _locks: Vec::new(),
            secrets: None,
            env_secrets: false,
        };
        p.stub(root, "/root/.cache/x", false).unwrap();
        p.stub(root, "/run/secrets/tok", true).unwrap();
        p.stub(root, "/keep/f", true).unwrap();
        fs::write(root.join("keep/other"), "written by the step").unwrap();
        let restored = p.finish(root);
        assert_eq!(restored, vec![PathBuf::from("root")]);
        assert!(!root.join("root/.cache").exists());
        assert!(!root.join("run").exists());
        assert!(root.join("keep/other").exists());
        assert!(!root.join("keep/f").exists());
        assert_eq!(
            fs::metadata(root.join("root")).unwrap().modified().unwrap(),
            old
        );
    }
}
