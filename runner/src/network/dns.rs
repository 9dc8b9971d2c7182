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

use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tracing::{debug, warn};

/// The address the embedded server listens on inside the container.
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// The port the embedded server listens on inside the container.
pub const DNS_PORT: u16 = 53;

/// TTL of the records answered locally (Docker uses 600 s).
const TTL: u32 = 600;
/// How often blocked socket reads wake up to look at the stop flag.
pub const POLL: Duration = Duration::from_millis(200);
/// Total time spent trying the upstream servers for one query.
const FORWARD_BUDGET: Duration = Duration::from_secs(2);
/// Shortest time given to one upstream server while budget remains.
const MIN_ATTEMPT: Duration = Duration::from_millis(400);
/// A client TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Most UDP queries being forwarded at once (Docker's limit is 100 too).
const MAX_FORWARDS: usize = 100;
/// Most client TCP connections served at once.
const MAX_TCP_CONNS: usize = 64;
/// Consecutive hard errors on a listening socket before giving up on it.
const MAX_SOCKET_ERRORS: u32 = 50;
/// Size of a DNS header.
const HEADER_LEN: usize = 12;
/// UDP payload size without EDNS (RFC 1035).
const CLASSIC_UDP: usize = 512;
/// The EDNS UDP payload size advertised in local answers.
const EDNS_PAYLOAD: u16 = 1232;

// Raw response codes used when building replies by hand.
const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NOTIMP: u8 = 4;
const RCODE_REFUSED: u8 = 5;

/// Answers for the container's network.
pub trait Resolver: Send + Sync + 'static {
    /// Called for each query, must be cheap; returns the addresses for `name`
    /// (already lower-cased, without the trailing dot) or `None` if the name
    /// is not a container/alias on its networks.
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>>;
    /// Reverse lookup for PTR queries: the container name for an address on
    /// the network.
    fn reverse(&self, ip: IpAddr) -> Option<String>;
}

/// The listening sockets of the embedded server.
#[derive(Debug)]
pub struct Sockets {
    /// UDP socket, normally `127.0.0.11:53` inside the container.
    pub udp: UdpSocket,
    /// TCP listener, normally `127.0.0.11:53` inside the container.
    pub tcp: TcpListener,
}

impl Sockets {
    /// Bind both sockets to `addr` in the calling thread's network namespace.
    pub fn bind(addr: SocketAddr) -> io::Result<Sockets> {
        let udp = UdpSocket::bind(addr)?;
        let tcp = TcpListener::bind(addr)?;
        Ok(Sockets { udp, tcp })
    }
}

/// Open UDP and TCP sockets on `127.0.0.11:53` inside the network namespace
/// of process `pid`.
///
/// A short-lived thread joins the namespace (`setns(CLONE_NEWNET)` on
/// `/proc/PID/ns/net`), creates and binds the sockets, and exits; the sockets
/// keep that namespace. The loopback interface there must be up. The caller
/// needs `CAP_SYS_ADMIN` over the namespace (and the right to bind port 53
/// in it).
pub fn bind_in_netns(pid: i32) -> io::Result<Sockets> {
    in_netns(pid, || {
        Sockets::bind(SocketAddr::from((DNS_ADDR, DNS_PORT)))
    })
}

/// Run `f` on a short-lived thread inside the network namespace of `pid`.
/// Sockets created by `f` belong to that namespace.
fn in_netns<T: Send>(pid: i32, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))?;
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name("berth-dns-setns".into())
            .spawn_scoped(scope, move || {
                rustix::thread::move_into_link_name_space(
                    ns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                f()
            })?;
        handle
            .join()
            .map_err(|_| io::Error::other("netns thread panicked"))?
    })
}

/// The nameservers in a resolv.conf text (what the host uses), port 53.
///
/// Loopback nameservers (127.0.0.0/8, ::1, and 0.0.0.0/:: which glibc takes
/// as "this host") are skipped: they mean a local stub on the host. No public
/// fallback is ever added; the list may be empty. Zone-scoped IPv6 addresses
/// are kept only with a numeric zone (`fe80::1%2`). Duplicates are dropped.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(word) = words.next() else { continue };
        let Some(addr) = parse_nameserver(word) else {
            debug!(nameserver = word, "skipping unusable nameserver");
            continue;
        };
        let ip = addr.ip().to_canonical();
        if ip.is_loopback() || ip.is_unspecified() {
            debug!(nameserver = word, "skipping local nameserver");
            continue;
        }
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, DNS_PORT));
    }
    let (ip, zone) = word.split_once('%')?;
    let ip: Ipv6Addr = ip.parse().ok()?;
    let scope: u32 = zone.parse().ok()?;
    Some(SocketAddr::V6(SocketAddrV6::new(ip, DNS_PORT, 0, scope)))
}

/// What to do with one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes back to the client.
    Reply(Vec<u8>),
    /// Not ours: forward the query to the upstream servers.
    Forward,
    /// Not worth an answer (too short to carry an id, or not a query).
    Drop,
}

/// The answer logic: a pure function of the query bytes and the resolver.
///
/// Local answers are not size-limited here; the UDP path truncates them to
/// the client's payload size.
pub fn answer(query: &[u8], resolver: &dyn Resolver) -> Action {
    if query.len() < HEADER_LEN {
        return Action::Drop;
    }
    if query[2] & 0x80 != 0 {
        // A response: never answer it (no reflection loops).
        return Action::Drop;
    }
    let msg = match Message::from_vec(query) {
        Ok(msg) => msg,
        Err(err) => {
            debug!(%err, "malformed query");
            return Action::Reply(raw_reply(query, RCODE_FORMERR, false));
        }
    };
    if msg.metadata.op_code != OpCode::Query {
        return Action::Reply(raw_reply(query, RCODE_NOTIMP, true));
    }
    if msg.queries.len() != 1 {
        return Action::Reply(raw_reply(query, RCODE_FORMERR, false));
    }
    let question = &msg.queries[0];
    if question.query_class() != DNSClass::IN {
        return Action::Forward;
    }
    let qname = question.name();
    let name = normalize(qname);
    let records = match question.query_type() {
        qtype @ (RecordType::A | RecordType::AAAA) => {
            let Some(addrs) = resolver.lookup(&name) else {
                return Action::Forward;
            };
            let mut records: Vec<Record> = addrs
                .into_iter()
                .filter_map(|ip| match (qtype, ip) {
                    (RecordType::A, IpAddr::V4(v4)) => Some(RData::A(A(v4))),
                    (RecordType::AAAA, IpAddr::V6(v6)) => Some(RData::AAAA(AAAA(v6))),
                    _ => None,
                })
                .map(|data| Record::from_rdata(qname.clone(), TTL, data))
                .collect();
            // Round-robin between the containers behind one alias, as Docker
            // shuffles its answers.
            if records.len() > 1 {
                let by = usize::from(random_u16()) % records.len();
                records.rotate_left(by);
            }
            // A known name without addresses of this family: NOERROR, no
            // answers (NODATA), never a forward that could say NXDOMAIN.
            records
        }
        RecordType::PTR => {
            let Some(ip) = arpa_to_ip(qname) else {
                return Action::Forward;
            };
            let Some(host) = resolver.reverse(ip) else {
                return Action::Forward;
            };
            let Some(target) = host_to_name(&host) else {
                warn!(host, "reverse name is not a valid DNS name");
                return Action::Forward;
            };
            vec![Record::from_rdata(
                qname.clone(),
                TTL,
                RData::PTR(PTR(target)),
            )]
        }
        // Other types for a container name: the name exists, it just has no
        // such records (upstream would wrongly say NXDOMAIN for it).
        _ if resolver.lookup(&name).is_some() => Vec::new(),
        _ => return Action::Forward,
    };
    let mut reply = response_to(&msg);
    reply.add_answers(records);
    match reply.to_vec() {
        Ok(bytes) => Action::Reply(bytes),
        Err(err) => {
            warn!(%err, "cannot encode answer");
            Action::Reply(raw_reply(query, RCODE_SERVFAIL, true))
        }
    }
}

