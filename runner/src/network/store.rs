//! The networks of one state root: directories under `ROOT/networks/<id>/`, the default one
//! made from the daemon configuration; lookup, `network create` (with its subnet checks and
//! pool choice) and `network rm`.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::config::DaemonConfig;
use super::conflict::NetworkConflict;
use super::ipam::{self, Subnet};
use super::netlink::net_err;
use super::record::{
    CreateNetwork, DEFAULT_NETWORK, Ipam, IpamConfig, Network, NetworkRecord, OPT_BRIDGE_NAME,
    OPT_MTU, is_predefined, random_id, validate_ifname, validate_network_name,
};
use super::{netlink, nft};
use crate::error::{IoContext, Result, RunnerError};
use crate::persist::{FileLock, read_json, write_json};

/// The networks of one state root.
pub struct Networks {
    pub(super) dir: PathBuf,
    pub(super) root: PathBuf,
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
            return Err(NetworkConflict::NameExists {
                name: o.name.clone(),
            }
            .into());
        }
        let _lock = self.lock()?;
        let existing = self.list()?;
        if existing.iter().any(|n| n.record.name == o.name) {
            return Err(NetworkConflict::NameExists {
                name: o.name.clone(),
            }
            .into());
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
                return Err(NetworkConflict::BridgeInUse { bridge: b.clone() }.into());
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
                    return Err(NetworkConflict::PoolOverlaps {
                        subnet: s.to_string(),
                        other: other.to_string(),
                        network: name.clone(),
                    }
                    .into());
                }
                if let Some((dev, r)) = host_routes
                    .iter()
                    .find(|(dev, r)| r.overlaps(&s) && !existing.iter().any(|n| &n.bridge == dev))
                {
                    return Err(NetworkConflict::RouteOverlaps {
                        subnet: s.to_string(),
                        route: r.to_string(),
                        dev: dev.clone(),
                    }
                    .into());
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
        Err(NetworkConflict::PoolsExhausted.into())
    }

    /// `network rm`: the caller has checked that no container uses it.
    pub fn remove(&self, n: &Network) -> Result<()> {
        if n.is_default {
            return Err(NetworkConflict::Predefined {
                name: n.record.name.clone(),
            }
            .into());
        }
        let _lock = self.lock()?;
        let leftovers = n.endpoints();
        if let Some(e) = leftovers.first() {
            return Err(NetworkConflict::ActiveEndpoints {
                name: n.record.name.clone(),
                id: n.record.id.clone(),
                container: e.name.clone(),
            }
            .into());
        }
        nft::remove_network(&self.table, n)?;
        let mut nl = netlink::Netlink::host().map_err(|e| net_err("opening netlink", e))?;
        nl.delete_link(&n.bridge)
            .map_err(|e| net_err(&format!("deleting bridge {}", n.bridge), e))?;
        let doomed = self.dir.join(format!(".rm-{}", n.record.id));
        fs::rename(&n.dir, &doomed).ctx("removing", &n.dir)?;
        fs::remove_dir_all(&doomed).ctx("removing", &doomed)
    }
}
