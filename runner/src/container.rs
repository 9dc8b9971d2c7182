//! Containers as records on disk: create (Docker's rules for entrypoint, command, environment and
//! limits), look up by ID, name or ID prefix, list, and the transitions that do not need the
//! supervisor: stop, kill, rm. A state that names a dead supervisor or a dead init is corrected on
//! read, so `ps` tells the truth after a crash.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_store::Store;

use crate::error::{IoContext, Result, RunnerError};
use crate::names;
use crate::state::{
    ContainerConfig, ContainerPaths, ContainerRecord, FileLock, HostConfig, RestartPolicy, State,
    Status, now_rfc3339, process_alive, read_json, write_json, write_json_with,
};

/// The default PATH Docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `berth create`/`run` options, as the CLI parsed them.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    /// Arguments after the image (replace the image's CMD).
    pub command: Vec<String>,
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: Vec<String>,
    pub tty: bool,
    pub interactive: bool,
    pub attach: bool,
    pub auto_remove: bool,
    pub init: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub restart: Option<String>,
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub network: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub read_only: bool,
    pub security_opt: Vec<String>,
    pub dns: Vec<String>,
    pub add_host: Vec<String>,
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
    pub tmpfs: Vec<String>,
    pub volumes_from: Vec<String>,
    pub runtime: Option<String>,
    /// `-p`, `-P`, `--expose`.
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub expose: Vec<String>,
    /// `--link NAME[:ALIAS]`.
    pub links: Vec<String>,
    /// `--network-alias`, `--ip`, `--mac-address`: for the first network.
    pub network_aliases: Vec<String>,
    pub ip: Option<String>,
    pub mac_address: Option<String>,
    pub dns_search: Vec<String>,
    pub dns_option: Vec<String>,
}

/// One container: its record, its state and where it lives.
#[derive(Debug, Clone)]
pub struct Container {
    pub record: ContainerRecord,
    pub state: State,
    pub paths: ContainerPaths,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.record.id
    }
    pub fn short_id(&self) -> &str {
        &self.record.id[..12.min(self.record.id.len())]
    }
    pub fn name(&self) -> &str {
        &self.record.name
    }
    pub fn is_running(&self) -> bool {
        matches!(
            self.state.status,
            Status::Running | Status::Restarting | Status::Paused
        )
    }
    pub fn log_path(&self) -> PathBuf {
        self.paths.log(&self.record.id)
    }
}

/// The container half of the state root.
pub struct Runner {
    store: Store,
    dir: PathBuf,
}

