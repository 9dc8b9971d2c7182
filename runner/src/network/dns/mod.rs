//! Embedded DNS server for containers on user-defined networks.
//!
//! This mirrors Docker's embedded resolver at `127.0.0.11` (moby
//! `libnetwork/resolver.go`): container names and aliases on the container's
//! networks are answered locally, everything else is forwarded to the host's
//! upstream nameservers.
//!
//! berth has no daemon, so the container's supervisor runs this server in a
//! thread. The listening sockets are created inside the container's network
//! namespace by a short-lived thread that `setns`es there ([`bind_in_netns`]);
//! a socket keeps the namespace it was created in, so the serving threads
//! ([`serve`]) stay in the host namespace and the sockets used to reach the
//! upstream servers are ordinary host sockets.
//!
//! Privileges: joining the namespace needs `CAP_SYS_ADMIN` over it (in the
//! user namespace that owns it), and binding port 53 there needs
//! `CAP_NET_BIND_SERVICE` there (or a low `net.ipv4.ip_unprivileged_port_start`).
//!
//! The answer logic is a pure function ([`answer`]) of the query bytes and the
//! [`Resolver`]; everything around it is plain blocking std networking with
//! socket timeouts, so a `stop` flag is noticed within [`POLL`].
//!
//! [`answer`] holds the answer logic, [`upstream`] the forwarding to the host's nameservers and
//! [`server`] the sockets and threads.

pub mod answer;
pub mod server;
pub mod upstream;

#[cfg(test)]
mod tests;

pub use answer::{Action, DNS_ADDR, DNS_PORT, Resolver, answer};
pub use server::{POLL, Sockets, bind_in_netns, serve};
pub use upstream::upstreams_from_resolv_conf;
