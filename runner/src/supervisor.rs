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
use crate::cgroups::MigrationPrimer;
use crate::container::{Container, Runner};
use crate::error::{IoContext, Result, RunnerError};
use crate::logs::LogFile;
use crate::process::{process_alive, process_start_time};
use crate::state::{Status, now_rfc3339};
use crate::stdio::Plumbing;

/// The hidden subcommand the CLI maps to [`main`].
pub const SUBCOMMAND: &str = "__supervise";

/// How a supervisor is to be started, decided before the caller starts a thread of its own
/// (the attached supervisor runs in the caller only when that is single-threaded).
pub struct Launch {
    attach: bool,
    in_process: bool,
    primer: Option<MigrationPrimer>,
}

impl Launch {
    pub fn decide(attach: bool) -> Launch {
        Launch {
            attach,
            in_process: attach && single_threaded(),
            primer: None,
        }
    }

    /// Start the cgroup-migration grace period now ([`MigrationPrimer`]), so that it runs while
    /// the caller creates the container; its thread is joined before the sandbox forks.
    pub fn primed(mut self) -> Launch {
        self.primer = Some(MigrationPrimer::start());
        self
    }
}

/// Start a supervisor for `c` (see [`Runner::spawn_supervisor`]).
pub fn spawn(root: &Path, c: &Container, attach: bool) -> Result<i32> {
    spawn_with(root, c, Launch::decide(attach))
}

/// [`spawn`] as `launch` says.
pub fn spawn_with(root: &Path, c: &Container, launch: Launch) -> Result<i32> {
    let Launch {
        attach,
        in_process,
        primer,
    } = launch;
    if in_process {
        // Attached, the supervisor lives exactly as long as the CLI and shares its terminal,
        // so the CLI can be the supervisor: one exec of berth (a few ms of loading and page
        // faults, and a process hop on a busy CPU) less for every `run` in the foreground. The
        // sandbox forks, which is only safe with no other thread.
        let _raw = c
            .record
            .config
            .tty
            .then(crate::terminal::RawMode::stdin)
            .flatten();
        return Ok(main_with(root, c.id(), true, primer));
    }
    // A supervisor process of its own, which primes for itself: nothing here waits for this
    // process's primer (spawning a process is safe with it running).
    if let Some(p) = primer {
        p.detach();
    }
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

/// Start `berth __supervise ID --reap` in the background (its own process group, no stdio, not
/// waited for) to delete the files of the removed container `id` ([`reap`]). Forked without
/// waiting for its exec ([`crate::sandbox::spawn_detached`]): the caller is about to exit.
pub fn spawn_reaper(root: &Path, id: &str) -> Result<()> {
    let exe =
        std::env::current_exe().map_err(|e| RunnerError::io("finding", "berth's own binary", e))?;
    crate::sandbox::spawn_detached(
        &exe,
        &[
            "--root".as_ref(),
            root.as_os_str(),
            SUBCOMMAND.as_ref(),
            id.as_ref(),
            "--reap".as_ref(),
        ],
    )?;
    Ok(())
}

/// Delete `containers/.rm-ID`, the files of a container that was removed (see
/// [`Runner::remove_released_deferred`]); returns the process exit code.
pub fn reap(root: &Path, id: &str) -> i32 {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        eprintln!("Error: {id:?} is not a container ID");
        return 125;
    }
    let dir = root.join("containers").join(format!(".rm-{id}"));
    // Nothing is mounted there once a container is released; a lazy unmount of anything that
    // is keeps the delete from reaching into a mounted filesystem.
    if crate::rootfs::unmount_all_under(&dir).is_err() {
        return 1;
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            eprintln!("Error: removing {}: {e}", dir.display());
            1
        }
    }
}

/// Whether this process runs a single thread.
fn single_threaded() -> bool {
    crate::sandbox::threads() == Some(1)
}

/// The supervisor's entry point; returns the process exit code.
pub fn main(root: &Path, id: &str, attach: bool) -> i32 {
    main_with(root, id, attach, None)
}

