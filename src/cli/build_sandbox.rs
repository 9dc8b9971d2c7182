//! RUN steps run in a child process, `berth __build-run`, which starts the step's bundle in
//! the embedded sandbox, waits for it and cleans up. The embedded sandbox forks, so the process
//! that starts it must have no other threads; the build process does not keep that promise
//! (stages build in parallel, the tty view redraws on a timer), its child does.
//!
//! It also gives Ctrl-C a clean path. The build process catches SIGINT, SIGTERM and SIGHUP
//! ([`Interrupt`]): a step's child is told to stop (SIGTERM), kills the step's processes,
//! removes the container's runtime state and cgroup and exits; the builder then unwinds (its
//! mounts and scratch directories go) and reports the interruption; nothing is tagged. A second
//! Ctrl-C ends the build process at once. The child also dies with its parent
//! (`PR_SET_PDEATHSIG`), so even a SIGKILLed build leaves no step running.
//!
//! When the child is killed too (the whole process group SIGKILLed, the OOM killer), nothing is
//! left to remove the step's runtime state (`ROOT/runtime/build-…`) and cgroups. A step's id
//! names the build process that owns it (PID and start time, [`step_id`]), so the next build,
//! `builder prune` and `system check` find the steps whose owner is gone and remove them
//! ([`sweep_stale_steps`]); a running build's steps are left alone.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use berth_builder::ExecError;
use berth_runner::sandbox::{Embedded, Io, Sandbox};
use clap::Args;
use rustix::event::{PollFd, PollFlags, poll};
use serde::{Deserialize, Serialize};

const SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

/// The build process's interruption state: a flag for step boundaries and a pipe a RUN's
/// wait polls.
pub struct Interrupt {
    flag: Arc<AtomicBool>,
    wake: OwnedFd,
}

static INTERRUPT: OnceLock<Option<Interrupt>> = OnceLock::new();

impl Interrupt {
    /// Catch SIGINT/SIGTERM/SIGHUP for the rest of this process (once; None if that failed,
    /// and the default actions stay).
    pub fn install() -> Option<&'static Interrupt> {
        INTERRUPT
            .get_or_init(|| {
                let flag = Arc::new(AtomicBool::new(false));
                let (wake, notify) = std::io::pipe().ok()?;
                for sig in SIGNALS {
                    // A second signal ends the process at once (exit code 130).
                    signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())
                        .ok()?;
                    signal_hook::flag::register(sig, flag.clone()).ok()?;
                    let n: OwnedFd = notify.try_clone().ok()?.into();
                    signal_hook::low_level::pipe::register(sig, n).ok()?;
                }
                Some(Interrupt {
                    flag,
                    wake: wake.into(),
                })
            })
            .as_ref()
    }

    pub fn get() -> Option<&'static Interrupt> {
        INTERRUPT.get().and_then(Option::as_ref)
    }

    pub fn raised(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Stops the steps running now and any started later (a stage failed, so the build will):
/// a flag and a pipe that stays readable once written, so every waiting step wakes.
pub struct Cancel {
    flag: AtomicBool,
    wake: OwnedFd,
    notify: OwnedFd,
}

impl Cancel {
    pub fn new() -> std::io::Result<Cancel> {
        let (r, w) = std::io::pipe()?;
        Ok(Cancel {
            flag: AtomicBool::new(false),
            wake: r.into(),
            notify: w.into(),
        })
    }

    pub fn cancel(&self) {
        if !self.flag.swap(true, Ordering::SeqCst) {
            let _ = rustix::io::write(&self.notify, b"x");
        }
    }

    fn raised(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// A new step's container id: `build-<pid>-<start>-<nanos>-<n>`, where `pid` and `start` (its
/// start time in clock ticks since boot, as `/proc/PID/stat` says) name this build process, so
/// [`sweep_stale_steps`] can tell a dead owner from a live one even after the PID is reused.
pub fn step_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // A counter too: stages building at once may start steps within the clock's tick.
    static STEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STEPS.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let start = berth_runner::state::process_start_time(pid as i32).unwrap_or(0);
    format!("build-{pid}-{start}-{nanos:x}-{n}")
}

/// Whether the build process that made step `id` is still running. An id of another shape
/// (`build-<pid>-<nanos>-<n>`, before ids named the start time) is judged by its PID alone.
fn owner_alive(id: &str) -> bool {
    let mut parts = id.strip_prefix("build-").unwrap_or_default().split('-');
    let Some(pid) = parts.next().and_then(|p| p.parse::<i32>().ok()) else {
        // Not a step of ours: leave it.
        return true;
    };
    let rest: Vec<&str> = parts.collect();
    match rest.first().and_then(|s| s.parse::<u64>().ok()) {
        // 0: the start time could not be read when the id was made.
        Some(start) if rest.len() == 3 && start != 0 => {
            berth_runner::state::process_alive(pid, start)
        }
        _ => berth_runner::state::process_start_time(pid).is_some(),
    }
}

/// Removes the runtime state (`ROOT/runtime/build-…`) and cgroups (in every hierarchy) of RUN
/// steps whose build process is gone: what a build SIGKILLed with its step's child left. The
/// runtime's delete kills anything still running in such a step first. Cgroups are shared by
/// every state root on the host; only empty ones can be removed, and only dead owners' are
/// tried. Returns the ids removed.
pub fn sweep_stale_steps(root: &Path) -> Vec<String> {
    let runtime = root.join("runtime");
    let mut ids = std::collections::BTreeSet::new();
    let mut dirs = vec![runtime.clone()];
    dirs.extend(berth_runner::cgroups::dirs("/berth"));
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        ids.extend(
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("build-")),
        );
    }
    let mut removed = Vec::new();
    for id in ids.into_iter().filter(|id| !owner_alive(id)) {
        let state = runtime.join(&id);
        if state.exists() {
            match Embedded::new(runtime.clone()).and_then(|s| s.delete(&id)) {
                Ok(()) => {}
                Err(e) => tracing::debug!("deleting the stale build step {id}: {e}"),
            }
            // A state the runtime could not read is removed as it is.
            if state.exists()
                && let Err(e) = std::fs::remove_dir_all(&state)
            {
                eprintln!(
                    "warning: cannot remove the stale build step state {}: {e}",
                    state.display()
                );
                continue;
            }
        }
        let cgroup = berth_runner::cgroups::path_for(&id);
        berth_runner::cgroups::remove(&cgroup);
        if berth_runner::cgroups::dirs(&cgroup).is_empty() {
            removed.push(id);
        }
    }
    removed
}

