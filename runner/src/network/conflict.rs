//! What a network operation refuses because of what already exists, in Docker's words: a caller
//! that must tell the cases apart matches the variant, never the message.

use std::net::Ipv4Addr;

/// A network request that conflicts with the networks, addresses or routes already there.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkConflict {
    #[error("network with name {name} already exists")]
    NameExists { name: String },
    #[error("bridge name {bridge} is used by another network")]
    BridgeInUse { bridge: String },
    #[error(
        "invalid pool request: Pool overlaps with other one on this address space: {subnet} overlaps {other} of network {network}"
    )]
    PoolOverlaps {
        subnet: String,
        other: String,
        network: String,
    },
    #[error("invalid pool request: {subnet} overlaps the host's route {route} on {dev}")]
    RouteOverlaps {
        subnet: String,
        route: String,
        dev: String,
    },
    #[error(
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network: give one with --subnet"
    )]
    PoolsExhausted,
    #[error("{name} is a pre-defined network and cannot be removed")]
    Predefined { name: String },
    #[error(
        "error while removing network: network {name} id {id} has active endpoints (container {container})"
    )]
    ActiveEndpoints {
        name: String,
        id: String,
        container: String,
    },
    #[error("endpoint with name {name} already exists in network {network}")]
    EndpointExists { name: String, network: String },
    #[error("Cannot link to a non running container: /{target} AS /{container}/{alias}")]
    LinkNotRunning {
        target: String,
        container: String,
        alias: String,
    },
    #[error("Cannot link to /{target}: it has no address on a bridge network")]
    LinkNoAddress { target: String },
    #[error(
        "container sharing network namespace with another container or host cannot be connected to any other network (container {container} uses --network {mode})"
    )]
    SharedNamespace { container: String, mode: String },
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error("Address already in use: {ip} on network {network}")]
    AddressInUse { ip: Ipv4Addr, network: String },
    #[error("no available IPv4 addresses on network {network} ({range})")]
    AddressesExhausted { network: String, range: String },
}
