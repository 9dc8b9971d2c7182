//! Creating a container on behalf of a multi-threaded process. The embedded runtime clones to
//! create a container, and a process with other threads must not do that: whatever lock another
//! thread held at the clone (the allocator's, stdio's, a logger's) stays locked in the child
//! forever. A supervisor is single-threaded when it starts its container the first time, but
//! not when a restart policy starts it again (its signal-forwarding, stdin and DNS threads live
//! on). There the sandbox re-executes berth as a starter (`berth __sandbox-start`), a fresh
//! process with one thread, which creates and starts the container for the caller:
//!
//! ```text
//! caller  -> starter  Request (JSON) + the container's stdio fds (SCM_RIGHTS)
//! starter -> caller   Reply::Created(pid)      the caller runs its prestart hook (network)
//! caller  -> starter  Command::Start | Command::Abort
//! starter -> caller   Reply::Started           the starter exits
//! ```
//!
//! over a `SOCK_SEQPACKET` pair (one message each, never split), the starter's end on its
//! stdin. The container's init is the starter's child; when the starter exits, it is
//! re-parented to the nearest child subreaper, which the caller must be so that it can wait for
//! the init (the supervisor is one).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType, recvmsg, sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};

use super::Io;
use crate::error::{Result, RunnerError};

/// The hidden subcommand the CLI maps to [`main`].
pub const SUBCOMMAND: &str = "__sandbox-start";

// The fresh process's side (it builds an Embedded); this file is the caller's side and the
// protocol both speak.
mod serve;
pub use serve::main;

/// The largest message either side sends (a request holds two paths and an ID).
const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Request {
    id: String,
    bundle: PathBuf,
    /// The console socket when the container has a terminal; otherwise three fds (stdin,
    /// stdout, stderr) come with the request.
    console: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
enum Reply {
    Created(i32),
    Started,
    /// A failure, as [`RunnerError`] has it: the user's command is missing or not executable,
    /// or anything else with its exit code and message.
    NotFound(String),
    NotExecutable(String),
    Failed {
        code: u8,
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
enum Command {
    Start,
    Abort,
}

impl Reply {
    fn from_error(e: RunnerError) -> Reply {
        match e {
            RunnerError::CommandNotFound { command } => Reply::NotFound(command),
            RunnerError::CommandNotExecutable { command } => Reply::NotExecutable(command),
            e => Reply::Failed {
                code: e.exit_code(),
                message: e.to_string(),
            },
        }
    }

    /// The error a failure reply stands for (`None` for the others).
    fn into_error(self) -> Option<RunnerError> {
        match self {
            Reply::NotFound(command) => Some(RunnerError::CommandNotFound { command }),
            Reply::NotExecutable(command) => Some(RunnerError::CommandNotExecutable { command }),
            Reply::Failed { code, message } => Some(RunnerError::Reported { code, message }),
            Reply::Created(_) | Reply::Started => None,
        }
    }
}

fn proto_err(what: impl std::fmt::Display) -> RunnerError {
    RunnerError::Sandbox(format!("the sandbox starter: {what}"))
}

fn send<T: Serialize>(sock: impl AsFd, msg: &T, fds: &[std::os::fd::BorrowedFd<'_>]) -> Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(proto_err)?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(proto_err("too many descriptors to pass"));
    }
    sendmsg(
        sock,
        &[IoSlice::new(&bytes)],
        &mut control,
        SendFlags::empty(),
    )
    .map_err(|e| proto_err(format!("sending: {e}")))?;
    Ok(())
}

/// The next message and the descriptors that came with it; `None` when the other side closed.
fn recv<T: for<'de> Deserialize<'de>>(sock: impl AsFd) -> Result<Option<(T, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let n = loop {
        match recvmsg(
            &sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(proto_err(format!("receiving: {e}"))),
        }
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    if n == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..n]).map_err(proto_err)?;
    Ok(Some((msg, fds)))
}

/// Create and start container `id` through a starter process (see the module comment);
/// returns the init PID, by then a child of this process.
pub(super) fn start(
    runtime_root: &Path,
    id: &str,
    bundle: &Path,
    io: Io,
    prestart: &dyn Fn(i32) -> Result<()>,
) -> Result<i32> {
    if !rustix::process::child_subreaper().is_ok_and(|p| p.is_some()) {
        // The init would be re-parented past us, and nobody here could wait for it.
        return Err(RunnerError::Sandbox(
            "a multi-threaded process that is not a child subreaper cannot start a container"
                .into(),
        ));
    }
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| proto_err(format!("creating its socket: {e}")))?;
    let exe =
        std::env::current_exe().map_err(|e| RunnerError::io("finding", "berth's own binary", e))?;
    let mut child = Process::new(&exe)
        .arg(SUBCOMMAND)
        .arg(runtime_root)
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| RunnerError::io("starting", &exe, e))?;
    let outcome = converse(&ours, id, bundle, io, prestart);
    drop(ours);
    // Once the starter is gone (and reaped), the init is our child.
    let status = child.wait();
    let pid = outcome?;
    match status {
        Ok(s) if s.success() => Ok(pid),
        Ok(s) => Err(proto_err(format!(
            "exited with {s} after starting the container"
        ))),
        Err(e) => Err(proto_err(format!("waiting for it: {e}"))),
    }
}

fn converse(
    sock: &OwnedFd,
    id: &str,
    bundle: &Path,
    io: Io,
    prestart: &dyn Fn(i32) -> Result<()>,
) -> Result<i32> {
    let (console, fds) = match io {
        Io::Console(path) => (Some(path), Vec::new()),
        Io::Fds {
            stdin,
            stdout,
            stderr,
        } => (None, vec![stdin, stdout, stderr]),
    };
    let request = Request {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        console,
    };
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    send(sock, &request, &borrowed)?;
    // The starter has its own copies now.
    drop(fds);
    let pid = match recv::<Reply>(sock)? {
        Some((Reply::Created(pid), _)) => pid,
        Some((other, _)) => {
            return Err(other
                .into_error()
                .unwrap_or_else(|| proto_err("replied out of turn")));
        }
        None => return Err(proto_err("exited before creating the container")),
    };
    if let Err(e) = prestart(pid) {
        // It deletes the container it created.
        let _ = send(sock, &Command::Abort, &[]);
        return Err(e);
    }
    send(sock, &Command::Start, &[])?;
    match recv::<Reply>(sock)? {
        Some((Reply::Started, _)) => Ok(pid),
        Some((other, _)) => Err(other
            .into_error()
            .unwrap_or_else(|| proto_err("replied out of turn"))),
        None => Err(proto_err("exited before starting the container")),
    }
}
