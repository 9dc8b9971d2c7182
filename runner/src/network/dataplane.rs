//! The kernel side of a network: its bridge with address, MTU and NAT rules, set up when its
//! first container starts, and each container's veth pair, address and default route.

use std::fs;
use std::net::IpAddr;

use super::netlink::net_err;
use super::record::{Endpoint, Network};
use super::store::Networks;
use super::{ipam, netlink, nft};
use crate::error::{Result, RunnerError};

impl Networks {
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
