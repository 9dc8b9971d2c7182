//! Container commands: `run`, `create`, `start`, `stop`, `restart`, `kill`, `rm`, `ps`, `wait`,
//! `logs`, `exec`, `rename`, `container prune`, `container inspect`, and the same under
//! `berth container …`; plus the hidden supervisor entry point.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use berth_runner::container::CreateOptions;
use berth_runner::logs::LogOptions;
use berth_runner::state::Status;
use berth_runner::supervisor::Launch;
use berth_runner::{Runner, RunnerError};
use clap::{Args, Subcommand};

use super::open_store;

// Sibling files of this one (src/cli/container_*.rs), children of this module.

pub use super::container_inspect::{InspectArgs, find_for_inspect, inspect, print_docs};
pub use super::container_ps::{PsArgs, ps};

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// List containers
    #[command(alias = "list", alias = "ps")]
    Ls(PsArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(WaitArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(super::container_fs::CpArgs),
    /// Export a container's filesystem as a tar archive
    Export(super::container_fs::ExportArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(super::container_fs::DiffArgs),
    /// Create a new image from a container's changes
    Commit(super::container_fs::CommitArgs),
    /// Display the running processes of a container
    Top(super::container_fs::TopArgs),
}

pub fn run_group(root: &Path, c: ContainerCommand) -> Result<ExitCode> {
    match c {
        ContainerCommand::Run(a) => run(root, a),
        ContainerCommand::Create(a) => create(root, a),
        ContainerCommand::Start(a) => start(root, a),
        ContainerCommand::Stop(a) => stop(root, a),
        ContainerCommand::Restart(a) => restart(root, a),
        ContainerCommand::Kill(a) => kill(root, a),
        ContainerCommand::Rm(a) => rm(root, a),
        ContainerCommand::Ls(a) => ps(root, a),
        ContainerCommand::Inspect(a) => inspect(root, a),
        ContainerCommand::Wait(a) => wait(root, a),
        ContainerCommand::Logs(a) => logs(root, a),
        ContainerCommand::Exec(a) => exec(root, a),
        ContainerCommand::Rename(a) => rename(root, a),
        ContainerCommand::Prune(a) => prune(root, a),
        ContainerCommand::Cp(a) => super::container_fs::cp(root, a),
        ContainerCommand::Export(a) => super::container_fs::export(root, a),
        ContainerCommand::Diff(a) => super::container_fs::diff(root, a),
        ContainerCommand::Commit(a) => super::container_fs::commit(root, a),
        ContainerCommand::Top(a) => super::container_fs::top(root, a),
    }
}

fn runner(root: &Path) -> Result<Runner> {
    Ok(Runner::open(open_store(root)?)?)
}

/// A runner error as Docker's CLI reports it: message on stderr, its exit code.
fn fail(e: RunnerError) -> ExitCode {
    eprintln!("Error: {e}");
    ExitCode::from(e.exit_code())
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Print help (-h is --hostname, as in Docker)
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    stop_timeout: Option<i64>,
    /// Restart policy to apply when a container exits (no, on-failure[:N], always, unless-stopped)
    #[arg(long)]
    restart: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Connect a container to a network: bridge (the default), a network's name or ID, none,
    /// host, container:<name|id>
    #[arg(long = "network", alias = "net")]
    network: Option<String>,
    /// Add a network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104) on a user-defined network
    #[arg(long)]
    ip: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    mac_address: Option<String>,
    /// Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/proto])
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    expose: Vec<String>,
    /// Add link to another container (name[:alias])
    #[arg(long)]
    link: Vec<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Security options (no-new-privileges)
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    dns: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt")]
    dns_option: Vec<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// Runtime to use for this container: an OCI runtime binary (crun, runc, …) or "berth"
    #[arg(long)]
    runtime: Option<String>,
    /// The image, then the command and its arguments. One positional so that, as in Docker,
    /// everything after IMAGE belongs to the container: `run IMG --privileged` passes
    /// `--privileged` to the container's command, never to berth (a wrapper `berth run tool "$@"`
    /// cannot smuggle berth flags in).
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_names = ["IMAGE", "COMMAND"]
    )]
    image_and_command: Vec<String>,
}

