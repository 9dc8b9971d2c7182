//! An open directory of the layer being extracted, with what entries created in it inherit:
//! what the scope resolves paths to, and what metadata is applied under.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// An open directory, and what entries created in it inherit: its group if it is setgid (then a
/// new directory is setgid too). Knowing this lets a redundant chown or chmod be skipped.
pub(super) struct DirFd {
    fd: OwnedFd,
    pub(super) setgid: bool,
    pub(super) gid: u32,
}

impl DirFd {
    pub(super) fn new(fd: OwnedFd, setgid: bool, gid: u32) -> Self {
        DirFd { fd, setgid, gid }
    }

    /// Looks both up on the directory itself.
    pub(super) fn stat(fd: OwnedFd) -> io::Result<Self> {
        let st = rustix::fs::fstat(&fd)?;
        Ok(DirFd {
            fd,
            setgid: st.st_mode & 0o2000 != 0,
            gid: st.st_gid,
        })
    }
}

impl AsFd for DirFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
