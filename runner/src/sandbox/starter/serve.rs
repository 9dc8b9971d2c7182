//! The starter's own side: the fresh, single-threaded process `berth __sandbox-start` runs,
//! which creates the container with [`Embedded`] and starts it when told to.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::super::embedded::Embedded;
use super::super::{Io, Sandbox};
use super::{Command, Reply, Request, SUBCOMMAND, proto_err, recv, send};
use crate::error::Result;

/// The starter's entry point (`berth __sandbox-start RUNTIME_ROOT`, its socket on stdin);
/// returns the process exit code.
pub fn main(runtime_root: &Path) -> i32 {
    let sock = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: {SUBCOMMAND}: reading its socket: {e}");
            return 125;
        }
    };
    // Nothing but the socket is to be read from stdin.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
    match serve(&sock, runtime_root) {
        Ok(code) => code,
        Err(e) => {
            let _ = send(&sock, &Reply::from_error(e), &[]);
            1
        }
    }
}

fn serve(sock: &OwnedFd, runtime_root: &Path) -> Result<i32> {
    let Some((request, mut fds)) = recv::<Request>(sock)? else {
        return Ok(1);
    };
    let io = match request.console {
        Some(path) => Io::Console(path),
        None if fds.len() == 3 => {
            let stderr = fds.pop().ok_or_else(|| proto_err("no stderr"))?;
            let stdout = fds.pop().ok_or_else(|| proto_err("no stdout"))?;
            let stdin = fds.pop().ok_or_else(|| proto_err("no stdin"))?;
            Io::Fds {
                stdin,
                stdout,
                stderr,
            }
        }
        None => {
            return Err(proto_err(format!(
                "expected 3 descriptors with the request, got {}",
                fds.len()
            )));
        }
    };
    let sandbox = Embedded::new(runtime_root.to_path_buf())?;
    let mut container = sandbox.create(&request.id, &request.bundle, io)?;
    let pid = sandbox.pid_of(&request.id, &container)?;
    send(sock, &Reply::Created(pid), &[])?;
    match recv::<Command>(sock) {
        Ok(Some((Command::Start, _))) => {
            sandbox.start_created(&request.id, &mut container)?;
            send(sock, &Reply::Started, &[])?;
            Ok(0)
        }
        // Aborted, or the caller is gone: nothing may run.
        _ => {
            let _ = sandbox.delete(&request.id);
            Ok(1)
        }
    }
}
