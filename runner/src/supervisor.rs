//! The supervisor: berth re-executed (`berth __supervise ID`), one per running container. It
//! prepares the filesystem and bundle, starts the container in the sandbox, owns its stdio (log
//! file, and the user's terminal when attached), waits for it, records how it ended, applies the
//! restart policy and `--rm`. Detached, it runs in its own session and outlives the CLI; attached
//! (`run` without `-d`, `start -a`), it shares the CLI's terminal and exits with the container's
//! code.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use berth_store::Store;

use crate::bundle::{self, BundleInput, NetworkMode};
use crate::container::{Container, Runner};
use crate::error::{IoContext, Result, RunnerError};
use crate::logs::LogFile;
use crate::state::{Status, now_rfc3339, process_alive, process_start_time};
use crate::stdio::Plumbing;

/// The hidden subcommand the CLI maps to [`main`].
pub const SUBCOMMAND: &str = "__supervise";

/// Start a supervisor for `c` (see [`Runner::spawn_supervisor`]).
pub fn spawn(root: &Path, c: &Container, attach: bool) -> Result<i32> {
    let exe =
        std::env::current_exe().map_err(|e| RunnerError::io("finding", "berth's own binary", e))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("--root").arg(root).arg(SUBCOMMAND).arg(c.id());
    if attach {
        cmd.arg("--attach");
        let _raw = c
            .record
            .config
            .tty
            .then(crate::terminal::RawMode::stdin)
            .flatten();
        let mut child = cmd
            .spawn()
            .map_err(|e| RunnerError::io("starting", &exe, e))?;
        // Terminal signals (^C, ^\) reach the supervisor directly, as it is in our process
        // group; others sent to us are passed on.
        let sup = child.id() as i32;
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGQUIT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
            signal_hook::consts::SIGUSR1,
            signal_hook::consts::SIGUSR2,
        ]) {
            std::thread::spawn(move || {
                for s in signals.forever() {
                    if s != signal_hook::consts::SIGINT && s != signal_hook::consts::SIGQUIT {
                        let _ = crate::signal::send(sup, s);
                    }
                }
            });
        }
        let status = child
            .wait()
            .map_err(|e| RunnerError::io("waiting for", &exe, e))?;
        return Ok(status.code().unwrap_or(125));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| RunnerError::io("starting", &exe, e))?;
    let mut report = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut report);
    }
    if report.starts_with("ok") {
        return Ok(0);
    }
    // The supervisor failed before the container ran: it has exited (or is about to).
    let _ = child.wait();
    let (code, message) = match report.strip_prefix("err ") {
        Some(rest) => {
            let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
            (code.parse().unwrap_or(125), msg.trim().to_string())
        }
        None => (
            125,
            "the container's supervisor exited before starting it".to_string(),
        ),
    };
    Err(RunnerError::Reported { code, message })
}

/// The supervisor's entry point; returns the process exit code.
pub fn main(root: &Path, id: &str, attach: bool) -> i32 {
    if !attach {
        // Its own session: the CLI's terminal and process group can go away.
        let _ = rustix::process::setsid();
    }
    let mut ready = (!attach).then(std::io::stdout);
    match supervise(root, id, attach, &mut ready) {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            match ready.take() {
                Some(mut out) => {
                    let _ = writeln!(out, "err {code} {e}");
                }
                None => eprintln!("Error: {e}"),
            }
            code as i32
        }
    }
}

fn signal_ready(ready: &mut Option<std::io::Stdout>) {
    if let Some(mut out) = ready.take() {
        let _ = out.write_all(b"ok\n").and_then(|_| out.flush());
        // Nothing else goes to the CLI: close our end so it stops reading.
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            let _ = rustix::stdio::dup2_stdout(&null);
            let _ = rustix::stdio::dup2_stderr(&null);
        }
    }
}

