//! Starting a background helper (the `--rm` reaper) without waiting for its `execve`.
//!
//! `std::process::Command::spawn` returns only once the child has exec'd: with `posix_spawn`
//! (vfork) the parent is suspended until then, and on the fork path it reads an error pipe until
//! the exec closes it. Loading berth's 33 MB binary takes 1.5–6 ms on the 2-core bench VM, all on
//! the critical path of `run --rm` although nobody waits for the reaper's result. Here the
//! parent forks and returns; the child execs on its own time.
//!
//! The caller may have other threads, so between fork and exec the child calls only
//! async-signal-safe functions (`setpgid`, `dup2`, `sigprocmask`, `execve`, `_exit`) on data
//! prepared before the fork: no allocation, no locks.

use std::ffi::{CString, OsStr};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Result, RunnerError};

/// Run `program` with `args` in a new process group, stdio on /dev/null, this process's
/// environment; returns its PID as soon as it is forked. Nobody waits for it: when the caller
/// exits first it is adopted by init (or the nearest subreaper), which reaps it.
pub fn spawn_detached(program: &Path, args: &[&OsStr]) -> Result<i32> {
    let cstr = |s: &OsStr| {
        CString::new(s.as_bytes()).map_err(|_| {
            RunnerError::Sandbox(format!("{} contains a NUL byte", s.to_string_lossy()))
        })
    };
    let prog = cstr(program.as_os_str())?;
    let mut argv_owned = vec![prog.clone()];
    for a in args {
        argv_owned.push(cstr(a)?);
    }
    let env_owned: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let argv: Vec<*const libc::c_char> = argv_owned
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = env_owned
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| RunnerError::io("opening", "/dev/null", e))?;
    let null_fd = null.as_raw_fd();
    // SAFETY: fork has no memory-safety preconditions. In the child only async-signal-safe
    // calls follow, on pointers into `argv_owned`/`env_owned`/`argv`/`envp`, which the fork
    // copied and which stay alive (they are not dropped before `execve` or `_exit`).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(RunnerError::Sandbox(format!(
            "forking for {}: {}",
            program.display(),
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        // SAFETY: see above; every call is async-signal-safe and its arguments are valid
        // (fds this process owns, NUL-terminated arrays of NUL-terminated strings).
        unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::setpgid(0, 0);
            for fd in 0..3 {
                libc::dup2(null_fd, fd);
            }
            libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_runs_detached_with_its_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "echo \"$0 $1 $(ps -o pgid= -p $$ 2>/dev/null)\" > {}",
            out.display()
        );
        let pid = spawn_detached(
            Path::new("/bin/sh"),
            &[OsStr::new("-c"), OsStr::new(&script), OsStr::new("a b")],
        )
        .unwrap();
        assert!(pid > 0);
        let code = crate::sandbox::wait_child(pid).unwrap();
        assert_eq!(code, 0);
        let text = std::fs::read_to_string(&out).unwrap();
        // $0 is the first argument after -c's script, "a b" one word.
        assert!(text.starts_with("a b"), "{text}");
        // Its own process group: the pgid is its pid (when ps is there to ask).
        let pgid = text.split_whitespace().nth(2);
        assert!(pgid.is_none_or(|g| g == pid.to_string()), "{text}");
    }

    #[test]
    fn a_missing_program_exits_127_in_the_child() {
        let pid = spawn_detached(Path::new("/nonexistent/berth"), &[]).unwrap();
        assert_eq!(crate::sandbox::wait_child(pid).unwrap(), 127);
    }
}
