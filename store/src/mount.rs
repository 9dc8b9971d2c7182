//! `image mount`: an image's snapshots stacked read-only at `ROOT/mounts/<id>`, so a user (or a
//! peer tool) can look inside an image without running it. A one-layer image is a read-only bind
//! of its snapshot; more layers are a lower-only overlay, which also applies the whiteouts.

use std::fs;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::error::{IoContext, Result, StoreError};
use crate::images::Image;
use crate::root::Store;

/// Every mount point of this process's mount namespace (/proc/self/mountinfo, unescaped).
pub fn mount_points() -> Vec<String> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .collect()
}

/// Whether `path` is a mount point (an entry of /proc/self/mountinfo).
pub fn is_mount_point(path: &Path) -> bool {
    let want = path.to_string_lossy();
    mount_points().iter().any(|mp| *mp == want)
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (b[i], octal) {
            (b'\\', Some(n)) => {
                out.push(n);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Store {
    /// Whether `img` is mounted (`image mount`) at its mount path.
    pub(crate) fn image_mounted(&self, img: &Image) -> bool {
        is_mount_point(&self.mount_path(img))
    }

    pub fn mount_path(&self, img: &Image) -> PathBuf {
        self.root().join("mounts").join(img.id.digest())
    }

    /// Mount `img` read-only (idempotent) and return where.
    pub fn mount_image(&self, img: &Image) -> Result<PathBuf> {
        let target = self.mount_path(img);
        if is_mount_point(&target) {
            return Ok(target);
        }
        let snapshots = self.ensure_snapshots(img)?;
        fs::create_dir_all(&target).ctx("creating mount point", &target)?;
        let err = |e: rustix::io::Errno| StoreError::io("mounting image at", &target, e.into());
        match snapshots.as_slice() {
            [] => {
                return Err(StoreError::invalid(
                    format!("image {}", img.short_id()),
                    "it has no layers to mount",
                ));
            }
            [only] => {
                rustix::mount::mount_bind(only, &target).map_err(err)?;
                rustix::mount::mount_remount(&target, MountFlags::BIND | MountFlags::RDONLY, "")
                    .map_err(err)?;
            }
            many => {
                // overlayfs lists the topmost lower directory first.
                let lower: Vec<String> = many
                    .iter()
                    .rev()
                    .map(|p| p.to_string_lossy().replace(':', "\\:").replace(',', "\\,"))
                    .collect();
                let data = format!("lowerdir={}", lower.join(":"));
                if data.len() >= 4096 {
                    return Err(StoreError::Unsupported {
                        what: format!("image {}", img.short_id()),
                        reason: format!(
                            "{} layers exceed the overlay mount option limit",
                            many.len()
                        ),
                    });
                }
                let data = std::ffi::CString::new(data)
                    .map_err(|_| StoreError::invalid("snapshot path", "contains a NUL byte"))?;
                rustix::mount::mount(
                    "overlay",
                    &target,
                    "overlay",
                    MountFlags::RDONLY,
                    Some(data.as_c_str()),
                )
                .map_err(err)?;
            }
        }
        // Keep the mount private, so it does not propagate into other mount namespaces.
        let _ = rustix::mount::mount_change(&target, MountPropagationFlags::PRIVATE);
        Ok(target)
    }

    /// Undo [`Store::mount_image`]; `Ok(false)` when it was not mounted.
    pub fn unmount_image(&self, img: &Image) -> Result<bool> {
        let target = self.mount_path(img);
        if !is_mount_point(&target) {
            let _ = fs::remove_dir(&target);
            return Ok(false);
        }
        rustix::mount::unmount(&target, UnmountFlags::empty())
            .map_err(|e| StoreError::io("unmounting", &target, e.into()))?;
        let _ = fs::remove_dir(&target);
        Ok(true)
    }
}
