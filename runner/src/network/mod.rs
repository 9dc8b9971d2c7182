//! Bridge networking, without a daemon: networks are directories under `ROOT/networks/<id>/`
//! (`network.json`, Docker-shaped, and `endpoints/<container-id>.json`, one per attached
//! container, which are at once the IPAM allocations and the name records the embedded DNS
//! server answers from). A network's bridge, its address and its NAT rules are set up when its
//! first container starts; each container gets a veth pair whose peer is created directly in its
//! network namespace. NAT and published ports live in one nftables table per state root
//! ([`nft`]), never touching anyone else's rules.
//!
//! The default network `bridge` is made from the daemon configuration ([`config`]), so moving it
//! off 10.88.0.0/16 is a settings change.

pub mod attach;
pub mod config;
pub mod dns;
pub mod ipam;
pub mod netlink;
pub mod nft;
pub mod ports;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use config::DaemonConfig;
use ipam::Subnet;

use crate::error::{IoContext, Result, RunnerError};
use crate::state::{FileLock, read_json, write_json};

/// The default network's name, as Docker's.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The bridge device name option, as Docker names it.
pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";

/// A network as `network inspect` shows it (without `Containers`, which is computed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkRecord {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_from: ConfigFrom,
    pub config_only: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ipam {
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    pub subnet: String,
    #[serde(rename = "IPRange", skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    pub gateway: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigFrom {
    pub network: String,
}

/// A container's attachment to one network: its address allocation and its DNS names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    pub container_id: String,
    /// The container's name (without `/`).
    pub name: String,
    /// Network-scoped aliases (`--network-alias`, `connect --alias`, `--link` aliases).
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// The gateway the container routes through (unset on internal networks).
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    /// The interface name inside the container.
    pub ifname: String,
}

/// A network with its parsed settings.
#[derive(Debug, Clone)]
pub struct Network {
    pub record: NetworkRecord,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// Where container addresses come from (`--ip-range`, `fixed-cidr`); the subnet otherwise.
    pub range: Subnet,
    pub bridge: String,
    pub mtu: Option<u32>,
    pub is_default: bool,
    dir: PathBuf,
}

impl Network {
    pub fn name(&self) -> &str {
        &self.record.name
    }
    pub fn id(&self) -> &str {
        &self.record.id
    }
    fn endpoints_dir(&self) -> PathBuf {
        self.dir.join("endpoints")
    }
    fn endpoint_path(&self, container_id: &str) -> PathBuf {
        self.endpoints_dir().join(format!("{container_id}.json"))
    }
    fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.dir.join("lock"))
    }

    /// The endpoints on this network (skipping unreadable files, which are being written).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let Ok(rd) = fs::read_dir(self.endpoints_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<Endpoint> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| read_json(&e.path()).ok())
            .collect();
        out.sort_by_key(|e: &Endpoint| e.ip);
        out
    }

    pub fn endpoint(&self, container_id: &str) -> Option<Endpoint> {
        read_json(&self.endpoint_path(container_id)).ok()
    }
}

/// Options of `network create`.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// What a container asks of one network when it is attached.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub aliases: Vec<String>,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
}

/// The networks of one state root.
pub struct Networks {
    dir: PathBuf,
    root: PathBuf,
    pub config: DaemonConfig,
    pub table: String,
}

impl Networks {
    pub fn open(root: &Path) -> Result<Networks> {
        let dir = root.join("networks");
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        let config = DaemonConfig::load(root)?;
        Ok(Networks {
            dir,
            root: root.to_path_buf(),
            table: nft::table_name(root),
            config,
        })
    }

    fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.dir.join(".lock"))
    }

    /// The default network's ID: fixed per state root, so its directory survives settings
    /// changes.
    fn default_id(&self) -> String {
        hex::encode(Sha256::digest(
            format!("berth default network {}", self.root.display()).as_bytes(),
        ))
    }

    fn default_network(&self) -> Result<Network> {
        let id = self.default_id();
        let dir = self.dir.join(&id);
        let stored: Option<NetworkRecord> = read_json(&dir.join("network.json")).ok();
        let c = &self.config;
        let mut options = BTreeMap::new();
        options.insert(
            "com.docker.network.bridge.default_bridge".to_string(),
            "true".to_string(),
        );
        options.insert(
            "com.docker.network.bridge.enable_ip_masquerade".into(),
            "true".into(),
        );
        options.insert(OPT_BRIDGE_NAME.into(), c.bridge.clone());
        if let Some(m) = c.mtu {
            options.insert(OPT_MTU.into(), m.to_string());
        }
        let record = NetworkRecord {
            name: DEFAULT_NETWORK.into(),
            id: id.clone(),
            created: stored
                .map(|s| s.created)
                .unwrap_or_else(crate::state::now_rfc3339),
            scope: "local".into(),
            driver: "bridge".into(),
            ipam: Ipam {
                driver: "default".into(),
                options: BTreeMap::new(),
                config: vec![IpamConfig {
                    subnet: c.subnet.to_string(),
                    ip_range: c.fixed_cidr.map(|r| r.to_string()).unwrap_or_default(),
                    gateway: c.gateway.to_string(),
                }],
            },
            options,
            ..Default::default()
        };
        if !dir.join("network.json").exists() {
            fs::create_dir_all(dir.join("endpoints")).ctx("creating", &dir)?;
            write_json(&dir.join("network.json"), &record)?;
        }
        Ok(Network {
            subnet: c.subnet,
            gateway: c.gateway,
            range: c.fixed_cidr.unwrap_or(c.subnet),
            bridge: c.bridge.clone(),
            mtu: c.mtu,
            is_default: true,
            record,
            dir,
        })
    }

    fn load(&self, id: &str) -> Result<Network> {
        if id == self.default_id() {
            return self.default_network();
        }
        let dir = self.dir.join(id);
        let record: NetworkRecord = read_json(&dir.join("network.json"))?;
        let bad = |m: String| RunnerError::invalid(format!("network {}", record.name), m);
        let ipc = record
            .ipam
            .config
            .first()
            .ok_or_else(|| bad("it has no subnet".into()))?;
        let subnet: Subnet = ipc.subnet.parse().map_err(bad)?;
        let gateway: Ipv4Addr = ipc
            .gateway
            .parse()
            .map_err(|_| bad(format!("bad gateway {:?}", ipc.gateway)))?;
        let range = if ipc.ip_range.is_empty() {
            subnet
        } else {
            ipc.ip_range.parse().map_err(bad)?
        };
        let bridge = record
            .options
            .get(OPT_BRIDGE_NAME)
            .cloned()
            .unwrap_or_else(|| format!("br-{}", &record.id[..12]));
        let mtu = record.options.get(OPT_MTU).and_then(|m| m.parse().ok());
        Ok(Network {
            subnet,
            gateway,
            range,
            bridge,
            mtu,
            is_default: false,
            record,
            dir,
        })
    }

    /// Every bridge network: the default one first, then by name.
    pub fn list(&self) -> Result<Vec<Network>> {
        let mut out = vec![self.default_network()?];
        let default_id = self.default_id();
        for e in fs::read_dir(&self.dir).ctx("listing", &self.dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == default_id {
                continue;
            }
            match self.load(&name) {
                Ok(n) => out.push(n),
                Err(RunnerError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("skipping network {name}: {e}"),
            }
        }
        out[1..].sort_by(|a, b| a.record.name.cmp(&b.record.name));
        Ok(out)
    }

    /// A network by name, full ID or unique ID prefix (Docker's lookup order).
    pub fn get(&self, spec: &str) -> Result<Network> {
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.record.name == spec) {
            return Ok(n.clone());
        }
        if let Some(n) = all.iter().find(|n| n.record.id == spec) {
            return Ok(n.clone());
        }
        let m: Vec<&Network> = all
            .iter()
            .filter(|n| !spec.is_empty() && n.record.id.starts_with(spec))
            .collect();
        match m.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(RunnerError::NoSuchNetwork(spec.to_string())),
            _ => Err(RunnerError::invalid(
                "network",
                format!("{spec:?} matches several networks; give more of the ID"),
            )),
        }
    }

    /// `network create`.
    pub fn create(&self, o: &CreateNetwork) -> Result<Network> {
        validate_network_name(&o.name)?;
        if !o.driver.is_empty() && o.driver != "bridge" {
            return Err(RunnerError::Unsupported(format!(
                "network driver {:?} is not supported: berth creates bridge networks (-d bridge)",
                o.driver
            )));
        }
        if is_predefined(&o.name) {
            return Err(RunnerError::Conflict(format!(
                "network with name {} already exists",
                o.name
            )));
        }
        let _lock = self.lock()?;
        let existing = self.list()?;
        if existing.iter().any(|n| n.record.name == o.name) {
            return Err(RunnerError::Conflict(format!(
                "network with name {} already exists",
                o.name
            )));
        }
        let mut options = o.options.clone();
        for k in options.keys() {
            if !matches!(
                k.as_str(),
                OPT_BRIDGE_NAME
                    | OPT_MTU
                    | "com.docker.network.bridge.enable_ip_masquerade"
                    | "com.docker.network.bridge.enable_icc"
                    | "com.docker.network.bridge.host_binding_ipv4"
            ) {
                return Err(RunnerError::invalid(
                    "network option",
                    format!("{k:?} is not supported by the bridge driver"),
                ));
            }
        }
        if let Some(b) = options.get(OPT_BRIDGE_NAME) {
            validate_ifname(b).map_err(|m| RunnerError::invalid("bridge name", m))?;
            if existing.iter().any(|n| &n.bridge == b) {
                return Err(RunnerError::Conflict(format!(
                    "bridge name {b} is used by another network"
                )));
            }
        }
        if let Some(m) = options.get(OPT_MTU)
            && !m.parse::<u32>().is_ok_and(|m| (68..=65535).contains(&m))
        {
            return Err(RunnerError::invalid(
                "mtu",
                format!("{m:?}: give 68..65535"),
            ));
        }
        let host_routes = ipam::host_routes();
        let taken: Vec<(String, Subnet)> = existing
            .iter()
            .map(|n| (n.record.name.clone(), n.subnet))
            .collect();
        let subnet = match &o.subnet {
            Some(s) => {
                let s: Subnet = s.parse().map_err(|m| RunnerError::invalid("subnet", m))?;
                if s.prefix > 30 {
                    return Err(RunnerError::invalid(
                        "subnet",
                        format!("{s} is too small: give a prefix of /30 or shorter"),
                    ));
                }
                if let Some((name, other)) = taken.iter().find(|(_, t)| t.overlaps(&s)) {
                    return Err(RunnerError::Conflict(format!(
                        "invalid pool request: Pool overlaps with other one on this address space: {s} overlaps {other} of network {name}"
                    )));
                }
                if let Some((dev, r)) = host_routes
                    .iter()
                    .find(|(dev, r)| r.overlaps(&s) && !existing.iter().any(|n| &n.bridge == dev))
                {
                    return Err(RunnerError::Conflict(format!(
                        "invalid pool request: {s} overlaps the host's route {r} on {dev}"
                    )));
                }
                s
            }
            None => self.pick_subnet(&taken, &host_routes)?,
        };
        let gateway = match &o.gateway {
            Some(g) => {
                let g: Ipv4Addr = g.parse().map_err(|_| {
                    RunnerError::invalid("gateway", format!("{g:?} is not an IPv4 address"))
                })?;
                if !subnet.contains(g) || g == subnet.addr || g == subnet.broadcast() {
                    return Err(RunnerError::invalid(
                        "gateway",
                        format!("{g} is not a usable address of {subnet}"),
                    ));
                }
                g
            }
            None => subnet.first_host(),
        };
        let ip_range = match &o.ip_range {
            Some(r) => {
                let r: Subnet = r.parse().map_err(|m| RunnerError::invalid("ip-range", m))?;
                if r.prefix < subnet.prefix || !subnet.overlaps(&r) {
                    return Err(RunnerError::invalid(
                        "ip-range",
                        format!("{r} is not inside the subnet {subnet}"),
                    ));
                }
                r.to_string()
            }
            None => String::new(),
        };
        let id = random_id();
        options
            .entry(OPT_BRIDGE_NAME.into())
            .or_insert_with(|| format!("br-{}", &id[..12]));
        let record = NetworkRecord {
            name: o.name.clone(),
            id: id.clone(),
            created: crate::state::now_rfc3339(),
            scope: "local".into(),
            driver: "bridge".into(),
            ipam: Ipam {
                driver: "default".into(),
                options: BTreeMap::new(),
                config: vec![IpamConfig {
                    subnet: subnet.to_string(),
                    ip_range,
                    gateway: gateway.to_string(),
                }],
            },
            internal: o.internal,
            attachable: o.attachable,
            options,
            labels: o.labels.clone(),
            ..Default::default()
        };
        let tmp = self.dir.join(format!(".tmp-{id}"));
        fs::create_dir_all(tmp.join("endpoints")).ctx("creating", &tmp)?;
        write_json(&tmp.join("network.json"), &record)?;
        fs::rename(&tmp, self.dir.join(&id)).ctx("creating", self.dir.join(&id))?;
        self.load(&id)
    }

    fn pick_subnet(
        &self,
        taken: &[(String, Subnet)],
        host_routes: &[(String, Subnet)],
    ) -> Result<Subnet> {
        for (base, size) in &self.config.pools {
            let step = 1u64 << (32 - u32::from(*size));
            let mut a = u64::from(u32::from(base.addr));
            let end = a + base.size();
            while a < end {
                let cand = Subnet::new(Ipv4Addr::from(a as u32), *size);
                if !taken.iter().any(|(_, t)| t.overlaps(&cand))
                    && !host_routes.iter().any(|(_, r)| r.overlaps(&cand))
                {
                    return Ok(cand);
                }
                a += step;
            }
        }
        Err(RunnerError::Conflict(
            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network: give one with --subnet".into(),
        ))
    }

    /// `network rm`: the caller has checked that no container uses it.
    pub fn remove(&self, n: &Network) -> Result<()> {
        if n.is_default {
            return Err(RunnerError::Conflict(format!(
                "{} is a pre-defined network and cannot be removed",
                n.record.name
            )));
        }
        let _lock = self.lock()?;
        let leftovers = n.endpoints();
        if let Some(e) = leftovers.first() {
            return Err(RunnerError::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints (container {})",
                n.record.name, n.record.id, e.name
            )));
        }
        nft::remove_network(&self.table, n)?;
        let mut nl = netlink::Netlink::host().map_err(|e| net_err("opening netlink", e))?;
        nl.delete_link(&n.bridge)
            .map_err(|e| net_err(&format!("deleting bridge {}", n.bridge), e))?;
        let doomed = self.dir.join(format!(".rm-{}", n.record.id));
        fs::rename(&n.dir, &doomed).ctx("removing", &n.dir)?;
        fs::remove_dir_all(&doomed).ctx("removing", &doomed)
    }

    /// Make sure the network's bridge exists with its address, and its NAT rules are in place.
    pub fn ensure_up(&self, n: &Network) -> Result<()> {
        // The name goes into sysfs paths and nft scripts below.
        nft::bridge_of(n)?;
        let mut nl = netlink::Netlink::host().map_err(|e| net_err("opening netlink", e))?;
        if nl
            .link_index(&n.bridge)
            .map_err(|e| net_err("looking up the bridge", e))?
            .is_some()
        {
            // The bridge exists: set up by an earlier start (its rules go with it). One set up
            // by a berth without the loopback guard gets the table again (idempotent).
            if !guard_marked(&n.bridge) {
                let _lock = n.lock()?;
                nft::add_network(&self.table, n)?;
                mark_guarded(&n.bridge);
            }
            return Ok(());
        }
        let _lock = n.lock()?;
        let created = nl
            .create_bridge(&n.bridge)
            .map_err(|e| net_err(&format!("creating bridge {}", n.bridge), e))?;
        let idx = nl
            .link_index(&n.bridge)
            .map_err(|e| net_err("looking up the bridge", e))?
            .ok_or_else(|| RunnerError::Sandbox(format!("bridge {} vanished", n.bridge)))?;
        let mut setup = || -> Result<()> {
            if let Some(mtu) = n.mtu {
                nl.set_mtu(idx, mtu)
                    .map_err(|e| net_err(&format!("setting the MTU of {}", n.bridge), e))?;
            }
            nl.add_address(idx, IpAddr::V4(n.gateway), n.subnet.prefix)
                .map_err(|e| net_err(&format!("adding {} to {}", n.gateway, n.bridge), e))?;
            nl.set_up(idx)
                .map_err(|e| net_err(&format!("bringing {} up", n.bridge), e))?;
            // The rules first: their guard must be in place before route_localnet opens the
            // host's loopback to packets arriving on the bridge.
            nft::add_network(&self.table, n)?;
            // Published ports answer on the host's loopback through the kernel's NAT: packets
            // from 127.0.0.1 may leave through this bridge (masqueraded on the way).
            netlink::sysctl(&format!("net/ipv4/conf/{}/route_localnet", n.bridge), "1")
                .map_err(|e| net_err("enabling route_localnet on the bridge", e))?;
            if !n.record.internal {
                netlink::sysctl("net/ipv4/ip_forward", "1")
                    .map_err(|e| net_err("enabling IPv4 forwarding", e))?;
            }
            mark_guarded(&n.bridge);
            Ok(())
        };
        if let Err(e) = setup() {
            if created {
                let _ = nl.delete_link(&n.bridge);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Reserve an address for `container_id` on `n` (the endpoint file is the allocation).
    pub fn allocate(
        &self,
        n: &Network,
        container_id: &str,
        name: &str,
        ifname: &str,
        req: &AttachRequest,
    ) -> Result<Endpoint> {
        let _lock = n.lock()?;
        fs::create_dir_all(n.endpoints_dir()).ctx("creating", n.endpoints_dir())?;
        let eps = n.endpoints();
        if let Some(e) = eps.iter().find(|e| e.container_id == container_id) {
            return Err(RunnerError::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                e.name, n.record.name
            )));
        }
        let used: BTreeSet<Ipv4Addr> = eps.iter().map(|e| e.ip).collect();
        let ip = match req.ip {
            Some(ip) => {
                if n.is_default {
                    return Err(RunnerError::invalid(
                        "--ip",
                        "user specified IP address is supported on user defined networks only",
                    ));
                }
                if !n.subnet.contains(ip)
                    || ip == n.subnet.addr
                    || ip == n.subnet.broadcast()
                    || ip == n.gateway
                {
                    return Err(RunnerError::invalid(
                        "--ip",
                        format!(
                            "{ip} is not a usable address of network {} ({})",
                            n.record.name, n.subnet
                        ),
                    ));
                }
                if used.contains(&ip) {
                    return Err(RunnerError::Conflict(format!(
                        "Address already in use: {ip} on network {}",
                        n.record.name
                    )));
                }
                ip
            }
            None => {
                let last_path = n.dir.join("last-ip");
                let last = fs::read_to_string(&last_path)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                let ip = ipam::allocate(&n.subnet, &n.range, n.gateway, &used, last).ok_or_else(
                    || {
                        RunnerError::Conflict(format!(
                            "no available IPv4 addresses on network {} ({})",
                            n.record.name, n.range
                        ))
                    },
                )?;
                crate::state::write_regenerated(&last_path, ip.to_string().as_bytes())?;
                ip
            }
        };
        let mac = req.mac.unwrap_or_else(|| ipam::mac_for(ip));
        let ep = Endpoint {
            container_id: container_id.to_string(),
            name: name.to_string(),
            aliases: req.aliases.clone(),
            endpoint_id: random_id(),
            ip,
            prefix_len: n.subnet.prefix,
            gateway: (!n.record.internal).then_some(n.gateway),
            mac: ipam::format_mac(&mac),
            host_veth: veth_name(container_id, &n.record.id),
            ifname: ifname.to_string(),
        };
        // Not synced: an endpoint only matters while its container runs, which a power loss ends.
        write_endpoint(&n.endpoint_path(container_id), &ep)?;
        Ok(ep)
    }

    /// Plug the endpoint into the container whose init is `pid`: the veth pair, its address,
    /// the default route (when `default_route`).
    pub fn plug(&self, n: &Network, ep: &Endpoint, pid: i32, default_route: bool) -> Result<()> {
        self.ensure_up(n)?;
        let mut host = netlink::Netlink::host().map_err(|e| net_err("opening netlink", e))?;
        let bridge = host
            .link_index(&n.bridge)
            .map_err(|e| net_err("looking up the bridge", e))?
            .ok_or_else(|| RunnerError::Sandbox(format!("bridge {} is gone", n.bridge)))?;
        // A pair of the same name from an earlier run of this container may linger.
        let _ = host.delete_link(&ep.host_veth);
        tracing::debug!("plug: bridge checked");
        let mac = ipam::parse_mac(&ep.mac).ok();
        host.create_veth(
            &ep.host_veth,
            bridge,
            n.mtu,
            &netlink::VethPeer {
                name: &ep.ifname,
                netns_pid: pid,
                mac,
            },
        )
        .map_err(|e| net_err(&format!("creating the veth pair {}", ep.host_veth), e))?;
        tracing::debug!("plug: veth created");
        // Hairpin: a container reaching its own published port comes back through its port.
        let _ = std::fs::write(
            format!("/sys/class/net/{}/brport/hairpin_mode", ep.host_veth),
            "1",
        );
        let mut inner = netlink::Netlink::in_netns_of(pid)
            .map_err(|e| net_err("entering the container's network namespace", e))?;
        tracing::debug!("plug: in the container's namespace");
        let idx = inner
            .link_index(&ep.ifname)
            .map_err(|e| net_err("looking up the container's interface", e))?
            .ok_or_else(|| {
                RunnerError::Sandbox(format!("{} did not appear in the container", ep.ifname))
            })?;
        inner
            .add_address(idx, IpAddr::V4(ep.ip), ep.prefix_len)
            .map_err(|e| net_err("adding the container's address", e))?;
        inner
            .set_up(idx)
            .map_err(|e| net_err("bringing the container's interface up", e))?;
        inner
            .set_up(1)
            .map_err(|e| net_err("bringing the container's loopback up", e))?;
        tracing::debug!("plug: address and links up");
        if default_route && let Some(gw) = ep.gateway {
            let gw = if n.is_default {
                self.config.default_gateway.unwrap_or(gw)
            } else {
                gw
            };
            inner
                .add_default_route(gw)
                .map_err(|e| net_err("adding the default route", e))?;
        }
        Ok(())
    }

    /// Release `container_id`'s endpoint on `n`: its address, and with `unplug` its veth pair
    /// (a running container leaving the network). A stopped container's pair needs no work: the
    /// kernel destroys it with the namespace, and deleting it ourselves would only wait for that
    /// (an unregistration costs milliseconds of RCU grace periods on the exit path).
    pub fn release(&self, n: &Network, container_id: &str, unplug: bool) -> Result<()> {
        let path = n.endpoint_path(container_id);
        let Some(ep) = n.endpoint(container_id) else {
            let _ = fs::remove_file(&path);
            return Ok(());
        };
        if unplug && let Ok(mut nl) = netlink::Netlink::host() {
            let _ = nl.delete_link(&ep.host_veth);
        }
        let _lock = n.lock()?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RunnerError::io("removing", path, e)),
        }
    }

    /// Release every endpoint the stopped container `container_id` holds, on all networks.
    pub fn release_all(&self, container_id: &str) -> Result<()> {
        for n in self.list()? {
            if n.endpoint_path(container_id).exists() {
                self.release(&n, container_id, false)?;
            }
        }
        Ok(())
    }

    /// Every network `container_id` has an endpoint on.
    pub fn attached(&self, container_id: &str) -> Result<Vec<(Network, Endpoint)>> {
        Ok(self
            .list()?
            .into_iter()
            .filter_map(|n| n.endpoint(container_id).map(|e| (n, e)))
            .collect())
    }

    /// Rename a container's endpoints (its DNS name follows `rename`).
    pub fn rename(&self, container_id: &str, new_name: &str) -> Result<()> {
        for (n, mut e) in self.attached(container_id)? {
            let _lock = n.lock()?;
            e.name = new_name.to_string();
            write_endpoint(&n.endpoint_path(container_id), &e)?;
        }
        Ok(())
    }
}

