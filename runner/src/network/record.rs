//! The records of bridge networking: a network as `network inspect` shows it, with its parsed
//! settings, and a container's endpoint on it; Docker's naming rules for networks, aliases and
//! interfaces.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ipam::Subnet;
use crate::error::{Result, RunnerError};
use crate::persist::{FileLock, read_json};

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
    pub(super) dir: PathBuf,
}

impl Network {
    pub fn name(&self) -> &str {
        &self.record.name
    }
    pub fn id(&self) -> &str {
        &self.record.id
    }
    pub(super) fn endpoints_dir(&self) -> PathBuf {
        self.dir.join("endpoints")
    }
    pub(super) fn endpoint_path(&self, container_id: &str) -> PathBuf {
        self.endpoints_dir().join(format!("{container_id}.json"))
    }
    pub(super) fn lock(&self) -> Result<FileLock> {
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

/// The host end of a container's veth pair on a network: stable for the pair (container,
/// network), so cleanup finds it without a record.
pub(super) fn veth_name(container_id: &str, network_id: &str) -> String {
    let h = hex::encode(Sha256::digest(
        format!("{container_id}/{network_id}").as_bytes(),
    ));
    format!("veth{}", &h[..11])
}

pub(super) fn write_endpoint(path: &Path, ep: &Endpoint) -> Result<()> {
    let bytes = serde_json::to_vec(ep)
        .map_err(|e| RunnerError::invalid(path.display().to_string(), e.to_string()))?;
    crate::persist::write_regenerated(path, &bytes)
}

pub(super) fn random_id() -> String {
    let mut b = [0u8; 32];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    hex::encode(b)
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
