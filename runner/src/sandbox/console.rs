//! The console socket of the OCI runtime spec: a Unix socket the runtime connects to and sends the
//! master side of the container's pty over (SCM_RIGHTS).

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};

use crate::error::{Result, RunnerError};

pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listen on a fresh socket. Socket paths are limited to 107 bytes, so it lives in the
    /// system's temp directory rather than under a possibly long state root.
    pub fn new() -> Result<ConsoleSocket> {
        let name = format!(
            "berth-console-{}-{}.sock",
            std::process::id(),
            crate::names::new_id().get(..16).unwrap_or("0")
        );
        let path = std::env::temp_dir().join(name);
        let listener = UnixListener::bind(&path)
            .map_err(|e| RunnerError::io("listening on console socket", &path, e))?;
        Ok(ConsoleSocket { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept the runtime's connection and receive the pty master.
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| RunnerError::io("accepting on console socket", &self.path, e))?;
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        recvmsg(&stream, &mut iov, &mut cmsg, RecvFlags::CMSG_CLOEXEC).map_err(|e| {
            RunnerError::Sandbox(format!("receiving the container's terminal: {e}"))
        })?;
        for msg in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = msg
                && let Some(fd) = fds.next()
            {
                return Ok(fd);
            }
        }
        Err(RunnerError::Sandbox(
            "the runtime did not send the container's terminal".into(),
        ))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
