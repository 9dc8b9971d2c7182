//! The user's terminal around a container's pty: raw mode while attached (restored on drop),
//! and the window size copied onto the container's terminal.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize};

/// Puts a terminal into raw mode until dropped.
pub struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin when it is a terminal; `None` otherwise.
    pub fn stdin() -> Option<RawMode> {
        let fd = rustix::stdio::stdin();
        if !rustix::termios::isatty(fd) {
            return None;
        }
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(fd, OptionalActions::Now, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd, OptionalActions::Now, &self.saved);
    }
}

/// (rows, cols) of the terminal on stdin, if it is one.
pub fn stdin_size() -> Option<(u16, u16)> {
    let fd = rustix::stdio::stdin();
    if !rustix::termios::isatty(fd) {
        return None;
    }
    tcgetwinsize(fd).ok().map(|w| (w.ws_row, w.ws_col))
}

/// (rows, cols) of the terminal on stderr, if it is one (build progress draws there).
pub fn stderr_size() -> Option<(u16, u16)> {
    let fd = rustix::stdio::stderr();
    if !rustix::termios::isatty(fd) {
        return None;
    }
    tcgetwinsize(fd).ok().map(|w| (w.ws_row, w.ws_col))
}

/// Copy stdin's window size onto `pty`.
pub fn copy_size(pty: impl AsFd) {
    let fd = rustix::stdio::stdin();
    if let Ok(ws) = tcgetwinsize(fd) {
        let _ = tcsetwinsize(pty, ws);
    }
}
