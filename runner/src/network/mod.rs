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
//!
//! [`record`] holds the records (networks and endpoints, Docker-shaped), [`store`] the networks
//! of a state root, [`endpoints`] the IPAM store (an endpoint file is an address allocation) and
//! [`dataplane`] the kernel side (bridges, veth pairs, addresses, routes).

pub mod attach;
pub mod config;
pub mod conflict;
pub mod dataplane;
pub mod dns;
pub mod endpoints;
pub mod ipam;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod ports;
pub mod record;
pub mod store;

pub use config::DaemonConfig;
pub use record::{
    AttachRequest, ConfigFrom, CreateNetwork, DEFAULT_NETWORK, Endpoint, Ipam, IpamConfig, Network,
    NetworkRecord, OPT_BRIDGE_NAME, OPT_MTU, is_predefined, pseudo_id, validate_alias,
    validate_ifname, validate_network_name,
};
pub use store::Networks;