impl Runner {
    pub fn open(store: Store) -> Result<Runner> {
        let dir = store.root().join("containers");
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        Ok(Runner { store, dir })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    fn names_lock(&self) -> Result<FileLock> {
        let locks = self.store.root().join("locks");
        fs::create_dir_all(&locks).ctx("creating", &locks)?;
        FileLock::acquire(&locks.join("containers.lock"))
    }

    pub fn paths(&self, id: &str) -> ContainerPaths {
        ContainerPaths {
            dir: self.dir.join(id),
        }
    }

    /// Create a container (Docker's `create`): nothing runs yet.
    pub fn create(&self, opts: &CreateOptions) -> Result<Container> {
        let img = self.store.resolve_image(&opts.image)?;
        let image_config = self.store.config(&img)?;
        let ic = image_config.config().clone().unwrap_or_default();

        let mut host_config = host_config(opts)?;
        let networking_config = self.networking_config(opts, &mut host_config)?;
        // Entrypoint and command: Docker's rules. `--entrypoint` replaces the image's entrypoint
        // and drops its CMD; arguments after the image replace CMD.
        let entrypoint: Vec<String> = match &opts.entrypoint {
            Some(e) if e.is_empty() => Vec::new(),
            Some(e) => vec![e.clone()],
            None => ic.entrypoint().clone().unwrap_or_default(),
        };
        let cmd: Vec<String> = if !opts.command.is_empty() {
            opts.command.clone()
        } else if opts.entrypoint.is_some() {
            Vec::new()
        } else {
            ic.cmd().clone().unwrap_or_default()
        };
        let argv: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
        let Some((path, args)) = argv.split_first() else {
            return Err(RunnerError::invalid(
                "command",
                "no command specified: the image has no ENTRYPOINT or CMD; give one after the image name",
            ));
        };

        let mut env = ic.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        let mut user_env = Vec::new();
        for f in &opts.env_files {
            user_env.extend(read_env_file(f)?);
        }
        for e in &opts.env {
            user_env.extend(env_arg(e)?);
        }
        for e in user_env {
            set_env(&mut env, e);
        }

        let mut labels: BTreeMap<String, String> = ic
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        for l in &opts.labels {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            if k.is_empty() {
                return Err(RunnerError::invalid(
                    "label",
                    format!("{l:?}: the key is empty"),
                ));
            }
            labels.insert(k.to_string(), v.to_string());
        }
        if let Some(s) = &opts.stop_signal {
            crate::signal::parse(s)?;
        }

        let _lock = self.names_lock()?;
        let existing = self.list()?;
        let name = match &opts.name {
            Some(n) => {
                names::validate_name(n)
                    .map_err(|reason| RunnerError::invalid("container name", reason))?;
                let n = n.trim_start_matches('/').to_string();
                if let Some(c) = existing.iter().find(|c| c.record.name == n) {
                    return Err(RunnerError::NameInUse {
                        name: n,
                        id: c.record.id.clone(),
                    });
                }
                n
            }
            None => names::generate_name(&|n| existing.iter().any(|c| c.record.name == n)),
        };
        // `--link` as Docker stores it: "/target:/me/alias".
        for l in host_config.links.iter_mut() {
            if let Some((t, alias)) = l.split_once(':') {
                *l = format!("{t}:/{name}/{alias}");
            }
        }
        let id = names::new_id();
        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        if let Some(h) = &opts.hostname
            && (h.len() > 63 || h.is_empty() || h.contains(['/', ' ', '\0']))
        {
            return Err(RunnerError::invalid(
                "hostname",
                format!("{h:?} is not a valid hostname"),
            ));
        }
        if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        env.insert(1.min(env.len()), format!("HOSTNAME={hostname}"));

        let config = ContainerConfig {
            hostname,
            user: opts
                .user
                .clone()
                .unwrap_or_else(|| ic.user().clone().unwrap_or_default()),
            attach_stdin: opts.attach && opts.interactive,
            attach_stdout: opts.attach,
            attach_stderr: opts.attach,
            exposed_ports: exposed_ports(
                ic.exposed_ports().as_deref().unwrap_or_default(),
                &opts.expose,
                &host_config.port_bindings,
            )?,
            tty: opts.tty,
            open_stdin: opts.interactive,
            stdin_once: opts.interactive && opts.attach,
            env,
            cmd: if cmd.is_empty() {
                None
            } else {
                Some(cmd.clone())
            },
            image: opts.image.clone(),
            volumes: ic.volumes().as_ref().map(|v| {
                v.iter()
                    .map(|k| (k.clone(), serde_json::json!({})))
                    .collect()
            }),
            working_dir: opts
                .workdir
                .clone()
                .unwrap_or_else(|| ic.working_dir().clone().unwrap_or_default()),
            entrypoint: if entrypoint.is_empty() {
                None
            } else {
                Some(entrypoint.clone())
            },
            on_build: None,
            labels,
            stop_signal: opts
                .stop_signal
                .clone()
                .or_else(|| ic.stop_signal().clone()),
            stop_timeout: opts.stop_timeout,
            domainname: String::new(),
        };
        if !config.working_dir.is_empty() && !config.working_dir.starts_with('/') {
            return Err(RunnerError::invalid(
                "working directory",
                format!("{:?} is not an absolute path", config.working_dir),
            ));
        }

        // Everything that can fail on its own comes before volumes are created, so a failed
        // create leaves no volume behind.
        let runtime_path = match &opts.runtime {
            Some(r) if r != "berth" => {
                crate::sandbox::External::new(self.root(), r).map(|_| r.clone())?
            }
            _ => String::new(),
        };
        // Unpack the image's layers now, as Docker's create prepares the filesystem.
        self.store.ensure_snapshots(&img)?;

        if opts.init {
            crate::bundle::init_binary()?;
        }
        let image_volumes: Vec<String> = ic.volumes().clone().unwrap_or_default();

        let (mount_points, mount_requests) = crate::volumes::plan(self, opts, &image_volumes)?;
        host_config.mounts = mount_requests;

        let record = ContainerRecord {
            id: id.clone(),
            created: now_rfc3339(),
            path: path.clone(),
            args: args.to_vec(),
            image: img.id.to_string(),
            name,
            config,
            host_config,
            mounts: mount_points,
            networking_config,
            runtime_path,
        };

        // Built in a temp directory and renamed, so a half-created container is never listed.
        let tmp = self.dir.join(format!(".tmp-{id}"));
        fs::create_dir_all(&tmp).ctx("creating", &tmp)?;
        let tmp_paths = ContainerPaths { dir: tmp.clone() };
        let made = (|| {
            let durable = !opts.auto_remove;
            crate::state::write_atomic_with(&tmp_paths.image(), record.image.as_bytes(), durable)?;
            write_json_with(&tmp_paths.config(), &record, durable)?;
            write_json_with(&tmp_paths.state(), &State::default(), durable)?;
            fs::create_dir_all(tmp_paths.upper()).ctx("creating", tmp_paths.upper())?;
            fs::create_dir_all(tmp_paths.work()).ctx("creating", tmp_paths.work())?;
            let paths = self.paths(&id);
            fs::rename(&tmp, &paths.dir).ctx("creating", &paths.dir)
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let paths = self.paths(&id);
        Ok(Container {
            record,
            state: State::default(),
            paths,
        })
    }

    /// The network a new container joins (`--network`) with its endpoint settings (aliases,
    /// `--ip`, `--mac-address`), and `--link` targets checked; port bindings are dropped where
    /// the network mode has no ports of its own, as Docker does.
    fn networking_config(
        &self,
        o: &CreateOptions,
        hc: &mut HostConfig,
    ) -> Result<BTreeMap<String, crate::state::EndpointSettings>> {
        use crate::state::{EndpointIpamConfig, EndpointSettings};
        let mode = hc.network_mode.clone();
        let mut out = BTreeMap::new();
        for l in &o.links {
            let (target, _) = l.split_once(':').unwrap_or((l.as_str(), ""));
            let t = self.get(target).map_err(|_| {
                RunnerError::invalid("--link", format!("could not get container for {target}"))
            })?;
            let alias = l.split_once(':').map(|(_, a)| a).unwrap_or(t.name());
            crate::network::validate_alias(alias)?;
            hc.links.push(format!("/{}:{alias}", t.name()));
        }
        let own = !(mode == "none" || mode == "host" || mode.starts_with("container:"));
        if !own {
            if !o.network_aliases.is_empty() || o.ip.is_some() || o.mac_address.is_some() {
                return Err(RunnerError::invalid(
                    "options",
                    format!(
                        "--network-alias, --ip and --mac-address need a bridge network, not --network {mode}"
                    ),
                ));
            }
            if !hc.links.is_empty() {
                return Err(RunnerError::invalid(
                    "options",
                    format!("conflicting options: {mode} type networking can't be used with links"),
                ));
            }
            if let Some(other) = mode.strip_prefix("container:") {
                self.get(other)?;
                if !hc.port_bindings.is_empty() || hc.publish_all_ports {
                    return Err(RunnerError::invalid(
                        "options",
                        "conflicting options: port publishing and the container type network mode",
                    ));
                }
            }
            // Docker: "Published ports are discarded when using host network mode".
            hc.port_bindings.clear();
            hc.publish_all_ports = false;
            return Ok(out);
        }
        let nets = crate::network::Networks::open(self.root())?;
        let n = nets.get(&mode)?;
        for a in &o.network_aliases {
            crate::network::validate_alias(a)?;
        }
        if n.is_default && !o.network_aliases.is_empty() {
            return Err(RunnerError::invalid(
                "--network-alias",
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        let ip = match &o.ip {
            Some(ip) => {
                let v: std::net::Ipv4Addr = ip.parse().map_err(|_| {
                    RunnerError::invalid("--ip", format!("{ip:?} is not an IPv4 address"))
                })?;
                if n.is_default {
                    return Err(RunnerError::invalid(
                        "--ip",
                        "user specified IP address is supported on user defined networks only",
                    ));
                }
                if !n.subnet.contains(v) {
                    return Err(RunnerError::invalid(
                        "--ip",
                        format!(
                            "{v} is not in the subnet {} of network {}",
                            n.subnet,
                            n.name()
                        ),
                    ));
                }
                Some(EndpointIpamConfig {
                    ipv4_address: v.to_string(),
                })
            }
            None => None,
        };
        let mac = match &o.mac_address {
            Some(m) => {
                let m = crate::network::ipam::parse_mac(m)
                    .map_err(|e| RunnerError::invalid("--mac-address", e))?;
                crate::network::ipam::format_mac(&m)
            }
            None => String::new(),
        };
        out.insert(
            n.name().to_string(),
            EndpointSettings {
                ipam_config: ip,
                aliases: (!o.network_aliases.is_empty()).then(|| o.network_aliases.clone()),
                mac_address: mac,
                network_id: n.id().to_string(),
                ..Default::default()
            },
        );
        Ok(out)
    }

    /// Load one container by its full ID (no liveness correction).
    fn load(&self, id: &str) -> Result<Container> {
        let paths = self.paths(id);
        let record: ContainerRecord = read_json(&paths.config())?;
        let state: State = match read_json(&paths.state()) {
            Ok(s) => s,
            Err(_) if !paths.state().exists() => State::default(),
            Err(e) => return Err(e),
        };
        Ok(Container {
            record,
            state,
            paths,
        })
    }

    /// Every container, its state corrected for dead processes.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).ctx("listing", &self.dir)?;
        for e in rd {
            let e = e.ctx("listing", &self.dir)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // A create or rm that was killed half-way leaves a `.tmp-`/`.rm-` directory;
                // one untouched for a minute is nobody's any more.
                let stale = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(60));
                if stale && (name.starts_with(".tmp-") || name.starts_with(".rm-")) {
                    let _ = crate::rootfs::unmount_all_under(&e.path());
                    let _ = fs::remove_dir_all(e.path());
                }
                continue;
            }
            match self.load(&name) {
                Ok(mut c) => {
                    self.refresh(&mut c)?;
                    out.push(c);
                }
                // Removed while we listed.
                Err(RunnerError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!("skipping container {name}: {e}");
                }
            }
        }
        out.sort_by(|a, b| b.record.created.cmp(&a.record.created));
        Ok(out)
    }

    /// Find a container by full ID, name, or unique ID prefix.
    pub fn get(&self, spec: &str) -> Result<Container> {
        let spec = spec.trim_start_matches('/');
        if spec.is_empty() {
            return Err(RunnerError::NotFound(spec.to_string()));
        }
        if spec.len() == 64 && self.paths(spec).config().exists() {
            let mut c = self.load(spec)?;
            self.refresh(&mut c)?;
            return Ok(c);
        }
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.record.name == spec) {
            return Ok(c.clone());
        }
        let matches: Vec<&Container> = all
            .iter()
            .filter(|c| c.record.id.starts_with(spec))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(RunnerError::NotFound(spec.to_string())),
            many => Err(RunnerError::Ambiguous {
                input: spec.to_string(),
                count: many.len(),
            }),
        }
    }

    /// Re-read a container's state from disk (and correct it).
    pub fn reload(&self, c: &mut Container) -> Result<()> {
        let fresh = self.load(&c.record.id)?;
        *c = fresh;
        self.refresh(c)
    }

    /// Correct a state that claims a process which is gone (a supervisor or init killed with -9).
    fn refresh(&self, c: &mut Container) -> Result<()> {
        if !matches!(
            c.state.status,
            Status::Running | Status::Restarting | Status::Paused
        ) {
            return Ok(());
        }
        let sup_alive = process_alive(
            c.state.internal.supervisor_pid,
            c.state.internal.supervisor_start,
        );
        let init_alive = c.state.status == Status::Running
            && process_alive(c.state.pid, c.state.internal.pid_start);
        if sup_alive || init_alive {
            return Ok(());
        }
        // Both are gone: nobody will record the exit, so record what is known now.
        let _lock = FileLock::acquire(&c.paths.lock())?;
        let mut st: State = read_json(&c.paths.state())?;
        if st.internal.supervisor_pid != c.state.internal.supervisor_pid
            || st.status != c.state.status
        {
            c.state = st;
            return Ok(());
        }
        let oom = crate::cgroups::oom_kills(&st.internal.cgroup) > 0;
        st.set_exited(if oom { 137 } else { 255 }, oom, &now_rfc3339());
        st.error = "the container's supervisor exited unexpectedly".into();
        st.internal.supervisor_pid = 0;
        st.internal.supervisor_start = 0;
        write_json(&c.paths.state(), &st)?;
        c.state = st;
        drop(_lock);
        // Its network goes now (addresses, NAT entries); its runtime state, cgroup and mounts
        // are released on the next start or on rm.
        self.release_network(c);
        self.reload_quiet(c);
        Ok(())
    }

    fn reload_quiet(&self, c: &mut Container) {
        if let Ok(fresh) = self.load(&c.record.id) {
            c.state = fresh.state;
        }
    }

    /// Change a container's state under its lock.
    pub fn update_state(&self, c: &mut Container, f: impl FnOnce(&mut State)) -> Result<()> {
        let _lock = FileLock::acquire(&c.paths.lock())?;
        let mut st: State = read_json(&c.paths.state())?;
        f(&mut st);
        write_json_with(&c.paths.state(), &st, !c.record.host_config.auto_remove)?;
        c.state = st;
        Ok(())
    }

    /// Send `signal` to the container's init (only if it is still the same process).
    pub fn signal(&self, c: &Container, signal: i32) -> Result<bool> {
        if !matches!(c.state.status, Status::Running | Status::Paused)
            || !process_alive(c.state.pid, c.state.internal.pid_start)
        {
            return Ok(false);
        }
        crate::signal::send(c.state.pid, signal)?;
        if c.state.status == Status::Paused {
            // A frozen container only receives the signal once thawed (Docker's stop and kill
            // of a paused container do the same).
            let mut c = c.clone();
            self.set_paused(&mut c, false)?;
        }
        Ok(true)
    }

    /// Docker's `pause`: freeze every process of a running container.
    pub fn pause(&self, c: &mut Container) -> Result<()> {
        match c.state.status {
            Status::Paused => Err(RunnerError::Conflict(format!(
                "Container {} is already paused",
                c.id()
            ))),
            Status::Running => self.set_paused(c, true),
            _ => Err(RunnerError::Conflict(format!(
                "Container {} is not running",
                c.id()
            ))),
        }
    }

    /// Docker's `unpause`.
    pub fn unpause(&self, c: &mut Container) -> Result<()> {
        if c.state.status != Status::Paused {
            return Err(RunnerError::Conflict(format!(
                "Container {} is not paused",
                c.id()
            )));
        }
        self.set_paused(c, false)
    }

    fn set_paused(&self, c: &mut Container, paused: bool) -> Result<()> {
        let cg = if c.state.internal.cgroup.is_empty() {
            crate::cgroups::path_for(c.id())
        } else {
            c.state.internal.cgroup.clone()
        };
        crate::cgroups::freeze(&cg, paused).map_err(|e| {
            RunnerError::Sandbox(format!(
                "{} container {}: {e}",
                if paused { "pausing" } else { "unpausing" },
                c.name()
            ))
        })?;
        self.update_state(c, |s| {
            if paused && s.status == Status::Running {
                s.status = Status::Paused;
                s.paused = true;
            } else if !paused && s.status == Status::Paused {
                s.status = Status::Running;
                s.paused = false;
            }
        })
    }

    /// Docker's `kill`: send a signal to a running container.
    pub fn kill(&self, c: &mut Container, signal: i32) -> Result<()> {
        if !c.is_running() {
            return Err(RunnerError::Conflict(format!(
                "cannot kill container: {}: container {} is not running",
                c.name(),
                c.id()
            )));
        }
        let stop_signal =
            crate::signal::parse(c.record.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
        if signal == crate::signal::SIGKILL || signal == stop_signal {
            self.update_state(c, |s| s.internal.manually_stopped = true)?;
        }
        self.signal(c, signal)?;
        if signal == crate::signal::SIGKILL {
            self.wait_stopped(c, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Docker's `stop`: the stop signal, then SIGKILL after the timeout.
    pub fn stop(&self, c: &mut Container, timeout: Option<i64>) -> Result<()> {
        self.update_state(c, |s| s.internal.manually_stopped = true)?;
        if !c.is_running() {
            return Ok(());
        }
        let sig =
            crate::signal::parse(c.record.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
        let secs = timeout.or(c.record.config.stop_timeout).unwrap_or(10);
        self.signal(c, sig)?;
        if secs < 0 || !self.wait_stopped(c, Duration::from_secs(secs as u64))? {
            self.signal(c, crate::signal::SIGKILL)?;
            self.wait_stopped(c, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Wait until the container is no longer running (as its supervisor records it); `false` on
    /// timeout.
    pub fn wait_stopped(&self, c: &mut Container, timeout: Duration) -> Result<bool> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(2);
        loop {
            match self.reload(c) {
                Ok(()) => {}
                // Removed meanwhile (`--rm`, whose supervisor removes it as it stops).
                Err(RunnerError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
            if !matches!(c.state.status, Status::Running | Status::Restarting) {
                return Ok(true);
            }
            // Init gone and the supervisor is still writing its exit: keep waiting briefly.
            if start.elapsed() >= timeout {
                return Ok(false);
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// Block until the container stops; its exit code (Docker's `wait`).
    pub fn wait(&self, c: &mut Container) -> Result<i32> {
        loop {
            if self.wait_stopped(c, Duration::from_secs(3600))? {
                // A restart policy may bring it back; `wait` returns at the first exit.
                return Ok(c.state.exit_code);
            }
        }
    }

    /// Docker's `rm`.
    pub fn remove(&self, c: &mut Container, force: bool, volumes: bool) -> Result<()> {
        if c.is_running() {
            if !force {
                return Err(RunnerError::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    c.name()
                )));
            }
            self.update_state(c, |s| s.internal.manually_stopped = true)?;
            self.signal(c, crate::signal::SIGKILL)?;
            self.wait_stopped(c, Duration::from_secs(10))?;
            if !c.paths.config().exists() {
                // A `--rm` container: its supervisor removed it.
                return Ok(());
            }
        }
        // A supervisor between restarts, or still writing the exit: let it finish.
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_alive(
            c.state.internal.supervisor_pid,
            c.state.internal.supervisor_start,
        ) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
            match self.load(&c.record.id) {
                Ok(fresh) => *c = fresh,
                Err(_) => return Ok(()),
            }
        }
        self.destroy(c, volumes)
    }

    /// Remove a stopped container's host resources and directory (the supervisor's `--rm`, which
    /// also removes its anonymous volumes).
    pub fn destroy(&self, c: &Container, volumes: bool) -> Result<()> {
        self.cleanup(c)?;
        self.remove_released(c, volumes)
    }

    /// The second half of [`Runner::destroy`], for a caller that has just run
    /// [`Runner::cleanup`] itself (the supervisor, after the container exited): volumes and the
    /// container's directory.
    pub fn remove_released(&self, c: &Container, volumes: bool) -> Result<()> {
        match self.unlist_released(c, volumes)? {
            Some(doomed) => fs::remove_dir_all(&doomed).ctx("removing", &doomed),
            None => Ok(()),
        }
    }

    /// [`Runner::remove_released`] for `--rm`, whose caller is waiting: once the container is
    /// unlisted (renamed to `.rm-ID`; its name, volumes, mounts and cgroup already free) the
    /// files are deleted by a detached `berth __supervise ID --reap`. Deleting a directory tree
    /// costs a synchronous discard per freed block on a disk mounted with `discard`, tens of
    /// milliseconds per container on a busy host. A reaper that never runs leaves `.rm-ID`,
    /// which [`Runner::list`] deletes a minute later.
    pub fn remove_released_deferred(&self, c: &Container, volumes: bool) -> Result<()> {
        let Some(doomed) = self.unlist_released(c, volumes)? else {
            return Ok(());
        };
        if crate::supervisor::spawn_reaper(self.root(), c.id()).is_err() {
            fs::remove_dir_all(&doomed).ctx("removing", &doomed)?;
        }
        Ok(())
    }

    /// Release the volumes and rename the directory out of the listing; `.rm-ID`, or `None`
    /// when it was already gone.
    fn unlist_released(&self, c: &Container, volumes: bool) -> Result<Option<PathBuf>> {
        crate::volumes::release(self, c, volumes)?;
        let dir = &c.paths.dir;
        // Renamed first, so a concurrent `ps` never reads half a directory.
        let doomed = self.removed_dir(c.id());
        match fs::rename(dir, &doomed) {
            Ok(()) => Ok(Some(doomed)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RunnerError::io("removing", dir, e)),
        }
    }

    /// Where a removed container's files wait for deletion.
    pub fn removed_dir(&self, id: &str) -> PathBuf {
        self.dir.join(format!(".rm-{id}"))
    }

    /// Release everything a stopped container holds on the host: runtime state, cgroup, mounts.
    pub fn cleanup(&self, c: &Container) -> Result<()> {
        if let Ok(sandbox) = crate::sandbox::for_runtime(self.root(), &c.record.runtime_path)
            && let Err(e) = sandbox.delete(&c.record.id)
        {
            tracing::warn!("releasing the runtime state of {}: {e}", c.short_id());
        }
        tracing::debug!("cleanup: runtime state released");
        crate::cgroups::remove(&crate::cgroups::path_for(&c.record.id));
        tracing::debug!("cleanup: cgroups removed");
        crate::rootfs::unmount_all_under(&c.paths.dir)?;
        tracing::debug!("cleanup: unmounted");
        self.release_network(c);
        Ok(())
    }

    /// Release a stopped container's network: its endpoints (addresses, veths) and the NAT
    /// entries of its published ports that nobody holds any more (a supervisor that died
    /// without cleaning up; a live one removes its own).
    pub fn release_network(&self, c: &Container) {
        if let Ok(nets) = crate::network::Networks::open(self.root())
            && let Err(e) = nets.release_all(c.id())
        {
            tracing::warn!("releasing the network of {}: {e}", c.short_id());
        }
        let Ok(mut st) = read_json::<State>(&c.paths.state()) else {
            return;
        };
        if st.internal.published.is_empty() && st.networks.is_empty() && st.ports.is_empty() {
            return;
        }
        let stale: Vec<crate::state::Published> = st
            .internal
            .published
            .iter()
            .filter(|p| crate::network::ports::is_free(p))
            .cloned()
            .collect();
        let table = crate::network::nft::table_name(self.root());
        crate::network::nft::remove_ports(&table, &stale);
        let _lock = FileLock::acquire(&c.paths.lock());
        if let Ok(fresh) = read_json::<State>(&c.paths.state()) {
            st = fresh;
        }
        if st.running && process_alive(st.internal.supervisor_pid, st.internal.supervisor_start) {
            return;
        }
        st.internal.published.clear();
        st.networks.clear();
        st.ports.clear();
        let _ = write_json(&c.paths.state(), &st);
    }

    /// Docker's `rename`.
    pub fn rename(&self, c: &mut Container, new_name: &str) -> Result<()> {
        names::validate_name(new_name).map_err(|r| RunnerError::invalid("container name", r))?;
        let new_name = new_name.trim_start_matches('/');
        let _lock = self.names_lock()?;
        if let Some(other) = self.list()?.into_iter().find(|o| o.record.name == new_name) {
            return Err(RunnerError::NameInUse {
                name: new_name.to_string(),
                id: other.record.id,
            });
        }
        let _clock = FileLock::acquire(&c.paths.lock())?;
        let mut rec: ContainerRecord = read_json(&c.paths.config())?;
        rec.name = new_name.to_string();
        write_json(&c.paths.config(), &rec)?;
        if let Ok(nets) = crate::network::Networks::open(self.root()) {
            let _ = nets.rename(&rec.id, new_name);
        }
        c.record = rec;
        Ok(())
    }

    /// Start a supervisor for `c`. Detached: returns once the container runs (or failed to);
    /// attached: the supervisor shares this process's stdio, and its exit code is returned.
    pub fn spawn_supervisor(&self, c: &Container, attach: bool) -> Result<i32> {
        crate::supervisor::spawn(self.root(), c, attach)
    }

    /// [`Runner::spawn_supervisor`] as decided (and primed) before the container was created.
    pub fn spawn_supervisor_with(
        &self,
        c: &Container,
        launch: crate::supervisor::Launch,
    ) -> Result<i32> {
        crate::supervisor::spawn_with(self.root(), c, launch)
    }
}

fn set_env(env: &mut Vec<String>, kv: String) {
    let key = kv.split('=').next().unwrap_or("").to_string();
    if let Some(slot) = env
        .iter_mut()
        .find(|e| e.split('=').next() == Some(key.as_str()))
    {
        *slot = kv;
    } else {
        env.push(kv);
    }
}

/// `-e KEY=V` as given; `-e KEY` takes KEY from berth's own environment (dropped if unset).
fn env_arg(e: &str) -> Result<Option<String>> {
    let key = e.split('=').next().unwrap_or("");
    if key.is_empty() {
        return Err(RunnerError::invalid(
            "environment variable",
            format!("{e:?}: the name is empty"),
        ));
    }
    if key.contains(char::is_whitespace) {
        return Err(RunnerError::invalid(
            "environment variable",
            format!("{key:?} contains whitespaces"),
        ));
    }
    if e.contains('=') {
        return Ok(Some(e.to_string()));
    }
    Ok(std::env::var(key).ok().map(|v| format!("{key}={v}")))
}

/// Docker's `--env-file`: one KEY=VALUE (or KEY) per line, `#` comments, blank lines skipped.
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(path).ctx("reading env file", path)?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let e = env_arg(line).map_err(|e| {
            RunnerError::invalid(
                format!("env file {} line {}", path.display(), n + 1),
                e.to_string(),
            )
        })?;
        out.extend(e);
    }
    Ok(out)
}

/// Docker's `RAMInBytes`: `512m`, `1g`, `1024k`, `100` (bytes), case-insensitive, optional `b`.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| {
        RunnerError::invalid(
            "size",
            format!("{s:?}: use a number with an optional unit (b, k, m, g)"),
        )
    })?;
    if n < 0.0 || !n.is_finite() {
        return Err(RunnerError::invalid("size", format!("{s:?} is negative")));
    }
    Ok((n * mult as f64) as i64)
}

fn host_config(o: &CreateOptions) -> Result<HostConfig> {
    let memory = o
        .memory
        .as_deref()
        .map(parse_bytes)
        .transpose()?
        .unwrap_or(0);
    if memory > 0 && memory < crate::bundle::MIN_MEMORY {
        return Err(RunnerError::invalid(
            "--memory",
            "Minimum memory limit allowed is 6MB",
        ));
    }
    let memory_swap = match o.memory_swap.as_deref() {
        Some("-1") => -1,
        Some(s) => {
            let v = parse_bytes(s)?;
            if memory == 0 {
                return Err(RunnerError::invalid(
                    "--memory-swap",
                    "You should always set the Memory limit when using Memoryswap limit",
                ));
            }
            if v < memory {
                return Err(RunnerError::invalid(
                    "--memory-swap",
                    "Minimum memoryswap limit should be larger than memory limit, see usage",
                ));
            }
            v
        }
        None => 0,
    };
    let nano_cpus = match o.cpus.as_deref() {
        Some(c) => {
            let v: f64 = c
                .parse()
                .map_err(|_| RunnerError::invalid("--cpus", format!("{c:?} is not a number")))?;
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1) as f64;
            if v <= 0.0 || !v.is_finite() {
                return Err(RunnerError::invalid(
                    "--cpus",
                    format!("{c:?}: the value must be positive"),
                ));
            }
            if v > cores {
                return Err(RunnerError::invalid(
                    "--cpus",
                    format!(
                        "range of CPUs is from 0.01 to {cores:.2}, as there are only {cores} CPUs available"
                    ),
                ));
            }
            (v * 1e9) as i64
        }
        None => 0,
    };
    let restart_policy = parse_restart(o.restart.as_deref().unwrap_or("no"))?;
    if o.auto_remove && !matches!(restart_policy.name.as_str(), "" | "no") {
        return Err(RunnerError::invalid(
            "options",
            "Conflicting options: --restart and --rm",
        ));
    }
    let network_mode = match o.network.as_deref() {
        None | Some("") | Some("default") => "bridge".to_string(),
        Some(n) => n.to_string(),
    };
    let mut port_bindings: BTreeMap<String, Vec<crate::state::PortBinding>> = BTreeMap::new();
    for p in &o.publish {
        for (k, b) in crate::network::ports::parse_publish(p)? {
            port_bindings.entry(k).or_default().push(b);
        }
    }
    for c in o.cap_add.iter().chain(&o.cap_drop) {
        crate::bundle::parse_capability(c)?;
    }
    for s in &o.security_opt {
        let known = matches!(
            s.as_str(),
            "no-new-privileges"
                | "no-new-privileges:true"
                | "no-new-privileges=true"
                | "no-new-privileges:false"
                | "no-new-privileges=false"
        ) || ["label", "apparmor", "seccomp"].iter().any(|k| {
            s.strip_prefix(k)
                .is_some_and(|rest| rest.starts_with('=') || rest.starts_with(':'))
        });
        if !known {
            return Err(RunnerError::invalid(
                "--security-opt",
                format!("{s:?} is not a known option"),
            ));
        }
    }
    Ok(HostConfig {
        binds: o.volumes.clone(),
        network_mode,
        restart_policy,
        auto_remove: o.auto_remove,
        volumes_from: o.volumes_from.clone(),
        cap_add: o.cap_add.clone(),
        cap_drop: o.cap_drop.clone(),
        dns: o.dns.clone(),
        extra_hosts: o.add_host.clone(),
        privileged: o.privileged,
        readonly_rootfs: o.read_only,
        security_opt: crate::seccomp::resolve_security_opts(&o.security_opt)?,
        tmpfs: o
            .tmpfs
            .iter()
            .map(|t| match t.split_once(':') {
                Some((p, opts)) => (p.to_string(), opts.to_string()),
                None => (t.clone(), String::new()),
            })
            .collect(),
        runtime: o.runtime.clone().unwrap_or_else(|| "berth".into()),
        init: o.init.then_some(true),
        memory,
        memory_swap,
        nano_cpus,
        pids_limit: o.pids_limit,
        mounts: Vec::new(),
        port_bindings,
        publish_all_ports: o.publish_all,
        links: Vec::new(),
        dns_search: o.dns_search.clone(),
        dns_options: o.dns_option.clone(),
    })
}

/// The image's exposed ports plus `--expose` and the container ports of `-p` (Docker adds
/// both to `Config.ExposedPorts`).
fn exposed_ports(
    image: &[String],
    expose: &[String],
    bindings: &BTreeMap<String, Vec<crate::state::PortBinding>>,
) -> Result<Option<BTreeMap<String, serde_json::Value>>> {
    let mut out: BTreeMap<String, serde_json::Value> = image
        .iter()
        .map(|k| (k.clone(), serde_json::json!({})))
        .collect();
    for e in expose {
        let (range, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let bad = || RunnerError::invalid("--expose", format!("{e:?} is not a port or range"));
        let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a == 0 || b < a {
            return Err(bad());
        }
        for p in a..=b {
            let (p, proto) = crate::network::ports::parse_port_key(&format!("{p}/{proto}"))?;
            out.insert(
                crate::network::ports::port_key(p, &proto),
                serde_json::json!({}),
            );
        }
    }
    for k in bindings.keys() {
        out.insert(k.clone(), serde_json::json!({}));
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let bad = || {
        RunnerError::invalid(
            "--restart",
            format!("{s:?}: use no, always, unless-stopped or on-failure[:max-retries]"),
        )
    };
    match (name, count) {
        ("no" | "" | "always" | "unless-stopped", None) => Ok(RestartPolicy {
            name: if name.is_empty() {
                "no".into()
            } else {
                name.into()
            },
            maximum_retry_count: 0,
        }),
        ("on-failure", None) => Ok(RestartPolicy {
            name: "on-failure".into(),
            maximum_retry_count: 0,
        }),
        ("on-failure", Some(c)) => {
            let n: i64 = c.parse().map_err(|_| bad())?;
            if n < 0 {
                return Err(RunnerError::invalid(
                    "--restart",
                    "maximum retry count cannot be negative",
                ));
            }
            Ok(RestartPolicy {
                name: "on-failure".into(),
                maximum_retry_count: n,
            })
        }
        (_, Some(_)) if name != "on-failure" => Err(RunnerError::invalid(
            "--restart",
            format!("maximum retry count cannot be used with restart policy '{name}'"),
        )),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_docker() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("64mb").unwrap(), 64 << 20);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1m").is_err());
    }

    #[test]
    fn restart_policies_parse() {
        assert_eq!(
            parse_restart("on-failure:3").unwrap().maximum_retry_count,
            3
        );
        assert_eq!(parse_restart("always").unwrap().name, "always");
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
        assert!(parse_restart("on-failure:x").is_err());
    }

    #[test]
    fn env_overrides_by_key() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        set_env(&mut env, "A=2".into());
        set_env(&mut env, "B=3".into());
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
    }
}