/// `bridge`, `host` and `none` exist in every Docker installation and cannot be made or removed.
pub fn is_predefined(name: &str) -> bool {
    matches!(name, "bridge" | "host" | "none" | "default")
}

/// The fixed ID of the predefined `host` and `none` networks.
pub fn pseudo_id(name: &str) -> String {
    hex::encode(Sha256::digest(format!("berth {name} network").as_bytes()))
}

/// Docker's rule for network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_network_name(name: &str) -> Result<()> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(RunnerError::invalid(
            "network name",
            format!("{name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
        ));
    }
    Ok(())
}

/// A name usable as a DNS label (aliases, container names resolved on a network).
pub fn validate_alias(alias: &str) -> Result<()> {
    let ok = !alias.is_empty()
        && alias.len() <= 253
        && alias.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if !ok {
        return Err(RunnerError::invalid(
            "network alias",
            format!(
                "{alias:?} is not a valid DNS name: use letters, digits and '-' in labels of up to 63 characters"
            ),
        ));
    }
    Ok(())
}

/// An interface name berth will use: 1 to 15 of `[A-Za-z0-9_.-]`, not `.` or `..`. The kernel
/// takes almost any byte, but names go into nftables scripts (inside double quotes) and sysfs
/// paths, where `"`, `;`, `}` or `/` would change what is run or written; the names people give
/// bridges (`docker0`, `br-lan`, `br_ext`, `vmbr0.10`) fit.
pub fn validate_ifname(name: &str) -> std::result::Result<(), String> {
    if name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    {
        return Err(format!(
            "{name:?} is not a valid interface name: use 1 to 15 letters, digits, '_', '.' or '-'"
        ));
    }
    Ok(())
}

