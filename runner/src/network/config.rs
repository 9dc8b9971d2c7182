//! The default network's settings, read as Docker's daemon reads `daemon.json`: from the file named
//! by `$BERTH_DAEMON_CONFIG`, else `<root>/daemon.json`, else (for the default root only)
//! `/etc/berth/daemon.json`. Keys: `bridge` (the default bridge's device name), `bip` (its
//! gateway address with prefix), `fixed-cidr` (the part of the subnet containers get addresses
//! from), `mtu`, `default-gateway`, `dns`, `dns-search`, `dns-opts`, `ip` (the default host address
//! for published ports), `default-address-pools` (where `network create` picks subnets).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ipam::{Subnet, parse_cidr_addr};
use crate::error::{Result, RunnerError};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    bridge: Option<String>,
    bip: Option<String>,
    fixed_cidr: Option<String>,
    mtu: Option<u32>,
    default_gateway: Option<String>,
    #[serde(default)]
    dns: Vec<String>,
    #[serde(default)]
    dns_search: Vec<String>,
    #[serde(default)]
    dns_opts: Vec<String>,
    ip: Option<String>,
    #[serde(default)]
    default_address_pools: Vec<Pool>,
    /// Anything else Docker's daemon.json may hold is ignored.
    #[serde(flatten)]
    _rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct Pool {
    base: String,
    size: u8,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where the settings came from, for error messages.
    pub source: Option<PathBuf>,
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub subnet: Subnet,
    pub fixed_cidr: Option<Subnet>,
    pub mtu: Option<u32>,
    pub default_gateway: Option<Ipv4Addr>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opts: Vec<String>,
    pub default_bind_ip: Ipv4Addr,
    /// (base, size) pools for user-defined networks.
    pub pools: Vec<(Subnet, u8)>,
}

pub const DEFAULT_BRIDGE: &str = "berth0";

impl DaemonConfig {
    pub fn load(root: &Path) -> Result<DaemonConfig> {
        // Which file is the store's rule (remote reads its registry keys from the same one).
        let path = berth_store::daemon_json::path(root);
        let file: File = match &path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| RunnerError::io("reading", p, e))?;
                serde_json::from_str(&text).map_err(|e| {
                    RunnerError::invalid("daemon configuration", format!("{}: {e}", p.display()))
                })?
            }
            None => File::default(),
        };
        Self::from_file(file, path)
    }

    fn from_file(f: File, source: Option<PathBuf>) -> Result<DaemonConfig> {
        let at = |what: &str, msg: String| {
            RunnerError::invalid(
                "daemon configuration",
                format!(
                    "{}{what}: {msg}",
                    source
                        .as_ref()
                        .map(|p| format!("{}: ", p.display()))
                        .unwrap_or_default()
                ),
            )
        };
        let (gateway, subnet) = match &f.bip {
            Some(b) => parse_cidr_addr(b).map_err(|m| at("bip", m))?,
            None => (
                Ipv4Addr::new(10, 88, 0, 1),
                "10.88.0.0/16".parse().expect("literal"),
            ),
        };
        if !subnet.contains(gateway) || gateway == subnet.addr || gateway == subnet.broadcast() {
            return Err(at(
                "bip",
                format!("{gateway} is not a usable address of {subnet}"),
            ));
        }
        let fixed_cidr = match &f.fixed_cidr {
            Some(c) => {
                let r: Subnet = c.parse().map_err(|m| at("fixed-cidr", m))?;
                if !subnet.overlaps(&r) || r.prefix < subnet.prefix {
                    return Err(at(
                        "fixed-cidr",
                        format!("{r} is not inside the bridge's subnet {subnet}"),
                    ));
                }
                Some(r)
            }
            None => None,
        };
        let default_gateway = match &f.default_gateway {
            Some(g) => Some(
                g.parse()
                    .map_err(|_| at("default-gateway", format!("{g:?} is not an IPv4 address")))?,
            ),
            None => None,
        };
        let default_bind_ip = match &f.ip {
            Some(ip) => ip
                .parse()
                .map_err(|_| at("ip", format!("{ip:?} is not an IPv4 address")))?,
            None => Ipv4Addr::UNSPECIFIED,
        };
        let bridge = f
            .bridge
            .clone()
            .unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        super::record::validate_ifname(&bridge).map_err(|m| at("bridge", m))?;
        if let Some(mtu) = f.mtu
            && !(68..=65535).contains(&mtu)
        {
            return Err(at("mtu", format!("{mtu} is outside 68..65535")));
        }
        let mut pools = Vec::new();
        for p in &f.default_address_pools {
            let base: Subnet = p.base.parse().map_err(|m| at("default-address-pools", m))?;
            if p.size < base.prefix || p.size > 30 {
                return Err(at(
                    "default-address-pools",
                    format!("size {} does not fit in {base}", p.size),
                ));
            }
            pools.push((base, p.size));
        }
        if pools.is_empty() {
            pools.push(("10.89.0.0/16".parse().expect("literal"), 24));
            pools.push(("10.90.0.0/15".parse().expect("literal"), 24));
        }
        for d in &f.dns {
            d.parse::<std::net::IpAddr>()
                .map_err(|_| at("dns", format!("{d:?} is not an IP address")))?;
        }
        Ok(DaemonConfig {
            source,
            bridge,
            gateway,
            subnet,
            fixed_cidr,
            mtu: f.mtu,
            default_gateway,
            dns: f.dns,
            dns_search: f.dns_search,
            dns_opts: f.dns_opts,
            default_bind_ip,
            pools,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(j: &str) -> Result<DaemonConfig> {
        DaemonConfig::from_file(serde_json::from_str(j).unwrap(), None)
    }

    #[test]
    fn defaults_and_overrides() {
        let d = parse("{}").unwrap();
        assert_eq!(d.bridge, "berth0");
        assert_eq!(d.subnet.to_string(), "10.88.0.0/16");
        assert_eq!(d.gateway, Ipv4Addr::new(10, 88, 0, 1));
        let d = parse(r#"{"bridge":"bt7","bip":"10.77.3.1/24","fixed-cidr":"10.77.3.128/25","mtu":1400,"dns":["10.0.0.53"],"log-driver":"json-file"}"#).unwrap();
        assert_eq!(d.bridge, "bt7");
        assert_eq!(d.subnet.to_string(), "10.77.3.0/24");
        assert_eq!(d.fixed_cidr.unwrap().to_string(), "10.77.3.128/25");
        assert_eq!(d.mtu, Some(1400));
        assert!(parse(r#"{"bip":"10.77.3.0/24"}"#).is_err());
        assert!(parse(r#"{"bip":"10.77.3.1/24","fixed-cidr":"10.78.0.0/24"}"#).is_err());
        assert!(parse(r#"{"bridge":"this-name-is-far-too-long"}"#).is_err());
        assert!(parse(r#"{"dns":["nope"]}"#).is_err());
    }
}
