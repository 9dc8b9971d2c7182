//! NAT, isolation and published ports in one nftables table per state root (`ip berth` for the
//! default root, `ip berth_<hash>` for others), applied as `nft -f -` batches (atomic: a batch
//! applies whole or not at all). Nothing outside our table is read or changed.
//!
//! ```text
//! table ip berth {
//!   set bridges    { type ifname }                     all our bridges
//!   map ports      { inet_proto . port : addr . port } published on every host address
//!   map portsip    { addr . inet_proto . port : addr . port }  published on one host address
//!   map nat_from   { ifname : verdict }                bridge -> its masquerade chain
//!   map nat_to     { ifname : verdict }                bridge -> its hairpin chain
//!   map fwd_from   { ifname : verdict }                bridge -> its isolation chain
//!   map fwd_to     { ifname : verdict }                bridge -> its inbound chain (internal)
//!   chain guard (filter, prerouting, raw): nothing from a bridge may reach 127.0.0.0/8
//!   chain prerouting/output (nat): local destination -> DNAT through the port maps
//!   chain postrouting (nat): host-originated (loopback) traffic into a bridge is masqueraded;
//!                            so is a container reaching a published port that leads back into
//!                            a bridge (hairpin), and traffic leaving a bridge for elsewhere
//!   chain forward (filter): per-bridge isolation
//! }
//! ```
//! Bridges carry `route_localnet=1` so that published ports answer on the host's 127.0.0.1 (the
//! DNATed packet leaves through the bridge with a loopback source). That setting also makes the
//! kernel accept packets *arriving* on the bridge for 127.0.0.0/8, so a container with CAP_NET_RAW
//! could reach the host's loopback-only services (CVE-2020-8558). The guard chain drops them at
//! `raw` priority, before conntrack and NAT, so replies to loopback publishing (addressed to the
//! bridge until conntrack reverses the masquerade) still pass; kube-proxy's fix is the same rule.
//!
//! Bridge names are interpolated into scripts inside double quotes; [`super::record::validate_ifname`]
//! keeps them to characters that cannot end the quoted string, and every entry point checks.
//!
//! Per-network chains are named after the network ID; removing a network deletes its map
//! elements and chains. Published ports are map elements, added and deleted per container.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::record::Network;
use crate::error::{Result, RunnerError};
use crate::state::Published;

/// The table of the state root `root`.
pub fn table_name(root: &Path) -> String {
    if root == Path::new(berth_store::root::DEFAULT_ROOT) {
        return "berth".into();
    }
    let h = hex::encode(Sha256::digest(root.as_os_str().as_encoded_bytes()));
    format!("berth_{}", &h[..10])
}

