//! Work inside another process's network namespace: a short-lived thread joins it
//! (`setns(CLONE_NEWNET)` on `/proc/PID/ns/net`), runs the closure and exits, so the caller's
//! threads never change namespace. Sockets made there keep that namespace (the DNS server's
//! listening sockets, the netlink socket that configures a container's interfaces).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::thread;

/// Run `f` on a short-lived thread inside the network namespace of `pid`.
/// Sockets created by `f` belong to that namespace.
pub fn run_in<T: Send>(pid: i32, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))?;
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name("berth-setns".into())
            .spawn_scoped(scope, move || {
                rustix::thread::move_into_link_name_space(
                    ns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                f()
            })?;
        handle
            .join()
            .map_err(|_| io::Error::other("netns thread panicked"))?
    })
}