/// [`answer`], but a panic (in the parser or in the resolver) drops the
/// query instead of killing the serving thread.
fn safe_answer(query: &[u8], resolver: &dyn Resolver) -> Action {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(query, resolver)))
        .unwrap_or_else(|_| {
            warn!("panic while answering a DNS query; dropped");
            Action::Drop
        })
}

/// The query name, lower-cased, without the trailing dot.
fn normalize(name: &Name) -> String {
    let mut s = name.to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s.make_ascii_lowercase();
    s
}

/// The address of a full `in-addr.arpa` / `ip6.arpa` name.
fn arpa_to_ip(name: &Name) -> Option<IpAddr> {
    let net = name.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

fn host_to_name(host: &str) -> Option<Name> {
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        return None;
    }
    let mut name = Name::from_ascii(host).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// A NOERROR response skeleton for `query`: id, opcode, RD, RA, question,
/// and an OPT record when the query had one.
fn response_to(query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.checking_disabled = query.metadata.checking_disabled;
    reply.metadata.response_code = ResponseCode::NoError;
    reply.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        reply.set_edns(edns);
    }
    reply
}

/// A reply built by hand from the query's header: id, opcode and RD copied,
/// QR and RA set, `rcode`; the question copied when asked and well-formed
/// (glibc ignores error replies whose question does not match, except a
/// FORMERR without question). Needs `query.len() >= 12`.
fn raw_reply(query: &[u8], rcode: u8, with_question: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(CLASSIC_UDP);
    out.extend_from_slice(&query[..2]);
    out.push(0x80 | (query[2] & 0x79)); // QR, opcode, RD (AA/TC cleared)
    out.push(0x80 | (rcode & 0x0f)); // RA, rcode
    let question = if with_question {
        question_end(query).map(|end| &query[HEADER_LEN..end])
    } else {
        None
    };
    let qdcount: u16 = question.is_some().into();
    out.extend_from_slice(&qdcount.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    if let Some(q) = question {
        out.extend_from_slice(q);
    }
    out
}

/// The end offset of the (single) question of a message, if it has exactly
/// one well-formed question.
fn question_end(msg: &[u8]) -> Option<usize> {
    if msg.len() < HEADER_LEN || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut pos = HEADER_LEN;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                pos += 1;
                break;
            }
            0x00 => pos += 1 + usize::from(len),
            0xc0 => {
                pos += 2;
                break;
            }
            _ => return None,
        }
    }
    let end = pos + 4;
    (end <= msg.len()).then_some(end)
}

/// The UDP payload size the client can take.
fn udp_limit(query: &[u8]) -> usize {
    Message::from_vec(query)
        .ok()
        .and_then(|m| m.edns.map(|e| usize::from(e.max_payload())))
        .unwrap_or(CLASSIC_UDP)
        .max(CLASSIC_UDP)
}

/// `reply` if it fits in `limit` bytes, otherwise its header with TC set and
/// its question only, so that the client retries over TCP.
fn fit(reply: Vec<u8>, limit: usize) -> Vec<u8> {
    if reply.len() <= limit || reply.len() < HEADER_LEN {
        return reply;
    }
    let end = question_end(&reply);
    let mut out = reply[..HEADER_LEN].to_vec();
    out[2] |= 0x02; // TC
    out[4..6].copy_from_slice(&u16::from(end.is_some()).to_be_bytes());
    out[6..12].fill(0);
    if let Some(end) = end {
        out.extend_from_slice(&reply[HEADER_LEN..end]);
    }
    out
}

fn servfail(query: &[u8]) -> Vec<u8> {
    raw_reply(query, RCODE_SERVFAIL, true)
}

/// A random 16-bit number (query ids towards upstreams, answer rotation).
fn random_u16() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish() as u16
}

/// Whether `resp` answers `sent`: same id, a response, same opcode, same
/// question (case-insensitively), or an error without question.
fn matches(resp: &[u8], sent: &[u8]) -> bool {
    if resp.len() < HEADER_LEN || resp[..2] != sent[..2] || resp[2] & 0x80 == 0 {
        return false;
    }
    if resp[2] & 0x78 != sent[2] & 0x78 {
        return false;
    }
    let qdcount = u16::from_be_bytes([resp[4], resp[5]]);
    if qdcount == 0 {
        return resp[3] & 0x0f != 0;
    }
    let Some(end) = question_end(sent) else {
        return false;
    };
    resp.len() >= end && resp[HEADER_LEN..end].eq_ignore_ascii_case(&sent[HEADER_LEN..end])
}

fn rcode(resp: &[u8]) -> u8 {
    resp[3] & 0x0f
}

fn truncated(resp: &[u8]) -> bool {
    resp[2] & 0x02 != 0
}

/// Time left for the attempt on upstream `index` of `count`.
fn attempt_time(deadline: Instant, index: usize, count: usize) -> Option<Duration> {
    let left = deadline.checked_duration_since(Instant::now())?;
    if left.is_zero() {
        return None;
    }
    let share = left / u32::try_from(count - index).unwrap_or(u32::MAX);
    Some(share.max(MIN_ATTEMPT).min(left))
}

