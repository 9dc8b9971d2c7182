//! Executes a runtime bundle. `Embedded` drives youki's `libcontainer`, which clones: in this
//! process when it has a single thread, otherwise in a re-executed berth ([`starter`]; it never
//! creates a container from a multi-threaded process); `External` hands the same bundle to an
//! OCI runtime binary (`--runtime crun`). Both leave the container's init as a child (or an
//! orphan adopted by this child subreaper), so the caller waits for it with `waitpid`. This module (with its children) holds all of the runner's `unsafe`: the fork in
//! [`spawn_detached`].

mod console;
mod detach;
mod embedded;
mod external;
pub mod starter;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use console::ConsoleSocket;
pub use detach::spawn_detached;
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

/// How many threads this process runs (`Threads:` of /proc/self/status), if it can tell.
pub fn threads() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// The environment variable naming a file to which every container creation appends a line
/// `ID THREADS`: how many threads the process that called the runtime had (tests check it is
/// always 1, restarts included).
pub const THREADS_LOG_ENV: &str = "BERTH_DEBUG_SANDBOX_THREADS";

fn record_threads(id: &str, threads: Option<u32>) {
    let Some(path) = std::env::var_os(THREADS_LOG_ENV) else {
        return;
    };
    let line = format!(
        "{id} {}\n",
        threads.map_or_else(|| "?".to_string(), |n| n.to_string())
    );
    // One short O_APPEND write: lines from concurrent starts do not interleave.
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
}

/// Bring up the loopback interface in the network namespace of `pid`, as Docker does for every
/// container with a namespace of its own: one rtnetlink RTM_NEWLINK (ifindex 1 is always `lo`)
/// on a socket opened inside that namespace by a short-lived thread.
pub fn loopback_up(pid: i32) -> Result<()> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, recv, send, socket};
    use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&ns_path).map_err(|e| RunnerError::io("opening", &ns_path, e))?;
    let sock = std::thread::spawn(move || -> std::io::Result<OwnedFd> {
        use std::os::fd::AsFd;
        move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))?;
        // Protocol None is NETLINK_ROUTE.
        Ok(socket(AddressFamily::NETLINK, SocketType::RAW, None)?)
    })
    .join()
    .map_err(|_| RunnerError::Sandbox("the netlink thread panicked".into()))?
    .map_err(|e| RunnerError::Sandbox(format!("opening a netlink socket in the container: {e}")))?;
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns it
    msg.extend_from_slice(&[0, 0]); // ifi_family AF_UNSPEC, padding
    msg.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    msg.extend_from_slice(&1i32.to_ne_bytes()); // ifi_index: lo
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    let err = |e: rustix::io::Errno| {
        RunnerError::Sandbox(format!(
            "bringing up the container's loopback interface: {e}"
        ))
    };
    send(&sock, &msg, SendFlags::empty()).map_err(err)?;
    let mut buf = [0u8; 1024];
    let (n, _) = recv(&sock, &mut buf, RecvFlags::empty()).map_err(err)?;
    // The ACK is an NLMSG_ERROR whose error field (after the 16-byte header) is 0.
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 {
            return Err(err(rustix::io::Errno::from_raw_os_error(-code)));
        }
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