impl CreateArgs {
    fn options(&self, attach: bool) -> CreateOptions {
        let (image, command) = self
            .image_and_command
            .split_first()
            .map(|(i, c)| (i.clone(), c.to_vec()))
            .unwrap_or_default();
        CreateOptions {
            image,
            name: self.name.clone(),
            command,
            entrypoint: self.entrypoint.clone(),
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            labels: self.label.clone(),
            tty: self.tty,
            interactive: self.interactive,
            attach,
            auto_remove: self.rm,
            init: self.init,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            restart: self.restart.clone(),
            memory: self.memory.clone(),
            memory_swap: self.memory_swap.clone(),
            cpus: self.cpus.clone(),
            pids_limit: self.pids_limit,
            network: self.network.clone(),
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            read_only: self.read_only,
            security_opt: self.security_opt.clone(),
            dns: self.dns.clone(),
            add_host: self.add_host.clone(),
            volumes: self.volume.clone(),
            mounts: self.mount.clone(),
            tmpfs: self.tmpfs.clone(),
            volumes_from: self.volumes_from.clone(),
            runtime: self.runtime.clone(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            expose: self.expose.clone(),
            links: self.link.clone(),
            network_aliases: self.network_alias.clone(),
            ip: self.ip.clone(),
            mac_address: self.mac_address.clone(),
            dns_search: self.dns_search.clone(),
            dns_option: self.dns_option.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    create: CreateArgs,
}

pub fn create(root: &Path, a: CreateArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    match r.create(&a.options(false)) {
        Ok(c) => {
            println!("{}", c.id());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(e)),
    }
}

pub fn run(root: &Path, a: RunArgs) -> Result<ExitCode> {
    // Whether the supervisor can run in this process is decided while it has one thread; then
    // the kernel's grace period for the container's cgroup join starts, to run while the
    // container is created (berth_runner::cgroups::MigrationPrimer).
    let launch = Launch::decide(!a.detach).primed();
    let r = runner(root)?;
    let c = match r.create(&a.create.options(!a.detach)) {
        Ok(c) => c,
        Err(e) => return Ok(fail(e)),
    };
    if a.detach {
        match r.spawn_supervisor_with(&c, launch) {
            Ok(_) => {
                println!("{}", c.id());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(fail(e)),
        }
    } else {
        // The supervisor prints its own errors on the shared stderr.
        let code = r
            .spawn_supervisor_with(&c, launch)
            .map_err(|e| anyhow!(e))?;
        Ok(ExitCode::from(code.clamp(0, 255) as u8))
    }
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn start(root: &Path, a: StartArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let mut code = ExitCode::SUCCESS;
    let attach = a.attach || a.interactive;
    if attach && a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    for n in &a.containers {
        let res = r.get(n).and_then(|c| {
            if c.is_running() {
                return Ok(0);
            }
            r.spawn_supervisor(&c, attach)
        });
        match res {
            Ok(c) if attach => return Ok(ExitCode::from(c.clamp(0, 255) as u8)),
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "time",
        alias = "timeout",
        allow_hyphen_values = true
    )]
    time: Option<i64>,
    /// Signal to send to the container
    #[arg(short = 's', long)]
    signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

fn each(names: &[String], mut f: impl FnMut(&str) -> berth_runner::Result<()>) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    code
}

pub fn stop(root: &Path, a: StopArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    Ok(each(&a.containers, |n| {
        let mut c = r.get(n)?;
        match &a.signal {
            Some(s) => r.stop_with_signal(&mut c, berth_runner::signal::parse(s)?, a.time),
            None => r.stop(&mut c, a.time),
        }
    }))
}

pub fn restart(root: &Path, a: StopArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    Ok(each(&a.containers, |n| {
        let mut c = r.get(n)?;
        r.restart(&mut c, a.time)
    }))
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn kill(root: &Path, a: KillArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let sig = berth_runner::signal::parse(&a.signal)?;
    Ok(each(&a.containers, |n| {
        let mut c = r.get(n)?;
        r.kill(&mut c, sig)
    }))
}

#[derive(Args, Debug)]
pub struct PauseArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// `pause`: freeze all processes of the containers (cgroup freezer).
pub fn pause(root: &Path, a: PauseArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    Ok(each(&a.containers, |n| {
        let mut c = r.get(n)?;
        r.pause(&mut c)
    }))
}

/// `unpause`.
pub fn unpause(root: &Path, a: PauseArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    Ok(each(&a.containers, |n| {
        let mut c = r.get(n)?;
        r.unpause(&mut c)
    }))
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn rm(root: &Path, a: RmArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    Ok(each(&a.containers, |n| {
        let mut c = r.get(n)?;
        r.remove(&mut c, a.force, a.volumes)
    }))
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
    /// Provide filter values (label=KEY[=VALUE])
    #[arg(long = "filter")]
    filter: Vec<String>,
}

pub fn prune(root: &Path, a: PruneArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let filters = berth_runner::container::filter::Filters::parse(&a.filter)?;
    let mut out = io::stdout().lock();
    writeln!(out, "Deleted Containers:")?;
    let mut code = ExitCode::SUCCESS;
    for mut c in r.list()? {
        if c.is_running() || !filters.matches(&c) {
            continue;
        }
        match r.remove(&mut c, false, false) {
            Ok(()) => writeln!(out, "{}", c.id())?,
            Err(e) => {
                eprintln!("Error: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    writeln!(out)?;
    let _ = a.force;
    Ok(code)
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn wait(root: &Path, a: WaitArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let mut code = ExitCode::SUCCESS;
    for n in &a.containers {
        match r.get(n).and_then(|mut c| r.wait(&mut c)) {
            Ok(exit) => println!("{exit}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for everything)
    #[arg(short = 'n', long = "tail", default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp or relative time
    #[arg(long)]
    until: Option<String>,
    /// Show extra details (accepted for Docker compatibility)
    #[arg(long)]
    details: bool,
    container: String,
}

pub fn logs(root: &Path, a: LogsArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let c = match r.get(&a.container) {
        Ok(c) => c,
        Err(e) => return Ok(fail(e)),
    };
    let now = chrono::Utc::now();
    let tail = match a.tail.as_str() {
        "all" | "" => None,
        n => match n.parse::<i64>() {
            Ok(n) if n < 0 => None,
            Ok(n) => Some(n as usize),
            Err(_) => bail!("invalid --tail {n:?}: give a number or \"all\""),
        },
    };
    let parse = |s: &Option<String>| -> Result<_> {
        s.as_deref()
            .map(|s| {
                berth_runner::logs::parse_since(s, now)
                    .map_err(|e| anyhow!("invalid time {s:?}: {e}"))
            })
            .transpose()
    };
    let opts = LogOptions {
        follow: a.follow,
        tail,
        since: parse(&a.since)?,
        until: parse(&a.until)?,
        timestamps: a.timestamps,
    };
    let id = c.id().to_string();
    let still_running = || {
        r.get(&id)
            .map(|c| matches!(c.state.status, Status::Running | Status::Restarting))
            .unwrap_or(false)
    };
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut o = stdout.lock();
    let mut e = stderr.lock();
    berth_runner::logs::read_logs(&c.log_path(), &opts, &mut o, &mut e, &still_running)?;
    let _ = a.details;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    privileged: bool,
    /// The container, then the command and its arguments: everything after CONTAINER belongs to
    /// the command (`exec C ls --privileged` runs `ls --privileged`), as in Docker.
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_names = ["CONTAINER", "COMMAND"]
    )]
    container_and_command: Vec<String>,
}

pub fn exec(root: &Path, a: ExecArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let (container, command) = match a.container_and_command.split_first() {
        Some((c, cmd)) if !cmd.is_empty() => (c.clone(), cmd.to_vec()),
        _ => {
            eprintln!(
                "\"berth exec\" requires at least 2 arguments.\nSee 'berth exec --help'.\n\nUsage:  berth exec [OPTIONS] CONTAINER COMMAND [ARG...]"
            );
            return Ok(ExitCode::from(1));
        }
    };
    let c = match r.get(&container) {
        Ok(c) => c,
        Err(e) => return Ok(fail(e)),
    };
    let opts = berth_runner::exec::ExecOptions {
        command,
        env: a.env,
        env_files: a.env_file,
        workdir: a.workdir,
        user: a.user,
        tty: a.tty,
        interactive: a.interactive,
        detach: a.detach,
        privileged: a.privileged,
    };
    match berth_runner::exec::exec(&r, &c, &opts) {
        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Err(e) => Ok(fail(e)),
    }
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

pub fn rename(root: &Path, a: RenameArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    match r
        .get(&a.container)
        .and_then(|mut c| r.rename(&mut c, &a.new_name))
    {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(fail(e)),
    }
}

/// The hidden supervisor entry point (`berth __supervise ID [--attach]`), and the deferred
/// delete of a removed `--rm` container's files (`berth __supervise ID --reap`).
#[derive(Args, Debug)]
pub struct SuperviseArgs {
    id: String,
    #[arg(long)]
    attach: bool,
    #[arg(long, conflicts_with = "attach")]
    reap: bool,
}

/// `__sandbox-start RUNTIME_ROOT`: create and start one container for a multi-threaded caller
/// (berth_runner::sandbox::starter).
#[derive(Args, Debug)]
pub struct SandboxStartArgs {
    runtime_root: std::path::PathBuf,
}

pub fn sandbox_start(a: SandboxStartArgs) -> Result<ExitCode> {
    let code = berth_runner::sandbox::starter::main(&a.runtime_root);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

pub fn supervise(root: &Path, a: SuperviseArgs) -> Result<ExitCode> {
    let code = if a.reap {
        berth_runner::supervisor::reap(root, &a.id)
    } else {
        berth_runner::supervisor::main(root, &a.id, a.attach)
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
