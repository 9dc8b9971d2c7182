//! Executes a runtime bundle. `Embedded` drives youki's `libcontainer` in this process (which
//! must have no other threads: it forks); `External` hands the same bundle to an OCI runtime
//! binary (`--runtime crun`). Both leave the container's init as a child (or, for external
//! runtimes, an orphan adopted by this child subreaper), so the caller waits for it with
//! `waitpid`. This module (with its children) holds all of the runner's `unsafe`: none so far.

mod console;
mod embedded;
mod external;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use console::ConsoleSocket;
pub use embedded::Embedded;
pub use external::External;

use crate::error::{Result, RunnerError};

/// The container's standard streams.
pub enum Io {
    /// Pipes or files for fd 0, 1, 2.
    Fds {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A terminal: the runtime creates a pty in the container and sends its master here.
    Console(PathBuf),
}

pub trait Sandbox {
    /// Create and start the container `id` from `bundle`; returns the init PID. `prestart` runs
    /// between create and start with the init PID (the namespaces exist, the command has not run).
    fn start(
        &self,
        id: &str,
        bundle: &Path,
        io: Io,
        prestart: &dyn Fn(i32) -> Result<()>,
    ) -> Result<i32>;
    /// Start `process.json` inside the running container `id`; returns its PID (a child of the
    /// caller for the embedded sandbox). External runtimes run it to completion when not
    /// detached and return `Err` or the exit status through `ExecOutcome`.
    fn exec(&self, id: &str, process: &Path, io: Io, detach: bool) -> Result<ExecOutcome>;
    /// Release what the runtime holds for `id` (state directory, cgroup) once its init is gone,
    /// killing any process left.
    fn delete(&self, id: &str) -> Result<()>;
}

pub enum ExecOutcome {
    /// A process the caller waits for.
    Pid(i32),
    /// The runtime already waited: the process's exit code.
    Exited(i32),
}

/// The sandbox a container record asks for.
pub fn for_runtime(state_root: &Path, runtime: &str) -> Result<Box<dyn Sandbox>> {
    if runtime.is_empty() || runtime == "berth" {
        Ok(Box::new(Embedded::new(state_root.join("runtime"))?))
    } else {
        Ok(Box::new(External::new(state_root, runtime)?))
    }
}

/// Bring up the loopback interface in the network namespace of `pid`, as Docker does for every
/// container with a namespace of its own.
pub fn loopback_up(pid: i32) -> Result<()> {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "link", "set", "lo", "up"])
        .output()
        .map_err(|e| RunnerError::io("running", "nsenter (util-linux) and ip (iproute2)", e))?;
    if !out.status.success() {
        return Err(RunnerError::Sandbox(format!(
            "bringing up the container's loopback interface: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Wait for a child process; its exit code in Docker's convention (128+signal when killed).
pub fn wait_child(pid: i32) -> Result<i32> {
    use rustix::process::{Pid, WaitOptions, waitpid};
    let p = Pid::from_raw(pid).ok_or_else(|| RunnerError::Sandbox(format!("invalid pid {pid}")))?;
    loop {
        match waitpid(Some(p), WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if let Some(code) = status.exit_status() {
                    return Ok(code);
                }
                if let Some(sig) = status.terminating_signal() {
                    return Ok(128 + sig);
                }
            }
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(RunnerError::Sandbox(format!(
                    "waiting for process {pid}: {e}"
                )));
            }
        }
    }
}