/// Forward a UDP client's query: each upstream over UDP in turn, over TCP
/// when its answer is truncated. Returns the answer with the client's id, or
/// None when every upstream failed (timeout, error, SERVFAIL, REFUSED).
/// `limit` is the client's UDP payload size: a full TCP answer larger than
/// that is replaced by the truncated UDP one.
fn forward_udp(
    query: &[u8],
    upstreams: &[SocketAddr],
    budget: Duration,
    limit: usize,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + budget;
    let mut packet = query.to_vec();
    for (i, &upstream) in upstreams.iter().enumerate() {
        let Some(time) = attempt_time(deadline, i, upstreams.len()) else {
            break;
        };
        packet[..2].copy_from_slice(&random_u16().to_be_bytes());
        let mut resp = match udp_exchange(upstream, &packet, time) {
            Ok(resp) => resp,
            Err(err) => {
                debug!(%upstream, %err, "upstream failed over UDP");
                continue;
            }
        };
        if truncated(&resp) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tcp_exchange(upstream, &packet, left.max(MIN_ATTEMPT)) {
                Ok(full) if full.len() <= limit && !is_failure(&full) => resp = full,
                Ok(_) => {}
                Err(err) => debug!(%upstream, %err, "upstream failed over TCP"),
            }
        }
        if is_failure(&resp) {
            debug!(%upstream, rcode = rcode(&resp), "upstream refused");
            continue;
        }
        resp[..2].copy_from_slice(&query[..2]);
        return Some(resp);
    }
    None
}

/// Forward a TCP client's query over TCP to each upstream in turn.
fn forward_tcp(query: &[u8], upstreams: &[SocketAddr], budget: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + budget;
    let mut packet = query.to_vec();
    for (i, &upstream) in upstreams.iter().enumerate() {
        let Some(time) = attempt_time(deadline, i, upstreams.len()) else {
            break;
        };
        packet[..2].copy_from_slice(&random_u16().to_be_bytes());
        match tcp_exchange(upstream, &packet, time) {
            Ok(resp) if is_failure(&resp) => {
                debug!(%upstream, rcode = rcode(&resp), "upstream refused");
            }
            Ok(mut resp) => {
                resp[..2].copy_from_slice(&query[..2]);
                return Some(resp);
            }
            Err(err) => debug!(%upstream, %err, "upstream failed over TCP"),
        }
    }
    None
}

/// SERVFAIL and REFUSED make Docker try the next upstream; so do we.
fn is_failure(resp: &[u8]) -> bool {
    matches!(rcode(resp), RCODE_SERVFAIL | RCODE_REFUSED)
}

fn unspecified_for(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "upstream timed out")
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// One query over UDP from a fresh socket (random source port); replies that
/// do not match the query are ignored.
fn udp_exchange(upstream: SocketAddr, packet: &[u8], time: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + time;
    let sock = UdpSocket::bind(unspecified_for(upstream))?;
    sock.connect(upstream)?;
    sock.send(packet)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(timed_out)?;
        sock.set_read_timeout(Some(left))?;
        match sock.recv(&mut buf) {
            Ok(n) if matches(&buf[..n], packet) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(_) => debug!(%upstream, "ignoring mismatched reply"),
            Err(err) if is_timeout(&err) => {}
            Err(err) => return Err(err),
        }
    }
}

/// One query over a fresh TCP connection.
fn tcp_exchange(upstream: SocketAddr, packet: &[u8], time: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + time;
    let mut stream = TcpStream::connect_timeout(&upstream, time)?;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(timed_out)
    };
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(left()?))?;
    stream.write_all(&framed(packet)?)?;
    stream.set_read_timeout(Some(left()?))?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut resp = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.set_read_timeout(Some(left()?))?;
    stream.read_exact(&mut resp)?;
    if !matches(&resp, packet) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "mismatched TCP reply",
        ));
    }
    Ok(resp)
}

/// A message with its 2-byte TCP length prefix.
fn framed(msg: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(msg.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DNS message too long"))?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    Ok(out)
}

/// State shared by the serving threads.
struct Shared {
    resolver: Arc<dyn Resolver>,
    upstreams: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    /// Set when one listening socket failed for good: the other stops too.
    failed: AtomicBool,
    forwards: AtomicUsize,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.failed.load(Ordering::Relaxed)
    }
}

/// Serve until `stop` is set (or the sockets fail): returns a handle to
/// join. The handle's thread serves UDP itself and runs TCP on another
/// thread; both, and the threads they start, have ended when it returns.
///
/// # Panics
/// If the OS cannot start the serving thread (like `std::thread::spawn`).
pub fn serve(
    sockets: Sockets,
    resolver: Arc<dyn Resolver>,
    upstreams: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let shared = Arc::new(Shared {
        resolver,
        upstreams,
        stop,
        failed: AtomicBool::new(false),
        forwards: AtomicUsize::new(0),
    });
    thread::Builder::new()
        .name("berth-dns".into())
        .spawn(move || {
            let Sockets { udp, tcp } = sockets;
            let tcp_shared = Arc::clone(&shared);
            let tcp_thread = thread::Builder::new()
                .name("berth-dns-tcp".into())
                .spawn(move || tcp_loop(tcp, &tcp_shared));
            if let Err(err) = &tcp_thread {
                warn!(%err, "cannot start the DNS TCP thread; serving UDP only");
            }
            udp_loop(udp, &shared);
            if let Ok(handle) = tcp_thread {
                let _ = handle.join();
            }
        })
        .expect("cannot start the DNS server thread")
}

/// Note a hard socket error; true when the socket should be given up.
fn socket_failed(errors: &mut u32, err: &io::Error, what: &str) -> bool {
    *errors += 1;
    if *errors >= MAX_SOCKET_ERRORS {
        warn!(%err, "DNS {what} socket keeps failing; stopping");
        return true;
    }
    debug!(%err, "DNS {what} socket error");
    thread::sleep(Duration::from_millis(10));
    false
}

fn udp_loop(sock: UdpSocket, shared: &Arc<Shared>) {
    if let Err(err) = sock.set_read_timeout(Some(POLL)) {
        warn!(%err, "cannot set the DNS UDP socket timeout");
        shared.failed.store(true, Ordering::Relaxed);
        return;
    }
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut buf = vec![0u8; 65535];
    let mut errors = 0;
    while !shared.stopping() {
        workers.retain(|h| !h.is_finished());
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(got) => {
                errors = 0;
                got
            }
            Err(err) if is_timeout(&err) => continue,
            Err(err) => {
                if socket_failed(&mut errors, &err, "UDP") {
                    shared.failed.store(true, Ordering::Relaxed);
                    break;
                }
                continue;
            }
        };
        let query = &buf[..n];
        let reply = match safe_answer(query, &*shared.resolver) {
            Action::Drop => continue,
            Action::Reply(reply) => fit(reply, udp_limit(query)),
            Action::Forward => match spawn_forward(&sock, query, peer, shared) {
                Ok(handle) => {
                    workers.push(handle);
                    continue;
                }
                Err(()) => servfail(query),
            },
        };
        if let Err(err) = sock.send_to(&reply, peer) {
            debug!(%peer, %err, "cannot send DNS reply");
        }
    }
    for handle in workers {
        let _ = handle.join();
    }
}