fn supervise(
    root: &Path,
    id: &str,
    attach: bool,
    ready: &mut Option<std::io::Stdout>,
) -> Result<i32> {
    let runner = Runner::open(Store::open(root)?)?;
    let mut c = runner.get(id)?;
    if matches!(c.state.status, Status::Running | Status::Restarting)
        && process_alive(
            c.state.internal.supervisor_pid,
            c.state.internal.supervisor_start,
        )
    {
        signal_ready(ready);
        return Ok(0);
    }
    // A container left behind by a crash: release what it held before starting again.
    runner.cleanup(&c)?;
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let me_start = process_start_time(me).unwrap_or(0);
    runner.update_state(&mut c, |s| {
        s.internal.supervisor_pid = me;
        s.internal.supervisor_start = me_start;
        s.internal.manually_stopped = false;
    })?;
    let sandbox = crate::sandbox::for_runtime(root, &c.record.runtime_path)?;
    let log = LogFile::open(&c.log_path()).ctx("opening log", c.log_path())?;
    let current = Arc::new(AtomicI32::new(0));
    let mut signals = Some(catch_signals()?);
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    let code = loop {
        let started = Instant::now();
        let (pid, copiers) = match start_once(&runner, &mut c, &*sandbox, log.clone(), attach) {
            Ok(r) => r,
            Err(e) => {
                let _ = runner.cleanup(&c);
                let msg = e.to_string();
                let code = e.exit_code() as i32;
                let _ = runner.update_state(&mut c, |s| {
                    if first {
                        s.status = Status::Created;
                    } else {
                        s.set_exited(code, false, &now_rfc3339());
                    }
                    s.running = false;
                    s.restarting = false;
                    s.exit_code = code;
                    s.error = msg.clone();
                    s.internal.supervisor_pid = 0;
                    s.internal.supervisor_start = 0;
                });
                if first {
                    if c.record.host_config.auto_remove {
                        let _ = runner.remove_released(&c, true);
                    }
                    return Err(e);
                }
                break code;
            }
        };
        current.store(pid, Ordering::SeqCst);
        if first {
            signal_ready(ready);
            if let Some(signals) = signals.take() {
                forward_signals(
                    signals,
                    current.clone(),
                    copiers.master().and_then(|m| m.try_clone().ok()),
                );
            }
            first = false;
        }
        let code = crate::sandbox::wait_child(pid).unwrap_or(255);
        tracing::debug!("container exited with {code}");
        current.store(0, Ordering::SeqCst);
        copiers.finish();
        let cgroup = crate::cgroups::path_for(&c.record.id);
        let oom = crate::cgroups::oom_kills(&cgroup) > 0;
        let _ = runner.cleanup(&c);
        tracing::debug!("released runtime state, cgroup and mounts");
        runner.reload(&mut c).ok();
        let restart = should_restart(&c, code);
        runner.update_state(&mut c, |s| {
            s.set_exited(code, oom, &now_rfc3339());
            if restart {
                s.status = Status::Restarting;
                s.restarting = true;
                s.running = true;
                s.restart_count += 1;
            }
        })?;
        if !restart {
            break code;
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        // Sleep in slices, so a `stop` during the backoff ends the loop promptly.
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            runner.reload(&mut c).ok();
            if c.state.internal.manually_stopped {
                break;
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
        runner.reload(&mut c)?;
        if c.state.internal.manually_stopped {
            runner.update_state(&mut c, |s| {
                s.status = Status::Exited;
                s.restarting = false;
                s.running = false;
            })?;
            break code;
        }
    };
    let _ = runner.update_state(&mut c, |s| {
        s.internal.supervisor_pid = 0;
        s.internal.supervisor_start = 0;
    });
    if c.record.host_config.auto_remove {
        runner.remove_released(&c, true)?;
    }
    Ok(code)
}

fn should_restart(c: &Container, code: i32) -> bool {
    if c.state.internal.manually_stopped {
        return false;
    }
    let p = &c.record.host_config.restart_policy;
    match p.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            code != 0
                && (p.maximum_retry_count == 0
                    || (c.state.restart_count as i64) < p.maximum_retry_count)
        }
        _ => false,
    }
}

fn catch_signals() -> Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::*;
    signal_hook::iterator::Signals::new([
        SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH,
    ])
    .map_err(|e| RunnerError::Sandbox(format!("installing signal handlers: {e}")))
}

/// Signals sent to the supervisor go to the container; a resized terminal resizes its pty.
///
/// The handlers are installed by [`catch_signals`] before the container starts (no thread yet:
/// the sandbox forks), so a signal that arrives in between waits in signal-hook's pipe instead of
/// killing the supervisor; this thread, started once the container runs, delivers it.
fn forward_signals(
    mut signals: signal_hook::iterator::Signals,
    current: Arc<AtomicI32>,
    master: Option<std::os::fd::OwnedFd>,
) {
    use signal_hook::consts::*;
    std::thread::spawn(move || {
        for s in signals.forever() {
            if s == SIGWINCH {
                if let Some(m) = &master {
                    crate::terminal::copy_size(m);
                }
                continue;
            }
            let pid = current.load(Ordering::SeqCst);
            if pid > 0 {
                let _ = crate::signal::send(pid, s);
            }
        }
    });
}