/// Run an nft batch.
pub fn apply(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            RunnerError::Network(if e.kind() == std::io::ErrorKind::NotFound {
                "the nft command is missing: install nftables (apt-get install nftables)".into()
            } else {
                format!("running nft: {e}")
            })
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| RunnerError::Network(format!("running nft: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| l.contains("Error"))
            .unwrap_or(err.trim());
        return Err(RunnerError::Network(format!("nftables: {first}")));
    }
    Ok(())
}

/// The table's skeleton: sets, maps and base chains (idempotent: base chains are flushed and
/// refilled, maps and sets keep their elements).
fn skeleton(t: &str) -> String {
    format!(
        "add table ip {t}
add set ip {t} bridges {{ type ifname; }}
add map ip {t} ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add map ip {t} portsip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
add map ip {t} nat_from {{ type ifname : verdict; }}
add map ip {t} nat_to {{ type ifname : verdict; }}
add map ip {t} fwd_from {{ type ifname : verdict; }}
add map ip {t} fwd_to {{ type ifname : verdict; }}
add chain ip {t} guard {{ type filter hook prerouting priority raw; policy accept; }}
flush chain ip {t} guard
add rule ip {t} guard iifname @bridges ip daddr 127.0.0.0/8 drop
add chain ip {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
flush chain ip {t} prerouting
add rule ip {t} prerouting fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @portsip
add rule ip {t} prerouting fib daddr type local dnat ip to meta l4proto . th dport map @ports
add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}
flush chain ip {t} output
add rule ip {t} output fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @portsip
add rule ip {t} output fib daddr type local dnat ip to meta l4proto . th dport map @ports
add chain ip {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
flush chain ip {t} postrouting
add rule ip {t} postrouting oifname @bridges fib saddr type local masquerade
add rule ip {t} postrouting oifname vmap @nat_to
add rule ip {t} postrouting iifname vmap @nat_from
add chain ip {t} forward {{ type filter hook forward priority filter; policy accept; }}
flush chain ip {t} forward
add rule ip {t} forward ct state established,related accept
add rule ip {t} forward iifname vmap @fwd_from
add rule ip {t} forward oifname vmap @fwd_to
"
    )
}

fn short(n: &Network) -> &str {
    &n.record.id[..12]
}

/// The network's bridge name, checked again here because it goes into nft scripts: a name from
/// a `network.json` written before names were restricted must not inject statements.
pub(super) fn bridge_of(n: &Network) -> Result<&str> {
    super::record::validate_ifname(&n.bridge).map_err(|m| {
        RunnerError::invalid(
            format!("network {}", n.record.name),
            format!("{m}; remove the network and create it again with a valid bridge name"),
        )
    })?;
    Ok(&n.bridge)
}

/// Add a network's rules (and the skeleton if this is the table's first network).
pub fn add_network(t: &str, n: &Network) -> Result<()> {
    let id = short(n);
    let br = bridge_of(n)?;
    let subnet = n.subnet;
    let mut s = skeleton(t);
    s.push_str(&format!(
        "add element ip {t} bridges {{ \"{br}\" }}
add chain ip {t} hp-{id}
flush chain ip {t} hp-{id}
add rule ip {t} hp-{id} ct status dnat ip saddr {subnet} masquerade
add element ip {t} nat_to {{ \"{br}\" : jump hp-{id} }}
add chain ip {t} from-{id}
flush chain ip {t} from-{id}
add element ip {t} fwd_from {{ \"{br}\" : jump from-{id} }}
"
    ));
    if n.record.internal {
        // No way out, no way in: only traffic within the bridge.
        s.push_str(&format!(
            "add rule ip {t} from-{id} oifname != \"{br}\" drop
add chain ip {t} to-{id}
flush chain ip {t} to-{id}
add rule ip {t} to-{id} iifname != \"{br}\" drop
add element ip {t} fwd_to {{ \"{br}\" : jump to-{id} }}
"
        ));
    } else {
        // Isolation: no forwarding into another of our bridges.
        s.push_str(&format!(
            "add rule ip {t} from-{id} oifname != \"{br}\" oifname @bridges drop
add chain ip {t} masq-{id}
flush chain ip {t} masq-{id}
add rule ip {t} masq-{id} oifname != \"{br}\" masquerade
add element ip {t} nat_from {{ \"{br}\" : jump masq-{id} }}
"
        ));
    }
    apply(&s)
}

/// Remove a network's rules; what is already gone is fine.
pub fn remove_network(t: &str, n: &Network) -> Result<()> {
    if !table_exists(t) {
        return Ok(());
    }
    let id = short(n);
    // A name that could not have been added safely is not interpolated to delete it either.
    let Ok(br) = bridge_of(n) else {
        return Ok(());
    };
    // Each statement on its own: one that fails (already gone) must not stop the others.
    let steps = [
        format!("delete element ip {t} fwd_from {{ \"{br}\" }}"),
        format!("delete element ip {t} fwd_to {{ \"{br}\" }}"),
        format!("delete element ip {t} nat_from {{ \"{br}\" }}"),
        format!("delete element ip {t} nat_to {{ \"{br}\" }}"),
        format!("flush chain ip {t} hp-{id}\ndelete chain ip {t} hp-{id}"),
        format!("delete element ip {t} bridges {{ \"{br}\" }}"),
        format!("flush chain ip {t} from-{id}\ndelete chain ip {t} from-{id}"),
        format!("flush chain ip {t} to-{id}\ndelete chain ip {t} to-{id}"),
        format!("flush chain ip {t} masq-{id}\ndelete chain ip {t} masq-{id}"),
    ];
    for s in steps {
        let _ = apply(&s);
    }
    Ok(())
}

pub fn table_exists(t: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "ip", t])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn key(p: &Published) -> String {
    if p.host_ip.is_empty() || p.host_ip == "0.0.0.0" {
        format!("{} . {}", p.proto, p.host_port)
    } else {
        format!("{} . {} . {}", p.host_ip, p.proto, p.host_port)
    }
}

fn map_of(p: &Published) -> &'static str {
    if p.host_ip.is_empty() || p.host_ip == "0.0.0.0" {
        "ports"
    } else {
        "portsip"
    }
}

/// DNAT the published ports. An element left by a container that died without cleaning up
/// (its host port is ours now: we hold the port) is replaced.
pub fn add_ports(t: &str, ports: &[Published]) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let mut s = String::new();
    for p in ports {
        s.push_str(&format!(
            "add element ip {t} {} {{ {} : {} . {} }}\n",
            map_of(p),
            key(p),
            p.container_ip,
            p.container_port
        ));
    }
    match apply(&s) {
        Ok(()) => Ok(()),
        Err(_) => {
            remove_ports(t, ports);
            apply(&s)
        }
    }
}

/// Remove published ports' DNAT entries (each separately: a missing one is fine).
pub fn remove_ports(t: &str, ports: &[Published]) {
    if ports.is_empty() {
        return;
    }
    let all: String = ports
        .iter()
        .map(|p| format!("delete element ip {t} {} {{ {} }}\n", map_of(p), key(p)))
        .collect();
    if apply(&all).is_ok() {
        return;
    }
    for p in ports {
        let _ = apply(&format!(
            "delete element ip {t} {} {{ {} }}\n",
            map_of(p),
            key(p)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert_eq!(table_name(Path::new("/var/lib/berth")), "berth");
        let t = table_name(Path::new("/tmp/x"));
        assert!(t.starts_with("berth_") && t.len() == 16);
        let p = Published {
            proto: "tcp".into(),
            host_ip: "127.0.0.1".into(),
            host_port: 8080,
            container_ip: "10.88.0.2".into(),
            container_port: 80,
        };
        assert_eq!(key(&p), "127.0.0.1 . tcp . 8080");
        assert_eq!(map_of(&p), "portsip");
    }
}
