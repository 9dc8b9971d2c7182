//! Forwarding to the host's nameservers: which ones (resolv.conf), and one query over UDP (then
//! TCP when truncated) within a time budget shared among them.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::answer::*;
use tracing::debug;

/// Total time spent trying the upstream servers for one query.
pub(super) const FORWARD_BUDGET: Duration = Duration::from_secs(2);
/// Shortest time given to one upstream server while budget remains.
pub(super) const MIN_ATTEMPT: Duration = Duration::from_millis(400);
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

pub(super) fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, DNS_PORT));
    }
    let (ip, zone) = word.split_once('%')?;
    let ip: Ipv6Addr = ip.parse().ok()?;
    let scope: u32 = zone.parse().ok()?;
    Some(SocketAddr::V6(SocketAddrV6::new(ip, DNS_PORT, 0, scope)))
}

/// Whether `resp` answers `sent`: same id, a response, same opcode, same
/// question (case-insensitively), or an error without question.
pub(super) fn matches(resp: &[u8], sent: &[u8]) -> bool {
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

pub(super) fn rcode(resp: &[u8]) -> u8 {
    resp[3] & 0x0f
}

pub(super) fn truncated(resp: &[u8]) -> bool {
    resp[2] & 0x02 != 0
}

/// Time left for the attempt on upstream `index` of `count`.
pub(super) fn attempt_time(deadline: Instant, index: usize, count: usize) -> Option<Duration> {
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
pub(super) fn forward_udp(
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
pub(super) fn forward_tcp(
    query: &[u8],
    upstreams: &[SocketAddr],
    budget: Duration,
) -> Option<Vec<u8>> {
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
pub(super) fn is_failure(resp: &[u8]) -> bool {
    matches!(rcode(resp), RCODE_SERVFAIL | RCODE_REFUSED)
}

pub(super) fn unspecified_for(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

pub(super) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "upstream timed out")
}

pub(super) fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// One query over UDP from a fresh socket (random source port); replies that
/// do not match the query are ignored.
pub(super) fn udp_exchange(
    upstream: SocketAddr,
    packet: &[u8],
    time: Duration,
) -> io::Result<Vec<u8>> {
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
pub(super) fn tcp_exchange(
    upstream: SocketAddr,
    packet: &[u8],
    time: Duration,
) -> io::Result<Vec<u8>> {
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
pub(super) fn framed(msg: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(msg.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DNS message too long"))?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    Ok(out)
}
