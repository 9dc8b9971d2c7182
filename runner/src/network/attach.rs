//! A container's side of bridge networking, as its supervisor runs it at each start: addresses
//! allocated before the sandbox starts (so /etc/hosts can name them), veth pairs plugged in
//! between create and start, published ports and the endpoint settings `inspect` shows after.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::conflict::NetworkConflict;
use super::record::{AttachRequest, Endpoint, Network};
use super::store::Networks;
use crate::container::{Container, Containers};
use crate::error::{Result, RunnerError};
use crate::state::{EndpointSettings, Status};

/// The networks a container is configured for, primary (its `--network`) first.
pub fn configured(c: &Container) -> Vec<(String, EndpointSettings)> {
    let mode = &c.record.host_config.network_mode;
    let cfg = &c.record.networking_config;
    let mut out: Vec<(String, EndpointSettings)> = Vec::new();
    if let Some((k, v)) = cfg
        .iter()
        .find(|(k, v)| *k == mode || v.network_id == *mode)
    {
        out.push((k.clone(), v.clone()));
    }
    for (k, v) in cfg {
        if !out.iter().any(|(o, _)| o == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

/// Does the container get networks of ours (rather than none, host or another's namespace)?
pub fn is_bridged(c: &Container) -> bool {
    let m = c.record.host_config.network_mode.as_str();
    !(m == "none" || m == "host" || m.starts_with("container:"))
}

fn request(es: &EndpointSettings) -> Result<AttachRequest> {
    let ip = match es.ipam_config.as_ref().map(|c| c.ipv4_address.as_str()) {
        Some(s) if !s.is_empty() => Some(
            s.parse::<Ipv4Addr>()
                .map_err(|_| RunnerError::invalid("--ip", format!("{s:?}")))?,
        ),
        _ => None,
    };
    let mac = if es.mac_address.is_empty() {
        None
    } else {
        Some(super::ipam::parse_mac(&es.mac_address).map_err(|e| RunnerError::invalid("mac", e))?)
    };
    Ok(AttachRequest {
        aliases: es.aliases.clone().unwrap_or_default(),
        ip,
        mac,
    })
}

/// Allocate an address on each configured network; on failure nothing stays allocated.
pub fn allocate(nets: &Networks, c: &Container) -> Result<Vec<(Network, Endpoint)>> {
    let mut out: Vec<(Network, Endpoint)> = Vec::new();
    let res = (|| {
        for (i, (name, es)) in configured(c).into_iter().enumerate() {
            let n = nets
                .get(if es.network_id.is_empty() {
                    &name
                } else {
                    &es.network_id
                })
                .or_else(|_| nets.get(&name))?;
            let mut req = request(&es)?;
            // `--link` aliases resolve on user-defined networks as Docker's do.
            if !n.is_default {
                for l in &c.record.host_config.links {
                    if let Some(alias) = l.rsplit('/').next() {
                        req.aliases.push(alias.to_string());
                    }
                }
            }
            let ep = nets.allocate(&n, c.id(), c.name(), &format!("eth{i}"), &req)?;
            out.push((n, ep));
        }
        Ok(())
    })();
    if let Err(e) = res {
        for (n, _) in &out {
            let _ = nets.release(n, c.id(), false);
        }
        return Err(e);
    }
    Ok(out)
}

/// Plug every endpoint into the container whose init is `pid` (the first one routes).
pub fn plug(nets: &Networks, eps: &[(Network, Endpoint)], pid: i32) -> Result<()> {
    for (i, (n, ep)) in eps.iter().enumerate() {
        nets.plug(n, ep, pid, i == 0)?;
    }
    Ok(())
}

/// The endpoint as `inspect` shows it under NetworkSettings.Networks.
pub fn settings(
    n: &Network,
    ep: &Endpoint,
    cfg: &EndpointSettings,
    short_id: &str,
) -> EndpointSettings {
    let mut dns_names = vec![ep.name.clone(), short_id.to_string()];
    dns_names.extend(ep.aliases.iter().cloned());
    EndpointSettings {
        ipam_config: cfg.ipam_config.clone(),
        links: cfg.links.clone(),
        aliases: cfg.aliases.clone(),
        mac_address: ep.mac.clone(),
        network_id: n.id().to_string(),
        endpoint_id: ep.endpoint_id.clone(),
        gateway: ep.gateway.map(|g| g.to_string()).unwrap_or_default(),
        ip_address: ep.ip.to_string(),
        ip_prefix_len: ep.prefix_len,
        dns_names: (!n.is_default).then_some(dns_names),
        ..Default::default()
    }
}

/// `--link`: for each linked container (running, on the default bridge with us), its /etc/hosts
/// line and Docker's legacy environment variables (`ALIAS_PORT_80_TCP_ADDR`, `ALIAS_ENV_X`, ...).
pub fn links(runner: &impl Containers, c: &Container) -> Result<(Vec<String>, Vec<String>)> {
    let mut hosts = Vec::new();
    let mut env = Vec::new();
    let nets = Networks::open(runner.root())?;
    for l in &c.record.host_config.links {
        // "/target:/me/alias"
        let (target, rest) = l.split_once(':').unwrap_or((l.as_str(), ""));
        let target = target.trim_start_matches('/');
        let alias = rest.rsplit('/').next().unwrap_or(target);
        let t = runner.get(target).map_err(|_| {
            RunnerError::invalid("--link", format!("could not get container for {target}"))
        })?;
        if t.state.status != Status::Running {
            return Err(NetworkConflict::LinkNotRunning {
                target: t.name().into(),
                container: c.name().into(),
                alias: alias.into(),
            }
            .into());
        }
        let Some((_, ep)) = nets.attached(t.id())?.into_iter().next() else {
            return Err(NetworkConflict::LinkNoAddress {
                target: t.name().into(),
            }
            .into());
        };
        let ip = ep.ip;
        hosts.push(format!("{ip}\t{alias} {} {}", t.short_id(), t.name()));
        let prefix: String = alias
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() {
                    ch.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        env.push(format!("{prefix}_NAME=/{}/{alias}", c.name()));
        let mut ports: Vec<(u16, String)> = t
            .record
            .config
            .exposed_ports
            .as_ref()
            .map(|m| {
                m.keys()
                    .filter_map(|k| super::ports::parse_port_key(k).ok())
                    .collect()
            })
            .unwrap_or_default();
        ports.sort();
        if let Some((p, proto)) = ports.first() {
            env.push(format!("{prefix}_PORT={proto}://{ip}:{p}"));
        }
        for (p, proto) in &ports {
            let up = proto.to_ascii_uppercase();
            env.push(format!("{prefix}_PORT_{p}_{up}={proto}://{ip}:{p}"));
            env.push(format!("{prefix}_PORT_{p}_{up}_ADDR={ip}"));
            env.push(format!("{prefix}_PORT_{p}_{up}_PORT={p}"));
            env.push(format!("{prefix}_PORT_{p}_{up}_PROTO={proto}"));
        }
        for e in &t.record.config.env {
            if let Some((k, v)) = e.split_once('=')
                && k != "HOME"
                && k != "PATH"
            {
                env.push(format!("{prefix}_ENV_{k}={v}"));
            }
        }
    }
    Ok((hosts, env))
}

/// The state's per-network settings for the endpoints just allocated.
pub fn state_networks(
    c: &Container,
    eps: &[(Network, Endpoint)],
) -> BTreeMap<String, EndpointSettings> {
    let cfg = &c.record.networking_config;
    eps.iter()
        .map(|(n, ep)| {
            let es = cfg.get(n.name()).cloned().unwrap_or_default();
            (n.name().to_string(), settings(n, ep, &es, c.short_id()))
        })
        .collect()
}

/// Write a changed record under the container's lock.
fn update_record(
    c: &mut Container,
    f: impl FnOnce(&mut crate::state::ContainerRecord),
) -> Result<()> {
    let _lock = crate::persist::FileLock::acquire(&c.paths.lock())?;
    let mut rec: crate::state::ContainerRecord = crate::persist::read_json(&c.paths.config())?;
    f(&mut rec);
    crate::persist::write_json(&c.paths.config(), &rec)?;
    c.record = rec;
    Ok(())
}

/// `network connect`: add the network to the container's configuration and, when it runs,
/// plug it in now (eth1, eth2, ...; the first network keeps the default route).
pub fn connect(
    runner: &impl Containers,
    c: &mut Container,
    network: &str,
    es: EndpointSettings,
) -> Result<()> {
    if !is_bridged(c) {
        return Err(NetworkConflict::SharedNamespace {
            container: c.name().into(),
            mode: c.record.host_config.network_mode.clone(),
        }
        .into());
    }
    let nets = Networks::open(runner.root())?;
    let n = nets.get(network)?;
    if c.record.networking_config.contains_key(n.name()) {
        return Err(NetworkConflict::EndpointExists {
            name: c.name().into(),
            network: n.name().into(),
        }
        .into());
    }
    for a in es.aliases.iter().flatten() {
        super::record::validate_alias(a)?;
    }
    if n.is_default && es.aliases.as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(RunnerError::invalid(
            "--alias",
            "network-scoped alias is supported only for containers in user defined networks",
        ));
    }
    let mut es = es;
    es.network_id = n.id().to_string();
    let req = request(&es)?;
    if c.is_running() {
        let ifname = format!("eth{}", nets.attached(c.id())?.len());
        let ep = nets.allocate(&n, c.id(), c.name(), &ifname, &req)?;
        if let Err(e) = nets.plug(&n, &ep, c.state.pid, false) {
            let _ = nets.release(&n, c.id(), true);
            return Err(e);
        }
        let s = settings(&n, &ep, &es, c.short_id());
        let name = n.name().to_string();
        runner.update_state(c, |st| {
            st.networks.insert(name, s);
        })?;
    }
    let name = n.name().to_string();
    update_record(c, |r| {
        r.networking_config.insert(name, es);
    })
}

/// `network disconnect`: unplug (when running) and drop the network from the configuration.
pub fn disconnect(runner: &impl Containers, c: &mut Container, network: &str) -> Result<()> {
    let nets = Networks::open(runner.root())?;
    let n = nets.get(network)?;
    if !c.record.networking_config.contains_key(n.name()) {
        return Err(NetworkConflict::NotConnected {
            container: c.short_id().into(),
            network: n.name().into(),
        }
        .into());
    }
    nets.release(&n, c.id(), c.is_running())?;
    let name = n.name().to_string();
    runner.update_state(c, |st| {
        st.networks.remove(&name);
    })?;
    update_record(c, |r| {
        r.networking_config.remove(&name);
        if r.host_config.network_mode == name || r.host_config.network_mode == n.record.id {
            // Docker keeps the mode; a container left with no network starts with none.
            if r.networking_config.is_empty() {
                r.host_config.network_mode = "none".into();
            } else if let Some(k) = r.networking_config.keys().next() {
                r.host_config.network_mode = k.clone();
            }
        }
    })
}

/// The embedded DNS server's view for one container: the names (container name, short ID,
/// aliases) on every network it has an endpoint on, read live from the endpoint records, so a
/// container that joins, leaves or comes back with a new address is answered for at once.
pub struct NetResolver {
    networks_dir: std::path::PathBuf,
    container_id: String,
}

impl NetResolver {
    pub fn new(root: &std::path::Path, container_id: &str) -> NetResolver {
        NetResolver {
            networks_dir: root.join("networks"),
            container_id: container_id.to_string(),
        }
    }

    /// Endpoints on the networks this container is attached to (the default bridge has no
    /// name resolution, as Docker's).
    fn peers(&self) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.networks_dir) else {
            return out;
        };
        for d in rd.flatten() {
            let dir = d.path();
            let eps = dir.join("endpoints");
            if !eps.join(format!("{}.json", self.container_id)).exists() {
                continue;
            }
            let is_default = crate::persist::read_json::<super::record::NetworkRecord>(
                &dir.join("network.json"),
            )
            .map(|r| {
                r.options
                    .contains_key("com.docker.network.bridge.default_bridge")
            })
            .unwrap_or(true);
            if is_default {
                continue;
            }
            let Ok(files) = std::fs::read_dir(&eps) else {
                continue;
            };
            for f in files.flatten() {
                if f.file_name().to_string_lossy().ends_with(".json")
                    && let Ok(ep) = crate::persist::read_json::<Endpoint>(&f.path())
                {
                    out.push(ep);
                }
            }
        }
        out
    }
}

impl super::dns::Resolver for NetResolver {
    fn lookup(&self, name: &str) -> Option<Vec<std::net::IpAddr>> {
        let ips: Vec<std::net::IpAddr> = self
            .peers()
            .into_iter()
            .filter(|e| {
                e.name.eq_ignore_ascii_case(name)
                    || e.container_id
                        .get(..12)
                        .is_some_and(|s| s.eq_ignore_ascii_case(name))
                    || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
            })
            .map(|e| std::net::IpAddr::V4(e.ip))
            .collect();
        (!ips.is_empty()).then_some(ips)
    }

    fn reverse(&self, ip: std::net::IpAddr) -> Option<String> {
        self.peers()
            .into_iter()
            .find(|e| std::net::IpAddr::V4(e.ip) == ip)
            .map(|e| e.name)
    }
}

/// Serve DNS for `c` on `sockets` (bound in its namespace) until `stop` is set.
pub fn serve_dns(
    root: &std::path::Path,
    c: &Container,
    sockets: super::dns::Sockets,
    upstreams: Vec<std::net::SocketAddr>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let resolver = std::sync::Arc::new(NetResolver::new(root, c.id()));
    super::dns::serve(sockets, resolver, upstreams, stop)
}
