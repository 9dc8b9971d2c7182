//! The embedded sandbox: youki's `libcontainer`, in this process. Its state lives under
//! `ROOT/runtime/<id>/`. Cgroups are managed directly (never through systemd).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

use super::{ExecOutcome, Io, Sandbox};
use crate::error::{Result, RunnerError};

pub struct Embedded {
    root: PathBuf,
}

impl Embedded {
    pub fn new(root: PathBuf) -> Result<Embedded> {
        std::fs::create_dir_all(&root).map_err(|e| RunnerError::io("creating", &root, e))?;
        Ok(Embedded { root })
    }

    /// Where compiled seccomp filters are kept: `ROOT/seccomp` beside `ROOT/runtime`.
    fn seccomp_cache(&self) -> Option<PathBuf> {
        self.root.parent().map(|state| state.join("seccomp"))
    }

    fn builder(&self, id: &str, io: Io) -> Result<ContainerBuilder> {
        let mut b = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(&self.root)
            .map_err(err)?;
        match io {
            Io::Fds {
                stdin,
                stdout,
                stderr,
            } => {
                b = b.with_stdin(stdin).with_stdout(stdout).with_stderr(stderr);
            }
            Io::Console(path) => b = b.with_console_socket(Some(path)),
        }
        Ok(b)
    }
}

/// libcontainer's errors, with the two that Docker gives their own exit codes picked out.
fn err(e: libcontainer::error::LibcontainerError) -> RunnerError {
    let msg = error_chain(&e);
    if let Some(rest) = msg.split("executable '").nth(1)
        && let Some(cmd) = rest.split('\'').next()
    {
        if msg.contains("not found in $PATH") {
            return RunnerError::CommandNotFound {
                command: cmd.to_string(),
            };
        }
        if msg.contains("does not have correct permissions") {
            return RunnerError::CommandNotExecutable {
                command: cmd.to_string(),
            };
        }
    }
    RunnerError::Sandbox(msg)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

impl Embedded {
    /// Create container `id` (its init waits to be started). The runtime clones here, so this
    /// process must have a single thread: checked at this point, and refused otherwise.
    pub(super) fn create(&self, id: &str, bundle: &Path, io: Io) -> Result<Container> {
        let threads = super::threads();
        super::record_threads(id, threads);
        if threads != Some(1) {
            return Err(RunnerError::Sandbox(format!(
                "refusing to create container {id} from a process with {} threads: the runtime \
                 clones, which is only safe in a single-threaded process",
                threads.map_or_else(|| "an unknown number of".to_string(), |n| n.to_string())
            )));
        }
        // A stale runtime directory (a crashed supervisor) would make create fail.
        if self.root.join(id).exists() {
            let _ = self.delete(id);
        }
        let program = self
            .seccomp_cache()
            .and_then(|cache| crate::seccomp::compiled_program(&cache, bundle));
        self.builder(id, io)?
            .validate_id()
            .map_err(err)?
            .as_init(bundle)
            .with_seccomp_program(program)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(|e| {
                let _ = self.delete(id);
                err(e)
            })
    }

    /// The init PID of a container [`Embedded::create`] made.
    pub(super) fn pid_of(&self, id: &str, container: &Container) -> Result<i32> {
        container.pid().map(|p| p.as_raw()).ok_or_else(|| {
            let _ = self.delete(id);
            RunnerError::Sandbox("the runtime reported no init process".into())
        })
    }

    /// Let the init of a created container run its command (deleting the container if that
    /// fails).
    pub(super) fn start_created(&self, id: &str, container: &mut Container) -> Result<()> {
        container.start().map_err(|e| {
            let _ = self.delete(id);
            err(e)
        })
    }
}

impl Sandbox for Embedded {
    fn start(
        &self,
        id: &str,
        bundle: &Path,
        io: Io,
        prestart: &dyn Fn(i32) -> Result<()>,
    ) -> Result<i32> {
        if super::threads() != Some(1) {
            // A supervisor restarting its container has threads: a fresh process creates it.
            return super::starter::start(&self.root, id, bundle, io, prestart);
        }
        let mut container = self.create(id, bundle, io)?;
        let pid = self.pid_of(id, &container)?;
        tracing::debug!("sandbox: container created");
        if let Err(e) = prestart(pid) {
            let _ = self.delete(id);
            return Err(e);
        }
        tracing::debug!("sandbox: prestart done");
        self.start_created(id, &mut container)?;
        Ok(pid)
    }

    fn exec(&self, id: &str, process: &Path, io: Io, detach: bool) -> Result<ExecOutcome> {
        // The container's filter applies to the exec'd process too; from the cache, like
        // `create`'s (without it the exec's init would compile it with libseccomp).
        let program = Container::load(self.root.join(id))
            .ok()
            .and_then(|c| Some((c.bundle().to_path_buf(), self.seccomp_cache()?)))
            .and_then(|(bundle, cache)| crate::seccomp::compiled_program(&cache, &bundle));
        let pid = self
            .builder(id, io)?
            .as_tenant()
            .with_process(Some(process))
            .with_seccomp_program(program)
            .with_detach(true)
            .build()
            .map_err(err)?;
        let _ = detach;
        Ok(ExecOutcome::Pid(pid.as_raw()))
    }

    fn delete(&self, id: &str) -> Result<()> {
        let dir = self.root.join(id);
        if !dir.exists() {
            return Ok(());
        }
        match Container::load(dir.clone()) {
            Ok(mut c) => c.delete(true).map_err(err)?,
            Err(_) => {
                // A half-created container without a readable state: nothing runs in it.
                std::fs::remove_dir_all(&dir).map_err(|e| RunnerError::io("removing", &dir, e))?;
            }
        }
        Ok(())
    }
}

#[allow(dead_code)]
fn _assert_fd(_: OwnedFd) {}