/// What the child reports on its stderr's last line.
#[derive(Serialize, Deserialize)]
struct Outcome {
    code: Option<i32>,
    error: Option<String>,
}

/// One step's process, as the executor describes it to the child.
pub struct StepRun<'a> {
    pub state_root: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub cgroup: &'a str,
    /// Bring up `lo` in the step's own network namespace.
    pub loopback: bool,
}

fn xerr(e: impl std::fmt::Display) -> ExecError {
    ExecError(e.to_string())
}

/// Runs `step` in a `berth __build-run` child, its output (stdout and stderr merged) to
/// `output`; the exit code in Docker's convention. An interruption stops the step and is an
/// `Err` saying so.
pub fn run_step(
    step: &StepRun<'_>,
    cancel: &Cancel,
    output: &mut dyn FnMut(&[u8]),
) -> Result<i32, ExecError> {
    let interrupt = Interrupt::get();
    if interrupt.is_some_and(Interrupt::raised) {
        return Err(ExecError("the build was interrupted".into()));
    }
    if cancel.raised() {
        return Err(ExecError("cancelled: another stage failed".into()));
    }
    let exe = std::env::current_exe().map_err(xerr)?;
    let (mut out_r, out_w) = std::io::pipe().map_err(xerr)?;
    let (mut err_r, err_w) = std::io::pipe().map_err(xerr)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root")
        .arg(step.state_root)
        .args(["__build-run", "--id", step.id, "--cgroup", step.cgroup])
        .args(["--parent", &std::process::id().to_string()])
        .arg("--bundle")
        .arg(step.bundle);
    if step.loopback {
        cmd.arg("--loopback");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .spawn()
        .map_err(|e| xerr(format!("starting the step's sandbox process: {e}")))?;
    // The Command holds copies of the write ends until it is dropped.
    drop(cmd);
    let mut buf = vec![0u8; 64 * 1024];
    let mut stopping = false;
    // The child's own stderr (its report, and any logging) is read as it comes, so a chatty
    // child never blocks on a full pipe; only its tail is kept.
    let mut report: Vec<u8> = Vec::new();
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let mut fds = Vec::with_capacity(4);
        let mut roles = Vec::with_capacity(4);
        if out_open {
            fds.push(PollFd::new(&out_r, PollFlags::IN));
            roles.push(0);
        }
        if err_open {
            fds.push(PollFd::new(&err_r, PollFlags::IN));
            roles.push(1);
        }
        if !stopping {
            fds.push(PollFd::new(&cancel.wake, PollFlags::IN));
            roles.push(2);
            if let Some(i) = interrupt {
                fds.push(PollFd::new(&i.wake, PollFlags::IN));
                roles.push(2);
            }
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(xerr(format!("waiting for the step's output: {e}"))),
        }
        let ready: Vec<usize> = fds
            .iter()
            .zip(&roles)
            .filter(|(f, _)| !f.revents().is_empty())
            .map(|(_, r)| *r)
            .collect();
        drop(fds);
        if ready.contains(&2) {
            stopping = true;
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::TERM,
            );
        }
        if ready.contains(&0) {
            match out_r.read(&mut buf) {
                Ok(0) => out_open = false,
                Ok(n) => output(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => out_open = false,
            }
        }
        if ready.contains(&1) {
            match err_r.read(&mut buf) {
                Ok(0) => err_open = false,
                Ok(n) => {
                    report.extend_from_slice(&buf[..n]);
                    if report.len() > 256 * 1024 {
                        report.drain(..report.len() - 64 * 1024);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => err_open = false,
            }
        }
    }
    let report = String::from_utf8_lossy(&report).into_owned();
    let _ = child.wait();
    if interrupt.is_some_and(Interrupt::raised) {
        return Err(ExecError("the build was interrupted".into()));
    }
    if stopping || cancel.raised() {
        return Err(ExecError("cancelled: another stage failed".into()));
    }
    let outcome = report
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Outcome>(l).ok());
    match outcome {
        Some(Outcome {
            code: Some(code), ..
        }) => Ok(code),
        Some(Outcome { error: Some(e), .. }) => Err(ExecError(e)),
        _ => Err(ExecError(format!(
            "the step's sandbox process failed: {}",
            report.trim()
        ))),
    }
}

#[derive(Args, Debug)]
pub struct BuildRunArgs {
    #[arg(long)]
    id: String,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    cgroup: String,
    #[arg(long)]
    loopback: bool,
    /// The build process: the step must not outlive it.
    #[arg(long)]
    parent: Option<i32>,
}

/// `berth __build-run`: start the bundle, wait for it, clean up, report on stderr.
pub fn build_run(root: &Path, a: BuildRunArgs) -> Result<ExitCode> {
    let outcome = match child(root, &a) {
        Ok(code) => Outcome {
            code: Some(code),
            error: None,
        },
        Err(e) => Outcome {
            code: None,
            error: Some(format!("{e:#}")),
        },
    };
    eprintln!("{}", serde_json::to_string(&outcome)?);
    Ok(ExitCode::SUCCESS)
}

fn child(root: &Path, a: &BuildRunArgs) -> Result<i32> {
    use rustix::process::{Pid, Signal, kill_process, set_parent_process_death_signal};
    set_parent_process_death_signal(Some(Signal::TERM)).context("setting the death signal")?;
    let (wake, notify) = std::io::pipe().context("creating a pipe")?;
    for sig in SIGNALS {
        let n: OwnedFd = notify.try_clone().context("duplicating a pipe")?.into();
        signal_hook::low_level::pipe::register(sig, n).context("catching signals")?;
    }
    // The parent may have died before the death signal was set (the orphan is then another
    // process's child: init's or a subreaper's).
    let ppid = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    if ppid.is_none() || a.parent.is_some_and(|p| Some(p) != ppid) {
        anyhow::bail!("the build process is gone");
    }
    let sandbox = Embedded::new(root.join("runtime"))?;
    let stdout: OwnedFd = std::io::stdout().as_fd().try_clone_to_owned()?;
    let stderr: OwnedFd = stdout.try_clone()?;
    let stdin: OwnedFd = std::fs::File::open("/dev/null")?.into();
    let loopback = a.loopback;
    let prestart = |pid: i32| {
        if loopback {
            berth_runner::sandbox::loopback_up(pid)
        } else {
            Ok(())
        }
    };
    let started = sandbox.start(
        &a.id,
        &a.bundle,
        Io::Fds {
            stdin,
            stdout,
            stderr,
        },
        &prestart,
    );
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => {
            let _ = sandbox.delete(&a.id);
            berth_runner::cgroups::remove(&a.cgroup);
            return Err(e.into());
        }
    };
    // Wait for the step's init, or for a signal to stop it.
    let init = Pid::from_raw(pid).context("invalid init pid")?;
    let pidfd = rustix::process::pidfd_open(init, rustix::process::PidfdFlags::empty())
        .context("watching the step's process")?;
    loop {
        let mut fds = [
            PollFd::new(&pidfd, PollFlags::IN),
            PollFd::new(&wake, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if !fds[1].revents().is_empty() {
            let _ = kill_process(init, Signal::KILL);
        }
        if !fds[0].revents().is_empty() {
            break;
        }
    }
    let code = berth_runner::sandbox::wait_child(pid);
    // delete kills whatever the init left behind in the container.
    let _ = sandbox.delete(&a.id);
    berth_runner::cgroups::remove(&a.cgroup);
    Ok(code?)
}