/// Mount, write the bundle, start; returns the init PID and the running copies of its streams.
fn start_once(
    runner: &Runner,
    c: &mut Container,
    sandbox: &dyn crate::sandbox::Sandbox,
    log: Arc<LogFile>,
    attach: bool,
) -> Result<(i32, crate::stdio::Copiers)> {
    tracing::debug!("start: preparing {}", c.short_id());
    let store = runner.store();
    let img = store.resolve_image(&c.record.image)?;
    let lowers = store.ensure_snapshots(&img)?;
    let p = c.paths.clone();
    let rootfs = p.rootfs();
    crate::rootfs::mount_overlay(&lowers, &p.upper(), &p.work(), &rootfs)?;
    tracing::debug!("start: rootfs mounted");
    let network = network_mode(runner, c)?;
    let mounts = crate::volumes::prepare(runner, c, &rootfs)?;
    write_etc_files(c, &network)?;
    let user = crate::user::resolve_user(&rootfs, &c.record.config.user)
        .map_err(|e| RunnerError::invalid("user", e.to_string()))?;
    if !c.record.config.working_dir.is_empty() {
        let wd = rootfs.join(c.record.config.working_dir.trim_start_matches('/'));
        if !wd.exists() {
            let _ = std::fs::create_dir_all(&wd);
        }
    }
    let cgroups_path = crate::cgroups::path_for(&c.record.id);
    let console_size = (attach && c.record.config.tty)
        .then(crate::terminal::stdin_size)
        .flatten();
    let network_for_spec = network.clone();
    let spec = bundle::spec(&BundleInput {
        record: &c.record,
        rootfs: &rootfs,
        user: &user,
        args: bundle::argv(&c.record),
        network: network_for_spec,
        cgroups_path: cgroups_path.clone(),
        hostname_file: &p.hostname(),
        hosts_file: &p.hosts(),
        resolv_conf: &p.resolv_conf(),
        mounts,
        cgroup_v2: crate::cgroups::is_v2(),
        console_size,
    })?;
    bundle::write(&p.bundle(), &spec)?;
    tracing::debug!("start: bundle written");
    let mut plumbing = Plumbing::new(c.record.config.tty, c.record.config.open_stdin)?;
    let io = plumbing
        .io
        .take()
        .ok_or_else(|| RunnerError::Sandbox("no stdio".into()))?;
    let own_netns = network == NetworkMode::None;
    let prestart = |pid: i32| {
        if own_netns {
            crate::sandbox::loopback_up(pid)?;
        }
        Ok(())
    };
    let pid = sandbox.start(&c.record.id, &p.bundle(), io, &prestart)?;
    tracing::debug!("start: sandbox started pid {pid}");
    let copiers = plumbing.connect(Some(log), attach)?;
    let start = process_start_time(pid).unwrap_or(0);
    runner.update_state(c, |s| {
        s.set_running(pid, start, &now_rfc3339());
        s.internal.cgroup = cgroups_path.clone();
        s.internal.rootfs_mounted = true;
    })?;
    Ok((pid, copiers))
}

/// `--network`: none, host, or container:NAME (its namespace, which must be running).
pub fn network_mode(runner: &Runner, c: &Container) -> Result<NetworkMode> {
    let mode = c.record.host_config.network_mode.as_str();
    match mode {
        "none" => Ok(NetworkMode::None),
        "host" => Ok(NetworkMode::Host),
        m if m.starts_with("container:") => {
            let other = runner.get(&m["container:".len()..])?;
            if other.state.status != Status::Running
                || !process_alive(other.state.pid, other.state.internal.pid_start)
            {
                return Err(RunnerError::Conflict(format!(
                    "cannot join network of a non running container: {}",
                    other.record.name
                )));
            }
            Ok(NetworkMode::Join(
                format!("/proc/{}/ns/net", other.state.pid).into(),
            ))
        }
        other => Err(unsupported_network(other)),
    }
}

pub fn unsupported_network(mode: &str) -> RunnerError {
    RunnerError::Unsupported(format!(
        "network mode {mode:?} is not available yet: bridge and user-defined networks are not implemented in this version of berth; use --network none, --network host or --network container:NAME"
    ))
}

/// /etc/hostname, /etc/hosts and /etc/resolv.conf, as Docker generates them.
fn write_etc_files(c: &Container, network: &NetworkMode) -> Result<()> {
    let p = &c.paths;
    let hostname = &c.record.config.hostname;
    let host_mode = *network == NetworkMode::Host;
    let name = if host_mode {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    } else {
        hostname.clone()
    };
    crate::state::write_regenerated(&p.hostname(), format!("{name}\n").as_bytes())?;
    let mut hosts = if host_mode {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string()
    };
    for h in &c.record.host_config.extra_hosts {
        let (host, ip) = h
            .split_once(['=', ':'])
            .ok_or_else(|| RunnerError::invalid("--add-host", format!("{h:?}: use HOST:IP")))?;
        hosts.push_str(&format!("{ip}\t{host}\n"));
    }
    if !host_mode {
        hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    crate::state::write_regenerated(&p.hosts(), hosts.as_bytes())?;
    let mut resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if !c.record.host_config.dns.is_empty() {
        resolv = c
            .record
            .host_config
            .dns
            .iter()
            .map(|d| format!("nameserver {d}\n"))
            .collect();
    }
    crate::state::write_regenerated(&p.resolv_conf(), resolv.as_bytes())?;
    Ok(())
}
