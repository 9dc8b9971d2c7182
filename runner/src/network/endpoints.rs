//! The IPAM store: a container's endpoint file on a network is its address allocation (and the
//! name record the embedded DNS server answers from); allocate, release, list and rename them
//! under the network's lock.

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;

use super::conflict::NetworkConflict;
use super::record::{AttachRequest, Endpoint, Network, random_id, veth_name, write_endpoint};
use super::store::Networks;
use super::{ipam, netlink};
use crate::error::{IoContext, Result, RunnerError};

impl Networks {
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
            return Err(NetworkConflict::EndpointExists {
                name: e.name.clone(),
                network: n.record.name.clone(),
            }
            .into());
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
                    return Err(NetworkConflict::AddressInUse {
                        ip,
                        network: n.record.name.clone(),
                    }
                    .into());
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
                        RunnerError::from(NetworkConflict::AddressesExhausted {
                            network: n.record.name.clone(),
                            range: n.range.to_string(),
                        })
                    },
                )?;
                crate::persist::write_regenerated(&last_path, ip.to_string().as_bytes())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::record::CreateNetwork;

    /// The IPAM store is files under the state root: networks are used without a Runner and
    /// without touching the kernel (no bridge is made until a container is plugged).
    #[test]
    fn endpoints_allocate_rename_and_release_without_a_runner() {
        let tmp = tempfile::tempdir().unwrap();
        let nets = Networks::open(tmp.path()).unwrap();
        let n = nets
            .create(&CreateNetwork {
                name: "unit-net".into(),
                subnet: Some("10.251.7.0/29".into()),
                ..Default::default()
            })
            .unwrap();
        let a = nets
            .allocate(&n, "a1", "web", "eth0", &AttachRequest::default())
            .unwrap();
        assert_eq!(
            a.ip,
            Ipv4Addr::new(10, 251, 7, 2),
            "the first host after the gateway"
        );
        let fixed = AttachRequest {
            ip: Some(Ipv4Addr::new(10, 251, 7, 5)),
            ..Default::default()
        };
        let b = nets.allocate(&n, "b2", "db", "eth0", &fixed).unwrap();
        assert_eq!(b.ip, Ipv4Addr::new(10, 251, 7, 5));
        let taken = nets
            .allocate(&n, "c3", "other", "eth0", &fixed)
            .unwrap_err();
        assert!(
            matches!(
                &taken,
                RunnerError::Net(NetworkConflict::AddressInUse { ip, .. })
                    if *ip == Ipv4Addr::new(10, 251, 7, 5)
            ),
            "{taken}"
        );
        assert_eq!(taken.kind(), crate::error::ErrorKind::Conflict);
        assert_eq!(
            taken.to_string(),
            "Address already in use: 10.251.7.5 on network unit-net"
        );

        nets.rename("a1", "frontend").unwrap();
        let attached = nets.attached("a1").unwrap();
        assert_eq!(attached.len(), 1);
        assert_eq!(attached[0].1.name, "frontend");

        nets.release_all("a1").unwrap();
        assert!(nets.attached("a1").unwrap().is_empty());
        let left: Vec<String> = n.endpoints().into_iter().map(|e| e.name).collect();
        assert_eq!(left, ["db"]);
    }
}
