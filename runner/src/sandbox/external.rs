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
        let mut c = if crun_needs_private_cgroup_view(&self.binary) {
            // crun refuses a hybrid host whose cgroup2 mount holds controllers. It runs here in a
            // mount namespace of its own without that mount, so it sees plain cgroup v1 (the
            // container's own mount namespace is cloned from that one).
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg("umount -l /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"")
                .arg(&self.binary);
            c
        } else {
            Command::new(&self.binary)
        };
        c.arg("--root").arg(&self.root);
        c
    }

    /// The runtime's own log for `id` (its errors; the container's stderr is not ours to read).
    fn log_path(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}.log"))
    }

    fn logged_error(&self, id: &str) -> String {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        // crun writes JSON lines with --log-format=json; plain lines otherwise.
        text.lines()
            .filter_map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["msg"].as_str().map(String::from))
                    .or_else(|| (!l.trim().is_empty()).then(|| l.trim().to_string()))
            })
            .next_back()
            .unwrap_or_default()
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

/// crun's message for a missing command: "executable file `foo` not found in $PATH: …".
fn not_found_command(msg: &str) -> Option<String> {
    if !msg.contains("not found") {
        return None;
    }
    msg.split('`').nth(1).map(String::from)
}

/// Whether `binary` is crun on a hybrid host whose cgroup2 mount holds controllers.
fn crun_needs_private_cgroup_view(binary: &Path) -> bool {
    let is_crun = binary
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("crun"));
    is_crun
        && !crate::cgroups::is_v2()
        && std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .is_ok_and(|c| !c.trim().is_empty())
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
    fn start(
        &self,
        id: &str,
        bundle: &Path,
        io: Io,
        prestart: &dyn Fn(i32) -> Result<()>,
    ) -> Result<i32> {
        let _ = self.delete(id);
        let pid_file = bundle.join("init.pid");
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(self.log_path(id));
        let mut create = self.command();
        create
            .arg(format!("--log={}", self.log_path(id).display()))
            .arg("--log-format=json")
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
            let logged = self.logged_error(id);
            let _ = self.delete(id);
            let msg = if !logged.is_empty() {
                logged
            } else {
                String::from_utf8_lossy(&out.stderr).trim().to_string()
            };
            if let Some(cmd) = not_found_command(&msg) {
                return Err(RunnerError::CommandNotFound { command: cmd });
            }
            return Err(RunnerError::Sandbox(format!(
                "{} create failed ({}){}",
                self.binary.display(),
                out.status,
                if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {msg}")
                }
            )));
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .map_err(|e| RunnerError::io("reading", &pid_file, e))?
            .trim()
            .parse()
            .map_err(|_| RunnerError::Sandbox("the runtime wrote no pid".into()))?;
        if let Err(e) = prestart(pid) {
            let _ = self.delete(id);
            return Err(e);
        }
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
