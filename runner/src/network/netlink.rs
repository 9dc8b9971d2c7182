//! A small synchronous rtnetlink client: the link, address and route operations berth's bridge
//! networking needs, on `netlink-packet-route` messages (the message layer under the `rtnetlink`
//! crate; the runner is synchronous, so the async `rtnetlink` front end is left out, and these
//! versions are the ones `libcontainer` already links).
//!
//! A socket works in the network namespace it was opened in: [`Netlink::host`] for the caller's,
//! [`Netlink::in_netns_of`] for a container's (opened by a short-lived thread that enters the
//! namespace, so the caller's own namespace never changes).

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::Socket;
use netlink_sys::protocols::NETLINK_ROUTE;

pub struct Netlink {
    socket: Socket,
    seq: u32,
}

/// What a veth pair's container end gets.
pub struct VethPeer<'a> {
    /// Its name inside the container (`eth0`).
    pub name: &'a str,
    /// The container's init: the pair's peer is created in its network namespace.
    pub netns_pid: i32,
    pub mac: Option<[u8; 6]>,
}

impl Netlink {
    /// A socket in the caller's network namespace.
    pub fn host() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// A socket in the network namespace of process `pid`.
    pub fn in_netns_of(pid: i32) -> io::Result<Netlink> {
        super::netns::run_in(pid, Netlink::host)
    }

    /// Send one request and wait for its acknowledgement (or its single answer).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Option<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut buf = vec![0u8; req.header.length as usize];
        req.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut answer = None;
        let mut rbuf = vec![0u8; 16384];
        loop {
            let n = self.socket.recv(&mut &mut rbuf[..], 0)?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[off..n])
                    .map_err(|e| io::Error::other(format!("a malformed netlink answer: {e}")))?;
                let len = msg.header.length as usize;
                if msg.header.sequence_number == self.seq {
                    match msg.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(answer),
                                Some(_) => Err(e.to_io()),
                            };
                        }
                        NetlinkPayload::Done(_) => return Ok(answer),
                        NetlinkPayload::InnerMessage(m) => {
                            answer = Some(m);
                            if flags & NLM_F_ACK == 0 {
                                return Ok(answer);
                            }
                        }
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }

    /// The index of the link called `name`, if there is one.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(Some(RouteNetlinkMessage::NewLink(l))) => Ok(Some(l.header.index)),
            Ok(_) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc_enodev()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a bridge (`ip link add NAME type bridge`); `Ok(false)` when it exists already.
    /// Its MTU is set afterwards with [`Netlink::set_mtu`]: only a change pins it.
    pub fn create_bridge(&mut self, name: &str) -> io::Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            // No STP and no forwarding delay: a new port forwards at once, as Docker's bridge.
            LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::StpState(netlink_packet_route::link::BridgeStpState::Disabled),
                InfoBridge::ForwardDelay(0),
            ])),
        ]));
        match self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Bring the link `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(|_| ())
    }

    /// Set the MTU of the link `index` (on a bridge this pins it: the kernel stops following
    /// its ports' MTU).
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(|_| ())
    }

    /// Delete the link called `name` (a veth's peer goes with it); `Ok(false)` if it was gone.
    pub fn delete_link(&mut self, name: &str) -> io::Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc_enodev()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Add `addr/prefix` to the link `index`; an address already there is fine.
    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr));
        msg.attributes.push(AddressAttribute::Address(addr));
        if let IpAddr::V4(v4) = addr {
            let host_bits = 32 - u32::from(prefix.min(32));
            let bcast = if host_bits == 0 {
                v4
            } else {
                Ipv4Addr::from(u32::from(v4) | ((1u64 << host_bits) - 1) as u32)
            };
            msg.attributes.push(AddressAttribute::Broadcast(bcast));
        }
        match self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A veth pair: `host` here, attached to the bridge `master` and up; its peer created
    /// directly in the container's namespace under its final name (one message, no rename).
    pub fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        mtu: Option<u32>,
        peer: &VethPeer,
    ) -> io::Result<()> {
        let mut p = LinkMessage::default();
        p.attributes
            .push(LinkAttribute::IfName(peer.name.to_string()));
        p.attributes
            .push(LinkAttribute::NetNsPid(peer.netns_pid as u32));
        if let Some(mtu) = mtu {
            p.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = peer.mac {
            p.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::Controller(master));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(|_| ())
    }

    /// The default route via `gateway` (`ip route add default via GW`).
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header = RouteHeader {
            address_family: AddressFamily::Inet,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Boot,
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..Default::default()
        };
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        match self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn libc_enodev() -> i32 {
    rustix::io::Errno::NODEV.raw_os_error()
}

/// Write a sysctl under /proc/sys (`net/ipv4/ip_forward`), skipping the write when it already
/// holds the value.
pub fn sysctl(key: &str, value: &str) -> io::Result<()> {
    let path = format!("/proc/sys/{key}");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value)
}

/// A netlink failure as the runner reports it.
pub(super) fn net_err(what: &str, e: std::io::Error) -> crate::error::RunnerError {
    crate::error::RunnerError::Network(format!("{what}: {e}"))
}