/// The bridge's alias (`ip link` shows it) says its rules include the loopback guard
/// ([`nft`]): a bridge made by an earlier berth, whose `route_localnet=1` let containers reach
/// the host's 127.0.0.1, is found by its missing mark on the next start, without running nft on
/// every start.
const GUARD_MARK: &str = "berth: loopback guarded";

fn guard_marked(bridge: &str) -> bool {
    fs::read_to_string(format!("/sys/class/net/{bridge}/ifalias"))
        .is_ok_and(|a| a.trim_end() == GUARD_MARK)
}

fn mark_guarded(bridge: &str) {
    // Without the mark the next start only applies the (idempotent) rules again.
    if let Err(e) = fs::write(format!("/sys/class/net/{bridge}/ifalias"), GUARD_MARK) {
        tracing::debug!("cannot mark bridge {bridge}: {e}");
    }
}

/// The host end of a container's veth pair on a network: stable for the pair (container,
/// network), so cleanup finds it without a record.
fn veth_name(container_id: &str, network_id: &str) -> String {
    let h = hex::encode(Sha256::digest(
        format!("{container_id}/{network_id}").as_bytes(),
    ));
    format!("veth{}", &h[..11])
}

fn write_endpoint(path: &Path, ep: &Endpoint) -> Result<()> {
    let bytes = serde_json::to_vec(ep)
        .map_err(|e| RunnerError::invalid(path.display().to_string(), e.to_string()))?;
    crate::state::write_regenerated(path, &bytes)
}

fn random_id() -> String {
    let mut b = [0u8; 32];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    hex::encode(b)
}

fn net_err(what: &str, e: std::io::Error) -> RunnerError {
    RunnerError::Network(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_network_name("my-net_1.x").is_ok());
        assert!(validate_network_name("-x").is_err());
        assert!(validate_network_name("a b").is_err());
        assert!(validate_network_name("").is_err());
        assert!(validate_alias("web").is_ok());
        assert!(validate_alias("db.internal").is_ok());
        assert!(validate_alias("bad name").is_err());
        assert!(validate_alias("-web").is_err());
        assert!(validate_alias(&"a".repeat(64)).is_err());
        assert!(validate_ifname("berth0").is_ok());
        assert!(validate_ifname("a-very-long-name0").is_err());
        assert!(validate_ifname("br-lan_0.10").is_ok());
        for bad in [
            "x\";drop", "a}b", "a;b", "a b", "a/b", "a:b", "..", "é", "a\nb", "",
        ] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
        assert_eq!(veth_name("a", "b").len(), 15);
    }
}
