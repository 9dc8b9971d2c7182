//! An external OCI runtime binary (`--runtime crun`, runc, youki): the same bundle, driven with the
//! runtime CLI's `create`/`start`/`exec`/`delete`, with its state under `ROOT/runtimes/<name>/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{ExecOutcome, Io, Sandbox};
use crate::error::{Result, RunnerError};

pub struct External {
    binary: PathBuf,
    root: PathBuf,
}

impl External {
    pub fn new(state_root: &Path, runtime: &str) -> Result<External> {
        let binary = resolve_binary(runtime)?;
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runtime".into());
        let root = state_root.join("runtimes").join(name);
        std::fs::create_dir_all(&root).map_err(|e| RunnerError::io("creating", &root, e))?;
        Ok(External { binary, root })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<()> {
        let out = cmd
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| RunnerError::io("running", &self.binary, e))?;
        if out.status.success() {
            return Ok(());
        }
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if msg.contains("executable file not found")
            || msg.contains("No such file or directory") && what == "create"
        {
            // crun: "executable file `foo` not found in $PATH: No such file or directory"
            let cmd = msg.split('`').nth(1).unwrap_or_default().to_string();
            if !cmd.is_empty() {
                return Err(RunnerError::CommandNotFound { command: cmd });
            }
        }
        Err(RunnerError::Sandbox(format!(
            "{} {what}: {}",
            self.binary.display(),
            if msg.is_empty() {
                out.status.to_string()
            } else {
                msg
            }
        )))
    }
}

/// `crun` → the `crun` on PATH; a path is taken as it is.
pub fn resolve_binary(runtime: &str) -> Result<PathBuf> {
    if runtime.contains('/') {
        let p = PathBuf::from(runtime);
        if p.is_file() {
            return Ok(p);
        }
        return Err(RunnerError::invalid(
            "--runtime",
            format!("{runtime} does not exist"),
        ));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(runtime))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            RunnerError::invalid(
                "--runtime",
                format!("runtime {runtime:?} was not found in $PATH; give its full path"),
            )
        })
}

fn stdio(io: Io, cmd: &mut Command) {
    match io {
        Io::Fds {
            stdin,
            stdout,
            stderr,
        } => {
            cmd.stdin(Stdio::from(stdin))
                .stdout(Stdio::from(stdout))
                .stderr(Stdio::from(stderr));
        }
        Io::Console(path) => {
            cmd.arg("--console-socket").arg(path);
        }
    }
}

impl Sandbox for External {
    fn start(&self, id: &str, bundle: &Path, io: Io) -> Result<i32> {
        let _ = self.delete(id);
        let pid_file = bundle.join("init.pid");
        let _ = std::fs::remove_file(&pid_file);
        let mut create = self.command();
        create
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        // The runtime passes its own stdio to the container; its error messages need a pipe of
        // their own, so stderr is captured only when the container's stderr is not ours to set.
        let console = matches!(io, Io::Console(_));
        stdio(io, &mut create);
        create.arg(id);
        let out = if console {
            create
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
        } else {
            &mut create
        }
        .output()
        .map_err(|e| RunnerError::io("running", &self.binary, e))?;
        if !out.status.success() {
            let _ = self.delete(id);
            return Err(RunnerError::Sandbox(format!(
                "{} create failed ({}){}",
                self.binary.display(),
                out.status,
                if out.stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {}", String::from_utf8_lossy(&out.stderr).trim())
                }
            )));
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .map_err(|e| RunnerError::io("reading", &pid_file, e))?
            .trim()
            .parse()
            .map_err(|_| RunnerError::Sandbox("the runtime wrote no pid".into()))?;
        let mut start = self.command();
        start.arg("start").arg(id);
        if let Err(e) = self.run(start, "start") {
            let _ = self.delete(id);
            return Err(e);
        }
        Ok(pid)
    }

    fn exec(&self, id: &str, process: &Path, io: Io, detach: bool) -> Result<ExecOutcome> {
        let mut cmd = self.command();
        cmd.arg("exec").arg("--process").arg(process);
        if detach {
            cmd.arg("--detach");
        }
        if let Io::Fds { .. } = io {
            stdio(io, &mut cmd);
        }
        cmd.arg(id);
        let status = cmd
            .status()
            .map_err(|e| RunnerError::io("running", &self.binary, e))?;
        Ok(ExecOutcome::Exited(status.code().unwrap_or(125)))
    }

    fn delete(&self, id: &str) -> Result<()> {
        if !self.root.join(id).exists() {
            return Ok(());
        }
        let mut cmd = self.command();
        cmd.arg("delete").arg("--force").arg(id);
        self.run(cmd, "delete")
    }
}
