//! `exec`: another process in a running container, joining all its namespaces and its cgroup.
//! It starts from the container's own process spec (capabilities, no-new-privileges) with the
//! command, environment, directory and user of the exec. The caller (the CLI) must have no other
//! threads when it calls this: the embedded sandbox forks.

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde_json::json;

use crate::container::{Container, Runner, read_env_file};
use crate::error::{Result, RunnerError};
use crate::sandbox::{ExecOutcome, Io};
use crate::state::{Status, process_alive, read_json};
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
        let all = crate::bundle::capabilities(true, &[], &[])?;
        process["capabilities"] = json!({"bounding": all, "effective": all, "permitted": all});
    }
    let file = c
        .paths
        .dir
        .join(format!("exec-{}.json", &crate::names::new_id()[..12]));
    crate::state::write_json(&file, &process)?;
    let result = run(runner, c, o, &file);
    let _ = std::fs::remove_file(&file);
    result
}

/// This process's stdout and stderr (and stdin when `interactive`, else /dev/null), duplicated.
fn own_stdio(interactive: bool) -> Result<Io> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map_err(|e| RunnerError::Sandbox(format!("duplicating stdio: {e}")))
    };
    Ok(Io::Fds {
        stdin: if interactive {
            dup(rustix::stdio::stdin())?
        } else {
            std::fs::File::open("/dev/null")
                .map_err(|e| RunnerError::io("opening", "/dev/null", e))?
                .into()
        },
        stdout: dup(rustix::stdio::stdout())?,
        stderr: dup(rustix::stdio::stderr())?,
    })
}

fn run(runner: &Runner, c: &Container, o: &ExecOptions, process: &std::path::Path) -> Result<i32> {
    let sandbox = crate::sandbox::for_runtime(runner.root(), &c.record.runtime_path)?;
    let external = !c.record.runtime_path.is_empty();
    let attach = !o.detach;
    // External runtimes proxy a terminal themselves when attached; an attached exec without a
    // terminal uses our own streams directly; otherwise the streams go through a pty or pipes.
    let (io, plumbing) = if external || (!o.tty && attach) {
        (own_stdio(o.interactive)?, None)
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
    match outcome {
        ExecOutcome::Exited(code) => Ok(code),
        ExecOutcome::Pid(_) if o.detach => {
            // Nobody reads a detached exec's output (Docker discards it too).
            Ok(0)
        }
        ExecOutcome::Pid(pid) => {
            let code = crate::sandbox::wait_child(pid)?;
            if let Some(c) = copiers {
                c.finish();
            }
            Ok(code)
        }
    }
}