/// Forward a UDP query on its own thread, which sends the reply; Err when
/// the query should be answered SERVFAIL right away.
fn spawn_forward(
    sock: &UdpSocket,
    query: &[u8],
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<JoinHandle<()>, ()> {
    if shared.upstreams.is_empty() {
        return Err(());
    }
    if shared.forwards.fetch_add(1, Ordering::AcqRel) >= MAX_FORWARDS {
        shared.forwards.fetch_sub(1, Ordering::AcqRel);
        debug!("too many DNS queries being forwarded");
        return Err(());
    }
    let release = |shared: &Shared| {
        shared.forwards.fetch_sub(1, Ordering::AcqRel);
    };
    let Ok(sock) = sock.try_clone() else {
        release(shared);
        return Err(());
    };
    let query = query.to_vec();
    let worker = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("berth-dns-fwd".into())
        .spawn(move || {
            let limit = udp_limit(&query);
            let reply = forward_udp(&query, &worker.upstreams, FORWARD_BUDGET, limit)
                .map(|r| fit(r, limit))
                .unwrap_or_else(|| servfail(&query));
            if let Err(err) = sock.send_to(&reply, peer) {
                debug!(%peer, %err, "cannot send DNS reply");
            }
            release(&worker);
        });
    spawned.map_err(|err| {
        debug!(%err, "cannot start a DNS forwarding thread");
        release(shared);
    })
}

fn tcp_loop(listener: TcpListener, shared: &Arc<Shared>) {
    // accept(2) honours SO_RCVTIMEO on Linux: wake up to look at the flag.
    if let Err(err) = rustix::net::sockopt::set_socket_timeout(
        &listener,
        rustix::net::sockopt::Timeout::Recv,
        Some(POLL),
    ) {
        warn!(%err, "cannot set the DNS TCP socket timeout");
        shared.failed.store(true, Ordering::Relaxed);
        return;
    }
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    let mut errors = 0;
    while !shared.stopping() {
        let (stream, peer) = match listener.accept() {
            Ok(got) => {
                errors = 0;
                got
            }
            Err(err) if is_timeout(&err) || err.kind() == io::ErrorKind::ConnectionAborted => {
                continue;
            }
            Err(err) => {
                if socket_failed(&mut errors, &err, "TCP") {
                    shared.failed.store(true, Ordering::Relaxed);
                    break;
                }
                continue;
            }
        };
        conns.retain(|h| !h.is_finished());
        if conns.len() >= MAX_TCP_CONNS {
            debug!(%peer, "too many DNS TCP connections");
            continue;
        }
        let worker = Arc::clone(shared);
        match thread::Builder::new()
            .name("berth-dns-conn".into())
            .spawn(move || tcp_conn(stream, &worker))
        {
            Ok(handle) => conns.push(handle),
            Err(err) => debug!(%err, "cannot start a DNS TCP thread"),
        }
    }
    for handle in conns {
        let _ = handle.join();
    }
}

/// Serve one client TCP connection: length-prefixed queries, one after the
/// other, until EOF, an idle timeout, an error or stop.
fn tcp_conn(mut stream: TcpStream, shared: &Shared) {
    if stream.set_read_timeout(Some(POLL)).is_err()
        || stream.set_write_timeout(Some(FORWARD_BUDGET)).is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    loop {
        let mut len = [0u8; 2];
        if !read_full(&mut stream, &mut len, shared) {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if !read_full(&mut stream, &mut query, shared) {
            return;
        }
        let reply = match safe_answer(&query, &*shared.resolver) {
            Action::Drop => return,
            Action::Reply(reply) => reply,
            Action::Forward => forward_tcp(&query, &shared.upstreams, FORWARD_BUDGET)
                .unwrap_or_else(|| servfail(&query)),
        };
        let reply = fit(reply, usize::from(u16::MAX));
        let Ok(frame) = framed(&reply) else { return };
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}

/// Fill `buf` from the stream; false on EOF, error, stop or idle timeout.
fn read_full(stream: &mut TcpStream, buf: &mut [u8], shared: &Shared) -> bool {
    let deadline = Instant::now() + TCP_IDLE;
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return false,
            Ok(n) => filled += n,
            Err(err) if is_timeout(&err) => {
                if shared.stopping() || Instant::now() >= deadline {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, Query};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::process::{Child, Command, Stdio};

    // ---- helpers -------------------------------------------------------

    #[derive(Default)]
    struct FakeResolver {
        names: HashMap<String, Vec<IpAddr>>,
    }

    impl FakeResolver {
        fn new() -> Self {
            let mut names = HashMap::new();
            names.insert(
                "web".to_string(),
                vec!["10.89.0.2".parse().unwrap(), "fd00:89::2".parse().unwrap()],
            );
            names.insert("db".to_string(), vec!["10.89.0.3".parse().unwrap()]);
            names.insert(
                "api".to_string(),
                vec!["10.89.0.4".parse().unwrap(), "10.89.0.5".parse().unwrap()],
            );
            let many = (1..=100)
                .map(|i| IpAddr::V4(Ipv4Addr::new(10, 90, 0, i)))
                .collect();
            names.insert("many".to_string(), many);
            FakeResolver { names }
        }
    }

    impl Resolver for FakeResolver {
        fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
            assert_eq!(name, name.to_ascii_lowercase(), "name not lower-cased");
            assert!(!name.ends_with('.'), "trailing dot");
            self.names.get(name).cloned()
        }
        fn reverse(&self, ip: IpAddr) -> Option<String> {
            let mut hits: Vec<&String> = self
                .names
                .iter()
                .filter(|(_, ips)| ips.contains(&ip))
                .map(|(n, _)| n)
                .collect();
            hits.sort();
            hits.first().map(|s| s.to_string())
        }
    }

    fn query_msg(name: &str, qtype: RecordType) -> Message {
        let mut msg = Message::query();
        msg.metadata.id = 0x1234;
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        msg
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        query_msg(name, qtype).to_vec().unwrap()
    }

    fn reply(action: Action) -> Message {
        match action {
            Action::Reply(bytes) => Message::from_vec(&bytes).expect("reply parses"),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn ips(msg: &Message) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = msg
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    fn ptr_target(msg: &Message) -> Option<String> {
        msg.answers.iter().find_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
    }

    /// What the fake upstream does with a name.
    fn upstream_answer(q: &Message, tcp: bool, tag: Ipv4Addr) -> Option<Message> {
        let question = q.queries.first()?;
        let name = normalize(question.name());
        let mut r = Message::response(q.metadata.id, q.metadata.op_code);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.recursion_available = true;
        r.add_query(question.clone());
        match name.as_str() {
            "silent.example" => return None,
            "nx.example" => r.metadata.response_code = ResponseCode::NXDomain,
            // Only the first fake upstream fails: the second one answers.
            "fail.example" if tag == TAG1 => r.metadata.response_code = ResponseCode::ServFail,
            "refused.example" => r.metadata.response_code = ResponseCode::Refused,
            "big.example" if !tcp => r.metadata.truncation = true,
            "big.example" => {
                for i in 0..40 {
                    r.add_answer(Record::from_rdata(
                        question.name().clone(),
                        60,
                        RData::A(A(Ipv4Addr::new(198, 51, 100, i))),
                    ));
                }
            }
            _ => {
                r.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(tag)),
                ));
            }
        }
        Some(r)
    }

    /// A tiny DNS server on 127.0.0.1:<random> (UDP and TCP, same port) in
    /// the host namespace. Every answer carries `tag` as address, to tell
    /// upstreams apart. Stops when dropped.
    struct FakeUpstream {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        threads: Vec<JoinHandle<()>>,
    }

    impl FakeUpstream {
        fn start(tag: Ipv4Addr) -> FakeUpstream {
            let stop = Arc::new(AtomicBool::new(false));
            // Same port for UDP and TCP: retry until both are free.
            let (udp, tcp) = loop {
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                    break (udp, tcp);
                }
            };
            let addr = udp.local_addr().unwrap();
            udp.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            tcp.set_nonblocking(true).unwrap();
            let s1 = Arc::clone(&stop);
            let t1 = thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !s1.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(q) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    if let Some(r) = upstream_answer(&q, false, tag) {
                        let _ = udp.send_to(&r.to_vec().unwrap(), peer);
                    }
                }
            });
            let s2 = Arc::clone(&stop);
            let t2 = thread::spawn(move || {
                while !s2.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = tcp.accept() else {
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(2)))
                        .unwrap();
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut q).is_err() {
                        continue;
                    }
                    let Ok(q) = Message::from_vec(&q) else {
                        continue;
                    };
                    if let Some(r) = upstream_answer(&q, true, tag) {
                        let _ = stream.write_all(&framed(&r.to_vec().unwrap()).unwrap());
                    }
                }
            });
            FakeUpstream {
                addr,
                stop,
                threads: vec![t1, t2],
            }
        }
    }

    impl Drop for FakeUpstream {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    /// A loopback address where nothing listens (UDP gets ECONNREFUSED).
    fn dead_upstream() -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.local_addr().unwrap()
    }

    fn udp_ask(sock: &UdpSocket, q: &[u8]) -> Message {
        sock.send(q).unwrap();
        let mut buf = [0u8; 65535];
        let n = sock.recv(&mut buf).expect("UDP reply");
        Message::from_vec(&buf[..n]).unwrap()
    }

    fn tcp_ask(stream: &mut TcpStream, q: &[u8]) -> Message {
        stream.write_all(&framed(q).unwrap()).unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).unwrap();
        Message::from_vec(&buf).unwrap()
    }

    // ---- answer(): local names ------------------------------------------

    #[test]
    fn a_query_for_known_name() {
        let r = reply(answer(&query("web.", RecordType::A), &FakeResolver::new()));
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.recursion_available && r.metadata.recursion_desired);
        assert_eq!(r.queries.len(), 1);
        assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
        assert!(r.answers.iter().all(|a| a.ttl == TTL));
    }

    #[test]
    fn a_query_is_case_insensitive_and_keeps_question_case() {
        let r = reply(answer(&query("WeB.", RecordType::A), &FakeResolver::new()));
        assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.queries[0].name().to_ascii(), "WeB.");
        assert_eq!(r.answers[0].name.to_ascii(), "WeB.");
    }

    #[test]
    fn a_query_returns_every_address_of_an_alias() {
        let r = reply(answer(&query("api.", RecordType::A), &FakeResolver::new()));
        assert_eq!(
            ips(&r),
            vec![
                "10.89.0.4".parse::<IpAddr>().unwrap(),
                "10.89.0.5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn aaaa_query_for_known_name_with_ipv6() {
        let r = reply(answer(
            &query("web.", RecordType::AAAA),
            &FakeResolver::new(),
        ));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(ips(&r), vec!["fd00:89::2".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.answers[0].ttl, TTL);
    }

    #[test]
    fn aaaa_query_for_known_name_without_ipv6_is_nodata() {
        let r = reply(answer(
            &query("db.", RecordType::AAAA),
            &FakeResolver::new(),
        ));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
    }

    #[test]
    fn other_types_for_known_name_are_nodata() {
        let r = reply(answer(&query("db.", RecordType::MX), &FakeResolver::new()));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
    }

    #[test]
    fn ptr_query_for_known_address() {
        let name = Name::from(IpAddr::V4(Ipv4Addr::new(10, 89, 0, 3)));
        assert_eq!(name.to_ascii(), "3.0.89.10.in-addr.arpa.");
        let r = reply(answer(
            &query(&name.to_ascii(), RecordType::PTR),
            &FakeResolver::new(),
        ));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(ptr_target(&r).as_deref(), Some("db."));
        assert_eq!(r.answers[0].ttl, TTL);
    }

    #[test]
    fn ptr_query_for_known_ipv6_address() {
        let name = Name::from("fd00:89::2".parse::<IpAddr>().unwrap());
        let r = reply(answer(
            &query(&name.to_ascii(), RecordType::PTR),
            &FakeResolver::new(),
        ));
        assert_eq!(ptr_target(&r).as_deref(), Some("web."));
    }

    // ---- answer(): what is not ours --------------------------------------

    #[test]
    fn unknown_names_and_addresses_are_forwarded() {
        let res = FakeResolver::new();
        assert_eq!(
            answer(&query("example.com.", RecordType::A), &res),
            Action::Forward
        );
        assert_eq!(
            answer(&query("example.com.", RecordType::AAAA), &res),
            Action::Forward
        );
        assert_eq!(
            answer(&query("example.com.", RecordType::MX), &res),
            Action::Forward
        );
        assert_eq!(
            answer(&query("example.com.", RecordType::TXT), &res),
            Action::Forward
        );
        // Search-domain suffixes: exactly the name asked.
        assert_eq!(
            answer(&query("web.corp.example.", RecordType::A), &res),
            Action::Forward
        );
        let unknown = Name::from(IpAddr::V4(Ipv4Addr::new(10, 89, 0, 99)));
        assert_eq!(
            answer(&query(&unknown.to_ascii(), RecordType::PTR), &res),
            Action::Forward
        );
        // A partial reverse name is not an address.
        assert_eq!(
            answer(&query("89.10.in-addr.arpa.", RecordType::PTR), &res),
            Action::Forward
        );
        assert_eq!(answer(&query(".", RecordType::NS), &res), Action::Forward);
    }

    #[test]
    fn other_classes_are_forwarded() {
        let mut msg = query_msg("web.", RecordType::A);
        msg.queries[0].set_query_class(DNSClass::CH);
        assert_eq!(
            answer(&msg.to_vec().unwrap(), &FakeResolver::new()),
            Action::Forward
        );
    }

    // ---- answer(): errors ------------------------------------------------

    #[test]
    fn several_questions_are_formerr() {
        let mut msg = query_msg("web.", RecordType::A);
        msg.add_query(Query::query(
            Name::from_ascii("db.").unwrap(),
            RecordType::A,
        ));
        let r = reply(answer(&msg.to_vec().unwrap(), &FakeResolver::new()));
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn no_question_is_formerr() {
        let mut msg = Message::query();
        msg.metadata.id = 7;
        let r = reply(answer(&msg.to_vec().unwrap(), &FakeResolver::new()));
        assert_eq!(r.metadata.id, 7);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn malformed_body_is_formerr_with_the_query_id() {
        let mut bytes = query("web.", RecordType::A);
        bytes.truncate(bytes.len() - 3); // cut inside the question
        let r = reply(answer(&bytes, &FakeResolver::new()));
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert!(r.queries.is_empty());
    }

    #[test]
    fn other_opcodes_are_notimp() {
        let mut msg = query_msg("web.", RecordType::A);
        msg.metadata.op_code = OpCode::Status;
        let r = reply(answer(&msg.to_vec().unwrap(), &FakeResolver::new()));
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
        assert_eq!(r.metadata.op_code, OpCode::Status);
        assert_eq!(r.queries.len(), 1);
    }

    #[test]
    fn short_packets_and_responses_are_dropped() {
        let res = FakeResolver::new();
        assert_eq!(answer(&[], &res), Action::Drop);
        assert_eq!(answer(&[0x12, 0x34, 0, 0, 0], &res), Action::Drop);
        let mut resp = query_msg("web.", RecordType::A);
        resp.metadata.message_type = MessageType::Response;
        assert_eq!(answer(&resp.to_vec().unwrap(), &res), Action::Drop);
    }

    #[test]
    fn servfail_echoes_the_question() {
        let q = query("example.com.", RecordType::A);
        let r = Message::from_vec(&servfail(&q)).unwrap();
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert!(r.metadata.recursion_desired && r.metadata.recursion_available);
        assert_eq!(r.queries, query_msg("example.com.", RecordType::A).queries);
    }

    #[test]
    fn edns_is_echoed() {
        let mut msg = query_msg("web.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        msg.set_edns(edns);
        let r = reply(answer(&msg.to_vec().unwrap(), &FakeResolver::new()));
        assert_eq!(r.edns.map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
        let r = reply(answer(&query("web.", RecordType::A), &FakeResolver::new()));
        assert!(r.edns.is_none());
    }

    #[test]
    fn big_udp_answers_are_truncated() {
        let q = query("many.", RecordType::A);
        let Action::Reply(full) = answer(&q, &FakeResolver::new()) else {
            panic!("no reply")
        };
        assert!(full.len() > CLASSIC_UDP);
        assert_eq!(Message::from_vec(&full).unwrap().answers.len(), 100);
        let cut = fit(full.clone(), udp_limit(&q));
        assert!(cut.len() <= CLASSIC_UDP);
        let r = Message::from_vec(&cut).unwrap();
        assert!(r.metadata.truncation);
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(r.queries.len(), 1);
        assert!(r.answers.is_empty());
        // With a large EDNS payload it fits.
        let mut msg = query_msg("many.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        msg.set_edns(edns);
        assert_eq!(udp_limit(&msg.to_vec().unwrap()), 4096);
        assert_eq!(fit(full.clone(), 4096), full);
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic xorshift so a failure is reproducible.
        let res = FakeResolver::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seed = query("web.", RecordType::A);
        for i in 0..20_000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 80) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                // Mutations of a valid query reach deeper into the parser.
                let mut b = seed.clone();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % b.len();
                    b[at] = next() as u8;
                }
                b.truncate((next() as usize) % (b.len() + 1));
                b
            };
            let action = answer(&bytes, &res);
            if let Action::Reply(r) = &action {
                assert!(r.len() >= HEADER_LEN);
                assert_eq!(r[..2], bytes[..2]);
            }
            let _ = question_end(&bytes);
            let _ = fit(bytes.clone(), 16);
            let _ = matches(&bytes, &seed);
            if bytes.len() >= HEADER_LEN {
                let _ = servfail(&bytes);
            }
        }
    }

    proptest! {
        #[test]
        fn proptest_answer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let res = FakeResolver::new();
            match answer(&bytes, &res) {
                Action::Reply(r) => {
                    prop_assert!(r.len() >= HEADER_LEN);
                    prop_assert_eq!(&r[..2], &bytes[..2]);
                }
                Action::Forward => prop_assert!(Message::from_vec(&bytes).is_ok()),
                Action::Drop => {}
            }
            let _ = fit(bytes.clone(), 64);
        }
    }

    // ---- resolv.conf -----------------------------------------------------

    #[test]
    fn resolv_conf_nameservers() {
        let text = "\
# generated
search corp.example
nameserver 192.0.2.53
nameserver 127.0.0.53
nameserver   2001:db8::53  # comment
nameserver ::1
nameserver 127.0.1.1
nameserver 0.0.0.0
;nameserver 192.0.2.99
nameserver fe80::1%eth0
nameserver fe80::2%3
nameserver ::ffff:127.0.0.1
nameserver not-an-address
nameserver
options edns0 ndots:2
nameserver 192.0.2.53
";
        let got = upstreams_from_resolv_conf(text);
        assert_eq!(
            got,
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
                SocketAddr::V6(SocketAddrV6::new("fe80::2".parse().unwrap(), 53, 0, 3)),
            ]
        );
    }

    #[test]
    fn resolv_conf_with_only_a_local_stub_is_empty() {
        let text = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n";
        assert!(upstreams_from_resolv_conf(text).is_empty());
        assert!(upstreams_from_resolv_conf("").is_empty());
    }

    // ---- forwarding (host loopback only) ---------------------------------

    const TAG1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    const TAG2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

    #[test]
    fn forward_udp_relays_with_client_id() {
        let up = FakeUpstream::start(TAG1);
        let q = query("ext.example.", RecordType::A);
        let resp = forward_udp(&q, &[up.addr], FORWARD_BUDGET, CLASSIC_UDP).unwrap();
        let r = Message::from_vec(&resp).unwrap();
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(ips(&r), vec![IpAddr::V4(TAG1)]);
    }

    #[test]
    fn forward_relays_nxdomain() {
        let up = FakeUpstream::start(TAG1);
        let q = query("nx.example.", RecordType::A);
        let resp = forward_udp(&q, &[up.addr], FORWARD_BUDGET, CLASSIC_UDP).unwrap();
        let r = Message::from_vec(&resp).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(r.metadata.id, 0x1234);
        let resp = forward_tcp(&q, &[up.addr], FORWARD_BUDGET).unwrap();
        let r = Message::from_vec(&resp).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn forward_skips_dead_silent_and_failing_upstreams() {
        let up1 = FakeUpstream::start(TAG1);
        let up2 = FakeUpstream::start(TAG2);
        // SERVFAIL from the first: the second answers.
        let q = query("fail.example.", RecordType::A);
        let resp = forward_udp(&q, &[up1.addr, up2.addr], FORWARD_BUDGET, CLASSIC_UDP).unwrap();
        assert_eq!(
            ips(&Message::from_vec(&resp).unwrap()),
            vec![IpAddr::V4(TAG2)]
        );
        let resp = forward_tcp(&q, &[up1.addr, up2.addr], FORWARD_BUDGET).unwrap();
        assert_eq!(
            ips(&Message::from_vec(&resp).unwrap()),
            vec![IpAddr::V4(TAG2)]
        );
        assert!(forward_udp(&q, &[up1.addr], FORWARD_BUDGET, CLASSIC_UDP).is_none());
        // REFUSED everywhere: nothing (the caller answers SERVFAIL).
        let q = query("refused.example.", RecordType::A);
        assert!(forward_udp(&q, &[up1.addr, up2.addr], FORWARD_BUDGET, CLASSIC_UDP).is_none());
        // Refused port first, then a good one.
        let q = query("ext.example.", RecordType::A);
        let resp = forward_udp(
            &q,
            &[dead_upstream(), up2.addr],
            FORWARD_BUDGET,
            CLASSIC_UDP,
        )
        .unwrap();
        assert_eq!(
            ips(&Message::from_vec(&resp).unwrap()),
            vec![IpAddr::V4(TAG2)]
        );
        let resp = forward_tcp(&q, &[dead_upstream(), up2.addr], FORWARD_BUDGET).unwrap();
        assert_eq!(
            ips(&Message::from_vec(&resp).unwrap()),
            vec![IpAddr::V4(TAG2)]
        );
        // Nobody answers: gives up within the budget.
        let q = query("silent.example.", RecordType::A);
        let start = Instant::now();
        assert!(forward_udp(&q, &[up1.addr, up2.addr], FORWARD_BUDGET, CLASSIC_UDP).is_none());
        let took = start.elapsed();
        assert!(
            took >= FORWARD_BUDGET - Duration::from_millis(50),
            "{took:?}"
        );
        assert!(
            took < FORWARD_BUDGET + Duration::from_millis(1500),
            "{took:?}"
        );
        assert!(forward_udp(&q, &[], FORWARD_BUDGET, CLASSIC_UDP).is_none());
    }

    #[test]
    fn forward_retries_truncated_answers_over_tcp() {
        let up = FakeUpstream::start(TAG1);
        let q = query("big.example.", RecordType::A);
        // The client takes big answers: the full TCP one.
        let resp = forward_udp(&q, &[up.addr], FORWARD_BUDGET, 4096).unwrap();
        let r = Message::from_vec(&resp).unwrap();
        assert_eq!(r.answers.len(), 40);
        assert!(!r.metadata.truncation);
        assert_eq!(r.metadata.id, 0x1234);
        // It does not: the truncated one, so that it retries over TCP.
        let resp = forward_udp(&q, &[up.addr], FORWARD_BUDGET, CLASSIC_UDP).unwrap();
        let r = Message::from_vec(&resp).unwrap();
        assert!(r.metadata.truncation);
        assert_eq!(r.metadata.id, 0x1234);
    }

    #[test]
    fn mismatched_replies_are_ignored() {
        let q = query("ext.example.", RecordType::A);
        let mut other = Message::from_vec(&q).unwrap();
        other.metadata.message_type = MessageType::Response;
        assert!(matches(&other.to_vec().unwrap(), &q));
        other.metadata.id = 0x4321;
        assert!(!matches(&other.to_vec().unwrap(), &q));
        let mut other = query_msg("evil.example.", RecordType::A);
        other.metadata.message_type = MessageType::Response;
        assert!(!matches(&other.to_vec().unwrap(), &q));
        let mut upper = query_msg("EXT.example.", RecordType::A);
        upper.metadata.message_type = MessageType::Response;
        assert!(matches(&upper.to_vec().unwrap(), &q));
        assert!(!matches(&q, &q), "a query is not a reply");
    }

    /// serve() on host loopback sockets: no namespace needed.
    #[test]
    fn serve_on_host_loopback_and_stop() {
        let up = FakeUpstream::start(TAG1);
        let sockets = Sockets::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let udp_addr = sockets.udp.local_addr().unwrap();
        let tcp_addr = sockets.tcp.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = serve(
            sockets,
            Arc::new(FakeResolver::new()),
            vec![up.addr],
            Arc::clone(&stop),
        );
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(udp_addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let r = udp_ask(&client, &query("db.", RecordType::A));
        assert_eq!(ips(&r), vec!["10.89.0.3".parse::<IpAddr>().unwrap()]);
        let r = udp_ask(&client, &query("ext.example.", RecordType::A));
        assert_eq!(ips(&r), vec![IpAddr::V4(TAG1)]);
        let r = udp_ask(&client, &query("many.", RecordType::A));
        assert!(r.metadata.truncation);
        let mut tcp = TcpStream::connect(tcp_addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = tcp_ask(&mut tcp, &query("many.", RecordType::A));
        assert_eq!(r.answers.len(), 100);
        let r = tcp_ask(&mut tcp, &query("big.example.", RecordType::A));
        assert_eq!(r.answers.len(), 40);
        let start = Instant::now();
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn serve_answers_servfail_without_upstreams() {
        let sockets = Sockets::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let udp_addr = sockets.udp.local_addr().unwrap();
        let tcp_addr = sockets.tcp.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = serve(
            sockets,
            Arc::new(FakeResolver::new()),
            Vec::new(),
            Arc::clone(&stop),
        );
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(udp_addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let r = udp_ask(&client, &query("ext.example.", RecordType::A));
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(r.queries.len(), 1);
        let mut tcp = TcpStream::connect(tcp_addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = tcp_ask(&mut tcp, &query("ext.example.", RecordType::A));
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        // Garbage gets FORMERR, the connection stays usable.
        let r = tcp_ask(
            &mut tcp,
            &[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x05],
        );
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(r.metadata.id, 0xabcd);
        let r = tcp_ask(&mut tcp, &query("web.", RecordType::A));
        assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }

    #[test]
    fn serve_handles_many_concurrent_clients() {
        let up = FakeUpstream::start(TAG1);
        let sockets = Sockets::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let udp_addr = sockets.udp.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // A silent upstream first: every forward waits on it, and local
        // answers must not wait behind the forwards.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let handle = serve(
            sockets,
            Arc::new(FakeResolver::new()),
            vec![silent.local_addr().unwrap(), up.addr],
            Arc::clone(&stop),
        );
        let clients: Vec<_> = (0..20)
            .map(|i| {
                thread::spawn(move || {
                    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                    c.connect(udp_addr).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let name = if i % 2 == 0 { "ext.example." } else { "web." };
                    let start = Instant::now();
                    let r = udp_ask(&c, &query(name, RecordType::A));
                    (i, r, start.elapsed())
                })
            })
            .collect();
        for c in clients {
            let (i, r, took) = c.join().unwrap();
            if i % 2 == 0 {
                assert_eq!(ips(&r), vec![IpAddr::V4(TAG1)]);
            } else {
                assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
                // The forwards wait ~1 s on the silent upstream.
                assert!(
                    took < Duration::from_millis(800),
                    "local answer took {took:?}"
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
        drop(silent);
    }

    struct PanickyResolver(FakeResolver);

    impl Resolver for PanickyResolver {
        fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
            assert_ne!(name, "boom", "resolver bug");
            self.0.lookup(name)
        }
        fn reverse(&self, ip: IpAddr) -> Option<String> {
            self.0.reverse(ip)
        }
    }

    #[test]
    fn a_panicking_resolver_does_not_kill_the_server() {
        let sockets = Sockets::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let udp_addr = sockets.udp.local_addr().unwrap();
        let tcp_addr = sockets.tcp.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = serve(
            sockets,
            Arc::new(PanickyResolver(FakeResolver::new())),
            Vec::new(),
            Arc::clone(&stop),
        );
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(udp_addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        client.send(&query("boom.", RecordType::A)).unwrap();
        let mut buf = [0u8; 512];
        assert!(
            client.recv(&mut buf).is_err(),
            "no answer to a panicking lookup"
        );
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let r = udp_ask(&client, &query("web.", RecordType::A));
        assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
        let mut tcp = TcpStream::connect(tcp_addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(&framed(&query("boom.", RecordType::A)).unwrap())
            .unwrap();
        let mut len = [0u8; 2];
        assert!(tcp.read_exact(&mut len).is_err(), "connection closed");
        let mut tcp = TcpStream::connect(tcp_addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = tcp_ask(&mut tcp, &query("web.", RecordType::A));
        assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }

    // ---- integration: a real network namespace (root) --------------------

    /// A process in a new network namespace with `lo` up; killed (by PID)
    /// and reaped on drop, which removes the namespace.
    struct Netns {
        child: Child,
    }

    impl Netns {
        fn new() -> Netns {
            let child = Command::new("unshare")
                .args(["-n", "sleep", "60"])
                .stdin(Stdio::null())
                .spawn()
                .expect("unshare");
            let ns = Netns { child };
            let pid = ns.pid();
            // Until unshare has exec'd, the child is still in our namespace.
            let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
            let start = Instant::now();
            loop {
                let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
                if theirs != ours {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(5), "no new netns");
                thread::sleep(Duration::from_millis(10));
            }
            let status = Command::new("nsenter")
                .args([
                    "-t",
                    &pid.to_string(),
                    "-n",
                    "ip",
                    "link",
                    "set",
                    "lo",
                    "up",
                ])
                .status()
                .expect("nsenter");
            assert!(status.success(), "cannot bring lo up");
            ns
        }

        fn pid(&self) -> i32 {
            i32::try_from(self.child.id()).unwrap()
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn netns_serves_names_forwards_ptr_and_tcp() {
        if !is_root() {
            eprintln!("SKIPPED netns_serves_names_forwards_ptr_and_tcp: needs root");
            return;
        }
        let up = FakeUpstream::start(TAG1);
        let ns = Netns::new();
        let sockets = bind_in_netns(ns.pid()).expect("bind in netns");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = serve(
            sockets,
            Arc::new(FakeResolver::new()),
            vec![up.addr],
            Arc::clone(&stop),
        );
        let server = SocketAddr::from((DNS_ADDR, DNS_PORT));

        // Client sockets made inside the namespace.
        let (udp, mut tcp) = in_netns(ns.pid(), || {
            let udp = UdpSocket::bind("127.0.0.1:0")?;
            udp.connect(server)?;
            let tcp = TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
            Ok((udp, tcp))
        })
        .expect("client sockets in netns");
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

        // Known name, over UDP.
        let r = udp_ask(&udp, &query("web.", RecordType::A));
        assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
        let r = udp_ask(&udp, &query("web.", RecordType::AAAA));
        assert_eq!(ips(&r), vec!["fd00:89::2".parse::<IpAddr>().unwrap()]);
        // Forwarded to the host-namespace upstream on 127.0.0.1.
        let r = udp_ask(&udp, &query("ext.example.", RecordType::A));
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(ips(&r), vec![IpAddr::V4(TAG1)]);
        let r = udp_ask(&udp, &query("nx.example.", RecordType::A));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        // PTR.
        let ptr = Name::from(IpAddr::V4(Ipv4Addr::new(10, 89, 0, 3)));
        let r = udp_ask(&udp, &query(&ptr.to_ascii(), RecordType::PTR));
        assert_eq!(ptr_target(&r).as_deref(), Some("db."));
        // TCP: several queries on one connection, local and forwarded.
        let r = tcp_ask(&mut tcp, &query("DB.", RecordType::A));
        assert_eq!(ips(&r), vec!["10.89.0.3".parse::<IpAddr>().unwrap()]);
        let r = tcp_ask(&mut tcp, &query("ext.example.", RecordType::A));
        assert_eq!(ips(&r), vec![IpAddr::V4(TAG1)]);
        let r = tcp_ask(&mut tcp, &query("big.example.", RecordType::A));
        assert_eq!(r.answers.len(), 40);
        let r = tcp_ask(&mut tcp, &query(&ptr.to_ascii(), RecordType::PTR));
        assert_eq!(ptr_target(&r).as_deref(), Some("db."));

        stop.store(true, Ordering::Relaxed);
        let start = Instant::now();
        handle.join().unwrap();
        assert!(start.elapsed() < Duration::from_secs(3));
        drop(tcp);
        drop(ns);
    }

    #[test]
    fn netns_server_keeps_running_after_the_namespace_dies() {
        if !is_root() {
            eprintln!("SKIPPED netns_server_keeps_running_after_the_namespace_dies: needs root");
            return;
        }
        let ns = Netns::new();
        let sockets = bind_in_netns(ns.pid()).expect("bind in netns");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = serve(
            sockets,
            Arc::new(FakeResolver::new()),
            Vec::new(),
            Arc::clone(&stop),
        );
        drop(ns); // the namespace's last process is gone
        thread::sleep(Duration::from_millis(500));
        assert!(!handle.is_finished());
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }

    #[test]
    fn bind_in_netns_fails_for_missing_process() {
        assert!(bind_in_netns(i32::MAX).is_err());
    }
}
