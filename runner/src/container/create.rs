//! Docker's `create`: a record from the image's config and the parsed options, with the
//! network, links and volumes checked before anything is written.

use std::collections::BTreeMap;
use std::fs;

use super::options::{
    CreateOptions, DEFAULT_PATH, env_arg, exposed_ports, host_config, read_env_file, set_env,
};
use super::record::Container;
use super::store::Runner;
use crate::error::{IoContext, Result, RunnerError};
use crate::names;
use crate::persist::write_json_with;
use crate::state::{
    ContainerConfig, ContainerPaths, ContainerRecord, HostConfig, State, now_rfc3339,
};

impl Runner {
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

        let _lock = super::store::containers_lock(self.root())?;
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
            crate::persist::write_atomic_with(
                &tmp_paths.image(),
                record.image.as_bytes(),
                durable,
            )?;
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
}
