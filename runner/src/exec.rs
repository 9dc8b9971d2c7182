//! `exec`: another process in a running container, joining all its namespaces and its cgroup.
//! It starts from the container's own process spec (capabilities, no-new-privileges) with the
//! command, environment, directory and user of the exec. The caller (the CLI) must have no other
//! threads when it calls this: the embedded sandbox forks.

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde_json::json;

use crate::container::{Container, Runner, read_env_file};
use crate::error::{Result, RunnerError};
use crate::persist::read_json;
use crate::process::process_alive;
use crate::sandbox::{ExecOutcome, Io};
use crate::state::Status;
use crate::stdio::Plumbing;

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub detach: bool,
    pub privileged: bool,
}

/// Run the exec; its exit code (0 at once when detached).
pub fn exec(runner: &Runner, c: &Container, o: &ExecOptions) -> Result<i32> {
    if c.state.status == Status::Paused {
        return Err(RunnerError::Conflict(format!(
            "Container {} is paused, unpause the container before exec",
            c.id()
        )));
    }
    if c.state.status != Status::Running || !process_alive(c.state.pid, c.state.internal.pid_start)
    {
        return Err(RunnerError::Conflict(format!(
            "container {} is not running",
            c.id()
        )));
    }
    if o.command.is_empty() {
        return Err(RunnerError::invalid("exec", "no command given"));
    }
    let spec: Spec = read_json(&c.paths.bundle().join("config.json"))?;
    let mut process = serde_json::to_value(spec.process().clone().unwrap_or_default())
        .map_err(|e| RunnerError::Sandbox(e.to_string()))?;

    let mut env: Vec<String> = c.record.config.env.clone();
    let mut extra = Vec::new();
    for f in &o.env_files {
        extra.extend(read_env_file(f)?);
    }
    for e in &o.env {
        if e.contains('=') {
            extra.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            extra.push(format!("{e}={v}"));
        }
    }
    for kv in extra {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    let user_spec = o
        .user
        .clone()
        .unwrap_or_else(|| c.record.config.user.clone());
    let user = crate::user::resolve_user(&c.paths.rootfs(), &user_spec)
        .map_err(|e| RunnerError::invalid("user", e.to_string()))?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    if o.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = o
        .workdir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| {
            if c.record.config.working_dir.is_empty() {
                "/".into()
            } else {
                c.record.config.working_dir.clone()
            }
        });
    if !cwd.starts_with('/') {
        return Err(RunnerError::invalid(
            "working directory",
            format!("{cwd:?} is not an absolute path"),
        ));
    }
    process["args"] = json!(o.command);
    process["env"] = json!(env);
    process["cwd"] = json!(cwd);
    process["terminal"] = json!(o.tty);
    process["user"] =
        json!({"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids});
    if o.tty
        && let Some((rows, cols)) = crate::terminal::stdin_size()
    {
        process["consoleSize"] = json!({"height": rows, "width": cols});
    }
    if o.privileged {
        let all = crate::caps::capabilities(true, &[], &[])?;
        process["capabilities"] = json!({"bounding": all, "effective": all, "permitted": all});
    }
    let file = c
        .paths
        .dir
        .join(format!("exec-{}.json", &crate::names::new_id()[..12]));
    crate::persist::write_json(&file, &process)?;
    let result = run(runner, c, o, &file);
    let _ = std::fs::remove_file(&file);
    result
}

/// This process's streams, duplicated, for an external runtime that proxies a terminal itself:
/// the runtime holds them, the container only sees the pty the runtime made.
fn runtime_stdio() -> Result<Io> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map_err(|e| RunnerError::Sandbox(format!("duplicating stdio: {e}")))
    };
    Ok(Io::Fds {
        stdin: dup(rustix::stdio::stdin())?,
        stdout: dup(rustix::stdio::stdout())?,
        stderr: dup(rustix::stdio::stderr())?,
    })
}

fn run(runner: &Runner, c: &Container, o: &ExecOptions, process: &std::path::Path) -> Result<i32> {
    let sandbox = crate::sandbox::for_runtime(runner.root(), &c.record.runtime_path)?;
    let external = !c.record.runtime_path.is_empty();
    let attach = !o.detach;
    // The container never gets the caller's own descriptors: they may be a file the caller
    // redirected to (the container could read, truncate or keep writing it after exec returns)
    // or the caller's terminal (the container could read the next line typed at the prompt).
    // Without -t it gets pipes, as `run -i` and Docker; with -t a pty of its own. External
    // runtimes proxy a terminal themselves, so only they get no plumbing for -t.
    let (io, plumbing) = if external && o.tty && attach {
        (runtime_stdio()?, None)
    } else {
        let mut p = Plumbing::new(o.tty, o.interactive && attach)?;
        let io =
            p.io.take()
                .ok_or_else(|| RunnerError::Sandbox("no stdio".into()))?;
        (io, Some(p))
    };
    let _raw = (o.tty && attach && !external)
        .then(crate::terminal::RawMode::stdin)
        .flatten();
    let outcome = sandbox.exec(&c.record.id, process, io, o.detach)?;
    let copiers = match plumbing {
        Some(p) => Some(p.connect(None, attach)?),
        None => None,
    };
    let code = match outcome {
        // Nobody reads a detached exec's output (Docker discards it too).
        ExecOutcome::Pid(_) if o.detach => return Ok(0),
        ExecOutcome::Exited(code) => code,
        ExecOutcome::Pid(pid) => crate::sandbox::wait_child(pid)?,
    };
    // A background process the command left behind may hold the pipes open: drain what is
    // there, then return, as containerd does (it closes an exec's streams 2 s after it exits).
    if let Some(c) = copiers {
        c.finish_within(std::time::Duration::from_secs(2));
    }
    Ok(code)
}