/// [`main`], with the cgroup primer the caller already started, if any.
fn main_with(root: &Path, id: &str, attach: bool, primer: Option<MigrationPrimer>) -> i32 {
    if !attach {
        // Its own session: the CLI's terminal and process group can go away.
        let _ = rustix::process::setsid();
    }
    let mut ready = (!attach).then(std::io::stdout);
    match supervise(root, id, attach, &mut ready, primer) {
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
    primer: Option<MigrationPrimer>,
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
    // The grace period the runtime's cgroup join waits for runs while the start is prepared
    // (see MigrationPrimer); joined before the sandbox forks.
    let mut primer = Some(primer.unwrap_or_else(MigrationPrimer::start));
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
    let mut ports: Option<crate::network::ports::Reservation> = None;
    let mut dns_stop: Option<Arc<std::sync::atomic::AtomicBool>> = None;
    let code = loop {
        let started = Instant::now();
        let (pid, copiers) = match start_once(
            &runner,
            &mut c,
            &*sandbox,
            log.clone(),
            attach,
            &mut ports,
            &mut dns_stop,
            primer.take(),
        ) {
            Ok(r) => r,
            Err(e) => {
                unpublish(&runner, &mut c);
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
        if let Some(stop) = dns_stop.take() {
            stop.store(true, Ordering::SeqCst);
        }
        current.store(0, Ordering::SeqCst);
        copiers.finish();
        let cgroup = crate::cgroups::path_for(&c.record.id);
        let oom = crate::cgroups::oom_kills(&cgroup) > 0;
        unpublish(&runner, &mut c);
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
    // A `--rm` container's directory goes now: no need to record that we are done with it.
    if c.record.host_config.auto_remove && runner.remove_released_deferred(&c, true).is_ok() {
        return Ok(code);
    }
    let _ = runner.update_state(&mut c, |s| {
        s.internal.supervisor_pid = 0;
        s.internal.supervisor_start = 0;
    });
    if c.record.host_config.auto_remove {
        runner.remove_released(&c, true)?;
    }
    Ok(code)
}

/// Remove the container's published ports from the NAT table (the supervisor still holds the
/// host ports, so they are ours to remove).
fn unpublish(runner: &Runner, c: &mut Container) {
    let _ = runner.reload(c);
    if c.state.internal.published.is_empty() {
        return;
    }
    let table = crate::network::nft::table_name(runner.root());
    crate::network::nft::remove_ports(&table, &c.state.internal.published);
    let _ = runner.update_state(c, |s| s.internal.published.clear());
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
/// `ports` holds the host ports reserved for the container's life (taken at the first start);
/// `primer` is joined before the sandbox starts.
#[allow(clippy::too_many_arguments)]
fn start_once(
    runner: &Runner,
    c: &mut Container,
    sandbox: &dyn crate::sandbox::Sandbox,
    log: Arc<LogFile>,
    attach: bool,
    ports: &mut Option<crate::network::ports::Reservation>,
    dns_stop: &mut Option<Arc<std::sync::atomic::AtomicBool>>,
    primer: Option<MigrationPrimer>,
) -> Result<(i32, crate::stdio::Copiers)> {
    tracing::debug!("start: preparing {}", c.short_id());
    let store = runner.store();
    let img = store.resolve_image(&c.record.image)?;
    let lowers = store.ensure_snapshots(&img)?;
    let p = c.paths.clone();
    let rootfs = p.rootfs();
    // A `--rm` container's upper directory is deleted with it: nothing to sync at unmount.
    let durability = if c.record.host_config.auto_remove {
        crate::rootfs::Durability::Volatile
    } else {
        crate::rootfs::Durability::Synced
    };
    crate::rootfs::mount_overlay_with(&lowers, &p.upper(), &p.work(), &rootfs, durability)?;
    tracing::debug!("start: rootfs mounted");
    let network = network_mode(runner, c)?;
    let bridged = crate::network::attach::is_bridged(c);
    let nets = if bridged {
        Some(crate::network::Networks::open(runner.root())?)
    } else {
        None
    };
    if let Some(nets) = &nets
        && ports.is_none()
    {
        let hc = &c.record.host_config;
        let exposed: Vec<String> = c
            .record
            .config
            .exposed_ports
            .as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        *ports = Some(crate::network::ports::reserve(
            &hc.port_bindings,
            hc.publish_all_ports,
            &exposed,
            nets.config.default_bind_ip,
        )?);
    }
    let (link_hosts, link_env) = if bridged {
        crate::network::attach::links(runner, c)?
    } else {
        (Vec::new(), Vec::new())
    };
    let eps = match &nets {
        Some(nets) => crate::network::attach::allocate(nets, c)?,
        None => Vec::new(),
    };
    tracing::debug!("start: {} endpoint(s) allocated", eps.len());
    let mounts = crate::volumes::prepare(runner, c, &rootfs)?;
    let dns_upstreams = write_etc_files(c, &network, &eps, &link_hosts, nets.as_ref())?;
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
    let mut record = std::borrow::Cow::Borrowed(&c.record);
    if !link_env.is_empty() {
        let r = record.to_mut();
        for e in link_env {
            // The container's own variables win over the link's.
            let k = e.split('=').next().unwrap_or_default();
            if !r.config.env.iter().any(|x| x.split('=').next() == Some(k)) {
                r.config.env.push(e);
            }
        }
    }
    let spec = bundle::spec(&BundleInput {
        record: &record,
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
    // The DNS server's sockets are bound before the command runs, so its first lookup is
    // queued for the server instead of refused.
    let dns_sockets: std::cell::RefCell<Option<crate::network::dns::Sockets>> =
        std::cell::RefCell::new(None);
    let prestart = |pid: i32| {
        match &nets {
            Some(nets) if !eps.is_empty() => crate::network::attach::plug(nets, &eps, pid)?,
            _ if own_netns => crate::sandbox::loopback_up(pid)?,
            _ => {}
        }
        if dns_upstreams.is_some() {
            let sockets = crate::network::dns::bind_in_netns(pid).map_err(|e| {
                RunnerError::Network(format!("starting the embedded DNS server: {e}"))
            })?;
            *dns_sockets.borrow_mut() = Some(sockets);
        }
        Ok(())
    };
    // The sandbox forks: this process must be back to one thread.
    if let Some(primer) = primer {
        primer.finish();
    }
    let pid = sandbox.start(&c.record.id, &p.bundle(), io, &prestart)?;
    tracing::debug!("start: sandbox started pid {pid}");
    if let (Some(upstreams), Some(sockets)) = (dns_upstreams, dns_sockets.take()) {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        crate::network::attach::serve_dns(runner.root(), c, sockets, upstreams, stop.clone());
        *dns_stop = Some(stop);
    }
    let copiers = plumbing.connect(Some(log), attach)?;
    let start = process_start_time(pid).unwrap_or(0);
    let published = match (ports.as_ref(), eps.first()) {
        (Some(r), Some((_, ep))) => r.published(ep.ip),
        _ => Vec::new(),
    };
    let state_nets = crate::network::attach::state_networks(c, &eps);
    let state_ports = ports.as_ref().map(|r| r.ports()).unwrap_or_default();
    runner.update_state(c, |s| {
        s.set_running(pid, start, &now_rfc3339());
        s.internal.cgroup = cgroups_path.clone();
        s.internal.rootfs_mounted = true;
        s.internal.published = published.clone();
        s.networks = state_nets;
        s.ports = state_ports;
    })?;
    if let Some(nets) = &nets {
        crate::network::nft::add_ports(&nets.table, &published)?;
    }
    Ok((pid, copiers))
}

/// `--network`: none, host, or container:NAME (its namespace, which must be running).
pub fn network_mode(runner: &Runner, c: &Container) -> Result<NetworkMode> {
    let mode = c.record.host_config.network_mode.as_str();
    match mode {
        // Bridge networks: a namespace of its own, plugged in by the supervisor.
        "none" => Ok(NetworkMode::None),
        m if crate::network::attach::is_bridged(c) && !m.is_empty() => Ok(NetworkMode::None),
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
        other => Err(RunnerError::NoSuchNetwork(other.to_string())),
    }
}

/// /etc/hostname, /etc/hosts and /etc/resolv.conf, as Docker generates them. Returns the
/// upstream servers when the container's resolver is the embedded DNS server (127.0.0.11):
/// on user-defined networks, or on the default bridge when the host only has a local stub.
fn write_etc_files(
    c: &Container,
    network: &NetworkMode,
    eps: &[(crate::network::Network, crate::network::Endpoint)],
    link_hosts: &[String],
    nets: Option<&crate::network::Networks>,
) -> Result<Option<Vec<std::net::SocketAddr>>> {
    let p = &c.paths;
    let hc = &c.record.host_config;
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
    crate::persist::write_regenerated(&p.hostname(), format!("{name}\n").as_bytes())?;
    let mut hosts = if host_mode {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string()
    };
    for h in &hc.extra_hosts {
        let (host, ip) = h
            .split_once(['=', ':'])
            .ok_or_else(|| RunnerError::invalid("--add-host", format!("{h:?}: use HOST:IP")))?;
        let ip = if ip == "host-gateway" {
            match (eps.first(), nets) {
                (Some((n, _)), _) => n.gateway.to_string(),
                (None, Some(nets)) => nets.config.gateway.to_string(),
                _ => "127.0.0.1".to_string(),
            }
        } else {
            ip.to_string()
        };
        hosts.push_str(&format!("{ip}\t{host}\n"));
    }
    for l in link_hosts {
        hosts.push_str(l);
        hosts.push('\n');
    }
    if !host_mode {
        match eps.first() {
            Some((_, ep)) => hosts.push_str(&format!("{}\t{hostname}\n", ep.ip)),
            None => hosts.push_str(&format!("127.0.1.1\t{hostname}\n")),
        }
    }
    crate::persist::write_regenerated(&p.hosts(), hosts.as_bytes())?;

    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut servers: Vec<String> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for l in host_resolv.lines() {
        let mut f = l.split_whitespace();
        match f.next() {
            Some("nameserver") => servers.extend(f.next().map(str::to_string)),
            Some("search") | Some("domain") => search = f.map(str::to_string).collect(),
            Some("options") => options.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    let daemon = nets.map(|n| &n.config);
    if let Some(d) = daemon.filter(|d| !d.dns.is_empty()) {
        servers = d.dns.clone();
    }
    if !hc.dns.is_empty() {
        servers = hc.dns.clone();
    }
    if let Some(d) = daemon.filter(|d| !d.dns_search.is_empty()) {
        search = d.dns_search.clone();
    }
    if !hc.dns_search.is_empty() {
        search = hc.dns_search.clone();
    }
    if let Some(d) = daemon.filter(|d| !d.dns_opts.is_empty()) {
        options = d.dns_opts.clone();
    }
    if !hc.dns_options.is_empty() {
        options = hc.dns_options.clone();
    }
    if host_mode || (eps.is_empty() && hc.dns.is_empty()) {
        // Host networking, none, another container's namespace: the host's file (or --dns).
        let text = if hc.dns.is_empty() && hc.dns_search.is_empty() && hc.dns_options.is_empty() {
            host_resolv
        } else {
            render_resolv(&servers, &search, &options)
        };
        crate::persist::write_regenerated(&p.resolv_conf(), text.as_bytes())?;
        return Ok(None);
    }
    let is_loopback = |s: &String| {
        s.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    };
    let user_defined = eps.iter().any(|(n, _)| !n.is_default);
    let reachable: Vec<String> = servers
        .iter()
        .filter(|s| !is_loopback(s))
        .cloned()
        .collect();
    if !user_defined && !eps.is_empty() && !reachable.is_empty() {
        // The default bridge, as Docker: the host's servers minus the ones only the host reaches.
        let text = render_resolv(&reachable, &search, &options);
        crate::persist::write_regenerated(&p.resolv_conf(), text.as_bytes())?;
        return Ok(None);
    }
    if eps.is_empty() {
        crate::persist::write_regenerated(
            &p.resolv_conf(),
            render_resolv(&servers, &search, &options).as_bytes(),
        )?;
        return Ok(None);
    }
    // The embedded server answers for the network's names and forwards the rest from the host.
    let upstreams: Vec<std::net::SocketAddr> = servers
        .iter()
        .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .collect();
    if !options.iter().any(|o| o.starts_with("ndots:")) {
        options.push("ndots:0".into());
    }
    let text = render_resolv(&["127.0.0.11".to_string()], &search, &options);
    crate::persist::write_regenerated(&p.resolv_conf(), text.as_bytes())?;
    Ok(Some(upstreams))
}

fn render_resolv(servers: &[String], search: &[String], options: &[String]) -> String {
    let mut t = String::new();
    for s in servers {
        t.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        t.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        t.push_str(&format!("options {}\n", options.join(" ")));
    }
    t
}
